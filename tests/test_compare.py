"""archlab compare on designs (no training): figures against oracles (PyTorch's own parameter
count, the analysis), the structural diff, the JSON/CSV forms, bad input, run folders that are
incomplete or old, and ``archlab runs``."""

from __future__ import annotations

import csv
import io
import json

import pytest
import torch
import yaml

import archlab
from archlab.cli import main
from archlab.compare import compare, pareto_front, parse_operand, split_operand
from archlab.compare.pareto import Point
from archlab.errors import UsageError

RESNET34 = 21_797_672  # torchvision resnet34, published parameter count


@pytest.fixture(scope="module")
def resnet34_file(tmp_path_factory):
    """The resnet34-like depth variant of resnet18: stages of 3, 4, 6, 3 basic blocks."""
    raw = yaml.safe_load(archlab.zoo.path("resnet18").read_text())
    raw["name"] = "resnet34"
    for layer, depth in zip(raw["layers"][2:6], (3, 4, 6, 3), strict=True):
        layer["depth"] = depth
    path = tmp_path_factory.mktemp("designs") / "resnet34.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def zoo_comparison(resnet34_file):
    return compare(["resnet18", "resnet18?width=32", str(resnet34_file)])


def test_figures_match_pytorch_and_the_analysis(zoo_comparison):
    c = zoo_comparison
    rows = {r["name"]: r for r in c.rows()}
    half = archlab.load("resnet18", width=32).build()
    assert rows["params"]["values"]["resnet18?width=32"] == sum(p.numel() for p in half.parameters())
    assert rows["params"]["values"][c.entries[2].label] == RESNET34
    full = archlab.analyze("resnet18", memory=False).totals
    for name in ("multiply_adds", "elementwise", "memory_access_bytes"):
        assert rows[name]["values"]["resnet18"] == full[name]
    assert rows["params"]["ratio"]["resnet18"] == 1.0
    p = rows["params"]
    assert p["ratio"]["resnet18?width=32"] == round(p["values"]["resnet18?width=32"] / 11_689_512, 4)
    assert p["percent"][c.entries[2].label] == round(100 * (RESNET34 - 11_689_512) / 11_689_512, 2)
    assert {"findings_error", "findings_warning", "findings_info"} <= set(rows)
    assert "latency_ms" not in rows and "peak_training_bytes" not in rows  # only when asked


def test_structural_diff(zoo_comparison):
    half, deep = zoo_comparison.entries[1].diff, zoo_comparison.entries[2].diff
    assert half.variables == {"width": (64, 32)}
    assert half.counts()["added"] == 0 and half.counts()["removed"] == 0
    reshaped = {ch.path for ch in half.changes if ch.kind == "reshaped"}
    assert {"conv1", "maxpool", "layer1.0", "layer4.1"} <= reshaped and "fc" not in reshaped
    added = sorted(ch.path for ch in deep.changes if ch.kind == "added")
    assert added == sorted(["layer1.2", "layer2.2", "layer2.3", "layer3.2", "layer3.3", "layer3.4",
                            "layer3.5", "layer4.2"])
    assert set(deep.by_stage()) == {"layer1", "layer2", "layer3", "layer4"}


def test_json_and_csv(zoo_comparison):
    data = json.loads(zoo_comparison.to_json())
    assert data["schema"] == "archlab.compare/1" and data["baseline"] == "resnet18"
    assert [o["kind"] for o in data["operands"]] == ["design"] * 3
    assert data["operands"][1]["variables"] == {"width": 32}
    assert set(data) >= {"figures", "diff", "runs", "findings", "pareto", "notes", "stages"}
    assert data["pareto"]["points"] == []  # no quality without runs
    rows = list(csv.DictReader(io.StringIO(zoo_comparison.to_csv())))
    assert {r["operand"] for r in rows} == {e.label for e in zoo_comparison.entries}
    params = [r for r in rows if r["figure"] == "params"]
    assert [int(r["value"]) for r in params][2] == RESNET34


