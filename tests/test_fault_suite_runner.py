"""The blind suites' shared running code (archlab.diagnose.fault_suite_runner).

Oracles: hand-written PyTorch (the loop docs/diagnostics.md shows, written out here with the
same seeds), hand arithmetic for ``hurt`` and the losses, and the seeds each suite's HURT table
was measured with (they were constants of each suite's own copy of this code). Monitor off
throughout: these check the loop, not the detectors.
"""

from __future__ import annotations

import math
from types import SimpleNamespace as NS

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from archlab.diagnose import fault_suite_runner as runner
from archlab.diagnose.fault_suite_runner import SuiteRunner

N, D, BATCH, STEPS = 40, 3, 8, 12


def _data(seed):
    g = torch.Generator().manual_seed(123)
    x = torch.randn(N + 10, D, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.1 * torch.randn(N + 10, 1, generator=g)
    return x[:N], y[:N], x[N:], y[N:]


def _model(shape, n_out):
    return nn.Sequential(nn.Linear(shape[0], 8), nn.Tanh(), nn.Dropout(0.3), nn.Linear(8, n_out))


def _runner(**kw):
    return SuiteRunner("test", classes={"c": 3}, prepare=lambda s, seed: _data(seed),
                       archlab_data=None, candidates=[], healthy=[], hurt_table={},
                       model_seed=(100, 7), loader_seed=50, **kw)


def _setup(**train):
    return NS(name="t", healthy=True, expected=(), plausible=(), task="regression", data="r",
              model=_model, prep={}, path="plain",
              train={"optimizer": "sgd", "lr": 0.05, "batch": BATCH, "steps": STEPS, **train})


def _oracle(seed, bug=None, step_every=None):
    """The user's loop written out by hand, with the seeds a suite gives."""
    xtr, ytr, xva, yva = _data(seed)
    torch.manual_seed(100 + 7 * seed)
    model = _model((D,), 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.0)
    g = torch.Generator().manual_seed(50 + seed)
    if bug == "eval_mode":
        model.eval()
    step = 0
    while step < STEPS:
        order = torch.randperm(N, generator=g)
        for i in range(0, N - BATCH + 1, BATCH):
            if step >= STEPS:
                break
            x, y = xtr[order[i:i + BATCH]], ytr[order[i:i + BATCH]]
            loss = F.mse_loss(model(x), y)
            if bug != "zero_grad_after_backward":
                opt.zero_grad()
            loss.backward()
            if bug == "zero_grad_after_backward":
                opt.zero_grad()
            if step_every is None or step % step_every == 0:
                opt.step()
            step += 1
    model.eval()
    with torch.no_grad():
        out = model(xva)
    return max(-1.0, 1 - float(((out - yva) ** 2).mean() / ((yva - yva.mean()) ** 2).mean()))


@pytest.mark.parametrize("bug", [None, "eval_mode", "zero_grad_after_backward", "step_every"])
def test_plain_loop_is_the_hand_written_loop(bug, tmp_path):
    train = {"bug": bug, "step_every": 3} if bug == "step_every" else {"bug": bug} if bug else {}
    r = _runner().run_plain(_setup(**train), 1, False, tmp_path, STEPS)
    assert r.steps == STEPS and not r.fired
    assert r.score == _oracle(1, bug, 3 if bug == "step_every" else None)


def test_zero_grad_after_backward_never_moves_the_weights(tmp_path):
    moved = _runner().run_plain(_setup(), 0, False, tmp_path, STEPS).score
    frozen = _runner().run_plain(_setup(bug="zero_grad_after_backward"), 0, False, tmp_path, STEPS)
    _, _, xva, yva = _data(0)
    torch.manual_seed(100)
    untrained = _model((D,), 1).eval()
    with torch.no_grad():
        out = untrained(xva)
    expect = max(-1.0, 1 - float(((out - yva) ** 2).mean() / ((yva - yva.mean()) ** 2).mean()))
    assert frozen.score == expect != moved


def test_run_names_its_result_and_times_it():
    r = _runner().run(_setup(), seed=2, monitor=False, steps=3)
    assert (r.setup, r.seed, r.steps) == ("t", 2, 3) and r.seconds > 0
    assert math.isfinite(r.score)


def test_hurt_is_the_twins_mean_minus_the_faults_non_finite_as_minus_one():
    fault = NS(name="f", twin="h")
    r = SuiteRunner("test", classes={}, prepare=None, archlab_data=None, candidates=[fault],
                    healthy=[], hurt_table={"h": [0.9, 0.7], "f": [math.nan, 0.2]},
                    model_seed=(0, 0), loader_seed=0)
    assert r.hurt("f") == pytest.approx(0.8 - (-1.0 + 0.2) / 2)


def _convnet(shape, n_out):
    return nn.Sequential(nn.Conv1d(1, 2, 3), nn.Flatten(), nn.Linear(2 * (shape[1] - 2), 5),
                         nn.ReLU(), nn.Linear(5, n_out))


@pytest.mark.parametrize("layers, frozen", [(runner.WEIGHT_LAYERS, [True, True, False]),
                                            ((nn.Linear,), [False, True, True])])
def test_build_seeds_the_model_and_freezes_the_first_n_layers_of_the_suites_kind(layers, frozen):
    s = NS(model=_convnet, task="classification", data="c", train={"freeze": 2})
    net = _runner(freeze_layers=layers).build(s, (1, 6), 2)
    torch.manual_seed(100 + 7 * 2)
    ref = _convnet((1, 6), 3)
    assert all(torch.equal(a, b) for a, b in zip(net.parameters(), ref.parameters(), strict=True))
    weights = [m for m in net.modules() if isinstance(m, runner.WEIGHT_LAYERS)]
    assert [not m.weight.requires_grad for m in weights] == frozen
    assert len(runner.params({}, net)) == 2 * frozen.count(False)


def test_losses_the_user_wrote():
    out, y = torch.randn(6, 3), torch.tensor([0, 2, 1, 1, 0, 2])
    cls = NS(task="classification", train={})
    net = nn.Linear(2, 3)
    assert torch.equal(runner.loss(cls)(net, out, y), F.cross_entropy(out, y))
    summed = runner.loss(NS(task="classification", train={"bug": "sum_reduction"}))(net, out, y)
    assert summed.item() == pytest.approx(6 * F.cross_entropy(out, y).item(), rel=1e-6)
    nll = runner.loss(NS(task="classification", train={"bug": "nll_sign"}))(net, out, y)
    assert nll.item() == pytest.approx(-F.cross_entropy(out, y).item(), rel=1e-6)
    o, t = torch.randn(5, 1), torch.randn(5, 1)
    squeezed = runner.loss(NS(task="regression", train={"bug": "squeeze_target"}))(net, o, t)
    assert squeezed.item() == pytest.approx(float(((o - t.reshape(1, 5)) ** 2).mean()), rel=1e-6)
    l2 = runner.loss(NS(task="regression", train={"l2_in_loss": 0.1}))(net, o, t)
    expect = float(((o - t) ** 2).mean() + 0.1 * (net.weight.detach() ** 2).sum())
    assert l2.item() == pytest.approx(expect, rel=1e-6)


def test_optimizer_and_schedule_knobs():
    p = [nn.Parameter(torch.zeros(2))]
    adam = runner.optimizer({"lr": 0.01}, p)
    assert type(adam) is torch.optim.Adam and adam.defaults["eps"] == 1e-8
    assert adam.defaults["betas"] == (0.9, 0.999)   # torch's own defaults: as Adam(params, lr)
    assert type(runner.optimizer({"adamw_wd": 20.0}, p)) is torch.optim.AdamW
    sgd = runner.optimizer({"optimizer": "sgd", "lr": 0.1, "momentum": 0.9}, p)
    assert sgd.defaults["momentum"] == 0.9
    warm = runner.schedule({"schedule": ("warmup", 4)}, runner.optimizer({"lr": 1.0}, p))
    assert warm.get_last_lr() == [0.25]
    assert runner.schedule({}, adam) is None


@pytest.mark.parametrize("name, model_seed, loader_seed, freeze", [
    ("fresh4", (4242, 17), 909, runner.WEIGHT_LAYERS),
    ("fresh5", (5252, 31), 505, (nn.Linear,))])
def test_each_suite_keeps_the_seeds_its_hurt_table_was_measured_with(name, model_seed,
                                                                      loader_seed, freeze):
    import importlib

    suite = importlib.import_module(f"archlab.diagnose.fault_catalogue_{name}")
    r = suite.RUNNER
    assert (r.name, r.model_seed, r.loader_seed, r.freeze_layers) == (
        name, model_seed, loader_seed, freeze)
    assert r.candidates is suite.CANDIDATES and r.hurt_table is suite.HURT
    assert getattr(suite, f"run_{name}") == r.run
