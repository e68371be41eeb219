"""Rules whose truth is known by construction: regularisation too strong (weight decay that
dominates the updates, weights collapsing toward 0, a train-mode penalty), Adam's eps that
dwarfs the gradient, dead units that do (not) matter, the validation noise from the validation
set's size, and the affine test on data that sits in one linear piece."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from archlab.diagnose import monitor  # noqa: F401  registers every detector
from archlab.diagnose.detectors import DETECTORS, validation_noise
from archlab.diagnose.state import HealthState
from archlab.diagnose.structure import affine_test

LN3 = math.log(3)


def _state(losses, samples=40, layers=("fc1", "fc2"), weight=4.0, grad=0.5, update=1e-3,
           settings=None, lr=1e-2, batch=32):
    """A run of ``len(losses)`` steps sampled on ``samples`` evenly spaced steps: every weight
    layer at ``weight`` (its default-init norm 4.0), gradient norm ``grad``, update ratio
    ``update`` (scalars or functions of the sample index); cross entropy over 3 classes."""
    st = HealthState()
    st.param_layers = list(layers)
    st.init_scale = {p: 4.0 for p in layers}
    st.losses = [float(v) for v in losses]
    st.reference = {"classes": 3, "loss": "cross_entropy"}
    st.targets = {"kind": "classes", "counts": [1000, 1000, 1000], "batch_sizes": [batch] * samples}
    st.optimizer_settings = settings or {}
    steps = np.linspace(0, len(losses) - 1, samples).astype(int)
    at = lambda f, k: f(k) if callable(f) else f  # noqa: E731
    for k, s in enumerate(steps):
        st.sample_steps.append(int(s))
        st.series["weight_norm"].append([at(weight, k)] * len(layers))
        st.series["grad_norm"].append([at(grad, k)] * len(layers))
        st.series["update_ratio"].append([at(update, k)] * len(layers))
        st.lr.append(lr)
    st.initial_lr = lr
    return st


def _noisy(level, n=300, sd=0.05, seed=0):
    return level + sd * np.random.default_rng(seed).standard_normal(n)


def check(name, st):
    return DETECTORS[name]().check(st)


# ----------------------------------------------------------------------- weight decay ------
def test_decoupled_decay_that_dominates_the_updates_is_named():
    """AdamW with wd 1 at lr 1e-2 shrinks each weight by 1 % a step; measured updates of 1.2 %
    are mostly that pull, and the loss stays at the know-nothing level: too strong."""
    adamw = {"type": "AdamW", "weight_decay": 1.0, "eps": 1e-8, "groups": [{"lr": 1e-2, "params": 1000}]}
    v = check("over_regularisation", _state(_noisy(LN3), update=0.012, settings=adamw))
    assert v is not None and v.evidence["pull"] == pytest.approx(0.01 / 0.012)
    assert "weight decay" in v.fixes[0]
    # the same decay with a loss that fits the data: the regulariser does not stop it
    assert check("over_regularisation", _state(_noisy(0.2 * LN3), update=0.012, settings=adamw)) is None
    # a usual decay (1e-4): the pull is 1e-6 / 1.2e-2 of the movement
    usual = {**adamw, "weight_decay": 1e-4}
    assert check("over_regularisation", _state(_noisy(LN3), update=0.012, settings=usual)) is None


def test_a_standard_decay_recipe_while_the_loss_falls_is_silent():
    """SGD at 0.1, momentum 0.9, decay 5e-4 pulls lr x wd / (1 - m) = 5e-4 a step against
    measured updates of 1e-3 (a pull of 0.5) early in training, while the loss still falls from
    ln 3: the model is fitting, the penalty does not hold it."""
    sgd = {"type": "SGD", "momentum": 0.9, "dampening": 0.0, "weight_decay": 5e-4,
           "groups": [{"lr": 0.1, "params": 1000}]}
    falling = LN3 * np.linspace(1.0, 0.6, 300) + 0.02 * np.random.default_rng(2).standard_normal(300)
    assert check("over_regularisation", _state(falling, update=1e-3, settings=sgd, lr=0.1)) is None


def test_decay_after_a_divergence_is_not_named():
    """SGD at lr 2 with decay 0.01 blew up (a loss 20x the know-nothing level) and killed the
    network: only the decay moves its weights now (a pull of exactly 1), but the cause is the
    divergence, which lr_too_high and exploding_gradients name."""
    sgd = {"type": "SGD", "momentum": 0.0, "weight_decay": 0.01, "groups": [{"lr": 2.0, "params": 1000}]}
    losses = np.concatenate([[20 * LN3] * 5, _noisy(LN3, 295)])
    assert check("over_regularisation", _state(losses, update=0.02, settings=sgd, lr=2.0)) is None
    # the same flat loss without the blow-up: the decay holds the weights
    assert check("over_regularisation", _state(_noisy(LN3), update=0.02, settings=sgd, lr=2.0)) is not None


def test_coupled_l2_is_judged_against_the_loss_gradient():
    """Adam's L2 adds wd * w to the gradient: wd |w| / |g| = 1.0 * 4 / 0.5 = 8 pulls harder than
    the data; with wd 1e-3 it is 0.008."""
    adam = {"type": "Adam", "weight_decay": 1.0, "groups": [{"lr": 1e-3, "params": 1000}]}
    v = check("over_regularisation", _state(_noisy(LN3), settings=adam, lr=1e-3))
    assert v is not None and v.evidence["pull"] == pytest.approx(8.0)
    weak = {**adam, "weight_decay": 1e-3}
    assert check("over_regularisation", _state(_noisy(LN3), settings=weak, lr=1e-3)) is None


def test_weights_collapsing_toward_zero_are_named_without_settings():
    """An L2 term written into the loss shows in no setting: the weights fall from their
    default-init norm to a tenth of it while the loss stays at the know-nothing level."""
    st = _state(_noisy(LN3), weight=lambda k: 4.0 * 0.94 ** k)   # 4.0 -> 0.36 over 40 samples
    v = check("over_regularisation", st)
    assert v is not None and v.evidence["weight_norm"] < 0.25 * v.evidence["default_init_norm"]
    # weights that stay at their scale (a run that does not learn for another reason): silent
    assert check("over_regularisation", _state(_noisy(LN3))) is None
    # weights that start near zero (a zero initialisation) did not collapse: silent
    assert check("over_regularisation", _state(_noisy(LN3), weight=0.05)) is None


def test_decay_collapse_explains_the_dead_units():
    """Dead units after the penalty's onset are its consequence, not a cause of their own."""
    assert "dying_relu" in DETECTORS["over_regularisation"].consequences