def test_memory_and_latency_when_asked():
    c = compare(["mnist_cnn", "mnist_cnn?width=8"], batch=8, latency=True, latency_rounds=3,
                review=False)
    rows = {r["name"]: r for r in c.rows()}
    a = archlab.analyze("mnist_cnn", batch=8)
    assert rows["peak_training_bytes"]["values"]["mnist_cnn"] == a.memory.peak_training_bytes
    assert rows["latency_ms"]["values"]["mnist_cnn?width=8"] > 0
    assert "findings_error" not in rows


def test_operand_syntax():
    assert split_operand("resnet18?width=32&classes=10") == ("resnet18", {"width": 32, "classes": 10})
    assert split_operand("nets/a.yaml") == ("nets/a.yaml", {})
    op = parse_operand("mnist_cnn?width=8", {"hidden": 64})
    assert op.design.variables["width"] == 8 and op.design.variables["hidden"] == 64
    with pytest.raises(UsageError, match="'width' is not name=value"):
        split_operand("resnet18?width")
    with pytest.raises(UsageError, match="has no design before"):
        split_operand("?width=3")


def test_different_tasks_are_refused_naming_both():
    with pytest.raises(UsageError) as exc:
        compare(["mnist_cnn", "unet"], review=False)
    text = str(exc.value)
    assert "'mnist_cnn' is classification" in text and "'unet' is segmentation" in text


def test_different_inputs_compare_only_what_does_not_depend_on_them():
    c = compare(["resnet18", "resnet18?size=112"], review=False)
    rows = {r["name"]: r for r in c.rows()}
    assert rows["params"]["ratio"]["resnet18?size=112"] == 1.0
    assert rows["multiply_adds"]["ratio"]["resnet18?size=112"] is None
    assert rows["multiply_adds"]["values"]["resnet18?size=112"] < rows["multiply_adds"]["values"]["resnet18"]
    assert any("input shapes differ" in n and "3x224x224" in n and "3x112x112" in n for n in c.notes)


def test_pareto_front_marks_the_non_dominated():
    pts = [Point("a", 1, 0.9), Point("b", 2, 0.95), Point("c", 3, 0.93), Point("d", 1, 0.85)]
    front = pareto_front(pts)
    assert [p.label for p in front] == ["a", "b"]
    pts = [Point("a", 1, 0.5), Point("b", 2, 0.2)]  # lower is better (mse)
    assert [p.label for p in pareto_front(pts, higher_quality_is_better=False)] == ["a", "b"]


def _fake_run(folder, *, summary=True, config=True, data="mnist5k", val=(0.5, 0.7), seed=0):
    folder.mkdir(parents=True)
    (folder / "design.yaml").write_text(archlab.load("mnist_cnn").to_yaml())
    if config:
        (folder / "config.yaml").write_text(yaml.safe_dump({"epochs": len(val), "seed": seed}))
    (folder / "data.json").write_text(json.dumps({"task": "classification", "source": data,
                                                  "classes": [str(i) for i in range(10)],
                                                  "sample_shape": [1, 28, 28]}))
    rows = "epoch,train_loss,val_loss,val_accuracy,lr,seconds\n" + "".join(
        f"{i},1.0,0.9,{v},0.001,2.0\n" for i, v in enumerate(val))
    (folder / "metrics.csv").write_text(rows)
    if summary:
        (folder / "summary.json").write_text(json.dumps({
            "design": "mnist_cnn", "data": data, "task": "classification", "seed": seed,
            "test": {"accuracy": val[-1] - 0.01}, "fit_seconds": 4.5, "best_epoch": len(val) - 1,
            "finished": "2026-12-01T12:00:00+00:00", "code": {"git_commit": "abcdef1234567"}}))
    return folder


