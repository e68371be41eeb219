"""Structural diff of two resolved graphs: nodes added, removed, reshaped, settings changed.

Nodes are matched by their path (``layer2.0``), the same name the built module, the analysis
rows, the review findings and the checkpoints use; so a diff is also what a weight transfer
between the two designs would meet. Changes are grouped per top-level stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class NodeChange:
    path: str
    kind: str                      # 'added' | 'removed' | 'reshaped' | 'settings' | 'block'
    stage: str
    detail: str                    # in words: "(64, 56, 56) -> (32, 56, 56)", "out: 64 -> 32"
    before: Any = None
    after: Any = None

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "kind": self.kind, "stage": self.stage, "detail": self.detail,
                "before": self.before, "after": self.after}


@dataclass
class GraphDiff:
    changes: list[NodeChange] = field(default_factory=list)
    variables: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # name -> (base, variant)

    @property
    def same(self) -> bool:
        return not self.changes

    def counts(self) -> dict[str, int]:
        out = {k: 0 for k in ("added", "removed", "reshaped", "settings", "block")}
        for c in self.changes:
            out[c.kind] += 1
        return out

    def by_stage(self) -> dict[str, list[NodeChange]]:
        out: dict[str, list[NodeChange]] = {}
        for c in self.changes:
            out.setdefault(c.stage, []).append(c)
        return out

    def summary(self) -> str:
        counts = {k: v for k, v in self.counts().items() if v}
        if not counts:
            return "same structure"
        return ", ".join(f"{v} {k if k not in ('settings', 'block') else k + ' changed'}"
                         for k, v in counts.items())

    def to_dict(self) -> dict[str, Any]:
        return {"counts": self.counts(), "summary": self.summary(),
                "variables": {k: list(v) for k, v in self.variables.items()},
                "stages": {s: [c.to_dict() for c in cs] for s, cs in self.by_stage().items()}}


def top_stage(node: Any) -> str:
    """The top-level stage of a node ('dec4' for 'dec4.conv.conv1'), or its own path."""
    return (node.stage or node.path).split(".")[0]


def diff_designs(base: Any, variant: Any) -> GraphDiff:
    """What changes from ``base`` to ``variant`` (both Designs)."""
    out = GraphDiff()
    for name in sorted(set(base.variables) | set(variant.variables)):
        a, b = base.variables.get(name), variant.variables.get(name)
        if a != b:
            out.variables[name] = (a, b)
    old = base.graph.by_path
    new = variant.graph.by_path
    for node in base.graph.nodes:
        if node.path not in new:
            out.changes.append(NodeChange(node.path, "removed", top_stage(node),
                                          f"{node.block} {tuple(node.output_shape)}",
                                          before=list(node.output_shape)))
    for node in variant.graph.nodes:
        prior = old.get(node.path)
        if prior is None:
            out.changes.append(NodeChange(node.path, "added", top_stage(node),
                                          f"{node.block} {tuple(node.output_shape)}",
                                          after=list(node.output_shape)))
            continue
        if prior.block != node.block:
            out.changes.append(NodeChange(node.path, "block", top_stage(node),
                                          f"{prior.block} -> {node.block}", prior.block, node.block))
            continue
        if tuple(prior.output_shape) != tuple(node.output_shape):
            out.changes.append(NodeChange(node.path, "reshaped", top_stage(node),
                                          f"{tuple(prior.output_shape)} -> {tuple(node.output_shape)}",
                                          list(prior.output_shape), list(node.output_shape)))
        a, b = prior.settings(), node.settings()
        changed = {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}
        if changed:
            text = ", ".join(f"{k}: {x} -> {y}" for k, (x, y) in changed.items())
            out.changes.append(NodeChange(node.path, "settings", top_stage(node), text,
                                          {k: v[0] for k, v in changed.items()},
                                          {k: v[1] for k, v in changed.items()}))
    return out