# --------------------------------------------------------------------- train-mode penalty ----
def _with_validation(st, train_levels, val_levels, val_size=600, per_epoch=50, sd=0.05):
    losses = []
    for e, (tr, va) in enumerate(zip(train_levels, val_levels, strict=True)):
        losses += list(_noisy(tr, per_epoch, sd, seed=e))
        st.validation.append({"step": len(losses) - 1, "epoch": e, "train_loss": tr,
                              "val_loss": va, "val_size": val_size})
    st.losses = losses
    return st


def test_a_training_mode_penalty_is_named():
    """Training-mode losses of 0.85 x ln 3 while the evaluated model reaches 0.5 x ln 3: the
    penalty gives back 70 % of what the evaluated model learned, for 5 epochs."""
    n = 5
    st = _with_validation(_state(np.zeros(n * 50)), [0.85 * LN3] * n, [0.5 * LN3] * n)
    v = check("over_regularisation", st)
    assert v is not None and v.evidence["mean_share_of_learned"] == pytest.approx(0.7, abs=0.05)
    assert "dropout" in v.fixes[0]


def test_a_training_mode_gap_without_any_training_mode_noise_is_not_a_penalty():
    """The same losses as above, from a model with no dropout-like module (attach found none):
    training labels noisier than the validation labels give that gap too, so no penalty is
    named; with a dropout layer recorded the penalty is named again."""
    n = 5
    st = _with_validation(_state(np.zeros(n * 50)), [0.85 * LN3] * n, [0.5 * LN3] * n)
    st.train_mode_noise = {}
    assert check("over_regularisation", st) is None
    st.train_mode_noise = {"drop": 0.9}
    assert check("over_regularisation", st) is not None


