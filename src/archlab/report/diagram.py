"""The architecture diagram, drawn from the resolved graph: SVG (for the report and
``archlab show --graph``), DOT (Graphviz) and Mermaid text.

Layout (top to bottom): each top-level stage occupies its own band of rows, so a stage can be
collapsed into one box and the rows below move up; inside a band a node sits one row below its
lowest input, and nodes of the same row sit side by side (a cell's branches). An edge to the
next row is a curve; an edge that skips rows (a U-Net's skip connection, a DenseNet/NAS cell's
reach back) runs in its own lane on the right, dashed, so merges and skips stay visible. Merge
nodes (concat, sum, add) have round ends. Fill colour is the node's multiply-adds against the
costliest node's (white: none, deep orange: the costliest; square-root scale).

In the report, ``report/assets.py`` re-routes the same geometry in the browser when a stage is
collapsed or expanded (the static SVG file shows every stage expanded).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape
from typing import Any

NODE_W, NODE_H = 200, 36       # node box (px)
GAP_X, GAP_Y = 24, 22          # between lanes and between rows
HEADER = 18                    # stage label band above a stage's first row
PAD = 12                       # stage box padding around its nodes
LANE_STEP = 10                 # distance between the side lanes of skip edges
SKIP_INSET, SKIP_DROP = 14, 6  # a skip leaves/enters this far from a box's right edge, this far out
MERGE_BLOCKS = {"concat", "sum", "add", "shortcut_add", "weighted", "multiply", "mul", "max"}


@dataclass
class DNode:
    id: str
    path: str
    block: str
    shape: tuple
    stage: str | None          # top-level stage key, None for a top-level node
    inputs: list[str]          # ids
    multiply_adds: int = 0
    params: int = 0
    rank: int = 0
    lane: int = 0
    x: float = 0.0
    y: float = 0.0
    merge: bool = False
    findings: int = 0


@dataclass
class DStage:
    key: str
    nodes: list[str] = field(default_factory=list)
    x0: float = 0.0
    y0: float = 0.0
    x1: float = 0.0
    y1: float = 0.0
    multiply_adds: int = 0
    params: int = 0
    shape: tuple = ()


@dataclass
class DEdge:
    src: str
    dst: str
    skip: bool = False
    slot: int = 0


@dataclass
class Layout:
    name: str
    nodes: list[DNode]
    stages: list[DStage]
    edges: list[DEdge]
    width: float = 0.0
    height: float = 0.0
    route_x: float = 0.0

    def node(self, node_id: str) -> DNode:
        return self._by_id[node_id]

    def __post_init__(self) -> None:
        self._by_id = {n.id: n for n in self.nodes}


def owner_of(path: str, known: dict[str, str]) -> str | None:
    """The node an input names: itself, or the node owning it ('wte.weight' -> 'wte', a tied
    weight read by another node)."""
    probe = path
    while probe not in known:
        if "." not in probe:
            return None
        probe = probe.rsplit(".", 1)[0]
    return probe


def node_ids(graph: Any) -> dict[str, str]:
    """Graph path -> diagram id ('input' -> 'n0', first node -> 'n1', ...): ids that are safe
    in HTML and that the node table and the findings link to."""
    ids = {"input": "n0"}
    for i, n in enumerate(graph.nodes, start=1):
        ids[n.path] = f"n{i}"
    return ids


def layout(design: Any, findings: dict[str, int] | None = None) -> Layout:
    """Positions of every node, stage box and edge of a design's graph."""
    g = design.graph
    ids = node_ids(g)
    findings = findings or {}
    nodes = [DNode("n0", "input", "input", tuple(g.input_shape), None, [])]
    for n in g.nodes:
        key = (n.stage or "").split(".")[0] or None
        nodes.append(DNode(ids[n.path], n.path, n.block, tuple(n.output_shape), key,
                           [ids[o] for o in (owner_of(p, ids) for p in n.inputs) if o is not None],
                           n.multiply_adds, n.param_count,
                           merge=n.block in MERGE_BLOCKS or len(n.inputs) > 1,
                           findings=findings.get(n.path, 0)))
    by_id = {n.id: n for n in nodes}
    # bands: runs of consecutive nodes of one top-level stage; a top-level node is its own band
    # A top-level node only has to come after the last stage band, so a side branch (Inception's
    # auxiliary head) sits beside the main path instead of below the end.
    stages: dict[str, DStage] = {}
    band_start, band_key, top, stage_end = 0, object(), 0, 0
    for n in nodes[1:]:
        if n.stage is None:
            band_key = object()
            n.rank = max([stage_end + 1] + [by_id[i].rank + 1 for i in n.inputs])
        else:
            if n.stage != band_key:
                band_start = top + 1
                band_key = n.stage
            floor = [by_id[i].rank + 1 for i in n.inputs if by_id[i].rank + 1 >= band_start]
            n.rank = max([band_start] + floor)
            stage_end = max(stage_end, n.rank)
        top = max(top, n.rank)
        if n.stage is not None:
            st = stages.setdefault(n.stage, DStage(n.stage))
            st.nodes.append(n.id)
            st.multiply_adds += n.multiply_adds
            st.params += n.params
            st.shape = n.shape
    lanes: dict[int, int] = {}
    for n in nodes:
        n.lane = lanes.get(n.rank, 0)
        lanes[n.rank] = n.lane + 1
    # rows: y of each rank, with a header band above the first row of each stage
    first_rank = {}
    for st in stages.values():
        first_rank[min(by_id[i].rank for i in st.nodes)] = st.key
    ys, y = {}, PAD
    for rank in range(top + 1):
        if rank in first_rank:
            y += HEADER + PAD
        ys[rank] = y
        y += NODE_H + GAP_Y
        # a stage's last row: room for its bottom padding
        if any(max(by_id[i].rank for i in st.nodes) == rank for st in stages.values()):
            y += PAD
    for n in nodes:
        n.x = PAD * 2 + n.lane * (NODE_W + GAP_X)
        n.y = ys[n.rank]
    for st in stages.values():
        members = [by_id[i] for i in st.nodes]
        st.x0 = min(m.x for m in members) - PAD
        st.x1 = max(m.x for m in members) + NODE_W + PAD
        st.y0 = min(m.y for m in members) - HEADER - PAD / 2
        st.y1 = max(m.y for m in members) + NODE_H + PAD / 2
    edges = []
    for n in nodes:
        for src in n.inputs:
            s = by_id[src]
            edges.append(DEdge(src, n.id, skip=n.rank - s.rank > 1))
    route_x = max(n.x + NODE_W for n in nodes) + PAD * 2
    _assign_slots([e for e in edges if e.skip], by_id)
    slots = max([e.slot for e in edges if e.skip] + [-1]) + 1
    lay = Layout(design.name, nodes, list(stages.values()), edges)
    lay.route_x = route_x
    lay.width = route_x + slots * LANE_STEP + PAD * 2 + 40
    lay.height = y + PAD
    return lay


