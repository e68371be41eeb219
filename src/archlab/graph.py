"""The resolved graph: every node with its block, validated settings, inputs and inferred shapes.

Built by :mod:`archlab.design.resolve` from a design, before any tensor exists. Each node's
``path`` is the dotted module path of its module in the built network (``layer2.0``,
``enc1.residual``), so op records, analysis rows, review findings and checkpoint keys all name the
same things.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any

from .blocks import get_block
from .ops import Op, Shape, numel

INPUT = "input"  # the name of the network input in 'from:' lists


@lru_cache(maxsize=8192)
def _memo(cls, formula: str, params, shapes: tuple) -> Any:
    return getattr(cls, formula)(params, list(shapes))


def block_formula(cls, formula: str, params, shapes) -> Any:
    """``cls.<formula>(params, shapes)``, memoised: block formulas are pure functions of the
    settings and input shapes, and a stage repeats the same block many times, so a search that
    screens thousands of variants computes each distinct block once."""
    key = tuple(tuple(s) for s in shapes)
    try:
        return _memo(cls, formula, params, key)
    except TypeError:  # settings that cannot be hashed (a custom block's mutable field)
        return getattr(cls, formula)(params, list(shapes))


@dataclass
class Node:
    """One resolved node.

    path:          module path in the built model ('layer1.0', 'stem', 'enc2.residual').
    block:         registered block name.
    params:        the block's validated Params.
    inputs:        paths of the nodes it reads ('input' = the network input).
    input_shapes:  their shapes (no batch dimension).
    output_shape:  its output shape (no batch dimension).
    where:         the node's place in the design ('layers[3]', 'layers[5].layers[1]').
    source:        design file (or '<dict>'/'<text>'); line: 1-based line in it.
    stage:         the enclosing stage or group path, '' at top level.
    """

    path: str
    block: str
    params: Any
    inputs: list[str]
    input_shapes: list[Shape]
    output_shape: Shape
    where: str = ""
    source: str | None = None
    line: int | None = None
    stage: str = ""

    @property
    def block_class(self):
        return get_block(self.block)

    def ops(self) -> list[Op]:
        """Primitive ops of this node with full module paths (computed once per node)."""
        cached = self.__dict__.get("_ops")
        if cached is None:
            raw = block_formula(self.block_class, "ops", self.params, self.input_shapes)
            cached = self.__dict__["_ops"] = [op.under(self.path) for op in raw]
        return list(cached)

    def _formula_ops(self) -> list[Op]:
        # the memoised records with block-relative paths: totals need no renamed copies
        return block_formula(self.block_class, "ops", self.params, self.input_shapes)

    @property
    def param_count(self) -> int:
        return sum(op.params for op in self._formula_ops())

    @property
    def multiply_adds(self) -> int:
        return sum(op.multiply_adds for op in self._formula_ops())

    def settings(self) -> dict[str, Any]:
        """The node's settings as plain data (for --json and the resolved design)."""
        return self.params.model_dump(mode="json", exclude_defaults=False)


@dataclass
class Graph:
    """All nodes in topological order (every input comes before its reader)."""

    input_shape: Shape
    nodes: list[Node]
    outputs: list[str]
    by_path: dict[str, Node] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_path = {n.path: n for n in self.nodes}

    def __iter__(self):
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    def node(self, path: str) -> Node:
        return self.by_path[path]

    def shape_of(self, path: str) -> Shape:
        return self.input_shape if path == INPUT else self.by_path[path].output_shape

    @property
    def output_shapes(self) -> list[Shape]:
        return [self.shape_of(p) for p in self.outputs]

    @property
    def output_shape(self) -> Shape:
        return self.output_shapes[0]

    def ops(self) -> list[Op]:
        return [op for node in self.nodes for op in node.ops()]

    @cached_property
    def param_count(self) -> int:
        return sum(n.param_count for n in self.nodes)

    @cached_property
    def multiply_adds(self) -> int:
        return sum(n.multiply_adds for n in self.nodes)

    @property
    def activation_elements(self) -> int:
        """Elements of all node outputs for one sample (a rough activation-memory figure)."""
        return sum(numel(n.output_shape) for n in self.nodes)

    def consumers(self, path: str) -> list[Node]:
        return [n for n in self.nodes if path in n.inputs]
