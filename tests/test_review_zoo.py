"""The zoo reviewed: expected findings and no false ones; the recorded data flow checked against
the designs' own analytic op records; hand-written modules reviewed like designs and left
unchanged."""

from __future__ import annotations

from collections import defaultdict

import pytest
import torch
from torch import nn

import archlab
from archlab.review import review
from archlab.review.run import build_facts

# Every zoo design's findings, by rule. Each entry is a published design's known trait:
EXPECTED: dict[str, set[str]] = {
    "dcgan_discriminator": set(),      # sigmoid + BCELoss on one score is the paper's setup
    "dcgan_generator": set(),
    "deepwatermap": {"narrow-relu"},   # 4-channel full-resolution level ends in ReLU (A12)
    "digits_mlp": set(),
    "fir_iir_net": set(),
    "inception_v3": {"unequal-1x1-width", "fragmentation"},     # 4-branch modules (G3)
    # an LSTM unrolled step by step in Python: ~1700 small ops per layer (G3); its shared
    # weights are not depth and its time steps are not parallel branches
    "lstm_classifier": {"fragmentation"},
    "mnist_cnn": {"receptive-field"},         # sees 18x18 of 28x28 (a digit's box is 20x20)
    "mobilenet_v2": {"unequal-1x1-width"},     # expansion 1:6 breaks G1; bottlenecks linear
    "mobilenet_v3_large": {"unequal-1x1-width"},
    "mobilenet_v3_small": {"unequal-1x1-width"},
    "nas_cell_net": {"unequal-1x1-width", "fragmentation"},     # searched cells fragment (G3)
    "resnet18": set(),
    "resnet50": {"unequal-1x1-width"},         # bottleneck 1:4
    "se_resnet50": {"unequal-1x1-width"},
    "shufflenet_v2": {"channel-multiple"},     # 58/116/232-wide stages of the 1.0x model
    "squeezenet": {"unequal-1x1-width", "no-normalisation", "deep-plain-stack",
                   "receptive-field"},         # fire squeeze 1:8, no BN, RF 155 < 224
    "transformer_classifier": set(),
    "unet": {"high-resolution-memory"},        # 64 channels at 256x256 hold half the memory
    "vae_mnist": set(),
    "vgg19": {"no-normalisation", "deep-plain-stack"},
    "xception": set(),
}


@pytest.mark.parametrize("name", archlab.zoo.names())
def test_zoo_review(name):
    found = {f.rule for f in review(name)}
    if name in EXPECTED:
        assert found == EXPECTED[name]
    else:  # a design added after this table: at least no warnings or errors
        loud = [str(f) for f in review(name) if f.severity != "info"]
        assert not loud, loud


def test_principles_named_in_the_issue():
    assert "narrow-relu" not in {f.rule for f in review("mobilenet_v2")}   # linear bottlenecks
    assert "deep-plain-stack" not in {f.rule for f in review("resnet50")}
    [vgg] = [f for f in review("vgg19") if f.rule == "deep-plain-stack"]
    assert vgg.message == ("19 weight layers in a row with no skip connection "
                           "(from conv1.0.0 to fc3)")
    assert vgg.node == "conv1.0" and vgg.source == "zoo:vgg19" and vgg.line is not None


@pytest.mark.parametrize("name", ["resnet50", "mobilenet_v2", "inception_v3", "lstm_classifier",
                                  "transformer_classifier", "unet"])
def test_recorded_ops_match_the_design_formulas(name):
    """Oracle: parameters and multiply-adds per node, recorded from the built module's data flow,
    equal the blocks' analytic formulas (two independent sources)."""
    facts, design = build_facts(name)
    params, macs = defaultdict(int), defaultdict(int)
    for node in facts.nodes:
        if node.op is not None:
            params[facts.owner(node.index)] += node.op.params
            macs[facts.owner(node.index)] += node.op.multiply_adds
    for n in design.graph.nodes:
        assert (params[n.path], macs[n.path]) == (n.param_count, n.multiply_adds), n.path


def resnet_like(blocks=6, skip=True):
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(16, 16, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(16)
            self.conv2 = nn.Conv2d(16, 16, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(16)

        def forward(self, x):
            y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
            return torch.relu(y + x if skip else y)

    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16),
                         nn.ReLU(inplace=True), *[Block() for _ in range(blocks)],
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))


def test_hand_written_modules_reviewed_like_designs():
    plain = review(resnet_like(skip=False), (3, 32, 32))
    [f] = [f for f in plain if f.rule == "deep-plain-stack"]
    assert f.message == "14 weight layers in a row with no skip connection (from 0 to 11)"
    assert f.node == "0"
    assert not [f for f in review(resnet_like(), (3, 32, 32)) if f.rule == "deep-plain-stack"]


def test_review_leaves_the_module_unchanged():
    model = resnet_like().train()
    model[1].eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    review(model, (3, 16, 16))
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) and after[k].device.type == "cpu" for k in before)
    assert model.training and not model[1].training and model[3].training
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


@pytest.mark.parametrize("name", ["resnet50", "mobilenet_v2"])
def test_review_figures_agree_with_the_analysis(name):
    """The review's totals equal archlab.analyze's (issue 4), the other counter in the project."""
    facts, _ = build_facts(name)
    totals = archlab.analyze(name, memory=False).totals
    assert facts.total_multiply_adds == totals["multiply_adds"]
    assert sum(n.op.params for n in facts.nodes if n.op is not None) == totals["params"]


class LSTMNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(8, 32, batch_first=True, num_layers=2)
        self.fc = nn.Linear(32, 5)

    def forward(self, x):                        # (N, C, L) -> (N, 5)
        out, _ = self.lstm(x.transpose(1, 2))
        return self.fc(out[:, -1])


class TransformerNet(nn.Module):
    def __init__(self):
        super().__init__()
        layer = nn.TransformerEncoderLayer(64, 4, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.fc = nn.Linear(64, 5)

    def forward(self, x):                        # (N, L, C) -> (N, 5)
        return self.fc(self.encoder(x).mean(1))


def test_hand_written_sequence_models_have_no_false_findings():
    assert review(LSTMNet(), (8, 20)) == []
    assert review(TransformerNet(), (10, 64)) == []


def test_archlab_review_is_callable_whatever_was_imported_first():
    import archlab.review.command  # noqa: F401  binds the package to archlab.review

    assert {f.rule for f in archlab.review("vgg19")} == EXPECTED["vgg19"]


def test_design_input_comes_from_the_design():
    from archlab.errors import UsageError

    with pytest.raises(UsageError) as err:
        review("resnet18", (3, 64, 64))
    assert str(err.value) == ("the design's input is 3x224x224, got --input 3x64x64; change the "
                              "design's input with --set (e.g. --set size=128)")
