"""What the rules read: the recorded data flow plus the figures derived from it.

One :class:`Facts` object per reviewed network, the same for a design and for a hand-written
module: the data flow (:mod:`archlab.review.trace`), the per-op cost records
(:class:`archlab.ops.Op`: multiply-adds, memory access), the node each op belongs to (a design
node path, or the module path for a hand-written module), and structure the rules share:

* ``spine``: the ops every input-to-output path goes through (a skip connection takes the ops it
  bypasses off the spine), found by counting paths;
* ``longest_depth``: weight layers on the longest path to each op;
* ``receptive_field``: per op and spatial axis, the input pixels one output element sees
  (Araujo et al. 2019, "Computing receptive fields of convolutional neural networks").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from ..ops import Shape, numel
from .trace import NETWORK_INPUT, Flow, FlowNode

LAYER_KINDS = {"conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
               "conv_transpose3d", "linear"}
"""Ops that are a network 'layer' in the design texts' sense (a weight layer with channels)."""

GATE_ACTIVATIONS = {"sigmoid", "hardsigmoid", "softmax", "tanh"}
BYPASS_MERGES = {"add", "sub", "cat", "stack", "sum_inputs"}
"""Merges through which a gradient reaches an earlier op unchanged (a skip connection)."""

MIXING_KINDS = {"matmul", "bmm", "scaled_dot_product_attention", "einsum", "lstm", "gru", "rnn_tanh",
                "rnn_relu", "multi_head_attention_forward", "transformer_encoder_layer_fwd",
                "native_multi_head_attention"}
"""Ops that mix every position with every other (attention scores, recurrences)."""

REDUCING_VIEWS = {"flatten", "view", "reshape"}
REDUCTIONS = {"mean", "sum", "amax", "max", "amin", "min", "logsumexp"}

GLOBAL = 10**9
"""Receptive-field size standing for 'the whole input' (after global pooling or a dense layer)."""


