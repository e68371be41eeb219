"""The :class:`Analysis` result: per-op records rolled up per block and per stage, with totals,
memory and latency, and its JSON and CSV forms (schema in docs/analysis.md)."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from ..ops import Op, Shape, numel
from .latency import Latency
from .memory import Memory

SCHEMA = "archlab.analysis/1"

CONVENTIONS = {
    "per_sample": "op, block, stage and total counts are for one sample (batch 1); memory is for "
                  "the batch shown",
    "params": "parameters as PyTorch counts them (BatchNorm running statistics are buffers)",
    "multiply_adds": "multiply-accumulates of conv, linear, matmul and attention; bias additions "
                     "are element-wise",
    "flops": "FLOPs = 2 x multiply-adds (only where FLOPs are shown)",
    "elementwise": "element-wise operations (activations, norms, adds, pooling, softmax, biases), "
                   "counted separately, one per output element per extra input",
    "memory_access_bytes": "ShuffleNetV2's memory access cost: inputs read + weights read + "
                           "output written, x bytes per element",
    "arithmetic_intensity": "(2 x multiply-adds + element-wise) / memory_access_bytes, "
                            "operations per byte",
    "counts": "inference form: BatchNorm with running statistics, dropout off",
    "weights_only": "work on parameters and constants alone (a reparametrised weight, a constant "
                    "table) is done once per batch, not per sample: it is NOT in the per-sample "
                    "multiply_adds/elementwise but in weights_only_multiply_adds/"
                    "weights_only_elementwise (PyTorch's FLOP counter at batch 1 includes it); "
                    "work on a tensor recomputed for every sample counts per sample",
    "attention_backend": "attention memory follows the kernel the real device would run "
                         "(memory.attention_backends); its counts do not depend on it",
}


@dataclass
class Row:
    """One block, stage or the whole network (a roll-up of op records).

    path:                    module path of the block ('layer2.0'), stage name, or '' for totals.
    block:                   registered block name (designs) or module class (traced modules).
    stage:                   the stage the block belongs to.
    output_shape:            per-sample output shape, when known.
    params:                  parameters of its ops.
    multiply_adds:           per sample.
    elementwise:             per sample.
    memory_access_bytes:     per sample.
    saved_activation_bytes:  what autograd saves for backward from this block, for the analysed
                             batch (None when memory was not analysed).
    ops:                     number of op records (fragmentation, ShuffleNetV2 G3).
    """

    path: str
    block: str = ""
    stage: str = ""
    output_shape: Shape | None = None
    params: int = 0
    multiply_adds: int = 0
    elementwise: int = 0
    memory_access_bytes: int = 0
    saved_activation_bytes: int | None = None
    ops: int = 0

    @property
    def flops(self) -> int:
        return 2 * self.multiply_adds

    @property
    def arithmetic_intensity(self) -> float:
        work = 2 * self.multiply_adds + self.elementwise
        return work / self.memory_access_bytes if self.memory_access_bytes else 0.0

    def add(self, op: Op, bytes_per_element: int) -> None:
        self.params += op.params
        self.multiply_adds += op.multiply_adds
        self.elementwise += op.elementwise
        self.memory_access_bytes += op.memory_access * bytes_per_element
        self.ops += 1

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["output_shape"] = list(self.output_shape) if self.output_shape is not None else None
        d["flops"] = self.flops
        d["arithmetic_intensity"] = round(self.arithmetic_intensity, 4)
        return d


def op_dict(op: Op, bytes_per_element: int) -> dict[str, Any]:
    return {
        "kind": op.kind,
        "path": op.path,
        "inputs": [list(s) for s in op.inputs],
        "output": list(op.output),
        "params": op.params,
        "multiply_adds": op.multiply_adds,
        "elementwise": op.elementwise,
        "weights_read": op.weights_read,
        "memory_access_bytes": op.memory_access * bytes_per_element,
    }


def owner(path: str, known: dict[str, Any]) -> str | None:
    """The longest known prefix of a dotted path ('layer2.0.conv1.0' -> 'layer2.0')."""
    probe = path
    while True:
        if probe in known:
            return probe
        if "." not in probe:
            return None
        probe = probe.rsplit(".", 1)[0]


@dataclass
class Analysis:
    """What :func:`archlab.analyze` returns.

    ops:     per-op records (archlab.ops.Op), in execution order.
    nodes:   one Row per block (design nodes, or block-level modules of a traced module);
             ``blocks`` is the same list.
    stages:  one Row per stage.
    totals:  whole-network figures (dict, keys as in the JSON schema).
    memory:  Memory for ``batch`` and ``optimizer`` (None if not analysed).
    latency: measured Latency (None unless asked for).
    """

    name: str
    source: str                     # 'design' (analytic) or 'module' (traced)
    input_shape: Shape
    batch: int
    dtype: str
    bytes_per_element: int
    ops: list[Op]
    nodes: list[Row]
    stages: list[Row]
    totals: dict[str, Any]
    memory: Memory | None = None
    latency: Latency | None = None
    conventions: dict[str, str] = field(default_factory=lambda: dict(CONVENTIONS))
    notes: list[str] = field(default_factory=list)   # what these figures assume, in words

    @property
    def blocks(self) -> list[Row]:
        return self.nodes

    def rows(self, depth: str = "block") -> list[Row]:
        """Rows at a depth: 'stage', 'block' or 'op' (one Row per op record)."""
        if depth == "stage":
            return self.stages
        if depth == "op":
            rows = []
            for op in self.ops:
                row = Row(op.path or "(root)", op.kind, "", op.output)
                row.add(op, self.bytes_per_element)
                rows.append(row)
            return rows
        return self.nodes

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "name": self.name,
            "source": self.source,
            "input_shape": list(self.input_shape),
            "batch": self.batch,
            "dtype": self.dtype,
            "bytes_per_element": self.bytes_per_element,
            "conventions": self.conventions,
            "notes": list(self.notes),
            "totals": self.totals,
            "stages": [r.to_dict() for r in self.stages],
            "blocks": [r.to_dict() for r in self.nodes],
            "ops": [op_dict(op, self.bytes_per_element) for op in self.ops],
            "memory": self.memory.to_dict() if self.memory else None,
            "latency": self.latency.to_dict() if self.latency else None,
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def to_csv(self, depth: str = "block") -> str:
        columns = ["path", "block", "stage", "output_shape", "params", "multiply_adds", "flops",
                   "elementwise", "memory_access_bytes", "arithmetic_intensity",
                   "saved_activation_bytes", "ops"]
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        for row in self.rows(depth):
            d = row.to_dict()
            d["output_shape"] = "x".join(map(str, row.output_shape)) if row.output_shape else ""
            writer.writerow(["" if d[c] is None else d[c] for c in columns])
        return buf.getvalue()


def roll_up(ops: list[Op], blocks: list[Row], bytes_per_element: int,
            saved_by_path: dict[str, int] | None,
            blocks_filled: bool = False) -> tuple[list[Row], list[Row], Row]:
    """Add every op to its block (longest path prefix), blocks to stages, all to a total row.
    Ops outside every block (functional code in a root forward) go to a '(root)' block.
    ``blocks_filled``: the block rows already hold their ops (analytic designs)."""
    by_path = {b.path: b for b in blocks}
    extra: dict[str, Row] = {}
    total = Row("")

    def block_of(path: str) -> Row:
        key = owner(path, by_path)
        if key is not None:
            return by_path[key]
        name = "(input)" if path == "(input)" else "(root)"
        if name not in extra:
            extra[name] = Row(name, "", name)
        return extra[name]

    if blocks_filled:
        for row in blocks:
            total.params += row.params
            total.multiply_adds += row.multiply_adds
            total.elementwise += row.elementwise
            total.memory_access_bytes += row.memory_access_bytes
            total.ops += row.ops
    else:
        for op in ops:
            total.add(op, bytes_per_element)
            block_of(op.path).add(op, bytes_per_element)
    if saved_by_path is not None:
        for row in blocks:
            row.saved_activation_bytes = 0
        total.saved_activation_bytes = 0
        for path, nbytes in saved_by_path.items():
            row = block_of(path)
            row.saved_activation_bytes = (row.saved_activation_bytes or 0) + nbytes
            total.saved_activation_bytes += nbytes
    # the network input (saved by the first layers) leads, code outside every block follows
    rows = ([extra["(input)"]] if "(input)" in extra else []) + blocks + \
        ([extra["(root)"]] if "(root)" in extra else [])
    stages: dict[str, Row] = {}
    for row in rows:
        st = stages.setdefault(row.stage, Row(row.stage, "stage", row.stage))
        st.params += row.params
        st.multiply_adds += row.multiply_adds
        st.elementwise += row.elementwise
        st.memory_access_bytes += row.memory_access_bytes
        st.ops += row.ops
        st.output_shape = row.output_shape
        if row.saved_activation_bytes is not None:
            st.saved_activation_bytes = (st.saved_activation_bytes or 0) + row.saved_activation_bytes
    return rows, list(stages.values()), total


def shape_numel(shape: Shape | None) -> int:
    return numel(shape) if shape is not None else 0