def test_runs_time_to_reach_the_baseline(tmp_path):
    a = _fake_run(tmp_path / "a", val=(0.5, 0.7, 0.8))
    b = _fake_run(tmp_path / "b", val=(0.6, 0.85, 0.9))
    c = compare([str(a), str(b)], review=False)
    rows = {r["name"]: r for r in c.rows()}
    assert rows["epochs_to_baseline"]["values"] == {"a": 3, "b": 2}  # runs are named by their folder
    assert rows["seconds_to_baseline"]["values"]["b"] == 4.0
    assert rows["test_quality"]["values"]["b"] == pytest.approx(0.89)
    assert [p.label for p in c.pareto() if p.front] == ["b"]  # same cost, better accuracy
    assert [o["spec"] for o in json.loads(c.to_json())["operands"]] == [str(a), str(b)]


def test_runs_on_different_data_are_refused(tmp_path):
    a = _fake_run(tmp_path / "a")
    b = _fake_run(tmp_path / "b", data="digits")
    with pytest.raises(UsageError, match="'.*a' on mnist5k, '.*b' on digits"):
        compare([str(a), str(b)], review=False)


def test_incomplete_and_old_run_folders_are_reported(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "220")  # notes on one line each
    good = _fake_run(tmp_path / "runs" / "good")
    _fake_run(tmp_path / "runs" / "unfinished", summary=False)
    old = _fake_run(tmp_path / "runs" / "old", config=False)
    (old / "metrics.csv").write_text("step;value\n\x00garbage")
    assert main(["compare", str(good), str(tmp_path / "runs" / "unfinished"), str(old)]) == 0
    out = capsys.readouterr().out.replace("\n", " ")
    assert "missing summary.json" in out and "not a run folder (no config.yaml)" in out
    assert main(["runs", str(tmp_path / "runs"), "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    by_name = {r["name"]: r for r in listing["runs"]}
    assert by_name["good"]["best"] == 0.7 and by_name["good"]["commit"] == "abcdef1234"
    assert by_name["good"]["design"] == "mnist_cnn" and by_name["good"]["seed"] == 0
    assert any("no summary.json" in p for p in by_name["unfinished"]["problems"])
    assert main(["runs", str(tmp_path / "none")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_cli_table_and_errors(capsys):
    assert main(["compare", "mnist_cnn", "mnist_cnn?width=8", "--no-review"]) == 0
    out = capsys.readouterr().out
    assert "baseline: mnist_cnn" in out and "0.487x" in out and "variables: width 16 -> 8" in out
    assert main(["compare", "mnist_cnn", "nosuchnet"]) == 2
    assert "neither a design file nor a zoo design" in capsys.readouterr().err
    assert main(["compare", "mnist_cnn", "mnist_cnn?width=8", "--cost", "flops"]) == 2
    assert "unknown Pareto cost 'flops'" in capsys.readouterr().err


def test_counts_do_not_need_tensors():
    """The compare of designs takes the analytic path: no module is built (a search screens
    hundreds of variants with it)."""
    built = []
    original = torch.nn.Module.__init__

    def spy(self, *a, **k):
        built.append(type(self).__name__)
        original(self, *a, **k)

    torch.nn.Module.__init__ = spy
    try:
        compare(["resnet50", "resnet50?width=32"], review=False)
    finally:
        torch.nn.Module.__init__ = original
    assert built == []


def test_review_is_automatic_for_a_few_designs_only():
    many = ["mnist_cnn"] + [f"mnist_cnn?width={w}" for w in (4, 6, 8, 10, 12, 14)]
    c = compare(many)
    assert not any(r["name"].startswith("findings_") for r in c.rows())
    assert any("review was skipped for 7 designs" in n and "--review" in n for n in c.notes)
    c = compare(many[:2] + ["mnist_cnn?width=4"], review=None)
    assert {"findings_error", "findings_warning"} <= {r["name"] for r in c.rows()}
