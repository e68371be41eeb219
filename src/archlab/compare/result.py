"""The :class:`Comparison` and its machine-readable forms: JSON (schema ``archlab.compare/1``,
documented in docs/compare.md) and CSV (one row per figure and operand)."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from typing import Any

from .diff import GraphDiff
from .figures import FIGURES, DesignFigures, change
from .operands import Operand
from .pareto import Point, pareto_front
from .runs import RunFigures

SCHEMA = "archlab.compare/1"

# figures read from runs: name -> (label, unit, direction)
RUN_FIGURES: dict[str, tuple[str, str, str]] = {
    "test_quality": ("test {metric}", "", "better"),
    "best_val_quality": ("best validation {metric}", "", "better"),
    "final_val_quality": ("final validation {metric}", "", "better"),
    "epochs": ("epochs run", "", ""),
    "wall_seconds": ("training wall time", "s", "lower"),
    "epochs_to_baseline": ("epochs to reach the baseline's final validation {metric}", "", "lower"),
    "seconds_to_baseline": ("seconds to reach the baseline's final validation {metric}", "s", "lower"),
    "health_verdicts": ("health verdicts", "", "lower"),
}

# the cost axes a Pareto plot may use
PARETO_COSTS = ("multiply_adds", "params", "latency_ms", "peak_training_bytes", "memory_access_bytes")


@dataclass
class Entry:
    """One operand with what was measured of it."""

    operand: Operand
    figures: DesignFigures | None = None
    run: RunFigures | None = None
    diff: GraphDiff | None = None          # against the baseline (None for the baseline)

    @property
    def label(self) -> str:
        return self.operand.label

    def value(self, name: str) -> float | int | None:
        if name in FIGURES:
            return self.figures.values.get(name) if self.figures else None
        r = self.run
        if r is None:
            return None
        reached = r.reached or {}
        return {"test_quality": r.test.get(r.metric or "") if r.metric else None,
                "best_val_quality": r.best_val, "final_val_quality": r.final_val,
                "epochs": r.epochs or None, "wall_seconds": r.wall_seconds,
                "epochs_to_baseline": reached.get("epoch"),
                "seconds_to_baseline": reached.get("seconds"),
                "health_verdicts": len(r.health) if r.health_recorded else None}.get(name)


@dataclass
class Comparison:
    """A baseline (``entries[0]``) and its variants, figure by figure."""

    entries: list[Entry]
    notes: list[str] = field(default_factory=list)
    batch: int | None = None
    cost: str = "multiply_adds"
    input_dependent_comparable: bool = True  # False when input shapes differ

    @property
    def baseline(self) -> Entry:
        return self.entries[0]

    @property
    def metric(self) -> str | None:
        return next((e.run.metric for e in self.entries if e.run and e.run.metric), None)

    @property
    def higher_is_better(self) -> bool:
        mode = next((e.run.mode for e in self.entries if e.run and e.run.metric), "max")
        return mode == "max"

    def figure_names(self) -> list[str]:
        """Figures with a value for at least one operand, in table order."""
        names = [n for n in FIGURES if any(e.value(n) is not None for e in self.entries)]
        names += [n for n in RUN_FIGURES if any(e.value(n) is not None for e in self.entries)]
        return names

    def describe(self, name: str) -> tuple[str, str, str]:
        """(label, unit, better) of a figure; better is 'lower', 'higher' or ''."""
        if name in FIGURES:
            label, unit, better, _ = FIGURES[name]
            return label, unit, better
        label, unit, better = RUN_FIGURES[name]
        if better == "better":
            better = "higher" if self.higher_is_better else "lower"
        return label.format(metric=self.metric or "score"), unit, better

    def comparable(self, name: str) -> bool:
        return self.input_dependent_comparable or not (name in FIGURES and FIGURES[name][3])

    def rows(self) -> list[dict[str, Any]]:
        """One row per figure: values, ratio (x) and percent change against the baseline."""
        out = []
        for name in self.figure_names():
            label, unit, better = self.describe(name)
            base = self.baseline.value(name)
            row = {"name": name, "label": label, "unit": unit, "better": better,
                   "values": {}, "ratio": {}, "percent": {}}
            for e in self.entries:
                v = e.value(name)
                row["values"][e.label] = v
                ratio, pct = change(base, v) if self.comparable(name) else (None, None)
                row["ratio"][e.label] = None if ratio is None else round(ratio, 4)
                row["percent"][e.label] = None if pct is None else round(pct, 2)
            out.append(row)
        return out

    def pareto(self, cost: str | None = None) -> list[Point]:
        """(cost, quality) points of the operands that have both, with the front marked."""
        cost = cost or self.cost
        points = []
        for e in self.entries:
            c = e.value(cost)
            q = e.run.quality if e.run else None
            if c is not None and q is not None and not math.isnan(q):
                points.append(Point(e.label, float(c), float(q)))
        pareto_front(points, self.higher_is_better)
        return points

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "baseline": self.baseline.label,
            "batch": self.batch,
            "operands": [{
                "label": e.label, "kind": e.operand.kind, "spec": e.operand.spec(),
                "design": e.operand.design.name if e.operand.design is not None else None,
                "source": e.operand.design.source if e.operand.design is not None else None,
                "run": str(e.operand.run.path) if e.operand.run is not None else None,
                "variables": e.operand.variables,
                "input": list(e.operand.design.input_shape) if e.operand.design is not None else None,
                "task": e.operand.task, "problems": e.operand.problems,
            } for e in self.entries],
            "figures": self.rows(),
            "stages": {e.label: e.figures.stages for e in self.entries if e.figures},
            "diff": {e.label: e.diff.to_dict() for e in self.entries if e.diff is not None},
            "runs": {e.label: e.run.to_dict() if e.run else None for e in self.entries},
            "findings": {e.label: [f.to_dict() for f in e.figures.findings]
                         for e in self.entries if e.figures},
            "pareto": {"cost": self.cost, "quality": self.metric,
                       "higher_is_better": self.higher_is_better,
                       "points": [p.to_dict() for p in self.pareto()]},
            "notes": self.notes,
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(_finite(self.to_dict()), indent=indent, default=_plain, allow_nan=False)

    def to_csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["figure", "operand", "value", "ratio", "percent", "unit", "better"])
        for row in self.rows():
            for e in self.entries:
                v = row["values"][e.label]
                w.writerow([row["name"], e.label, "" if v is None else v,
                            _blank(row["ratio"][e.label]), _blank(row["percent"][e.label]),
                            row["unit"], row["better"]])
        return buf.getvalue()


def _blank(v: Any) -> Any:
    return "" if v is None else v


def _finite(v: Any) -> Any:
    """NaN and infinities -> None: JSON has no NaN."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite(x) for x in v]
    return v


def _plain(v: Any) -> Any:
    if isinstance(v, tuple):
        return list(v)
    return str(v)
