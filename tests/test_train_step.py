"""The training step taken in ``training_step`` (Lightning's manual optimisation, for speed) must
train exactly as Lightning's automatic loop does, keep every hook, and never step twice.

The oracle is Lightning's own automatic optimisation on the same module, data and seed.
"""

from __future__ import annotations

import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from archlab.train import make_config, prepare, train
from archlab.train.checkpoint import read_checkpoint
from archlab.train.engine import RunCheckpoint, default_callbacks, make_trainer

DATA = {"source": "synthetic-classification", "samples": 96, "shape": [1, 8, 8], "classes": 3}
# dropout draws random masks: the two loops must also consume the random stream alike
DESIGN = {"name": "tiny", "input": [1, 8, 8], "layers": [
    {"name": "conv", "block": "conv", "out": 4},
    {"name": "drop", "block": "dropout", "p": 0.2},
    {"name": "pool", "block": "global_pool"},
    {"name": "fc", "block": "linear", "out": 3}]}
NO_DROPOUT = {**DESIGN, "layers": [layer for layer in DESIGN["layers"] if layer["block"] != "dropout"]}


class HookCounter(Callback):
    def __init__(self) -> None:
        self.calls: dict[str, int] = {}

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        self._count("on_before_backward")

    def on_after_backward(self, trainer, pl_module) -> None:
        self._count("on_after_backward")

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self._count("on_before_optimizer_step")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._count("on_train_batch_end")


def _fit(tmp_path, name: str, automatic: bool, **options):
    config = make_config({"epochs": 2, "batch": 16, "progress": False, "health": False,
                          "schedule": "onecycle", "lr": 3e-3, **options})
    setup = prepare(DESIGN, DATA, config)
    setup.module.automatic_optimization = automatic
    counter = HookCounter()
    run_dir = tmp_path / name
    run_dir.mkdir()
    callbacks = default_callbacks(config, run_dir, setup.task) + [counter]
    trainer = make_trainer(config, run_dir, callbacks)
    dm = setup.datamodule
    trainer.fit(setup.module, train_dataloaders=dm.train_dataloader(), val_dataloaders=dm.val_dataloader())
    return setup, trainer, callbacks[0].rows, counter.calls


def test_the_step_trains_exactly_as_lightnings_automatic_loop(tmp_path):
    manual, t_manual, rows_manual, hooks_manual = _fit(tmp_path, "manual", automatic=False)
    auto, t_auto, rows_auto, hooks_auto = _fit(tmp_path, "auto", automatic=True)
    assert not manual.module.automatic_optimization  # the default without clipping
    for (name, a), (_, b) in zip(manual.model.state_dict().items(), auto.model.state_dict().items(),
                                 strict=True):
        assert torch.equal(a, b), name
    assert t_manual.global_step == t_auto.global_step == 2 * manual.datamodule.steps_per_epoch()

    def same(row):  # epoch seconds differ, of course
        return {k: v for k, v in row.items() if k != "seconds"}

    assert [same(r) for r in rows_manual] == [same(r) for r in rows_auto]
    # the one-cycle schedule was stepped once per batch in both: the same final learning rate
    assert t_manual.optimizers[0].param_groups[0]["lr"] == t_auto.optimizers[0].param_groups[0]["lr"]
    # every per-step hook that callbacks (the health monitor) rely on still fires once a step
    steps = t_manual.global_step
    assert hooks_manual == hooks_auto == {"on_before_backward": steps, "on_after_backward": steps,
                                          "on_before_optimizer_step": steps,
                                          "on_train_batch_end": steps}
    # the resumable checkpoint holds the optimiser and schedule state in both modes
    last = read_checkpoint(tmp_path / "manual" / "checkpoints" / "last.ckpt")
    assert last["optimizer_states"] and last["lr_schedulers"] and last["global_step"] == steps


def test_clipping_keeps_the_automatic_loop_where_the_trainer_clips(tmp_path):
    setup = prepare(DESIGN, DATA, make_config({"clip": 0.5, "progress": False, "health": False}))
    assert setup.module.automatic_optimization
    trainer = make_trainer(setup.config, tmp_path, [])
    assert trainer.gradient_clip_val == 0.5  # what the health monitor reads


class Replayer(Callback):
    """Calls training_step again from inside the backward hooks, as the health monitor does to
    find the module that made the first non-finite value."""

    def __init__(self) -> None:
        self.batch = None
        self.replays = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.batch = (batch, batch_idx)

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        out = pl_module.training_step(*self.batch)
        assert out.requires_grad  # the loss, with its graph: nothing was stepped
        self.replays += 1


def test_a_replayed_training_step_takes_no_second_step(tmp_path):
    options = {"epochs": 2, "batch": 16, "progress": False, "health": False, "out": str(tmp_path)}
    replayer = Replayer()
    replayed = train(NO_DROPOUT, DATA, name="replayed", callbacks=[replayer], **options)
    plain = train(NO_DROPOUT, DATA, name="plain", **options)
    assert replayer.replays == 2 * 5  # 67 training samples in batches of 16: 5 steps an epoch
    # the parameters: the replayed forward pass does move batch norm's running statistics
    for (name, a), (_, b) in zip(replayed.model().named_parameters(), plain.model().named_parameters(),
                                 strict=True):
        assert torch.equal(a, b), name
    # the replayed batches are not counted twice in the epoch's training metrics (validation
    # differs: it uses those running statistics)
    def training(rows):
        return [{k: v for k, v in r.items() if k.startswith("train_")} for r in rows]

    assert training(replayed.metrics) == training(plain.metrics)


def test_run_checkpoints_keep_lightnings_state_keys(tmp_path):
    config = make_config({"progress": False, "health": False})
    setup = prepare(DESIGN, DATA, config)
    ours = [c for c in default_callbacks(config, tmp_path, setup.task) if isinstance(c, ModelCheckpoint)]
    assert len(ours) == 2 and all(isinstance(c, RunCheckpoint) for c in ours)
    best = ModelCheckpoint(dirpath=tmp_path / "checkpoints", filename="best", monitor="val/accuracy",
                           mode="max", save_top_k=1, save_on_train_epoch_end=True, save_weights_only=True,
                           auto_insert_metric_name=False, enable_version_counter=False)
    last = ModelCheckpoint(dirpath=tmp_path / "checkpoints", filename="last", monitor=None, save_top_k=1,
                           save_on_train_epoch_end=True, every_n_epochs=1, auto_insert_metric_name=False,
                           enable_version_counter=False)
    # the same keys as Lightning's own class: checkpoints stay interchangeable on resume
    assert [c.state_key for c in ours] == [best.state_key, last.state_key]
    assert ours[0].state_key.startswith("ModelCheckpoint{'monitor': 'val/accuracy'")
