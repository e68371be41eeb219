"""Report sections for a run folder: learning curves, per-class metrics and the confusion
matrix, the worst-predicted test examples (images with their true and predicted labels), the
health events on a timeline and the per-layer gradient heatmap. Everything is read through the
public :class:`archlab.train.Run` and the health monitor's files; a missing or unreadable piece
becomes a note, never a traceback."""

from __future__ import annotations

import io
import math
import tempfile
from html import escape
from pathlib import Path
from typing import Any

from .page import Page, Raw, Section, image_html


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png_of(fig, margins: dict | None = None) -> bytes:
    """PNG bytes of a figure. ``margins`` (subplots_adjust) fixes the layout, which is several
    times cheaper than tight_layout's text measuring; without them tight_layout is used."""
    plt = _pyplot()
    buf = io.BytesIO()
    if margins:
        fig.subplots_adjust(**margins)
    else:
        fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def curves_png(series: list[tuple[str, Any]], metric: str | None, title: str) -> bytes | None:
    """Learning curves of one or more runs overlaid: loss (train solid, validation dashed) and
    the validation quality metric, per epoch. ``series``: (label, RunFigures)."""
    series = [(lab, r) for lab, r in series if r is not None and r.curves]
    if not series:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, r) in enumerate(series):
        c = colours[i % len(colours)]
        for key, style in (("train_loss", "-"), ("val_loss", "--")):
            ys = r.curves.get(key)
            if ys:
                axes[0].plot(range(1, len(ys) + 1), ys, style, color=c, marker="." if len(ys) < 30 else None,
                             label=f"{label} {key.split('_')[0]}")
        key = f"val_{metric}" if metric else None
        if key and r.curves.get(key):
            ys = r.curves[key]
            axes[1].plot(range(1, len(ys) + 1), ys, "-", color=c, marker="." if len(ys) < 30 else None,
                         label=label)
    axes[0].set_title("loss (solid: train, dashed: validation)", fontsize=9)
    axes[1].set_title(f"validation {metric or 'metric'}", fontsize=9)
    from matplotlib.ticker import MaxNLocator

    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    return png_of(fig, {"left": 0.07, "right": 0.98, "bottom": 0.14, "top": 0.84, "wspace": 0.22})


