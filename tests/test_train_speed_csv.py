"""metrics.csv's columns, kept up to date row by row, are those gathered from every row."""

from __future__ import annotations

import csv

from archlab.train.engine import EpochMetricsCSV


def _gathered(rows: list[dict]) -> list[str]:  # the definition: every key, in first-seen order
    columns: list[str] = []
    for r in rows:
        columns += [k for k in r if k not in columns]
    return columns


def test_columns_follow_appended_rows_and_new_lists(tmp_path):
    log = EpochMetricsCSV(tmp_path / "metrics.csv")
    rows = [{"epoch": 0, "train_loss": 1.0, "lr": 0.1}, {"epoch": 1, "train_loss": 0.9, "lr": 0.1},
            {"epoch": 2, "train_loss": 0.8, "val_fid": 3.0, "lr": 0.1}, {"epoch": 3, "lr": 0.1, "extra": 1}]
    for i in range(len(rows)):
        log.rows.append(rows[i])
        log.write()
        assert log.columns() == _gathered(rows[:i + 1])
        with open(log.path, newline="") as fh:
            assert next(csv.reader(fh)) == _gathered(rows[:i + 1])
    # a new list (a resume reads the file again): read whole, never the old list's columns
    log.rows = [{"epoch": 0, "b": 1}, {"epoch": 1, "a": 2}]
    assert log.columns() == ["epoch", "b", "a"]
    log.columns()
    del log.rows[1:]   # the same list, fewer rows than were read: read whole again
    assert log.columns() == ["epoch", "b"]
