"""Rules about single layers: their width, their ending, their kernels, their bias.

Principles A6, A12, A13, B8 and the hardware notes of the design texts.
"""

from __future__ import annotations

import math

from ..ops import numel
from .efficiency import count
from .facts import Facts
from .rule import Rule, register_rule

DYING_ACTIVATIONS = {"relu", "relu6"}
"""Activations with a zero gradient for every negative input: a unit can die for good."""

CHANNEL_NORMS = {"batch_norm", "instance_norm"}
"""Norms that subtract a per-channel mean, which cancels a per-channel bias exactly."""


def _channels(node) -> int:
    return node.output[-1] if node.kind == "linear" else node.output[0]


@register_rule
class NarrowReLU(Rule):
    id = "narrow-relu"
    severity = "warning"
    guideline = "A12, A13 (how-to-design-a-neural-network-2020)"
    summary = "a very narrow layer ends in ReLU"
    rationale = ("With 8 or fewer units, a few dead ReLUs (negative for every input, so no "
                 "gradient) collapse what the layer passes on; MobileNetV2 keeps its bottlenecks "
                 "linear for this reason.")
    thresholds = {"max_channels": 8}

    def check(self, facts: Facts, t):
        for node in facts.layers:
            width = _channels(node)
            if width > t["max_channels"] or facts.is_final_layer(node.index):
                continue  # the final layer is the final-activation rule's
            chain = facts.follow_chain(node.index)
            if chain and facts.in_gate(chain[-1].index):
                continue  # a gate's squeeze layer: dead units fix the gate, the main path lives
            act = next((n for n in chain if n.family == "act"), None)
            if act is None or act.kind not in DYING_ACTIVATIONS:
                continue
            yield self.finding(
                facts.owner(node.index),
                f"{facts.describe(node)} ends in {act.kind} with only {width} channels: a few "
                f"dead units silence most of this layer",
                "end the layer linear (act: none), as MobileNetV2's linear bottlenecks do, or use "
                "leaky_relu/prelu, or widen it above "
                f"{t['max_channels']} channels",
                module=node.path, channels=width, activation=act.kind, activation_module=act.path,
            )


@register_rule
class BiasBeforeNorm(Rule):
    id = "bias-before-norm"
    severity = "warning"
    guideline = "A6 (convnet-architecture-patterns; Ioffe & Szegedy 2015)"
    summary = "a layer has a bias that the following normalisation cancels"
    rationale = ("Batch and instance norm subtract the per-channel mean, so a per-channel bias "
                 "before them has no effect on the output: parameters and work for nothing.")
    thresholds: dict = {}

    def check(self, facts: Facts, t):
        for node in facts.layers:
            if not node.attrs.get("bias"):
                continue
            chain = facts.follow_chain(node.index)
            if not chain or chain[0].kind not in CHANNEL_NORMS:
                continue
            width = _channels(node)
            yield self.finding(
                facts.owner(node.index),
                f"{facts.describe(node)} has a bias ({width} parameters) that the following "
                f"{chain[0].kind} cancels exactly",
                "set bias: false on this layer (archlab's conv does so by default when a norm "
                "follows)",
                module=node.path, wasted_parameters=width, norm=chain[0].kind,
            )


@register_rule
class SeparableInputLayer(Rule):
    id = "separable-input-layer"
    severity = "warning"
    guideline = "B8 (how-to-design-a-neural-network-2020)"
    summary = "depthwise-separable convolution on an input with 3 or fewer channels"
    rationale = ("A depthwise conv on an RGB input learns only 3 spatial filters; the standard "
                 "conv it replaces is cheap there anyway, so separability buys little and loses "
                 "most of the first layer's spatial filters.")
    thresholds = {"max_channels": 3}

    def check(self, facts: Facts, t):
        for node in facts.layers:
            cin = node.input_shapes[0][0] if node.input_shapes else 0
            groups = node.attrs.get("groups", 1)
            if groups <= 1 or groups != cin or cin > t["max_channels"] or node.kind == "linear":
                continue
            k = math.prod(node.attrs["kernel"])
            pointwise = [n for n in facts.real_consumers(node.index) if n >= 0]
            chain_end = facts.follow_chain(node.index)
            after = facts.real_consumers(chain_end[-1].index) if chain_end else pointwise
            nxt = facts.nodes[after[0]] if len(after) == 1 else None
            cout = nxt.output[0] if nxt is not None and nxt.kind == node.kind else node.output[0]
            hw = numel(node.output[1:])
            standard = hw * k * cin * cout
            separable = hw * (k * cin + cin * cout)
            saved = standard - separable
            share = saved / max(1, facts.total_multiply_adds)
            yield self.finding(
                facts.owner(node.index),
                f"depthwise {facts.describe(node)} on a {cin}-channel input learns {cin} spatial "
                f"filters where a standard conv {cin}->{cout} learns {cin * cout}; the saving is "
                f"{count(saved)} multiply-adds, {share:.1%} of the network",
                f"use a standard {'x'.join(map(str, node.attrs['kernel']))} conv on the input "
                "layer (MobileNet and Xception do) and separable convs after it",
                module=node.path, in_channels=cin, standard_multiply_adds=standard,
                separable_multiply_adds=separable, saving_share_of_network=round(share, 4),
            )


