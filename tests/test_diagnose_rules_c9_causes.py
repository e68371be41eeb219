"""Wrong causes removed in session 9 (brief C, issue 14), each on a constructed state whose
numbers are known, and each with the fault the rule is for still found.

* exploding_gradients and layers the optimizer never steps: an optimizer built over a copy of
  the model (fresh7 ``copy_params``) steps the copy, and ``opt.zero_grad()`` clears the copy's
  gradients; the model's own ``.grad`` is never cleared and grows as the running sum of every
  batch gradient while its weights stay put. That sum is no divergence: the gradient-norm forms
  read only the layers the optimizer steps.
"""

from __future__ import annotations

import numpy as np

from archlab.diagnose import monitor  # noqa: F401  registers every detector
from archlab.diagnose.detectors import Exploding, Frozen, attribute, DETECTORS
from archlab.diagnose.state import HealthState


def _copy_state(in_optimizer: bool, steps=250, per_batch=5.0):
    """Three layers; each sample's gradient norm is that of the running sum of batch gradients
    of norm ``per_batch`` pointing the same way (a fixed model: the same mean gradient), i.e.
    (step + 1) x per_batch; in the optimizer the weights move, outside they never do."""
    st = HealthState()
    st.param_layers = ["a", "b", "c"]
    st.init_scale = {p: 1.0 for p in st.param_layers}
    st.optimizer_params = {p: in_optimizer for p in st.param_layers}
    st.optimizer_settings = {"type": "Adam", "groups": [{"lr": 1e-3, "params": 300}]}
    st.reference = {"target_variance": 1.0, "loss": "mse"}
    st.losses = [2.0] * steps
    for s in [0, 1, 2, 3, 4, 8, 16, 32, 64, 100, 150, 200, 249]:
        g = (s + 1) * per_batch / np.sqrt(3)
        st.sample_steps.append(s)
        st.series["weight_norm"].append([1.0, 1.0, 1.0])
        st.series["grad_norm"].append([g, g, g])
        st.series["update_ratio"].append([1e-3] * 3 if in_optimizer else [0.0] * 3)
        st.grad_read.append(True)
        st.lr.append(1e-3)
    return st


def test_gradients_summed_in_layers_no_optimizer_steps_are_not_exploding():
    st = _copy_state(in_optimizer=False)
    total = float(np.sqrt(np.sum(np.array(st.series["grad_norm"][-1]) ** 2)))
    assert total == 250 * 5.0 and total > Exploding.thresholds["grad_norm_limit"]
    assert Exploding().check(st) is None
    v = Frozen().check(st)   # the cause that is there: nothing the model holds is stepped
    assert v is not None and v.evidence["not_in_optimizer"] == ["a", "b", "c"]
    assert "pass all parameters to the optimizer" in " ".join(v.fixes)


def test_the_same_norms_in_layers_the_optimizer_steps_still_fire():
    v = Exploding().check(_copy_state(in_optimizer=True))
    assert v is not None and "1.25e+03 > limit 1000" in v.message
    assert v.evidence["total_grad_norm"] == 1250.0
    assert "clip gradients" in v.fixes[0]


def test_only_the_stepped_layers_count_in_the_total():
    st = _copy_state(in_optimizer=True)
    st.optimizer_params = {"a": True, "b": False, "c": False}   # only 'a' stepped
    # a's norm alone is 1250 / sqrt 3 = 722 < 1000: the sum in b and c is not counted
    assert Exploding().check(st) is None
    st = _copy_state(in_optimizer=True)
    st.optimizer_params = {"a": True, "b": False, "c": False}
    st.series["grad_norm"][-1] = [1200.0, 1.0, 1.0]
    v = Exploding().check(st)
    assert v is not None and v.evidence["total_grad_norm"] == 1200.0
    assert v.layers == ["a"]
    assert "layers the optimizer never steps" in v.evidence["ruled_out"]


# ---- lr_too_high's summed-gradients form and a squashed output ----------------------------

def _rising_state(output_op: str, seed=0):
    """The reads of the first 32 steps (every step to 16, every 2nd to 32, as the monitor
    samples) of a gradient norm that rises on nearly every read: a running sum of batch
    gradients of norm 1 along one direction, plus noise (|G_t| = t + 1 + noise)."""
    rng = np.random.default_rng(seed)
    st = HealthState()
    st.param_layers = ["conv", "fc"]
    st.init_scale = {"conv": 1.0, "fc": 1.0}
    st.reference = {"label_entropy": 2.3, "loss": "cross_entropy"}
    steps = list(range(17)) + list(range(18, 33, 2)) + [34]
    st.losses = [2.3] * 35
    for s in steps:
        st.sample_steps.append(s)
        g = (s + 1) * (1 + 0.02 * rng.standard_normal(2))
        st.series["grad_norm"].append(g.tolist())
        st.series["weight_norm"].append([1.0, 1.0])
        st.series["update_ratio"].append([1e-3, 1e-3])
        st.grad_read.append(True)
        st.output_op.append(output_op)
        st.lr.append(1e-3)
    return st


