"""Rules that must hold on faults nobody tuned them to (issue 14): overfitting rules out what
else makes a train/validation gap, layers frozen on purpose that keep a run from learning,
gradients shrunk by sigmoid hidden layers, an initialisation far above the standard scale; and
the detectors' cheaper reductions, each equal to the expression it replaces."""

from __future__ import annotations

import math

import numpy as np
import pytest

from archlab.diagnose.detectors import (
    DETECTORS,
    INIT_LARGE,
    SIGMOID_SLOPE,
    Frozen,
    Verdict,
    attribute,
    validation_series_noise,
)
from archlab.diagnose.detectors_labels import movement_between
from archlab.diagnose.state import HealthState

LN3 = math.log(3)


def _state(losses, samples=40, layers=("fc1", "fc2"), weight=4.0, grad=0.5, update=1e-3):
    """``len(losses)`` steps sampled on ``samples`` evenly spaced steps; cross entropy over 3
    balanced classes; every layer's default-init norm 4.0; weight, gradient and update ratio
    per layer (a scalar, a list over the layers, or a function of the sample index)."""
    st = HealthState()
    st.param_layers = list(layers)
    st.init_scale = {p: 4.0 for p in layers}
    st.losses = [float(v) for v in losses]
    st.reference = {"classes": 3, "loss": "cross_entropy"}
    st.targets = {"kind": "classes", "counts": [1000, 1000, 1000], "batch_sizes": [32] * samples}

    def row(f, k):
        v = f(k) if callable(f) else f
        return [float(x) for x in v] if isinstance(v, (list, tuple)) else [float(v)] * len(layers)

    for k, s in enumerate(np.linspace(0, len(losses) - 1, samples).astype(int)):
        st.sample_steps.append(int(s))
        st.series["weight_norm"].append(row(weight, k))
        st.series["grad_norm"].append(row(grad, k))
        st.series["update_ratio"].append(row(update, k))
        st.lr.append(1e-2)
    st.initial_lr = 1e-2
    return st


def _flat(n=150, seed=0):
    return LN3 + 0.01 * np.random.default_rng(seed).standard_normal(n)


# --------------------------------------------------------------------------- overfitting ---
def test_validation_series_noise_is_second_differences_over_root_six():
    trend = 1.0 - 0.05 * np.arange(12)
    assert validation_series_noise(trend) == pytest.approx(0.0, abs=1e-12)   # a trend is no noise
    rng = np.random.default_rng(1)
    v = 0.5 + 0.01 * np.arange(12) + 0.03 * rng.standard_normal(12)
    want = float(np.std(np.diff(v[-10:], 2), ddof=1)) / math.sqrt(6)
    assert validation_series_noise(v) == pytest.approx(want, rel=1e-12)
    long = 2.0 - 1e-4 * np.arange(20000) + 0.1 * rng.standard_normal(20000)
    assert validation_series_noise(long, epochs=20000) == pytest.approx(0.1, rel=0.03)
    assert math.isnan(validation_series_noise(v[:4]))


def _epochs(st, pairs):
    per = len(st.losses) // len(pairs)
    st.validation = [{"step": per * (i + 1) - 1, "epoch": i, "train_loss": t, "val_loss": v,
                      "val_size": 1000} for i, (t, v) in enumerate(pairs)]


def _falling(n=240, seed=0):
    rng = np.random.default_rng(seed)
    return list(1.1 * np.exp(-np.arange(n) / 40) + 0.02 + 0.005 * rng.standard_normal(n))


def test_overfitting_needs_a_validation_loss_that_first_fell():
    st = _state(_falling())
    train = [0.8, 0.4, 0.2, 0.1, 0.05, 0.03]
    _epochs(st, list(zip(train, [0.9, 0.6, 0.5, 0.6, 0.7, 0.8], strict=True)))
    v = DETECTORS["overfitting"]().check(st)
    assert v is not None and v.evidence["best_epoch"] == 2
    # the same training curve with a validation loss that rises from the first epoch on: the
    # splits differ (a loader fault on one of them) or the run is unstable, not memorisation
    _epochs(st, list(zip(train, [0.9, 1.2, 1.6, 2.0, 2.5, 3.0], strict=True)))
    assert DETECTORS["overfitting"]().check(st) is None


