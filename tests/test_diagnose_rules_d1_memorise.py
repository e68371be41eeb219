"""Issue 14, fifth suite (seen): overfitting on a tiny training set without a validation rise.

With 100 or 150 training examples the validation loss flattens while the training loss keeps
falling (fresh5 f5_p_spots_train_100: passes 25-49, training 0.78 -> 0.36, validation
0.83 -> 0.72), and it may never turn up within the run, which the rise form needs. The
memorisation form names it when, over the second half of the passes, less than half of the
training loss's fall carries to the validation loss, the gap is beyond the noise of a
validation set that size and grew, and the model has at least as many parameters as a pass
has examples. Oracles: curves built in closed form, so each quantity (the falls over the
window, the gap, the examples a pass) is known; the look-alikes (a healthy run whose validation
loss falls with its training loss, dropout's training loss above the validation loss, a
shifted split whose validation loss never fell, a model smaller than its data, an unknown
validation size) are the same curves changed in one respect each.
"""

from __future__ import annotations

import numpy as np
import pytest

from archlab.diagnose import monitor  # noqa: F401  registers every detector
from archlab.diagnose.detectors import Overfitting
from archlab.diagnose.state import HealthState

EPOCHS, PER, BATCH = 50, 4, 32   # 4 steps of 32: 128 training examples a pass


def _state(train, val, params=2628, val_size=240, seed=0):
    rng = np.random.default_rng(seed)
    n = EPOCHS * PER
    st = HealthState()
    st.param_layers = ["fc1", "fc2"]
    st.init_scale = {"fc1": 4.0, "fc2": 4.0}
    # the batch losses follow the epoch curve with independent noise of sd 0.005
    st.losses = [float(train[i // PER] + 0.005 * rng.standard_normal()) for i in range(n)]
    st.reference = {"classes": 3, "loss": "cross_entropy"}
    st.targets = {"kind": "classes", "counts": [1000, 1000, 1000], "batch_sizes": [BATCH] * 40}
    st.optimizer_settings = {"type": "Adam", "groups": [{"lr": 1e-3, "params": params}]}
    for s in np.linspace(0, n - 1, 40).astype(int):
        st.sample_steps.append(int(s))
        st.series["weight_norm"].append([4.0, 4.0])
        st.series["grad_norm"].append([0.5, 0.5])
        st.series["update_ratio"].append([1e-3, 1e-3])
        st.lr.append(1e-3)
    st.validation = [{"step": PER * (i + 1) - 1, "epoch": i, "train_loss": float(train[i]),
                      "val_loss": float(val[i]), "val_size": val_size} for i in range(EPOCHS)]
    return st


EP = np.arange(EPOCHS)
TRAIN = 0.3 + 1.05 * np.exp(-EP / 25)
VAL = 0.7 + 0.68 * np.exp(-EP / 12)   # flattens at 0.7 while training goes on falling


def test_a_validation_loss_that_stops_following_the_training_loss_is_memorisation():
    st = _state(TRAIN, VAL)
    v = Overfitting().check(st)
    assert v is not None and v.evidence["form"] == "memorisation"
    h = EPOCHS // 2
    assert v.evidence["window_start_epoch"] == h
    assert v.evidence["train_fall"] == pytest.approx(TRAIN[h] - TRAIN[-1], rel=1e-9)
    assert v.evidence["val_fall"] == pytest.approx(VAL[h] - VAL[-1], rel=1e-9)
    assert v.evidence["val_fall"] < 0.5 * v.evidence["train_fall"]
    assert v.evidence["training_examples_per_pass"] == PER * BATCH
    assert v.evidence["parameters"] == 2628
    assert v.evidence["gap"][-1] == pytest.approx(VAL[-1] - TRAIN[-1], rel=1e-9)
    assert Overfitting()._rise(st) is None   # no rise: the form before this one stayed silent


def test_a_validation_loss_falling_with_the_training_loss_is_learning():
    assert Overfitting().check(_state(TRAIN, TRAIN + 0.02)) is None


def test_one_pass_whose_validation_loss_jumps_is_not_a_trend():
    # a healthy run whose last validation loss jumps 0.15 (a batch-norm archlab twin did so):
    # the window ending there alone would show it, the two passes before do not
    val = TRAIN + 0.02
    val[-1] += 0.15
    assert Overfitting().check(_state(TRAIN, val)) is None


def test_dropout_in_training_mode_is_not_memorisation():
    # a train-mode penalty puts the training loss above the validation loss
    assert Overfitting().check(_state(VAL + 0.1, VAL)) is None


def test_a_validation_loss_that_never_fell_is_a_shifted_split():
    assert Overfitting().check(_state(TRAIN, 1.2 + 0.002 * EP)) is None


def test_a_training_loss_that_swings_between_passes_is_not_memorisation():
    # an unstable run: the same curves with the training loss jumping +-0.15 every other pass
    swing = TRAIN + 0.15 * (-1.0) ** EP
    assert Overfitting().check(_state(swing, VAL)) is None


def test_a_model_with_fewer_parameters_than_examples_cannot_memorise():
    assert Overfitting().check(_state(TRAIN, VAL, params=PER * BATCH - 1)) is None
    assert Overfitting().check(_state(TRAIN, VAL, params=PER * BATCH)) is not None


def test_an_unknown_validation_size_is_not_judged():
    assert Overfitting().check(_state(TRAIN, VAL, val_size=None)) is None


def test_falls_within_the_noise_of_a_tiny_validation_set_are_not_named():
    # the same shapes scaled down 40x: the training fall over the window (0.006) is below 2
    # standard errors of a change on 20 validation examples (0.005 x sqrt(32 / 20) = 0.0063)
    small_t, small_v = 0.3 + (TRAIN - 0.3) / 40, 0.3 + (VAL - 0.3) / 40
    assert Overfitting().check(_state(small_t, small_v, val_size=20)) is None
