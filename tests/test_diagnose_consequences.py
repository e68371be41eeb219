"""Verdicts that name the real cause: consequences of a cause reported as its symptoms, windows
sized in examples, update ratios against the initialisation scale, a too-small initialisation,
momentum's effective step, clipping only with evidence that it happens, overfitting beyond the
validation noise, and the generative special cases moved into the shared detectors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from archlab.diagnose import HealthRecorder, HealthState
from archlab.diagnose.detectors import (
    DETECTORS,
    DyingRelu,
    LrHigh,
    Vanishing,
    Verdict,
    attribute,
    clipping_binding,
    divergence_onset,
    loss_gave_no_gradient,
)
from archlab.diagnose.structure import affine_test

EXPLAINS = {d: cls.explains for d, cls in DETECTORS.items()}


def loop(model, x, y, steps, *, opt=None, clip=None, loss_fn=None, **kw):
    """A plain loop driving the recorder (as docs/diagnostics.md shows)."""
    rec = HealthRecorder(**kw)
    opt = opt or torch.optim.SGD(model.parameters(), lr=0.1)
    rec.attach(model, optimizer=opt)
    loss_fn = loss_fn or nn.functional.cross_entropy
    for _ in range(steps):
        rec.begin_step(targets=y)
        loss = loss_fn(model(x), y)
        rec.after_loss(loss)
        opt.zero_grad()
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        rec.before_optimizer_step()
        opt.step()
        rec.end_step()
    return rec


def test_what_a_divergence_leaves_behind_is_its_consequence():
    """Dead units and zero gradients raised at or after a divergence's onset are reported as
    its symptoms, with the divergence's fixes as the way out; raised before it they stay causes."""
    high = Verdict("lr_too_high", 20, "", evidence={"onset_step": 1})
    dead = Verdict("dying_relu", 7, "")
    vanish = Verdict("vanishing_gradients", 26, "")
    flat = Verdict("loss_not_decreasing", 104, "", kind="symptom")
    attribute([dead, high, vanish, flat], EXPLAINS)
    assert dead.kind == vanish.kind == "symptom"
    assert dead.consequence_of == vanish.consequence_of == ["lr_too_high"]
    assert dead.explained_by == ["lr_too_high"] and high.kind == "cause"
    # the plateau: explained by the dead units and, through them, by the divergence
    assert set(flat.explained_by) == {"lr_too_high", "dying_relu", "vanishing_gradients"}
    assert dead.to_dict()["consequence_of"] == ["lr_too_high"]
    # a dead layer found BEFORE the divergence began is a cause of its own
    early = Verdict("dying_relu", 0, "")
    attribute([early, Verdict("exploding_gradients", 30, "", evidence={"onset_step": 12})], EXPLAINS)
    assert early.kind == "cause" and early.consequence_of == []


def test_the_target_scale_explains_the_updates_and_their_traces_transitively():
    targets = Verdict("unscaled_targets", 0, "", evidence={"onset_step": 0})
    high = Verdict("lr_too_high", 3, "", evidence={"onset_step": 3})
    dead = Verdict("dying_relu", 30, "")
    # a layer frozen on purpose is a configuration fact, nobody's consequence; one with a
    # gradient and no update may be
    frozen = Verdict("frozen_layers", 5, "", evidence={"requires_grad_false": ["0"]})
    stuck = Verdict("frozen_layers", 5, "", evidence={"not_updated": ["0"], "requires_grad_false": []})
    attribute([targets, high, dead, frozen], EXPLAINS)
    assert high.consequence_of == ["unscaled_targets"]
    assert set(dead.consequence_of) == {"lr_too_high", "unscaled_targets"}   # up to the root
    assert frozen.kind == "cause"
    attribute([targets, stuck], EXPLAINS)
    assert stuck.consequence_of == ["unscaled_targets"]
    # unshuffled data explains the saturation it produces
    order = Verdict("unshuffled_data", 7, "", evidence={"onset_step": 0})
    sat = Verdict("saturated_activations", 9, "")
    attribute([order, sat], EXPLAINS)
    assert sat.consequence_of == ["unshuffled_data"]


