"""Data validation (archlab check --data): each finding against a direct count on the data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from archlab.cli import main
from archlab.diagnose.data_checks import check_data
from archlab.errors import ArchlabError


def by_name(report):
    return {c.name: c for c in report.checks}


@pytest.fixture
def table(tmp_path):
    """A regression table with planted problems: NaN in inputs and targets, a constant and a
    near-constant feature, an outlier, and duplicated rows."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 5))
    x[:, 3] = 7.0                      # constant
    x[:, 4] = 0.0
    x[:5, 4] = 1.0                     # near-constant: 395 zeros, 5 ones
    x[10, 0] = 1e6                     # an entry error
    y = x[:, :1] * 2 + rng.normal(scale=0.1, size=(400, 1))
    x[20, 1] = np.nan
    y[30, 0] = np.inf
    x[300:340] = x[200:240]            # 40 duplicated inputs ...
    y[300:340] = y[200:240]
    path = tmp_path / "table.npz"
    np.savez(path, x=x, y=y)
    return path, x, y


def test_planted_problems_are_found_with_their_rows(table):
    path, x, y = table
    r = by_name(check_data({"source": str(path), "task": "regression"}))
    inv = r["invalid_values"]
    assert inv.status == "fail"
    assert inv.evidence["input_rows"] == [20] and inv.evidence["target_rows"] == [30]
    const = r["constant_features"]
    assert const.status == "warn" and const.evidence["constant"] == [3]
    assert const.evidence["near_constant"] == [4]
    out = r["outliers"]
    assert 10 in out.evidence["input_rows"] and 0 in out.evidence["input_features"]
    dup = r["duplicates"]
    within = sum(dup.evidence["within_split"].values())
    assert within + dup.evidence["across_splits"] == 40       # every planted copy, no more
    assert dup.status == "fail" and dup.evidence["across_splits"] > 0
    assert "deduplicate before splitting" in dup.fixes[0]


def test_clean_data_passes(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 4))
    path = tmp_path / "clean.npz"
    np.savez(path, x=x, y=x[:, :1] * 0.5)
    r = check_data({"source": str(path), "task": "regression"})
    assert {c.name: c.status for c in r.checks} == {
        "invalid_values": "pass", "duplicates": "pass", "constant_features": "pass",
        "outliers": "pass"}


def test_label_conflicts_and_class_balance(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(200, 3))
    y = np.r_[np.zeros(180, dtype=np.int64), np.ones(20, dtype=np.int64)]
    x[199] = x[0]                      # the same input, labelled 1 and 0
    path = tmp_path / "cls.npz"
    np.savez(path, x=x, y=y)
    r = by_name(check_data(str(path)))
    assert r["duplicates"].evidence["label_conflicts"] == 1
    bal = r["class_balance"]
    counts = bal.evidence["counts"]
    assert sum(sum(c) for c in counts.values()) == 200
    assert bal.status == "warn" and bal.evidence["imbalance_ratio"] == pytest.approx(
        max(max(c) / min(c) for c in counts.values()))


def test_image_grid_per_class(tmp_path):
    from PIL import Image

    grid = tmp_path / "grid.png"
    r = by_name(check_data("digits", grid=grid))
    assert r["example_grid"].evidence["path"] == str(grid)
    w, h = Image.open(grid).size
    assert h > w > 0                   # 10 class rows of 8 examples
    assert r["constant_features"].status == "pass"   # constant border pixels do not warn


def test_training_refuses_nan_in_regression_inputs(table):
    """The reported gap: NaN in a regression file reached the test split silently."""
    from archlab.train.data import load_data

    path, _, _ = table
    with pytest.raises(ArchlabError) as err:
        load_data({"source": str(path), "task": "regression"})
    assert "inputs contain NaN or infinity (first in sample 20)" in str(err.value)


def test_cli_check_data_only(table, capsys):
    path, _, _ = table
    code = main(["check", "--data", str(path), "--task", "regression", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1 and out["design"] == "-" and not out["passed"]
    assert [c["name"] for c in out["checks"]][:2] == ["invalid_values", "duplicates"]
    assert all(c["fixes"] for c in out["checks"] if c["status"] != "pass")
