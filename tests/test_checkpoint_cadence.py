"""Checkpoints written on a time cadence (archlab's loop, ``checkpoint_interval``).

Oracles: the files on disk after each epoch against the rule (written at the end of the first
epoch at least ``interval`` seconds after the last write, always after the last epoch, on
errors and Ctrl-C), a clock the test drives; torch.save's own bytes for the copies kept in
memory; a run written every epoch (``checkpoint_interval=0``) for the files, metrics and
weights a run on the cadence ends with, after a crash, an interrupt or a hard kill and its
resume.
"""

from __future__ import annotations

import io
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback
from safetensors.torch import load_file

from archlab.errors import UsageError
from archlab.train import resume, train
from archlab.train.checkpoint import (
    SafeCheckpointIO,
    Serialised,
    read_checkpoint,
    snapshot,
    write_checkpoint_to,
)

DATA = {"source": "synthetic-classification", "samples": 96, "shape": [1, 8, 8], "classes": 3}
TINY = {"name": "tiny", "input": [1, 8, 8], "layers": [
    {"name": "conv", "block": "conv", "out": 4},
    {"name": "drop", "block": "dropout", "p": 0.2},
    {"name": "pool", "block": "global_pool"},
    {"name": "fc", "block": "linear", "out": 3},
]}
OPTS = {"batch": 16, "progress": False, "health": False, "seed": 1, "schedule": "onecycle", "lr": 3e-3}


def _written(obj) -> bytes:
    buffer = io.BytesIO()
    write_checkpoint_to(buffer, obj)
    return buffer.getvalue()


