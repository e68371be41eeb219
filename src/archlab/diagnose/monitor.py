"""The training health monitor: cheap per-layer measurements, detectors, events in the run folder.

:class:`HealthRecorder` does the work on any ``nn.Module`` driven by any loop (five calls per
step); :class:`HealthMonitor` is the Lightning callback around it, usable in any Lightning
project::

    trainer = lightning.Trainer(callbacks=[HealthMonitor(folder="runs/x/health")])

Every step costs one read of the loss (a device sync on accelerators) so that NaN/Inf is caught
at the step it appears. Every ``k``-th step is *sampled*: forward hooks are installed for that
step only (and removed after it), gradient norms are read before the optimizer step, and the
parameters are copied so the update-to-weight ratio comes from the change the optimizer actually
made (Karpathy's ~1e-3 rule of thumb). ``k`` adapts: after each sample the monitor compares its
own measured cost with the mean step time and picks the smallest ``k`` that keeps the overhead
under ``target_overhead`` (5 % by default).

When the loss turns non-finite the monitor replays that step's forward pass once, with hooks on
every module, to name the first module whose output went NaN/Inf and why (its input, its weights,
or the op itself), then stops training (``stop_on_nonfinite``) instead of crashing.
"""

from __future__ import annotations

import json
import math
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from .detectors import Detector, Verdict, make_detectors
from .state import HealthState

# Activation modules whose outputs we can interpret. 'dead' = a unit never outputs > 0;
# 'saturation' = the output sits where the derivative is below ~0.02.
DEAD_KINDS = {nn.ReLU: "relu", nn.ReLU6: "relu6"}
SATURATING_KINDS = {nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.Hardsigmoid: "hardsigmoid",
                    nn.Hardtanh: "hardtanh"}
OTHER_ACTS = (nn.LeakyReLU, nn.PReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Mish, nn.Hardswish,
              nn.Softplus, nn.SELU, nn.CELU, nn.Softmax, nn.LogSoftmax)
# Layers that compute an affine map of their input (used to find networks without any
# non-linearity) and the normalisations that may sit between them.
WEIGHT_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d,
                nn.ConvTranspose2d, nn.ConvTranspose3d)
NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm, nn.GroupNorm)


def _first_tensor(value):
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)) and value:
        return _first_tensor(value[0])
    return None


def _ever_active(y: torch.Tensor) -> torch.Tensor:
    """Per unit, whether it is > 0 anywhere in the batch. Units: features of (N, F), channels of
    (N, C, ...) (PyTorch's layout); a (N,) or scalar output is one unit."""
    if y.dim() < 2:
        return (y > 0).any().reshape(1)
    return (y > 0).transpose(0, 1).reshape(y.shape[1], -1).any(1)