def test_a_rising_gradient_norm_is_a_sum_behind_a_linear_output():
    v = DETECTORS["lr_too_high"]().check(_rising_state("AddmmBackward"))
    assert v is not None and "summed over the steps" in v.message
    assert v.evidence["summed_gradients"]["rises"] == 24
    assert "zero_grad()" in v.fixes[0]


def test_a_rising_gradient_norm_behind_a_softmax_or_sigmoid_output_is_not_a_sum():
    """A gradient back through a squash is damped by its Jacobian and grows by itself as the
    outputs leave its flat part (fresh's softmax over the batch axis: 0.006 -> 0.19 in 32
    steps, 20 of 24 reads rising, with zero_grad called): no evidence of a sum."""
    for op in ("SoftmaxBackward", "SigmoidBackward"):
        assert DETECTORS["lr_too_high"]().check(_rising_state(op)) is None


def test_a_sigmoid_that_bce_undoes_does_not_hide_a_sum():
    """BCE on a sigmoid's probabilities sends back p - y, undamped: a sum there is named."""
    st = _rising_state("SigmoidBackward")
    st.reference = {"loss": "bce"}
    v = DETECTORS["lr_too_high"]().check(st)
    assert v is not None and "summed over the steps" in v.message


# ---- lr_too_low: small updates where the gradient vanishes through depth --------------------

DEPTH = ["l0", "l1", "l2", "l3", "l4", "l5", "head"]
# relative gradients falling 7x a layer toward the input (fresh7's deep sigmoid design: the
# first layer 2e-6 of the head's); with a step of lr x g the update ratios follow them
REL = [0.6 / 7.0 ** (6 - i) for i in range(7)]


def _deep_state(optimizer: str, rel=REL, lr=0.05, steps=120):
    st = HealthState()
    st.param_layers = list(DEPTH)
    st.init_scale = {p: 1.0 for p in DEPTH}
    st.optimizer_settings = {"type": optimizer, "groups": [{"lr": lr, "params": 7000}]}
    st.reference = {"label_entropy": 1.0986, "loss": "cross_entropy"}
    rng = np.random.default_rng(0)
    st.losses = [float(1.1 + 0.01 * rng.standard_normal()) for _ in range(steps)]
    for s in range(0, steps, 4):
        st.sample_steps.append(s)
        st.series["weight_norm"].append([1.0] * 7)
        st.series["grad_norm"].append(list(rel))
        st.series["update_ratio"].append([lr * r for r in rel])
        st.grad_read.append(True)
        st.lr.append(lr)
    st.initial_lr = lr
    return st


def test_small_updates_of_layers_whose_gradient_vanishes_are_not_a_low_rate():
    st = _deep_state("SGD")
    med = float(np.median([0.05 * r for r in REL]))
    assert med < 1e-4   # the median update is small: the old rule named the learning rate
    assert DETECTORS["vanishing_gradients"]().check(st) is not None
    assert DETECTORS["lr_too_low"]().check(st) is None


def test_the_same_small_updates_without_vanishing_are_a_low_rate():
    flat = [REL[3]] * 7   # every layer's relative gradient alike: nothing vanishes
    st = _deep_state("SGD", rel=flat)
    assert DETECTORS["vanishing_gradients"]().check(st) is None
    v = DETECTORS["lr_too_low"]().check(st)
    assert v is not None and "median update/weight ratio" in v.message
    assert v.fixes[0].startswith("raise the learning rate")


def test_an_eps_divided_step_is_still_judged_beside_a_vanishing_gradient():
    """Adam's step is about lr per weight whatever the gradient's size: a vanishing gradient
    does not make it small, so the small updates are the rate's."""
    st = _deep_state("Adam")
    assert DETECTORS["vanishing_gradients"]().check(st) is not None
    assert DETECTORS["lr_too_low"]().check(st) is not None


# ---- lr_too_low's constant-rate form: the validation loss must follow ----------------------

