"""Memory: saved activations, peak inference and training memory, and what fits a budget.

All figures come from a meta-device trace (:mod:`archlab.analysis.trace`) of one training step,
so nothing real is allocated. The peaks are a liveness simulation over that trace: every storage
lives from the call that allocates it to its last use (autograd's saved tensors are used by the
backward pass, so they live until then); the network input, the outputs and the parameter
gradients live to the end of the step. On top of that sit the weights, the buffers and the
optimizer state, which exist before the step begins.

Training step modelled: ``zero_grad(set_to_none=True)``; forward; backward; ``optimizer.step()``.
The optimizer step needs weights + gradients + state + one parameter-sized temporary (the
for-loop implementation PyTorch uses on CPU; CUDA's foreach implementation needs one per
parameter tensor group, about the size of all trainable weights).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from ..errors import UsageError
from .trace import ACTIVATION, GRAD, INPUT, Trace

# optimizer -> state tensors kept per trainable parameter, each the parameter's size
OPTIMIZERS: dict[str, int] = {
    "sgd": 0,            # plain SGD keeps no state
    "sgd-momentum": 1,   # momentum buffer
    "adam": 2,           # first and second moments (Kingma & Ba 2015)
    "adamw": 2,          # same state as Adam, decoupled weight decay (Loshchilov & Hutter 2019)
}
# Adam/AdamW also keep a one-element float32 'step' tensor per parameter tensor
_STEP_BYTES = {"adam": 4, "adamw": 4}

_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3,
          "gb": 1000**3, "t": 1000**4, "tb": 1000**4, "kib": 2**10, "mib": 2**20, "gib": 2**30,
          "tib": 2**40}


def parse_bytes(text: str | int | float) -> int:
    """'8GiB' -> 8589934592, '512MB' -> 512000000, '1.5G' -> 1500000000; ints pass through.

    >>> parse_bytes('8GiB')
    8589934592
    """
    if isinstance(text, int | float):
        return int(text)
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    if not m or m.group(2).lower() not in _UNITS:
        raise UsageError(f"cannot read the memory size '{text}': expected a number with a unit "
                         "such as 8GiB, 512MiB, 16GB or 4e9",
                         fix="write --budget 8GiB (GiB = 2^30 bytes, GB = 10^9 bytes)")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def format_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def check_optimizer(name: str) -> str:
    if name not in OPTIMIZERS:
        from ..errors import unknown_name

        raise UsageError(unknown_name("optimizer", name, OPTIMIZERS),
                         fix="use --optimizer adam, adamw, sgd or sgd-momentum")
    return name


@dataclass
class Memory:
    """Memory of one network at one batch size (bytes unless said otherwise).

    weights_bytes:           parameters (all of them, PyTorch's count x dtype size).
    buffers_bytes:           buffers (BatchNorm running statistics).
    gradients_bytes:         one gradient per trainable parameter.
    optimizer_state_bytes:   the optimizer's state (Adam: two moments + a step counter).
    input_bytes:             the input batch.
    saved_activation_bytes:  what autograd saves for backward, deduplicated by storage.
    peak_inference_bytes:    weights + buffers + the most that is alive during a no-grad forward.
    peak_training_bytes:     the most alive at any point of a training step.
    peak_training_breakdown: what is alive at that moment: weights, buffers, optimizer_state,
                             gradients, saved_activations, transient (everything else).
    largest_transient_bytes: the 'transient' part of the breakdown.
    attention_backends:      scaled dot-product attention calls of the training step by the
                             kernel modelled ('flash (cpu, PyTorch's own choice)': 12): what it
                             saves for backward follows that kernel.
    """

    batch: int
    optimizer: str
    weights_bytes: int
    buffers_bytes: int
    gradients_bytes: int
    optimizer_state_bytes: int
    input_bytes: int
    saved_activation_bytes: int
    peak_inference_bytes: int
    peak_training_bytes: int
    peak_training_breakdown: dict[str, int]
    largest_transient_bytes: int
    budget_bytes: int | None = None
    largest_batch: int | None = None
    largest_input: int | None = None     # side of the largest square input at this batch
    attention_backends: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _peak(trace: Trace, end: int, *, forward_only: bool, cuda: bool = False) -> tuple[int, int]:
    """(peak bytes of storages alive at once, event index of the peak) over events [0, end).
    On the CPU a convolution's scratch copy is alive during its call (CUDA's cuDNN workspace
    comes from a cached pool and is not modelled)."""
    delta = [0] * (end + 2)
    if not cuda:
        for index, nbytes in trace.cpu_workspace.items():
            if index < end:
                delta[index] += nbytes
                delta[index + 1] -= nbytes
    keep_to_end = trace.output_keys | (set() if forward_only else trace.grad_keys)
    for key, s in trace.storages.items():
        if s.category not in (INPUT, ACTIVATION, GRAD):
            continue
        if forward_only and s.category == GRAD:
            continue
        start = max(s.created, 0)
        if start >= end:
            continue
        if s.category == INPUT or key in keep_to_end:
            stop = end - 1
        else:
            last = s.last_forward_use if forward_only else s.last_use
            stop = min(max(last, s.created, 0), end - 1)
        delta[start] += s.nbytes
        delta[stop + 1] -= s.nbytes
    peak, at, live = 0, 0, 0
    for i in range(end):
        live += delta[i]
        if live > peak:
            peak, at = live, i
    return peak, at


def _alive_at(trace: Trace, index: int) -> dict[str, int]:
    """Bytes alive at one event of the training step, by kind."""
    parts = {"gradients": 0, "saved_activations": 0, "transient": 0}
    end = trace.n_events
    for key, s in trace.storages.items():
        if s.category not in (INPUT, ACTIVATION, GRAD):
            continue
        start = max(s.created, 0)
        keep = s.category == INPUT or key in trace.output_keys or key in trace.grad_keys
        stop = end - 1 if keep else max(s.last_use, s.created, 0)
        if not start <= index <= stop:
            continue
        if key in trace.grad_keys:
            parts["gradients"] += s.nbytes
        elif s.saved:
            parts["saved_activations"] += s.nbytes
        else:
            parts["transient"] += s.nbytes
    return parts


def memory_from_trace(trace: Trace, optimizer: str = "adam", cuda: bool = False) -> Memory:
    """Memory figures from a training-step trace (``trace_module(..., backward=True)``)."""
    check_optimizer(optimizer)
    weights, buffers, trainable = trace.param_bytes, trace.buffer_bytes, trace.trainable_param_bytes
    state = OPTIMIZERS[optimizer] * trainable + _STEP_BYTES.get(optimizer, 0) * trace.param_tensors
    input_bytes = sum(s.nbytes for s in trace.storages.values() if s.category == INPUT)
    static = weights + buffers + state
    inference_live, _ = _peak(trace, trace.forward_end, forward_only=True, cuda=cuda)
    step_live, at = _peak(trace, trace.n_events, forward_only=False, cuda=cuda)
    # the optimizer step: all gradients plus its temporaries, after the backward pass
    temporary = trainable if cuda else trace.largest_param_bytes
    optimizer_live = trainable + temporary + input_bytes
    breakdown = {"weights": weights, "buffers": buffers, "optimizer_state": state}
    if optimizer_live > step_live:
        peak_live = optimizer_live
        breakdown.update(gradients=trainable, saved_activations=0,
                         transient=optimizer_live - trainable)
    else:
        peak_live = step_live
        breakdown.update(_alive_at(trace, at))
        if not cuda:
            breakdown["transient"] += trace.cpu_workspace.get(at, 0)
    return Memory(
        batch=trace.batch,
        optimizer=optimizer,
        weights_bytes=weights,
        buffers_bytes=buffers,
        gradients_bytes=trainable,
        optimizer_state_bytes=state,
        input_bytes=input_bytes,
        saved_activation_bytes=trace.saved_bytes,
        peak_inference_bytes=weights + buffers + inference_live,
        peak_training_bytes=static + peak_live,
        peak_training_breakdown=breakdown,
        largest_transient_bytes=breakdown["transient"],
        attention_backends=dict(trace.attention_backends),
    )
