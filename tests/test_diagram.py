"""The architecture diagram (SVG/DOT/Mermaid) against the resolved graph it is drawn from, for
every zoo design; readability checked geometrically (no two boxes overlap, every edge ends on
its nodes); ``archlab show --graph`` and the "from" column."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

import archlab
from archlab.cli import main
from archlab.report.diagram import NODE_H, NODE_W, layout, node_ids, owner_of, to_dot, to_mermaid, to_svg

SVG = "{http://www.w3.org/2000/svg}"


def _svg_nodes(root):
    return [g for g in root.iter(f"{SVG}g") if "node" in g.get("class", "").split()]


@pytest.mark.parametrize("name", archlab.zoo.names())
def test_every_node_and_edge_is_drawn(name):
    design = archlab.load(name)
    g = design.graph
    root = ET.fromstring(to_svg(design))  # well-formed XML
    drawn = {n.get("data-path"): n for n in _svg_nodes(root)}
    assert set(drawn) == {"input"} | {n.path for n in g.nodes}
    for n in g.nodes:  # the label shows the output shape
        texts = " ".join(t.text or "" for t in drawn[n.path].iter(f"{SVG}text"))
        assert "x".join(map(str, n.output_shape)) in texts.replace("…", "") or len(texts) > 30
    edges = [p for p in root.iter(f"{SVG}path") if "edge" in p.get("class", "")]
    ids = node_ids(g)
    # an input may name a node's parameter (a tied weight: 'wte.weight'): the edge starts at the node
    expected = sorted((ids[owner_of(i, ids)], ids[n.path]) for n in g.nodes for i in n.inputs)
    assert sorted((e.get("data-from"), e.get("data-to")) for e in edges) == expected
    stages = {(n.stage or "").split(".")[0] for n in g.nodes} - {""}
    assert {s.get("data-stage") for s in root.iter(f"{SVG}g") if s.get("class") == "stage"} == stages


@pytest.mark.parametrize("name", ["inception_v3", "unet", "nas_cell_net", "resnet50"])
def test_layout_is_readable(name):
    """No two node boxes overlap; stage boxes hold their nodes and never overlap each other;
    each curve starts on its source box and ends on its target box."""
    lay = layout(archlab.load(name))
    boxes = [(n.x, n.y) for n in lay.nodes]
    for i, (x1, y1) in enumerate(boxes):
        for x2, y2 in boxes[i + 1:]:
            assert abs(x1 - x2) >= NODE_W or abs(y1 - y2) >= NODE_H, (x1, y1, x2, y2)
    for st in lay.stages:
        for nid in st.nodes:
            n = lay.node(nid)
            assert st.x0 <= n.x and n.x + NODE_W <= st.x1 and st.y0 <= n.y and n.y + NODE_H <= st.y1
    spans = sorted((st.y0, st.y1) for st in lay.stages)
    for (_, a1), (b0, _) in zip(spans, spans[1:], strict=False):
        assert a1 <= b0
    svg = to_svg(archlab.load(name))
    for d in re.findall(r'class="edge" data-from="(n\d+)" data-to="(n\d+)" data-slot="\d+" d="M([\d.]+),([\d.]+)', svg):
        src = lay.node(d[0])
        x, y = float(d[2]), float(d[3])
        assert abs(y - (src.y + NODE_H)) < 0.2 and abs(x - (src.x + NODE_W / 2)) < 0.2


def test_unet_skip_connections_are_visible():
    svg = to_svg(archlab.load("unet"))
    root = ET.fromstring(svg)
    skips = [p for p in root.iter(f"{SVG}path") if p.get("class") == "edge skip"]
    ids = node_ids(archlab.load("unet").graph)
    # the four encoder-to-decoder concatenations, each in its own side lane (nested brackets)
    assert sorted((p.get("data-from"), p.get("data-to")) for p in skips) == sorted(
        (ids[f"enc{k}.conv2"], ids[f"dec{k}.cat"]) for k in (1, 2, 3, 4))
    assert len({p.get("data-slot") for p in skips}) == 4
    merges = [g for g in _svg_nodes(root) if "merge" in g.get("class")]
    assert {g.get("data-path") for g in merges} == {f"dec{k}.cat" for k in (1, 2, 3, 4)}


def test_cost_colour_follows_multiply_adds():
    from archlab.report.diagram import cost_colour

    assert cost_colour(0, 100) == "#ffffff"
    light, deep = cost_colour(1, 100), cost_colour(100, 100)
    assert int(light[1:3], 16) > int(deep[1:3], 16) or int(light[3:5], 16) > int(deep[3:5], 16)


def test_dot_and_mermaid_name_every_node_and_edge():
    d = archlab.load("unet")
    dot, mer = to_dot(d), to_mermaid(d)
    assert dot.startswith('digraph "unet"') and 'subgraph "cluster_enc1"' in dot
    ids = node_ids(d.graph)
    for n in d.graph.nodes:
        assert f"{ids[n.path]} [label=" in dot and f'"{n.path}' in dot
        for i in n.inputs:
            assert f"{ids[i]} -> {ids[n.path]}" in dot
            assert re.search(rf"{ids[i]} (-->|-\.->) {ids[n.path]}\b", mer)
    assert mer.startswith("flowchart TD") and mer.count("subgraph") == 9 and "-.->" in mer


def test_show_graph_writes_each_format(tmp_path, capsys):
    for suffix, head in ((".svg", "<svg"), (".dot", "digraph"), (".mmd", "flowchart TD")):
        out = tmp_path / f"g{suffix}"
        assert main(["show", "inception_v3", "--graph", str(out)]) == 0
        assert out.read_text().startswith(head)
    assert main(["show", "mnist_cnn", "--set", "width=8", "--graph", str(tmp_path / "w.svg")]) == 0
    assert "mnist_cnn (width=8)" in (tmp_path / "w.svg").read_text()  # the title names the variant
    assert main(["show", "resnet18", "--graph", str(tmp_path / "g.png")]) == 2
    err = capsys.readouterr().err
    assert "cannot tell the diagram format of" in err and "--graph-format" in err


def test_show_has_a_from_column(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "160")  # at 80 columns the table leaves 'from' out, and says so
    assert main(["show", "unet"]) == 0
    out = capsys.readouterr().out
    assert "from" in out.splitlines()[2]
    line = next(x for x in out.splitlines() if "dec4.cat" in x)
    assert "enc4.conv2, dec4.up" in line
