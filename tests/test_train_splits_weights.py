"""Splits that hold out nothing, empty splits, and a run whose model.safetensors is gone: each is
an explicit refusal or an explicit warning naming the files, never a silent fallback or a loss of
0 over no samples."""

from __future__ import annotations

import warnings

import pytest
import torch
from safetensors.torch import load_file

from archlab.cli import main
from archlab.errors import ArchlabError
from archlab.train import CheckpointError, Run, train
from archlab.train.checkpoint import read_checkpoint

DATA = {"source": "synthetic-classification", "samples": 96, "shape": [1, 8, 8], "classes": 3}
DESIGN = {"name": "tiny", "input": [1, 8, 8], "layers": [
    {"name": "conv", "block": "conv", "out": 4},
    {"name": "pool", "block": "global_pool"},
    {"name": "fc", "block": "linear", "out": 3}]}


def fit(tmp_path, name, **options):
    return train(DESIGN, DATA, epochs=3, batch=16, progress=False, health=False, out=str(tmp_path),
                 name=name, **options)


def test_a_split_that_holds_nothing_out_is_refused(tmp_path, capsys):
    code = main(["train", "digits_mlp", "--data", "digits", "--split", "1,0,0", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "--split" in err and "holds nothing out" in err and "received --split 1,0,0" in err
    assert "e.g. --split 0.8,0.1,0.1" in err and "0.9,0.1,0 for validation only" in err
    assert not any(tmp_path.iterdir())  # refused before any work
    with pytest.raises(ArchlabError, match="holds nothing out") as info:
        fit(tmp_path, "api", split=(1.0, 0.0, 0.0))
    assert "Value error" not in str(info.value) and "keep a validation or a test part" in str(info.value)


def test_without_a_test_split_evaluate_names_the_empty_split(tmp_path, capsys):
    run = fit(tmp_path, "no-test", split=(0.8, 0.2, 0.0))
    assert run.summary["test"] == {} and run.summary["best_epoch"] is not None
    with pytest.raises(ArchlabError, match=r"the run's test split is empty \(trained with --split 0.8,0.2,0\)"):
        run.evaluate()
    assert main(["evaluate", str(run.path)]) == 2
    err = capsys.readouterr().err
    assert "nothing to evaluate" in err and "--split val" in err and "Traceback" not in err
    assert run.evaluate(split="val")["accuracy"] >= 0  # the split that exists still evaluates


def test_without_a_validation_split_the_last_epoch_is_kept(tmp_path):
    run = fit(tmp_path, "no-val", split=(0.8, 0.0, 0.2))
    assert not (run.path / "checkpoints" / "best.ckpt").exists()  # no epoch is chosen
    assert run.summary["best_epoch"] is None and run.summary["epochs_run"] == 3
    last = read_checkpoint(run.path / "checkpoints" / "last.ckpt")
    assert last["epoch"] == 2
    kept = load_file(str(run.path / "model.safetensors"))
    for name, tensor in kept.items():
        assert torch.equal(tensor, last["state_dict"][f"model.{name}"]), name
    assert set(run.test_metrics) >= {"accuracy", "loss"}
    with pytest.raises(ArchlabError, match="validation split is empty"):
        run.evaluate(split="val")


def test_a_deleted_weights_file_is_replaced_by_the_same_checkpoint_with_a_warning(tmp_path, capsys):
    run = fit(tmp_path, "deleted")
    expected = {k: v.clone() for k, v in Run.open(run.path).model().state_dict().items()}
    metrics = Run.open(run.path).evaluate()
    (run.path / "model.safetensors").unlink()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = Run.open(run.path).model()
    text = " ".join(str(w.message) for w in caught)
    assert f"{run.path / 'model.safetensors'} is missing (deleted?)" in text
    assert f"using checkpoints/best.ckpt instead, which holds the same weights (the best epoch's, " \
           f"epoch {run.summary['best_epoch']})" in text
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, expected[name]), name
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert Run.open(run.path).evaluate() == metrics

    (run.path / "checkpoints" / "best.ckpt").unlink()
    with pytest.raises(CheckpointError, match="checkpoints/best.ckpt, which would hold the same "
                                              "weights, is missing too"):
        Run.open(run.path).model()
    assert main(["evaluate", str(run.path)]) == 2
    err = capsys.readouterr().err
    assert "model.safetensors is missing" in err and "restore model.safetensors" in err
    assert "Traceback" not in err


def test_an_unfinished_run_without_weights_says_to_resume(tmp_path):
    run = fit(tmp_path, "unfinished")
    (run.path / "model.safetensors").unlink()
    (run.path / "summary.json").unlink()
    with pytest.raises(CheckpointError, match="the run did not finish") as info:
        Run.open(run.path).model()
    assert f"archlab train --resume {run.path}" in str(info.value)