def test_attach_records_the_modules_that_add_noise_in_training_mode():
    from archlab.blocks.stochastic import DropPath
    from archlab.diagnose import HealthRecorder

    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.3), nn.Dropout(0.0),
                          nn.GRU(8, 8, num_layers=2, dropout=0.2), DropPath(0.1),
                          nn.MultiheadAttention(8, 2))
    rec = HealthRecorder()
    rec.attach(model)
    assert rec.state.train_mode_noise == {"2": 0.3, "4": 0.2, "5": 0.1}

    class StochasticDepth(nn.Module):   # torchvision's name and attribute, written here
        def __init__(self):
            super().__init__()
            self.p = 0.2

    other = HealthRecorder()
    other.attach(nn.Sequential(nn.Linear(4, 8), StochasticDepth()))
    assert other.state.train_mode_noise == {"1": 0.2}
    plain = HealthRecorder()
    plain.attach(nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2)))
    assert plain.state.train_mode_noise == {}


@pytest.mark.parametrize("train, val", [
    (0.45, 0.5),    # healthy: validation at or above training (the generalisation gap)
    (0.55, 0.5),    # a small train-mode penalty (usual dropout): 10 % of what was learned
    (0.2, 0.1),     # a model that fits its training data
])
def test_a_usual_or_no_penalty_is_silent(train, val):
    n = 5
    st = _with_validation(_state(np.zeros(n * 50)), [train * LN3] * n, [val * LN3] * n)
    assert check("over_regularisation", st) is None


# ---------------------------------------------------------------------------- Adam eps ----
def _adam_eps(eps):
    return {"type": "Adam", "eps": eps, "betas": [0.9, 0.999], "weight_decay": 0.0,
            "groups": [{"lr": 2e-3, "params": 2 * 2500}]}


def test_adam_eps_that_dwarfs_the_gradient_is_a_low_effective_learning_rate():
    """Total gradient norm sqrt(2) x 0.5 over 5000 parameters: RMS 0.01. With eps 1 each step
    is lr x 0.01 / 1.01: the effective learning rate is ~1e-2 x lr, though the measured update
    ratio (1e-4) is not below lr_too_low's 1e-5."""
    st = _state(_noisy(LN3), update=1e-4, settings=_adam_eps(1.0), lr=2e-3)
    v = check("lr_too_low", st)
    assert v is not None
    e = v.evidence["adam_eps"]
    assert e["grad_rms"] == pytest.approx(0.01, rel=1e-6)
    assert e["effective_lr"] == pytest.approx(2e-3 * 0.01 / 1.01, rel=1e-6)
    assert "1e-8" in v.fixes[0]
    # the default eps: the step is lr, the update ratio is not small: silent
    assert check("lr_too_low", _state(_noisy(LN3), update=1e-4, settings=_adam_eps(1e-8), lr=2e-3)) is None
    # eps 1 but the loss falls well below the know-nothing level: silent
    assert check("lr_too_low", _state(_noisy(0.3 * LN3), update=1e-4, settings=_adam_eps(1.0))) is None


# -------------------------------------------------------------------------- dying ReLU ----
def _dead_state(losses, dead=0.6):
    st = _state(losses, samples=60)
    st.act_layers, st.act_kinds = ["relu1"], {"relu1": "relu"}
    st.targets["batch_sizes"] = [16] * 60
    st.series["dead_fraction"] = [[dead]] * 60
    return st


def test_dead_units_that_stop_learning_are_named():
    assert check("dying_relu", _dead_state(_noisy(LN3))) is not None


def test_dead_units_of_a_network_that_keeps_learning_are_silent():
    """60 % of a layer dead while the loss falls steadily from ln 3 to 0.2 x ln 3: the units
    still alive carry the learning."""
    falling = LN3 * np.linspace(1.0, 0.2, 300) + 0.02 * np.random.default_rng(1).standard_normal(300)
    assert check("dying_relu", _dead_state(falling)) is None
    # the same dead share, the loss stopped on a plateau far above the fit: named
    plateau = np.concatenate([LN3 * np.linspace(1.0, 0.8, 100), _noisy(0.8 * LN3, 200, 0.02)])
    assert check("dying_relu", _dead_state(plateau)) is not None


