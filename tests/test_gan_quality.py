"""GAN sample-quality mechanisms (issue 12): the generator's weight average (g_ema) against the
recursion written out by hand, what samples and saved weights come from, the benchmark's target
rule. Tiny runs only: no quality figure is asserted here (benchmarks/generative.py measures them)."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn
from torch.optim.swa_utils import AveragedModel

import archlab
from archlab.train.data import ArrayData, load_data
from archlab.train.generative.gan import ema_update

FAST = dict(batch=32, progress=False, judge=False, split=(0.6, 0.2, 0.2), health=False)
PAIR = dict(task="gan", variables={"ngf": 4, "nz": 8}, discriminator="dcgan_mnist_discriminator",
            d_variables={"ndf": 4})


@pytest.fixture(scope="module")
def digits():
    d = load_data("mnist5k")
    idx = torch.arange(0, 5000, 50)   # 100 images, every class (mnist5k is sorted by class)
    return ArrayData(d.x[idx], d.y[idx], d.task, d.classes, "mnist5k")


def test_ema_update_is_the_warmed_up_recursion():
    net = nn.Sequential(nn.Linear(2, 1), nn.BatchNorm1d(1))
    avg = AveragedModel(net, avg_fn=ema_update(0.9), use_buffers=True)
    states = []
    for value in (1.0, 3.0, -2.0, 5.0):
        with torch.no_grad():
            net[0].weight.fill_(value)
            net[1].running_mean.fill_(value / 2)
            net[1].num_batches_tracked.fill_(int(value * 10))
        avg.update_parameters(net)
        states.append(value)
    # update 1 copies; update n + 1 (n = 1, 2, 3) uses d = min(0.9, (1 + n) / (10 + n))
    expected = states[0]
    for n, value in enumerate(states[1:], start=1):
        d = min(0.9, (1 + n) / (10 + n))
        expected = d * expected + (1 - d) * value
    assert avg.module[0].weight.detach().flatten().tolist() == pytest.approx([expected, expected])
    assert avg.module[1].running_mean.item() == pytest.approx(expected / 2)
    assert avg.module[1].num_batches_tracked.item() == 50   # a count is copied, not averaged
    assert avg.n_averaged.item() == 4


def test_ema_decay_reaches_the_configured_value():
    update = ema_update(0.999)
    a, b = torch.zeros(1), torch.ones(1)
    assert update(a, b, torch.tensor(1)).item() == pytest.approx(1 - 2 / 11)
    assert update(a, b, torch.tensor(100_000)).item() == pytest.approx(0.001)


class Capture(Callback):
    """The live generator's state after each training batch and the module at the end."""

    def __init__(self) -> None:
        self.live: list[dict] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.live.append({k: v.detach().clone() for k, v in pl_module.generator.state_dict().items()})

    def on_train_end(self, trainer, pl_module) -> None:   # callbacks run before the module's hook
        self.module = pl_module
        self.ema_before = copy.deepcopy(pl_module.generator_ema.module.state_dict())
        self.live_before = copy.deepcopy(pl_module.generator.state_dict())


def test_gan_samples_from_the_weight_average_and_saves_it(digits, tmp_path):
    cap = Capture()
    run = archlab.train("dcgan_mnist_generator", digits, out=str(tmp_path), epochs=2, g_ema=0.9,
                        callbacks=[cap], **PAIR, **FAST)
    assert run.config.g_ema == 0.9
    assert len(cap.live) == 4   # 60 training images, batch 32: 2 steps per epoch
    expected = {k: v.clone().float() for k, v in cap.live[0].items()}
    for n, state in enumerate(cap.live[1:], start=1):
        d = min(0.9, (1 + n) / (10 + n))
        for k, v in state.items():
            expected[k] = d * expected[k] + (1 - d) * v if v.is_floating_point() else v.float()
    for k, v in cap.ema_before.items():
        assert torch.allclose(v.float(), expected[k], atol=1e-6), k
    assert any(not torch.equal(cap.ema_before[k], cap.live_before[k]) for k in cap.live_before)
    # after training the generator holds the average: saved, tested and sampled
    module = cap.module
    assert module.sampler is module.generator_ema.module
    for k, v in module.generator.state_dict().items():
        assert torch.equal(v, cap.ema_before[k]), k
    saved = run.model().state_dict()
    for k, v in saved.items():
        assert torch.allclose(v.float(), cap.ema_before[k].float()), k
    z = torch.randn(5, 8)
    module.generator_ema.module.eval()
    assert torch.equal(module.generate(z), module.generator_ema.module(z))


