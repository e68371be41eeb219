"""archlab check: each sanity check against a case where the answer is known."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from archlab.cli import main
from archlab.diagnose.checks import check, initialisation, input_statistics


def by_name(report):
    return {c.name: c for c in report.checks}


def test_healthy_design_passes_every_check():
    r = check("digits_mlp", "digits", overfit_steps=150)
    checks = by_name(r)
    assert r.passed, [(c.name, c.message) for c in r.checks]
    assert set(checks) == {"input_statistics", "output_loss", "loss_at_init", "initialisation",
                           "gradient_flow", "dead_units", "nonlinearity", "overfit_tiny_batch"}
    loss = checks["loss_at_init"].evidence
    assert loss["expected"] == pytest.approx(math.log(10))
    assert 0.5 <= loss["ratio"] <= 1.5
    assert checks["overfit_tiny_batch"].evidence["final_loss"] <= 0.1 * checks["overfit_tiny_batch"].evidence["first_loss"]


def test_zero_initialised_model_fails_init_gradient_and_overfit():
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    for p in model.parameters():
        nn.init.zeros_(p)
    r = by_name(check(model, "digits", overfit_steps=30))
    assert r["initialisation"].status == "fail"
    assert "1.weight: all zero" in r["initialisation"].message
    assert r["gradient_flow"].status == "fail" and "1" in r["gradient_flow"].layers
    assert r["dead_units"].status == "fail"            # relu(0) is never active
    assert r["overfit_tiny_batch"].status == "fail"
    assert "the signal stops at 1" in r["overfit_tiny_batch"].message


def test_unscaled_inputs_found_by_mean_and_std():
    raw = torch.rand(200, 3, 4, 4) * 255
    bad = input_statistics(raw, raw)
    assert bad.status == "fail" and bad.message.startswith("3 of 3 channels are not scaled")
    fed = (raw - raw.mean((0, 2, 3), keepdim=True)) / raw.std((0, 2, 3), keepdim=True)
    fed[0, 0, 0, 0] = 40.0  # a long tail after standardising: not a scaling problem
    assert input_statistics(raw, fed).status == "pass"


def test_initialisation_rules():
    lin = nn.Linear(50, 20)
    assert initialisation(lin).status == "pass"
    with torch.no_grad():
        lin.weight.copy_(torch.randn(20, 50)[0].expand(20, 50))   # every row the same
    r = initialisation(lin)
    assert r.status == "fail" and r.message == "weight: identical rows"
    with torch.no_grad():
        lin.weight.normal_(0, 10.0)       # std 10 = 70x 1/sqrt(50)
    r = initialisation(lin)
    assert r.status == "warn" and "far from 1/sqrt(fan_in)" in r.message


def test_softmax_output_with_cross_entropy_fails():
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10), nn.Softmax(dim=1))
    r = check(model, "digits")
    assert not r.passed
    assert r.checks[0].name == "output_loss" and r.checks[0].status == "fail"
    assert "softmax" in r.checks[0].message.lower()


def test_cli_check_json(capsys):
    code = main(["check", "digits_mlp", "--data", "digits", "--no-scale", "--overfit-steps", "20",
                 "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1 and out["passed"] is False
    stats = next(c for c in out["checks"] if c["name"] == "input_statistics")
    assert stats["status"] == "fail"
    assert stats["evidence"]["as_read"]["max"] == [16.0]     # digits are 0..16 as read
    assert set(out) == {"design", "data", "task", "passed", "checks"}


def test_loss_at_init_warns_on_unscaled_regression_targets(tmp_path):
    """The rule 'MSE <= 10 x the mean predictor's' scales with the targets; their scale is
    judged on its own (archlab train standardises them unless --no-scale-targets)."""
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6)).astype("float32")
    np.savez(tmp_path / "t.npz", x=x, y=(1e4 * (x[:, :1] + 3)).astype("float32"))
    data = {"source": str(tmp_path / "t.npz"), "task": "regression"}
    model = lambda: nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 1))  # noqa: E731
    scaled = by_name(check(model(), data, overfit_steps=5))["loss_at_init"]
    assert scaled.status == "pass"
    raw = by_name(check(model(), data, overfit_steps=5, scale_targets=False))["loss_at_init"]
    assert raw.status == "warn" and "targets are not scaled" in raw.message
    assert raw.fixes[0].startswith("standardise the regression targets")
