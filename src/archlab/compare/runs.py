"""What a run folder tells a comparison, read through the public :class:`archlab.train.Run`:
test and best validation metrics, epochs, wall time, the learning curves, the health verdicts
(the health monitor's ``health/events.jsonl``), and when the run reached a target score.

Also ``archlab runs``: the listing of run folders under a folder.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ArchlabError

# a run file that cannot be read: missing, damaged, or from an older archlab (RunError)
UNREADABLE = (ArchlabError, OSError, ValueError)

# per task: the quality metric, and whether higher is better
QUALITY = {"classification": ("accuracy", "max"), "segmentation": ("mean_iou", "max"),
           "regression": ("mse", "min")}


@dataclass
class RunFigures:
    task: str | None = None
    metric: str | None = None          # the quality metric ('accuracy')
    mode: str = "max"                  # 'max': higher is better
    test: dict[str, float] = field(default_factory=dict)   # scalar test metrics
    best_val: float | None = None
    final_val: float | None = None
    best_epoch: int | None = None
    epochs: int = 0
    wall_seconds: float | None = None
    curves: dict[str, list[float]] = field(default_factory=dict)  # column -> per-epoch values
    seconds: list[float] = field(default_factory=list)    # cumulative training seconds per epoch
    health: list[dict] = field(default_factory=list)      # verdicts (events.jsonl)
    health_recorded: bool = False
    data: str | None = None
    seed: Any = None
    per_class: list[float] | None = None
    confusion: list[list[int]] | None = None
    classes: list[str] = field(default_factory=list)
    reached: dict[str, Any] | None = None  # {'epoch', 'seconds'} reaching the baseline's final val

    @property
    def quality(self) -> float | None:
        """Test metric when there is one, else the best validation score."""
        if self.metric and isinstance(self.test.get(self.metric), (int, float)):
            return float(self.test[self.metric])
        return self.best_val

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "metric": self.metric, "mode": self.mode, "test": self.test,
                "best_val": self.best_val, "final_val": self.final_val, "best_epoch": self.best_epoch,
                "epochs": self.epochs, "wall_seconds": self.wall_seconds, "data": self.data,
                "seed": self.seed, "quality": self.quality, "reached_baseline": self.reached,
                "health": {"recorded": self.health_recorded, "verdicts": len(self.health),
                           "detectors": sorted({e.get("detector", "?") for e in self.health})},
                "curves": self.curves}


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v))


def run_figures(run: Any) -> RunFigures:
    """Everything a comparison needs from one run; missing files give empty fields."""
    from ..diagnose import read_events

    r = RunFigures()
    summary: dict = {}
    info: dict = {}
    try:
        summary = run.summary
    except UNREADABLE:
        pass
    try:
        info = run.data_info
    except UNREADABLE:
        pass
    r.task = summary.get("task") or info.get("task")
    r.metric, r.mode = QUALITY.get(r.task or "", (None, "max"))
    r.data = summary.get("data") or info.get("source")
    r.seed = summary.get("seed")
    r.classes = [str(c) for c in info.get("classes") or []]
    test = summary.get("test") or {}
    r.test = {k: float(v) for k, v in test.items() if _finite(v)}
    r.per_class = test.get("per_class_accuracy") or test.get("per_class_iou")
    r.confusion = test.get("confusion")
    try:
        rows = run.metrics
    except UNREADABLE:
        rows = []
    r.epochs = len(rows)
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    for c in columns:
        if c in ("epoch", "lr", "seconds"):
            continue
        values = [row.get(c) for row in rows]
        r.curves[c] = [float(v) if _finite(v) else math.nan for v in values]
    total = 0.0
    for row in rows:
        total += float(row.get("seconds") or 0) if _finite(row.get("seconds")) else 0.0
        r.seconds.append(round(total, 3))
    key = f"val_{r.metric}" if r.metric else None
    vals = [v for v in r.curves.get(key, []) if not math.isnan(v)] if key else []
    if vals:
        r.final_val = vals[-1]
        r.best_val = max(vals) if r.mode == "max" else min(vals)
        r.best_epoch = summary.get("best_epoch")
    r.wall_seconds = summary.get("fit_seconds") or (r.seconds[-1] if r.seconds else None)
    health = Path(run.path) / "health"
    r.health_recorded = health.is_dir() and any(health.iterdir())
    try:
        r.health = read_events(health)
    except UNREADABLE:
        r.health = [{"detector": "unreadable", "step": 0, "message": "health/events.jsonl cannot be read"}]
    return r


def time_to_reach(r: RunFigures, target: float | None) -> dict[str, Any] | None:
    """The first epoch whose validation score reaches ``target`` (the baseline's final one), and
    the training seconds spent until then; None when it never does."""
    if target is None or not r.metric:
        return None
    for i, v in enumerate(r.curves.get(f"val_{r.metric}", [])):
        if math.isnan(v):
            continue
        if (v >= target) if r.mode == "max" else (v <= target):
            return {"epoch": i + 1, "seconds": r.seconds[i] if i < len(r.seconds) else None}
    return None


# ------------------------------------------------------------------------- archlab runs -----


def list_runs(folder: str | Path = "runs") -> list[dict[str, Any]]:
    """One row per run folder directly under ``folder`` (or ``folder`` itself when it is one):
    name, design, data, seed, best metric, date, git commit; problems instead of a traceback."""
    from .operands import is_run_folder

    root = Path(folder)
    candidates = [root] if is_run_folder(root) else sorted(p for p in root.iterdir() if p.is_dir()) \
        if root.is_dir() else []
    rows = []
    for p in candidates:
        if not is_run_folder(p):
            continue
        row: dict[str, Any] = {"run": str(p), "name": p.name, "design": None, "data": None,
                               "seed": None, "metric": None, "best": None, "test": None,
                               "epochs": None, "date": None, "commit": None, "problems": []}
        summary: dict = {}
        if not (p / "summary.json").exists():
            row["problems"].append("no summary.json: unfinished, or an older archlab")
        else:
            try:
                summary = json.loads((p / "summary.json").read_text())
                summary = summary if isinstance(summary, dict) else {}
            except UNREADABLE:
                row["problems"].append("summary.json cannot be read (damaged)")
        from ..train.run import Run

        try:
            fig = run_figures(Run(p))
        except Exception as exc:  # noqa: BLE001 - a broken folder is listed with its problem
            row["problems"].append(f"{type(exc).__name__}: {exc}")
            rows.append(row)
            continue
        code = summary.get("code") or {}
        row.update(design=summary.get("design") or _design_name(p), data=fig.data, seed=fig.seed,
                   metric=fig.metric, best=fig.best_val, test=fig.test.get(fig.metric or ""),
                   epochs=fig.epochs, date=summary.get("finished"),
                   commit=(code.get("git_commit") or "")[:10] or None if isinstance(code, dict) else None)
        rows.append(row)
    return rows


def _design_name(p: Path) -> str | None:
    import yaml

    f = p / "design.yaml"
    try:
        data = yaml.safe_load(f.read_text()) if f.exists() else None
    except (OSError, yaml.YAMLError):
        return None
    return data.get("name") if isinstance(data, dict) else None
