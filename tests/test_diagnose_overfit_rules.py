"""Issue 14, fourth suite: overfitting's rise is a test repeated over epochs (Bonferroni over the
passes looked at) and must be more than a few validation examples' sampling; a dropout rate
above 1/2 is named with its measured cost. Oracles: scipy-free closed forms (the normal
quantile from statistics.NormalDist, checked against tabulated values), and losses built so
that each rule's quantity is known by construction."""

from __future__ import annotations

import math

import numpy as np
import pytest

from archlab.diagnose import monitor  # noqa: F401  registers every detector
from archlab.diagnose.detectors import DETECTORS, Overfitting
from archlab.diagnose.state import HealthState

LN3 = math.log(3)


def _state(losses, samples=40, layers=("fc1", "fc2")):
    st = HealthState()
    st.param_layers = list(layers)
    st.init_scale = {p: 4.0 for p in layers}
    st.losses = [float(v) for v in losses]
    st.reference = {"classes": 3, "loss": "cross_entropy"}
    st.targets = {"kind": "classes", "counts": [1000, 1000, 1000], "batch_sizes": [32] * samples}
    for s in np.linspace(0, len(losses) - 1, samples).astype(int):
        st.sample_steps.append(int(s))
        st.series["weight_norm"].append([4.0] * len(layers))
        st.series["grad_norm"].append([0.5] * len(layers))
        st.series["update_ratio"].append([1e-3] * len(layers))
        st.lr.append(1e-2)
    st.initial_lr = 1e-2
    return st


def _falling(n=240, seed=0):
    rng = np.random.default_rng(seed)
    return list(1.1 * np.exp(-np.arange(n) / 40) + 0.02 + 0.005 * rng.standard_normal(n))


def _epochs(st, pairs, val_size):
    per = len(st.losses) // len(pairs)
    st.validation = [{"step": per * (i + 1) - 1, "epoch": i, "train_loss": t, "val_loss": v,
                      "val_size": val_size} for i, (t, v) in enumerate(pairs)]


TRAIN = [0.9, 0.5, 0.3, 0.2, 0.12, 0.09, 0.07, 0.06, 0.05, 0.045, 0.04, 0.035, 0.03, 0.025]
RISE = [1.0, 0.6, 0.4, 0.3, 0.25, 0.22, 0.21, 0.205, 0.20, 0.20, 0.205, 0.21, 0.23, 0.25]


def test_rise_z_is_the_bonferroni_corrected_normal_quantile():
    # tabulated one-sided normal quantiles: 0.05 -> 1.6449, 0.05/8 -> 2.4977, 0.05/25 -> 2.8782
    assert Overfitting.rise_z(1, 0.05) == pytest.approx(1.6449, abs=1e-4)
    assert Overfitting.rise_z(8, 0.05) == pytest.approx(2.4977, abs=1e-4)
    assert Overfitting.rise_z(25, 0.05) == pytest.approx(2.8782, abs=1e-4)
    # the family-wise level holds: m independent noise-only comparisons exceed z_m with
    # probability at most alpha (Monte Carlo, 20000 families of 10)
    z = Overfitting.rise_z(10, 0.05)
    hits = np.any(np.random.default_rng(0).standard_normal((20000, 10)) > z, axis=1).mean()
    assert 0.04 < hits < 0.052


def test_a_rise_that_many_examples_carry_is_overfitting():
    """A rise of 0.05 over the best epoch on 1000 validation examples moves 1000 x 0.05 / ln 3
    = 45.5 examples' worth of the know-nothing loss, above z_5^2 = 5.4 (5 passes after the best,
    epoch 8): named, with both corrected z and the count in its evidence."""
    st = _state(_falling())
    _epochs(st, list(zip(TRAIN, RISE, strict=True)), 1000)
    v = DETECTORS["overfitting"]().check(st)
    assert v is not None
    assert v.evidence["examples_carrying_rise"] == pytest.approx(1000 * 0.05 / LN3, rel=1e-6)
    assert v.evidence["rise_z"] == pytest.approx(Overfitting.rise_z(14, 0.05), rel=1e-12)
    assert v.evidence["passes_looked_at"] == 14 and v.evidence["best_epoch"] == 8
    assert v.evidence["count_z"] == pytest.approx(Overfitting.rise_z(5, 0.05), rel=1e-12)


def test_the_same_rise_on_a_small_validation_set_is_its_sampling():
    """The same curves on 36 validation examples: the rise moves 36 x 0.05 / ln 3 = 1.6
    examples' worth (below z_5^2 = 5.4), a t statistic of about sqrt(1.6) = 1.3: one or two examples the model
    grows more confident on, not a fault (the fourth suite's healthy tanh MLP on wine)."""
    st = _state(_falling())
    _epochs(st, list(zip(TRAIN, RISE, strict=True)), 36)
    assert DETECTORS["overfitting"]().check(st) is None
    # at the boundary: just above z_5^2 examples' worth is named, just below is not
    z2 = Overfitting.rise_z(5, 0.05) ** 2
    for n, fires in ((math.ceil(1.05 * z2 * LN3 / 0.05), True), (math.floor(0.95 * z2 * LN3 / 0.05), False)):
        _epochs(st, list(zip(TRAIN, RISE, strict=True)), n)
        assert (DETECTORS["overfitting"]().check(st) is not None) is fires, n


