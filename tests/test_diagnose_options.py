"""archlab train's monitor options: parsed, checked before training, and in force in the run."""

from __future__ import annotations

import argparse
import json

import pytest

from archlab.cli import main
from archlab.diagnose.command import add_monitor_arguments, health_callbacks, monitor_options
from archlab.errors import UsageError


def parse(*argv):
    p = argparse.ArgumentParser()
    add_monitor_arguments(p)
    return p.parse_args(list(argv))


def test_options_become_monitor_arguments():
    args = parse("--health-every", "5", "--health-detectors", "nan_inf, lr_too_high",
                 "--health-threshold", "lr_too_high.max_update_ratio=0.5",
                 "--health-threshold", "lr_too_high.samples=4")
    assert monitor_options(args) == {"every": 5, "detectors": ["nan_inf", "lr_too_high"],
                                     "thresholds": {"lr_too_high": {"max_update_ratio": 0.5,
                                                                    "samples": 4.0}}}
    assert monitor_options(parse()) == {} and health_callbacks(parse()) == []


def test_bad_options_are_usage_errors_naming_the_fix():
    with pytest.raises(UsageError) as err:
        monitor_options(parse("--health-threshold", "lr_too_high=0.5"))
    assert "DETECTOR.NAME=VALUE; received 'lr_too_high=0.5'" in str(err.value)
    with pytest.raises(UsageError) as err:     # names are checked before any training
        health_callbacks(parse("--health-detectors", "lr_too_hgh"))
    assert "lr_too_high" in str(err.value)


def test_train_runs_with_the_given_schedule(tmp_path, capsys):
    code = main(["train", "digits_mlp", "--data", "digits", "--epochs", "1", "--out", str(tmp_path),
                 "--name", "r", "--no-progress", "--json", "--health-every", "5",
                 "--health-threshold", "dying_relu.dead_fraction=0.9"])
    capsys.readouterr()
    assert code == 0
    monitor = json.loads((tmp_path / "r" / "health" / "monitor.json").read_text())
    assert monitor["schedule"]["every"] == 5
    assert monitor["detectors"]["dying_relu"]["thresholds"]["dead_fraction"] == 0.9
    steps = json.loads((tmp_path / "r" / "health" / "context.json").read_text())
    assert steps["reference"]["loss"] == "cross_entropy"   # declared from the training split
    assert steps["reference"]["label_entropy"] == pytest.approx(2.3, abs=0.01)
