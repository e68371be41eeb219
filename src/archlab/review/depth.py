"""Rules about depth and data flow: plain stacks, normalisation, saturating activations, merges.

Principles B9 and B10 (convnet-architecture-patterns, deep-learning-designs,
model-design-cheat-sheet).
"""

from __future__ import annotations

from ..ops import numel
from .efficiency import count, merge_inputs, top_merges
from .facts import Facts
from .rule import Rule, register_rule


@register_rule
class DeepPlainStack(Rule):
    id = "deep-plain-stack"
    severity = "warning"
    guideline = "B10, A5 (convnet-architecture-patterns; He et al. 2016)"
    summary = "a long run of weight layers with no skip connection around any of them"
    rationale = ("Every layer a gradient must pass adds noise and shrinks or grows it; past a "
                 "dozen plain layers training stalls (VGG needed staged initialisation). A skip "
                 "connection gives the gradient a short path.")
    thresholds = {"max_plain_layers": 10}

    def check(self, facts: Facts, t):
        # the longest run on the spine: runs inside a bypassed branch (a residual branch) are
        # not plain stacks, their gradient has the skip around them
        runs = facts.plain_run
        end = max(sorted(facts.spine), key=lambda i: runs[i], default=None)
        if end is None or runs[end] <= t["max_plain_layers"]:
            return
        longest = self._layers_of_run(facts, end)
        first, last = facts.nodes[longest[0]], facts.nodes[longest[-1]]
        yield self.finding(
            facts.owner(first.index),
            f"{runs[end]} weight layers in a row with no skip connection "
            f"(from {first.path or first.kind} to {last.path or last.kind})",
            "add residual connections around pairs of layers (A5: residual wrapper, with a "
            "projection where shapes change) or shorten the stack",
            plain_layers=runs[end], first=first.path, last=last.path,
            has_normalisation=facts.has_normalisation,
        )

    @staticmethod
    def _layers_of_run(facts: Facts, end: int) -> list[int]:
        """The weight layers of the run ending at ``end``, first to last (one path back)."""
        runs = facts.plain_run
        layers, current = [], end
        while current >= 0 and runs[current] > 0:
            if facts.is_layer(facts.nodes[current]):
                layers.append(current)
            ins = [j for j in facts.nodes[current].inputs if j >= 0]
            if not ins:
                break
            current = max(ins, key=lambda j: runs[j])
        return layers[::-1]


@register_rule
class NoNormalisation(Rule):
    id = "no-normalisation"
    severity = "warning"
    guideline = "B10, A6 (deep-learning-designs; Ioffe & Szegedy 2015)"
    summary = "a deep network without any normalisation layer"
    rationale = ("Normalisation keeps activations and gradients in range through depth; deep "
                 "stacks without it are slow and fragile to train.")
    thresholds = {"min_depth": 10}

    def check(self, facts: Facts, t):
        depth = facts.network_depth
        if depth < t["min_depth"] or facts.has_normalisation:
            return
        yield self.finding(
            "",
            f"{depth} weight layers deep and no normalisation layer anywhere",
            "add batch norm after each conv (norm: batch), or layer norm for sequence models (C8)",
            depth=depth,
        )


@register_rule
class SaturatingActivation(Rule):
    id = "saturating-activation"
    severity = "warning"
    guideline = "B10, A13 (deep-learning-designs)"
    summary = "sigmoid or tanh as the activation of hidden layers in a deep stack"
    rationale = ("Sigmoid and tanh saturate: their gradient is at most 0.25 (sigmoid) or 1 (tanh) "
                 "and near zero for large inputs, so stacked they make gradients vanish.")
    thresholds = {"min_depth": 6}

    def check(self, facts: Facts, t):
        if facts.network_depth < t["min_depth"]:
            return
        finals = set(facts.outputs)
        hits = [i for i in sorted(facts.spine) if facts.nodes[i].kind in ("sigmoid", "tanh")
                and i not in finals and facts.longest_depth[i] < facts.network_depth]
        if not hits:
            return
        first = facts.nodes[hits[0]]
        yield self.finding(
            facts.owner(first.index),
            f"{len(hits)} hidden {first.kind} activation(s) on the main path of a "
            f"{facts.network_depth}-layer network",
            "use relu (or leaky_relu/silu) in hidden layers; keep sigmoid/tanh for gates and "
            "outputs",
            count=len(hits), activation=first.kind, modules=[facts.nodes[i].path for i in hits][:10],
        )


@register_rule
class ManyBranchSum(Rule):
    id = "many-branch-sum"
    severity = "warning"
    guideline = "B9, A4 (model-design-cheat-sheet)"
    summary = "a sum of more than 3 branches"
    rationale = ("Summing many branches mixes them with fixed equal weights; with too many inputs "
                 "the sum may not perform well. Concatenation plus a 1x1 projection, or learned "
                 "weights per branch, let the network weigh them.")
    thresholds = {"max_inputs": 3}

    def check(self, facts: Facts, t):
        for i in top_merges(facts, {"add", "sum_inputs"}):
            inputs = merge_inputs(facts, i)
            if len(inputs) <= t["max_inputs"]:
                continue
            yield self.finding(
                facts.owner(i),
                f"{len(inputs)} branches summed with equal fixed weights",
                "merge with concat + a 1x1 projection (merge: concat, project: true) or a "
                "weighted merge with a learned weight per branch",
                module=facts.nodes[i].path, inputs=len(inputs),
            )


@register_rule
class ConcatGrowth(Rule):
    id = "concat-growth"
    severity = "info"
    guideline = "B9 (model-design-cheat-sheet)"
    summary = "concatenation in a very deep network holds much of the activation memory"
    rationale = ("Each concatenation keeps every input alive and widens the following layers: in "
                 "very deep networks this costs memory and parameters, and invites overfitting.")
    thresholds = {
        "min_depth": 40,        # weight layers on the longest path
        "min_share": 0.25,      # of all activation elements written
    }

    def check(self, facts: Facts, t):
        if facts.network_depth < t["min_depth"]:
            return
        cats = [n for n in facts.nodes if n.kind in ("cat", "stack") and len(n.inputs) > 1]
        if not cats:
            return
        total = sum(facts.activation_elements_by_level.values()) or 1
        held = sum(numel(n.output) for n in cats)
        share = held / total
        if share < t["min_share"]:
            return
        widest = max(cats, key=lambda n: n.output[0] if n.output else 0)
        yield self.finding(
            "",
            f"{len(cats)} concatenations in a {facts.network_depth}-layer network write "
            f"{share:.0%} of all activation elements ({count(held)}); the widest reaches "
            f"{widest.output[0]} channels",
            "use sum merges or residual connections for depth, keep concatenation for few, "
            "short paths (or compress with a 1x1 conv after each, as DenseNet's transitions do)",
            concatenations=len(cats), share_of_activations=round(share, 4),
            widest_channels=widest.output[0], depth=facts.network_depth,
        )
