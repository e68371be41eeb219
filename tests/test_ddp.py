"""Multi-process training on the CPU: `--strategy ddp --devices 2` (gloo) writes one run folder
with one summary and one metrics row per epoch (only rank 0 writes), and its metrics agree with
a single-process run of the same global batch.

The oracle is the single-process run: same design, data, seed and global batch (2 x 32 = 64).
The processes see the samples in another order (Lightning's distributed sampler), so the two
runs are not bit-identical; after 3 epochs their validation loss agrees within 5% and accuracies
within 0.06 (measured gap: about 0.5% and 0.02).
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys

COMMON = ["train", "digits_mlp", "--data", "digits", "--epochs", "3", "--no-progress",
          "--accelerator", "cpu", "--json"]


def _train(tmp_path, name: str, *extra: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "archlab", *COMMON, "--out", str(tmp_path / name),
                          "--name", "run", *extra], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    assert out.stdout.count('"test"') == 1, "one summary, printed once (rank 0)"
    return json.loads(out.stdout)


def _rows(folder) -> list[dict]:
    with open(folder / "metrics.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_ddp_on_two_cpu_processes_agrees_with_one_process(tmp_path):
    ddp = _train(tmp_path, "ddp", "--strategy", "ddp", "--devices", "2", "--batch", "32")
    one = _train(tmp_path, "one", "--batch", "64")

    folders = sorted(p.name for p in (tmp_path / "ddp").iterdir())
    assert folders == ["run"], "a second process must not create its own run folder"
    run = tmp_path / "ddp" / "run"
    assert (run / "summary.json").exists() and (run / "model.safetensors").exists()
    rows = _rows(run)
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2], "one metrics row per epoch"

    ref = _rows(tmp_path / "one" / "run")
    for a, b in zip(rows, ref, strict=True):
        assert abs(float(a["val_loss"]) - float(b["val_loss"])) <= 0.05 * float(b["val_loss"])
        assert abs(float(a["val_accuracy"]) - float(b["val_accuracy"])) <= 0.06
    assert abs(ddp["test"]["accuracy"] - one["test"]["accuracy"]) <= 0.06
    assert ddp["seed"] == one["seed"] == 0
