"""Report sections for a design: the architecture diagram, the per-node table, cost bars per
stage, the review findings linked to their nodes, and the cost plot of ``archlab analyze``."""

from __future__ import annotations

import tempfile
from collections import Counter
from html import escape
from pathlib import Path
from typing import Any

from .diagram import node_ids, to_svg
from .page import Page, Raw, Section, bar_html, image_html


def _shape(shape) -> str:
    return "x".join(map(str, shape)) if shape else "()"


def _fragment(build) -> str:
    s = Section("", "")
    build(s)
    return "".join(s.parts)


def diagram_html(design: Any, findings: list | None = None, prefix: str = "",
                 collapsed: bool | None = None) -> str:
    """The diagram with its tools (collapse/expand all, colour legend). Big graphs (over 40
    nodes) open with their stages collapsed."""
    per_node = Counter(f.node for f in findings or [] if f.node)
    svg = to_svg(design, dict(per_node), interactive=True, prefix=prefix)
    if collapsed is None:
        collapsed = len(design.graph.nodes) > 40
    return (f'<div class="diagram-block" data-collapsed="{1 if collapsed else 0}">'
            '<div class="diagram-tools"><button class="collapse-all">collapse all stages</button>'
            '<button class="expand-all">expand all</button><span>click a stage label to collapse '
            'or expand it · fill: multiply-adds <span class="legend"></span> · round ends: merges · '
            '<span style="color:#1c7ed6">dashed blue</span>: skip connections · red dot: review '
            f'findings</span></div><div class="diagram-wrap">{svg}</div></div>')


def node_table_html(design: Any, analysis: Any = None, findings: list | None = None) -> str:
    """Sortable per-node table: path, block, from (its inputs), output shape, parameters,
    multiply-adds, memory access, findings. Rows carry the diagram's node ids."""
    g = design.graph
    ids = node_ids(g)
    per_node = Counter(f.node for f in findings or [] if f.node)
    access = {r.path: r.memory_access_bytes for r in analysis.nodes} if analysis is not None else {}
    rows, nodes = [], []
    for n in g.nodes:
        rows.append([n.path, n.block, ", ".join(n.inputs), Raw(_shape(n.output_shape),
                     str(len(n.output_shape))), n.param_count, n.multiply_adds,
                     access.get(n.path), per_node.get(n.path, 0)])
        nodes.append(ids[n.path])
    columns = ["node", "block", "from", "output", "params", "multiply-adds", "memory access (B)",
               "findings"]
    return _fragment(lambda s: s.table(columns, rows, row_nodes=nodes, css="nodes"))


def stage_bars_html(analysis: Any) -> str:
    """Cost per stage as bars (CSS, no image): multiply-adds, parameters, memory access."""
    stages = [s for s in analysis.stages if s.path not in ("(input)",)]
    top = {k: max([getattr(s, k) for s in stages] + [1]) for k in
           ("multiply_adds", "params", "memory_access_bytes")}
    rows = []
    for s in stages:
        rows.append([s.path or "(top level)",
                     Raw(bar_html(s.multiply_adds / top["multiply_adds"]) +
                         f"<small>{s.multiply_adds:,}</small>", str(s.multiply_adds)),
                     Raw(bar_html(s.params / top["params"], "params") + f"<small>{s.params:,}</small>",
                         str(s.params)),
                     Raw(bar_html(s.memory_access_bytes / top["memory_access_bytes"], "mem") +
                         f"<small>{s.memory_access_bytes:,} B</small>", str(s.memory_access_bytes))])
    return _fragment(lambda s: s.table(["stage", "multiply-adds", "parameters", "memory access"],
                                       rows, css="bars"))


def findings_html(design: Any, findings: list) -> str:
    """Review findings, each linked to its node in the diagram and the table."""
    if not findings:
        return '<p class="note">no review findings: every registered guideline rule passed.</p>'
    ids = node_ids(design.graph)
    items = []
    for f in findings:
        node = ids.get(f.node)
        where = (f'<a href="#" data-node="{node}">{escape(f.node)}</a>' if node else
                 escape(f.node or "(whole network)"))
        items.append(f'<li><span class="sev-{escape(f.severity)}">{escape(f.severity)}</span> '
                     f"<code>{escape(f.rule)}</code> at {where}: {escape(f.message)} "
                     f"<br><small>fix: {escape(f.fix)} · {escape(f.guideline)}</small></li>")
    return f'<ul class="findings">{"".join(items)}</ul>'