def test_without_a_validation_size_the_count_is_not_judged():
    st = _state(_falling())
    _epochs(st, list(zip(TRAIN, RISE, strict=True)), None)
    v = DETECTORS["overfitting"]().check(st)
    assert v is not None and math.isnan(v.evidence["examples_carrying_rise"])


def test_a_rise_within_the_corrected_level_of_the_wandering_is_silent():
    """A last-epoch jump of 2.3 x the series' wandering passes an uncorrected 2-SE rule but not
    z_8 = 2.50 (the fourth suite's healthy LSTM: 0.111 -> 0.164 against 0.0225)."""
    train = [0.97, 0.40, 0.23, 0.16, 0.13, 0.10, 0.082, 0.080]
    val = [0.411, 0.280, 0.192, 0.189, 0.116, 0.111, 0.116, 0.164]
    st = _state(_falling())
    _epochs(st, list(zip(train, val, strict=True)), 300)
    from archlab.diagnose.detectors import validation_series_noise
    w = validation_series_noise(np.array(val))
    assert 2.0 * w < val[-1] - val[5] < Overfitting.rise_z(8, 0.05) * w
    assert DETECTORS["overfitting"]().check(st) is None


# ----------------------------------------------------------- over_regularisation (d) ----
def _noisy(level, n, sd=0.05, seed=0):
    return level + sd * np.random.default_rng(seed).standard_normal(n)


def _with_validation(st, train_levels, val_levels, val_size=600, per_epoch=50):
    losses = []
    for e, (tr, va) in enumerate(zip(train_levels, val_levels, strict=True)):
        losses += list(_noisy(tr, per_epoch, seed=e))
        st.validation.append({"step": len(losses) - 1, "epoch": e, "train_loss": tr,
                              "val_loss": va, "val_size": val_size})
    st.losses = losses
    return st


def test_a_drop_rate_above_one_half_with_a_significant_gap_is_named_at_any_loss_level():
    """Train-mode 0.22 x ln 3 against an evaluated 0.13 x ln 3 (the fourth suite's token
    transformer at dropout 0.8): below still_high and 9 % of what was learned, so (c) is
    silent; with a recorded rate of 0.8 (noise variance 4 x the signal) it is named."""
    n = 5
    st = _with_validation(_state(np.zeros(n * 50)), [0.22 * LN3] * n, [0.13 * LN3] * n)
    st.train_mode_noise = {"enc.dropout": 0.8}
    v = DETECTORS["over_regularisation"]().check(st)
    assert v is not None and v.evidence["drop_rates"] == {"enc.dropout": 0.8}
    assert "dropout rate 0.8" in v.message and "4 x its" in v.message
    for rate in (0.5, 0.3):   # at or below 1/2 (signal >= noise): the usual (c) asks its share
        st.train_mode_noise = {"enc.dropout": rate}
        assert DETECTORS["over_regularisation"]().check(st) is None, rate


def test_a_high_drop_rate_without_a_gap_or_with_a_loss_that_fits_is_silent():
    n = 5
    st = _with_validation(_state(np.zeros(n * 50)), [0.13 * LN3] * n, [0.13 * LN3] * n)
    st.train_mode_noise = {"drop": 0.9}
    assert DETECTORS["over_regularisation"]().check(st) is None   # no gap: no measured cost


def test_a_high_drop_rate_that_holds_the_loss_at_the_know_nothing_level_is_named():
    """Dropout 0.9 on a model whose loss stays at ln 3 and no longer falls (the fourth suite's
    wine design): the evaluated model learned nothing either, so (c) has no share to read; the
    rate with the held loss is the cause. The same loss with rate 0.5 is not named."""
    st = _state(LN3 + 0.01 * np.random.default_rng(3).standard_normal(300))
    st.train_mode_noise = {"drop0": 0.9, "drop1": 0.9}
    v = DETECTORS["over_regularisation"]().check(st)
    assert v is not None and set(v.evidence["drop_rates"]) == {"drop0", "drop1"}
    assert v.evidence["trend"]["falling"] is False
    st.train_mode_noise = {"drop0": 0.5}
    assert DETECTORS["over_regularisation"]().check(st) is None
    # a high rate while the loss still falls from ln 3: still learning, not held
    falling = LN3 * np.linspace(1.0, 0.6, 300) + 0.01 * np.random.default_rng(4).standard_normal(300)
    st2 = _state(falling)
    st2.train_mode_noise = {"drop0": 0.9}
    assert DETECTORS["over_regularisation"]().check(st2) is None
