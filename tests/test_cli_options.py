"""Options a new user reaches for: `check` takes the data options of `train`, `predict` reads CSV
and names every input, `validate --json` reports errors as JSON, and the train summary tables
fit the terminal.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from archlab.cli import main

TABULAR = "name: tab\ninput: [3]\nlayers:\n  - {block: linear, out: 8, act: relu}\n  - {block: linear, out: 2}\n"


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tab")
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(80, 3)).round(3)
    label = (x[:, 0] + x[:, 1] > 0).astype(int)
    # the label column is first, so only --label finds it (the default is the last column)
    lines = ["cls,a,b,c"] + [f"{c},{a},{b},{d}" for c, (a, b, d) in zip(label, x, strict=True)]
    (folder / "t.csv").write_text("\n".join(lines) + "\n")
    (folder / "tab.yaml").write_text(TABULAR)
    return folder


def test_check_takes_the_data_options_of_train(table, capsys):
    code = main(["check", str(table / "tab.yaml"), "--data", str(table / "t.csv"), "--label", "cls",
                 "--examples", "32", "--overfit-steps", "30", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code in (0, 1)
    assert report["task"] == "classification"
    assert {c["name"] for c in report["checks"]} >= {"loss_at_init", "overfit_tiny_batch"}


def test_predict_reads_csv_and_names_each_row(table, tmp_path, capsys):
    assert main(["train", str(table / "tab.yaml"), "--data", str(table / "t.csv"), "--label", "cls",
                 "--epochs", "1", "--no-progress", "--no-health", "--out", str(tmp_path),
                 "--name", "r"]) == 0
    capsys.readouterr()
    # the training table itself (its label column is dropped) and a features-only table
    features = tmp_path / "new.csv"
    features.write_text("a,b,c\n0.5,0.5,0.1\n-0.5,-0.5,0.2\n")
    assert main(["predict", str(tmp_path / "r"), str(table / "t.csv"), str(features), "--json"]) == 0
    preds = json.loads(capsys.readouterr().out)["predictions"]
    assert len(preds) == 82
    assert preds[0]["input"] == f"{table / 't.csv'}:2"
    assert preds[-1]["input"] == f"{features}:3"
    assert {p["label"] for p in preds} <= {"0", "1"}


def test_predict_csv_with_wrong_columns_is_a_clear_error(table, tmp_path, capsys):
    assert main(["train", str(table / "tab.yaml"), "--data", str(table / "t.csv"), "--label", "cls",
                 "--epochs", "1", "--no-progress", "--no-health", "--out", str(tmp_path),
                 "--name", "r"]) == 0
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "r"), str(bad)]) == 2
    err = capsys.readouterr().err
    assert "the CSV has 2 columns, the model takes 3 inputs" in err and "give 3 feature columns" in err


def test_validate_json_reports_errors_as_json(capsys):
    code = main(["validate", "{name: x, input: [3], layers: [{block: linar, out: 3}]}", "--json"])
    assert code == 2
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "archlab.validate/1" and doc["valid"] is False
    assert doc["error"]["kind"] == "DesignError" and doc["error"]["path"] == "layers[0]"
    assert "did you mean 'linear'" in doc["error"]["message"]


def test_train_summary_fits_80_columns(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["train", "digits_mlp", "--data", "digits", "--epochs", "1", "--no-progress",
                 "--no-health", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "accuracy" in out and "…" not in out
