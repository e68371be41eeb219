"""Counts of archlab.analyze against oracles: torchvision's published figures, PyTorch's own
parameter count and FLOP counter, hand formulas, and analytic == traced on every zoo design."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import archlab
from archlab.analysis import analyze
from archlab.analysis.reference import SmallConvNet, mobilenet_v2, resnet18, resnet50
from archlab.build import build  # the function (archlab.build can be the submodule once imported)
from archlab.errors import UsageError

# torchvision's published multiply-adds (GMACs at 224x224) and parameter counts
PUBLISHED = {
    "resnet18": (resnet18, 1.814e9, 11_689_512),
    "resnet50": (resnet50, 4.089e9, 25_557_032),
    "mobilenet_v2": (mobilenet_v2, 0.301e9, 3_504_872),
}


def _meta(factory):
    with torch.device("meta"):
        return factory()


def _pytorch_multiply_adds(module: nn.Module, shape) -> int:
    """PyTorch's own counter (torch.utils.flop_counter) counts 2 FLOPs per multiply-add."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        module(torch.empty(1, *shape, device="meta"))
    return counter.get_total_flops() // 2


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_reference_networks_match_published_figures(name):
    factory, macs, params = PUBLISHED[name]
    module = _meta(factory)
    a = analyze(module, (3, 224, 224), memory=False)
    assert abs(a.totals["multiply_adds"] - macs) / macs < 1e-3
    assert a.totals["params"] == params == sum(p.numel() for p in module.parameters())
    assert a.totals["params_in_ops"] == params
    assert a.totals["multiply_adds"] == _pytorch_multiply_adds(module.eval(), (3, 224, 224))


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_zoo_designs_match_published_figures(name):
    if name not in archlab.zoo.names():
        pytest.skip(f"{name} is not in the zoo")
    _, macs, params = PUBLISHED[name]
    a = analyze(name, memory=False)
    assert abs(a.totals["multiply_adds"] - macs) / macs < 1e-3
    assert a.totals["params"] == params


# Designs whose blocks' element-wise formulas describe a different mode than the inference form
# the counts use; parameters and multiply-adds still agree exactly, element-wise within 1%.
ELEMENTWISE_MODE_DIFFERS = {
    # its formula counts the training-time sampling (exp, mul_add); in eval mode the module
    # returns the mean and computes the KL term (clamp, pow, exp, sub, sum, mean)
    "vae_mnist",
}


@pytest.mark.parametrize("name", archlab.zoo.names())
def test_analytic_equals_traced_for_every_zoo_design(name):
    design = archlab.load(name)
    analytic = analyze(design, memory=False)
    traced = analyze(design, memory=False, method="trace")
    for key in ("params", "multiply_adds"):
        assert analytic.totals[key] == traced.totals[key], key
    if name in ELEMENTWISE_MODE_DIFFERS:
        assert analytic.totals["elementwise"] == pytest.approx(traced.totals["elementwise"], rel=0.01)
    else:
        assert analytic.totals["elementwise"] == traced.totals["elementwise"]
    # per block too: the same parameters and multiply-adds in the same place
    a = {r.path: (r.params, r.multiply_adds) for r in analytic.nodes}
    t = {r.path: (r.params, r.multiply_adds) for r in traced.nodes}
    assert a == t
    # and the parameters PyTorch counts on the built module
    with torch.device("meta"):
        built = build(design)
    assert analytic.totals["params"] == sum(p.numel() for p in built.parameters())


class Attention(nn.Module):
    """Functional code only: projections by F.linear, SDPA, a matmul and a residual add."""

    def __init__(self, dim: int = 32, heads: int = 4) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Parameter(torch.randn(3 * dim, dim))
        self.out = nn.Linear(dim, dim)
        self.scale = nn.Parameter(torch.ones(dim))

    def forward(self, x):  # (N, L, D) -> (N, L, D)
        n, length, d = x.shape
        q, k, v = F.linear(x, self.qkv).view(n, length, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, length, d)
        gram = torch.matmul(y, y.transpose(1, 2))          # (N, L, L)
        return self.out(y) * self.scale + gram.mean(-1, keepdim=True)


