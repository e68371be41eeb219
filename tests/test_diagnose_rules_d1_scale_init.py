"""Issue 14, fifth suite (seen): two rules that read the wrong quantity.

* unscaled_inputs: the monitor measures the first floating-point input of a layer with
  weights, which behind an embedding of integer token ids is the embedding's output; a
  divergence grows it. The data's scale is there from the first sample, so an input in scale
  on the first sample is not an input-scaling fault (fresh5 f5_l_keys_adam_lr_1).
* the initialisation ratios compare a layer's norm with the default-init norm of its WEIGHTS
  (structure.init_scale, biases count 0); a layer's recorded weight_norm holds its bias, which
  a weight scaling leaves at its default and which then dominates a layer of small fan-in
  (fresh5 f5_p_swissroll_init_x0.01). With the weights' own norm at attach
  (``state.init_weight_norm``) the ratio is the weights' scale.

Oracles: norms computed here with torch from real layers (weights x 0.01, default biases), and
the gradient factor of the best-placed layer, the product of the other layers' scales (0.01^2).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from archlab.diagnose import monitor  # noqa: F401  registers every detector
from archlab.diagnose.detectors import Unscaled, Vanishing, init_ratios, scale_problems
from archlab.diagnose.state import HealthState
from archlab.diagnose.structure import init_scale


def test_an_input_in_scale_on_the_first_sample_is_not_unscaled_later():
    st = HealthState(param_layers=["emb", "score"])
    # an embedding's output: N(0, 1) at initialisation, grown to std 28 by Adam at lr 1
    st.input_stats = [(0.01, 1.0), (0.3, 6.0), (1.2, 28.0)]
    assert Unscaled().check(st) is None
    assert "input_scale" not in scale_problems(st)
    # raw pixels are out of scale from the first batch on: named as before
    st.input_stats = [(33.0, 78.0), (34.0, 77.0)]
    v = Unscaled().check(st)
    assert v is not None and "mean 34, std 77" in v.message
    assert scale_problems(st)["input_scale"] == {"input_mean": 34.0, "input_std": 77.0}


def _swissroll_layers(gain):
    torch.manual_seed(0)
    layers = [nn.Linear(3, 64), nn.Linear(64, 64), nn.Linear(64, 1)]
    with torch.no_grad():
        for m in layers:
            m.weight.mul_(gain)
    full = [float(torch.cat([p.detach().reshape(-1) for p in m.parameters()]).norm()) for m in layers]
    own = [float(m.weight.detach().norm()) for m in layers]
    scale = [init_scale(list(m.parameters())) for m in layers]
    return full, own, scale


def _first_sample(full, own, scale, out_std):
    names = ["1", "3", "5"]
    st = HealthState(param_layers=names, act_layers=names)
    st.init_scale = dict(zip(names, scale, strict=True))
    st.sample_steps = [0]
    st.losses = [1.0]
    st.series["weight_norm"].append(list(full))
    st.series["grad_norm"].append([1e-4, 1e-3, 1e-1])
    st.series["act_std"].append([0.33, 0.07, out_std])
    st.input_stats = [(0.0, 1.0)]
    if own is not None:
        st.init_weight_norm = dict(zip(names, own, strict=True))
    return st


def test_init_ratios_use_the_weights_alone_when_recorded():
    full, own, scale = _swissroll_layers(0.01)
    # the first layer's default bias (uniform +-1/sqrt(3)) is ~58x its scaled weights
    assert full[0] / scale[0] > 0.25 and own[0] / scale[0] < 0.02
    st = _first_sample(full, None, scale, out_std=4e-8)
    assert init_ratios(st)["1"] == pytest.approx(full[0] / scale[0], rel=1e-9)
    assert Vanishing().check(st) is None   # the bias hides the scaling: the miss
    st = _first_sample(full, own, scale, out_std=4e-8)
    r = init_ratios(st)
    for name, o, s in zip(["1", "3", "5"], own, scale, strict=True):
        assert r[name] == pytest.approx(o / s, rel=1e-9)
    v = Vanishing().check(st)
    assert v is not None and v.evidence["cause"] == "initialisation"
    # the best-placed layer's factor: the product of the other two layers' scales
    logs = np.log([o / s for o, s in zip(own, scale, strict=True)])
    assert v.evidence["best_layer_gradient_factor"] == pytest.approx(
        math.exp(logs.sum() - logs.min()), rel=1e-9)
    assert v.evidence["best_layer_gradient_factor"] < 1e-3
    assert v.evidence["initial_norm"]["3"] == pytest.approx(own[1], rel=1e-9)


def test_a_default_initialisation_is_not_small_with_the_weights_alone():
    full, own, scale = _swissroll_layers(1.0)
    st = _first_sample(full, own, scale, out_std=0.3)
    assert all(0.8 < x < 1.2 for x in init_ratios(st).values())
    assert Vanishing().check(st) is None