def _torch_save(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _state() -> dict:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    opt = torch.optim.Adam([{"params": [model[0].weight], "weight_decay": 0.1},
                            {"params": [model[0].bias, *model[1].parameters()]}])
    model(torch.randn(5, 4)).sum().backward()
    opt.step()
    base = torch.arange(12.0)
    return {"epoch": 3, "state_dict": model.state_dict(), "optimizer_states": [opt.state_dict()],
            "loops": {"a": {"total": {"ready": 2}}}, "views": [base[2:5], base.view(3, 4).t(), base],
            "callbacks": {"k": {"best_model_score": torch.tensor(0.25), "best_k_models": {"/x": torch.tensor(1.0)}}}}


# ------------------------------------------------------------------ the kept copies --------


def test_a_kept_copy_is_written_as_the_state_was_when_it_was_kept():
    state = _state()
    before = _torch_save(state)
    kept = snapshot(state)
    assert isinstance(kept, dict)  # plain tensors and containers: copied, not serialised
    for t in [*state["state_dict"].values(), *state["views"]]:
        t.add_(1)  # training goes on in place
    for s in state["optimizer_states"][0]["state"].values():
        for t in s.values():
            t.add_(1)
    state["callbacks"]["k"]["best_k_models"]["/y"] = torch.tensor(2.0)
    assert _written(kept) == before  # torch.save's bytes of the state as it was
    # the views still share one copied storage, as they shared the original
    assert kept["views"][0].untyped_storage().data_ptr() == kept["views"][2].untyped_storage().data_ptr()
    assert kept["views"][2].untyped_storage().data_ptr() != state["views"][2].untyped_storage().data_ptr()


def test_what_cannot_be_copied_exactly_is_serialised_when_kept():
    t = torch.ones(2, requires_grad=True)
    for odd in ({"p": torch.nn.Parameter(torch.ones(2))}, {"g": t}, {"c": torch.ones(2, dtype=torch.complex64).conj()},
                {"set": {1, 2}}):
        kept = snapshot(odd)
        assert isinstance(kept, Serialised)
        assert _written(kept) == _torch_save(odd)


# ------------------------------------------------------------------------ the cadence -------


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _epoch_of(path: Path):
    return int(read_checkpoint(path)["epoch"]) if path.exists() else None


def test_the_checkpoint_io_writes_once_the_interval_has_passed_best_before_last(tmp_path, monkeypatch):
    import archlab.train.checkpoint as ck

    order: list[str] = []
    real = ck.publish_or_discard
    monkeypatch.setattr(ck, "publish_or_discard", lambda tmp, path: (order.append(path.name), real(tmp, path)))
    clock = _Clock()
    io_ = SafeCheckpointIO(interval=10, clock=clock)
    best, last = tmp_path / "best.ckpt", tmp_path / "last.ckpt"
    state = {"w": torch.zeros(3)}
    on_disk = []
    for epoch in range(6):
        clock.t += 4.0
        state["w"].fill_(epoch)
        if epoch in (0, 3):  # the metric improved
            io_.save_deferred({"epoch": epoch, "w": state["w"]}, best)
        io_.save_deferred({"epoch": epoch, "w": state["w"]}, last)
        io_.end_epoch(final=epoch == 5)
        io_.writer.flush()
        on_disk.append((_epoch_of(best), _epoch_of(last)))
    # 4 s an epoch, 10 s between writes: epochs 2 and 5 (the last) are written, each with the
    # best epoch kept since (its copy, not the state at the write)
    assert on_disk == [(None, None), (None, None), (0, 2), (0, 2), (0, 2), (3, 5)]
    assert order == ["best.ckpt", "last.ckpt", "best.ckpt", "last.ckpt"]
    assert float(read_checkpoint(best)["w"][0]) == 3.0
    io_.teardown()


def test_kept_checkpoints_are_written_before_a_read_and_at_teardown_an_unfinished_epoch_is_not(tmp_path):
    clock = _Clock()
    io_ = SafeCheckpointIO(interval=10, clock=clock)
    last = tmp_path / "last.ckpt"
    io_.save_deferred({"epoch": 0, "w": torch.zeros(1)}, last)
    io_.end_epoch()
    assert not last.exists() and io_.kept == [last]
    assert io_.load_checkpoint(last)["epoch"] == 0  # a read publishes first
    io_.save_deferred({"epoch": 1}, last)
    io_.end_epoch()
    io_.save_deferred({"epoch": 2}, last)  # an epoch whose end did not finish (an error in it)
    io_.teardown()
    assert _epoch_of(last) == 1


class _DrivenClock(Callback):
    """The checkpoint IO's clock: ``step`` seconds more at every epoch's end (before the
    checkpoints); records which epochs the files on disk hold at each epoch's start."""

    def __init__(self, step: float) -> None:
        self.clock, self.step, self.seen = _Clock(), step, []

    def on_train_start(self, trainer, pl_module) -> None:
        trainer.strategy.checkpoint_io.clock = self.clock

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        trainer.strategy.checkpoint_io.writer.flush()
        folder = Path(trainer.default_root_dir) / "checkpoints"
        self.seen.append((_epoch_of(folder / "best.ckpt"), _epoch_of(folder / "last.ckpt")))

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.clock.t += self.step


def _same_files(a: Path, b: Path) -> None:
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in _rows(a)] == \
        [{k: v for k, v in r.items() if k != "seconds"} for r in _rows(b)]
    for x, y in zip(load_file(str(a / "model.safetensors")).values(),
                    load_file(str(b / "model.safetensors")).values(), strict=True):
        assert torch.equal(x, y)
    for name in ("best.ckpt", "last.ckpt"):
        x, y = read_checkpoint(a / "checkpoints" / name), read_checkpoint(b / "checkpoints" / name)
        assert x["epoch"] == y["epoch"], name
        for k in x["state_dict"]:
            assert torch.equal(x["state_dict"][k], y["state_dict"][k]), (name, k)
    for k in ("best_epoch", "epochs_run", "test", "val"):
        assert _summary(a)[k] == _summary(b)[k], k


