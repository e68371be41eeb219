"""After training: ``archlab diagnose RUN``, the run's health in words and pictures.

Reads what the health monitor wrote in ``RUN/health/`` (and the trainer's ``RUN/metrics.csv``
when present) and returns a :class:`Diagnosis`: every verdict with its step, layers, evidence and
fixes, and PNG plots (matplotlib, Agg backend: no display needed):

* ``loss.png``: per-step training loss (raw and smoothed) and per-epoch validation loss, plus
  the trainer's per-epoch metrics on a second panel when ``metrics.csv`` exists;
* ``grad_norm_heatmap.png``: log10 gradient norm per layer (rows, forward order) over the
  sampled steps (columns);
* ``dead_units.png``: fraction of never-active units per ReLU layer over the sampled steps, and
  saturation per sigmoid/tanh layer.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UsageError
from .state import HealthState, read_events


@dataclass
class Diagnosis:
    run: str
    steps: int
    samples: int
    overhead: float
    events: list[dict] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)
    nonfinite: dict | None = None

    @property
    def healthy(self) -> bool:
        return not self.events

    @property
    def causes(self) -> list[dict]:
        """The verdicts that name why (events written before the verdict hierarchy count as
        causes)."""
        return [e for e in self.events if e.get("kind", "cause") == "cause"]

    @property
    def symptoms(self) -> list[dict]:
        """The loss-curve verdicts (what, not why); ``explained_by`` names the causes found."""
        return [e for e in self.events if e.get("kind") == "symptom"]

    def to_dict(self) -> dict:
        return {"run": self.run, "healthy": self.healthy, "steps": self.steps,
                "causes": [e["detector"] for e in self.causes],
                "unexplained_symptoms": [e["detector"] for e in self.symptoms
                                         if not e.get("explained_by")],
                "samples": self.samples,
                "monitor_overhead": self.overhead if math.isfinite(self.overhead) else None,
                "nonfinite": self.nonfinite, "events": self.events, "plots": self.plots}


def health_folder(run: str | Path) -> Path:
    """``RUN/health`` or ``RUN`` itself when it already is a health folder."""
    path = Path(run)
    for candidate in (path / "health", path):
        if (candidate / "series.npz").exists():
            return candidate
    if not path.exists():
        raise UsageError(f"no such run folder '{run}'", fix="give a folder made by `archlab train`")
    raise UsageError(f"'{run}' holds no health record (expected {path / 'health' / 'series.npz'})",
                     source=str(run),
                     fix="train with the health monitor on (the default of `archlab train`), or "
                         "add archlab.diagnose.HealthMonitor to your Lightning callbacks")


def diagnose(run: str | Path, *, plots: bool = True, out: str | Path | None = None) -> Diagnosis:
    folder = health_folder(run)
    state = HealthState.load(folder)
    monitor = json.loads((folder / "monitor.json").read_text()) if (folder / "monitor.json").exists() else {}
    d = Diagnosis(str(run), len(state.losses), len(state.sample_steps),
                  float(monitor.get("measured_overhead") or math.nan), read_events(folder),
                  nonfinite=state.nonfinite)
    d.events.sort(key=lambda e: e["step"])
    if plots:
        target = Path(out) if out else folder / "plots"
        target.mkdir(parents=True, exist_ok=True)
        metrics = _read_metrics(folder.parent / "metrics.csv")
        label = run_label(folder.parent)
        d.plots = [str(p) for p in (plot_loss(state, metrics, target / "loss.png", label),
                                    plot_grad_heatmap(state, target / "grad_norm_heatmap.png", label),
                                    plot_dead_units(state, target / "dead_units.png", label)) if p]
    return d


def run_label(run: Path) -> str:
    """'mnist_cnn (width=32, hidden=128, classes=10)': the run's design and its variables, for
    plot titles (two variants' plots can be told apart); '' when the run has no design.yaml."""
    import yaml

    f = Path(run) / "design.yaml"
    try:
        data = yaml.safe_load(f.read_text()) if f.exists() else None
    except (OSError, yaml.YAMLError):
        return ""
    if not isinstance(data, dict):
        return ""
    from ..analysis.plot import design_label

    return design_label(str(data.get("name") or Path(run).name), data.get("variables") or {})


def _titled(title: str, label: str) -> str:
    return f"{label}: {title}" if label else title


def _read_metrics(path: Path) -> dict[str, list[float]]:
    """The trainer's per-epoch metrics.csv as columns of numbers (missing: empty)."""
    if not path.exists():
        return {}
    cols: dict[str, list[float]] = {}
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            for k, v in row.items():
                try:
                    cols.setdefault(k, []).append(float(v))
                except (TypeError, ValueError):
                    cols.setdefault(k, []).append(math.nan)
    return cols


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers and CI
    import matplotlib.pyplot as plt

    return plt


def plot_loss(state: HealthState, metrics: dict, path: Path, label: str = "") -> Path | None:
    losses = state.loss_array()
    if losses.size == 0:
        return None
    plt = _pyplot()
    skip = ("epoch", "step", "lr", "seconds", "time")
    extra = [k for k in metrics if k not in skip and "loss" not in k
             and any(math.isfinite(v) for v in metrics[k])]
    fig, axes = plt.subplots(1, 2 if extra else 1, figsize=(11 if extra else 6.5, 4), squeeze=False)
    ax = axes[0][0]
    steps = np.arange(losses.size)
    finite = np.isfinite(losses)
    ax.plot(steps[finite], losses[finite], lw=0.6, alpha=0.5, label="train loss (per step)")
    w = max(2, losses.size // 50)
    if finite.all() and losses.size > 2 * w:
        smooth = np.convolve(losses, np.ones(w) / w, mode="valid")
        ax.plot(steps[w - 1:], smooth, lw=1.6, label=f"train loss ({w}-step mean)")
    if state.validation:
        ax.plot([v["step"] for v in state.validation], [v["val_loss"] for v in state.validation],
                "o-", label="validation loss")
    if state.nonfinite:
        ax.axvline(state.nonfinite["step"], color="red", ls="--", label="first NaN/Inf")
    positive = losses[finite]
    if positive.size and positive.min() > 0 and positive.max() / positive.min() > 100:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(_titled("loss", label), fontsize=9)
    ax.legend(fontsize=8)
    if extra:
        ax2 = axes[0][1]
        epochs = metrics.get("epoch") or list(range(len(metrics[extra[0]])))
        for k in extra[:6]:
            ax2.plot(epochs[: len(metrics[k])], metrics[k], "o-", label=k)
        ax2.set_xlabel("epoch")
        ax2.set_title("metrics")
        ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_grad_heatmap(state: HealthState, path: Path, label: str = "") -> Path | None:
    g = state.array("grad_norm")
    if g.size == 0:
        return None
    plt = _pyplot()
    with np.errstate(divide="ignore", invalid="ignore"):
        img = np.log10(np.where(g > 0, g, np.nan)).T   # layers x samples
    n_layers = len(state.param_layers)
    fig, ax = plt.subplots(figsize=(9, max(2.5, 0.25 * n_layers + 1.2)))
    finite = img[np.isfinite(img)]
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (-1, 1)
    im = ax.imshow(np.nan_to_num(img, nan=vmin - 1, posinf=vmax, neginf=vmin - 1), aspect="auto",
                   interpolation="nearest", cmap="viridis", vmin=vmin - 1, vmax=vmax)
    ax.set_yticks(range(n_layers))
    ax.set_yticklabels(state.param_layers, fontsize=7)
    ticks = np.linspace(0, len(state.sample_steps) - 1, min(8, len(state.sample_steps))).astype(int)
    ax.set_xticks(ticks)
    ax.set_xticklabels([state.sample_steps[i] for i in ticks])
    ax.set_xlabel("step (sampled)")
    ax.set_title(_titled("log10 gradient norm per layer (dark: zero or no gradient)", label), fontsize=9)
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_dead_units(state: HealthState, path: Path, label: str = "") -> Path | None:
    dead, sat = state.array("dead_fraction"), state.array("saturation")
    cols = [i for i in range(len(state.act_layers))
            if (dead.size and np.any(np.isfinite(dead[:, i]))) or (sat.size and np.any(np.isfinite(sat[:, i])))]
    if not cols:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for i in cols:
        name = state.act_layers[i]
        series, label = (dead[:, i], "dead") if np.any(np.isfinite(dead[:, i])) else (sat[:, i], "saturated")
        ax.plot(state.sample_steps, series, marker=".", label=f"{name} ({label})")
    ax.axhline(0.5, color="grey", ls=":", label="detector threshold 0.5")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("step (sampled)")
    ax.set_ylabel("fraction of units")
    ax.set_title(_titled("dead ReLU units / saturated sigmoid-tanh outputs per layer", label), fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
