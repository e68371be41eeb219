"""The GAN's sampling-side and schedule options (issue 12's benchmark): the truncation trick's
truncated normal against its closed-form moments and torch's own draws, the cosine schedule of
both learning rates against torch's CosineAnnealingLR, the benchmark's truncated report. Tiny
runs only: no quality figure is asserted (benchmarks/generative.py measures them)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback

import archlab
from archlab.train.data import ArrayData, load_data
from archlab.train.generative.gan import truncated_normal

FAST = dict(batch=32, progress=False, judge=False, split=(0.6, 0.2, 0.2), health=False)
PAIR = dict(task="gan", variables={"ngf": 4, "nz": 8}, discriminator="dcgan_mnist_discriminator",
            d_variables={"ndf": 4})


@pytest.fixture(scope="module")
def digits():
    d = load_data("mnist5k")
    idx = torch.arange(0, 5000, 50)   # 100 images, every class (mnist5k is sorted by class)
    return ArrayData(d.x[idx], d.y[idx], d.task, d.classes, "mnist5k")


def test_truncated_normal_none_is_torch_randn():
    a = truncated_normal((7, 5), None, torch.Generator().manual_seed(3))
    assert torch.equal(a, torch.randn((7, 5), generator=torch.Generator().manual_seed(3)))


@pytest.mark.parametrize("t", [0.5, 1.0, 2.0])
def test_truncated_normal_has_the_truncated_moments(t):
    z = truncated_normal((400_000,), t, torch.Generator().manual_seed(0)).double()
    assert z.abs().max() <= t
    # closed form of a standard normal truncated to [-t, t]: mean 0, variance 1 - 2 t phi(t) / (2 Phi(t) - 1)
    phi = math.exp(-t * t / 2) / math.sqrt(2 * math.pi)
    mass = math.erf(t / math.sqrt(2))
    var = 1 - 2 * t * phi / mass
    se = math.sqrt(var / len(z))
    assert abs(float(z.mean())) < 5 * se
    assert abs(float(z.var()) - var) < 0.01 * var


def test_truncated_normal_keeps_the_values_inside_and_redraws_the_rest():
    first = torch.randn((1000,), generator=torch.Generator().manual_seed(5))
    z = truncated_normal((1000,), 1.0, torch.Generator().manual_seed(5))
    inside = first.abs() <= 1.0
    assert torch.equal(z[inside], first[inside]) and (z[~inside].abs() <= 1.0).all()
    assert not torch.equal(z, first)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan")])
def test_truncated_normal_refuses_a_threshold_that_is_not_positive(bad):
    with pytest.raises(ValueError, match="truncation must be a threshold > 0"):
        truncated_normal((3,), bad)


class Rates(Callback):
    """The learning rates each optimiser had at each generator/discriminator step."""

    def __init__(self) -> None:
        self.g, self.d = [], []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        opt_g, opt_d = pl_module.optimizers()
        self.g.append(getattr(opt_g, "optimizer", opt_g).param_groups[0]["lr"])
        self.d.append(getattr(opt_d, "optimizer", opt_d).param_groups[0]["lr"])
        self.module = pl_module


def test_cosine_schedule_decays_both_rates_as_torch_does(digits, tmp_path):
    rates = Rates()
    archlab.train("dcgan_mnist_generator", digits, out=str(tmp_path), epochs=3, schedule="cosine",
                  lr=1e-3, d_lr=4e-3, callbacks=[rates], **PAIR, **FAST)
    steps = len(rates.g)
    assert steps == 6   # 60 training images, batch 32: 2 steps per epoch, 3 epochs
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    expected = []
    for _ in range(steps):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert rates.g == pytest.approx([1e-3 * f for f in expected], rel=1e-9, abs=1e-15)
    assert rates.d == pytest.approx([4e-3 * f for f in expected], rel=1e-9, abs=1e-15)
    assert rates.module.lr_factor() == pytest.approx(0.0, abs=1e-12)   # the end of the run: zero


def test_constant_schedule_keeps_the_rates(digits, tmp_path):
    rates = Rates()
    archlab.train("dcgan_mnist_generator", digits, out=str(tmp_path), epochs=1, lr=1e-3,
                  callbacks=[rates], **PAIR, **FAST)
    assert rates.g == [1e-3, 1e-3] and rates.d == [1e-3, 1e-3]


def test_onecycle_is_refused_for_a_gan_with_the_fix(digits, tmp_path):
    with pytest.raises(Exception, match="schedule 'onecycle' is not available.*--schedule cosine"):
        archlab.train("dcgan_mnist_generator", digits, out=str(tmp_path), epochs=1, schedule="onecycle",
                      **PAIR, **FAST)


def _benchmark():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "generative.py"
    spec = importlib.util.spec_from_file_location("generative_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class EchoJudge:
    def report(self, samples, real):
        return {"samples": samples, "real": real}


def test_benchmark_truncated_report_judges_the_saved_generator_on_truncated_latents(digits, tmp_path):
    run = archlab.train("dcgan_mnist_generator", digits, out=str(tmp_path), epochs=1, **PAIR, **FAST)
    bench = _benchmark()
    got = bench.truncated_report(run.path, EchoJudge(), 0.5, digits, n=10, seed=2)
    from archlab.train.run import Run

    net = Run.open(run.path).model()
    z = truncated_normal((10, 8), 0.5, torch.Generator().manual_seed(2 + 31))
    s = run.scaling
    with torch.no_grad():
        want = net(z) * s.std[0] + s.mean[0]
    assert torch.allclose(got["samples"], want, atol=1e-6)
    assert torch.equal(got["real"], digits.x[torch.as_tensor(run.splits.test)].float())


def test_r1_penalty_of_a_linear_critic_is_the_squared_weight_norm():
    from archlab.train.generative.losses import r1_penalty

    critic = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 1))
    x = torch.randn(5, 3, 2, 2, requires_grad=True)
    penalty = r1_penalty(x, critic(x))
    w = critic[1].weight
    assert float(penalty.detach()) == pytest.approx(float(w.detach().pow(2).sum()), rel=1e-6)   # grad_x D = w
    penalty.backward()   # the graph is kept: d penalty / dw = 2 w
    assert torch.allclose(w.grad, 2 * w.detach(), atol=1e-6)


def test_r1_is_added_to_the_discriminator_loss_when_set(digits, tmp_path, monkeypatch):
    from archlab.train.generative import gan as gan_module

    parts = []
    orig_loss, orig_r1 = gan_module.discriminator_loss, gan_module.r1_penalty

    def loss(*args):
        parts.append(("loss", float((out := orig_loss(*args)).detach())))
        return out

    def r1(real_in, scores):
        assert real_in.requires_grad and real_in.is_leaf
        parts.append(("r1", float((out := orig_r1(real_in, scores)).detach())))
        return out

    monkeypatch.setattr(gan_module, "discriminator_loss", loss)
    monkeypatch.setattr(gan_module, "r1_penalty", r1)
    bench = _benchmark()
    cap = Rates()
    archlab.train("dcgan_mnist_generator", digits, out=str(tmp_path), epochs=1,
                  callbacks=[bench.R1Penalty(4.0), cap], **PAIR, **FAST)
    history = cap.module.history
    assert len(history) == 2 and [k for k, _ in parts] == ["loss", "r1", "loss", "r1"]
    for i, row in enumerate(history):
        base, pen = parts[2 * i][1], parts[2 * i + 1][1]
        assert pen > 0 and row["r1"] == pytest.approx(pen)
        assert row["d_loss"] == pytest.approx(base + 4.0 / 2 * pen, rel=1e-6)


def test_r1_is_off_by_default(digits, tmp_path):
    cap = Rates()
    archlab.train("dcgan_mnist_generator", digits, out=str(tmp_path), epochs=1, callbacks=[cap], **PAIR, **FAST)
    assert cap.module.r1 == 0.0 and all("r1" not in row for row in cap.module.history)


def test_r1_reaches_the_module_from_the_config(digits, tmp_path):
    cap = Rates()
    archlab.train("dcgan_mnist_generator", digits, out=str(tmp_path), epochs=1, callbacks=[cap], r1=2.5,
                  **PAIR, **FAST)
    assert cap.module.r1 == 2.5 and all(row["r1"] > 0 for row in cap.module.history)


def test_r1_cli_option_is_passed_and_a_negative_weight_is_refused():
    import argparse

    from archlab.train import command

    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())
    args = parser.parse_args(["train", "dcgan_mnist_generator", "--r1", "1"])
    assert command._options(args)["r1"] == 1.0
    from archlab.train.config import TrainConfig

    with pytest.raises(Exception, match="r1"):
        TrainConfig(r1=-1)
