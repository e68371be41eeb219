"""Report sections for a comparison: the figures against the baseline, the Pareto plot, the
structural diffs, learning curves overlaid, health verdicts and per-class metrics side by side,
and each operand's design (diagram, stage costs, findings) side by side."""

from __future__ import annotations

from html import escape
from typing import Any

from .design import design_block_html
from .page import Page, Raw, image_html
from .run_page import confusion_png, curves_png


def _change_cell(ratio: float | None, pct: float | None, better: str) -> Raw:
    if ratio is None:
        return Raw("-", "")
    css = ""
    if better and abs(pct or 0) > 0.05:
        good = (pct < 0) if better == "lower" else (pct > 0)
        css = "better" if good else "worse"
    return Raw(f'<span class="{css}">{ratio:.3g}x ({pct:+.1f}%)</span>', repr(ratio))


def add_comparison_sections(page: Page, c: Any, designs: bool = True) -> None:
    from ..compare.figures import human
    from ..compare.pareto import plot_pareto
    from ..compare.result import PARETO_COSTS

    base = c.baseline.label
    s = page.section("Figures against the baseline")
    s.note(f"baseline: {base}. Each cell: the value, then its ratio to the baseline and the change "
           "in percent (green: better, red: worse). Counts are per sample; parameters as PyTorch "
           "counts them; multiply-adds: FLOPs = 2 x multiply-adds.")
    columns = ["figure"] + [e.label for e in c.entries]
    rows = []
    for row in c.rows():
        cells: list[Any] = [row["label"] + (f" ({row['better']} is better)" if row["better"] else "")]
        for e in c.entries:
            v = row["values"][e.label]
            text = escape(human(v, row["unit"]))
            if e is not c.baseline and v is not None:
                ch = _change_cell(row["ratio"][e.label], row["percent"][e.label], row["better"])
                text += f"<br><small>{ch.html}</small>"
            cells.append(Raw(text, "" if v is None else repr(float(v))))
        rows.append(cells)
    s.table(columns, rows)
    for note in c.notes:
        s.note(note)

    points = c.pareto()
    if points:
        s = page.section("Pareto front")
        label = {"multiply_adds": "multiply-adds per sample", "params": "parameters",
                 "latency_ms": "latency (ms)", "peak_training_bytes": "peak training memory (bytes)",
                 "memory_access_bytes": "memory access per sample (bytes)"}
        cells = []
        for cost in [c.cost] + [k for k in PARETO_COSTS if k != c.cost]:
            pts = c.pareto(cost)
            if not pts or len(cells) == 3:
                continue
            png = plot_pareto(pts, label[cost], c.metric or "quality",
                              f"{c.metric or 'quality'} against {label[cost]}", c.higher_is_better, base)
            on = ", ".join(p.label for p in pts if p.front)
            cells.append((f"against {label[cost]}",
                          image_html(png, f"Pareto plot against {cost}", f"front (orange): {on}")))
        s.grid(cells)

    diffs = [e for e in c.entries if e.diff is not None]
    if diffs:
        s = page.section("Structural diff against the baseline")
        for e in diffs:
            d = e.diff
            var = ", ".join(f"{k}: {a} -> {b}" for k, (a, b) in d.variables.items())
            s.html(f"<h4>{escape(e.label)}: {escape(d.summary())}</h4>")
            if var:
                s.note(f"variables: {var}")
            if d.changes:
                s.table(["stage", "node", "change", "detail"],
                        [[ch.stage, ch.path, ch.kind, ch.detail] for ch in d.changes], css="long")

    runs = [(e.label, e.run) for e in c.entries if e.run is not None]
    if runs:
        s = page.section("Training side by side")
        png = curves_png(runs, c.metric, "learning curves, overlaid")
        if png:
            s.image(png, "learning curves overlaid", "per epoch; same seed, split and options "
                    "when trained by archlab compare --data")
        health_rows = []
        for lab, r in runs:
            if not r.health_recorded:
                verdict = Raw('<span class="pill">not recorded</span>', "")
            elif not r.health:
                verdict = Raw('<span class="pill ok">healthy</span>', "0")
            else:
                dets = sorted({e.get("detector", "?") for e in r.health})
                verdict = Raw(f'<span class="pill bad">{len(r.health)} event(s)</span> '
                              + escape(", ".join(dets)), str(len(r.health)))
            reached = r.reached or {}
            health_rows.append([lab, r.quality, r.best_val, r.epochs, r.wall_seconds,
                                reached.get("epoch"), verdict])
        s.table(["operand", f"test {c.metric}", f"best validation {c.metric}", "epochs",
                 "wall time (s)", "epoch reaching the baseline's final validation score",
                 "health"], health_rows)
        per_class = [(lab, r) for lab, r in runs if r.per_class]
        if per_class:
            names = per_class[0][1].classes or [str(i) for i in range(len(per_class[0][1].per_class))]
            rows = [[n] + [r.per_class[i] if i < len(r.per_class) else None for _, r in per_class]
                    for i, n in enumerate(names)]
            s.html("<h4>Per-class test metrics</h4>")
            s.table(["class"] + [lab for lab, _ in per_class], rows)
        confusions = [(lab, r) for lab, r in runs if r.confusion][:6]
        if confusions:
            s.html("<h4>Confusion matrices (test split)</h4>")
            s.grid([(lab, image_html(confusion_png(r.confusion, r.classes, lab), f"confusion matrix of {lab}"))
                    for lab, r in confusions])

    if designs:
        s = page.section("Designs side by side")
        s.note("each operand's architecture, findings and costs; click a stage label to collapse it")
        cells = []
        for i, e in enumerate(c.entries):
            if e.operand.design is None or e.figures is None:
                cells.append((e.label, '<p class="note">no design: '
                              + escape("; ".join(e.operand.problems) or "not a design") + "</p>"))
                continue
            cells.append((e.label + (" (baseline)" if i == 0 else ""),
                          design_block_html(e.operand.design, e.figures, f"d{i}-",
                                            e.operand.variables, cost_plot=False, compact=True)))
        s.grid(cells, "wide")