def _line_state(val_falls: bool, n=252):
    """SGD with healthy update sizes, the loss falling in a straight line within 10 % of the
    know-nothing level (lr_too_low's constant-rate form), and validation passes every 42
    steps whose loss falls with it, or stays at the know-nothing level while the training
    loss falls (labels the inputs do not predict, memorised one by one)."""
    ln3 = float(np.log(3))
    rng = np.random.default_rng(1)
    st = HealthState()
    st.param_layers = ["fc1", "fc2"]
    st.init_scale = {"fc1": 4.0, "fc2": 4.0}
    st.optimizer_settings = {"type": "SGD", "momentum": 0.9,
                             "groups": [{"lr": 0.05, "params": 500}]}
    st.reference = {"label_entropy": ln3, "loss": "cross_entropy"}
    curve = ln3 - 0.0002 * np.arange(n)
    st.losses = [float(v) for v in curve + 0.01 * rng.standard_normal(n)]
    for s in np.linspace(0, n - 1, 40).astype(int):
        st.sample_steps.append(int(s))
        st.series["weight_norm"].append([4.0, 4.0])
        st.series["grad_norm"].append([0.05, 0.05])
        st.series["update_ratio"].append([1e-3, 1e-3])
        st.grad_read.append(True)
        st.lr.append(0.05)
    st.initial_lr = 0.05
    for e, step in enumerate(range(41, n, 42)):
        train = float(curve[step])
        val = train + 0.003 if val_falls else ln3 + 0.002 * e
        st.validation.append({"step": step, "epoch": e, "train_loss": train, "val_loss": val,
                              "val_size": 360})
    return st


def test_a_straight_fall_that_carries_to_validation_is_a_step_too_small():
    v = DETECTORS["lr_too_low"]().check(_line_state(val_falls=True))
    assert v is not None and v.evidence["form"] == "constant-rate fall"
    val = v.evidence["validation"]
    assert val["follows"] and val["val_fall"] >= 0.5 * val["train_fall"] > 0
    assert any("memorisation" in r for r in v.evidence["ruled_out"])


def test_a_straight_fall_the_validation_loss_does_not_share_is_not_a_low_rate():
    st = _line_state(val_falls=False)
    from archlab.diagnose.detectors import constant_rate_fall, validation_follows
    assert constant_rate_fall(st) is not None   # the training curve alone looks the same
    assert validation_follows(st)["follows"] is False
    assert DETECTORS["lr_too_low"]().check(st) is None


# ---- overfitting: a rise that lasts, not one pass's spike ----------------------------------

def _overfit_state(train, val, val_size=300, per=37):
    rng = np.random.default_rng(2)
    n = per * len(train)
    st = HealthState()
    st.param_layers = ["conv", "fc"]
    st.init_scale = {"conv": 4.0, "fc": 4.0}
    st.reference = {"target_variance": 1.02, "loss": "mse"}
    st.targets = {"kind": "values", "batch_sizes": [32] * 40}
    level = np.repeat(np.asarray(train, dtype=float), per)
    st.losses = [float(v) for v in level * (1 + 0.3 * rng.standard_normal(n)).clip(0.2)]
    for s in np.linspace(0, n - 1, 40).astype(int):
        st.sample_steps.append(int(s))
        st.series["weight_norm"].append([4.0, 4.0])
        st.series["grad_norm"].append([0.5, 0.5])
        st.series["update_ratio"].append([1e-3, 1e-3])
        st.lr.append(1e-3)
    st.validation = [{"step": per * (i + 1) - 1, "epoch": i, "train_loss": t, "val_loss": v,
                      "val_size": val_size} for i, (t, v) in enumerate(zip(train, val))]
    return st


TRAIN_R = [0.287, 0.156, 0.129, 0.115, 0.096]


def test_one_pass_far_above_its_neighbours_is_not_overfitting():
    """fresh7's plain-loop 1-d ResNet twin (seed 2): 0.104, 0.122, then 0.412 at one pass (the
    next was 0.090): the pass before the last is not above the best beyond the noise."""
    val = [0.188, 0.168, 0.104, 0.122, 0.412]
    st = _overfit_state(TRAIN_R, val)
    from archlab.diagnose.detectors import validation_series_noise
    se = validation_series_noise(np.array(val))
    assert val[-1] - val[2] > 4 * se and val[-2] - val[2] < 2 * se
    assert DETECTORS["overfitting"]().check(st) is None


def test_a_rise_over_two_passes_is_overfitting():
    val = [0.188, 0.150, 0.104, 0.180, 0.300]
    st = _overfit_state(TRAIN_R, val)
    v = DETECTORS["overfitting"]().check(st)
    assert v is not None and v.evidence["best_epoch"] == 2
    assert "regularisation" in v.fixes[0]