@dataclass
class Facts:
    """The reviewed network. Indices refer to ``flow.nodes`` (execution order)."""

    flow: Flow
    name: str
    owners: list[str]                                   # node path each op is reported on
    node_blocks: dict[str, str] = field(default_factory=dict)    # design node path -> block name
    node_lines: dict[str, tuple[str | None, int | None]] = field(default_factory=dict)
    loss: str | None = None                             # from the review config, if given
    # measured forward seconds per node (outermost node paths) and in total, when asked for
    node_seconds: dict[str, float] | None = None
    forward_seconds: float | None = None

    # ---- basic access ------------------------------------------------------------------------
    @property
    def nodes(self) -> list[FlowNode]:
        return self.flow.nodes

    @property
    def input_shape(self) -> Shape:
        return self.flow.input_shape

    @cached_property
    def consumers(self) -> list[list[int]]:
        return self.flow.consumers()

    def source(self, i: int) -> int:
        """Follow views back to the op that really produced node ``i``'s data."""
        while i >= 0 and self.nodes[i].kind == "view" and self.nodes[i].inputs:
            i = self.nodes[i].inputs[0]
        return i

    def real_inputs(self, i: int) -> list[int]:
        return [self.source(j) for j in self.nodes[i].inputs]

    def real_consumers(self, i: int) -> list[int]:
        """Consumers of node ``i``, looking through views."""
        out: list[int] = []
        for j in self.consumers[i]:
            if self.nodes[j].kind == "view":
                out.extend(self.real_consumers(j))
            else:
                out.append(j)
        return out

    @cached_property
    def layers(self) -> list[FlowNode]:
        """Weight layers, each once: a weight used again (an unrolled recurrence) is skipped."""
        return [n for n in self.nodes if self.is_layer(n)]

    @staticmethod
    def is_layer(node: FlowNode) -> bool:
        return node.kind in LAYER_KINDS and not node.attrs.get("reused")

    @cached_property
    def outputs(self) -> list[int]:
        return [self.source(i) for i in self.flow.outputs if i >= 0]

    def follow_chain(self, i: int) -> list[FlowNode]:
        """The norm/activation ops that directly follow op ``i`` with no fork in between
        (conv -> bn -> relu): what 'the layer ends in'."""
        chain: list[FlowNode] = []
        current = i
        while True:
            nxt = self.real_consumers(current)
            if len(nxt) != 1:
                return chain
            node = self.nodes[nxt[0]]
            if node.family not in ("norm", "act") or len(self.real_inputs(node.index)) != 1:
                return chain
            chain.append(node)
            current = node.index

    def owner(self, i: int) -> str:
        return self.owners[i]

    def describe(self, node: FlowNode) -> str:
        """A short human label: 'conv2d 3x3 64->128 /2'."""
        if node.kind in LAYER_KINDS and node.kind != "linear":
            k = "x".join(str(v) for v in node.attrs.get("kernel", ()))
            cin = node.input_shapes[0][0] if node.input_shapes else "?"
            text = f"{node.kind} {k} {cin}->{node.output[0]}"
            if node.attrs.get("groups", 1) > 1:
                text += f" groups={node.attrs['groups']}"
            if any(s > 1 for s in node.attrs.get("stride", ())):
                text += f" stride {node.attrs['stride'][0]}"
            return text
        if node.kind == "linear":
            cin = node.input_shapes[0][-1] if node.input_shapes else "?"
            return f"linear {cin}->{node.output[-1]}"
        return node.kind

    # ---- totals ------------------------------------------------------------------------------
    @cached_property
    def total_memory_access(self) -> int:
        return sum(n.op.memory_access for n in self.nodes if n.op is not None)

    @cached_property
    def total_multiply_adds(self) -> int:
        return sum(n.op.multiply_adds for n in self.nodes if n.op is not None)

    @cached_property
    def op_count(self) -> int:
        return sum(1 for n in self.nodes if n.op is not None)

    @cached_property
    def is_classifier(self) -> bool:
        """A network that maps a spatial input to one vector of scores."""
        raw = [i for i in self.flow.outputs if i >= 0]
        return len(self.input_shape) >= 2 and len(raw) == 1 and len(self.nodes[raw[0]].output) == 1

    # ---- structure ---------------------------------------------------------------------------
    @cached_property
    def ancestors(self) -> list[int]:
        """Per op, a bit set (a Python int, bit k = op k) of every op it depends on, itself
        included; the network input is left out. Bit sets keep this linear-time in practice
        even for unrolled recurrences with thousands of ops."""
        result: list[int] = []
        for node in self.nodes:
            acc = 1 << node.index
            for j in node.inputs:
                if j >= 0:
                    acc |= result[j]
            result.append(acc)
        return result

    def mask(self, predicate) -> int:
        """Bit set of the ops for which ``predicate(node)`` holds."""
        out = 0
        for node in self.nodes:
            if predicate(node):
                out |= 1 << node.index
        return out

    @staticmethod
    def members(bits: int) -> list[int]:
        out = []
        while bits:
            low = bits & -bits
            out.append(low.bit_length() - 1)
            bits ^= low
        return out

    @cached_property
    def spine(self) -> frozenset[int]:
        """Ops on every path from the input to the outputs: paths(in->n) * paths(n->out) equals
        paths(in->out) exactly when no path avoids n. A skip connection takes the ops it
        bypasses off the spine."""
        n = len(self.nodes)
        from_input = [0] * n
        for node in self.nodes:
            from_input[node.index] = sum(1 if j == NETWORK_INPUT else from_input[j]
                                         for j in node.inputs)
        to_output = [0] * n
        outs = set(self.flow.outputs)
        for node in reversed(self.nodes):
            i = node.index
            to_output[i] += 1 if i in outs else 0
            for j in node.inputs:
                if j >= 0:
                    to_output[j] += to_output[i]
        total = sum(from_input[i] for i in outs if i >= 0)
        if total == 0:
            return frozenset()
        return frozenset(i for i in range(n) if from_input[i] * to_output[i] == total)

    @cached_property
    def longest_depth(self) -> list[int]:
        """Weight layers on the longest path from the input up to and including each op."""
        depth: list[int] = []
        for node in self.nodes:
            before = max((depth[j] for j in node.inputs if j >= 0), default=0)
            depth.append(before + (1 if self.is_layer(node) else 0))
        return depth

    @cached_property
    def shortest_depth(self) -> list[int]:
        """Weight layers on the shortest path from the input to each op: the path a gradient
        takes through skip connections."""
        depth: list[int] = []
        for node in self.nodes:
            before = min((0 if j == NETWORK_INPUT else depth[j] for j in node.inputs), default=0)
            depth.append(before + (1 if self.is_layer(node) else 0))
        return depth

    def is_shortcut_merge(self, i: int) -> bool:
        """A merge whose inputs arrive over paths of different weight depth: one of them is a
        skip connection (residual add, U-Net concat, Inception's 1x1 branch)."""
        node = self.nodes[i]
        if node.kind not in BYPASS_MERGES or len(set(self.real_inputs(i))) < 2:
            return False
        depths = {0 if j == NETWORK_INPUT else self.shortest_depth[j] for j in node.inputs}
        return len(depths) > 1

    @cached_property
    def plain_run(self) -> list[int]:
        """Per op: weight layers since the last skip connection, counted along the path the data
        takes (parallel branches of equal depth, as in a Fire module, do not break a run)."""
        run: list[int] = []
        for node in self.nodes:
            if self.is_shortcut_merge(node.index):
                run.append(0)
                continue
            before = max((run[j] for j in node.inputs if j >= 0), default=0)
            run.append(before + (1 if self.is_layer(node) else 0))
        return run

    def in_gate(self, i: int) -> bool:
        """True when op ``i`` only feeds a gate: a branch ending in a sigmoid-like activation
        that multiplies the main path (squeeze-and-excitation, attention gates)."""
        current = i
        seen_gate = False
        for _ in range(12):
            nxt = self.real_consumers(current)
            if len(nxt) != 1:
                return False
            node = self.nodes[nxt[0]]
            if node.kind in GATE_ACTIVATIONS:
                seen_gate = True
            elif node.kind == "mul":
                return seen_gate
            current = node.index
        return False

    def is_final_layer(self, i: int) -> bool:
        """True for a layer whose output reaches a network output through norms, activations,
        pooling and views only: its width is the task's (classes, output channels)."""
        outs = set(self.outputs)
        current = i
        while current not in outs:
            nxt = self.real_consumers(current)
            if len(nxt) != 1 or self.nodes[nxt[0]].family not in ("act", "norm", "pool"):
                return False
            current = nxt[0]
        return True

    @cached_property
    def network_depth(self) -> int:
        return max((self.longest_depth[i] for i in self.outputs), default=0)

    @cached_property
    def has_normalisation(self) -> bool:
        return any(n.family == "norm" for n in self.nodes)

    # ---- receptive field ---------------------------------------------------------------------
    @cached_property
    def receptive_field(self) -> list[tuple[tuple[int, ...], tuple[float, ...]] | None]:
        """Per op: (receptive field per spatial axis in input pixels, jump = input pixels between
        neighbouring outputs); ``None`` once the data is no longer spatial. ``GLOBAL`` = whole
        input."""
        spatial = len(self.input_shape) - 1
        start = ((1,) * spatial, (1.0,) * spatial) if spatial > 0 else None
        rf: list = []
        for node in self.nodes:
            ins = [start if j == NETWORK_INPUT else rf[j] for j in node.inputs]
            ins = [r for r in ins if r is not None]
            if not ins:
                rf.append(None)
                continue
            size = tuple(max(r[0][a] for r in ins) for a in range(spatial))
            jump = tuple(max(r[1][a] for r in ins) for a in range(spatial))
            if node.kind in MIXING_KINDS or node.attrs.get("reused"):
                # attention and recurrences connect every position with every other
                rf.append(((GLOBAL,) * spatial, jump))
                continue
            rank = len(node.output)
            if rank != spatial + 1:
                # another layout (attention heads, a vector): carry the field along unchanged
                rf.append((size, jump))
                continue
            kernel = node.attrs.get("kernel")
            if node.attrs.get("global_"):
                size = (GLOBAL,) * spatial
            elif kernel and len(kernel) == spatial:
                dil = node.attrs.get("dilation", (1,) * spatial)
                stride = node.attrs.get("stride", (1,) * spatial)
                if node.attrs.get("transposed"):
                    jump = tuple(j / s for j, s in zip(jump, stride, strict=False))
                    size = tuple(min(GLOBAL, int(sz + (d * (k - 1)) * j))
                                 for sz, k, d, j in zip(size, kernel, dil, jump, strict=False))
                else:
                    size = tuple(min(GLOBAL, int(sz + (d * (k - 1)) * j))
                                 for sz, k, d, j in zip(size, kernel, dil, jump, strict=False))
                    jump = tuple(j * s for j, s in zip(jump, stride, strict=False))
            elif node.attrs.get("scale"):
                jump = tuple(j / max(s, 1e-9) for j, s in zip(jump, node.attrs["scale"], strict=False))
            rf.append((size, jump))
        return rf

    def is_spatial_reduction(self, node: FlowNode) -> bool:
        """Where a map larger than one position becomes one vector per sample: global pooling,
        a mean over the positions, a flatten into a dense layer."""
        spatial = len(self.input_shape) - 1
        if node.attrs.get("global_"):
            return True
        if not node.input_shapes or len(node.input_shapes[0]) != spatial + 1:
            return False
        if numel(node.input_shapes[0][1:]) <= 1 or len(node.output) >= spatial + 1:
            return False
        return node.kind in REDUCTIONS or node.attrs.get("op") in REDUCING_VIEWS

    # ---- memory per resolution level --------------------------------------------------------
    @cached_property
    def activation_elements_by_level(self) -> dict[Shape, int]:
        """Output elements written per spatial size (ops computed in place add nothing): the
        activations a training pass keeps, level by level (A9)."""
        levels: dict[Shape, int] = {}
        spatial = len(self.input_shape) - 1
        if spatial <= 0:
            return levels
        for node in self.nodes:
            if node.op is None or node.attrs.get("inplace") or len(node.output) != spatial + 1:
                continue
            key = tuple(node.output[1:])
            levels[key] = levels.get(key, 0) + numel(node.output)
        return levels


def outermost(paths) -> list[str]:
    """Paths none of whose dotted ancestors is also listed (so timings do not nest)."""
    chosen = sorted({p for p in paths if p}, key=len)
    kept: list[str] = []
    for p in chosen:
        if not any(p.startswith(k + ".") for k in kept):
            kept.append(p)
    return kept


def owners_for(flow: Flow, node_paths: list[str] | None) -> list[str]:
    """The node each op is reported on: the longest design node path that is the op's module
    path or a dotted prefix of it; without a design, the op's own module path."""
    if not node_paths:
        return [n.path for n in flow.nodes]
    ordered = sorted(node_paths, key=len, reverse=True)
    out = []
    for n in flow.nodes:
        match = next((p for p in ordered if n.path == p or n.path.startswith(p + ".")), n.path)
        out.append(match)
    return out