def test_divergence_onset_is_the_earliest_evidence():
    st = HealthState(param_layers=["a"], losses=[1.0] * 5 + [9.0] * 3 + [1.0] * 8,
                     reference={"classes": 3})
    assert divergence_onset(st) == 5              # 9 > 3 x ln 3 on 3 of the 5 steps from step 5
    st.losses = [1.0] * 5 + [9.0] + [1.0] * 10     # one spiking batch is noise, not a divergence
    assert divergence_onset(st) is None
    st.losses = [1.0] * 16
    assert divergence_onset(st) is None
    # a whole network moving by more than 0.3 of its scale in one step
    st.sample_steps, st.init_scale = [0, 1, 2], {"a": 1.0}
    st.series["weight_norm"] = [[1.0], [1.0], [1.0]]
    st.series["update_ratio"] = [[1e-3], [0.5], [1e-3]]
    assert divergence_onset(st) == 1


@pytest.mark.parametrize("batch", [4, 64])
def test_the_dead_unit_window_is_counted_in_examples_not_batches(batch):
    """The same verdict at batch 4 and batch 64: 300 watched examples (the first 16 of a batch
    are watched), so 75 samples of 4 examples or 19 of 16, and at least 10 steps."""
    n = 100
    st = HealthState(act_layers=["r"], act_kinds={"r": "relu"}, sample_steps=list(range(n)),
                     targets={"kind": "classes", "counts": [batch * n // 2] * 2,
                              "batch_sizes": [batch] * n, "batch_classes": [2] * n})
    st.losses = [1.0] * n
    rows = [[1.0]] * n
    need = math.ceil(300 / min(16, batch))
    first = None
    for k in range(1, n + 1):
        st.series["dead_fraction"] = rows[:k]
        st.sample_steps = list(range(k))
        st.losses = [1.0] * k
        if DyingRelu().check(st) is not None:
            first = k
            break
    assert first == need


def _tanh_mlp(std=None, norm=False):
    torch.manual_seed(0)
    layers = []
    for a, b in ((2, 48), (48, 48), (48, 48)):
        layers += [nn.Linear(a, b)] + ([nn.LayerNorm(b)] if norm else []) + [nn.Tanh()]
    model = nn.Sequential(*layers, nn.Linear(48, 4))
    if std is not None:
        for m in model.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, std)
                nn.init.zeros_(m.bias)
    return model


def test_a_too_small_initialisation_is_named_with_its_norms_not_as_a_high_learning_rate():
    x, y = torch.randn(64, 2), torch.randint(0, 4, (64,))
    small = _tanh_mlp(0.01)
    start = float(small[2].weight.detach().norm())
    rec = loop(small, x, y, 12, opt=torch.optim.Adam(small.parameters(), lr=1e-2))
    fired = {v.detector: v for v in rec.events}
    assert "lr_too_high" not in fired
    v = fired["vanishing_gradients"]
    assert v.step == 0 and v.evidence["cause"] == "initialisation"
    # oracle: the norms PyTorch's default init gives a (48, 48) weight, sqrt(48 / 3) = 4
    assert v.evidence["default_init_norm"]["2"] == pytest.approx(4.0)
    assert v.evidence["initial_norm"]["2"] == pytest.approx(start)
    assert "initialis" in v.fixes[0]
    for model in (_tanh_mlp(), _tanh_mlp(0.01, norm=True)):   # default init; layer norm restores
        rec = loop(model, x, y, 3, opt=torch.optim.Adam(model.parameters(), lr=1e-2))
        assert Vanishing()._small_init(_first_sample(rec.state)) is None


