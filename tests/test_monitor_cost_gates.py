"""Cheaper detector reads against their direct forms (oracles), to the last digit: the per-layer
median without nan, the update-ratio memo kept per window, the order evidence reused while no
new batch arrives, and exploding_gradients' loss rule with its running baseline read only when
the peak can exceed it."""

from __future__ import annotations

import math

import numpy as np

from archlab.diagnose import detectors as D
from archlab.diagnose.baselines import finite_losses, loss_reference, running_baseline
from archlab.diagnose.order_evidence import _median_of_tally, _order_evidence, order_evidence
from archlab.diagnose.state import HealthState


def _median_rows_direct(a: np.ndarray) -> np.ndarray:
    """The per-column median of the non-nan values (nan for a column of nan), sorted in full."""
    out = np.full(a.shape[1], math.nan)
    for j in range(a.shape[1]):
        col = np.sort(a[:, j][~np.isnan(a[:, j])])
        if col.size:
            out[j] = 0.5 * (col[(col.size - 1) // 2] + col[col.size // 2])
    return out


def test_median_rows_equals_the_direct_median_with_and_without_nan():
    rng = np.random.default_rng(0)
    for i in range(3000):
        k, width = int(rng.integers(2, 7)), int(rng.integers(1, 20))
        a = rng.standard_normal((k, width)) * 10.0 ** float(rng.integers(-30, 30))
        kind = i % 4
        if kind == 1:
            a[rng.random(a.shape) < 0.3] = math.nan
        elif kind == 2:
            a[rng.random(a.shape) < 0.3] = rng.choice([math.inf, -math.inf])
        elif kind == 3:
            a[rng.random(a.shape) < 0.5] = 0.0
        got, want = D._median_rows(a), _median_rows_direct(a)
        assert got.dtype == np.float64 and got.shape == want.shape
        assert np.array_equal(got, want, equal_nan=True), (i, a)


def _state(rng, layers=6, samples=5) -> HealthState:
    names = [f"l{i}" for i in range(layers)]
    st = HealthState(param_layers=names)
    st.init_scale = {p: float(rng.uniform(0.5, 2)) for p in names}
    st.frozen = {p: bool(rng.random() < 0.15) for p in names}
    st.optimizer_params = {p: bool(rng.random() > 0.15) for p in names}
    for _ in range(samples):
        g = rng.uniform(0, 1, layers)
        g[rng.random(layers) < 0.2] = math.nan
        u = rng.uniform(0, 1e-2, layers)
        u[rng.random(layers) < 0.2] = 0.0
        st.series["grad_norm"].append(g.tolist())
        st.series["weight_norm"].append(rng.uniform(0.1, 3, layers).tolist())
        st.series["update_ratio"].append(u.tolist())
        st.sample_steps.append(len(st.sample_steps))
    return st


def test_update_ratio_per_window_equals_a_fresh_computation():
    rng = np.random.default_rng(1)
    for i in range(200):
        st = _state(rng, int(rng.integers(1, 9)), int(rng.integers(1, 7)))
        for samples in [2, 3, 2, 3, 1, 2]:   # the rules' windows, asked in turn
            med, per = D._update_ratio(st, samples)
            want_med, want_per = D._update_ratio_of(HealthState(**{
                k: getattr(st, k) for k in ("param_layers", "init_scale", "frozen",
                                            "optimizer_params", "series", "sample_steps")}),
                samples)
            assert (med == want_med) or (math.isnan(med) and math.isnan(want_med)), i
            assert list(per) == list(want_per) and all(per[p] == want_per[p] for p in per), i
        # the layers that learn, as the loop over the layers read them
        u = D._median_rows(D.effective_update_ratios(st, 2))
        g = D._median_rows(st.array("grad_norm", 2))
        ua = st.array("update_ratio", 2)
        never = np.all((ua == 0) | np.isnan(ua), axis=0)
        loop = [p for j, p in enumerate(st.param_layers) if not math.isnan(u[j]) and g[j] > 0
                and not st.frozen.get(p) and st.optimizer_params.get(p, True) and not never[j]]
        assert list(D._update_ratio(st, 2)[1]) == loop, i


def test_order_evidence_reused_only_while_the_labels_are_the_same():
    rng = np.random.default_rng(2)
    st = HealthState(output_width=4)
    st.targets.update({"kind": "classes", "counts": [0] * 4, "batch_classes": [], "batch_sizes": []})
    t = st.targets
    for i in range(60):
        b = int(rng.choice([16, 16, 9]))
        labels = rng.choice(4, size=b)
        for c in labels.tolist():
            t["counts"][c] += 1
        t["batch_classes"].append(len(set(labels.tolist())))
        t["batch_sizes"].append(b)
        st.sample_steps.append(i)
        st.losses.append(1.0)
        first = order_evidence(st)
        assert first == _order_evidence(st)
        st.losses.append(1.0)          # an unsampled step, then a validation pass: no new batch
        st.validation.append({"step": i})
        again = order_evidence(st)
        assert again == _order_evidence(st) and again is first
        if i == 30:                    # counts changed in place with no new batch: computed again
            t["counts"][0] += 50
            st.losses.append(1.0)      # (a later step: the per-sample memo asks again)
            assert order_evidence(st) == _order_evidence(st)
            assert order_evidence(st)["classes_seen"] == 4


def test_size_median_from_the_tally_is_numpy_median():
    rng = np.random.default_rng(3)
    for _ in range(1000):
        sizes = rng.choice(rng.integers(1, 300, 4), size=int(rng.integers(1, 90)))
        tally: dict[int, int] = {}
        for k in sizes.tolist():
            tally[k] = tally.get(k, 0) + 1
        got = _median_of_tally(tally, sizes.size)
        assert got == float(np.median(sizes)) and isinstance(got, float)


def _loss_rule_direct(det, st):
    """exploding_gradients' loss rule as written before the gate: the baseline always read."""
    losses = st.loss_array()
    ref = loss_reference(st)
    base = running_baseline(losses)
    count, tail = finite_losses(st, 5)
    if count >= 10 and ref is not None and ref.value > 0 and math.isfinite(base) and base > 0:
        return float(tail.max()) > det.t["loss_factor"] * max(ref.value, base)
    return False


def test_exploding_loss_rule_gate_keeps_the_verdict():
    rng = np.random.default_rng(4)
    fired = 0
    for i in range(400):
        det = D.Exploding()
        n = int(rng.integers(5, 120))
        losses = rng.lognormal(0, 0.3, n) * rng.choice([0.1, 1, 5, 30])
        if rng.random() < 0.5:   # a recent spike, of any size against the reference
            losses[-int(rng.integers(1, 5)):] *= rng.choice([3, 12, 40, 200])
        if rng.random() < 0.2:
            losses[int(rng.integers(0, n))] = math.nan
        st = HealthState(output_width=10)
        st.reference = {"classes": 10}
        st.losses = losses.tolist()
        want = _loss_rule_direct(det, st)
        v = det.check(st)
        got = v is not None and "loss blew up" in v.message
        assert got == want, (i, losses[-6:])
        fired += got
    assert 0 < fired < 400   # both outcomes were exercised


def _lr_decayed_direct(state, ratio=1e-3, min_steps=20, min_fraction=0.1):
    """lr_decayed as written before its first read of the latest rate."""
    if not state.lr or not (state.initial_lr > 0):
        return None
    lr = np.array(state.lr, dtype=np.float64)
    steps = np.array(state.sample_steps[:len(lr)])
    low = lr < ratio * state.initial_lr
    if not low[-1]:
        return None
    since = int(steps[np.flatnonzero(~low)[-1] + 1]) if (~low).any() else 0
    span = state.step - since
    if span < min_steps or span < min_fraction * (state.step + 1):
        return None
    return {"initial_lr": state.initial_lr, "current_lr": float(lr[-1]), "below_since_step": since}


def test_lr_decayed_reads_the_latest_rate_first_and_keeps_the_value():
    rng = np.random.default_rng(5)
    found = 0
    for i in range(500):
        n = int(rng.integers(1, 40))
        st = HealthState()
        st.sample_steps = sorted(rng.choice(400, size=n, replace=False).tolist())
        st.losses = [1.0] * (st.sample_steps[-1] + int(rng.integers(1, 200)))
        lr = (1e-2 * np.cumprod(rng.choice([1.0, 1.0, 0.1, 1e-3], size=n))).tolist()
        if rng.random() < 0.2:
            lr[int(rng.integers(0, n))] = math.nan
        st.lr, st.initial_lr = lr, 1e-2
        want = _lr_decayed_direct(st)
        assert D.lr_decayed(st) == want, i
        found += want is not None
    assert 0 < found < 500
