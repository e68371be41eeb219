"""The Pareto front of quality against a cost figure, and its plot.

A point is on the front when no other point is at least as good on both axes and better on one
(cost: lower is better; quality: per the metric's direction).
"""

from __future__ import annotations

import io
from dataclasses import dataclass


@dataclass
class Point:
    label: str
    cost: float
    quality: float
    front: bool = False

    def to_dict(self) -> dict:
        return {"label": self.label, "cost": self.cost, "quality": self.quality, "front": self.front}


def pareto_front(points: list[Point], higher_quality_is_better: bool = True) -> list[Point]:
    """Marks ``front`` on each point (in place) and returns the front sorted by cost."""
    sign = 1.0 if higher_quality_is_better else -1.0
    for p in points:
        p.front = not any(
            (q.cost <= p.cost and sign * q.quality >= sign * p.quality)
            and (q.cost < p.cost or sign * q.quality > sign * p.quality)
            for q in points if q is not p)
    return sorted((p for p in points if p.front), key=lambda p: p.cost)


def plot_pareto(points: list[Point], cost_label: str, quality_label: str, title: str,
                higher_quality_is_better: bool = True, baseline: str | None = None) -> bytes:
    """PNG bytes: every point labelled, the front joined and marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    front = pareto_front(points, higher_quality_is_better)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    others = [p for p in points if not p.front]
    ax.scatter([p.cost for p in others], [p.quality for p in others], color="#9aa5b1", s=36,
               label="dominated", zorder=2)
    ax.plot([p.cost for p in front], [p.quality for p in front], "-o", color="#d9480f", ms=7,
            label="Pareto front", zorder=3)
    for p in points:
        weight = "bold" if p.label == baseline else "normal"
        ax.annotate(p.label, (p.cost, p.quality), textcoords="offset points", xytext=(5, 5),
                    fontsize=8, fontweight=weight)
    ax.set_xlabel(cost_label + " (lower is better)")
    ax.set_ylabel(quality_label + (" (higher is better)" if higher_quality_is_better else
                                   " (lower is better)"))
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.subplots_adjust(left=0.14, right=0.97, bottom=0.13, top=0.91)  # tight_layout costs more
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()
