"""Each review rule: a network that triggers it, one that does not, and its message text.

Designs are small dicts in the design language; a few rules are also checked on hand-written
modules, because every rule must work on a user's own ``nn.Module`` too. Figures in messages
are checked against independent arithmetic (the ShuffleNetV2 formulas written out here).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from archlab.errors import UsageError
from archlab.review import RULES, review, run_review


def only(findings, rule):
    return [f for f in findings if f.rule == rule]


def design(layers, input=(16, 16, 16), **top):
    return {"input": list(input), "layers": layers, **top}


def conv(out, **kw):
    return {"block": "conv", "out": out, **kw}


# ------------------------------------------------------------------------------ G1 ---------


def test_unequal_width_triggers_with_shufflenet_figures():
    d = design([conv(16), conv(128, kernel=1, name="wide"), conv(16)])
    [f] = only(review(d), "unequal-1x1-width")
    hw, c1, c2 = 16 * 16, 16, 128
    macs = hw * c1 * c2
    mac = hw * (c1 + c2) + c1 * c2                       # ShuffleNetV2: h*w*(c1+c2) + c1*c2
    minimum = 2 * math.sqrt(hw * macs) + macs / hw       # 2*sqrt(h*w*B) + B/(h*w)
    assert f.node == "wide"
    assert f.evidence["memory_access"] == mac
    assert f.evidence["equal_width_minimum"] == round(minimum)
    assert f.message == (f"1x1 conv 16->128 on 16x16: memory access 38.9 k elements, "
                         f"{mac / minimum:.2f}x the equal-width minimum 25.2 k for the same "
                         f"524 k multiply-adds")
    assert "45->45 has the same multiply-adds" in f.fix


def test_unequal_width_quiet_on_equal_widths_and_balanced_strides():
    equal = design([conv(32), conv(32, kernel=1), conv(32)])
    assert not only(review(equal), "unequal-1x1-width")
    # a stride-2 projection 64->128 is close to its balanced optimum (c1/c2 = hw_out/hw_in)
    strided = design([conv(64), conv(128, kernel=1, stride=2), conv(128)], input=(16, 32, 32))
    assert not only(review(strided), "unequal-1x1-width")


# ------------------------------------------------------------------------------ G2 ---------


def test_group_conv_memory():
    d = design([conv(64), conv(64, kind="grouped", groups=8, name="grouped"), conv(64)],
               input=(64, 16, 16))
    [f] = only(review(d), "group-conv-memory")
    assert f.node == "grouped"
    # in + out + weights: 64*16*16 + 64*16*16 + 64*(64/8)*9; multiply-adds 16*16*64*8*9
    assert f.evidence["memory_access"] == 2 * 64 * 256 + 64 * 8 * 9
    assert f.evidence["multiply_adds"] == 256 * 64 * 8 * 9
    assert f.message.startswith("conv2d 3x3 64->64 groups=8: memory access 37.4 k elements for "
                                "1.18 M multiply-adds (31.6 per element); a dense conv with the "
                                "same multiply-adds needs 16.2 k (2.31x less)")
    dense = design([conv(64), conv(64), conv(64)], input=(64, 16, 16))
    assert not only(review(dense), "group-conv-memory")
    depthwise = design([conv(64), conv(64, kind="depthwise"), conv(64)], input=(64, 16, 16))
    assert not only(review(depthwise), "group-conv-memory")
    wide_net = review(depthwise, config={"thresholds": {"group-conv-memory": {"include_depthwise": True}}})
    assert only(wide_net, "group-conv-memory")


# ------------------------------------------------------------------------------ G3 ---------


def branches(n, merge="concat"):
    names = [f"b{i}" for i in range(n)]
    layers = [conv(16, name="stem")]
    layers += [conv(8, kernel=1, name=name, **{"from": "stem"}) for name in names]
    layers += [{"name": "join", "merge": merge, "from": names}]
    return design(layers)


def test_fragmentation():
    [f] = only(review(branches(4)), "fragmentation")
    assert f.node == "join"
    assert f.message.startswith("4 parallel branches (12 ops) merge here by cat:")
    assert not only(review(branches(3)), "fragmentation")
    # with latency=True the nodes are timed on the CPU and the share of time is reported
    [timed] = only(review(branches(4), latency=True), "fragmentation")
    assert 0 < timed.evidence["share_of_time"] <= 1
    assert timed.message.endswith("of the forward time")


class Chatty(nn.Module):
    """A hand-written activation applied op by op: 2 ops per step."""

    def forward(self, x):
        for _ in range(30):
            x = torch.relu(x) * 0.5
        return x


def test_fragmentation_many_small_ops():
    [f] = only(review(nn.Sequential(nn.Conv2d(3, 8, 3), Chatty()), (3, 8, 8)), "fragmentation")
    assert f.node == "1"
    assert f.message == "60 ops in this node, 98.4% of the network's ops for 0.0% of its multiply-adds"
    few = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
    assert not only(review(few, (3, 8, 8)), "fragmentation")


# ------------------------------------------------------------------------------ G4 ---------


def test_elementwise_cost():
    heavy = design([conv(16, kernel=1, norm="none"),
                    {"block": "act", "act": "silu"}, {"block": "act", "act": "tanh"}])
    [f] = only(review(heavy), "elementwise-cost")
    assert f.node == ""
    # conv 1x1 16->16 with bias on 16x16: 4096 + 4096 + 272; relu, silu, tanh: 8192 each
    assert f.evidence["elementwise_memory_access"] == 3 * 8192
    assert f.evidence["total_memory_access"] == 8192 + 272 + 3 * 8192
    assert f.message.startswith("element-wise ops account for 74% of all memory access")
    light = design([conv(16, norm="none"), conv(16, norm="none")])
    assert not only(review(light), "elementwise-cost")


# ----------------------------------------------------------------------------- A12 ---------


def test_narrow_relu():
    d = design([conv(4, name="narrow"), conv(16)])
    [f] = only(review(d), "narrow-relu")
    assert f.node == "narrow"
    assert f.message == ("conv2d 3x3 16->4 ends in relu with only 4 channels: a few dead units "
                         "silence most of this layer")
    linear = design([conv(4, act="none"), conv(16)])
    assert not only(review(linear), "narrow-relu")
    leaky = design([conv(4, act="leaky_relu"), conv(16)])
    assert not only(review(leaky), "narrow-relu")
    assert only(review(d, config={"thresholds": {"narrow-relu": {"max_channels": 4}}}), "narrow-relu")
    assert not only(review(d, config={"thresholds": {"narrow-relu": {"max_channels": 3}}}), "narrow-relu")


class SqueezeGate(nn.Module):
    """Squeeze-and-excitation with a 4-unit squeeze: a gate, not the main path."""

    def __init__(self, c=32):
        super().__init__()
        self.conv = nn.Conv2d(3, c, 3, padding=1)
        self.fc1 = nn.Conv2d(c, 4, 1)
        self.fc2 = nn.Conv2d(4, c, 1)

    def forward(self, x):
        x = torch.relu(self.conv(x))
        gate = torch.sigmoid(self.fc2(torch.relu(self.fc1(x.mean((2, 3), keepdim=True)))))
        return x * gate


def test_narrow_relu_leaves_gates_alone():
    assert not only(review(SqueezeGate(), (3, 16, 16)), "narrow-relu")


# ------------------------------------------------------------------------------ A6 ---------


def test_bias_before_norm_in_design_and_module():
    d = design([conv(16, bias=True, name="biased"), conv(16)])
    [f] = only(review(d), "bias-before-norm")
    assert f.node == "biased"
    assert f.message == ("conv2d 3x3 16->16 has a bias (16 parameters) that the following "
                         "batch_norm cancels exactly")
    assert not only(review(design([conv(16), conv(16)])), "bias-before-norm")
    module = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU())
    [g] = only(review(module, (3, 8, 8)), "bias-before-norm")
    assert g.node == "0"
    plain = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8), nn.ReLU())
    assert not only(review(plain, (3, 8, 8)), "bias-before-norm")


# ------------------------------------------------------------------------------ B8 ---------


def test_separable_input_layer():
    d = design([conv(32, kind="separable", name="first"), conv(32)], input=(3, 32, 32))
    [f] = only(review(d), "separable-input-layer")
    assert f.node == "first"
    # standard: 32*32 positions * 9 taps * 3 * 32; separable: 32*32 * (9*3 + 3*32)
    assert f.evidence["standard_multiply_adds"] == 1024 * 9 * 3 * 32
    assert f.evidence["separable_multiply_adds"] == 1024 * (9 * 3 + 3 * 32)
    assert f.message.startswith("depthwise conv2d 3x3 3->3 groups=3 on a 3-channel input learns "
                                "3 spatial filters where a standard conv 3->32 learns 96; the "
                                "saving is 759 k multiply-adds, ")
    standard = design([conv(32, name="first"), conv(32, kind="separable")], input=(3, 32, 32))
    assert not only(review(standard), "separable-input-layer")


def test_three_way_separable():
    d = design([conv(16), conv(16, kind="separable3", name="sep3"), conv(16)])
    [f] = only(review(d), "three-way-separable")
    assert f.node == "sep3"
    assert f.message.startswith("3x1 and 1x3 depthwise passes replace one 3x3: they save "
                                "12.3 k multiply-adds (33%)")
    big = design([conv(16), conv(16, kind="separable3", kernel=7), conv(16)])
    assert not only(review(big), "three-way-separable")


# ------------------------------------------------------------------------- hardware ---------


def test_channel_multiple():
    d = design([conv(12, name="odd"), conv(16), {"block": "global_pool"},
                {"block": "linear", "out": 10}])
    [f] = only(review(d), "channel-multiple")
    assert f.node == "odd"
    assert f.message == ("1 layer(s) with widths 12, not multiples of 8 "
                         "(first: conv2d 3x3 16->12)")
    assert f.fix == "use 12->16 (make_divisible(width, 8))"
    # the classifier's 10 outputs are the task's, not a design choice
    assert not only(review(design([conv(16), {"block": "global_pool"},
                                   {"block": "linear", "out": 10}])), "channel-multiple")


def test_large_kernel():
    [f] = only(review(design([conv(16, kernel=11, name="big"), conv(16)])), "large-kernel")
    assert f.node == "big"
    assert f.message == ("conv2d 11x11 16->16: a 11-wide kernel costs 31 k multiply-adds per "
                         "output position; 5 stacked 3-wide convs see the same window for 11.5 k")
    assert not only(review(design([conv(16, kernel=7), conv(16)])), "large-kernel")


# -------------------------------------------------------------------------------- C3 -------


def classifier(final_act, classes=10, **top):
    return design([conv(16), {"block": "global_pool"},
                   {"block": "linear", "out": classes, "act": final_act}],
                  task="classification", **top)


def test_final_activation():
    softmax = nn.Sequential(nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                            nn.Linear(8, 10), nn.Softmax(dim=1))
    [f] = only(review(softmax, (3, 8, 8)), "final-activation")
    assert f.severity == "error" and f.node == "4"
    assert f.message == ("the network ends in softmax and the loss is cross_entropy: "
                         "CrossEntropyLoss applies log-softmax itself")
    [g] = only(review(classifier("relu")), "final-activation")
    assert g.severity == "warning"
    assert not only(review(classifier("none")), "final-activation")
    # one score with a sigmoid is a binary classifier trained with BCELoss (DCGAN)
    assert not only(review(classifier("sigmoid", classes=1)), "final-activation")
    strict = review(classifier("sigmoid", classes=1), config={"loss": "bce_with_logits"})
    [h] = only(strict, "final-activation")
    assert h.message.endswith("BCEWithLogitsLoss applies the sigmoid itself")


# ------------------------------------------------------------------------------ B10 --------


def test_deep_plain_stack_and_residual_fix():
    plain = design([conv(16, depth=12, name="stack")])
    [f] = only(review(plain), "deep-plain-stack")
    assert f.message == ("12 weight layers in a row with no skip connection "
                         "(from stack.0.0 to stack.11.0)")
    residual = design([{"name": "stack", "depth": 6, "residual": True,
                        "layers": [conv(16), conv(16)]}])
    assert not only(review(residual), "deep-plain-stack")


def test_no_normalisation():
    bare = design([conv(16, depth=11, norm="none")])
    [f] = only(review(bare), "no-normalisation")
    assert f.message == "11 weight layers deep and no normalisation layer anywhere"
    assert not only(review(design([conv(16, depth=11)])), "no-normalisation")


def test_saturating_activation():
    d = design([conv(16, depth=7, act="tanh", name="hidden"), conv(16)])
    [f] = only(review(d), "saturating-activation")
    assert f.message == "7 hidden tanh activation(s) on the main path of a 8-layer network"
    assert not only(review(design([conv(16, depth=7), conv(16)])), "saturating-activation")


def test_saturating_activation_ignores_gates_and_outputs():
    gated = nn.Sequential(*[SqueezeGate(3) if i == 0 else nn.Conv2d(3, 3, 3, padding=1)
                            for i in range(8)], nn.Tanh())
    assert not only(review(gated, (3, 8, 8)), "saturating-activation")


# ------------------------------------------------------------------------------- B9 --------


def test_many_branch_sum():
    [f] = only(review(branches(4, merge="sum")), "many-branch-sum")
    assert f.node == "join"
    assert f.message == "4 branches summed with equal fixed weights"
    assert not only(review(branches(3, merge="sum")), "many-branch-sum")


class DenseStack(nn.Module):
    """A DenseNet-like stack: every layer's output is concatenated to its input."""

    def __init__(self, layers=6, growth=8):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(8 + i * growth, growth, 3, padding=1)
                                   for i in range(layers))

    def forward(self, x):
        for conv_layer in self.convs:
            x = torch.cat([x, torch.relu(conv_layer(x))], 1)
        return x


