"""``archlab train --logger tensorboard|mlflow|csv``: a run seen where people already look.
Read back with each tool's own reader (TensorBoard's event reader, MLflow's client, the CSV)."""

from __future__ import annotations

import argparse
import csv
import importlib.util

import pytest
import yaml

import archlab
from archlab.cli import main
from archlab.train.engine import LoggerCallback


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory):
    from archlab.train.command import _logger_callbacks

    out = tmp_path_factory.mktemp("logged")
    args = argparse.Namespace(logger="tensorboard", design="digits_mlp", set=["hidden=32"])
    tb = _logger_callbacks(args)[0]  # the CLI's own callback: design figures and variables
    hparams = dict(tb.hparams)
    callbacks = [tb, LoggerCallback("mlflow", hparams, name="digits_mlp"), LoggerCallback("csv", hparams)]
    run = archlab.train("digits_mlp", "digits", variables={"hidden": 32}, epochs=2, progress=False,
                        health=False, out=str(out), name="logged", callbacks=callbacks, lr=3e-3)
    return run, hparams


def test_hyper_parameters_name_the_design_and_config(logged_run):
    run, hparams = logged_run
    design = archlab.load("digits_mlp", hidden=32)
    assert hparams["design/params"] == design.graph.param_count
    assert hparams["design/multiply_adds"] == design.graph.multiply_adds
    assert hparams["design/variables/hidden"] == 32
    saved = yaml.safe_load((run.path / "tensorboard" / "hparams.yaml").read_text())
    assert saved["config/lr"] == 3e-3 and saved["config/epochs"] == 2
    assert saved["design/params"] == design.graph.param_count


def test_tensorboard_events(logged_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run, _ = logged_run
    acc = EventAccumulator(str(run.path / "tensorboard"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert {"train/loss", "val/loss", "val/accuracy", "lr"} <= set(tags)
    values = [e.value for e in acc.Scalars("val/accuracy")]
    assert values == pytest.approx([r["val_accuracy"] for r in run.metrics], abs=1e-6)


def test_mlflow_store(logged_run):
    from mlflow.tracking import MlflowClient

    run, hparams = logged_run
    client = MlflowClient(tracking_uri=f"sqlite:///{(run.path / 'mlflow.db').resolve()}")
    exp = client.get_experiment_by_name("digits_mlp")
    (mrun,) = client.search_runs([exp.experiment_id])
    assert mrun.data.params["design/params"] == str(hparams["design/params"])
    history = client.get_metric_history(mrun.info.run_id, "val/loss")
    assert [m.value for m in history] == pytest.approx([r["val_loss"] for r in run.metrics], abs=1e-6)


def test_csv_logger(logged_run):
    run, _ = logged_run
    with open(run.path / "csv_logs" / "metrics.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("val/accuracy")]
    assert len(rows) == 2


def test_missing_package_names_the_extra(monkeypatch, capsys, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.split(".")[0] in ("tensorboard", "tensorboardX", "mlflow")
                        else real(name, *a))
    for kind, package in (("tensorboard", "tensorboard"), ("mlflow", "mlflow")):
        code = main(["train", "digits_mlp", "--data", "digits", "--epochs", "1", "--logger", kind,
                     "--out", str(tmp_path)])
        err = capsys.readouterr().err
        assert code == 2 and f"--logger {kind} needs the '{package}' package" in err
        assert "pip install 'archlab[loggers]'" in err
    assert not any(tmp_path.iterdir())  # refused before any run folder was made