def _first_sample(st: HealthState) -> HealthState:
    out = HealthState(param_layers=st.param_layers, act_layers=st.act_layers,
                      init_scale=st.init_scale, sample_steps=st.sample_steps[:1],
                      input_stats=st.input_stats[:1], losses=st.losses[:1])
    for k in out.series:
        out.series[k] = st.series[k][:1]
    return out


def test_extreme_momentum_is_named_with_its_effective_step():
    st = HealthState(param_layers=["a"], losses=list(np.linspace(2.0, 1.0, 60)) + [1.8] * 20,
                     sample_steps=[0, 40, 79], lr=[0.05] * 3)
    st.series["weight_norm"] = [[5.0], [20.0], [50.0]]
    st.series["update_ratio"] = [[0.01], [0.02], [0.01]]
    st.series["grad_norm"] = [[0.2], [0.5], [1.0]]
    st.optimizer_settings = {"type": "SGD", "momentum": 0.999, "dampening": 0.0}
    v = LrHigh().check(st)
    assert v is not None and "momentum 0.999" in v.message and "lower the momentum" in v.fixes[0]
    assert v.evidence["momentum"]["effective_lr"] == pytest.approx(0.05 / 0.001)
    st.optimizer_settings["momentum"] = 0.9       # the usual setting amplifies 10x: no verdict
    assert LrHigh().check(st) is None
    st.optimizer_settings = {"type": "Adam", "betas": (0.9, 0.999)}
    assert LrHigh().check(st) is None


def test_clipping_is_named_only_with_evidence_that_it_happens():
    # a loop that clips without telling the monitor: the total norm is pinned, the layers' shares move
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4))
    rec = HealthRecorder(every=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    rec.attach(model, optimizer=opt)
    for _ in range(8):   # a new batch every step: the gradient's direction moves
        xb, yb = torch.randn(32, 16), torch.randint(0, 4, (32,))
        rec.begin_step(targets=yb)
        loss = nn.functional.cross_entropy(model(xb), yb)
        rec.after_loss(loss)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1e-3)
        rec.before_optimizer_step()
        opt.step()
        rec.end_step()
    assert clipping_binding(rec.state)["clip_value"] == pytest.approx(1e-3, rel=1e-4)
    # a constant gradient (never zeroed, nothing moves): every layer's norm pinned, no clipping
    st = HealthState(param_layers=["a", "b"])
    st.series["grad_norm"] = [[0.3, 0.4]] * 5
    assert clipping_binding(st) is None


def test_steps_whose_loss_gave_no_gradient_are_left_out():
    """A hinge loss past its margin gives every layer exactly 0: no vanishing gradient."""
    g = np.array([[0.0, 0.0], [0.1, 0.0], [0.0, np.nan]])
    assert loss_gave_no_gradient(g).tolist() == [True, False, True]
    torch.manual_seed(0)
    d = nn.Sequential(nn.Linear(8, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1))
    x = torch.randn(32, 8)
    # a hinge loss whose margin every score meets (scores of ~0 against a margin of -100)
    hinge = lambda out, _: torch.relu(-100 - out).mean()  # noqa: E731
    rec = loop(d, x, torch.zeros(32), 12, loss_fn=hinge, opt=torch.optim.SGD(d.parameters(), lr=0.1))
    assert all(v == 0 for row in rec.state.series["grad_norm"] for v in row)
    assert "vanishing_gradients" not in [v.detector for v in rec.events]


def test_the_affine_test_refuses_near_copies():
    torch.manual_seed(0)
    relu = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 3))
    linear = nn.Sequential(nn.Linear(8, 32), nn.Linear(32, 3))
    x = torch.randn(8, 8)
    assert affine_test(relu, (x,))["affine"] is False
    assert affine_test(linear, (x,))["affine"] is True
    copies = x[:1].repeat(8, 1) + 1e-3 * torch.randn(8, 8)   # one image, barely varied
    assert affine_test(relu, (copies,)) is None and affine_test(linear, (copies,)) is None