def test_concat_growth_is_configurable():
    deep_enough = {"thresholds": {"concat-growth": {"min_depth": 5}}}
    [f] = only(review(DenseStack(), (8, 8, 8), config=deep_enough), "concat-growth")
    assert f.message.startswith("6 concatenations in a 6-layer network write ")
    assert f.evidence["widest_channels"] == 56
    assert not only(review(DenseStack(), (8, 8, 8)), "concat-growth")  # default: 40 layers


# --------------------------------------------------------------------------- spatial -------


def shallow_classifier(size):
    return design([conv(16), conv(16), {"block": "global_pool", "name": "pool"},
                   {"block": "linear", "out": 10}], input=(3, size, size), task="classification")


def test_receptive_field():
    [f] = only(review(shallow_classifier(64)), "receptive-field")
    assert f.node == "pool"
    assert f.message == "the features pooled into the output see 5x5 pixels of the 64x64 input"
    assert not only(review(shallow_classifier(5)), "receptive-field")


def test_receptive_field_matches_gradients():
    """Oracle: the input pixels with a non-zero gradient for one output element."""
    from archlab.review.run import build_facts

    layers = [conv(4, kernel=3, stride=2), {"block": "maxpool", "kernel": 3, "stride": 2,
                                             "padding": 1},
              conv(4, kernel=5, dilation=2, name="last", norm="none", act="none")]
    d = design(layers, input=(1, 96, 96))
    facts, _ = build_facts(d)
    last = max(i for i, n in enumerate(facts.nodes) if n.path.startswith("last"))
    predicted = facts.receptive_field[last][0]
    import archlab

    torch.manual_seed(0)
    model = archlab.build(d).eval()
    x = torch.randn(1, 1, 96, 96, requires_grad=True)
    y = model(x)
    y[0, :, y.shape[2] // 2, y.shape[3] // 2].sum().backward()
    rows = torch.nonzero(x.grad[0, 0].abs().sum(1)).flatten()
    cols = torch.nonzero(x.grad[0, 0].abs().sum(0)).flatten()
    measured = (int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1))
    assert predicted == measured


