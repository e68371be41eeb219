"""archlab's loop calls only the hooks that do something, and still every one that does:
Lightning's empty module hooks are left out (and only those), a callback's idle hooks are left
out, the per-hook lists follow changes to the callback list, and a module or callback hook on
the optimiser step still runs. The oracle for the calls is what each hook records."""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from archlab.train import train
from archlab.train.loop import _NOOP_MODULE_HOOKS, LoopProgress, _does_nothing

DATA = {"source": "synthetic-classification", "samples": 64, "shape": [1, 4, 4], "classes": 3}
DESIGN = {"name": "tiny", "input": [1, 4, 4], "layers": [{"name": "flat", "block": "flatten"},
                                                      {"name": "fc", "block": "linear", "out": 3}]}


def fit(tmp_path, callbacks, **options):
    opts = {"epochs": 2, "batch": 16, "progress": False, "health": False, "out": str(tmp_path),
            "seed": 1, **options}
    return train(DESIGN, DATA, callbacks=callbacks, **opts)


def test_only_empty_lightning_hooks_are_skipped():
    def empty(self, x):
        """doc"""

    def passes(self):
        pass

    def works(self):
        return 1

    assert _does_nothing(empty) and _does_nothing(passes) and not _does_nothing(works)
    names = {fn.__name__ for fn in _NOOP_MODULE_HOOKS}
    assert {"on_train_batch_start", "on_before_backward", "on_after_backward",
            "on_before_optimizer_step", "on_validation_epoch_start"} <= names
    # hooks with a body are called as before
    for name in ("on_validation_model_eval", "on_validation_model_train", "on_validation_model_zero_grad",
                 "backward", "optimizer_step", "optimizer_zero_grad", "lr_scheduler_step",
                 "configure_gradient_clipping", "on_test_model_eval"):
        assert getattr(L.LightningModule, name) not in _NOOP_MODULE_HOOKS, name


class _Steps(Callback):
    def __init__(self) -> None:
        self.before_step = self.backward = self.batches = 0

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.before_step += 1

    def on_after_backward(self, trainer, pl_module) -> None:
        self.backward += 1

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.batches += 1


class _AddsOne(Callback):
    """Adds a callback to the trainer's list after the first epoch."""

    def __init__(self, late: Callback) -> None:
        self.late = late

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch == 0:
            trainer.callbacks.append(self.late)


def test_step_hooks_run_and_a_callback_added_late_is_called(tmp_path):
    steps, late = _Steps(), _Steps()
    run = fit(tmp_path, [steps, _AddsOne(late)])
    per_epoch = -(-len(run.splits.train) // 16)
    assert run.summary["epochs_run"] == 2 and per_epoch > 1
    assert steps.before_step == steps.backward == steps.batches == 2 * per_epoch
    assert late.batches == late.before_step == per_epoch  # the second epoch only


def test_a_module_hook_on_the_step_runs(tmp_path, monkeypatch):
    from archlab.train.engine import DesignModule

    seen: list[str] = []
    monkeypatch.setattr(DesignModule, "on_before_optimizer_step",
                        lambda self, optimizer: seen.append("step"), raising=False)
    monkeypatch.setattr(DesignModule, "on_after_backward", lambda self: seen.append("backward"),
                        raising=False)
    run = fit(tmp_path, [], epochs=1)
    assert seen == ["backward", "step"] * -(-len(run.splits.train) // 16)


def test_idle_hooks():
    from archlab.train.engine import RunCheckpoint

    assert RunCheckpoint(dirpath="x", filename="last", monitor=None).idle_hooks == ("on_train_batch_end",)
    assert RunCheckpoint(dirpath="x", filename="last", monitor=None, every_n_train_steps=5).idle_hooks == ()

    class Tty:
        def isatty(self):
            return True

        def write(self, text):
            pass

        def flush(self):
            pass

    assert LoopProgress(stream=Tty()).idle_hooks == ()
    assert LoopProgress(stream=open("/dev/null", "w")).idle_hooks == ("on_train_batch_end",)


def test_step_wise_checkpoints_still_saved(tmp_path):
    from archlab.train.engine import RunCheckpoint

    every = RunCheckpoint(dirpath=tmp_path / "steps", filename="step-{step}", monitor=None,
                          every_n_train_steps=2, save_top_k=-1, auto_insert_metric_name=False)
    run = fit(tmp_path, [every], epochs=2)
    total = 2 * -(-len(run.splits.train) // 16)
    assert total >= 4
    names = sorted((p.name for p in (tmp_path / "steps").iterdir()), key=lambda n: int(n[5:-5]))
    assert names == [f"step-{k}.ckpt" for k in range(2, total + 1, 2)]
    assert torch.load(tmp_path / "steps" / "step-4.ckpt", weights_only=True)["global_step"] == 4
