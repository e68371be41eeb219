"""A sample's large feature maps reduced once per tensor: an in-place ReLU returns its input, so a
batch norm's output and its ReLU's are one tensor (read after the forward pass), and the monitor
reduces it once; the deviations go into a buffer kept between samples. Oracles: torch.std_mean (float64)
of the tensor the forward pass left, and ``v - m`` computed directly; cost in counted ops."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from archlab.diagnose import HealthRecorder
from archlab.diagnose.sampling import (
    ACT_EXAMPLES,
    FUSE_LIMIT,
    ActivationSample,
    _aliases,
    _deviations,
)


def inplace_cnn() -> nn.Sequential:
    # two blocks conv -> batch norm -> in-place ReLU with maps above FUSE_LIMIT values in 16
    # examples (the one-by-one path), as mnist_cnn's blocks
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8),
                         nn.ReLU(inplace=True), nn.Conv2d(8, 8, 3, padding=1, bias=False),
                         nn.BatchNorm2d(8), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, 3))


class _Count(TorchDispatchMode):
    """Records each op's name, and the names of those on a tensor of more than FUSE_LIMIT
    values (a large feature map's)."""

    def __init__(self):
        super().__init__()
        self.names: list[str] = []
        self.large: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func.overloadpacket.__name__) + "." + func._overloadname
        self.names.append(name)
        if any(isinstance(a, torch.Tensor) and a.numel() > FUSE_LIMIT for a in args):
            self.large.append(name)
        return func(*args, **(kwargs or {}))


def _record(model, x, y, steps):
    """Every step sampled; per step the std_mean of each watched module's output as the forward
    pass left it (the oracle), and the recorder's state."""
    rec = HealthRecorder(every=1, detectors=[])
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    rec.attach(model, optimizer=opt)
    kept: dict = {}
    handles = [m.register_forward_hook(lambda mod, i, o, n=n: kept.__setitem__(n, o))
               for n, m in model.named_modules() if n]
    expected = []
    for _ in range(steps):
        kept.clear()
        rec.begin_step(targets=y)
        loss = nn.functional.cross_entropy(model(x), y)
        with torch.no_grad():   # after the forward pass: what an in-place ReLU left
            expected.append({n: tuple(float(v) for v in torch.std_mean(o[:ACT_EXAMPLES].double()))
                             for n, o in kept.items()})
        rec.after_loss(loss)
        opt.zero_grad()
        loss.backward()
        rec.before_optimizer_step()
        opt.step()
        rec.end_step()
    for h in handles:
        h.remove()
    return rec.state, expected


def test_aliased_outputs_record_the_statistics_of_the_tensor_left():
    torch.manual_seed(0)
    model = inplace_cnn()
    x, y = torch.randn(20, 1, 20, 20), torch.randint(0, 3, (20,))
    st, expected = _record(model, x, y, 4)
    for row, want in enumerate(expected):
        mean = dict(zip(st.act_layers, st.series["act_mean"][row], strict=True))
        std = dict(zip(st.act_layers, st.series["act_std"][row], strict=True))
        # (float32 two-pass moments against float64: rel 1e-4, as test_monitor_cost)
        for layer in ("1", "2", "4", "5"):   # the batch norms and their in-place ReLUs
            sd, m = want[layer]
            assert mean[layer] == pytest.approx(m, rel=1e-4, abs=1e-6), (row, layer)
            assert std[layer] == pytest.approx(sd, rel=1e-4, abs=1e-6), (row, layer)
        # one tensor: the batch norm's figures are its ReLU's, to the last digit
        assert (mean["1"], std["1"]) == (mean["2"], std["2"])
        assert (mean["4"], std["4"]) == (mean["5"], std["5"])
        assert not math.isnan(std["0"]) and std["0"] != std["1"]


def test_one_reduction_per_distinct_tensor_and_no_fresh_deviation_buffer():
    """Counted ops of the large-map reduction on a later sample: one mean per distinct tensor
    (6 watched maps, 4 tensors: per block the conv's, and the batch norm's = its ReLU's) and the
    deviations written into the kept buffer (sub.out), never a fresh ``v - m``."""
    torch.manual_seed(0)
    model = inplace_cnn()
    x, y = torch.randn(20, 1, 20, 20), torch.randint(0, 3, (20,))
    rec = HealthRecorder(every=1, detectors=[])
    rec.attach(model)
    seen: list[list[str]] = []
    reduce = ActivationSample.reduce

    def counted(self):
        mode = _Count()
        with mode:
            out = reduce(self)
        seen.append(mode.large)
        return out

    ActivationSample.reduce = counted
    try:
        for _ in range(3):
            rec.begin_step(targets=y)
            loss = nn.functional.cross_entropy(model(x), y)
            rec.after_loss(loss)
            loss.backward()
            rec.before_optimizer_step()
            rec.end_step()
    finally:
        ActivationSample.reduce = reduce
    names = seen[-1]   # the ops on large maps of the third sample
    assert names.count("mean.default") == 4, names
    assert names.count("sub.out") == 4, names
    assert "sub.Tensor" not in names, names
    assert names.count("amax.default") == 2, names   # the two ReLUs' units, as before


def test_aliases_and_deviations_against_the_direct_forms():
    a, b = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)
    assert _aliases([a, b]) is None
    unique, where = _aliases([a, a, b, a, b])
    assert unique[0] is a and unique[1] is b and len(unique) == 2
    assert where == [0, 0, 1, 0, 1]

    class Lay:
        pass

    lay = Lay()
    cl = torch.randn(4, 3, 8, 8).to(memory_format=torch.channels_last)
    for vs in ([a, b], [a, b], [a[:2], cl]):   # kept, reused, then made again (new shapes)
        ms = [v.mean() for v in vs]
        got = _deviations(lay, vs, ms)
        for g, v, m in zip(got, vs, ms, strict=True):
            want = v - m
            assert torch.equal(g, want) and g.stride() == want.stride()
        assert torch.equal(torch.stack(torch._foreach_norm(got)),
                           torch.stack(torch._foreach_norm([v - m for v, m in zip(vs, ms, strict=True)])))
    first = _deviations(lay, [a, b], [a.mean(), b.mean()])
    again = _deviations(lay, [a, b], [a.mean(), b.mean()])
    assert all(x.data_ptr() == y.data_ptr() for x, y in zip(first, again, strict=True))


def test_deviations_beyond_the_limit_are_not_kept(monkeypatch):
    from archlab.diagnose import sampling

    class Lay:
        pass

    lay = Lay()
    a = torch.randn(4, 3, 8, 8)
    monkeypatch.setattr(sampling, "SCRATCH_LIMIT", a.numel() - 1)
    got = _deviations(lay, [a], [a.mean()])
    assert torch.equal(got[0], a - a.mean()) and not hasattr(lay, "scratch")
    monkeypatch.setattr(sampling, "SCRATCH_LIMIT", a.numel())
    got = _deviations(lay, [a], [a.mean()])
    assert torch.equal(got[0], a - a.mean()) and hasattr(lay, "scratch")