def cost_plot_png(analysis: Any, variables: dict | None = None) -> bytes | None:
    """The cost plot of ``archlab analyze --plot`` (the same function), as PNG bytes."""
    from ..analysis.plot import plot_cost

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cost.png"
        plot_cost(analysis, path, "stage" if len(analysis.nodes) > 60 else "block", variables=variables)
        return path.read_bytes()


def design_block_html(design: Any, figures: Any, prefix: str = "", variables: dict | None = None,
                      collapsed: bool | None = None, cost_plot: bool = True,
                      compact: bool = False) -> str:
    """Everything about one design in one linked block (diagram, table, bars, findings)."""
    a, findings = figures.analysis, figures.findings
    css = "design-block" if not compact else "design-block compact"
    parts = [f'<div class="{css}"><div class="two"><div>', "<h3>Architecture</h3>",
             diagram_html(design, findings, prefix, collapsed), "</div><div>",
             "<h3>Review findings</h3>", findings_html(design, findings),
             "<h3>Cost per stage</h3>", stage_bars_html(a), "</div></div>",
             "<h3>Nodes</h3>", node_table_html(design, a, findings)]
    if cost_plot:
        png = cost_plot_png(a, variables)
        if png:
            parts += ["<h3>Cost per block</h3>",
                      image_html(png, f"cost plot of {design.name}", "multiply-adds, memory access "
                                 "and saved activations per block (archlab analyze --plot)")]
    parts.append("</div>")
    return "".join(parts)


def overview_rows(design: Any, figures: Any) -> list[list[Any]]:
    from ..compare.figures import FIGURES, human

    rows = [["design", design.name], ["source", design.source],
            ["variables", ", ".join(f"{k}={v}" for k, v in design.variables.items()) or "-"],
            ["input", _shape(design.input_shape)],
            ["outputs", ", ".join(_shape(s) for s in design.graph.output_shapes)],
            ["nodes", len(design.graph.nodes)]]
    for name, v in figures.values.items():
        if v is not None:
            label, unit, _, _ = FIGURES[name]
            rows.append([label, Raw(escape(human(v, unit)) + (f" <small>({v:,})</small>"
                                                            if isinstance(v, int) and v >= 1000 else ""),
                                    str(v))])
    return rows


def headline(design: Any, figures: Any) -> list[tuple[str, str]]:
    from ..compare.figures import FIGURES, human

    items = [("input", _shape(design.input_shape)),
             ("output", ", ".join(_shape(s) for s in design.graph.output_shapes)),
             ("nodes", str(len(design.graph.nodes)))]
    for name, v in figures.values.items():
        if v is not None and not name.startswith("findings_"):
            label, unit, _, _ = FIGURES[name]
            items.append((label, human(v, unit)))
    counts = ", ".join(f"{figures.values.get('findings_' + s)} {s}" for s in ("error", "warning", "info")
                       if figures.values.get("findings_" + s) is not None)
    if counts:
        items.append(("review findings", counts))
    return items


def add_design_sections(page: Page, design: Any, figures: Any, variables: dict | None = None,
                        cost_plot: bool = True) -> None:
    """The design part of a report page: headline figures and the linked design block."""
    s = page.section("Design")
    s.cards(headline(design, figures))
    var = ", ".join(f"{k}={v}" for k, v in design.variables.items())
    s.note(f"{design.name} from {design.source}" + (f"; variables: {var}" if var else "") +
           ". Counts per sample; parameters as PyTorch counts them (BatchNorm running statistics "
           "are buffers); FLOPs = 2 x multiply-adds.")
    page.section("Architecture and cost").html(design_block_html(design, figures, "d0-", variables,
                                                                 cost_plot=cost_plot))
