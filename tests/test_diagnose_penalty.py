"""The penalty channel and the rules that weigh a penalty's share of the loss (issue 14):
what the training code reports is subtracted from the loss the loss rules judge (the data
term), archlab's L1 term is reported with its exact value, the data term's elasticity to the
weights' scale (degree x penalty / data) against closed forms, batch-normalised layers left out,
and a layer a known penalty pulled toward 0."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from archlab.diagnose import monitor  # noqa: F401  registers every detector
from archlab.diagnose.callback import _read_penalty
from archlab.diagnose.detectors import DETECTORS
from archlab.diagnose.monitor import HealthRecorder
from archlab.diagnose.state import HealthState

LN3 = math.log(3)


def _state(data, samples=40, layers=("fc1", "fc2"), weight=2.0, settings=None, lr=1e-3):
    """A run whose data term is ``data`` per step, sampled on ``samples`` evenly spaced steps,
    every weight layer at ``weight`` (a number or a function of the sample index; default-init
    norm 4.0); cross entropy over 3 balanced classes."""
    st = HealthState()
    st.param_layers = list(layers)
    st.init_scale = {p: 4.0 for p in layers}
    st.losses = [float(v) for v in data]
    st.reference = {"classes": 3, "loss": "cross_entropy"}
    st.targets = {"kind": "classes", "counts": [1000, 1000, 1000], "batch_sizes": [32] * samples}
    st.optimizer_settings = settings or {}
    for k, s in enumerate(np.linspace(0, len(data) - 1, samples).astype(int)):
        w = weight(k) if callable(weight) else weight
        st.sample_steps.append(int(s))
        st.series["weight_norm"].append([w if not isinstance(w, list) else w[i]
                                         for i in range(len(layers))] if isinstance(w, list)
                                        else [w] * len(layers))
        st.series["grad_norm"].append([0.5] * len(layers))
        st.series["update_ratio"].append([1e-3] * len(layers))
        st.lr.append(lr)
    st.initial_lr = lr
    return st


def _adam(wd):
    return {"type": "Adam", "weight_decay": wd, "eps": 1e-8, "groups": [{"lr": 1e-3, "params": 100}]}


def _flat(level, n=300, sd=0.02, seed=0):
    return level + sd * np.random.default_rng(seed).standard_normal(n)


def check(st):
    return DETECTORS["over_regularisation"]().check(st)


# ------------------------------------------------------------------------- the channel ----
def test_a_reported_penalty_is_subtracted_from_the_loss_the_rules_judge(tmp_path):
    st = HealthState()
    for i in range(5):
        st.losses.append(10.0 + i)
        st.record_penalty(torch.tensor(8.0 + i), degree=1, what="L1 0.1 x sum |w|")
    assert np.allclose(st.loss_array(), 2.0) and np.allclose(st.raw_loss_array(), 10 + np.arange(5))
    assert st.loss_median(0, 5) == pytest.approx(2.0)
    st.losses.append(20.0)           # a loss whose penalty comes later: raw until reported
    assert st.loss_array()[-1] == 20.0 and st.loss_median(0, 6) == pytest.approx(2.0)
    st.record_penalty(15.0, degree=1)
    assert st.loss_array()[-1] == 5.0 and st.loss_median(0, 6) == pytest.approx(2.0)
    back = HealthState.load(st.save(tmp_path))
    assert back.penalty == st.penalty and np.allclose(back.loss_array(), st.loss_array())


def test_the_data_term_read_as_the_run_goes_equals_the_whole_subtraction():
    rng = np.random.default_rng(0)
    st, pending = HealthState(), []
    for step in range(300):
        st.losses.append(float(rng.normal(5, 1)))
        pending.append(step)
        while pending and rng.random() < 0.6:   # penalties reported late, in step order
            s = pending.pop(0)
            st.record_penalty(0.01 * s, degree=2, step=s)
        if step % 7 == 0:
            want = np.asarray(st.losses)
            want[np.asarray(st.penalty.get("steps", []), dtype=int)] -= np.asarray(
                st.penalty.get("values", []))
            assert np.allclose(st.loss_array(), want, rtol=0, atol=1e-12)


def test_record_penalty_refuses_a_bad_or_changing_degree():
    st = HealthState()
    st.losses.append(1.0)
    with pytest.raises(ValueError, match="degree must be a number > 0.*degree=1 for an L1"):
        st.record_penalty(0.1, degree=0)
    st.record_penalty(0.1, degree=2)
    with pytest.raises(ValueError, match="differs from the 2 recorded before"):
        st.record_penalty(0.1, degree=1)


def test_the_callback_reads_a_modules_penalty_once():
    st, m = HealthState(), nn.Linear(2, 2)
    st.losses.append(3.0)
    m.health_penalty = torch.tensor(0.5)          # a number: an L2 term
    _read_penalty(m, st)
    assert st.penalty["values"] == [0.5] and st.penalty["degree"] == 2 and m.health_penalty is None
    _read_penalty(m, st)                          # not reported again: nothing new
    assert len(st.penalty["values"]) == 1
    m.health_penalty = {"degree": 1}
    with pytest.raises(ValueError, match="must have 'value'"):
        _read_penalty(m, st)


def test_archlab_reports_its_l1_term_exactly():
    from archlab.train import prepare

    design = {"name": "tiny", "input": [1, 8, 8], "layers": [
        {"name": "conv", "block": "conv", "out": 4}, {"name": "pool", "block": "global_pool"},
        {"name": "fc", "block": "linear", "out": 3}]}
    data = {"source": "synthetic-classification", "samples": 96, "shape": [1, 8, 8], "classes": 3}
    setup = prepare(design, data, l1=0.25, progress=False)
    m = setup.module
    m.on_train_epoch_start()
    x, y = next(iter(setup.datamodule.train_dataloader()))
    total = m.training_step((x, y), 0)
    l1 = 0.25 * sum(p.detach().abs().sum() for p in m.model.parameters() if p.ndim > 1)
    rep = m.health_penalty
    assert rep["degree"] == 1 and float(rep["value"]) == pytest.approx(float(l1), rel=1e-6)
    with torch.no_grad():
        data_term = float(m.task.loss(m.model(x), y))
    assert float(total.detach() - rep["value"]) == pytest.approx(data_term, rel=1e-5)


# ------------------------------------------- (e) the data term's elasticity, closed forms ----
@pytest.mark.parametrize("ratio", [2.0, 0.5])
def test_coupled_l2_is_judged_by_the_data_terms_elasticity(ratio):
    """Adam's coupled L2 wd is the gradient of wd/2 |w|^2: with two layers of norm 2 the
    penalty is wd x 4 and its elasticity 2 x that / D. Named at 2, silent at 0.5."""
    data = 0.3 * LN3
    wd = ratio * data / (2 * 4.0)
    v = check(_state(_flat(data), settings=_adam(wd)))
    if ratio < 1:
        assert v is None
        return
    d = float(np.mean(_flat(data)[-75:]))
    assert v is not None and v.evidence["elasticity"] == pytest.approx(wd * 8.0 / d, rel=1e-9)
    assert v.evidence["penalties"][0]["value"] == pytest.approx(wd * 4.0)
    assert "weight decay" in v.fixes[0]


def test_a_usual_decay_on_wide_layers_while_the_loss_falls_is_silent():
    """SGD 0.1, momentum 0.9, decay 5e-4 on two wide layers (|w|^2 = 700 between them, a
    random start the decay slowly shrinks): wd |w|^2 / D = 0.35 / 0.33 > 1 on the numbers,
    but the data term still falls, so the two are not at the balance the ratio reads."""
    sgd = {"type": "SGD", "momentum": 0.9, "dampening": 0.0, "weight_decay": 5e-4,
           "groups": [{"lr": 0.1, "params": 10 ** 6}]}
    falling = LN3 * np.linspace(0.5, 0.3, 300) + 0.01 * np.random.default_rng(3).standard_normal(300)
    wide = lambda k: math.sqrt(350.0) * (1 - 1e-4 * k)   # noqa: E731  slowly shrinking
    assert check(_state(falling, settings=sgd, lr=0.1, weight=wide)) is None
    flat = _flat(0.3 * LN3)               # the same weights once the data term has stopped falling
    v = check(_state(flat, settings=sgd, lr=0.1, weight=wide))
    assert v is not None and v.evidence["elasticity"] > 1


def test_weights_still_growing_are_not_held_by_the_penalty():
    """The balance is along the weights' scale: a norm still growing means the data still
    outweighs the penalty, whatever the ratio."""
    wd = 2 * 0.3 * LN3 / 8.0             # elasticity 2 at the end
    assert check(_state(_flat(0.3 * LN3), settings=_adam(wd), weight=lambda k: 1.6 + 0.02 * k)) is None


def test_a_fitted_model_or_a_decoupled_decay_is_not_judged_by_elasticity():
    wd = 2 * 0.05 * LN3 / 8.0            # elasticity 2, but the data term is 0.05 x the reference
    assert check(_state(_flat(0.05 * LN3, sd=0.005), settings=_adam(wd))) is None
    adamw = {**_adam(2 * 0.3 * LN3 / 8.0), "type": "AdamW"}   # no loss term to weigh
    assert check(_state(_flat(0.3 * LN3), settings=adamw)) is None


def test_a_layer_that_feeds_batch_norm_costs_no_fit():
    """conv -> bn: the data term does not depend on conv's norm, so only fc's penalty counts."""
    st = _state(_flat(0.3 * LN3), layers=("conv", "bn", "fc"), weight=[2.0, 4.0, 1.0],
                settings=_adam(0.3))
    st.norm_batch = [{"bn": 32}]
    # fc alone: 2 x 0.15 / 0.33 = 0.91, silent; conv counted too it would be 4.5
    assert check(st) is None
    d = DETECTORS["over_regularisation"]()
    assert [st.param_layers[i] for i in d._decayed_layers(st)] == ["fc"]
    st.norm_batch = []                   # unknown as batch norm: every layer counted
    assert check(st).evidence["elasticity"] == pytest.approx(
        2 * 0.5 * 0.3 * (4 + 16 + 1) / np.mean(_flat(0.3 * LN3)[-75:]), rel=1e-9)


def test_a_reported_l1_term_is_weighed_with_degree_one():
    n, data = 300, _flat(0.3 * LN3)
    st = _state(np.zeros(n))
    st.losses = []
    for i in range(n):                   # P = 0.6 x D: L1's elasticity 0.6, silent; 1.5: named
        st.losses.append(float(data[i] * 2.5))
        st.record_penalty(data[i] * 1.5, degree=1, what="L1 0.05 x sum |w|")
    assert np.allclose(st.loss_array(), data)
    v = check(st)
    assert v is not None and v.evidence["elasticity"] == pytest.approx(1.5, rel=1e-9)
    st2 = _state(np.zeros(n))
    st2.losses = []
    for i in range(n):
        st2.losses.append(float(data[i] * 1.6))
        st2.record_penalty(data[i] * 0.6, degree=1)
    assert check(st2) is None


# ------------------------------------------------ (f) a layer a known penalty collapsed ----
def test_a_layer_a_known_penalty_pulled_toward_zero_is_named():
    n, data = 300, _flat(0.4 * LN3)
    shrink = lambda k: [4.0 * 0.95 ** k, 4.0]   # noqa: E731  c1: 4 -> 0.54, c2 stays
    st = _state(np.zeros(n), layers=("c1", "c2"), weight=shrink)
    st.losses = []
    for i in range(n):
        st.losses.append(float(data[i] + 0.01))
        st.record_penalty(0.01, degree=1, what="L1 1e-4 x sum |w|")
    v = check(st)
    assert v is not None and v.layers == ["c1"]
    assert v.evidence["collapsed"]["c1"]["last"] == pytest.approx(4.0 * 0.95 ** 39)
    # the same weights with no penalty known: nothing pulls them (other rules judge them)
    plain = _state(data, layers=("c1", "c2"), weight=shrink)
    assert check(plain) is None


# ----------------------------------------------------------- on a real plain training loop ----
def _train(wd, steps=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = 3 * torch.randn(3, 8, generator=g)
    y = torch.randint(0, 3, (1200,), generator=g)
    x = centres[y] + torch.randn(1200, 8, generator=g)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 3))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=wd)
    rec = HealthRecorder(detectors=["over_regularisation"])
    rec.attach(model, optimizer=opt)
    for _ in range(steps):
        i = torch.randint(0, 1200, (64,), generator=g)
        rec.begin_step(targets=y[i])
        loss = nn.functional.cross_entropy(model(x[i]), y[i])
        rec.after_loss(loss)
        opt.zero_grad()
        loss.backward()
        rec.before_optimizer_step()
        opt.step()
        rec.end_step()
    return [e.detector for e in rec.events]


def test_a_usual_decay_is_silent_and_a_huge_one_is_named_on_a_real_run():
    assert _train(5e-4) == []
    assert _train(3.0) == ["over_regularisation"]


# ---------------------------------- (g) a penalty in the loss that nobody reported ----
def _regression(first, shrink=True, op="AddmmBackward", n=300, samples=30):
    """MSE on targets of mean 0 and variance 1; the output layer's outputs have mean 0.1 and
    sd 0.1 (at most (0.1 + 1)^2 + 0.1^2 = 1.22 of data term); the loss falls from ``first`` to
    1.3 x the target variance; 'out' shrinks 4.0 -> 0.04 when ``shrink``."""
    st = HealthState()
    st.param_layers, st.act_layers = ["h", "out"], ["h", "act", "out"]
    st.init_scale = {"h": 4.0, "out": 4.0}
    st.reference = {"loss": "mse"}
    st.targets = {"kind": "values", "n": 1000, "sum": 0.0, "sumsq": 1000.0, "absmax": 3.0,
                  "matches_output": True}
    st.output_width = 1
    st.losses = list(1.3 + (first - 1.3) * np.exp(-np.arange(n) / 30.0))
    for k, s in enumerate(np.linspace(0, n - 1, samples).astype(int)):
        st.sample_steps.append(int(s))
        st.series["weight_norm"].append([4.0, 4.0 * (0.85 ** k if shrink else 1.0)])
        st.series["grad_norm"].append([0.5, 0.5])
        st.series["update_ratio"].append([1e-3, 1e-3])
        st.series["act_mean"].append([0.0, 0.3, 0.1])
        st.series["act_std"].append([1.0, 0.6, 0.1])
        st.output_op.append(op)
        st.lr.append(1e-3)
    return st


def test_a_loss_the_outputs_cannot_make_with_weights_collapsing_is_a_hidden_penalty():
    bound = (0.1 + 1.0) ** 2 + 0.1 ** 2
    v = check(_regression(40.0))
    assert v is not None and v.evidence["output_bound"] == pytest.approx(bound)
    assert v.layers == ["out"] and "remove the hand-written" in v.fixes[0]
    assert check(_regression(2.0 * bound * 0.99)) is None   # within 2 x what the outputs cost
    assert check(_regression(40.0, shrink=False)) is None   # nothing pulled toward 0
    # the output made by something after the watched layer (a scale): the bound says nothing
    assert check(_regression(40.0, op="MulBackward")) is None


def _plain_regression(l2, steps=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1000, 6, generator=g)
    y = (x[:, :1] * x[:, 1:2] + torch.sin(x[:, 2:3]))
    y = (y - y.mean()) / y.std()
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 64), nn.GELU(), nn.Linear(64, 64), nn.GELU(), nn.Linear(64, 1))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    rec = HealthRecorder(detectors=["over_regularisation"])
    rec.attach(model, optimizer=opt)
    for _ in range(steps):
        i = torch.randint(0, 1000, (64,), generator=g)
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
    return [e.detector for e in rec.events]


def test_an_unreported_l2_term_in_a_plain_loop_is_named_and_a_plain_mse_is_not():
    assert _plain_regression(1.0) == ["over_regularisation"]
    assert _plain_regression(0.0) == [] and _plain_regression(1e-4) == []


# ------------------------------------------------ archlab's --freeze, told to the monitor ----
def test_a_freeze_is_on_purpose_only_over_loaded_weights():
    """--freeze with --init-from holds trained weights (frozen on purpose: not reported);
    without it the frozen nodes keep their random initialisation, which frozen_layers names."""
    from pathlib import Path

    from archlab.train.config import make_config
    from archlab.train.engine import _health_monitor

    random = _health_monitor(make_config({"freeze": ["conv*"]}), Path("run"))
    loaded = _health_monitor(make_config({"freeze": ["conv*"], "init_from": "runs/base"}), Path("run"))
    assert random.options["expected_frozen"] == ()
    assert loaded.options["expected_frozen"] == ("conv*",)