def confusion_png(confusion: list[list[int]], classes: list[str], title: str) -> bytes:
    import numpy as np

    plt = _pyplot()
    cm = np.asarray(confusion, dtype=float)
    k = len(cm)
    fig, ax = plt.subplots(figsize=(min(7.5, 1.6 + 0.45 * k), min(6.5, 1.2 + 0.42 * k)))
    rows = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    im = ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    if k <= 20:
        for i in range(k):
            for j in range(k):
                if cm[i, j]:
                    ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if rows[i, j] > 0.5 else "black")
    names = classes if len(classes) == k else [str(i) for i in range(k)]
    ax.set_xticks(range(k), names, fontsize=7, rotation=90 if k > 10 else 0)
    ax.set_yticks(range(k), names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of the true class")
    return png_of(fig, {"left": 0.12, "right": 0.92, "bottom": 0.12, "top": 0.93})


def worst_examples(run: Any, count: int = 12) -> tuple[list[dict], str | None]:
    """The test examples the run's model gets most wrong (highest cross entropy), with their
    images as PNG bytes. Returns (examples, note); note says why there are none."""
    import numpy as np
    import torch
    from PIL import Image

    info = run.data_info
    if info.get("task") != "classification":
        return [], "worst-predicted examples are shown for classification runs"
    shape = tuple(info.get("sample_shape") or ())
    if not (len(shape) == 2 or (len(shape) == 3 and shape[0] in (1, 3))):
        return [], f"inputs of shape {shape} are not images: no example pictures"
    from ..train.data import DataSpec, load_data

    arrays = load_data(DataSpec(**info["spec"]))
    idx = torch.as_tensor(run.splits.test, dtype=torch.int64)
    if len(idx) == 0:
        return [], "the run has no test split"
    x, y = arrays.x[idx], arrays.y[idx]
    probs = run.predict(x)["probabilities"]
    p_true = probs[torch.arange(len(y)), y].clamp_min(1e-12)
    worst = torch.argsort(p_true)[:count].tolist()  # lowest probability of the true class first
    classes = [str(c) for c in info.get("classes") or []]
    out = []
    for i in worst:
        img = x[i].float()
        img = img.reshape(shape[-2], shape[-1]) if (len(shape) == 2 or shape[0] == 1) else img.permute(1, 2, 0)
        lo, hi = float(img.min()), float(img.max())
        arr = ((img - lo) / (hi - lo if hi > lo else 1.0) * 255).clamp(0, 255).to(torch.uint8).numpy()
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG")
        pred = int(probs[i].argmax())
        out.append({"index": int(idx[i]), "true": _name(classes, int(y[i])), "predicted": _name(classes, pred),
                    "probability": float(probs[i, pred]), "p_true": float(p_true[i]), "png": buf.getvalue()})
    return out, None


def _name(classes: list[str], c: int) -> str:
    return classes[c] if c < len(classes) else str(c)


def examples_html(examples: list[dict]) -> str:
    cells = []
    for e in examples:
        wrong = e["true"] != e["predicted"]
        alt = f"test sample {e['index']}"
        cells.append(f'<figure>{image_html(e["png"], alt)}<figcaption>'
                     f'#{e["index"]}<br>true <b>{escape(e["true"])}</b><br>'
                     f'<span class="{"wrong" if wrong else ""}">predicted <b>{escape(e["predicted"])}'
                     f'</b> ({e["probability"]:.2f})</span></figcaption></figure>')
    return f'<div class="examples">{"".join(cells)}</div>'


def health_timeline_png(health: Path, events: list[dict], title: str) -> bytes | None:
    """Per-step training loss (health/loss.csv) with every health event marked at its step."""
    import csv

    plt = _pyplot()
    steps, losses = [], []
    f = health / "loss.csv"
    if f.exists():
        with open(f, newline="") as fh:
            for row in csv.DictReader(fh):
                try:
                    steps.append(int(row["step"]))
                    losses.append(float(row["loss"]))
                except (KeyError, ValueError):
                    continue
    if not steps and not events:
        return None
    fig, ax = plt.subplots(figsize=(10, 3.2))
    if steps:
        ax.plot(steps, losses, lw=0.8, color="#495057", label="training loss per step")
    detectors = sorted({e.get("detector", "?") for e in events})
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, det in enumerate(detectors):
        xs = [e.get("step", 0) for e in events if e.get("detector", "?") == det]
        for x in xs:
            ax.axvline(x, color=colours[i % len(colours)], lw=1.2, alpha=0.8)
        ax.plot([], [], color=colours[i % len(colours)], lw=2, label=f"{det} ({len(xs)})")
    finite = [v for v in losses if math.isfinite(v) and v > 0]
    if finite and max(finite) / min(finite) > 100:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title + (" (no health events)" if not events else ""), fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
    ax.grid(alpha=0.3)
    return png_of(fig, {"left": 0.07, "right": 0.98, "bottom": 0.16, "top": 0.89})


def health_plots(health: Path, label: str) -> tuple[list[tuple[bytes, str, str]], str | None]:
    """The diagnostics' own plots (the same as ``archlab diagnose``): the per-layer gradient
    heatmap and the dead/saturated units, as (png, alt, caption); or a note why there are none."""
    try:
        from ..diagnose.state import HealthState
        from ..diagnose.summary import plot_dead_units, plot_grad_heatmap

        state = HealthState.load(health)
        out = []
        with tempfile.TemporaryDirectory() as tmp:
            path = plot_grad_heatmap(state, Path(tmp) / "grad.png", label)
            if path:
                out.append((path.read_bytes(), "gradient heatmap",
                            "log10 gradient norm per layer over the sampled steps"))
            path = plot_dead_units(state, Path(tmp) / "dead.png", label)
            if path:
                out.append((path.read_bytes(), "dead units", "never-active ReLU units and saturated "
                            "sigmoid/tanh outputs per layer over the sampled steps"))
        return out, (None if out else "no per-layer samples recorded")
    except FileNotFoundError:
        return None, "no health record in this run (trained with --no-health?)"
    except Exception as exc:  # noqa: BLE001 - an older or foreign health record is a note
        return None, f"the health record cannot be read ({type(exc).__name__}: {exc})"


def add_run_sections(page: Page, run: Any, figures: Any, label: str, examples: bool = True) -> None:
    """Run overview, learning curves, per-class metrics, confusion matrix, worst examples,
    health timeline and gradient heatmap."""
    s = page.section("Run")
    rows = [["run folder", str(run.path)], ["data", figures.data], ["task", figures.task],
            ["seed", figures.seed], ["epochs", figures.epochs], ["best epoch", figures.best_epoch],
            [f"best validation {figures.metric}", figures.best_val],
            ["training wall time (s)", figures.wall_seconds]]
    rows += [[f"test {k}", v] for k, v in figures.test.items()]
    s.table(["", "value"], rows, sortable=False)
    png = curves_png([(label, figures)], figures.metric, f"{label}: learning curves")
    sec = page.section("Learning curves")
    if png:
        sec.image(png, f"learning curves of {label}", "per epoch, from metrics.csv")
    else:
        sec.note("no metrics.csv rows: the run did not finish an epoch")
    if figures.per_class or figures.confusion:
        sec = page.section("Per-class metrics")
        if figures.per_class:
            names = figures.classes if len(figures.classes) == len(figures.per_class) else \
                [str(i) for i in range(len(figures.per_class))]
            counts = [sum(r) for r in figures.confusion] if figures.confusion else [None] * len(names)
            sec.table(["class", "accuracy" if figures.task == "classification" else "IoU", "test samples"],
                      [[n, v, c] for n, v, c in zip(names, figures.per_class, counts, strict=False)])
        if figures.confusion:
            sec.image(confusion_png(figures.confusion, figures.classes, f"{label}: test confusion matrix"),
                      "confusion matrix", "rows: true class, columns: predicted (test split, best epoch)")
    if examples:
        sec = page.section("Worst-predicted test examples")
        try:
            found, note = worst_examples(run)
        except Exception as exc:  # noqa: BLE001 - missing weights or data: a note, not a crash
            found, note = [], f"cannot predict with this run ({type(exc).__name__}: {exc})"
        if found:
            sec.note("the test samples with the lowest probability of their true class")
            sec.html(examples_html(found))
        else:
            sec.note(note or "none")
    health = Path(run.path) / "health"
    sec = page.section("Training health")
    if figures.health_recorded:
        if figures.health:
            sec.table(["step", "detector", "message"],
                      [[e.get("step"), e.get("detector"), Raw(escape(str(e.get("message", ""))),
                                                              str(e.get("message", "")))]
                       for e in figures.health])
        else:
            sec.html('<p><span class="pill ok">healthy</span> the health monitor raised no event</p>')
        png = health_timeline_png(health, figures.health, f"{label}: health events")
        if png:
            sec.image(png, "health events timeline", "training loss per step; vertical lines: health "
                      "events at the step they were raised")
        plots, note = health_plots(health, label)
        for png, alt, caption in plots:
            sec.image(png, alt, caption)
        if note:
            sec.note(note)
    else:
        sec.note("no health record in this run (trained with --no-health, or an older archlab)")


__all__ = ["Section", "add_run_sections", "confusion_png", "curves_png", "worst_examples"]