def test_map_smaller_than_kernel():
    early = design([conv(16, stride=2), conv(16, stride=2), conv(16, name="late")],
                   input=(3, 8, 8))
    [f] = only(review(early), "map-smaller-than-kernel")
    assert f.node == "late"
    assert f.message == ("conv2d 3x3 16->16 runs on a 2x2 map: at most 44% of its 3x3 taps "
                         "see data, the rest read padding")
    assert not only(review(design([conv(16, stride=2), conv(16)], input=(3, 8, 8))),
                    "map-smaller-than-kernel")


def test_high_resolution_memory():
    flat = design([conv(16), conv(32, stride=2), conv(64, stride=2), conv(128, stride=2)],
                  input=(3, 256, 256))
    [f] = only(review(flat), "high-resolution-memory")
    # 256x256 level: the first conv's and its batch norm's outputs (the ReLU is in place)
    assert f.evidence["levels"]["256x256"] == 2 * 16 * 256 * 256
    assert f.message.startswith("the 256x256 level holds 53% of activation memory")
    assert "quadruple" in f.fix
    quadruple = design([conv(4), conv(16, stride=2), conv(64, stride=2), conv(256, stride=2)],
                       input=(3, 256, 256))
    assert not only(review(quadruple), "high-resolution-memory")


# ----------------------------------------------------------------------- the registry ------


def test_every_rule_has_id_source_rationale_a_test_and_a_doc_section():
    import pathlib

    text = pathlib.Path(__file__).read_text()
    docs = (pathlib.Path(__file__).parents[1] / "docs" / "review-rules.md").read_text()
    for rule_id, rule in RULES.items():
        assert rule.guideline and rule.summary and rule.rationale, rule_id
        assert f'"{rule_id}"' in text, f"rule {rule_id} has no test in this file"
        assert f"\n## `{rule_id}`\n" in docs, f"rule {rule_id} has no section in the docs"


def test_module_needs_an_input_shape():
    with pytest.raises(UsageError) as err:
        review(nn.Conv2d(3, 8, 3))
    assert str(err.value) == ("reviewing a Conv2d needs the input shape; pass "
                              "input_shape=(3, 224, 224) or --input 3x224x224")


def test_run_only_some_rules():
    result = run_review(design([conv(4), conv(16)]), rules=["narrow-relu"])
    assert result.rules_run == ["narrow-relu"]
    assert {f.rule for f in result.findings} == {"narrow-relu"}
