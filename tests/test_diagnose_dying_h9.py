"""dying_relu on a partly dead layer early in a run: every run starts at the know-nothing loss,
so before the loss trend can be read (2 x 20 losses) a loss still there is no evidence that the
dead units cost anything, unless the layer has no unit active at all (it passes no signal).

Oracle: states built by hand, one ReLU layer of 8 units (a squeeze-excitation bottleneck over
pooled channels: each unit is on or off for every example alike, so about half start dead by
the coin flip of the initial weights), cross entropy over 3 balanced classes (reference ln 3),
batches of 32 (16 examples watched per sample, 19 samples = 304 examples >= 300)."""

from __future__ import annotations

import math

import numpy as np

from archlab.diagnose import monitor  # noqa: F401  registers every detector
from archlab.diagnose.detectors import DyingRelu, dead_units_matter
from archlab.diagnose.state import HealthState

LN3 = math.log(3)


def _state(losses, dead):
    """One sample per step, the layer 'se.act' ``dead`` dead on every sample."""
    n = len(losses)
    st = HealthState(act_layers=["se.act"], act_kinds={"se.act": "relu"},
                     sample_steps=list(range(n)),
                     targets={"kind": "classes", "counts": [1000] * 3, "batch_sizes": [32] * n,
                              "batch_classes": [3] * n})
    st.reference = {"classes": 3, "loss": "cross_entropy"}
    st.losses = [float(v) for v in losses]
    st.series["dead_fraction"] = [[dead]] * n
    return st


def _noisy(level, n, sd=0.02, seed=0):
    return level + sd * np.random.default_rng(seed).standard_normal(n)


def test_a_partly_dead_layer_at_the_start_of_a_run_is_not_named():
    """6 of 8 units dead on all 21 samples, the loss at ln 3 (21 steps: no trend yet): the dead
    units are not shown to matter, the run has not had the time to learn."""
    st = _state(_noisy(LN3, 21), 0.75)
    assert DyingRelu().check(st) is None
    assert dead_units_matter(st) is None
    # the same state read as a wholly dead layer: the first clause decides at once
    why = dead_units_matter(st, whole=True)
    assert why["why"] == "the loss is not below the know-nothing level"
    assert why["loss_over_reference"] > 0.9


def test_a_wholly_dead_layer_is_named_before_the_trend_can_be_read():
    st = _state(_noisy(LN3, 21), 1.0)
    v = DyingRelu().check(st)
    assert v is not None
    assert v.evidence["dead_fraction"] == {"se.act": 1.0}
    assert v.evidence["loss"]["why"] == "the loss is not below the know-nothing level"
    assert "trend" not in v.evidence["loss"]
    assert "'se.act' 100% dead" in v.message and "on every sample of the last 19" in v.message


def test_a_partly_dead_layer_whose_loss_stays_flat_is_named_once_the_trend_is_read():
    """The same 75 % dead layer, the loss flat at ln 3 for 60 steps (2 x 20 losses: the trend
    can be read) and not below the know-nothing level: named."""
    st = _state(_noisy(LN3, 60), 0.75)
    v = DyingRelu().check(st)
    assert v is not None
    assert v.evidence["dead_fraction"] == {"se.act": 0.75}
    assert v.evidence["loss"]["why"] == "the loss is not below the know-nothing level"
    assert "'se.act' 75% dead (> 50%)" in v.message
    # 39 steps: one short of 2 x 20 losses, the trend is unread: silent
    assert DyingRelu().check(_state(_noisy(LN3, 39), 0.75)) is None


def test_a_partly_dead_layer_of_a_run_that_learns_is_not_named():
    """75 % dead while the loss falls from ln 3 to 0.4 ln 3 over 80 steps: silent."""
    falling = LN3 * np.linspace(1.0, 0.4, 80) + _noisy(0.0, 80, 0.02, 1)
    assert DyingRelu().check(_state(falling, 0.75)) is None