def test_overfitting_rise_within_the_validation_losses_own_wandering_is_noise():
    st = _state(_falling())
    train = [0.9, 0.5, 0.3, 0.2, 0.12, 0.09, 0.07, 0.06, 0.05, 0.045, 0.04, 0.035, 0.03, 0.025]
    smooth = [1.0, 0.6, 0.4, 0.3, 0.25, 0.22, 0.21, 0.205, 0.20, 0.20, 0.205, 0.21, 0.23, 0.25]
    _epochs(st, list(zip(train, smooth, strict=True)))
    assert DETECTORS["overfitting"]().check(st) is not None
    # the same final rise after a validation loss that swings by +-0.04 between epochs
    wander = [1.0, 0.6, 0.4, 0.3, 0.25, 0.26, 0.18, 0.25, 0.17, 0.24, 0.20, 0.21, 0.23, 0.25]
    _epochs(st, list(zip(train, wander, strict=True)))
    assert validation_series_noise(np.array(wander)) > 0.02
    assert DETECTORS["overfitting"]().check(st) is None


@pytest.mark.parametrize("cause", ["class_imbalance", "unshuffled_data", "label_noise",
                                   "lr_too_high", "exploding_gradients", "nan_inf"])
def test_a_validation_rise_after_a_data_fault_or_a_divergence_is_its_consequence(cause):
    events = [Verdict(cause, 7, "x", evidence={"onset_step": 7}),
              Verdict("overfitting", 314, "y", kind="cause", severity="warning")]
    attribute(events, {})
    assert events[1].kind == "symptom" and events[1].consequence_of == [cause]
    # raised before the cause's onset, it stays a cause of its own
    events = [Verdict(cause, 400, "x", evidence={"onset_step": 400}),
              Verdict("overfitting", 314, "y")]
    attribute(events, {})
    assert events[1].kind == "cause" and not events[1].consequence_of


# ---------------------------------------------------------------------- frozen on purpose ---
def _frozen_run(losses, update=1e-3):
    st = _state(losses, layers=("h0", "h1", "out"), update=[0.0, 0.0, update],
                grad=[0.3, 0.3, 0.5])
    st.optimizer_params = {"h0": False, "h1": False, "out": True}
    return st


def test_layers_frozen_on_purpose_that_keep_the_run_from_learning_are_named():
    d = Frozen()
    d.expected = ("h*",)
    v = d.check(_frozen_run(_flat()))
    assert v is not None and v.evidence["frozen_on_purpose"] == ["h0", "h1"]
    assert v.evidence["median_update_ratio"] == pytest.approx(1e-3)
    assert "unfreeze" in v.fixes[0] and not Frozen.can_be_consequence(v)
    # a run that learns: the freeze is what was meant
    assert d.check(_frozen_run(list(np.linspace(LN3, 0.3, 150)))) is None
    # the trainable layers hardly move: a learning rate, not the freeze
    assert d.check(_frozen_run(_flat(), update=1e-6)) is None
    # before loss_not_decreasing's 100 steps nothing is judged
    assert d.check(_frozen_run(_flat(60))) is None
    # not expected: the ordinary verdict (outside the optimizer)
    v = Frozen().check(_frozen_run(list(np.linspace(LN3, 0.3, 150))))
    assert v.evidence["not_in_optimizer"] == ["h0", "h1"]


# ----------------------------------------------------------------- vanishing via sigmoid ---
def _sigmoid_run(losses, ratio, kind="sigmoid"):
    """Three weight layers with two activations between them; the first layer's relative
    gradient is ``ratio`` x the last one's (same weight norms: 4.0)."""
    st = _state(losses, layers=("0", "2", "4"), grad=[0.5 * ratio, 0.1, 0.5],
                update=[3e-4, 1e-3, 1e-2])
    st.act_layers = ["0", "1", "2", "3", "4"]
    st.act_kinds = {"1": kind, "3": kind}
    return st


def test_gradients_shrunk_through_sigmoid_hidden_layers_are_named():
    bound = SIGMOID_SLOPE ** 2
    v = DETECTORS["vanishing_gradients"]().check(_sigmoid_run(_flat(), 0.4 * bound))
    assert v is not None and v.evidence["sigmoid_layers"] == ["1", "3"]
    assert v.evidence["bound"] == pytest.approx(1 / 16) and "sigmoid" in v.fixes[0]
    # within what two sigmoids can pass back: not this cause
    assert DETECTORS["vanishing_gradients"]().check(_sigmoid_run(_flat(), 2 * bound)) is None
    # ReLU hidden layers: the closed form does not apply
    assert DETECTORS["vanishing_gradients"]().check(_sigmoid_run(_flat(), 0.4 * bound, "relu")) is None
    # a run that learns
    falling = list(np.linspace(LN3, 0.2, 150))
    assert DETECTORS["vanishing_gradients"]().check(_sigmoid_run(falling, 0.4 * bound)) is None


