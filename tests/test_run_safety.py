"""Run safety: a finished run is never overwritten, the reported best epoch is the kept one,
and run files have the permissions of the umask.

The oracles are the run folder's own files: the epoch stored inside ``checkpoints/best.ckpt``,
the tensors of ``model.safetensors`` and the metrics rows of ``metrics.csv``.
"""

from __future__ import annotations

import csv
import os
import stat

import pytest
import torch
from safetensors.torch import load_file

from archlab.cli import main
from archlab.train import RunError, train
from archlab.train.checkpoint import read_checkpoint

DATA = {"source": "synthetic-classification", "samples": 96, "shape": [1, 8, 8], "classes": 3}
TINY = {"name": "tiny", "input": [1, 8, 8], "layers": [
    {"name": "conv", "block": "conv", "out": 4},
    {"name": "pool", "block": "global_pool"},
    {"name": "fc", "block": "linear", "out": 3},
]}
OPTS = {"epochs": 1, "batch": 16, "progress": False, "health": False}


def _files(folder) -> dict[str, float]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_a_named_run_is_never_overwritten(tmp_path):
    first = train(TINY, DATA, out=str(tmp_path), name="exp", **OPTS)
    before = _files(first.path)
    with pytest.raises(RunError) as err:
        train(TINY, DATA, out=str(tmp_path), name="exp", **OPTS)
    text = str(err.value)
    assert "already exists: a run is never overwritten" in text
    assert "--resume" in text and "--name" in text
    assert _files(first.path) == before  # not one file touched


def test_generated_names_are_numbered_and_start_empty(tmp_path):
    # a stale folder with the generated name (e.g. a crashed run): the new run gets its own
    # numbered folder and no stale file mixes into it
    a = train(TINY, DATA, out=str(tmp_path), **OPTS)
    stale = a.path.with_name(a.path.name + "-x")
    stale.mkdir()
    (stale / "stale.txt").write_text("old")
    b = train(TINY, DATA, out=str(tmp_path), **OPTS)
    assert b.path != a.path
    assert not (b.path / "stale.txt").exists()
    assert (a.path / "summary.json").exists() and (b.path / "summary.json").exists()


def test_cli_refuses_an_existing_name_with_exit_status_2(tmp_path, capsys):
    args = ["train", "digits_mlp", "--data", "digits", "--epochs", "1", "--no-progress",
            "--no-health", "--out", str(tmp_path), "--name", "same"]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "already exists" in err and "--resume" in err


def test_out_that_is_a_file_is_a_clear_error(tmp_path):
    f = tmp_path / "runs"
    f.write_text("not a folder")
    with pytest.raises(RunError, match="is a file"):
        train(TINY, DATA, out=str(f), **OPTS)


def test_best_epoch_and_kept_weights_agree_on_ties(tmp_path):
    # a tiny validation split makes accuracy move in steps of 1/n, so epochs tie; the summary
    # must name the epoch whose weights were kept (the earliest with the best value)
    easy = {**DATA, "samples": 160, "classes": 2}
    design = {**TINY, "layers": [*TINY["layers"][:2], {"name": "fc", "block": "linear", "out": 2}]}
    run = train(design, easy, out=str(tmp_path), name="tie", epochs=7, batch=8, lr=3e-2,
                split=(0.8, 0.1, 0.1), progress=False, health=False, seed=0)
    with open(run.path / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    values = [float(r["val_accuracy"]) for r in rows]
    best = max(values)
    assert values.count(best) >= 2, f"the set-up must produce a tie to test the rule: {values}"
    earliest = next(int(r["epoch"]) for r in rows if float(r["val_accuracy"]) == best)

    ckpt = read_checkpoint(run.path / "checkpoints" / "best.ckpt")
    assert run.summary["best_epoch"] == int(ckpt["epoch"]) == earliest
    kept = load_file(str(run.path / "model.safetensors"))
    for key, value in ckpt["state_dict"].items():
        name = key.removeprefix("model.")
        assert torch.equal(kept[name], value), name


def test_run_files_honour_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        run = train(TINY, DATA, out=str(tmp_path), name="perm", **OPTS)
    finally:
        os.umask(old)
    modes = {str(p.relative_to(run.path)): stat.S_IMODE(p.stat().st_mode)
             for p in run.path.rglob("*") if p.is_file()}
    assert modes and set(modes.values()) == {0o640}, modes