# --------------------------------------------------------------------- validation noise ----
def test_validation_noise_is_the_standard_error_of_a_mean_over_val_size_examples():
    """Batch losses of 32 examples spread by s: one example's loss spreads by s sqrt(32), the
    mean over n validation examples by s sqrt(32 / n)."""
    st = _state(_noisy(1.0, 200, 0.1), batch=32)
    st.validation = [{"step": 199, "epoch": 0, "train_loss": 1.0, "val_loss": 1.0, "val_size": 800}]
    se, how = validation_noise(st, at_validation_level=False)
    diffs = np.diff(st.loss_array())
    spread = float(np.std(diffs, ddof=1) / math.sqrt(2))
    assert se == pytest.approx(spread * math.sqrt(32 / 800))
    assert "800 validation examples" in how
    # a validation loss 4x the training loss: one validation example spreads 4x as much
    st.validation[0]["val_loss"] = 4 * float(np.mean(st.loss_array()[-50:]))
    assert validation_noise(st)[0] == pytest.approx(4 * spread * math.sqrt(32 / 800))
    st.validation[0]["val_size"] = None   # unknown: the batch spread itself (an upper bound)
    assert validation_noise(st, at_validation_level=False)[0] == pytest.approx(spread)


# ------------------------------------------------------------------------- affine test ----
def test_the_affine_test_tells_an_affine_function_from_data_in_one_linear_piece():
    """A column in the tens of thousands keeps every ReLU of the first layer on one side for all
    examples: the network is affine on that data, not as a function. The linear twin is affine
    on both."""
    torch.manual_seed(0)
    relu = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
    linear = nn.Sequential(nn.Linear(4, 16), nn.Linear(16, 3))
    x = torch.randn(16, 4)
    x[:, 1] = 3e4 + 1e4 * x[:, 1]
    first = relu[0](x)
    assert bool(((first > 0).all(0) | (first <= 0).all(0)).all())   # one linear piece, by construction
    r = affine_test(relu, (x,))
    assert r["affine"] is False and r["affine_on_data"] is True
    assert r["midpoint_error"] < 1e-4 and r["standardised_extrapolation_error"] > 1e-2
    lin = affine_test(linear, (x,))
    assert lin["affine"] is True and "affine_on_data" not in lin


# ---------------------------------------------------------------- vanishing gradients ----
def _vanishing_state(first_ratio):
    """Three layers at their default-init norm; the first layer's gradient first_ratio(step)
    x the last's, sampled on every step for 30 steps."""
    st = _state(_noisy(LN3, 30), samples=30, layers=("first", "mid", "last"))
    st.series["grad_norm"] = [[first_ratio(k), 0.5, 1.0] for k in range(30)]
    return st


def test_a_gradient_small_only_for_the_first_steps_is_a_transient():
    """A mean over normalised features is exactly insensitive to everything before the
    normalisation at initialisation (the gradient at rounding level); the first updates break
    that symmetry. A first layer at 1e-9 of the last for 3 steps, then 1e-2: not vanishing."""
    st = _vanishing_state(lambda k: 1e-9 if k < 3 else 1e-2)
    assert DETECTORS["vanishing_gradients"]().check(st) is None
    # below 1e-3 of the largest for the whole window of 20 steps: vanishing
    st = _vanishing_state(lambda k: 1e-5)
    v = DETECTORS["vanishing_gradients"]().check(st)
    assert v is not None and v.layers == ["first"]


def test_small_gradients_of_a_fitted_model_are_not_vanishing():
    """The same persistent 1e-5 ratio with the loss at 0.1 % of the know-nothing level: the
    training data is fitted, every gradient is small because nothing is left to learn."""
    st = _vanishing_state(lambda k: 1e-5)
    st.losses = list(_noisy(1e-3 * LN3, 30, 1e-5))
    assert DETECTORS["vanishing_gradients"]().check(st) is None