# ----------------------------------------------------------------------- large init ---------
def _init_run(scale, first_loss):
    losses = [first_loss] * 3 + list(np.linspace(first_loss, 1.0, 20))
    return _state(losses, samples=5, layers=("a", "b", "c"), weight=4.0 * scale, grad=20.0)


def test_an_initialisation_far_above_the_default_scale_is_named():
    v = DETECTORS["exploding_gradients"]().check(_init_run(8.0, 25 * LN3))
    assert v is not None and v.evidence["cause"] == "initialisation"
    assert v.evidence["norm_over_default"]["a"] == pytest.approx(8.0)
    assert v.evidence["onset_step"] == 0 and "standard scale" in v.fixes[0]
    # He initialisation (2.45x the default) with the same first losses is not this cause
    w = DETECTORS["exploding_gradients"]().check(_init_run(2.45, 25 * LN3))
    assert w is None or w.evidence.get("cause") != "initialisation"
    assert INIT_LARGE > math.sqrt(6)
    # weights 8x but a first loss at the know-nothing level: nothing blew up
    w = DETECTORS["exploding_gradients"]().check(_init_run(8.0, LN3))
    assert w is None or w.evidence.get("cause") != "initialisation"
    # unscaled inputs make the first loss huge by themselves: their detector names them
    st = _init_run(8.0, 25 * LN3)
    st.input_stats = [(120.0, 60.0)] * 5
    w = DETECTORS["exploding_gradients"]().check(st)
    assert w is None or w.evidence.get("cause") != "initialisation"


# ------------------------------------------------------------------- cheaper reductions ----
def test_movement_between_equals_the_median_of_row_medians():
    rng = np.random.default_rng(3)
    u = lambda k: list(10 ** rng.uniform(-5, -2, 3)) if k % 7 else [math.nan] * 3  # noqa: E731
    st = _state(list(range(400)), samples=60, layers=("a", "b", "c"), update=u)
    a = np.array(st.series["update_ratio"])
    steps = np.array(st.sample_steps)
    for lo, hi in [(0, 399), (64, 192), (190, 200), (500, 600)]:
        rows = a[(steps >= lo) & (steps <= hi)]
        per = [float(np.median(r[np.isfinite(r)])) for r in rows if np.any(np.isfinite(r))]
        want = float(np.median(per)) if per else math.nan
        got = movement_between(st, lo, hi)
        assert (math.isnan(want) and math.isnan(got)) or got == want


def test_order_evidence_is_computed_once_per_sample_and_equals_the_direct_computation():
    from archlab.diagnose.taxonomy import _order_evidence, order_evidence

    st = _state(_flat(), samples=12)
    st.targets["batch_classes"] = [3] * 12
    first = order_evidence(st)
    assert first == _order_evidence(st) and order_evidence(st) is first
    st.losses.append(1.0)   # a new step without a new sampled batch: the same evidence
    assert order_evidence(st) == first == _order_evidence(st)
    st.targets["batch_classes"].append(1)   # a new sampled batch (one class): computed again
    st.targets["batch_sizes"].append(st.targets["batch_sizes"][-1])
    st.losses.append(1.0)
    again = order_evidence(st)
    assert again is not first and again == _order_evidence(st) and again["samples"] == 13


def test_clipping_window_walked_back_equals_the_whole_run_filter():
    from archlab.diagnose.detectors_gradients import clip_evidence

    rng = np.random.default_rng(4)
    g = lambda k: [math.nan, math.nan] if k % 5 == 0 else list(rng.uniform(0.5, 2.0, 2))  # noqa: E731
    st = _state(list(range(300)), samples=50, grad=g)
    st.grad_read = [bool(k % 3) for k in range(50)]
    st.clip = {"value": 1e-3}
    ev = clip_evidence(st)
    a = np.array(st.series["grad_norm"])
    rows = [i for i in range(a.shape[0]) if (i >= len(st.grad_read) or st.grad_read[i])
            and np.any(~np.isnan(a[i]))][-10:]
    assert ev is not None and ev["samples"] == len(rows)
    assert ev["steps"] == [st.sample_steps[i] for i in rows]
