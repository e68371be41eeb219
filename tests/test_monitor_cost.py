"""The monitor's cheap sample path against a straightforward reference computation (an oracle),
and its cost in counted tensor ops (never in time)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from archlab.diagnose import HealthRecorder
from archlab.diagnose import monitor as monitor_module
from archlab.diagnose.sampling import ACT_EXAMPLES
from archlab.diagnose.structure import output_ranges

KINDS = {nn.ReLU: "relu", nn.Sigmoid: "sigmoid", nn.Tanh: "tanh"}


def mlp_model():
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 10), nn.ReLU(), nn.Linear(10, 6), nn.Sigmoid(),
                         nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))


def cnn_model():
    # a small feature map (reduced with the other small outputs), a large one (> FUSE_LIMIT
    # values in 16 examples: its own std_mean), batch norm, a frozen bias (no gradient)
    m = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Conv2d(4, 80, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                      nn.Flatten(), nn.Linear(80, 3))
    m[0].bias.requires_grad_(False)
    return m


class Reference:
    """Per-module forward hooks that record what the monitor should measure, the plain way:
    torch.std_mean of each watched output's first 16 examples, active units per ReLU, tails per
    sigmoid/tanh; per-layer norms from .grad and the weights in float64."""

    def __init__(self, model: nn.Module, dead_window: int = 4):
        self.model, self.window, self.dead_window = model, [], dead_window
        self.layers = {n: m for n, m in model.named_modules() if n and (
            list(m.parameters(False)) or type(m) in KINDS or isinstance(m, nn.BatchNorm2d))}
        self.rows: list[dict] = []
        for name, m in self.layers.items():
            m.register_forward_hook(lambda mod, i, o, name=name: self._hook(name, mod, i, o))
        self.current: dict = {}

    def _hook(self, name, mod, inputs, out):
        y = out.detach()[:ACT_EXAMPLES].float()
        sd, mean = torch.std_mean(y)
        self.current.setdefault("mean", {})[name] = float(mean)
        self.current.setdefault("std", {})[name] = float(sd)
        if type(mod) is nn.ReLU:
            units = (y > 0).transpose(0, 1).reshape(y.shape[1], -1).any(1)
            self.current.setdefault("active", {})[name] = units
        if type(mod) in (nn.Sigmoid, nn.Tanh):
            tails = ((y < 0.01) | (y > 0.99)) if type(mod) is nn.Sigmoid else y.abs() > 0.99
            self.current.setdefault("saturation", {})[name] = float(tails.float().mean())
        if "input" not in self.current and list(mod.parameters(False)):
            sd, mean = torch.std_mean(inputs[0].detach()[:ACT_EXAMPLES].float())
            self.current["input"] = (float(mean), float(sd))

    def norms(self, what):
        out = {}
        for name, m in self.layers.items():
            ps = list(m.parameters(False))
            if not ps:
                continue
            if what == "grad":
                gs = [p.grad for p in ps if p.grad is not None]
                out[name] = math.sqrt(sum(float(g.double().pow(2).sum()) for g in gs)) if gs else math.nan
            else:
                out[name] = math.sqrt(sum(float(p.detach().double().pow(2).sum()) for p in ps))
        return out

    def dead(self):
        self.window = (self.window + [self.current.get("active", {})])[-self.dead_window:]
        return {k: 1.0 - float(torch.stack([w[k] for w in self.window]).any(0).float().mean())
                for k in self.current.get("active", {})}


def run_both(model, x, y, steps, *, lr=0.05):
    """Train with the recorder (every step sampled) and the reference side by side."""
    ref = Reference(model)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    rec = HealthRecorder(every=1, detectors=[])
    rec.attach(model, optimizer=opt)
    expected = []
    for _ in range(steps):
        ref.current = {}
        rec.begin_step(targets=y)
        out = model(x)
        seen, ref.current = ref.current, {}   # the monitor's own probes run the model again
        loss = nn.functional.cross_entropy(out, y)
        rec.after_loss(loss)
        opt.zero_grad()
        loss.backward()
        rec.before_optimizer_step()
        before = {n: [p.detach().clone() for p in m.parameters(False)] for n, m in ref.layers.items()}
        g, w = ref.norms("grad"), ref.norms("weight")
        opt.step()
        upd = {n: math.sqrt(sum(float((p.detach().double() - b.double()).pow(2).sum())
                                for p, b in zip(m.parameters(False), before[n], strict=True)))
               for n, m in ref.layers.items() if before[n]}
        rec.end_step()
        ref.current = seen
        expected.append({"grad_norm": g, "weight_norm": w,
                         "update_ratio": {n: upd[n] / w[n] for n in upd},
                         "act_mean": ref.current["mean"], "act_std": ref.current["std"],
                         "dead_fraction": ref.dead(), "saturation": ref.current.get("saturation", {}),
                         "input": ref.current["input"], "ranges": output_ranges(out)})
    return rec.state, expected


@pytest.mark.parametrize("make,shape", [(mlp_model, (40, 12)), (cnn_model, (20, 1, 8, 8))])
def test_cheap_sample_path_records_the_reference_statistics(make, shape):
    torch.manual_seed(0)
    model = make()
    x = torch.randn(*shape) * 2
    y = torch.randint(0, 3, (shape[0],))
    st, expected = run_both(model, x, y, 6)
    assert st.sample_steps == list(range(6))
    for row, exp in enumerate(expected):
        for series, layers in (("grad_norm", st.param_layers), ("weight_norm", st.param_layers),
                               ("update_ratio", st.param_layers), ("act_mean", st.act_layers),
                               ("act_std", st.act_layers), ("dead_fraction", st.act_layers),
                               ("saturation", st.act_layers)):
            got = dict(zip(layers, st.series[series][row], strict=True))
            want = exp[series]
            measured = {k: v for k, v in got.items() if not math.isnan(v)}
            assert set(measured) == {k for k, v in want.items() if not math.isnan(v)}, series
            for k, v in want.items():
                assert got[k] == pytest.approx(v, rel=1e-4, abs=1e-6), (series, k, row)
        assert st.input_stats[row] == pytest.approx(exp["input"], rel=1e-5, abs=1e-6)
        assert (st.output_is_probability[row], st.output_in_unit_range[row]) == exp["ranges"]
    counts = torch.bincount(y).tolist()
    assert st.targets["counts"] == [c * len(expected) for c in counts]
    assert st.targets["batch_classes"] == [sum(1 for c in counts if c)] * len(expected)


def test_flat_buffer_and_per_parameter_paths_agree(monkeypatch):
    """The flat [grads | weights] buffer (one segment reduction) and the per-parameter
    _foreach_norm path (mixed dtypes, sparse gradients, large models) record the same norms."""
    def record():
        torch.manual_seed(1)
        model = mlp_model()
        x, y = torch.randn(40, 12), torch.randint(0, 3, (40,))
        return run_both(model, x, y, 4)[0]

    flat = record()
    monkeypatch.setattr(monitor_module, "FLAT_LIMIT", 0)
    per_param = record()
    for name in ("grad_norm", "weight_norm", "update_ratio"):
        for a, b in zip(flat.series[name], per_param.series[name], strict=True):
            assert a == pytest.approx(b, rel=1e-5)


def test_probabilities_and_negative_labels_read_with_the_sample():
    """The output's range (structure.output_ranges) and the label counts are read in the
    sample's one transfer; labels below 0 (an ignore index) are skipped as before."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.Softmax(dim=1))
    rec = HealthRecorder(every=1, detectors=[])
    rec.attach(model)
    x = torch.randn(8, 5)
    for targets in (torch.tensor([0, 1, 2, 3, 3, 2, 1, 0]), torch.tensor([-100, 1, 1, 1, 1, 1, 1, 1])):
        rec.begin_step(targets=targets)
        out = model(x)
        loss = nn.functional.nll_loss(out.log(), targets.clamp_min(0))
        rec.after_loss(loss)
        loss.backward()
        rec.before_optimizer_step()
        rec.end_step()
    assert rec.state.output_is_probability == [True, True]
    assert rec.state.output_in_unit_range == [True, True]
    assert rec.state.targets["counts"] == [2, 2, 2, 2]