def _assign_slots(skips: list[DEdge], by_id: dict[str, DNode]) -> None:
    """Side lanes for skip edges: greedy interval colouring, shortest spans nearest the nodes
    (so nested skips, as in a U-Net, draw as nested brackets)."""
    taken: list[list[tuple[float, float]]] = []
    for e in sorted(skips, key=lambda e: by_id[e.dst].y - by_id[e.src].y):
        lo, hi = by_id[e.src].y, by_id[e.dst].y + NODE_H
        for slot, spans in enumerate(taken):
            if all(hi <= a or lo >= b for a, b in spans):
                spans.append((lo, hi))
                e.slot = slot
                break
        else:
            taken.append([(lo, hi)])
            e.slot = len(taken) - 1


def edge_path(x1: float, y1: float, x2: float, y2: float, skip: bool, lane_x: float) -> str:
    """SVG path data: a curve from the bottom of the source box (x1, y1 = its top-left) to the
    top of the target box, or for a skip a bracket through the side lane at ``lane_x``
    (the same geometry as ``report/assets.py``'s script)."""
    if not skip:
        sx, sy, tx, ty = x1 + NODE_W / 2, y1 + NODE_H, x2 + NODE_W / 2, y2
        mid = (sy + ty) / 2
        return f"M{sx:.1f},{sy:.1f} C{sx:.1f},{mid:.1f} {tx:.1f},{mid:.1f} {tx:.1f},{ty:.1f}"
    # leave from the bottom and enter from the top, running sideways only in the gaps between
    # rows, so a skip never crosses a box of its own rows
    sx, sy = x1 + NODE_W - SKIP_INSET, y1 + NODE_H
    tx, ty = x2 + NODE_W - SKIP_INSET, y2
    return (f"M{sx:.1f},{sy:.1f} V{sy + SKIP_DROP:.1f} H{lane_x:.1f} V{ty - SKIP_DROP:.1f} "
            f"H{tx:.1f} V{ty:.1f}")