def test_g_ema_zero_samples_from_the_live_generator(digits, tmp_path):
    cap = Capture()
    cap.on_train_end = lambda trainer, pl_module: setattr(cap, "module", pl_module)
    run = archlab.train("dcgan_mnist_generator", digits, out=str(tmp_path), epochs=1, g_ema=0.0,
                        callbacks=[cap], **PAIR, **FAST)
    assert cap.module.generator_ema is None and cap.module.sampler is cap.module.generator
    for k, v in run.model().state_dict().items():
        assert torch.equal(v, cap.live[-1][k]), k


def test_g_ema_defaults_on_and_is_validated():
    from archlab.train.config import TrainConfig

    assert TrainConfig().g_ema == 0.999
    with pytest.raises(ValueError, match="g_ema"):
        TrainConfig(g_ema=1.0)


def _benchmark():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "generative.py"
    spec = importlib.util.spec_from_file_location("generative_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_target_rule():
    met = _benchmark().met
    assert met({"confident_share": 0.90, "min_class_share": 0.05})
    assert not met({"confident_share": 0.899, "min_class_share": 0.2})
    assert not met({"confident_share": 0.99, "min_class_share": 0.049})   # a class under 5%
    assert not met({})


def test_benchmark_stops_on_a_step_budget(capsys):
    from types import SimpleNamespace

    clock = _benchmark().EpochClock(budget=0, max_steps=100)   # budget 0: the steps alone stop it
    trainer = SimpleNamespace(should_stop=False)
    module = SimpleNamespace(current_epoch=0, val_metrics={"confident_share": 0.5, "min_class_share": 0.01})
    clock.on_train_start(trainer, module)
    for epoch in range(3):
        module.current_epoch = epoch
        clock.on_train_epoch_start(trainer, module)
        for i in range(63):
            clock.on_train_batch_start(trainer, module, None, i)
            clock.on_train_batch_end(trainer, module, None, None, i)
        clock.on_train_epoch_end(trainer, module)
        assert trainer.should_stop == (clock.steps >= 100)   # 63 steps: on; 126: stop
        if trainer.should_stop:
            break
    assert clock.steps == 126 and clock.reached is None and len(clock.rows) == 2
    assert "126" in capsys.readouterr().out


def test_benchmark_measures_the_thread_count(capsys, monkeypatch):
    """--threads auto: the first steps alternate 1 and 2 threads (ABBA after a warm-up), and the
    run keeps the count whose median step was faster, whichever that is."""
    bench = _benchmark()
    before = torch.get_num_threads()
    try:
        for faster, cost in ((1, {1: 0.10, 2: 0.40}), (2, {1: 0.18, 2: 0.09})):
            now = [0.0]

            def clock():
                return now[0]

            monkeypatch.setattr(bench.time, "perf_counter", clock)
            chooser = bench.ThreadChooser((1, 2), warmup=2, per_count=4)
            seen = []
            for i in range(20):
                chooser.on_train_batch_start(None, None, None, i)
                seen.append(torch.get_num_threads())
                now[0] += cost[torch.get_num_threads()] * (3.0 if i == 5 else 1.0)   # one slow outlier
                chooser.on_train_batch_end(None, None, None, None, i)
            assert seen[:10] == [1, 1, 1, 2, 2, 1, 1, 2, 2, 1]
            assert chooser.chosen == faster and set(seen[10:]) == {faster}
            assert len(chooser.times[1]) == len(chooser.times[2]) == 4
            assert f"keeping {faster}" in capsys.readouterr().out
    finally:
        torch.set_num_threads(before)


def test_gan_augments_what_the_discriminator_sees_real_and_generated(digits, tmp_path, monkeypatch):
    """--augment shift=N in a GAN is differentiable augmentation: every discriminator input,
    real and generated, is shifted inside the graph (the generator's gradient passes through)."""
    from archlab.train.generative import gan as gan_module

    seen = []
    cap = Capture()
    cap.on_train_end = lambda trainer, pl_module: setattr(cap, "module", pl_module)
    original = gan_module.GANModule.d_input

    def spy(self, images):
        out = original(self, images)
        seen.append((images.requires_grad, out.requires_grad, torch.equal(out, images)))
        return out

    monkeypatch.setattr(gan_module.GANModule, "d_input", spy)
    archlab.train("dcgan_mnist_generator", digits, out=str(tmp_path), epochs=1, augment="shift=2",
                  callbacks=[cap], **PAIR, **FAST)
    module = cap.module
    assert module.augment is not None and module.augment.shift == 2
    assert seen and not any(same for _, _, same in seen)          # every input was shifted
    assert any(src and out for src, out, _ in seen)               # the generator's batch keeps its graph
