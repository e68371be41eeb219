"""The training health monitor: cheap per-layer measurements, detectors, events in the run folder.

:class:`HealthRecorder` does the work on any ``nn.Module`` driven by any loop (five calls per
step); :class:`HealthMonitor` is the Lightning callback around it, usable in any Lightning
project::

    trainer = lightning.Trainer(callbacks=[HealthMonitor(folder="runs/x/health")])

**Which steps are sampled** is a fixed function of the step number (:func:`sample_interval`),
never of measured time, so the same seeded run gives the same health events every time. Dense
early (every step for the first ``2 * dense`` steps, where most faults show), then the interval
doubles each time the step count doubles, up to ``max_every``: with the defaults (8, 64) steps
0-15 are all sampled, then every 2nd step to 31, every 4th to 63, ..., every 64th from 512 on.
``every=k`` samples every k-th step instead.

On a sampled step one process-wide forward hook is installed for that step's forward pass only
(removed once the loss is read); it only appends (module, inputs, output) to a list, read once
after the forward pass. The overhead is kept low by making each sample cheap, not rare
(:mod:`archlab.diagnose.sampling`): the statistics of the first 16 examples of each watched
output (a dead unit must stay inactive on all of them, over the last ``dead_window`` samples)
come from a fixed number of fused tensor ops whatever the number of layers, and the outputs are
let go of before backward; gradients and weights are copied into one flat buffer (one
``_foreach_copy_``) whose per-layer norms are one ``_foreach_norm`` over each layer's slice, and
its weight half is the snapshot the update-to-weight ratio is measured against (Karpathy's ~1e-3 rule of
thumb); one device-to-host copy per sample brings everything back, the output's range and the
batch's label counts included. An unsampled step costs one read of the loss (a device sync on
accelerators) so that NaN/Inf is caught at the step it appears, and nothing else.

When the loss turns non-finite the monitor replays that step's forward pass once, with hooks on
every module, to name the first module whose output went NaN/Inf and why (its input, its weights,
or the op itself), then stops training (``stop_on_nonfinite``) instead of crashing.

Public API (stable; other detectors build on it): ``HealthRecorder(every=, dense=, max_every=,
dead_window=, detectors=, thresholds=, expected_frozen=)``, ``attach(model, optimizer=None,
clip=None)``, ``set_reference(classes=, label_entropy=, target_variance=, loss=)``,
``begin_step(targets=None)``, ``after_loss(loss, replay)``, ``before_optimizer_step()``,
``end_step()``, ``validation(val_loss, epoch)``, ``finish(folder)``, ``state``, ``events``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from . import detectors_gradients, detectors_labels  # noqa: F401  register their detectors
from .detectors import SQUASHING_OPS, Detector, Verdict, attribute, make_detectors
from .label_probe import LabelProbe
from .sampling import ACT_EXAMPLES, ActivationSample, layer_norms
from .state import HealthState
from .structure import (
    _first_tensor,
    affine_test,
    bounded_probe,
    identical_units,
    init_scale,
    output_op,
)

# Activation modules whose outputs we can interpret. 'dead' = a unit never outputs > 0;
# 'saturation' = the output sits where the derivative is below ~0.02.
DEAD_KINDS = {nn.ReLU: "relu", nn.ReLU6: "relu6"}
SATURATING_KINDS = {nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.Hardsigmoid: "hardsigmoid",
                    nn.Hardtanh: "hardtanh"}
OTHER_ACTS = (nn.LeakyReLU, nn.PReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Mish, nn.Hardswish,
              nn.Softplus, nn.SELU, nn.CELU, nn.Softmax, nn.LogSoftmax)
WEIGHT_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d,
                nn.ConvTranspose2d, nn.ConvTranspose3d)
NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm, nn.GroupNorm)
BATCH_NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
AFFINE_TRIES = 6   # sampled steps on which the affine test may run until it is conclusive
PROBE_TRIES = 6    # ... and the output-bound probe (structure.bounded_probe)
PROBE_FROM = 30    # the probe runs from this step on (values in [0, 1] at init mean nothing)
FLAT_LIMIT = 1 << 22   # parameter values up to which the norms use one flat buffer (sampling)
SYMMETRY_STEP = 10  # identical units are checked again on the first sample from this step
__all__ = ["ACT_EXAMPLES", "HealthRecorder", "is_sampled", "sample_interval"]


def sample_interval(step: int, dense: int = 8, max_every: int = 64) -> int:
    """The sampling interval at ``step``: 1 below ``2 * dense``, then doubling each time the
    step count doubles, at most ``max_every``."""
    k = 1
    while k < max_every and step >= 2 * dense * k:
        k *= 2
    return k


def interval_span(step: int, dense: int = 8, max_every: int = 64) -> tuple[int, int | None]:
    """(:func:`sample_interval` at ``step``, the first later step where the interval changes;
    None: it never does). The interval is the same on every step from ``step`` to that one."""
    k = sample_interval(step, dense, max_every)
    return k, (2 * dense * k if k < max_every else None)


def is_sampled(step: int, dense: int = 8, max_every: int = 64, every: int | None = None) -> bool:
    """Whether ``step`` is sampled: a pure function of the step (reproducible verdicts)."""
    if every:
        return step % every == 0
    return step % sample_interval(step, dense, max_every) == 0


class HealthRecorder:
    """Measures one model during training. ``attach(model)`` once, then per step::

        rec.begin_step(targets=y)             # before the forward pass (targets optional)
        rec.after_loss(loss, replay)          # after the loss, before backward
        rec.before_optimizer_step()           # after backward (and clipping), before step()
        rec.end_step()                        # after optimizer.step()

    and ``rec.validation(val_loss, epoch)`` after each validation pass, ``rec.finish(folder)``
    at the end. ``replay`` is a callable that reruns the step's forward pass (used once, on the
    first NaN). ``targets`` lets the loss rules estimate the know-nothing loss (label entropy,
    target variance) and the data rules see the label order; :meth:`set_reference` declares it.
    """

    def __init__(self, *, every: int | None = None, dense: int = 8, max_every: int = 64,
                 dead_window: int = 4, detectors=None, thresholds: dict | None = None,
                 expected_frozen: tuple[str, ...] = ()) -> None:
        self.fixed_every = every                # a fixed interval instead of the schedule
        self.dense, self.max_every = dense, max_every
        self.dead_window = dead_window          # samples over which a unit must stay inactive
        self.detectors: list[Detector] = make_detectors(detectors, thresholds)
        for d in self.detectors:
            if d.name == "frozen_layers":
                d.expected = tuple(expected_frozen)
        self.state = HealthState()
        self.events: list[Verdict] = []
        self.fired: set[str] = set()
        self.on_event: Callable[[Verdict], None] | None = None
        self.model: nn.Module | None = None
        self.optimizer = None
        self._modules: dict[str, nn.Module] = {}
        self._params: dict[str, list[nn.Parameter]] = {}
        self._watch: dict[str, nn.Module] = {}
        self._outputs: list[nn.Module] = []
        self._handles: list = []
        self._sampling = False
        self._ordered = False
        self._labels: dict[int, tuple] = {}    # id(module) -> (label, is_bn, is_norm, has_params)
        self._output_ids: set[int] = set()
        self._acts = ActivationSample({}, dead_window)
        self._owners: dict[tuple, tuple] = {}  # which grads exist -> (owner tensor, layer has grad)
        self._bn: dict[str, int] = {}
        self._exec_order: list[str] = []
        self._last_output: torch.Tensor | None = None
        self._last_call: tuple | None = None   # (module, inputs) of the model's output
        self._targets: torch.Tensor | None = None
        self._input: torch.Tensor | None = None
        self._affine_tries = 0
        self._probe_tries = 0
        self._reduced: tuple | None = None     # the sample's activation statistics (after_loss)
        self._seen: list[tuple] = []           # (module, inputs, output) of the sampled forward
        self._backward: bool | None = None     # backward reached the sampled loss (None: unknown)
        self._label_probe = LabelProbe()              # the label probe (label_probe.py)
        self._flat: list[nn.Parameter] = []
        self._owner: list[int] = []           # index of the layer owning each flat parameter
        self._snapshot: list[torch.Tensor] | None = None
        self._flat_views: dict | bool | None = None   # the flat [grads | weights] buffer
        self._flat_has: tuple | None = None
        self._norms: tuple | None = None
        self._cost = 0.0
        self._step_start: float | None = None
        # the previous step's replay (a reference, kept one step): weights made non-finite by a
        # NaN input at an unsampled step are found by replaying that step's batch (_locate)
        self._previous_replay: Callable[[], object] | None = None
        self._span: tuple | None = None   # (first step, end, interval) of the schedule's stretch

    def _scheduled(self, step: int) -> bool:
        """:func:`is_sampled` of ``step`` under the schedule, from the interval kept for the
        stretch of steps it holds on (:func:`interval_span`): one comparison and one modulo a
        step instead of the doubling loop."""
        span = self._span
        if span is None or not span[0] <= step < span[1]:
            k, until = interval_span(step, self.dense, self.max_every)
            span = self._span = (step, math.inf if until is None else until, k)
        return step % span[2] == 0

    @property
    def every(self) -> int:
        """The sampling interval at the current step."""
        step = max(self.state.step, 0)
        return self.fixed_every or sample_interval(step, self.dense, self.max_every)

    # ------------------------------------------------------------------ discovery ----------
    def attach(self, model: nn.Module, optimizer=None, clip: float | None = None,
               clip_algorithm: str = "norm") -> None:
        """Find the layers of ``model``: modules owning parameters, and activation modules.
        ``optimizer`` (optional) lets the rules read the learning rate and which parameters
        it updates; ``clip`` is the gradient-clipping threshold, when the loop clips."""
        self.model = model
        named = [(n, m) for n, m in model.named_modules() if n]
        prefix = _common_prefix([n for n, m in named if any(True for _ in m.parameters(False))])
        display = lambda n: n[len(prefix):] if prefix and n.startswith(prefix) else n  # noqa: E731
        st = self.state
        for name, m in named:
            params = list(m.parameters(recurse=False))
            label = display(name)
            if params:
                st.param_layers.append(label)
                self._params[label] = params
                st.frozen[label] = not any(p.requires_grad for p in params)
            kind = _act_kind(m)
            if kind or params or isinstance(m, BATCH_NORM_TYPES):
                st.act_layers.append(label)
                self._watch[label] = m
                if kind:
                    st.act_kinds[label] = kind
            self._modules[label] = m
        st.train_mode_noise = {display(n): r for n, m in named if (r := _train_noise(m)) > 0}
        for label, params in self._params.items():
            is_norm = isinstance(self._modules[label], NORM_TYPES)
            st.init_scale[label] = init_scale(params, is_norm)
            # the weights' own norm at attach, biases left out as init_scale leaves them out
            # (the init-ratio rules compare the two: detectors.initial_weight_norms)
            weights = [p for p in params if p.dim() >= 2] or (params[:1] if is_norm else [])
            if weights:
                with torch.no_grad():
                    st.init_weight_norm[label] = float(
                        sum(float(p.detach().double().pow(2).sum()) for p in weights) ** 0.5)
        same = [label for label, params in self._params.items()
                if not st.frozen[label] and identical_units(params)]
        st.symmetry = {"initial": same} if same else {}
        # the model's output: the last to finish of the root and its direct children
        self._outputs = [model] + [m for _, m in model.named_children()
                                   if not isinstance(m, nn.modules.loss._Loss)]
        self._output_ids = {id(m) for m in self._outputs}
        self._labels = {id(m): (label, isinstance(m, BATCH_NORM_TYPES), isinstance(m, NORM_TYPES),
                                label in self._params) for label, m in self._watch.items()}
        # the state's own dict: a caller may still drop a layer from it after attach (the
        # generative monitor drops an image output's tanh)
        self._acts = ActivationSample(st.act_kinds, self.dead_window)
        if optimizer is not None:
            self.set_optimizer(optimizer)
        if clip:
            st.clip = {"value": float(clip), "algorithm": clip_algorithm}

    def set_optimizer(self, optimizer) -> None:
        """Read learning rates and optimizer membership from ``optimizer`` from now on."""
        self.optimizer = optimizer
        ids = {id(p) for g in optimizer.param_groups for p in g["params"]}
        self.state.optimizer_params = {layer: any(id(p) in ids for p in ps)
                                       for layer, ps in self._params.items()}
        self.state.optimizer_settings = optimizer_settings(optimizer)

    def set_reference(self, *, classes: int | None = None, label_entropy: float | None = None,
                      target_variance: float | None = None, loss: str | None = None) -> None:
        """Declare the know-nothing loss (see :mod:`archlab.diagnose.baselines`): ``classes``
        (chance level ln C), the training split's ``label_entropy`` (nats), or the targets'
        ``target_variance`` (regression, MSE); ``loss`` names the loss ('cross_entropy', 'mse',
        'bce', 'bce_with_logits', 'nll', ...)."""
        ref = {"classes": classes, "label_entropy": label_entropy,
               "target_variance": target_variance, "loss": loss}
        self.state.reference.update({k: v for k, v in ref.items() if v is not None})

    # ------------------------------------------------------------------ the step -----------
    def begin_step(self, targets: torch.Tensor | None = None) -> None:
        self._step_start = time.perf_counter()
        self._cost = 0.0
        step = self.state.step + 1
        self._sampling = (self._scheduled(step) if not self.fixed_every
                          else is_sampled(step, self.dense, self.max_every, self.fixed_every))
        # a reference only (no copy): read on sampled steps, and when the loss turns NaN
        self._targets = targets if isinstance(targets, torch.Tensor) else None
        if self._sampling:
            t0 = time.perf_counter()
            self._acts.reset()
            self._exec_order, self._input, self._bn, self._reduced = [], None, {}, None
            self._seen = []
            self._install()
            self._cost += time.perf_counter() - t0

    def after_loss(self, loss: torch.Tensor, replay: Callable[[], object] | None = None) -> bool:
        """Record the loss; on the first non-finite loss locate its origin. Returns False when
        the loss is non-finite (the caller may stop)."""
        t0 = time.perf_counter()
        value = loss.item()   # (float(loss.detach()) without the detached copy)
        self.state.losses.append(value)
        ok = math.isfinite(value)
        if self._sampling:
            # did backward reach this loss before the optimizer step? (one hook per sample:
            # the evidence of gradients cleared between backward and step, detectors_gradients)
            self._backward = None
            if loss.requires_grad:
                self._backward = False
                loss.register_hook(self._saw_backward)
            # the forward pass is over: reduce the stashed outputs now, while they are alive
            # anyway, and let go of them before backward (no activation is held longer)
            self._remove()
            self._process_seen()
            self._reduced = self._acts.reduce()
            self._acts.reset()
        if not ok and self.state.nonfinite is None:
            self._remove()
            self.state.nonfinite = self._locate(replay) | {"step": self.state.step,
                                                           "loss": str(value)}
        self._previous_replay = replay
        self._cost += time.perf_counter() - t0
        return ok

    def before_optimizer_step(self) -> None:
        if not self._sampling or self.model is None:
            return
        t0 = time.perf_counter()
        self._order_layers()
        params = self._flat
        with torch.no_grad():   # no detach needed: nothing here is recorded by autograd
            grads = [p.grad for p in params]
            has = tuple([g is not None for g in grads])   # a list first: no generator frames
            present = [g for g in grads if g is not None]
            flat = self._flat_buffer()
            if flat is not None and all([g.layout == torch.strided and g.dtype == flat.dtype
                                         for g in present]):
                self._flat_norms(has, present)
            elif params:   # mixed dtypes or devices, sparse gradients, a large model
                norms = torch._foreach_norm(present + params)   # one fused call
                self._norms = (has, norms[:len(present)], norms[len(present):])
                self._snapshot = torch._foreach_mul(params, 1.0)
        self._cost += time.perf_counter() - t0

    def _flat_buffer(self) -> torch.Tensor | None:
        """One buffer ``[gradients | weights]`` shaped like the parameters twice over, kept
        between samples, for models of one floating dtype on one CPU or CUDA device with at
        most FLAT_LIMIT parameter values. A layer's parameters are contiguous in each half, so
        every per-layer norm is the norm of one slice: one ``_foreach_norm`` over 2 x layers
        slices instead of one norm per parameter, and no float64 copy of the buffer (a
        float64 ``segment_reduce`` over the 432k values of mnist_cnn cost ~8 ms of CPU a
        sample, the slices' norms ~0.2 ms). None otherwise."""
        if self._flat_views is None:
            self._flat_views = False
            params = self._flat
            kinds = {(p.dtype, p.device) for p in params}
            total = sum(p.numel() for p in params)
            if len(kinds) == 1 and 0 < total <= FLAT_LIMIT:
                dtype, device = next(iter(kinds))
                if dtype.is_floating_point and device.type in ("cpu", "cuda"):
                    buf = torch.zeros(2 * total, dtype=dtype, device=device)
                    sizes = [p.numel() for p in params]
                    views = [v.view(p.shape) for v, p in
                             zip(buf.split(sizes + sizes), params + params, strict=True)]
                    per_layer = [0] * len(self.state.param_layers)
                    for o, n in zip(self._owner, sizes, strict=True):
                        per_layer[o] += n
                    # each layer's slice of the gradient half, then of the weight half
                    layer_slices = list(buf.split(per_layer + per_layer))
                    self._flat_views = {
                        "buf": buf, "grad_views": views[:len(params)],
                        "weight_views": views[len(params):], "layer_slices": layer_slices,
                        "layer_weights": layer_slices[len(per_layer):]}
                    self._flat_has = None
        return self._flat_views["buf"] if self._flat_views else None

    def _flat_norms(self, has: tuple, present: list[torch.Tensor]) -> None:
        """Copy the gradients and the weights into the flat buffer (one ``_foreach_copy_``) and
        take the norm of each layer's slice of it (one ``_foreach_norm``: a vectorised
        reduction, within 1e-5 of float64 over 4M values); the weight half is the snapshot the
        update is measured against."""
        f = self._flat_views
        if has != self._flat_has:   # a parameter without gradient contributes zeros
            for v, h in zip(f["grad_views"], has, strict=True):
                if not h:
                    v.zero_()
            self._flat_has = has
        dst = [v for v, h in zip(f["grad_views"], has, strict=True) if h] + f["weight_views"]
        torch._foreach_copy_(dst, present + self._flat)
        self._norms = (has, torch._foreach_norm(f["layer_slices"]))
        self._snapshot = f["weight_views"]

    def end_step(self) -> list[Verdict]:
        """Finish the step; returns the verdicts first raised at this step."""
        if not self._sampling:
            self._close_step()
            return []
        t0 = time.perf_counter()
        self._remove()
        st = self.state
        rows, extra = self._collect()
        st.grad_read.append(self._norms is not None)
        st.backward_seen.append(self._backward)
        self._backward = None
        st.sample_steps.append(st.step)
        st.every.append(self.every)
        for name in st.series:
            width = len(st.param_layers if name in ("grad_norm", "weight_norm", "update_ratio")
                        else st.act_layers)
            st.series[name].append(rows.get(name) or [math.nan] * width)
        self._observe_output(extra)
        st.norm_batch.append(dict(self._bn))
        st.lr.append(self._lr())
        if math.isnan(st.initial_lr) and st.lr and math.isfinite(st.lr[-1]):
            st.initial_lr = st.lr[-1]
        self._acts.reset()
        self._bn, self._norms, self._snapshot = {}, None, None
        new = self.run_detectors()
        self._cost += time.perf_counter() - t0
        self._close_step()
        return new

    def _collect(self) -> tuple[dict[str, list[float]], dict]:
        """Every statistic of the sample, reduced on the device in a fixed number of fused ops
        (:mod:`archlab.diagnose.sampling`), brought back in one device-to-host copy: one row per
        series, over the parameter layers or the activation layers; and the extras the output
        rules read (the output's range, the batch's label counts)."""
        st = self.state
        n_layers = len(st.param_layers)
        parts: list[torch.Tensor] = []
        sizes: list[tuple[str, int]] = []   # what each part is, and how many values it holds

        def put(name: str, t: torch.Tensor) -> None:
            if t.dim() != 1:   # (a reshape of a vector is one more op for nothing)
                t = t.reshape(-1)
            parts.append(t)
            sizes.append((name, t.numel()))

        got_g: tuple = ()
        with torch.no_grad():
            if self._norms is not None and self._flat and len(self._norms) == 2:
                has, norms = self._norms   # the flat buffer: one norm per layer slice
                got_g = self._grad_owners(has, False)[0]
                torch._foreach_sub_(self._snapshot, self._flat)   # snapshot - new, in place
                upd = torch._foreach_norm(self._flat_views["layer_weights"])
                put("norms", torch.stack(list(norms) + list(upd)))
            elif self._norms is not None and self._flat:
                has, gnorm, wnorm = self._norms
                got_g, owner = self._grad_owners(has, bool(self._snapshot))
                norms = list(gnorm) + list(wnorm)
                if self._snapshot:   # the change the optimizer made: snapshot - new, in place
                    torch._foreach_sub_(self._snapshot, self._flat)
                    norms += list(torch._foreach_norm(self._snapshot))
                groups = 3 if self._snapshot else 2
                put("norms", layer_norms(norms, owner, groups * n_layers))
            self._process_seen()   # end_step without after_loss: the forward is read here
            labels, acts, groups_ = self._reduced or self._acts.reduce()
            self._reduced = None
            for i, t in enumerate(acts):
                put(f"act{i}", t)
            if self._input:
                put("input", torch.stack(self._input))
            self._input = None
            y = self._last_output
            if y is not None and y.is_floating_point() and y.dim() >= 1 and y.numel() >= 2:
                # (no detach: nothing here is recorded by autograd; min and max in one op)
                dev = ((y.sum(1) - 1).abs().max() if y.dim() == 2 and y.shape[1] >= 2
                       else y.new_full((), math.inf))
                low, high = torch.aminmax(y)
                put("output", torch.stack([low, high, dev]))
            t = self._targets
            if t is not None and not t.is_floating_point() and t.numel():
                flat = (t if t.dim() == 1 else t.reshape(-1)).long()
                put("labels_min", flat.min())
                put("labels", torch.bincount(flat.clamp_min(0)))
        if not parts:
            return {}, {}
        device = parts[0].device
        values = torch.cat([t.float().to(device) for t in parts]).tolist()
        got: dict[str, list[float]] = {}
        at = 0
        for name, n in sizes:
            got[name] = values[at:at + n]
            at += n
        rows: dict[str, list[float]] = {}
        if "norms" in got:
            v = got["norms"]
            g, w = v[:n_layers], v[n_layers:2 * n_layers]
            rows["grad_norm"] = [g[i] if got_g[i] else math.nan for i in range(n_layers)]
            rows["weight_norm"] = w
            if len(v) == 3 * n_layers:
                u = v[2 * n_layers:]
                rows["update_ratio"] = [u[i] / w[i] if w[i] > 0 else math.nan for i in range(n_layers)]
        act_values = [got[f"act{i}"] for i in range(len(acts))]
        series = [("act_mean", labels), ("act_std", labels), ("dead_fraction", groups_["dead"]),
                  ("saturation", groups_["saturation"])]
        width = len(st.act_layers)
        for name, keys in [sk for sk in series if sk[1]]:
            row = [math.nan] * width
            for at, v in zip(self._positions(keys), act_values.pop(0), strict=True):
                if at is not None:
                    row[at] = v
            rows[name] = row
        if "input" in got:   # the network input as its first weight layer sees it
            st.input_stats.append(tuple(got["input"]))
        g = rows.get("grad_norm", [])
        bad = [p for p, v in zip(st.param_layers, g, strict=False) if not math.isnan(v) and not math.isfinite(v)]
        if bad and st.nonfinite is None:
            # backward runs from the output: the last layer in forward order is nearest it
            st.nonfinite = {"step": st.step, "layer": bad[-1], "cause": "gradient",
                            "detail": f"non-finite gradient in {len(bad)} layers, "
                                      f"nearest the output '{bad[-1]}'", "builtin": True}
        extra = {}
        if "output" in got:
            extra["output"] = got["output"]
        if "labels" in got:
            extra["labels"] = (got["labels_min"][0], [int(c) for c in got["labels"]])
        return rows, extra

    def _positions(self, keys: list[str]) -> list[int | None]:
        """The position of each of ``keys`` among the activation layers (None: not one), cached
        per arrangement: the same on every sample of a run."""
        act = self.state.act_layers
        cache = self.__dict__.setdefault("_position_cache", {})
        key = (tuple(keys), tuple(act))
        got = cache.get(key)
        if got is None:
            index = {a: i for i, a in enumerate(act)}
            got = cache[key] = [index.get(k) for k in keys]
        return got

    def _process_seen(self) -> None:
        """Read what the hook appended during the sampled forward pass, once: the model's
        output (the last of the root and its direct children to finish), the first call's
        output of every watched module, the batch sizes of batch norms, and the network input
        as its first weight layer sees it."""
        seen, self._seen = self._seen, []
        if not seen:
            return
        labels, outs, ids = self._labels, self._acts.outputs, self._output_ids
        order = None if self._ordered else self._exec_order   # needed for the first sample only
        bn, Tensor = self._bn, torch.Tensor
        last = None
        for item in seen:
            key = id(item[0])
            if key in ids:
                last = item
            entry = labels.get(key)
            if entry is None or entry[0] in outs:
                continue   # not watched, or a module called twice: its first call
            label, is_bn, is_norm, has_params = entry
            if order is not None:
                order.append(label)
            y = item[2]
            if not isinstance(y, Tensor):
                y = _first_tensor(y)
                if y is None:
                    continue
            if is_bn and y.dim() >= 2 and item[0].training:
                bn[label] = int(y.shape[0])   # examples the batch statistics come from
            if not (y.is_floating_point() and y.numel()):
                continue
            outs[label] = y   # the first call's output (ActivationSample.add)
            if has_params and self._input is None:
                # the network input as the first layer with weights sees it (after reshapes);
                # a network that starts with a norm layer scales it itself
                x = _first_tensor(item[1])
                if is_norm:
                    self._input = []
                elif x is not None and x.is_floating_point() and x.numel() > 1:
                    with torch.no_grad():   # two passes, as in sampling (faster than std_mean)
                        v = x[:ACT_EXAMPLES].float()
                        m = v.mean()
                        d = v - m
                        sd = ((d * d).sum() / max(v.numel() - 1, 1)).sqrt()
                    self._input = [m.reshape(()), sd.reshape(())]
        if last is not None:
            mod, inputs, output = last
            self._last_output = output if isinstance(output, torch.Tensor) else _first_tensor(output)
            self._last_call = (mod, inputs) if isinstance(inputs, tuple) else None

    def _grad_owners(self, has: tuple, updates: bool) -> tuple[tuple, torch.Tensor]:
        """(whether each layer has a gradient, the slot of every norm in one fused per-layer
        reduction: the present gradients' layers, then the weights' layers offset by the number
        of layers, then, with ``updates``, the updates' offset by twice that), cached per
        pattern of present gradients (it rarely changes)."""
        cached = self._owners.get((has, updates))
        if cached is None:
            n = len(self.state.param_layers)
            owner = [self._owner[i] for i, h in enumerate(has) if h]
            got = set(owner)
            slots = owner + [o + n for o in self._owner]
            if updates:
                slots += [o + 2 * n for o in self._owner]
            cached = (tuple(i in got for i in range(n)), torch.tensor(slots, dtype=torch.long))
            self._owners[(has, updates)] = cached
        return cached

    def _observe_output(self, extra: dict) -> None:
        st = self.state
        targets = self._targets
        y, self._last_output = self._last_output, None
        rows, unit = False, False
        if "output" in extra:   # structure.output_ranges, from the values read in _collect
            lo, hi, dev = extra["output"]
            unit = lo >= 0 and hi <= 1 and hi - lo > 1e-4
            rows = unit and y.dim() == 2 and y.shape[1] >= 2 and dev < 1e-3
        st.output_is_probability.append(rows)
        st.output_in_unit_range.append(unit)
        if y is not None and y.dim() >= 2:
            st.output_width = int(y.shape[1])
        elif y is not None and y.dim() == 1:
            st.output_width = 1
        if self._targets is not None:
            _observe_targets(st, self._targets.detach(), y, extra.get("labels"))
        self._targets = None
        st.output_op.append(output_op(y))
        call, self._last_call = self._last_call, None
        if (call is not None and unit and st.step >= PROBE_FROM and self._probe_tries < PROBE_TRIES
                and st.output_op[-1] not in SQUASHING_OPS and "bounded" not in st.bounded_output):
            self._probe_tries += 1
            probe = bounded_probe(*call)
            if probe is not None:
                st.bounded_output = probe | {"step": st.step}
        self._label_probe.observe(st, call, y, targets)
        sym = st.symmetry
        if sym.get("initial") and "still" not in sym and st.step >= SYMMETRY_STEP:
            sym["still"] = [p for p in sym["initial"] if identical_units(self._params[p])]
            sym["step"] = st.step
        if call is not None and self._affine_tries < AFFINE_TRIES and not st.linear_chain:
            self._affine_tries += 1
            result = affine_test(*call)
            if result is not None:
                self._affine_tries = AFFINE_TRIES   # conclusive: never again
                weights = [p for p, m in self._modules.items() if isinstance(m, WEIGHT_TYPES)
                           or (p in self._params and not isinstance(m, NORM_TYPES))]
                st.affine = result | {"step": st.step}
                st.linear_chain = [weights] if result["affine"] else []

    def _saw_backward(self, grad):
        self._backward = True

    def _lr(self) -> float:
        if self.optimizer is None:
            return math.nan
        try:
            return float(max(g.get("lr", math.nan) for g in self.optimizer.param_groups))
        except (TypeError, ValueError):
            return math.nan

    def _close_step(self) -> None:
        """Book the step's time (begin_step to end_step: forward, backward, optimizer step)."""
        if self._step_start is None:
            return
        took = time.perf_counter() - self._step_start
        self._step_start = None
        self.state.train_seconds += took
        self.state.monitor_seconds += self._cost
        self._cost = 0.0

    def penalty(self, value, degree: float = 2, what: str = "") -> None:
        """Report the penalty part of the loss just given to :meth:`after_loss` (a regulariser
        term the loop added, such as ``l2 * sum w^2``; ``degree`` 1 for L1, 2 for L2), so the
        loss rules judge the data term and over_regularisation weighs the penalty's share."""
        self.state.record_penalty(value, degree=degree, what=what)

    def validation(self, val_loss: float, epoch: int, train_loss: float | None = None,
                   val_size: int | None = None) -> list[Verdict]:
        """Record one validation pass; ``train_loss`` defaults to the mean loss since the last;
        ``val_size`` is the number of validation examples (the rules judge a gap between the
        losses against the noise of a set that size; None: unknown)."""
        st = self.state
        if train_loss is None:   # the data term's mean (a reported penalty is not in val_loss)
            start = st.validation[-1]["step"] + 1 if st.validation else 0
            recent = st.loss_array()[start:]
            train_loss = float(recent.mean()) if len(recent) else math.nan
        st.validation.append({"step": st.step, "epoch": epoch, "train_loss": float(train_loss),
                              "val_loss": float(val_loss),
                              "val_size": int(val_size) if val_size else None})
        return self.run_detectors()

    def run_detectors(self) -> list[Verdict]:
        """Run every detector not yet fired; a new verdict is attributed (symptoms to the causes
        found so far, :func:`~archlab.diagnose.detectors.attribute`) before it is reported."""
        t0 = time.perf_counter()
        new = []
        for d in self.detectors:
            if d.name in self.fired:
                continue
            v = d.check(self.state)
            if v is not None:
                self.fired.add(d.name)
                self.events.append(v)
                new.append(v)
        if new:
            attribute(self.events, {d.name: d.explains for d in self.detectors})
            if self.on_event:
                for v in new:
                    self.on_event(v)
        self.state.detector_seconds += time.perf_counter() - t0
        return new

    def finish(self, folder: str | Path | None) -> None:
        self._remove()
        self._close_step()  # a step interrupted between begin_step and end_step
        if self.state.step >= 0:
            self.run_detectors()
        if folder is None:
            return
        folder = Path(folder)
        self.state.save(folder)
        with open(folder / "events.jsonl", "w") as fh:
            for v in self.events:
                fh.write(json.dumps(v.to_dict()) + "\n")
        (folder / "monitor.json").write_text(json.dumps({
            "steps": self.state.step + 1, "samples": len(self.state.sample_steps),
            "schedule": {"every": self.fixed_every, "dense": self.dense,
                         "max_every": self.max_every},
            "measured_overhead": self.overhead,
            "seconds": {"train": self.state.train_seconds, "monitor": self.state.monitor_seconds,
                        "detectors": self.state.detector_seconds},
            "detectors": {d.name: {"rule": d.rule, "thresholds": d.t} for d in self.detectors},
        }, indent=2))

    @property
    def overhead(self) -> float:
        """Monitor seconds (as timed by itself) / the rest of the step time, so far."""
        st = self.state
        base = st.train_seconds - st.monitor_seconds
        return st.monitor_seconds / base if base > 0 else math.nan

    # ------------------------------------------------------------------ internals ----------
    def _order_layers(self) -> None:
        """Put layers in forward-execution order, once, from the first sampled step."""
        if self._ordered:
            return
        self._ordered = True
        rank = {n: i for i, n in enumerate(dict.fromkeys(self._exec_order))}
        big = len(rank)
        st = self.state
        st.param_layers.sort(key=lambda n: rank.get(n, big))
        st.act_layers.sort(key=lambda n: rank.get(n, big))
        self._flat, self._owner = [], []
        for i, layer in enumerate(st.param_layers):
            for p in self._params[layer]:
                self._flat.append(p)
                self._owner.append(i)
        self._owners = {}

    def _install(self) -> None:
        """One process-wide forward hook for the sampled step (instead of one per module): it
        only looks the module up and keeps references (sampling.ActivationSample)."""
        if not self._handles:
            self._handles.append(torch.nn.modules.module.register_module_forward_hook(self._hook))

    def _remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def _hook(self, mod, inputs, output):
        # the whole hook: one append per module call (read once after the forward pass,
        # _process_seen); not timed: a timer would cost as much as the append
        self._seen.append((mod, inputs, output))

    def _locate(self, replay: Callable[[], object] | None) -> dict:
        """Replay the forward pass with hooks on every module; the first module (innermost
        first) whose output is non-finite is where NaN/Inf appeared."""
        if replay is None or self.model is None:
            return {"layer": "", "cause": "unknown", "detail": "non-finite loss"}
        found: dict = {}
        names = {m: n for n, m in self._modules.items()}

        def hook(mod, inputs, output):
            if found:
                return
            x, y = _first_tensor(inputs), _first_tensor(output)
            if y is None or not y.is_floating_point() or torch.isfinite(y).all():
                return
            label = names.get(mod, type(mod).__name__)
            params_ok = all(torch.isfinite(p).all() for p in mod.parameters())
            input_ok = x is None or not x.is_floating_point() or bool(torch.isfinite(x).all())
            cause = "input" if not input_ok else "weights" if not params_ok else "forward"
            builtin = type(mod).__module__.startswith("torch.nn")
            what = {"input": "its input is already non-finite",
                    "weights": "its weights are non-finite (a diverged update)",
                    "forward": "from finite inputs and weights"}[cause]
            found.update(layer=label, type=type(mod).__name__, cause=cause, builtin=builtin,
                         detail=f"output of '{label}' ({type(mod).__name__}) is non-finite, {what}")

        handles = [m.register_forward_hook(hook) for m in self._modules.values()]
        try:
            with torch.no_grad():
                replay()
        except Exception as exc:  # the replay is best effort: keep training alive
            found.setdefault("detail", f"replay failed: {type(exc).__name__}: {exc}")
        finally:
            for h in handles:
                h.remove()
        y = self._targets
        if not found and y is not None and y.is_floating_point() and not bool(torch.isfinite(y).all()):
            return {"layer": "", "cause": "targets", "builtin": True,
                    "detail": f"the batch's targets hold {int((~torch.isfinite(y)).sum())} "
                              "NaN/Inf values (every module's output is finite)"}
        if not found:
            return {"layer": "", "cause": "loss", "builtin": True,
                    "detail": "every module's output is finite: NaN/Inf arose in functional code "
                              "of forward/training_step or in the loss"}
        if found.get("cause") == "input":
            first = next(iter(self._modules), "")
            if found["layer"] == first or found["layer"] == self.state.param_layers[0]:
                found["detail"] = "the input batch holds NaN/Inf"
        elif found.get("cause") == "weights":
            # weights made non-finite by an update whose batch held NaN/Inf inputs: the input's
            # NaN reaches the weight gradients (0 x NaN is NaN) even where the loss stayed finite,
            # so no divergence came first; seen when a sampled step's input was non-finite
            bad = [i for i, (mean, std) in enumerate(self.state.input_stats)
                   if not (math.isfinite(mean) and math.isfinite(std))]
            if bad:
                found.update(cause="input", detail=(
                    f"the weights of '{found['layer']}' are non-finite after an update from "
                    "input batches that held NaN/Inf (seen on a sampled step while the loss was "
                    "still finite: a non-finite input reaches the weight gradients)"))
            elif self._previous_replay is not None and replay is not self._previous_replay:
                # the update that made them non-finite came from the previous step's batch,
                # perhaps an unsampled one: replayed with the same (non-finite) weights, its
                # first non-finite output has a non-finite input only if that batch held one
                # (the current batch's, replayed above, had finite inputs there)
                previous, self._previous_replay = self._previous_replay, None
                before = self._locate(previous)
                if before.get("cause") == "input":
                    found.update(cause="input", detail=(
                        f"the weights of '{found['layer']}' are non-finite after the update "
                        f"from the previous step's input batch, which held NaN/Inf at "
                        f"'{before.get('layer', '')}' while the loss was still finite (a "
                        "non-finite input reaches the weight gradients)"))
        return found


def _observe_targets(st: HealthState, y: torch.Tensor, out: torch.Tensor | None,
                     labels: tuple | None = None) -> None:
    """Accumulate label counts (integer targets) or value moments (float targets). ``labels``:
    (the smallest label, the label counts) when already read with the sample's other values."""
    t = st.targets
    if not y.is_floating_point():
        flat = y.reshape(-1).long()
        if labels is None:
            if flat.numel() == 0:
                return
            labels = (int(flat.min()), torch.bincount(flat.clamp_min(0)).tolist())
        low, counts = labels
        if low < 0:
            return
        t.setdefault("kind", "classes")
        old = t.setdefault("counts", [])
        old.extend([0] * (len(counts) - len(old)))
        for i, c in enumerate(counts):
            old[i] += c
        t.setdefault("batch_classes", []).append(sum(1 for c in counts if c))
        t.setdefault("batch_sizes", []).append(int(flat.numel()))
        return
    yd = y.detach().double()
    finite = torch.isfinite(yd)
    t.setdefault("kind", "values")
    t["nonfinite"] = t.get("nonfinite", 0) + int((~finite).sum())
    v = yd[finite]
    if v.numel() == 0:
        return
    t["n"] = t.get("n", 0) + int(v.numel())
    t["sum"] = t.get("sum", 0.0) + float(v.sum())
    t["sumsq"] = t.get("sumsq", 0.0) + float((v * v).sum())
    t["absmax"] = max(t.get("absmax", 0.0), float(v.abs().max()))
    t["matches_output"] = out is not None and out.numel() == y.numel()


_SETTINGS = ("momentum", "dampening", "nesterov", "betas", "eps", "weight_decay", "alpha",
             "lr_decay", "initial_accumulator_value", "centered")


def optimizer_settings(optimizer) -> dict:
    """The optimizer's type and hyper-parameters, as plain JSON values: those of the group with
    the largest learning rate at the top level (what the rules read), every group's under
    'groups'. Adam's ``betas`` also give 'momentum' None (beta1 averages, it does not amplify)."""
    groups = []
    for g in getattr(optimizer, "param_groups", []):
        row = {"lr": _plain_number(g.get("lr")),
               "params": sum(p.numel() for p in g.get("params", ()))}
        for key in _SETTINGS:
            if key in g:
                v = g[key]
                row[key] = [_plain_number(x) for x in v] if isinstance(v, (tuple, list)) \
                    else _plain_number(v)
        groups.append(row)
    out: dict = {"type": type(optimizer).__name__, "groups": groups}
    if groups:
        top = max(groups, key=lambda r: r["lr"] if isinstance(r["lr"], (int, float))
                  and not isinstance(r["lr"], bool) else -math.inf)
        out.update({k: v for k, v in top.items() if k not in ("lr", "params")})
    return out


def _plain_number(v):
    if isinstance(v, torch.Tensor) and v.numel() == 1:
        v = v.item()
    if v is None or isinstance(v, (bool, int, float)):
        return v
    return str(v)


def _train_noise(m: nn.Module) -> float:
    """The rate of the noise ``m`` adds in training mode only (0: none it declares): dropout
    of any kind, drop-path, the dropout between a recurrent module's layers, attention dropout."""
    if isinstance(m, nn.modules.dropout._DropoutNd):
        return float(m.p)
    rate = None
    if any(k in type(m).__name__ for k in ("DropPath", "StochasticDepth")):
        # archlab's DropPath (rate), timm's (drop_prob), torchvision's StochasticDepth (p)
        rate = next((getattr(m, a) for a in ("rate", "drop_prob", "p") if hasattr(m, a)), None)
    elif isinstance(m, (nn.RNNBase, nn.MultiheadAttention)):
        rate = getattr(m, "dropout", 0.0)
    return float(rate) if isinstance(rate, (int, float)) and not isinstance(rate, bool) else 0.0


def _act_kind(m: nn.Module) -> str | None:
    for cls, kind in {**DEAD_KINDS, **SATURATING_KINDS}.items():
        if type(m) is cls:
            return kind
    if isinstance(m, OTHER_ACTS):
        return type(m).__name__.lower()
    return None


def _common_prefix(names: list[str]) -> str:
    """'model.' when every layer lives under one child called 'model' (a LightningModule
    wrapping a network), so layer names match the network's own module paths."""
    if not names:
        return ""
    heads = {n.split(".", 1)[0] for n in names}
    if len(heads) == 1 and all("." in n for n in names):
        return heads.pop() + "."
    return ""