class HealthRecorder:
    """Measures one model during training. ``attach(model)`` once, then per step::

        rec.begin_step()                      # before the forward pass
        rec.after_loss(loss, replay)          # after the loss, before backward
        rec.before_optimizer_step()           # after backward, before optimizer.step()
        rec.end_step()                        # after optimizer.step()

    and ``rec.validation(val_loss)`` after each validation pass, ``rec.finish(folder)`` at the end.
    ``replay`` is a callable that reruns the step's forward pass (used once, on the first NaN).
    """

    def __init__(self, *, every: int = 10, target_overhead: float = 0.05, min_every: int = 1,
                 max_every: int = 1000, dead_window: int = 4, detectors=None,
                 thresholds: dict | None = None, expected_frozen: tuple[str, ...] = ()) -> None:
        self.every = every                      # initial sampling interval, steps
        self.target_overhead = target_overhead  # monitor time / training time
        self.min_every, self.max_every = min_every, max_every
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
        self._modules: dict[str, nn.Module] = {}
        self._params: dict[str, list[nn.Parameter]] = {}
        self._watch: dict[str, nn.Module] = {}
        self._outputs: list[nn.Module] = []
        self._handles: list = []
        self._next_sample = 0
        self._sampling = False
        self._ordered = False
        self._active: dict[str, deque] = {}
        self._row: dict[str, dict[str, float]] = {}
        self._exec: list[tuple] = []        # weight/norm layers run this step, in order
        self._exec_order: list[str] = []    # every watched layer run this step, in order
        self._last_output: torch.Tensor | None = None
        self._input_seen = False
        self._snapshot: dict[str, list[torch.Tensor]] | None = None
        self._cost = 0.0                 # monitor seconds spent on the current step
        self._step_start: float | None = None
        self._step_time: float | None = None   # EMA of unsampled step time, seconds
        self._step_cost: float | None = None   # EMA of the monitor's cost on unsampled steps

    # ------------------------------------------------------------------ discovery ----------
    def attach(self, model: nn.Module) -> None:
        """Find the layers of ``model``: modules owning parameters, and activation modules."""
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
            if kind or params:  # watched: activations and every layer with parameters
                st.act_layers.append(label)
                self._watch[label] = m
                if kind:
                    st.act_kinds[label] = kind
            self._modules[label] = m
        # the model's output: the last of the root's direct children to finish its forward
        self._outputs = [m for _, m in model.named_children()
                         if not isinstance(m, nn.modules.loss._Loss)]

    # ------------------------------------------------------------------ the step -----------
    def begin_step(self) -> None:
        self._step_start = time.perf_counter()
        self._cost = 0.0
        step = self.state.step + 1
        self._sampling = step >= self._next_sample
        if self._sampling:
            t0 = time.perf_counter()
            self._install()
            self._cost += time.perf_counter() - t0

    def after_loss(self, loss: torch.Tensor, replay: Callable[[], object] | None = None) -> bool:
        """Record the loss; on the first non-finite loss locate its origin. Returns False when
        the loss is non-finite (the caller may stop)."""
        t0 = time.perf_counter()
        value = float(loss.detach())
        self.state.losses.append(value)
        ok = math.isfinite(value)
        if not ok and self.state.nonfinite is None:
            self._remove()
            self.state.nonfinite = self._locate(replay) | {"step": self.state.step,
                                                           "loss": str(value)}
            if self._sampling:
                self._install()
        self._cost += time.perf_counter() - t0
        return ok

    def before_optimizer_step(self) -> None:
        if not self._sampling or self.model is None:
            return
        t0 = time.perf_counter()
        self._order_layers()
        grads, weights = [], []
        for layer in self.state.param_layers:
            ps = self._params[layer]
            gs = [p.grad.detach() for p in ps if p.grad is not None]
            grads.append(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float())
                                                                for g in gs])) if gs else None)
            weights.append(torch.linalg.vector_norm(torch.stack(
                [torch.linalg.vector_norm(p.detach().float()) for p in ps])))
        values = torch.stack([g if g is not None else torch.tensor(math.nan, device=w.device)
                              for g, w in zip(grads, weights, strict=False)] + weights).tolist()  # one sync
        n = len(self.state.param_layers)
        self._row["grad_norm"] = dict(zip(self.state.param_layers, values[:n], strict=False))
        self._row["weight_norm"] = dict(zip(self.state.param_layers, values[n:], strict=False))
        bad = [p for p, g in self._row["grad_norm"].items() if not math.isnan(g) and not math.isfinite(g)]
        if bad and self.state.nonfinite is None:
            # backward runs from the output: the last layer in forward order is nearest the cause
            self.state.nonfinite = {"step": self.state.step, "layer": bad[-1], "cause": "gradient",
                                    "detail": f"non-finite gradient in {len(bad)} layers, "
                                              f"nearest the output '{bad[-1]}'", "builtin": True}
        self._snapshot = {layer: [p.detach().clone() for p in self._params[layer]]
                          for layer in self.state.param_layers}
        self._cost += time.perf_counter() - t0

    def end_step(self) -> list[Verdict]:
        """Finish the step; returns the verdicts first raised at this step."""
        if not self._sampling:
            self._close_step()
            return []
        t0 = time.perf_counter()
        self._remove()
        st = self.state
        ratios = {}
        if self._snapshot is not None:
            for layer, before in self._snapshot.items():
                delta = torch.sqrt(sum(((p.detach() - b).float() ** 2).sum()
                                       for p, b in zip(self._params[layer], before, strict=False)))
                ratios[layer] = delta
            values = torch.stack(list(ratios.values())).tolist() if ratios else []
            ratios = dict(zip(ratios, values, strict=False))
            for layer in ratios:
                w = self._row["weight_norm"].get(layer, math.nan)
                ratios[layer] = ratios[layer] / w if w > 0 else math.nan
            self._row["update_ratio"] = ratios
        self._snapshot = None
        st.sample_steps.append(st.step)
        st.every.append(self.every)
        for name in st.series:
            keys = st.param_layers if name in ("grad_norm", "weight_norm", "update_ratio") else st.act_layers
            row = self._row.get(name, {})
            st.series[name].append([float(row.get(k, math.nan)) for k in keys])
        st.output_is_probability.append(self._judge_output())
        st.linear_chain.append(self._linear_chain())
        self._row, self._exec = {}, []
        new = self.run_detectors()
        self._cost += time.perf_counter() - t0
        self._adapt()
        self._next_sample = st.step + self.every
        self._close_step()
        return new

    def _close_step(self) -> None:
        """Book the step's time. Measured from begin_step to end_step (forward, backward,
        optimizer step) so that validation passes and data loading between steps never count as
        step time: that keeps the estimate of the step time, and so the sampling, conservative."""
        if self._step_start is None:
            return
        took = time.perf_counter() - self._step_start
        self._step_start = None
        self.state.train_seconds += took
        self.state.monitor_seconds += self._cost
        if not self._sampling:   # an unsampled step: its time is the training's own
            plain = max(took - self._cost, 1e-9)
            self._step_time = plain if self._step_time is None else 0.8 * self._step_time + 0.2 * plain
            # the per-step cost (reading the loss) is paid on every step
            self._step_cost = self._cost if self._step_cost is None else 0.8 * self._step_cost + 0.2 * self._cost
        self._cost = 0.0

    def validation(self, val_loss: float, epoch: int, train_loss: float | None = None) -> list[Verdict]:
        """Record one validation pass; ``train_loss`` defaults to the mean loss since the last."""
        st = self.state
        if train_loss is None:
            start = st.validation[-1]["step"] + 1 if st.validation else 0
            recent = st.losses[start:]
            train_loss = sum(recent) / len(recent) if recent else math.nan
        st.validation.append({"step": st.step, "epoch": epoch, "train_loss": float(train_loss),
                              "val_loss": float(val_loss)})
        return self.run_detectors()

    def run_detectors(self) -> list[Verdict]:
        new = []
        for d in self.detectors:
            if d.name in self.fired:
                continue
            v = d.check(self.state)
            if v is not None:
                self.fired.add(d.name)
                self.events.append(v)
                new.append(v)
                if self.on_event:
                    self.on_event(v)
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
            "final_every": self.every, "target_overhead": self.target_overhead,
            "measured_overhead": self.overhead,
            "detectors": {d.name: {"rule": d.rule, "thresholds": d.t} for d in self.detectors},
        }, indent=2))

    @property
    def overhead(self) -> float:
        """Monitor seconds / training seconds without the monitor, so far."""
        st = self.state
        base = st.train_seconds - st.monitor_seconds
        return st.monitor_seconds / base if base > 0 else math.nan

    # ------------------------------------------------------------------ internals ----------
    def _adapt(self) -> None:
        if self._step_time is None:
            return
        # aim at half the target, after the part every step pays anyway: the rest is for what
        # the monitor cannot time itself (Lightning's dispatch of its hooks, ~30 us a step,
        # which is 1-2 % of a 2 ms step of a tiny model)
        budget = 0.5 * self.target_overhead * self._step_time - (self._step_cost or 0.0)
        need = math.ceil(self._cost / max(budget, 1e-3 * self._step_time))
        self.every = max(self.min_every, min(self.max_every, need))

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

    def _install(self) -> None:
        self._exec_order, self._exec, self._input_seen = [], [], False
        for label, m in self._watch.items():
            self._handles.append(m.register_forward_hook(self._hook(label, m)))
        for m in self._outputs:
            self._handles.append(m.register_forward_hook(self._output_hook))

    def _remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def _hook(self, label: str, module: nn.Module):
        kind = self.state.act_kinds.get(label)
        is_weight = isinstance(module, WEIGHT_TYPES)
        is_norm = isinstance(module, NORM_TYPES)
        has_params = label in self._params

        def hook(mod, inputs, output):
            t0 = time.perf_counter()
            y = _first_tensor(output)
            x = _first_tensor(inputs)
            self._exec_order.append(label)
            if y is not None and y.is_floating_point() and y.numel():
                yd = y.detach()
                row = self._row.setdefault("act_mean", {})
                if label not in row:  # a module called twice per step: keep its first call
                    yf = yd.float()
                    std, mean = torch.std_mean(yf) if yf.numel() > 1 else (yf.new_zeros(()), yf.mean())
                    stats = [mean, std]
                    if kind in ("relu", "relu6"):
                        active = _ever_active(yd)
                        stats.append(self._dead_fraction(label, active))
                    elif kind in ("sigmoid", "hardsigmoid"):
                        stats.append(((yd < 0.01) | (yd > 0.99)).float().mean())
                    elif kind in ("tanh", "hardtanh"):
                        stats.append((yd.abs() > 0.99).float().mean())
                    values = torch.stack([s.float().reshape(()) for s in stats]).tolist()
                    row[label] = values[0]
                    self._row.setdefault("act_std", {})[label] = values[1]
                    if kind in ("relu", "relu6"):
                        self._row.setdefault("dead_fraction", {})[label] = values[2]
                    elif len(values) > 2:
                        self._row.setdefault("saturation", {})[label] = values[2]
                    if (is_weight or is_norm) and x is not None and x.is_floating_point():
                        self._exec.append((label, is_weight, x.data_ptr(), float(x.detach().float().mean()),
                                           y.data_ptr(), values[0]))
                    if has_params and not self._input_seen and x is not None \
                            and x.is_floating_point() and x.numel() > 1:
                        # the network input as the first layer with weights sees it (after
                        # reshapes); a network that starts with a norm layer scales it itself
                        self._input_seen = True
                        if not is_norm:
                            s, m = torch.std_mean(x.detach().float())
                            self.state.input_stats.append((float(m), float(s)))
            self._cost += time.perf_counter() - t0

        return hook

    def _output_hook(self, mod, inputs, output):
        # keep a reference only: the last of these to finish is the model's output, judged once
        # in end_step
        self._last_output = _first_tensor(output)

    def _judge_output(self) -> bool:
        """Whether the model's output rows are probabilities (in [0, 1], summing to 1)."""
        y, self._last_output = self._last_output, None
        if y is None or not y.is_floating_point() or y.dim() != 2 or y.shape[1] < 2:
            return False
        yd = y.detach()
        return bool((yd.min() >= 0) & (yd.max() <= 1) & ((yd.sum(1) - 1).abs().max() < 1e-3))

    def _dead_fraction(self, label: str, active: torch.Tensor) -> torch.Tensor:
        window = self._active.setdefault(label, deque(maxlen=self.dead_window))
        if window and window[-1].shape != active.shape:
            window.clear()
        window.append(active)
        ever = window[0].clone()
        for a in list(window)[1:]:
            ever |= a
        return 1.0 - ever.float().mean()

    def _linear_chain(self) -> list[str]:
        """The weight layers, if each one's input is exactly the previous weight/norm layer's
        output (same storage and same mean: nothing, not even an in-place ReLU, came between)."""
        ex = self._exec
        if sum(1 for e in ex if e[1]) < 2 or len(set(self._exec_order)) != len({e[0] for e in ex}):
            return []  # fewer than two weight layers, or something else (activation, RNN) ran
        for prev, cur in zip(ex[:-1], ex[1:], strict=False):
            same_storage = cur[2] == prev[4]
            same_values = abs(cur[3] - prev[5]) <= 1e-5 * (1 + abs(prev[5]))
            if not (same_storage and same_values):
                return []
        return [e[0] for e in ex if e[1]]

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
        if not found:
            return {"layer": "", "cause": "loss", "builtin": True,
                    "detail": "every module's output is finite: NaN/Inf arose in functional code "
                              "of forward/training_step or in the loss"}
        if found.get("cause") == "input":
            first = next(iter(self._modules), "")
            if found["layer"] == first or found["layer"] == self.state.param_layers[0]:
                found["detail"] = "the input batch holds NaN/Inf"
        return found


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
