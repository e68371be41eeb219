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
