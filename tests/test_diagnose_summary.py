"""archlab diagnose: the run's health in words (events, evidence, fixes) and PNG plots."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from archlab.cli import main
from archlab.diagnose import HealthRecorder, diagnose

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture()
def run_dir(tmp_path):
    """A run folder whose network has every ReLU dead from the start."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 4))
    with torch.no_grad():
        model[0].bias.fill_(-50.0)
    x, y = torch.randn(32, 16), torch.randint(0, 4, (32,))
    rec = HealthRecorder(every=2)
    rec.attach(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for step in range(40):   # 20 samples of 16 examples: dying_relu needs 300 watched
        rec.begin_step()
        loss = nn.functional.cross_entropy(model(x), y)
        rec.after_loss(loss)
        opt.zero_grad()
        loss.backward()
        rec.before_optimizer_step()
        opt.step()
        rec.end_step()
        if step % 10 == 9:
            rec.validation(float(loss.detach()) * 1.1, epoch=step // 10)
    rec.finish(tmp_path / "health")
    (tmp_path / "metrics.csv").write_text("epoch,train/loss,val/loss,val/accuracy\n0,1.4,1.5,0.3\n1,1.3,1.4,0.35\n")
    return tmp_path


def test_summary_and_plots(run_dir):
    d = diagnose(run_dir)
    assert not d.healthy
    dying = next(e for e in d.events if e["detector"] == "dying_relu")
    # the 19th sample (step 36) is the first whose run of dead samples watched >= 300 examples
    assert dying["step"] == 36 and dying["layers"] == ["1"]
    assert dying["evidence"]["examples_per_sample"] == 16 and dying["evidence"]["samples"] == 19
    assert dying["fixes"][0].startswith("use leaky ReLU or PReLU")
    assert d.steps == 40 and d.samples == 20
    names = sorted(p.rsplit("/", 1)[-1] for p in d.plots)
    assert names == ["dead_units.png", "grad_norm_heatmap.png", "loss.png"]
    for p in d.plots:
        with open(p, "rb") as fh:
            assert fh.read(8) == PNG


def test_cli_diagnose_json_and_table(run_dir, capsys):
    assert main(["diagnose", str(run_dir), "--json", "--no-plots"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["healthy"] is False and out["plots"] == []
    assert {"detector", "step", "severity", "message", "layers", "evidence", "thresholds",
            "fixes"} <= set(out["events"][0])
    assert main(["diagnose", str(run_dir / "health"), "--out", str(run_dir / "p")]) == 1
    text = capsys.readouterr().out
    assert "dying_relu" in text and (run_dir / "p" / "loss.png").exists()


def test_cli_diagnose_errors(tmp_path, capsys):
    assert main(["diagnose", str(tmp_path / "nope")]) == 2
    assert "no such run folder" in capsys.readouterr().err
    assert main(["diagnose", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "holds no health record" in err and "HealthMonitor" in err


def test_monitor_in_archlab_train_end_to_end(tmp_path):
    """The monitor as a callback of archlab's own trainer, on real data, then diagnose."""
    import archlab
    from archlab.diagnose import HealthMonitor

    torch.set_num_threads(1)
    run = archlab.train("digits_mlp", "digits", epochs=2, callbacks=[HealthMonitor()],
                        out=str(tmp_path), progress=False)
    health = run.path / "health"
    rows = (health / "validation.csv").read_text().splitlines()
    assert len(rows) == 3                       # header + one row per epoch, in step
    assert rows[1].split(",")[1] == "0" and rows[2].split(",")[1] == "1"
    d = diagnose(run.path)
    assert d.healthy, d.events
    assert d.steps == 2 * math.ceil(len(run.splits.train) / 64)   # every step's loss recorded
    assert {p.rsplit("/", 1)[-1] for p in d.plots} == {"loss.png", "grad_norm_heatmap.png",
                                                       "dead_units.png"}


def test_table_names_the_cause_with_its_symptoms_as_evidence(run_dir, capsys, monkeypatch):
    """The verdict hierarchy in the report: a symptom explained by a cause is shown as that
    cause's evidence; a symptom no cause explains is shown apart, as "cause unknown"."""
    from archlab.diagnose.detectors import Verdict

    events = [Verdict("frozen_layers", 0, "2 layers never change", ["0"]),
              Verdict("loss_not_decreasing", 104, "loss 2.2 is -4% from 2.3", kind="symptom",
                      explained_by=["frozen_layers"]),
              Verdict("oscillating_loss", 120, "loss oscillates: 2 rises", kind="symptom")]
    (run_dir / "health" / "events.jsonl").write_text(
        "".join(json.dumps(v.to_dict()) + "\n" for v in events))
    d = diagnose(run_dir, plots=False)
    assert [e["detector"] for e in d.causes] == ["frozen_layers"]
    assert d.to_dict()["unexplained_symptoms"] == ["oscillating_loss"]
    monkeypatch.setenv("COLUMNS", "400")   # one line per row: the cells are read whole
    assert main(["diagnose", str(run_dir), "--no-plots"]) == 1
    text = " ".join(capsys.readouterr().out.split())
    assert "1 causes found, 1 symptoms with the cause unknown" in text
    assert "symptom: loss 2.2" in text and "(symptom, cause unknown)" in text