@register_rule
class ThreeWaySeparable(Rule):
    id = "three-way-separable"
    severity = "info"
    guideline = "B8, A10 (how-to-design-a-neural-network-2020)"
    summary = "a small kernel split into vertical and horizontal depthwise passes"
    rationale = ("Splitting a 3x3 depthwise kernel into 3x1 and 1x3 saves 3 of 9 multiply-adds per "
                 "element but writes and reads an extra full tensor; worth it only when line "
                 "buffers dominate (streaming hardware, FIR-IIR).")
    thresholds = {"max_kernel": 3}

    def check(self, facts: Facts, t):
        for node in facts.layers:
            kernel = node.attrs.get("kernel", ())
            if len(kernel) != 2 or node.attrs.get("groups", 1) != node.input_shapes[0][0]:
                continue
            if sorted(kernel)[0] != 1 or max(kernel) == 1 or max(kernel) > t["max_kernel"]:
                continue
            chain = facts.follow_chain(node.index)
            start = chain[-1].index if chain else node.index
            nxt = facts.real_consumers(start)
            if len(nxt) != 1:
                continue
            other = facts.nodes[nxt[0]]
            if (other.kind != node.kind or other.attrs.get("kernel") != kernel[::-1]
                    or other.attrs.get("groups", 1) != other.input_shapes[0][0]):
                continue
            k = max(kernel)
            c = node.output[0]
            hw = numel(other.output[1:])
            saved = (k * k - 2 * k) * c * hw
            extra = 2 * numel(node.output)
            yield self.finding(
                facts.owner(node.index),
                f"{k}x1 and 1x{k} depthwise passes replace one {k}x{k}: they save {count(saved)} "
                f"multiply-adds ({(k * k - 2 * k) / (k * k):.0%}) but write and read an extra "
                f"tensor of {count(numel(node.output))} elements",
                f"use one {k}x{k} depthwise conv, unless line buffers matter (FIR-IIR, A10)",
                module=node.path, second_module=other.path, saved_multiply_adds=saved,
                extra_memory_access=extra,
            )


