"""over_regularisation (g) reads an unreported L2 term from the gradients when no single watched
layer makes the output (issue 14; fresh7 f7_p_otl_l2_in_loss: a plain loop adds 1.0 x the sum
of squared weights to the MSE of a wide-and-deep regressor, whose output is the sum of two
linear layers; the output-bound route of (g) has no bound there and only the loss symptom fired).

Oracles: the coefficient the loop uses, and lambda x the sum of squared weights computed from
the model before training; autograd's gradient of lambda |W|^2 is 2 lambda W."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from archlab.diagnose import HealthRecorder
from archlab.diagnose.baselines import loss_reference
from archlab.diagnose.detectors import DETECTORS
from archlab.diagnose.state import HealthState


class WideDeep(nn.Module):
    def __init__(self):
        super().__init__()
        self.wide = nn.Linear(6, 1)
        self.deep = nn.Sequential(nn.Linear(6, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                                  nn.Linear(64, 1))

    def forward(self, x):
        return self.wide(x) + self.deep(x)   # AddBackward: no watched layer makes it alone


def _run(l2, steps=250, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1000, 6, generator=g)
    y = x[:, :1] * x[:, 1:2] + torch.sin(x[:, 2:3])
    y = (y - y.mean()) / y.std()
    torch.manual_seed(seed)
    model = WideDeep()
    squares = sum(float((p.detach() ** 2).sum()) for p in model.parameters() if p.dim() >= 2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    rec = HealthRecorder()
    rec.attach(model, optimizer=opt)
    for _ in range(steps):
        i = torch.randint(0, 1000, (32,), generator=g)
        rec.begin_step(targets=y[i])
        loss = nn.functional.mse_loss(model(x[i]), y[i])
        if l2:
            loss = loss + l2 * sum((p ** 2).sum() for p in model.parameters() if p.dim() >= 2)
        rec.after_loss(loss)
        opt.zero_grad()
        loss.backward()
        rec.before_optimizer_step()
        opt.step()
        rec.end_step()
    rec.finish(None)
    return {v.detector: v for v in rec.events}, rec.state, squares


def test_an_unreported_l2_term_behind_a_summed_output_is_read_from_the_gradients():
    fired, st, squares = _run(1.0)
    rule = DETECTORS["over_regularisation"]()
    ref = loss_reference(st)
    assert math.isnan(rule._output_bound(st, ref, 0))   # the route that missed it
    v = fired["over_regularisation"]
    imp = v.evidence["implied_l2"]
    assert imp["lambda"] == pytest.approx(1.0, rel=0.02)                 # the loop's coefficient
    assert imp["squared_weights"] == pytest.approx(squares, rel=1e-6)    # the model's own weights
    assert imp["implied_penalty"] == pytest.approx(squares, rel=0.02)
    assert imp["first_loss"] - imp["implied_penalty"] == pytest.approx(imp["rest"])
    assert 0 < imp["rest"] <= 2 * ref.value
    assert v.evidence["collapsed"] and set(v.layers) <= set(st.param_layers)
    assert "an L2 term in the loss that nobody reported" in v.message
    assert "2 lambda W" in v.message
    assert v.fixes[0].startswith("remove the hand-written L2 term from the loss")
    assert "coefficient, read from the gradients, is about 1" in v.fixes[0]


@pytest.mark.parametrize("l2", [0.0, 1e-4])
def test_no_or_a_usual_l2_term_is_silent(l2):
    fired, _, _ = _run(l2)
    assert "over_regularisation" not in fired, fired["over_regularisation"].message


def _state(first_loss, grads, weights=(4.0, 4.0), n=300, samples=30):
    """A regression whose output no watched layer makes; the first sample's gradient norms
    ``grads`` against weights of norm ``weights`` at attach; 'b' shrinks 4.0 -> ~0.04."""
    st = HealthState()
    st.param_layers, st.act_layers = ["a", "b"], ["a", "act", "b"]
    st.init_scale = {"a": 4.0, "b": 4.0}
    st.init_weight_norm = dict(zip(("a", "b"), weights))
    st.reference = {"loss": "mse"}
    st.targets = {"kind": "values", "n": 1000, "sum": 0.0, "sumsq": 1000.0, "absmax": 3.0,
                  "matches_output": True}
    st.output_width = 1
    st.losses = list(1.3 + (first_loss - 1.3) * np.exp(-np.arange(n) / 30.0))
    for k, s in enumerate(np.linspace(0, n - 1, samples).astype(int)):
        st.sample_steps.append(int(s))
        st.series["weight_norm"].append([4.0, 4.0 * 0.85 ** k])
        st.series["grad_norm"].append(list(grads) if k == 0 else [0.5, 0.5])
        st.series["update_ratio"].append([1e-3, 1e-3])
        st.series["act_mean"].append([0.0, 0.3, 0.1])
        st.series["act_std"].append([1.0, 0.6, 0.1])
        st.output_op.append("AddBackward")
        st.grad_read.append(True)
        st.lr.append(1e-3)
    return st


def test_the_implied_term_must_account_for_the_first_loss():
    rule = DETECTORS["over_regularisation"]()
    # lambda = 8 / (2 x 4) = 1 on both layers: 1 x (16 + 16) = 32 of a first loss of 33
    v = rule.check(_state(33.0, (8.0, 8.0)))
    assert v is not None and v.evidence["implied_l2"]["implied_penalty"] == pytest.approx(32.0)
    assert v.evidence["implied_l2"]["lambda"] == pytest.approx(1.0)
    # the smallest ratio is the estimate: a layer whose data gradient adds to it does not count
    assert rule.check(_state(33.0, (8.0, 20.0))).evidence["implied_l2"]["lambda"] == 1.0
    # implied 32 > 1.1 x a first loss of 20: not a term in this loss
    assert rule.check(_state(20.0, (8.0, 8.0))) is None
    # implied 8 leaves 25 of a first loss of 33 unexplained (> 2 x the reference, 1)
    assert rule.check(_state(33.0, (4.0, 4.0))) is None
    # a first loss within 2 x the reference: nothing beside a data term to see
    assert rule.check(_state(1.9, (0.5, 0.5), weights=(0.5, 0.5))) is None
