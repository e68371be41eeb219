"""`make demo` is the README's promise: the whole main job runs end to end on built-in data."""

from __future__ import annotations

from archlab import demo


def test_demo_runs_end_to_end(tmp_path, capsys):
    assert demo.run(tmp_path) == 0
    out = capsys.readouterr().out
    for heading in ("1. Describe", "2. Build, show, save, reload", "3. Judge before training",
                    "4. Design review", "5. Sanity checks", "6. Train on real data", "7. Diagnose"):
        assert heading in out
    assert "reloaded outputs identical: True" in out
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1
    assert (runs[0] / "summary.json").is_file() and (runs[0] / "health" / "plots" / "loss.png").is_file()