def _rows(run_dir: Path) -> list[dict]:
    import csv

    with open(run_dir / "metrics.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _summary(run_dir: Path) -> dict:
    import json

    return json.loads((run_dir / "summary.json").read_text())


def test_a_run_on_the_cadence_writes_at_the_interval_and_ends_with_every_epochs_files(tmp_path):
    every = train(TINY, DATA, out=str(tmp_path), name="every", epochs=6, checkpoint_interval=0, **OPTS)
    driven = _DrivenClock(step=4.0)
    timed = train(TINY, DATA, out=str(tmp_path), name="timed", epochs=6, checkpoint_interval=10,
                  callbacks=[driven], **OPTS)
    # last.ckpt after epochs 2 and 5 (10 s passed; the last epoch), best.ckpt with it
    lasts = [last for _, last in driven.seen]
    assert lasts == [None, None, None, 2, 2, 2]
    best_rows = {int(r["epoch"]): float(r["val_accuracy"]) for r in _rows(timed.path)}
    for best, last in driven.seen[3:]:  # the best of epochs 0..2 by the tie rule (earliest)
        top = max(best_rows[e] for e in range(last + 1))
        assert best == min(e for e in range(last + 1) if best_rows[e] == top)
    _same_files(timed.path, every.path)


class _StopAt(Callback):
    def __init__(self, epoch: int, error) -> None:
        self.epoch, self.error = epoch, error

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == 1:
            raise self.error("stop here")


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_an_error_or_ctrl_c_writes_the_last_finished_epoch_and_the_resume_is_exact(tmp_path, error):
    every = train(TINY, DATA, out=str(tmp_path), name="every", epochs=5, checkpoint_interval=0, **OPTS)
    with pytest.raises(RuntimeError if error is RuntimeError else UsageError):
        train(TINY, DATA, out=str(tmp_path), name="stopped", epochs=5, checkpoint_interval=1e9,
              callbacks=[_StopAt(3, error)], **OPTS)
    stopped = tmp_path / "stopped"
    assert _epoch_of(stopped / "checkpoints" / "last.ckpt") == 2  # nothing was due before the stop
    last = read_checkpoint(stopped / "checkpoints" / "last.ckpt")
    best = read_checkpoint(stopped / "checkpoints" / "best.ckpt")
    kept = next(v for k, v in last["callbacks"].items() if "val/" in k)
    assert float(kept["best_model_score"]) == pytest.approx(max(float(r["val_accuracy"]) for r in _rows(stopped)[:3]), abs=1e-6)
    assert best["epoch"] <= 2
    resume(stopped)
    _same_files(stopped, every.path)


CHILD = textwrap.dedent("""
    import os, signal, sys
    import torch
    from lightning.pytorch.callbacks import Callback
    torch.set_num_threads(1)   # as the test process (conftest): the same sums, bit for bit
    from archlab.train import train

    class Clock(Callback):  # 6 s an epoch, 10 s between writes: after epochs 1 and 3
        t = 0.0
        def on_train_start(self, trainer, pl_module):
            trainer.strategy.checkpoint_io.clock = lambda: self.t
        def on_train_epoch_end(self, trainer, pl_module):
            self.t += 6.0
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.current_epoch == 3 and batch_idx == 2:
                trainer.strategy.checkpoint_io.writer.flush()
                os.kill(os.getpid(), signal.SIGKILL)   # a hard kill: nothing runs after it

    train(%r, %r, out=sys.argv[1], name="killed", epochs=5, checkpoint_interval=10,
          callbacks=[Clock()], **%r)
""")


def test_a_hard_kill_loses_at_most_the_epochs_since_the_last_write(tmp_path):
    every = train(TINY, DATA, out=str(tmp_path), name="every", epochs=5, checkpoint_interval=0, **OPTS)
    script = tmp_path / "child.py"
    script.write_text(CHILD % (TINY, DATA, OPTS))
    child = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, timeout=300)
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()[-2000:]
    killed = tmp_path / "killed"
    assert _epoch_of(killed / "checkpoints" / "last.ckpt") == 1  # epoch 2 was kept in memory only
    last = read_checkpoint(killed / "checkpoints" / "last.ckpt")
    best = read_checkpoint(killed / "checkpoints" / "best.ckpt")
    kept = next(v for k, v in last["callbacks"].items() if "val/" in k)
    rows = {int(r["epoch"]): float(r["val_accuracy"]) for r in _rows(killed)}
    top = max(rows[e] for e in (0, 1))
    assert float(kept["best_model_score"]) == pytest.approx(top, abs=1e-6)
    assert best["epoch"] == min(e for e in (0, 1) if rows[e] == top)  # the files belong together
    resume(killed)
    _same_files(killed, every.path)