def cost_colour(multiply_adds: int, largest: int) -> str:
    """White for no multiply-adds, deep orange for the largest (square-root scale: a node with a
    quarter of the largest cost is half as deep)."""
    if multiply_adds <= 0 or largest <= 0:
        return "#ffffff"
    t = max(0.06, min(1.0, math.sqrt(multiply_adds / largest)))
    low, high = (255, 244, 230), (247, 103, 7)
    r, g, b = (round(a + (c - a) * t) for a, c in zip(low, high, strict=True))
    return f"#{r:02x}{g:02x}{b:02x}"


def _shape(shape: tuple) -> str:
    return "x".join(map(str, shape)) if shape else "()"


def _title(design: Any) -> str:
    from ..analysis.plot import design_label

    return design_label(design)


def to_svg(design: Any, findings: dict[str, int] | None = None, interactive: bool = False,
           prefix: str = "") -> str:
    """The diagram as an SVG document (``interactive``: stage headers are buttons the report's
    script reacts to; ``prefix``: keeps element ids unique when a page holds several diagrams)."""
    lay = layout(design, findings)
    largest = max((n.multiply_adds for n in lay.nodes), default=0)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="archlab-diagram" '
           f'width="{lay.width:.0f}" height="{lay.height:.0f}" viewBox="0 0 {lay.width:.0f} '
           f'{lay.height:.0f}" data-route-x="{lay.route_x:.1f}" data-lane-step="{LANE_STEP}" '
           f'font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif">',
           f"<title>{escape(_title(design))}: architecture</title>",
           f"<defs><marker id=\"{prefix}arrow\" viewBox=\"0 0 8 8\" refX=\"7\" refY=\"4\" markerWidth=\"7\" "
           "markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M0,0 L8,4 L0,8 z\" "
           f"fill=\"#495057\"/></marker><marker id=\"{prefix}arrow-skip\" viewBox=\"0 0 8 8\" refX=\"7\" "
           f"refY=\"4\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\"><path "
           "d=\"M0,0 L8,4 L0,8 z\" fill=\"#1c7ed6\"/></marker></defs>",
           '<rect class="bg" x="0" y="0" width="100%" height="100%" fill="#ffffff"/>']
    for st in lay.stages:
        n = len(st.nodes)
        out.append(
            f'<g class="stage" data-stage="{escape(st.key)}" data-x0="{st.x0:.1f}" '
            f'data-y0="{st.y0:.1f}" data-x1="{st.x1:.1f}" data-y1="{st.y1:.1f}">'
            f'<rect class="stage-frame" x="{st.x0:.1f}" y="{st.y0:.1f}" width="{st.x1 - st.x0:.1f}" '
            f'height="{st.y1 - st.y0:.1f}" rx="8" fill="#f1f3f5" stroke="#ced4da"/>'
            f'<text class="stage-label{" toggle" if interactive else ""}" x="{st.x0 + 8:.1f}" '
            f'y="{st.y0 + 14:.1f}" font-size="11" font-weight="600" fill="#343a40">'
            f'{"&#9662; " if interactive else ""}{escape(_fit(st.key, 14))} · {n} node{"s" if n != 1 else ""}'
            f' · {_human(st.multiply_adds)} MACs<title>{escape(st.key)}: {n} nodes, '
            f'{st.multiply_adds:,} multiply-adds, {st.params:,} parameters'
            f'{" (click to collapse or expand)" if interactive else ""}</title></text>'
            f'<g class="stage-collapsed" style="display:none"><rect x="{st.x0 + PAD:.1f}" '
            f'y="{st.y0 + HEADER + PAD / 2:.1f}" width="{NODE_W}" height="{NODE_H}" rx="4" '
            f'fill="{cost_colour(st.multiply_adds, largest)}" stroke="#495057" stroke-dasharray="4 2"/>'
            f'<text x="{st.x0 + PAD + 8:.1f}" y="{st.y0 + HEADER + PAD / 2 + 15:.1f}" font-size="11" '
            f'font-weight="600">{escape(st.key)} ({n})</text><text x="{st.x0 + PAD + 8:.1f}" '
            f'y="{st.y0 + HEADER + PAD / 2 + 29:.1f}" font-size="10" fill="#495057">'
            f'out {_shape(st.shape)}</text></g></g>')
    for e in lay.edges:
        s, t = lay.node(e.src), lay.node(e.dst)
        lane_x = lay.route_x + e.slot * LANE_STEP
        d = edge_path(s.x, s.y, t.x, t.y, e.skip, lane_x)
        style = (f'stroke="#1c7ed6" stroke-dasharray="5 3" marker-end="url(#{prefix}arrow-skip)"' if e.skip
                 else f'stroke="#495057" marker-end="url(#{prefix}arrow)"')
        out.append(f'<path class="edge{" skip" if e.skip else ""}" data-from="{e.src}" '
                   f'data-to="{e.dst}" data-slot="{e.slot}" d="{d}" fill="none" stroke-width="1.3" '
                   f'{style}/>')
    for n in lay.nodes:
        rx = NODE_H / 2 if n.merge else 4
        fill = "#e7f5ff" if n.path == "input" else cost_colour(n.multiply_adds, largest)
        stroke = "#1c7ed6" if n.merge else "#495057"
        label = f"{n.block} {_shape(n.shape)}"
        tip = (f"{n.path}: {n.block}, output {_shape(n.shape)}, {n.params:,} parameters, "
               f"{n.multiply_adds:,} multiply-adds")
        out.append(
            f'<g class="node{" merge" if n.merge else ""}" data-id="{n.id}" '
            f'data-path="{escape(n.path)}" data-stage="{escape(n.stage or "")}" '
            f'data-x="{n.x:.1f}" data-y="{n.y:.1f}" transform="translate({n.x:.1f},{n.y:.1f})">'
            f"<title>{escape(tip)}</title>"
            f'<rect width="{NODE_W}" height="{NODE_H}" rx="{rx}" fill="{fill}" stroke="{stroke}" '
            f'stroke-width="{1.6 if n.merge else 1}"/>'
            f'<text x="10" y="15" font-size="11" font-weight="600" fill="#212529">'
            f"{escape(_fit(n.path, 28))}</text>"
            f'<text x="10" y="29" font-size="10" fill="#495057">{escape(_fit(label, 32))}</text>'
            + (f'<circle cx="{NODE_W - 10}" cy="10" r="5" fill="#e03131"><title>{n.findings} review '
               f'finding(s)</title></circle>' if n.findings else "")
            + "</g>")
    out.append("</svg>")
    return "\n".join(out)


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _human(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(int(n))


def to_dot(design: Any) -> str:
    """Graphviz DOT text: one cluster per stage, skip edges dashed."""
    lay = layout(design)

    def q(s: str) -> str:
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = [f"digraph {q(design.name)} {{", "  rankdir=TB;",
             '  node [shape=box, style="rounded,filled", fillcolor="#ffffff", fontname="Helvetica", fontsize=10];']
    by_stage: dict[str | None, list[DNode]] = {}
    for n in lay.nodes:
        by_stage.setdefault(n.stage, []).append(n)
    for key, members in by_stage.items():
        indent = "  "
        if key is not None:
            lines.append(f"  subgraph {q('cluster_' + key)} {{ label={q(key)}; style=rounded; color=grey;")
            indent = "    "
        for n in members:
            shape = ', shape=ellipse' if n.merge else ""
            lines.append(f"{indent}{n.id} [label={q(n.path + chr(10) + n.block + ' ' + _shape(n.shape))}"
                         f"{shape}];")
        if key is not None:
            lines.append("  }")
    for e in lay.edges:
        lines.append(f"  {e.src} -> {e.dst}" + (" [style=dashed, color=\"#1c7ed6\"];" if e.skip else ";"))
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_mermaid(design: Any) -> str:
    """Mermaid flowchart text: subgraphs per stage, merges as rounded nodes, skips dotted."""
    lay = layout(design)

    def label(n: DNode) -> str:
        text = f"{n.path}<br/>{n.block} {_shape(n.shape)}".replace('"', "'")
        return f'{n.id}(["{text}"])' if n.merge else f'{n.id}["{text}"]'

    lines = ["flowchart TD"]
    by_stage: dict[str | None, list[DNode]] = {}
    for n in lay.nodes:
        by_stage.setdefault(n.stage, []).append(n)
    for key, members in by_stage.items():
        if key is None:
            lines += [f"  {label(n)}" for n in members]
        else:
            lines.append(f'  subgraph s_{key.replace("-", "_")}["{key}"]')
            lines += [f"    {label(n)}" for n in members]
            lines.append("  end")
    for e in lay.edges:
        lines.append(f"  {e.src} {'-.->' if e.skip else '-->'} {e.dst}")
    return "\n".join(lines) + "\n"
