"""Measured latency: forward (and forward+backward) on a real device.

Method: a fixed thread count, warm-up runs (allocator, kernel selection, caches), then rounds
that interleave the measurements (plain forward, forward+backward, a per-stage pass with timing
hooks), so slow drift of a shared machine affects all of them alike. Each figure is the median of
the rounds with its interquartile range; the environment is recorded with the figures.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.nn.modules import module as module_hooks

from ..errors import UsageError


@dataclass
class Timing:
    """Seconds per call: median and interquartile range (q75 - q25) over the rounds."""

    median_s: float
    iqr_s: float
    rounds: int

    @classmethod
    def of(cls, samples: list[float]) -> Timing:
        if len(samples) >= 4:
            q = statistics.quantiles(samples, n=4)
            iqr = q[2] - q[0]
        else:
            iqr = max(samples) - min(samples)
        return cls(statistics.median(samples), iqr, len(samples))


@dataclass
class Latency:
    """Measured latency of one network at one batch size on one device.

    forward:              a forward pass in eval mode, no grad.
    forward_backward:     a training forward + backward (None unless asked for).
    throughput_per_s:     samples per second of the forward pass.
    stages:               stage -> median seconds inside that stage's blocks (timed with hooks in
                          separate interleaved rounds); 'other' = time outside every block.
    environment:          torch version, device, threads, CPU model, ...
    """

    batch: int
    device: str
    forward: Timing
    forward_backward: Timing | None
    throughput_per_s: float
    stages: dict[str, float] = field(default_factory=dict)
    environment: dict[str, str | int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: torch.device, threads: int) -> dict[str, str | int]:
    env: dict[str, str | int] = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "threads": threads,
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count() or 0,
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_latency(
    module: nn.Module,
    input_shape: tuple[int, ...],
    batch: int = 1,
    *,
    device: str = "cpu",
    backward: bool = False,
    warmup: int = 3,
    rounds: int = 15,
    threads: int | None = None,
    stage_of: dict[str, str] | None = None,
    input_dtype: torch.dtype = torch.float32,
) -> Latency:
    """Time ``module`` on ``(batch, *input_shape)`` inputs.

    The module is not changed: when it is not already on ``device`` a copy is timed, and train/eval
    flags are restored. ``stage_of`` maps block module paths to stage names for the breakdown.
    """
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for, but no CUDA device is available",
                         fix="use --device cpu")
    first = next(iter(module.parameters()), None)
    if first is not None and first.device.type == "meta":
        raise UsageError("cannot time a module on the meta device: it has no data",
                         fix="build it on the CPU (archlab.build) before measuring latency")
    if backward or (first is not None and first.device != dev):
        # training steps update BatchNorm statistics and gradients: time a copy, never the original
        import copy

        module = copy.deepcopy(module).to(dev)
    flags = [(m, m.training) for m in module.modules()]
    old_threads = torch.get_num_threads()
    threads = threads or old_threads
    torch.set_num_threads(threads)
    shapes = input_shape if input_shape and isinstance(input_shape[0], tuple | list) else (input_shape,)
    if input_dtype.is_floating_point:
        x = [torch.randn(batch, *shape, device=dev, dtype=input_dtype) for shape in shapes]
    else:  # token ids and other integer inputs: small valid indices
        x = [torch.zeros(batch, *shape, device=dev, dtype=input_dtype) for shape in shapes]
    paths = {id(m): p for p, m in module.named_modules() if stage_of and p in stage_of}
    stage_time: dict[str, float] = defaultdict(float)
    starts: dict[int, float] = {}

    def pre(m, args):
        if id(m) in paths:
            _sync(dev)
            starts[id(m)] = time.perf_counter()

    def post(m, args, out):
        if id(m) in paths and id(m) in starts:
            _sync(dev)
            stage_time[stage_of[paths[id(m)]]] += time.perf_counter() - starts.pop(id(m))

    def forward() -> float:
        module.eval()
        _sync(dev)
        t = time.perf_counter()
        with torch.no_grad():
            module(*x)
        _sync(dev)
        return time.perf_counter() - t

    def forward_backward() -> float:
        module.train()
        _sync(dev)
        t = time.perf_counter()
        out = module(*x)
        outs = out if isinstance(out, tuple | list) else [out]
        torch.autograd.backward([o.float().sum() for o in outs if isinstance(o, torch.Tensor)])
        _sync(dev)
        elapsed = time.perf_counter() - t
        module.zero_grad(set_to_none=True)
        return elapsed

    try:
        for _ in range(warmup):
            forward()
            if backward:
                forward_backward()
        fwd, fwdbwd, per_stage = [], [], defaultdict(list)
        for _ in range(rounds):
            fwd.append(forward())
            if backward:
                fwdbwd.append(forward_backward())
            if paths:
                stage_time.clear()
                handles = [module_hooks.register_module_forward_pre_hook(pre),
                           module_hooks.register_module_forward_hook(post)]
                try:
                    total = forward()
                finally:
                    for h in handles:
                        h.remove()
                for name, seconds in stage_time.items():
                    per_stage[name].append(seconds)
                per_stage["other"].append(max(0.0, total - sum(stage_time.values())))
    finally:
        torch.set_num_threads(old_threads)
        for m, flag in flags:
            m.training = flag
        if backward:
            module.zero_grad(set_to_none=True)
    forward_timing = Timing.of(fwd)
    return Latency(
        batch=batch,
        device=str(dev),
        forward=forward_timing,
        forward_backward=Timing.of(fwdbwd) if backward else None,
        throughput_per_s=batch / forward_timing.median_s if forward_timing.median_s else 0.0,
        stages={k: statistics.median(v) for k, v in per_stage.items()},
        environment=environment(dev, threads),
    )
