"""Speed rules from ShuffleNetV2's four guidelines (Ma et al. 2018, "ShuffleNet V2: Practical
Guidelines for Efficient CNN Architecture Design"), principles B3-B7.

Speed depends on memory access, not only on multiply-adds. Memory access (MAC in the paper) is
counted per op in elements: inputs read + weights read + outputs written (x4 bytes at float32).
"""

from __future__ import annotations

import math

from ..ops import numel
from .facts import Facts
from .rule import Rule, register_rule
from .trace import NETWORK_INPUT


def count(n: float) -> str:
    """1234567 -> '1.23 M' (people read magnitudes, JSON keeps the exact figure)."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n:.3g}"


def equal_width_minimum(hw: int, multiply_adds: int) -> float:
    """ShuffleNetV2 eq. (1): for a 1x1 conv with B = h*w*c1*c2 multiply-adds,
    MAC >= 2*sqrt(h*w*B) + B/(h*w), with equality when c1 == c2."""
    return 2 * math.sqrt(hw * multiply_adds) + multiply_adds / hw


def balanced_minimum(hw_in: int, hw_out: int, c1c2: int) -> tuple[float, float, float]:
    """The same bound for a strided 1x1 conv (reads hw_in*c1, writes hw_out*c2): by AM-GM,
    hw_in*c1 + hw_out*c2 >= 2*sqrt(hw_in*hw_out*c1*c2), with equality at
    c1/c2 = hw_out/hw_in. Returns (minimum, best c1, best c2); at stride 1 it is eq. (1)."""
    minimum = 2 * math.sqrt(hw_in * hw_out * c1c2) + c1c2
    return minimum, math.sqrt(c1c2 * hw_out / hw_in), math.sqrt(c1c2 * hw_in / hw_out)


@register_rule
class UnequalWidth(Rule):
    id = "unequal-1x1-width"
    severity = "info"
    guideline = "ShuffleNetV2 G1; B4"
    summary = "1x1 convolution whose input and output widths differ (memory access above the minimum)"
    rationale = ("For a fixed number of multiply-adds, a 1x1 convolution reads and writes the "
                 "fewest elements when its input and output have the same width; bottlenecks and "
                 "expansions pay extra memory access for the same compute.")
    thresholds = {
        # 1.2 = widths about 1:4 apart; 1:2 costs only 6% extra and is everywhere
        "min_ratio": 1.2,
    }

    def check(self, facts: Facts, t):
        for node in facts.layers:
            kernel = node.attrs.get("kernel", ())
            if (not kernel or any(k != 1 for k in kernel) or node.attrs.get("groups", 1) != 1
                    or node.attrs.get("transposed") or len(node.output) < 2):
                continue
            if facts.is_final_layer(node.index) or NETWORK_INPUT in node.inputs:
                continue  # widths set by the task (classes) or the data (input channels)
            c1, c2 = node.input_shapes[0][0], node.output[0]
            hw_in, hw = numel(node.input_shapes[0][1:]), numel(node.output[1:])
            macs = node.op.multiply_adds
            if macs == 0:
                continue
            minimum, best1, best2 = balanced_minimum(hw_in, hw, c1 * c2)
            ratio = node.op.memory_access / minimum
            if ratio < t["min_ratio"]:
                continue
            size = "x".join(str(s) for s in node.output[1:])
            best = f"{round(best1)}->{round(best2)}"
            yield self.finding(
                facts.owner(node.index),
                f"1x1 conv {c1}->{c2} on {size}: memory access {count(node.op.memory_access)} "
                f"elements, {ratio:.2f}x the equal-width minimum {count(minimum)} for the same "
                f"{count(macs)} multiply-adds",
                f"keep both ends equal (e.g. {best} has the same multiply-adds), or "
                f"disable the rule with a reason if the bottleneck/expansion is intended",
                module=node.path, in_channels=c1, out_channels=c2, spatial=list(node.output[1:]),
                memory_access=node.op.memory_access, equal_width_minimum=round(minimum),
                ratio=round(ratio, 4), multiply_adds=macs,
            )


@register_rule
class GroupConvMemory(Rule):
    id = "group-conv-memory"
    severity = "info"
    guideline = "ShuffleNetV2 G2; B5"
    summary = "grouped convolution whose memory access exceeds a dense one of equal multiply-adds"
    rationale = ("Group convolution cuts multiply-adds by the group count, so at a fixed budget "
                 "the channels grow by sqrt(groups) and memory access grows with them; heavy "
                 "grouping makes a layer memory-bound.")
    thresholds = {
        "min_groups": 2,           # groups at or above this are checked
        "min_ratio": 1.3,          # memory access vs the dense equivalent
        "include_depthwise": False,  # depthwise (groups == channels) is the MobileNet trade-off
    }

    def check(self, facts: Facts, t):
        for node in facts.layers:
            groups = node.attrs.get("groups", 1)
            if groups < t["min_groups"] or node.kind == "linear":
                continue
            c1 = node.input_shapes[0][0]
            if groups == c1 and not t["include_depthwise"]:
                continue
            op = node.op
            weights = op.weights_read
            acts = numel(node.input_shapes[0]) + numel(node.output)
            # dense conv with the same multiply-adds: both widths divided by sqrt(groups)
            dense = acts / math.sqrt(groups) + weights
            ratio = op.memory_access / dense
            if ratio < t["min_ratio"]:
                continue
            intensity = op.multiply_adds / op.memory_access
            yield self.finding(
                facts.owner(node.index),
                f"{facts.describe(node)}: memory access {count(op.memory_access)} elements for "
                f"{count(op.multiply_adds)} multiply-adds ({intensity:.1f} per element); a dense "
                f"conv with the same multiply-adds needs {count(dense)} ({ratio:.2f}x less)",
                f"use fewer groups (e.g. groups={max(1, groups // 4)}) or a channel split as in the "
                f"ShuffleNetV2 unit; keep groups only if accuracy needs them",
                module=node.path, groups=groups, memory_access=op.memory_access,
                dense_equivalent_memory_access=round(dense), ratio=round(ratio, 4),
                multiply_adds=op.multiply_adds,
            )


def merge_inputs(facts: Facts, i: int) -> list[int]:
    """Inputs of a merge, with chains of the same binary merge collapsed:
    ((a + b) + c) + d has the four inputs a, b, c, d."""
    node = facts.nodes[i]
    out: list[int] = []
    for j in facts.real_inputs(i):
        inner = facts.nodes[j] if j >= 0 else None
        if (inner is not None and inner.kind == node.kind and node.kind in ("add", "cat")
                and len(facts.real_consumers(j)) == 1 and len(inner.inputs) > 1):
            out.extend(merge_inputs(facts, j))
        else:
            out.append(j)
    return out


def top_merges(facts: Facts, kinds: set[str]) -> list[int]:
    """Merges of the given kinds that are not absorbed into a following merge of their kind."""
    found = []
    for node in facts.nodes:
        if node.kind not in kinds or len(node.inputs) < 2:
            continue
        nxt = facts.real_consumers(node.index)
        if len(nxt) == 1 and facts.nodes[nxt[0]].kind == node.kind:
            continue
        found.append(node.index)
    return found


@register_rule
class Fragmentation(Rule):
    id = "fragmentation"
    severity = "info"
    guideline = "ShuffleNetV2 G3; B6"
    summary = "a block runs many parallel branches, or very many small ops"
    rationale = ("Many small ops in parallel branches reduce the degree of parallelism and add "
                 "launch and synchronisation overhead; a block of four parallel fragments runs "
                 "markedly slower than one op of the same multiply-adds on a GPU.")
    thresholds = {
        "max_branches": 3,       # Inception's 4 parallel branches are the classic case
        "max_ops_per_node": 50,  # the zoo's blocks hold at most 32 ops; an unrolled RNN ~1300
    }

    def check(self, facts: Facts, t):
        yield from self._branches(facts, t)
        yield from self._small_ops(facts, t)

    def _small_ops(self, facts: Facts, t):
        """Nodes made of many small ops in sequence (an unrolled recurrence, a hand-fused
        activation written op by op)."""
        per_node: dict[str, list] = {}
        for node in facts.nodes:
            if node.op is not None:
                per_node.setdefault(facts.owner(node.index), []).append(node)
        for owner, nodes in per_node.items():
            if len(nodes) <= t["max_ops_per_node"] or not owner:
                continue
            macs = sum(n.op.multiply_adds for n in nodes)
            share_ops = len(nodes) / max(1, facts.op_count)
            share_macs = macs / max(1, facts.total_multiply_adds)
            timing, evidence = self._timing(facts, {owner})
            yield self.finding(
                owner,
                f"{len(nodes)} ops in this node, {share_ops:.1%} of the network's ops for "
                f"{share_macs:.1%} of its multiply-adds{timing}",
                "use a fused kernel for the whole node (nn.LSTM/nn.GRU for recurrences, "
                "torch.compile) or fewer, larger ops",
                ops=len(nodes), share_of_ops=round(share_ops, 4),
                share_of_multiply_adds=round(share_macs, 4), **evidence,
            )

    @staticmethod
    def _timing(facts: Facts, owners: set[str]) -> tuple[str, dict]:
        if not (facts.node_seconds and facts.forward_seconds):
            return "", {}
        # nodes holding the ops, timed by the latency measurement
        seconds = sum(v for p, v in facts.node_seconds.items()
                      if any(o == p or o.startswith(p + ".") for o in owners))
        share_time = min(1.0, seconds / facts.forward_seconds)
        return (f"; measured: {share_time:.1%} of the forward time",
                {"share_of_time": round(share_time, 4), "seconds": seconds})

    def _branches(self, facts: Facts, t):
        costly = facts.mask(lambda n: n.op is not None)
        reused = facts.mask(lambda n: n.attrs.get("reused"))
        for i in top_merges(facts, {"add", "cat", "stack", "sum_inputs"}):
            inputs = merge_inputs(facts, i)
            if len(inputs) <= t["max_branches"]:
                continue
            sets = [facts.ancestors[j] if j >= 0 else 0 for j in inputs]
            common = sets[0]
            for bits in sets[1:]:
                common &= bits
            branches = [bits & ~common for bits in sets]
            busy = [b for b in branches if b & costly]
            if len(busy) <= t["max_branches"]:
                continue
            everything = 0
            for b in busy:
                everything |= b
            if everything & reused:
                continue  # time steps of one recurrence sharing weights, not fragments
            ops = facts.members(everything & costly)
            macs = sum(facts.nodes[k].op.multiply_adds for k in ops)
            share_ops = len(ops) / max(1, facts.op_count)
            share_macs = macs / max(1, facts.total_multiply_adds)
            timing, evidence = self._timing(facts, {facts.owner(k) for k in ops} | {facts.owner(i)})
            yield self.finding(
                facts.owner(i),
                f"{len(busy)} parallel branches ({len(ops)} ops) merge here by "
                f"{facts.nodes[i].kind}: {share_ops:.1%} of the network's ops for "
                f"{share_macs:.1%} of its multiply-adds{timing}",
                "use fewer, wider branches (at most "
                f"{t['max_branches']}) or fuse the small convolutions into one",
                module=facts.nodes[i].path, branches=len(busy), ops=len(ops),
                share_of_ops=round(share_ops, 4), share_of_multiply_adds=round(share_macs, 4),
                **evidence,
            )


ELEMENTWISE_FAMILIES = ("act", "norm")


def is_elementwise(node) -> bool:
    if node.op is None:
        return False
    if node.family in ELEMENTWISE_FAMILIES:
        return True
    return node.kind in ("add", "sub", "mul", "div")


@register_rule
class ElementwiseCost(Rule):
    id = "elementwise-cost"
    severity = "info"
    guideline = "ShuffleNetV2 G4; B7"
    summary = "element-wise ops take a large share of the network's memory access"
    rationale = ("Activations, additions and normalisations do few multiply-adds but read and "
                 "write whole tensors; their memory access is not free and can dominate run time.")
    thresholds = {
        # share of all memory access; norms that follow a conv/linear are left out when
        # they can be folded into it for inference (count_foldable_norms = false). The zoo's
        # conv nets sit at 0.2-0.37 this way, a small pre-norm transformer at 0.41
        "max_share": 0.45,
        "count_foldable_norms": False,
    }

    def check(self, facts: Facts, t):
        total = facts.total_memory_access
        if total == 0:
            return
        by_kind: dict[str, int] = {}
        for node in facts.nodes:
            if not is_elementwise(node):
                continue
            if node.family == "norm" and not t["count_foldable_norms"]:
                before = facts.real_inputs(node.index)
                if before and before[0] >= 0 and facts.nodes[before[0]].family == "weight":
                    continue
            by_kind[node.kind] = by_kind.get(node.kind, 0) + node.op.memory_access
        spent = sum(by_kind.values())
        share = spent / total
        if share <= t["max_share"]:
            return
        top = sorted(by_kind.items(), key=lambda kv: -kv[1])[:3]
        parts = ", ".join(f"{k} {v / total:.0%}" for k, v in top)
        yield self.finding(
            "",
            f"element-wise ops account for {share:.0%} of all memory access "
            f"({count(spent)} of {count(total)} elements; {parts})",
            "fuse activations into the preceding op, fold norms into convs for inference, and "
            "drop element-wise ops where a block has several (ShuffleNetV2 keeps one branch "
            "free of them)",
            share=round(share, 4), elementwise_memory_access=spent, total_memory_access=total,
            by_kind=dict(top),
        )