def test_functional_ops_matmul_and_attention_are_counted():
    length, dim, heads = 10, 32, 4
    a = analyze(Attention(dim, heads), (length, dim), memory=False)
    kinds = [op.kind for op in a.ops]
    assert "attention" in kinds and "matmul" in kinds
    expected = (length * dim * 3 * dim                 # qkv projection
                + heads * length * length * 2 * (dim // heads)   # q k^T and the weighted sum
                + length * length * dim                 # the gram matmul
                + length * dim * dim)                   # output projection
    assert a.totals["multiply_adds"] == expected
    assert a.totals["params_in_ops"] == a.totals["params"] == 3 * dim * dim + dim * dim + dim + dim
    attention = next(op for op in a.ops if op.kind == "attention")
    # the 1/sqrt(d) scaling and the softmax (exp, sum, divide), never dropped
    assert attention.elementwise == length * dim + 3 * heads * length * length
    assert a.totals["elementwise"] > 0


def test_transformer_layer_matches_pytorch_counter_and_formula():
    length, dim, ff = 12, 64, 128
    with torch.device("meta"):
        layer = nn.TransformerEncoderLayer(dim, 4, ff, dropout=0.0, batch_first=True)
    a = analyze(layer, (length, dim), memory=False)
    assert a.totals["params"] == a.totals["params_in_ops"] == sum(p.numel() for p in layer.parameters())
    formula = length * (4 * dim * dim + 2 * dim * ff) + 2 * length * length * dim
    assert a.totals["multiply_adds"] == formula
    assert a.totals["multiply_adds"] == _pytorch_multiply_adds(layer.eval(), (length, dim))


def test_elementwise_ops_and_memory_access_follow_shufflenet_conventions():
    net = nn.Sequential(nn.Conv2d(8, 16, 1, bias=False), nn.ReLU())
    a = analyze(net, (8, 10, 10), memory=False)
    conv, relu = a.ops
    # ShuffleNetV2: a 1x1 conv reads h*w*c1 + c1*c2 and writes h*w*c2 elements
    assert conv.memory_access == 10 * 10 * (8 + 16) + 8 * 16
    assert a.nodes[0].memory_access_bytes == 4 * conv.memory_access
    assert relu.kind == "relu" and relu.elementwise == 16 * 10 * 10
    assert conv.multiply_adds == 10 * 10 * 8 * 16
    row = a.nodes[0]
    assert row.arithmetic_intensity == pytest.approx(2 * conv.multiply_adds / row.memory_access_bytes)


def test_blocks_and_stages_roll_up_to_the_totals():
    a = analyze(_meta(resnet18), (3, 224, 224), memory=False)
    assert [r.path for r in a.nodes][:4] == ["conv1", "bn1", "relu", "maxpool"]
    assert "layer2.0" in {r.path for r in a.nodes}
    assert {r.path for r in a.stages} >= {"layer1", "layer4", "fc"}
    for rows in (a.nodes, a.stages):
        assert sum(r.multiply_adds for r in rows) == a.totals["multiply_adds"]
        assert sum(r.params for r in rows) == a.totals["params"]
    assert next(r for r in a.nodes if r.path == "layer2.0").output_shape == (128, 28, 28)


def test_design_blocks_are_the_graph_nodes():
    design = archlab.load("resnet18")
    a = analyze(design, memory=False)
    assert [r.path for r in a.nodes] == [n.path for n in design.graph.nodes]
    assert a.totals["params"] == design.graph.param_count


def test_frozen_parameters_are_reported():
    net = SmallConvNet()
    for p in net.stem.parameters():
        p.requires_grad_(False)
    a = analyze(net, (3, 32, 32), memory=False)
    frozen = sum(p.numel() for p in net.stem.parameters())
    assert a.totals["frozen_params"] == frozen
    assert a.totals["trainable_params"] == a.totals["params"] - frozen


def test_module_needs_an_input_shape():
    with pytest.raises(UsageError, match=r"needs its input shape; pass input_shape=\(3, 224, 224\)"):
        analyze(nn.Linear(3, 4))


def test_wrong_input_shape_says_what_failed_and_cleans_up():
    from torch.nn.modules import module as module_hooks

    net = nn.Sequential(nn.Linear(3, 4), nn.Dropout())
    net.train()
    with pytest.raises(UsageError, match=r"^0: tracing Sequential on the meta device failed in the "
                                         r"counting pass .*same reduction dim.*; check that the "
                                         r"module runs on an input of \(1, 5\) \(input_shape is per "
                                         r"sample"):
        analyze(net, (5,), memory=False)
    assert not module_hooks._global_forward_hooks and not module_hooks._global_forward_pre_hooks
    assert all(m.training for m in net.modules())  # eval mode for counting was undone


def test_unknown_optimizer_lists_the_valid_ones():
    with pytest.raises(UsageError, match="unknown optimizer 'adan'.*did you mean 'adam'"):
        analyze(nn.Linear(3, 4), (3,), optimizer="adan")


def test_json_and_csv_forms():
    import json

    a = analyze(_meta(resnet18), (3, 224, 224), batch=2)
    data = json.loads(a.to_json())
    assert data["schema"] == "archlab.analysis/1"
    assert set(data) >= {"totals", "blocks", "stages", "ops", "memory", "latency", "conventions"}
    assert data["totals"]["flops"] == 2 * data["totals"]["multiply_adds"]
    assert "2 x multiply-adds" in data["conventions"]["flops"]
    assert data["memory"]["batch"] == 2
    header, *rows = a.to_csv().splitlines()
    assert header.startswith("path,block,stage,output_shape,params,multiply_adds,flops")
    assert len(rows) == len(a.nodes)
    assert len(a.to_csv("op").splitlines()) == len(a.ops) + 1


class TokenClassifier(nn.Module):
    """(N, L) token ids -> (N, classes): embedding, mean over tokens, linear."""

    def __init__(self, vocab: int = 100, dim: int = 16, classes: int = 4) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.fc = nn.Linear(dim, classes)

    def forward(self, tokens):
        return self.fc(self.embed(tokens).mean(1))


def test_integer_token_inputs():
    net = TokenClassifier()
    a = analyze(net, (8,), batch=2, input_dtype=torch.long, latency=True, rounds=2)
    assert a.totals["params"] == a.totals["params_in_ops"] == 100 * 16 + 16 * 4 + 4
    assert a.totals["multiply_adds"] == 16 * 4
    assert [op.kind for op in a.ops] == ["embedding", "mean", "linear"]
    assert a.memory.input_bytes == 2 * 8 * 8  # int64 ids
    assert a.latency.forward.median_s > 0


class TwoInputs(nn.Module):
    """(N, 3, H, W) image and (N, F) features -> (N, 4)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.fc = nn.Linear(6, 4)

    def forward(self, image, features):
        return self.conv(image).mean((2, 3)) + self.fc(features)


def test_modules_with_several_inputs():
    a = analyze(TwoInputs(), ((3, 5, 5), (6,)), batch=2, latency=True, rounds=2)
    assert a.totals["multiply_adds"] == 25 * 3 * 4 + 6 * 4
    assert a.memory.input_bytes == 2 * (3 * 25 + 6) * 4
    assert a.latency.forward.median_s > 0
