"""Regression targets are standardised with training-split statistics; metrics (MSE, MAE, R^2)
and predictions are in the data's own units.

Oracles: numpy statistics of the training split's targets, scikit-learn's ``r2_score`` and
``mean_squared_error`` on the run's own predictions of its test split.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

from archlab.train import train
from archlab.train.data import load_data

DESIGN = {"name": "reg", "input": [6], "layers": [
    {"name": "h", "block": "linear", "out": 16, "act": "relu"},
    {"name": "out", "block": "linear", "out": 1},
]}


def _data(tmp_path, scale: float) -> str:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6)).astype(np.float32)
    y = (x @ rng.normal(size=6) + 0.1 * rng.normal(size=300)).astype(np.float32) * scale + 3 * scale
    path = tmp_path / f"reg_{int(scale)}.npz"
    np.savez(path, x=x, y=y)
    return str(path)


def _fit(tmp_path, data, name, **opts):
    return train(DESIGN, {"source": data, "task": "regression"}, epochs=25, batch=32, lr=3e-3,
                 progress=False, health=False, out=str(tmp_path), name=name, **opts)


@pytest.mark.parametrize("scale", [1.0, 1e6])
def test_targets_are_scaled_and_metrics_are_in_data_units(tmp_path, scale):
    data = _data(tmp_path, scale)
    run = _fit(tmp_path, data, f"s{int(scale)}")
    arrays = load_data({"source": data, "task": "regression"})
    y = arrays.y.double().numpy()
    stats = json.loads((run.path / "scaling.json").read_text())["target"]
    train_y = y[run.splits.train]
    assert stats["mean"] == pytest.approx(train_y.mean(), rel=1e-6)
    assert stats["std"] == pytest.approx(train_y.std(), rel=1e-6)

    test = run.splits.test
    pred = run.predict(arrays.x[torch.as_tensor(test)])["outputs"].double().numpy().reshape(-1)
    truth = y[test]
    metrics = run.test_metrics
    assert metrics["mse"] == pytest.approx(mean_squared_error(truth, pred), rel=1e-4)
    assert metrics["mae"] == pytest.approx(mean_absolute_error(truth, pred), rel=1e-4)
    assert metrics["r2"] == pytest.approx(r2_score(truth, pred), abs=1e-4)
    # learnt the same function whatever the units: scaling makes the problem unit-free
    assert metrics["r2"] > 0.8


def test_no_scale_targets_trains_on_raw_targets(tmp_path):
    data = _data(tmp_path, 1.0)
    run = _fit(tmp_path, data, "raw", scale_targets=False)
    assert "target" not in json.loads((run.path / "scaling.json").read_text())
    assert "r2" in run.test_metrics
