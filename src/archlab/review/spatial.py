"""Rules about resolution: receptive field, early downsampling, memory per resolution level.

Principles A8 and A9 (convnet-architecture-patterns, how-to-design-a-neural-network-2020).
"""

from __future__ import annotations

import math

from ..ops import numel
from .efficiency import count
from .facts import Facts
from .rule import Rule, register_rule
from .trace import NETWORK_INPUT


def _size(shape) -> str:
    return "x".join(str(s) for s in shape)


@register_rule
class ReceptiveField(Rule):
    id = "receptive-field"
    severity = "warning"
    guideline = "A8 (feature hierarchy; Araujo et al. 2019, receptive fields)"
    summary = "a classifier whose features never see the whole input"
    rationale = ("A classifier pools its last feature map into one vector; if each feature sees "
                 "only part of the input, objects larger than that window are never seen whole.")
    thresholds = {"min_fraction": 1.0}  # receptive field / input size, per axis

    def check(self, facts: Facts, t):
        if not facts.is_classifier:
            return
        if not any(math.prod(n.attrs.get("kernel", (1,))) > 1 for n in facts.nodes):
            return  # no spatial kernels at all (an MLP, a transformer): no receptive field
        len(facts.input_shape) - 1
        rf = facts.receptive_field
        best = None
        for node in facts.nodes:
            # where a spatial map (larger than 1x1) becomes one vector: global pooling, flatten
            # into a dense layer, a mean over the spatial axes
            ins = [j for j in node.inputs if j != NETWORK_INPUT and rf[j] is not None]
            if not ins or not facts.is_spatial_reduction(node):
                continue
            size = rf[ins[0]][0]
            if best is None or min(size) > min(best[1]):
                best = (node, size)
        if best is None:
            return
        node, size = best
        need = tuple(int(s * t["min_fraction"]) for s in facts.input_shape[1:])
        if all(s >= n for s, n in zip(size, need, strict=False)):
            return
        shown = _size(min(s, 10**6) for s in size)
        yield self.finding(
            facts.owner(node.index),
            f"the features pooled into the output see {shown} pixels of the "
            f"{_size(facts.input_shape[1:])} input",
            "add a stage (more downsampling), larger or dilated kernels, so the last feature map "
            "sees the whole input",
            module=node.path, receptive_field=[int(s) for s in size],
            input_size=list(facts.input_shape[1:]),
        )


@register_rule
class MapSmallerThanKernel(Rule):
    id = "map-smaller-than-kernel"
    severity = "warning"
    guideline = "A8 (feature hierarchy)"
    summary = "a convolution whose feature map is smaller than its kernel"
    rationale = ("Downsampled too early, most of the kernel's taps read padding: the weights are "
                 "paid for and computed but see zeros.")
    thresholds: dict = {}

    def check(self, facts: Facts, t):
        for node in facts.layers:
            kernel = node.attrs.get("kernel", ())
            if not kernel or node.attrs.get("transposed") or node.kind == "linear":
                continue
            size = node.input_shapes[0][1:]
            dil = node.attrs.get("dilation", (1,) * len(kernel))
            span = [d * (k - 1) + 1 for k, d in zip(kernel, dil, strict=False)]
            if all(s >= k for s, k in zip(size, span, strict=False)):
                continue
            useful = 1.0
            for s, k in zip(size, span, strict=False):
                useful *= min(s, k) / k
            yield self.finding(
                facts.owner(node.index),
                f"{facts.describe(node)} runs on a {_size(size)} map: at most {useful:.0%} of its "
                f"{_size(kernel)} taps see data, the rest read padding",
                "downsample later (fewer stride-2 layers before this node), use a larger input, "
                "or a smaller kernel here",
                module=node.path, spatial=list(size), kernel=list(kernel),
                useful_fraction=round(useful, 4),
            )


@register_rule
class HighResolutionMemory(Rule):
    id = "high-resolution-memory"
    severity = "info"
    guideline = "A9 (how-to-design-a-neural-network-2020; DeepWaterMap)"
    summary = "activation memory concentrated in the highest-resolution level"
    rationale = ("Doubling channels per 2x downscale halves the activation memory per level, so "
                 "the first level dominates; for large inputs processed in one shot, quadrupling "
                 "channels keeps memory constant across levels and gives every level its share.")
    thresholds = {
        "max_share": 0.5,            # of activation elements in the highest-resolution level
        "min_levels": 3,             # only multi-level (downsampling) networks
        "min_input_pixels": 65536,   # 256x256: the policy is meant for large inputs
    }

    def check(self, facts: Facts, t):
        levels = facts.activation_elements_by_level
        if len(levels) < t["min_levels"] or numel(facts.input_shape[1:]) < t["min_input_pixels"]:
            return
        total = sum(levels.values())
        ordered = sorted(levels.items(), key=lambda kv: -numel(kv[0]))
        top_size, top = ordered[0]
        share = top / total
        if share <= t["max_share"]:
            return
        table = ", ".join(f"{_size(k)} {v / total:.0%}" for k, v in ordered[:4])
        yield self.finding(
            "",
            f"the {_size(top_size)} level holds {share:.0%} of activation memory "
            f"({count(top)} of {count(total)} elements; {table})",
            "quadruple the channels at each 2x downscale (width policy: quadruple) and start "
            "narrower, so every level holds about the same memory (A9)",
            share=round(share, 4), levels={_size(k): v for k, v in ordered},
        )
