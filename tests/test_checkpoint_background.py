"""Checkpoints renamed into place by a background thread (archlab's own loop): run safety holds.

The oracles are the files themselves and a run that writes synchronously: a process killed
while a checkpoint is being written or before its rename leaves the previous ``last.ckpt``,
whole and resumable; a resume after background writes equals a resume after synchronous
writes, tensor for tensor; the writer is waited for before the run's end hooks, the test pass
and the summary, and on errors; a failed rename stops the run with a clear error.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback
from safetensors.torch import load_file

from archlab.cli import main
from archlab.train import CheckpointError, Run, resume, train
from archlab.train import checkpoint as ckpt_module
from archlab.train import loop as loop_module
from archlab.train.checkpoint import BackgroundWriter, read_checkpoint

DATA = {"source": "synthetic-classification", "samples": 96, "shape": [1, 8, 8], "classes": 3}
TINY = {"name": "tiny", "input": [1, 8, 8], "layers": [
    {"name": "conv", "block": "conv", "out": 4},
    {"name": "pool", "block": "global_pool"},
    {"name": "fc", "block": "linear", "out": 3},
]}
OPTS = {"batch": 16, "progress": False, "health": False, "seed": 1}


def _epoch(run_dir, name: str) -> int:
    return int(read_checkpoint(run_dir / "checkpoints" / name)["epoch"])


def _slow_renames(monkeypatch, seconds: float) -> list[str]:
    """Delay every background rename; returns the names of the threads that ran them."""
    threads: list[str] = []
    real = ckpt_module.publish_or_discard

    def slow(tmp, path):
        threads.append(threading.current_thread().name)
        time.sleep(seconds)
        real(tmp, path)

    monkeypatch.setattr(ckpt_module, "publish_or_discard", slow)
    return threads


class _CrashAt(Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            raise RuntimeError("crash on purpose")


class _SeesLastAtTrainEnd(Callback):
    def on_train_end(self, trainer, pl_module) -> None:
        self.epoch = _epoch(Path(trainer.default_root_dir), "last.ckpt")


# ------------------------------------------------------------------------- the writer ------


def test_writer_keeps_the_order_bounds_the_queue_and_reports_a_failure_once(tmp_path):
    done: list[int] = []
    writer = BackgroundWriter(max_pending=2)

    def job(i, path):
        time.sleep(0.02)
        if i == 3:
            raise OSError(28, "No space left on device")
        done.append(i)

    for i in range(3):
        writer.submit(job, i, tmp_path / f"f{i}")
        assert writer.pending <= 2
    writer.flush()
    assert done == [0, 1, 2]
    writer.submit(job, 3, tmp_path / "last.ckpt")
    with pytest.raises(CheckpointError) as err:
        writer.flush()
    text = str(err.value)
    assert "last.ckpt" in text and "No space left on device" in text and "--resume" in text
    writer.flush()  # reported once: the writer goes on
    with writer.held():  # held jobs start when the block ends, in order
        writer.submit(job, 4, tmp_path / "f4")
        writer.submit(job, 5, tmp_path / "f5")
        time.sleep(0.1)
        assert done == [0, 1, 2] and writer.pending == 2
    with writer.held():  # a flush inside starts and waits for the held jobs too
        writer.submit(job, 6, tmp_path / "f6")
        writer.flush()
        assert done[-1] == 6
    writer.close()
    assert done == [0, 1, 2, 4, 5, 6]


# ---------------------------------------------------------------------- killed runs --------

CHILD = textwrap.dedent("""
    import sys, time, threading
    from pathlib import Path
    import torch
    from archlab.train import train
    from archlab.train import checkpoint as C

    where, out, marker = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    real_write, real_publish = C.write_checkpoint_to, C.publish_or_discard

    def stall(note):
        marker.write_text(note)
        time.sleep(120)

    def save(f, obj):  # epoch 1's last.ckpt: its temporary file half written, stall
        if where == "write" and "optimizer_states" in obj and obj.get("epoch") == 1:  # last.ckpt
            data = C.torch_save_bytes(obj)
            f.write(data[: len(data) // 2])
            f.flush()
            stall(threading.current_thread().name)
        return real_write(f, obj)

    def publish(tmp, path):  # epoch 1's last.ckpt fully written, its rename not done: stall
        if where == "rename" and path.name == "last.ckpt" and C.torch.load(tmp, weights_only=True)["epoch"] == 1:
            stall(threading.current_thread().name)
        return real_publish(tmp, path)

    C.write_checkpoint_to, C.publish_or_discard = save, publish
    # every epoch written (checkpoint_interval 0): the kill lands in epoch 1's write
    train(%r, %r, out=out, name="killed", epochs=3, batch=16, progress=False, health=False, seed=1,
          checkpoint_interval=0)
""") % (TINY, DATA)


@pytest.mark.parametrize("where", ["write", "rename"])
def test_a_run_killed_while_a_checkpoint_is_written_keeps_the_previous_one(tmp_path, where):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    marker = tmp_path / "marker"
    child = subprocess.Popen([sys.executable, str(script), where, str(tmp_path), str(marker)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), child.stderr.read().decode()[-2000:] if child.poll() is not None else "timeout"
        time.sleep(0.1)
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    # the write of the temporary file runs on the training thread, its rename in the writer
    assert (marker.read_text() == "MainThread") == (where == "write")
    run_dir = tmp_path / "killed"
    checkpoints = run_dir / "checkpoints"
    leftovers = [p for p in checkpoints.iterdir() if p.name.startswith(".last.ckpt.")]
    # the unfinished write, never published (with the rename stalled, the training thread may
    # have written the next epoch's temporary file too before the kill)
    assert len(leftovers) == 1 if where == "write" else len(leftovers) >= 1
    if where == "write":
        with pytest.raises(CheckpointError, match="unreadable checkpoint"):
            read_checkpoint(leftovers[0])  # torn
    assert _epoch(run_dir, "last.ckpt") == 0  # the previous checkpoint, whole
    resumed = resume(run_dir)
    assert [int(r["epoch"]) for r in resumed.metrics] == [0, 1, 2]
    assert _epoch(run_dir, "last.ckpt") == 2
    assert not [p for p in checkpoints.iterdir() if p.name.startswith(".")]  # resume tidies up


# ------------------------------------------------------------ background == synchronous ----


def _crashed_then_resumed(tmp_path, name: str, background: bool, monkeypatch):
    monkeypatch.setattr(loop_module, "BACKGROUND_WRITES", background)
    if background:
        _slow_renames(monkeypatch, 0.05)  # the renames lag behind the training
    with pytest.raises(RuntimeError, match="crash on purpose"):
        train(TINY, DATA, out=str(tmp_path), name=name, epochs=4, callbacks=[_CrashAt(2)], **OPTS)
    crashed = read_checkpoint(tmp_path / name / "checkpoints" / "last.ckpt")
    run = resume(tmp_path / name)
    monkeypatch.undo()
    return crashed, run


def _equal(a, b, where="") -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), where
        for k in a:
            if k not in ("best_model_path", "last_model_path", "dirpath", "best_k_models",
                         "kth_best_model_path"):  # paths of the two run folders
                _equal(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _equal(x, y, f"{where}/{i}")
    else:
        assert a == b, where


def test_resume_after_background_writes_equals_resume_after_synchronous_writes(tmp_path, monkeypatch):
    sync_ckpt, sync_run = _crashed_then_resumed(tmp_path, "sync", False, monkeypatch)
    bg_ckpt, bg_run = _crashed_then_resumed(tmp_path, "bg", True, monkeypatch)
    # the crash at the start of epoch 2 left epoch 1's full state in both
    assert bg_ckpt["epoch"] == sync_ckpt["epoch"] == 1
    _equal(bg_ckpt["state_dict"], sync_ckpt["state_dict"], "state_dict")
    _equal(bg_ckpt["optimizer_states"], sync_ckpt["optimizer_states"], "optimizer_states")
    _equal(bg_ckpt["loops"], sync_ckpt["loops"], "loops")
    _equal(bg_ckpt["callbacks"], sync_ckpt["callbacks"], "callbacks")
    # the resumed epochs are the same, loss for loss, and so are the kept weights
    drop = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert drop(bg_run.metrics) == drop(sync_run.metrics) and len(bg_run.metrics) == 4
    assert bg_run.summary["best_epoch"] == sync_run.summary["best_epoch"]
    a, b = load_file(str(bg_run.path / "model.safetensors")), load_file(str(sync_run.path / "model.safetensors"))
    _equal(a, b, "model.safetensors")
    _equal(read_checkpoint(bg_run.path / "checkpoints" / "last.ckpt")["optimizer_states"],
           read_checkpoint(sync_run.path / "checkpoints" / "last.ckpt")["optimizer_states"], "final optimizer")


# --------------------------------------------------------------------- flushed in time -----


def test_the_writer_is_waited_for_before_the_end_hooks_the_test_pass_and_the_summary(tmp_path, monkeypatch):
    threads = _slow_renames(monkeypatch, 0.2)
    seen = _SeesLastAtTrainEnd()
    run = train(TINY, DATA, out=str(tmp_path), name="flush", epochs=3, callbacks=[seen], **OPTS)
    assert threads and "MainThread" not in threads  # the renames ran in the writer thread
    assert seen.epoch == 2  # on_train_end already sees the last epoch's checkpoint
    assert _epoch(run.path, "last.ckpt") == 2
    best = read_checkpoint(run.path / "checkpoints" / "best.ckpt")
    assert run.summary["best_epoch"] == int(best["epoch"])
    kept = load_file(str(run.path / "model.safetensors"))
    for key, value in best["state_dict"].items():
        assert torch.equal(kept[key.removeprefix("model.")], value), key
    assert not [p for p in (run.path / "checkpoints").iterdir() if p.name.startswith(".")]
    assert not [t for t in threading.enumerate() if t.name.startswith("archlab-checkpoint")]


def test_an_error_during_training_waits_for_the_finished_epochs_checkpoints(tmp_path, monkeypatch):
    _slow_renames(monkeypatch, 0.3)
    with pytest.raises(RuntimeError, match="crash on purpose"):
        train(TINY, DATA, out=str(tmp_path), name="err", epochs=4, callbacks=[_CrashAt(2)], **OPTS)
    assert _epoch(tmp_path / "err", "last.ckpt") == 1
    assert not [p for p in (tmp_path / "err" / "checkpoints").iterdir() if p.name.startswith(".")]


# ----------------------------------------------------------------------- failed writes -----


def _failing_second_last_rename(monkeypatch) -> None:
    real = ckpt_module.publish_or_discard
    calls = {"n": 0}

    def failing(tmp, path):
        if path.name == "last.ckpt":
            calls["n"] += 1
            if calls["n"] == 2:
                os.unlink(tmp)
                raise OSError(28, "No space left on device")
        real(tmp, path)

    monkeypatch.setattr(ckpt_module, "publish_or_discard", failing)


def test_a_failed_background_write_stops_the_run_with_a_clear_error(tmp_path, monkeypatch):
    _failing_second_last_rename(monkeypatch)
    with pytest.raises(CheckpointError) as err:  # every epoch written: the second write fails
        train(TINY, DATA, out=str(tmp_path), name="full", epochs=5, checkpoint_interval=0, **OPTS)
    text = str(err.value)
    assert "last.ckpt" in text and "No space left on device" in text
    assert "background writer" in text and "--resume" in text
    run_dir = tmp_path / "full"
    assert _epoch(run_dir, "last.ckpt") == 0  # the one written before the failure
    assert len(Run.open(run_dir).metrics) <= 3  # stopped at the next save, not at the end
    assert not (run_dir / "summary.json").exists()


def test_a_failed_background_write_is_exit_status_2_without_a_traceback(tmp_path, monkeypatch, capsys):
    _failing_second_last_rename(monkeypatch)
    code = main(["train", "digits_mlp", "--data", "digits", "--epochs", "4", "--no-progress",
                 "--no-health", "--out", str(tmp_path), "--name", "cli", "--checkpoint-interval", "0"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and "No space left on device" in err and "last.ckpt" in err
