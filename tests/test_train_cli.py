"""`archlab train`, `archlab evaluate`, `archlab predict`: JSON output, tables, errors (exit 2)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from archlab.cli import main
from archlab.train import Run
from archlab.train.data import load_data


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    code = main(["train", "digits_mlp", "--data", "digits", "--epochs", "2", "--lr", "3e-3",
                 "--set", "hidden=32", "--out", str(out), "--name", "cli", "--seed", "1", "--json",
                 "--no-health"])
    assert code == 0
    return out / "cli"


def test_train_json_is_the_summary(trained, capsys):
    run = Run.open(trained)
    s = run.summary
    assert s["design"] == "digits_mlp" and s["data"] == "digits" and s["seed"] == 1
    assert s["params"] == 64 * 32 + 32 + 32 * 10 + 10  # --set hidden=32 reached the design
    assert s["test"]["accuracy"] > 0.5 and s["epochs_run"] == 2
    assert run.config.lr == 3e-3


def test_evaluate_reproduces_the_test_metrics(trained, capsys):
    assert main(["evaluate", str(trained), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    summary = Run.open(trained).summary
    assert out["split"] == "test" and out["metrics"]["accuracy"] == pytest.approx(summary["test"]["accuracy"])
    assert main(["evaluate", str(trained)]) == 0
    assert "accuracy" in capsys.readouterr().out


def test_predict_scales_raw_inputs_with_the_run_statistics(trained, tmp_path, capsys):
    run = Run.open(trained)
    d = load_data("digits")
    test = run.splits.test
    np.save(tmp_path / "x.npy", d.x[test].numpy())  # raw pixel values 0..16, unscaled
    assert main(["predict", str(trained), str(tmp_path / "x.npy"), "--json"]) == 0
    preds = json.loads(capsys.readouterr().out)["predictions"]
    assert len(preds) == len(test)
    accuracy = np.mean([int(p["label"]) == int(t) for p, t in zip(preds, d.y[test].tolist(), strict=False)])
    assert accuracy == pytest.approx(run.summary["test"]["accuracy"])
    assert all(0 <= p["probability"] <= 1 for p in preds)


def test_train_prints_tables(tmp_path, capsys):
    code = main(["train", "digits_mlp", "--data", "digits", "--epochs", "1", "--out", str(tmp_path),
                 "--name", "t", "--no-progress", "--no-health", "--split", "0.8,0.1,0.1"])
    assert code == 0
    text = capsys.readouterr().out
    assert "test split, best epoch" in text and "per-class accuracy" in text


@pytest.mark.parametrize("argv,message", [
    (["train", "digits_mlp", "--data", "digits", "--split", "0.5,0.5"],
     "error: --split needs three fractions train,val,test; received '0.5,0.5'; e.g. --split 0.8,0.1,0.1"),
    (["train", "digits_mlp", "--data", "no/such/folder"],
     "error: no/such/folder: no data set or file named 'no/such/folder'"),
    (["train", "mnist_cnn", "--data", "digits", "--epochs", "1"],
     "error: zoo:mnist_cnn: the design expects input (1, 28, 28) (C, H, W without batch), the data's "
     "samples (digits) are (1, 8, 8); set the design's input to [1, 8, 8] or choose data shaped "
     "(1, 28, 28)"),
    (["evaluate", "not-a-run"], "error: not-a-run: no such run folder"),
    (["train"], "error: archlab train needs a DESIGN (file, zoo name) or --resume RUN"),
])
def test_errors_exit_2_without_traceback(argv, message, tmp_path, capsys):
    assert main([*argv, "--out", str(tmp_path)] if argv[0] == "train" else argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and "Traceback" not in err


def test_evaluate_other_data_uses_the_run_scaling(trained, tmp_path, capsys):
    run = Run.open(trained)
    d = load_data("digits")
    test = run.splits.test
    np.savez(tmp_path / "held_out.npz", x=d.x[test].numpy(), y=d.y[test].numpy())
    assert main(["evaluate", str(trained), "--data", str(tmp_path / "held_out.npz"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["split"] is None and out["metrics"]["accuracy"] == pytest.approx(run.summary["test"]["accuracy"])
