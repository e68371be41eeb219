"""The detectors' cheaper reads (memoised or written-out numpy) against the expressions they
replace (the oracle), after every appended sample, with nan/inf in the data and after the
series are replaced; and the rules that skip work give the verdict the full computation gives."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from torch import nn

from archlab.diagnose import HealthRecorder
from archlab.diagnose import detectors as D
from archlab.diagnose.baselines import _progress, all_finite, finite_losses, median, progress
from archlab.diagnose.state import HealthState


def _same(a, b) -> bool:
    return np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True)


def test_median_equals_numpy():
    rng = np.random.default_rng(0)
    cases = [[1, 2], [3], [2, 1, 7, 7], [0.0, -0.0], [math.inf, 1.0], [-math.inf, math.inf],
             [1.0, math.nan, 2.0], [5, 3, 9, 1], np.array([1.5, 2.5], dtype=np.float32)]
    for n in range(1, 40):
        v = rng.lognormal(0, 3, n)
        cases += [v, v.astype(np.float32), rng.integers(0, 50, n), list(v)]
        if n > 2:
            w = v.copy()
            w[rng.integers(0, n)] = math.nan
            cases.append(w)
    for c in cases:
        want = float(np.median(c))
        got = median(c)
        assert (math.isnan(want) and math.isnan(got)) or got == want, (c, got, want)
    assert math.isnan(median([]))


def _grow(seed: int = 0):
    """A state grown sample by sample (nan and inf in rows and losses; at sample 60 the series
    become new lists, as HealthState.load makes), yielded after each sample."""
    rng = random.Random(seed)
    st = HealthState(param_layers=["a", "b", "c", "d"])
    st.init_scale = {"a": 1.0, "b": 0.5, "c": math.nan}
    for i in range(120):
        if i == 60:
            for k in ("grad_norm", "weight_norm", "update_ratio"):
                st.series[k] = [list(r) for r in st.series[k][:30]]
            st.losses = list(st.losses)
            st.sample_steps = list(st.sample_steps[:30])
        for k in ("grad_norm", "weight_norm", "update_ratio"):
            row = [rng.lognormvariate(0, 2) if rng.random() > 0.2 else math.nan for _ in range(4)]
            if rng.random() < 0.1:
                row = [0.0 if not math.isnan(x) else x for x in row]
            if rng.random() < 0.03:
                row[0] = math.inf
            st.series[k].append(row)
        st.sample_steps.append(len(st.sample_steps) * 3)
        for _ in range(rng.randint(1, 4)):
            st.losses.append(rng.random() if rng.random() > 0.05 else rng.choice([math.nan, math.inf]))
        yield st


def test_incremental_reads_equal_numpy():
    for st in _grow():
        g = np.array(st.series["grad_norm"], dtype=np.float64)
        w = np.array(st.series["weight_norm"], dtype=np.float64)
        u = np.array(st.series["update_ratio"], dtype=np.float64)
        with np.errstate(invalid="ignore"):
            assert _same(D.total_grad_norms(st), np.sqrt(np.nansum(g ** 2, axis=1)))
        assert _same(D._no_gradient_rows(st), D.loss_gave_no_gradient(g))
        assert _same(D._steps_array(st), np.asarray(st.sample_steps))
        for k in (1, 2, 3, 500):
            assert _same(D._effective_tail(st, k), D.effective_update_ratios(st, k))
        assert D.init_ratios(st) == {p: float(w[0, i] / st.init_scale[p]) for i, p in
                                     enumerate(st.param_layers) if p in st.init_scale
                                     and math.isfinite(st.init_scale[p]) and w[0, i] > 0}
        assert _same(D.init_scales(st), [st.init_scale.get(p, math.nan) for p in st.param_layers])
        losses = np.array(st.losses)
        finite = losses[np.isfinite(losses)]
        count, tail = finite_losses(st, 5)
        assert count == finite.size and _same(tail, finite[-5:])
        assert all_finite(st) == bool(np.all(np.isfinite(losses)))
        st.reference = {"classes": 3}
        p = progress(st)
        q = _progress(st, None, D.loss_reference(st))
        assert p == q or (p is None and q is None)


def test_finite_count_follows_late_penalties():
    """A penalty reported after its step's loss was read (one that makes the data term
    non-finite, too) is seen by the kept count and by the remembered progress."""
    st = HealthState()
    st.reference = {"classes": 3}
    for i in range(40):
        st.losses.append(1.0 + 0.01 * i)
        if hasattr(st, "record_penalty") and i in (10, 30):
            st.record_penalty(math.inf if i == 30 else 0.5, degree=2, step=i - 3)
        losses = st.loss_array()
        finite = losses[np.isfinite(losses)]
        count, tail = finite_losses(st, 5)
        assert count == finite.size and _same(tail, finite[-5:]), i
        assert all_finite(st) == bool(np.all(np.isfinite(losses)))
        p, q = progress(st), _progress(st, None, D.loss_reference(st))
        assert p == q or (p is None and q is None), i


def test_init_ratios_is_a_copy():
    st = next(iter(_grow()))
    r = D.init_ratios(st)
    r["a"] = -1.0
    assert D.init_ratios(st)["a"] != -1.0


def _oscillating_reference(window, t):
    """The rule as written before the early exits: the full null distribution first."""
    ev = D.oscillation(window, int(t["chunk"]), t["z"], t["rise"])
    half = len(window) // 2
    first, last = float(np.median(window[:half])), float(np.median(window[half:]))
    return not (len(ev["rises"]) < t["rises"] or last < (1 - t["progress"]) * first)


def test_oscillating_early_exits_keep_the_verdict():
    det = D.Oscillating()
    rng = np.random.default_rng(1)
    fired = 0
    for i in range(300):
        n = 80 + int(rng.integers(0, 40))
        base = rng.lognormal(0, 1) * (1 + 0.5 * np.sin(np.arange(n) / rng.uniform(2, 12)) * rng.uniform(0, 1))
        losses = base * rng.lognormal(0, rng.uniform(0.01, 0.6), n) * np.linspace(1, rng.uniform(0.3, 1.2), n)
        st = HealthState()
        st.losses = losses.tolist()
        want = _oscillating_reference(losses[-80:], det.t)
        got = det.check(st) is not None
        assert got == want, i
        fired += got
    assert 0 < fired < 300   # both outcomes were exercised


def test_saturation_and_dead_unit_early_exits_keep_the_verdict():
    rng = np.random.default_rng(2)
    sat, dead = D.Saturated(), D.DyingRelu()
    for i in range(300):
        st = HealthState(act_layers=["x", "y", "z"])
        for _ in range(int(rng.integers(1, 6))):
            row = rng.uniform(0, 1, 3) ** rng.uniform(0.2, 4)
            row[rng.random(3) < 0.3] = math.nan
            st.series["saturation"].append(row.tolist())
            st.series["dead_fraction"].append(row.tolist())
            st.sample_steps.append(len(st.sample_steps))
        s = np.array(st.series["saturation"][-3:])
        count = (~np.isnan(s)).sum(axis=0)
        with np.errstate(invalid="ignore"):
            mean = np.where(count > 0, np.nansum(s, axis=0) / np.maximum(count, 1), math.nan)
        assert (sat.check(st) is not None) == bool(np.any(mean > sat.t["fraction"])), i
        # the dead-unit rule stops early only when the last row has no layer over the bar
        if dead.check(st) is not None:
            assert np.any(np.nan_to_num(np.array(st.series["dead_fraction"][-1])) > 0.5)


def test_label_probe_count_follows_small_batches():
    """The probe's example count (kept, no longer summed every sample) equals the examples
    held, with batches smaller than the examples taken per sample."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    rec = HealthRecorder()
    rec.attach(model, opt)
    for step in range(200):
        x, y = torch.randn(3, 4), torch.randint(0, 3, (3,))
        rec.begin_step(targets=y)
        loss = nn.functional.cross_entropy(model(x), y)
        rec.after_loss(loss)
        opt.zero_grad()
        loss.backward()
        rec.before_optimizer_step()
        opt.step()
        rec.end_step()
        assert rec._label_probe.held == sum(len(v) for v in rec._label_probe.y)
    assert rec._label_probe.held > 0 and rec.state.label_probe   # the probe ran on them


@pytest.mark.parametrize("batch", [3, 32])
def test_unsampled_loss_read_equals_float(batch):
    """The loss read on every step (item(), without the detached copy) records the value
    float(loss.detach()) gives."""
    torch.manual_seed(0)
    model = nn.Linear(5, 2)
    rec = HealthRecorder()
    rec.attach(model)
    for _ in range(20):
        x = torch.randn(batch, 5)
        rec.begin_step()
        loss = model(x).pow(2).mean()
        rec.after_loss(loss)
        assert rec.state.losses[-1] == float(loss.detach())
        loss.backward()
        rec.before_optimizer_step()
        rec.end_step()