class _Ops(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.n = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.n += 1
        return func(*args, **(kwargs or {}))


def _ops_of_one_step(model, rec, x, y, opt):
    mode = _Ops()
    with mode:
        if rec:
            rec.begin_step(targets=y)
        loss = nn.functional.cross_entropy(model(x), y)
        if rec:
            rec.after_loss(loss)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if rec:
            rec.before_optimizer_step()
        opt.step()
        if rec:
            rec.end_step()
    return mode.n


def _sample_ops(depth: int) -> tuple[int, int]:
    torch.manual_seed(0)
    layers = [nn.Linear(12, 16), nn.ReLU()]
    for _ in range(depth - 1):
        layers += [nn.Linear(16, 16), nn.ReLU()]
    model = nn.Sequential(*layers, nn.Linear(16, 3))
    x, y = torch.randn(32, 12), torch.randint(0, 3, (32,))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    rec = HealthRecorder(every=2, detectors=[])
    rec.attach(model, optimizer=opt)
    for _ in range(20):   # past the one-time work (affine test, layouts, first order)
        _ops_of_one_step(model, rec, x, y, opt)
    bare = _ops_of_one_step(model, None, x, y, opt)
    sampled = _ops_of_one_step(model, rec, x, y, opt) - bare      # step 20: sampled
    unsampled = _ops_of_one_step(model, rec, x, y, opt) - bare    # step 21: not sampled
    return sampled, unsampled


def test_sample_cost_in_ops_does_not_grow_with_depth():
    """An unsampled step adds the loss read only; a sampled step of a deep narrow MLP adds a
    fixed number of tensor ops whatever its depth (the statistics are fused, not per layer)."""
    shallow, deep = _sample_ops(4), _sample_ops(16)
    assert shallow[1] == deep[1] == 1      # the one read of the loss (item, no detached copy)
    assert shallow[0] == deep[0], (shallow, deep)


def test_incremental_state_statistics_equal_numpy():
    """HealthState's incremental primitives (a row reduced once, a window computed once) equal
    the numpy expressions they replace on the whole series, after every appended sample, with
    nan in the rows and in the losses, and after the series is replaced by a new list."""
    import random

    import numpy as np

    from archlab.diagnose.state import HealthState

    st = HealthState(param_layers=["a", "b", "c", "d"])
    rng = random.Random(0)
    for i in range(140):
        if i == 100:   # a new list (as HealthState.load makes): everything starts again
            st.series["grad_norm"] = [list(r) for r in st.series["grad_norm"][:50]]
            st.losses = list(st.losses)
        st.series["grad_norm"].append([rng.lognormvariate(0, 2) if rng.random() > 0.25 else math.nan
                                       for _ in range(4)])
        st.losses.append(rng.random() if i % 37 != 5 else math.nan)
        ref = np.array(st.series["grad_norm"], dtype=np.float64)
        assert np.array_equal(st.array("grad_norm"), ref, equal_nan=True)
        assert np.array_equal(st.array("grad_norm", 3), ref[-3:], equal_nan=True)
        assert np.array_equal(st.row_norms("grad_norm"), np.sqrt(np.nansum(ref ** 2, axis=1)))
        medians = [float(np.median(r[np.isfinite(r)])) if np.isfinite(r).any() else math.nan
                   for r in ref]
        assert np.array_equal(st.row_medians("grad_norm"), np.array(medians), equal_nan=True)
        losses = np.array(st.losses)
        assert np.array_equal(st.loss_array(), losses, equal_nan=True)
        end = len(losses) - 5
        for start, stop in ((max(0, end - 50), end), (0, 10), (-20, None), (3, 3)):
            part = losses[start:stop]
            part = part[np.isfinite(part)]
            want = float(np.median(part)) if part.size else math.nan
            got = st.loss_median(start, stop)
            assert got == want or (math.isnan(got) and math.isnan(want)), (i, start, stop)
        with pytest.raises(ValueError):   # read-only: a rule cannot corrupt the series
            st.array("grad_norm")[0, 0] = 1.0
    calls = []
    assert st.per_sample("x", lambda: calls.append(1) or 7) == 7
    assert st.per_sample("x", lambda: calls.append(1) or 8) == 7   # the same state: once
    st.losses.append(0.5)
    assert st.per_sample("x", lambda: calls.append(1) or 9) == 9   # a new step: again
    assert len(calls) == 2
