"""`archlab analyze` end to end: table, JSON, CSV, plot, a user's module file, errors, latency."""

from __future__ import annotations

import json

import pytest
import torch

from archlab.analysis import analyze
from archlab.analysis.reference import SmallConvNet
from archlab.cli import main


def test_analyze_design_table(capsys):
    assert main(["analyze", "mnist_cnn", "--batch", "4"]) == 0
    out = capsys.readouterr().out
    assert "mnist_cnn" in out and "total" in out
    assert "1 multiply-add = 2 FLOPs" in out
    assert "as PyTorch counts them" in out
    assert "peak training" in out


def test_analyze_json_schema(capsys):
    assert main(["analyze", "resnet18", "--json", "--no-memory"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["schema"] == "archlab.analysis/1"
    assert data["source"] == "design"
    assert data["totals"]["multiply_adds"] == 1_814_073_344
    assert data["memory"] is None
    block = data["blocks"][0]
    assert set(block) == {"path", "block", "stage", "output_shape", "params", "multiply_adds",
                          "elementwise", "memory_access_bytes", "saved_activation_bytes", "ops",
                          "flops", "arithmetic_intensity"}
    op = data["ops"][0]
    assert set(op) == {"kind", "path", "inputs", "output", "params", "multiply_adds", "elementwise",
                       "weights_read", "memory_access_bytes"}


def test_analyze_set_variable_and_csv(capsys):
    assert main(["analyze", "mnist_cnn", "--csv", "--depth", "stage", "--no-memory"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("path,block,stage,output_shape,params")
    assert len(lines) > 1


def test_analyze_user_module_file(tmp_path, capsys):
    source = tmp_path / "model.py"
    source.write_text(
        "from torch import nn\n"
        "def make():\n"
        "    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(),\n"
        "                         nn.Linear(8 * 8 * 8, 10))\n")
    assert main(["analyze", f"{source}:make", "--input", "3x8x8", "--json", "--batch", "2"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["source"] == "module"
    assert data["totals"]["params"] == 3 * 8 * 9 + 8 + 512 * 10 + 10
    assert data["totals"]["multiply_adds"] == 64 * 8 * 27 + 512 * 10
    assert data["memory"]["batch"] == 2


def test_user_module_errors(tmp_path, capsys):
    source = tmp_path / "model.py"
    source.write_text("def make():\n    return 3\n")
    assert main(["analyze", f"{source}:missing", "--input", "3x8x8"]) == 2
    assert "has no 'missing'; callables in it: make" in capsys.readouterr().err
    assert main(["analyze", f"{source}:make", "--input", "3x8x8"]) == 2
    assert "returned int, expected a torch.nn.Module" in capsys.readouterr().err
    assert main(["analyze", f"{source}:make", "--input", "3by8"]) == 2
    assert "cannot read --input '3by8'" in capsys.readouterr().err


def test_bad_budget_exits_2_without_traceback(capsys):
    assert main(["analyze", "mnist_cnn", "--budget", "lots"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot read the memory size 'lots'")
    assert "Traceback" not in err


def test_plot_is_written(tmp_path, capsys):
    path = tmp_path / "cost.png"
    assert main(["analyze", "mnist_cnn", "--batch", "2", "--plot", str(path)]) == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["analyze", "mnist_cnn", "--no-memory", "--plot", str(tmp_path / "cost.txt")]) == 2
    assert "--plot writes .png, .svg or .pdf, received" in capsys.readouterr().err


def test_latency_is_measured_with_its_environment():
    torch.manual_seed(0)
    a = analyze(SmallConvNet(), (3, 32, 32), batch=2, memory=False, latency=True,
                backward_latency=True, rounds=3, threads=1)
    lat = a.latency
    assert lat.forward.median_s > 0 and lat.forward.rounds == 3
    assert lat.forward_backward.median_s > 0
    assert lat.throughput_per_s == pytest.approx(2 / lat.forward.median_s)
    assert lat.environment["threads"] == 1 and lat.environment["torch"] == torch.__version__
    assert {"stem", "block", "head", "other"} <= set(lat.stages)
    data = json.loads(a.to_json())["latency"]
    assert data["forward"]["median_s"] == lat.forward.median_s
    assert data["environment"]["cpu"]


def test_user_module_with_token_input(tmp_path, capsys):
    source = tmp_path / "tokens.py"
    source.write_text(
        "from torch import nn\n"
        "def make():\n"
        "    return nn.Sequential(nn.Embedding(50, 8), nn.Flatten(), nn.Linear(6 * 8, 3))\n")
    assert main(["analyze", f"{source}:make", "--input", "6", "--input-dtype", "int64",
                 "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["totals"]["params"] == 50 * 8 + 48 * 3 + 3
    assert data["totals"]["multiply_adds"] == 48 * 3
