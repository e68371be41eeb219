"""Issue 13, the transformer-era zoo: vit_b_16, convnext_tiny, efficientnet_b0 (stochastic depth)
and gpt2_small (tied embeddings).

Oracles: the published parameter counts and multiply-adds (torchvision; GPT-2 small's layout),
hand formulas, and for each design its output EQUAL to a hand-written reference module in plain
PyTorch (weights copied over by order and shape) on a fixed input in eval mode. ViT uses
``nn.MultiheadAttention`` and GPT-2 ``F.scaled_dot_product_attention(is_causal=True)`` as
independent implementations of the attention. Big designs are counted on the meta device and
compared at a reduced setting of the same design (variables), or on a small input.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import archlab
from archlab import build  # the function (importing archlab.build first would shadow it)
from archlab.analysis.reference import ConvNeXt, VisionTransformer
from archlab.blocks import BLOCKS
from archlab.zoo import PUBLISHED, PUBLISHED_GMACS

MODERN = {"vit_b_16": 86_567_656, "convnext_tiny": 28_589_128, "efficientnet_b0": 5_288_548,
          "gpt2_small": 124_439_808}


@pytest.mark.parametrize("name", sorted(MODERN))
def test_published_parameter_count_and_built_module(name):
    design = archlab.load(name)
    assert PUBLISHED[name] == MODERN[name] == design.graph.param_count
    with torch.device("meta"):
        model = build(design)
    # the tied table is one parameter object, counted once by PyTorch too
    assert sum(p.numel() for p in model.parameters()) == MODERN[name]


@pytest.mark.parametrize("name", sorted(PUBLISHED_GMACS))
def test_published_multiply_adds(name):
    # torchvision publishes two decimals: the design's figure rounds to the published one
    assert round(archlab.load(name).graph.multiply_adds / 1e9, 2) == PUBLISHED_GMACS[name]


def test_gpt2_multiply_adds_equal_the_hand_formula():
    """Per 1024-token context: per layer qkv L*d*3d, out L*d*d, scores and weighted sum
    2*L*L*d, MLP 2*L*d*4d; the tied head L*d*V (Kaplan et al. 2020's forward count)."""
    L, d, V, layers = 1024, 768, 50257, 12
    per_layer = L * d * 3 * d + L * d * d + 2 * L * L * d + 2 * L * d * 4 * d
    assert archlab.load("gpt2_small").graph.multiply_adds == layers * per_layer + L * d * V


# -------------------------------------------------------------- weights by order/shape -------


def randomise(model: nn.Module, seed: int = 0) -> None:
    """Random weights and batch-norm statistics, so that equality tests every tensor."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
        for name, b in model.named_buffers():
            if name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=g) + 0.5)
            elif name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g) * 0.1)


def copy_by_order(src: nn.Module, dst: nn.Module) -> int:
    """Copy parameters, then batch-norm statistics, in registration order; shapes must agree
    (a (1, L, D) table may fill an (L, D) one). Returns the number of tensors copied."""
    pairs = list(zip(src.parameters(), dst.parameters(), strict=True))
    stats = [b for n, b in src.named_buffers() if "running" in n]
    pairs += list(zip(stats, [b for n, b in dst.named_buffers() if "running" in n], strict=True))
    with torch.no_grad():
        for a, b in pairs:
            assert a.numel() == b.numel() and a.shape[-1] == b.shape[-1], (a.shape, b.shape)
            b.copy_(a.reshape(b.shape))
    return len(pairs)


def assert_same_outputs(built: nn.Module, reference: nn.Module, x: Tensor) -> None:
    built.eval()
    reference.eval()
    with torch.no_grad():
        a, b = built(x), reference(x)
    assert a.shape == b.shape
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


# -------------------------------------------------------------------------- references -------


def test_vit_equals_reference_with_pytorch_attention():
    small = {"size": 32, "patch": 8, "width": 96, "heads": 4, "depth": 2, "classes": 10}
    built = build(archlab.load("vit_b_16", **small))
    reference = VisionTransformer(32, 8, 96, 2, 4, 384, 10, fused=True)
    randomise(built)
    assert copy_by_order(built, reference) == 2 + 2 + 2 * 12 + 2 + 2
    assert_same_outputs(built, reference, torch.randn(2, 3, 32, 32))


def test_convnext_tiny_equals_reference():
    built = build(archlab.load("convnext_tiny", size=32))
    reference = ConvNeXt()
    randomise(built)
    copy_by_order(built, reference)
    assert_same_outputs(built, reference, torch.randn(2, 3, 32, 32))


class MBConv(nn.Module):
    """torchvision's EfficientNet MBConv, eval form: expand, depthwise, SE (input/4, SiLU),
    linear projection, residual when the shape is kept."""

    def __init__(self, cin: int, cout: int, expand: int, kernel: int, stride: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.SiLU()]
        layers += [nn.Conv2d(hidden, hidden, kernel, stride, kernel // 2, groups=hidden, bias=False),
                   nn.BatchNorm2d(hidden), nn.SiLU()]
        self.pre = nn.Sequential(*layers)
        squeeze = max(1, cin // 4)
        self.fc1, self.fc2 = nn.Conv2d(hidden, squeeze, 1), nn.Conv2d(squeeze, hidden, 1)
        self.project = nn.Sequential(nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        y = self.pre(x)
        y = y * torch.sigmoid(self.fc2(F.silu(self.fc1(y.mean((2, 3), keepdim=True)))))
        y = self.project(y)
        return x + y if self.residual else y


class EfficientNetB0(nn.Module):
    SETTING = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
               (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]

    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.SiLU()]
        cin = 32
        for expand, kernel, stride, cout, depth in self.SETTING:
            for i in range(depth):
                layers.append(MBConv(cin, cout, expand, kernel, stride if i == 0 else 1))
                cin = cout
        layers += [nn.Conv2d(cin, 1280, 1, bias=False), nn.BatchNorm2d(1280), nn.SiLU()]
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(1280, classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x).mean((2, 3)))


def test_efficientnet_b0_equals_reference():
    built = build(archlab.load("efficientnet_b0", size=64))
    reference = EfficientNetB0()
    assert sum(p.numel() for p in reference.parameters()) == MODERN["efficientnet_b0"]
    randomise(built)
    copy_by_order(built, reference)
    assert_same_outputs(built, reference, torch.randn(2, 3, 64, 64))


class GPT2(nn.Module):
    """GPT-2's layout (Radford et al. 2019): token and position embeddings, pre-norm causal
    blocks (tanh GELU), final norm, logits by the token table (tied)."""

    def __init__(self, vocab: int, length: int, width: int, heads: int, depth: int) -> None:
        super().__init__()
        self.heads = heads
        self.wte = nn.Embedding(vocab, width)
        self.wpe = nn.Embedding(length, width)
        self.blocks = nn.ModuleList()
        for _ in range(depth):
            block = nn.Module()
            block.ln_1 = nn.LayerNorm(width)
            block.c_attn = nn.Linear(width, 3 * width)
            block.c_proj = nn.Linear(width, width)
            block.ln_2 = nn.LayerNorm(width)
            block.c_fc = nn.Linear(width, 4 * width)
            block.mlp_proj = nn.Linear(4 * width, width)
            self.blocks.append(block)
        self.ln_f = nn.LayerNorm(width)

    def forward(self, ids: Tensor) -> Tensor:
        n, length = ids.shape
        x = self.wte(ids) + self.wpe(torch.arange(length))
        for b in self.blocks:
            q, k, v = b.c_attn(b.ln_1(x)).split(x.shape[-1], dim=2)
            q, k, v = (t.reshape(n, length, self.heads, -1).transpose(1, 2) for t in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + b.c_proj(y.transpose(1, 2).reshape(n, length, -1))
            x = x + b.mlp_proj(F.gelu(b.c_fc(b.ln_2(x)), approximate="tanh"))
        return F.linear(self.ln_f(x), self.wte.weight)


def test_gpt2_equals_reference_with_causal_sdpa():
    small = {"vocab": 100, "length": 16, "width": 64, "heads": 4, "depth": 2}
    built = build(archlab.load("gpt2_small", **small))
    reference = GPT2(100, 16, 64, 4, 2)
    randomise(built)
    copy_by_order(built, reference)
    ids = torch.randint(0, 100, (2, 16))
    assert_same_outputs(built, reference, ids)
    # causal: changing a later token never changes an earlier position's logits
    later = ids.clone()
    later[:, 10:] = (later[:, 10:] + 1) % 100
    with torch.no_grad():
        assert torch.equal(built(ids)[:, :10], built(later)[:, :10])
        assert not torch.equal(built(ids)[:, 10:], built(later)[:, 10:])


def test_gpt2_head_shares_the_embedding_table():
    built = build(archlab.load("gpt2_small", vocab=50, length=8, width=16, heads=2, depth=1))
    assert "lm_head.weight" not in built.state_dict()
    assert "wte_weight = self.wte.weight" in built.code
    (built(torch.randint(0, 50, (2, 8))).sum()).backward()
    assert built.wte.weight.grad is not None   # the head's gradient reaches the shared table


# ---------------------------------------------------------------------- drop path -------


def test_drop_path_schedules_follow_the_papers():
    b0 = [n.params.drop_path for n in archlab.load("efficientnet_b0").graph.nodes
          if n.block == "inverted_residual"]
    assert b0 == pytest.approx([0.2 * i / 16 for i in range(16)])   # torchvision: rate * i / n
    tiny = [n.params.drop_path for n in archlab.load("convnext_tiny").graph.nodes
            if n.block == "convnext_block"]
    assert tiny == pytest.approx([0.1 * i / 17 for i in range(18)])  # linspace(0, 0.1, 18)


def test_drop_path_works_in_training_only_and_changes_no_count():
    """Eval: the output is the deterministic network's; training: whole samples keep only
    their shortcut, and the others are scaled by 1 / (1 - rate) on their branch."""
    d = archlab.load("convnext_tiny", size=32, drop_path=0.5)
    plain = archlab.load("convnext_tiny", size=32, drop_path=0.0)
    assert d.graph.param_count == plain.graph.param_count
    assert d.graph.multiply_adds == plain.graph.multiply_adds
    records = [op for op in d.graph.ops() if op.kind == "drop_path"]
    assert len(records) == 17 and all(op.extra["training_only"] for op in records)
    assert records[-1].extra["rate"] == pytest.approx(0.5)
    torch.manual_seed(0)
    a, b = build(d), build(plain)
    b.load_state_dict(a.state_dict())
    x = torch.randn(4, 3, 32, 32)
    a.eval()
    b.eval()
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x))
    block = a.get_submodule("stage4.2")        # rate 0.5
    block.train()
    torch.manual_seed(1)
    with torch.no_grad():
        y = block(torch.randn(64, 768, 1, 1) * 0 + 1.0)
    kept = (y - 1.0).flatten(1).abs().amax(1) > 0
    assert 10 < int(kept.sum()) < 54            # about half the samples keep their branch


# -------------------------------------------------------------------------- torchscript -------


# The built forward of designs that exercise each builder feature: the tied table passed as
# get_attr (gpt2_small), merges of several inputs (unet_mnist), residual blocks, tokens and axis
# operations, recurrent layers, a stored KL term. Every one of the 31 zoo designs compiled when
# this was written (about 70 s on the CI machine, too long for CI); every block's examples
# compile below.
SCRIPTED_DESIGNS = ["gpt2_small", "unet_mnist", "resnet18", "vit_b_16", "convnext_tiny",
                    "lstm_classifier", "vae_mnist"]


@pytest.mark.parametrize("name", SCRIPTED_DESIGNS)
def test_zoo_designs_compile_with_torchscript(name):
    with torch.device("meta"):
        model = build(archlab.load(name)).eval()
    torch.jit.script(model)


CASES = [pytest.param(name, i, id=f"{name}-{i}") for name, block in BLOCKS.items()
         for i in range(len(block.examples))]


@pytest.mark.parametrize(("name", "i"), CASES)
def test_every_block_example_compiles_with_torchscript(name, i):
    """Every registered block, on each of its examples' settings, as ``torch.jit.script``
    needs it: no name lookups by string, no globals, no variable arguments."""
    block = BLOCKS[name]
    raw, shapes = block.examples[i]
    with torch.device("meta"):
        module = block.build(block.Params(**raw), [tuple(s) for s in shapes])
    torch.jit.script(module.eval())


def test_scripted_models_compute_what_eager_models_compute():
    for name, kwargs, x in [
        ("resnet18", {"size": 32, "classes": 10}, torch.randn(2, 3, 32, 32)),
        ("vit_b_16", {"size": 32, "patch": 8, "width": 32, "heads": 2, "depth": 1},
         torch.randn(2, 3, 32, 32)),
        ("gpt2_small", {"vocab": 30, "length": 8, "width": 16, "heads": 2, "depth": 1},
         torch.randint(0, 30, (2, 8))),
    ]:
        model = build(archlab.load(name, **kwargs)).eval()
        scripted = torch.jit.script(model)
        with torch.no_grad():
            torch.testing.assert_close(scripted(x), model(x))