@register_rule
class ChannelMultiple(Rule):
    id = "channel-multiple"
    severity = "info"
    guideline = "hardware efficiency (MobileNet make_divisible; tensor-core tiles)"
    summary = "channel count not a multiple of 8"
    rationale = ("Vector units and tensor cores process channels in tiles of 8 (16-bit) or more; "
                 "other counts leave lanes idle or fall back to slower kernels.")
    thresholds = {"multiple": 8}

    def check(self, facts: Facts, t):
        per_node: dict[str, list] = {}
        for node in facts.layers:
            width = _channels(node)
            cin = node.input_shapes[0][0] if node.input_shapes else 0
            if width % t["multiple"] == 0 or facts.is_final_layer(node.index):
                continue  # the final layer's width is the task's (classes, outputs)
            if width < t["multiple"]:
                continue  # a deliberately narrow layer costs little; narrow-relu looks at it
            if node.attrs.get("groups", 1) == cin and cin > 1:
                continue  # depthwise keeps its input's width; reported where that was chosen
            per_node.setdefault(facts.owner(node.index), []).append(node)
        step = t["multiple"]
        for owner, nodes in per_node.items():
            widths = sorted({_channels(n) for n in nodes})
            fixed = {w: max(step, int(w + step / 2) // step * step) for w in widths}
            listed = ", ".join(f"{w}" for w in widths)
            yield self.finding(
                owner,
                f"{len(nodes)} layer(s) with widths {listed}, not multiples of {step} "
                f"(first: {facts.describe(nodes[0])})",
                "use " + ", ".join(f"{w}->{f}" for w, f in fixed.items())
                + f" (make_divisible(width, {step}))",
                modules=[n.path for n in nodes], widths=widths,
                suggested=[fixed[w] for w in widths],
            )


@register_rule
class LargeKernel(Rule):
    id = "large-kernel"
    severity = "info"
    guideline = "A8 (VGG: stacks of 3x3; Simonyan & Zisserman 2015)"
    summary = "convolution kernel larger than 7"
    rationale = ("A stack of 3x3 convs sees the same window with fewer parameters and "
                 "multiply-adds and a non-linearity between the steps.")
    thresholds = {"max_kernel": 7}

    def check(self, facts: Facts, t):
        for node in facts.layers:
            kernel = node.attrs.get("kernel", ())
            if not kernel or max(kernel) <= t["max_kernel"]:
                continue
            k = max(kernel)
            cin, cout = node.input_shapes[0][0], node.output[0]
            groups = node.attrs.get("groups", 1)
            dims = len(kernel)
            steps = math.ceil((k - 1) / 2)  # 3x3 convs needed for the same window
            per_pixel = math.prod(kernel) * cin * cout // groups
            stacked = 3**dims * (cin * cout + (steps - 1) * cout * cout) // groups
            yield self.finding(
                facts.owner(node.index),
                f"{facts.describe(node)}: a {k}-wide kernel costs {count(per_pixel)} multiply-adds "
                f"per output position; {steps} stacked 3-wide convs see the same window for "
                f"{count(stacked)}",
                f"stack {steps} convs of kernel 3 (or use dilation) instead of kernel {k}",
                module=node.path, kernel=list(kernel), stacked_layers=steps,
                multiply_adds_per_position=per_pixel, stacked_multiply_adds_per_position=stacked,
            )


# loss -> {final activation: (severity, why)}
APPLIED_BY_LOSS = {
    "cross_entropy": {
        "softmax": ("error", "CrossEntropyLoss applies log-softmax itself"),
        "log_softmax": ("error", "CrossEntropyLoss applies log-softmax itself"),
        "sigmoid": ("warning", "squashing logits into (0, 1) before CrossEntropyLoss flattens "
                               "its gradients"),
        "relu": ("warning", "a ReLU removes every negative logit before CrossEntropyLoss"),
        "relu6": ("warning", "a ReLU6 clips the logits before CrossEntropyLoss"),
    },
    "nll": {"softmax": ("error", "NLLLoss expects log-probabilities, not probabilities")},
    "bce_with_logits": {
        "sigmoid": ("error", "BCEWithLogitsLoss applies the sigmoid itself"),
        "relu": ("warning", "a ReLU removes every negative logit before BCEWithLogitsLoss"),
    },
    "bce": {}, "mse": {}, "l1": {}, "none": {},
}


@register_rule
class FinalActivation(Rule):
    id = "final-activation"
    severity = "error"
    guideline = "C3 (deep-learning-designs: cost function per task)"
    summary = "an activation on the final layer that the task's loss already applies"
    rationale = ("Classification losses take logits: a softmax or sigmoid before them is "
                 "applied twice, which squashes gradients and loses numerical stability.")
    thresholds = {
        # loss assumed for a classifier when the config names none
        "classifier_loss": "cross_entropy",
    }

    def check(self, facts: Facts, t):
        loss = facts.loss
        if loss is None and facts.is_classifier:
            loss = t["classifier_loss"]
        if loss == "cross_entropy" and facts.outputs and facts.nodes[facts.outputs[0]].output[:1] == (1,):
            # one channel (a score, a mask) is a binary task: BCELoss takes probabilities and
            # the sigmoid belongs there (DCGAN's discriminator, DeepWaterMap); configure
            # loss: bce_with_logits to check for it
            loss = "bce"
        if loss is None:
            return
        flagged = APPLIED_BY_LOSS.get(loss, {})
        for out in facts.outputs:
            node = facts.nodes[out]
            if node.kind not in flagged:
                continue
            severity, why = flagged[node.kind]
            yield self.finding(
                facts.owner(out),
                f"the network ends in {node.kind} and the loss is {loss}: {why}",
                f"remove the final {node.kind} (end with the linear layer) and apply it only "
                "when predicting",
                severity=severity, module=node.path, activation=node.kind, loss=loss,
            )
