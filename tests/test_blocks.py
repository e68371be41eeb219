"""Every registered block against an independent count, on every one of its examples.

Oracles: the real forward pass (shapes), ``sum(p.numel())`` (parameters), PyTorch's
``FlopCounterMode`` (multiply-adds = FLOPs // 2), autograd (finite gradients), the built module's
``named_modules()`` (op paths). Blocks registered later by anyone are covered automatically.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import re
from pathlib import Path

import pydantic
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import archlab.blocks
from archlab.blocks import BLOCKS
from archlab.blocks.docs import REGENERATE
from archlab.errors import ArchlabError, BlockError

REPO = Path(__file__).resolve().parents[1]
BATCH = 2  # > 1 so that BatchNorm in train mode has statistics to compute

CASES = [
    pytest.param(name, i, id=f"{name}-{i}")
    for name, block in BLOCKS.items()
    for i in range(len(block.examples))
]


def _setup(name: str, i: int):
    block = BLOCKS[name]
    raw, shapes = block.examples[i]
    params = block.Params(**raw)
    torch.manual_seed(0)
    module = block.build(params, [tuple(s) for s in shapes])
    # integer ids for blocks that read them; another node's weight (a tied table) has no batch
    inputs = [torch.randn(*s) if k in block.weight_inputs else
              torch.randint(0, 4, (BATCH, *s)) if block.input_dtype == "long" else
              torch.randn(BATCH, *s) for k, s in enumerate(shapes)]
    return block, params, [tuple(s) for s in shapes], module, inputs


@pytest.mark.parametrize(("name", "i"), CASES)
def test_formulas_match_module(name, i):
    block, params, shapes, module, inputs = _setup(name, i)
    module.eval()
    expected_shape = block.output_shape(params, shapes)
    originals = [x.clone() for x in inputs]
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        out = module(*inputs)
    # an input may also feed another node (a skip connection): no block may change it in place
    for k, (x, x0) in enumerate(zip(inputs, originals, strict=True)):
        assert torch.equal(x, x0), f"forward() modified input #{k} in place"
    assert tuple(out.shape) == (BATCH, *expected_shape), "output_shape disagrees with forward()"
    assert block.param_count(params, shapes) == sum(p.numel() for p in module.parameters())
    assert block.multiply_adds(params, shapes) * BATCH == counter.get_total_flops() // 2
    modules = dict(module.named_modules())
    missing = [op.path for op in block.ops(params, shapes) if op.path not in modules]
    assert not missing, f"op paths not in named_modules(): {missing}; modules: {sorted(modules)}"


@pytest.mark.parametrize(("name", "i"), CASES)
def test_backward_gives_finite_gradients(name, i):
    block, params, shapes, module, inputs = _setup(name, i)
    module.train()
    inputs = [x.requires_grad_() if x.is_floating_point() else x for x in inputs]
    out = module(*inputs)
    # a random projection, so that no gradient is zero by symmetry (a plain sum through a
    # normalisation would give exactly zero gradients to the weights before it)
    (out * torch.randn_like(out)).sum().backward()
    for pname, p in module.named_parameters():
        assert p.grad is not None, f"parameter {pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"parameter {pname} has non-finite gradients"
    for x in inputs:
        if x.is_floating_point():
            assert x.grad is not None and torch.isfinite(x.grad).all()


SHAPES = re.compile(r"\([^)]*\)\s*->")
CITATION = re.compile(r"\b(19|20)\d\d\b|et al\.")


@pytest.mark.parametrize("name", list(BLOCKS))
def test_block_is_documented(name):
    block = BLOCKS[name]
    doc = block.__doc__ or ""
    assert SHAPES.search(doc), f"block '{name}': docstring must state shapes like '(C, H, W) -> (...)'"
    assert CITATION.search(doc), f"block '{name}': docstring must cite its paper or source (authors and year)"
    assert block.examples, f"block '{name}' has no examples"
    assert block.family, f"block '{name}' has no family"


@pytest.mark.parametrize("name", list(BLOCKS))
def test_unknown_params_key_is_rejected(name):
    block = BLOCKS[name]
    raw = dict(block.examples[0][0])
    with pytest.raises(pydantic.ValidationError) as info:
        block.Params(**raw, no_such_setting=1)
    assert "no_such_setting" in str(info.value)
    assert "Extra inputs are not permitted" in str(info.value)


def _block_modules():
    return sorted(f"archlab.blocks.{m.name}" for m in pkgutil.iter_modules(archlab.blocks.__path__))


@pytest.mark.parametrize("module_name", _block_modules())
def test_doctests(module_name):
    module = importlib.import_module(module_name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} doctest(s) failed in {module_name}"


def test_block_reference_in_design_language_doc_is_up_to_date():
    from archlab.blocks.docs import MARKER, embedded

    path = REPO / "docs" / "design-language.md"
    text = path.read_text()
    assert MARKER in text, f"docs/design-language.md lost its block-reference marker; run `{REGENERATE}`"
    assert text == embedded(text), (
        f"the block reference in docs/design-language.md is out of date; regenerate it with `{REGENERATE}`")
    for name in BLOCKS:  # every registered block is documented with an example
        assert f"`{name}`" in text.split(MARKER, 1)[1]


# ------------------------------------------------------------------ error messages -------


def _shape(name, inputs, **raw):
    block = BLOCKS[name]
    return block.output_shape(block.Params(**raw), inputs)


def test_sum_mismatch_names_both_inputs_and_the_fix():
    with pytest.raises(BlockError) as info:
        _shape("sum", [(64, 32, 32), (128, 16, 16)])
    assert str(info.value) == (
        "merge 'sum' needs equal shapes, got (64, 32, 32) from input #0 and (128, 16, 16) "
        "from input #1; use merge: concat, or give input #1 a projection")
    assert isinstance(info.value, ArchlabError)


def test_weighted_mismatch_names_the_third_input():
    with pytest.raises(BlockError, match=r"merge 'weighted' needs equal shapes, got \(8, 4, 4\) "
                       r"from input #0 and \(16, 4, 4\) from input #2; use merge: concat, or give "
                       r"input #2 a projection \(a 1x1 conv to 8 channels\)"):
        _shape("weighted", [(8, 4, 4), (8, 4, 4), (16, 4, 4)])


def test_concat_spatial_mismatch():
    with pytest.raises(BlockError, match=r"merge 'concat' joins along channels \(axis 0\) unless an "
                       r"axis is given; it needs equal sizes on all other axes, got \(4, 8, 8\) from "
                       r"input #0 and \(4, 4, 4\) from input #1; resample input #1"):
        _shape("concat", [(4, 8, 8), (4, 4, 4)])


def test_merge_of_one_input():
    with pytest.raises(BlockError, match="merge 'sum' needs at least 2 inputs, got 1; list two or more"):
        _shape("sum", [(4, 4, 4)])


def test_space_to_depth_not_divisible():
    with pytest.raises(BlockError, match=r"space_to_depth needs height and width divisible by factor "
                       r"\(=2\), got 15x16 from input shape \(3, 15, 16\); pad or crop to a multiple of 2"):
        _shape("space_to_depth", [(3, 15, 16)])


def test_depth_to_space_not_divisible():
    with pytest.raises(BlockError, match=r"depth_to_space needs channels divisible by factor\^2 \(=4\), "
                       r"got 6 channels; put a conv with out: 4"):
        _shape("depth_to_space", [(6, 4, 4)])


def test_reshape_numel_differs():
    with pytest.raises(BlockError, match=r"reshape needs the same number of elements, got 64 from input "
                       r"\(4, 4, 4\) and 60 for shape \[4, 15\]"):
        _shape("reshape", [(4, 4, 4)], shape=[4, 15])


def test_pool_kernel_larger_than_map():
    with pytest.raises(BlockError, match=r"pool kernel 3 is larger than the padded feature map 2\+2\*0=2"):
        _shape("maxpool", [(4, 2, 2)], kernel=3)


def test_pool_padding_too_large():
    with pytest.raises(BlockError, match=r"pool padding \(=2\) must be at most half the kernel \(=3\)"):
        _shape("avgpool", [(4, 8, 8)], kernel=3, padding=2)


def test_bottleneck_out_not_multiple_of_expansion():
    with pytest.raises(BlockError, match=r"bottleneck output channels 'out' \(=30\) must be divisible by "
                       r"expansion \(=4\); out = 4 x planes; use expansion: 3 or 5 \(divisors of 30 "
                       r"nearest 4\), or out: 28 or 32 \(multiples of 4 nearest 30\)"):
        _shape("bottleneck", [(16, 8, 8)], out=30)


def test_spatial_dropout_on_vector():
    with pytest.raises(BlockError, match="spatial dropout drops whole channels of a feature map, got a "
                       r"vector \(16,\); use spatial: false"):
        _shape("dropout", [(16,)], spatial=True)


def test_linear_on_feature_map_suggests_flatten():
    with pytest.raises(BlockError, match=r"block 'linear' expects a vector \(F,\) input, got shape "
                       r"\(8, 4, 4\); add a 'flatten' or 'global_pool' node before it"):
        _shape("linear", [(8, 4, 4)], out=10)


def test_se_params_reject_bad_gate():
    with pytest.raises(pydantic.ValidationError, match="hardsigmoid"):
        BLOCKS["se"].Params(gate="relu")


# ---------------------------------------------- published networks composed from blocks -------


def _total_params(nodes, shape):
    """Chain blocks through their formulas only (no tensors): total parameters, final shape."""
    total = 0
    for name, raw in nodes:
        block = BLOCKS[name]
        params = block.Params(**raw)
        total += block.param_count(params, [shape])
        shape = block.output_shape(params, [shape])
    return total, shape


def _resnet(block, depths, se=None):
    nodes = [("conv", {"out": 64, "kernel": 7, "stride": 2}),
             ("maxpool", {"kernel": 3, "stride": 2, "padding": 1})]
    expansion = 4 if block == "bottleneck" else 1
    for stage, depth in enumerate(depths):
        for i in range(depth):
            raw = {"out": 64 * 2 ** stage * expansion, "stride": 2 if i == 0 and stage > 0 else 1}
            if se:
                raw["se"] = se
            nodes.append((block, raw))
    return nodes + [("head", {"classes": 1000})]


@pytest.mark.parametrize(("nodes", "published"), [
    pytest.param(_resnet("basic", [2, 2, 2, 2]), 11_689_512, id="resnet18"),
    pytest.param(_resnet("bottleneck", [3, 4, 6, 3]), 25_557_032, id="resnet50"),
    pytest.param(_resnet("bottleneck", [3, 4, 6, 3], se={"ratio": 16}), 28_088_024, id="se_resnet50"),
])
def test_resnets_match_published_parameter_counts(nodes, published):
    total, shape = _total_params(nodes, (3, 224, 224))
    assert (total, shape) == (published, (1000,))


def _mobilenet_v2():
    nodes = [("conv", {"out": 32, "stride": 2, "act": "relu6"})]
    for t, c, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                       (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]:
        nodes += [("inverted_residual", {"out": c, "expand": t, "stride": s if i == 0 else 1})
                  for i in range(n)]
    return nodes + [("conv", {"out": 1280, "kernel": 1, "act": "relu6"}),
                    ("head", {"classes": 1000, "dropout": 0.2})]


MNV3_SE = {"ratio": 4, "gate": "hardsigmoid", "divisor": 8}
# (kernel, expanded, out, se, act, stride) per block, Howard et al. 2019, Tables 1 and 2
MNV3_LARGE = [(3, 16, 16, 0, "relu", 1), (3, 64, 24, 0, "relu", 2), (3, 72, 24, 0, "relu", 1),
              (5, 72, 40, 1, "relu", 2), (5, 120, 40, 1, "relu", 1), (5, 120, 40, 1, "relu", 1),
              (3, 240, 80, 0, "hardswish", 2), (3, 200, 80, 0, "hardswish", 1),
              (3, 184, 80, 0, "hardswish", 1), (3, 184, 80, 0, "hardswish", 1),
              (3, 480, 112, 1, "hardswish", 1), (3, 672, 112, 1, "hardswish", 1),
              (5, 672, 160, 1, "hardswish", 2), (5, 960, 160, 1, "hardswish", 1),
              (5, 960, 160, 1, "hardswish", 1)]
MNV3_SMALL = [(3, 16, 16, 1, "relu", 2), (3, 72, 24, 0, "relu", 2), (3, 88, 24, 0, "relu", 1),
              (5, 96, 40, 1, "hardswish", 2), (5, 240, 40, 1, "hardswish", 1),
              (5, 240, 40, 1, "hardswish", 1), (5, 120, 48, 1, "hardswish", 1),
              (5, 144, 48, 1, "hardswish", 1), (5, 288, 96, 1, "hardswish", 2),
              (5, 576, 96, 1, "hardswish", 1), (5, 576, 96, 1, "hardswish", 1)]


def _mobilenet_v3(table, last, hidden):
    nodes = [("conv", {"out": 16, "stride": 2, "act": "hardswish"})]
    for k, exp, out, se, act, s in table:
        nodes.append(("inverted_residual", {"out": out, "expanded": exp, "kernel": k, "stride": s,
                                            "act": act, "se": MNV3_SE if se else None}))
    return nodes + [("conv", {"out": last, "kernel": 1, "act": "hardswish"}),
                    ("global_pool", {}),
                    ("linear", {"out": hidden, "act": "hardswish"}),
                    ("dropout", {"p": 0.2}),
                    ("linear", {"out": 1000})]


@pytest.mark.parametrize(("nodes", "published"), [
    pytest.param(_mobilenet_v2(), 3_504_872, id="mobilenet_v2"),
    pytest.param(_mobilenet_v3(MNV3_LARGE, 960, 1280), 5_483_032, id="mobilenet_v3_large"),
    pytest.param(_mobilenet_v3(MNV3_SMALL, 576, 1024), 2_542_856, id="mobilenet_v3_small"),
])
def test_mobilenets_match_published_parameter_counts(nodes, published):
    total, shape = _total_params(nodes, (3, 224, 224))
    assert (total, shape) == (published, (1000,))


def test_composed_mobilenet_v3_small_builds_and_runs_as_counted():
    """The chain of built blocks runs and has exactly the counted parameters (small input)."""
    shape, modules = (3, 32, 32), []
    for name, raw in _mobilenet_v3(MNV3_SMALL, 576, 1024):
        block = BLOCKS[name]
        params = block.Params(**raw)
        modules.append(block.build(params, [shape]))
        shape = block.output_shape(params, [shape])
    net = torch.nn.Sequential(*modules).eval()
    assert sum(p.numel() for p in net.parameters()) == 2_542_856
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 1000)


def test_bottleneck_state_dict_uses_torchvision_names():
    block = BLOCKS["bottleneck"]
    module = block.build(block.Params(out=256, stride=2), [(64, 56, 56)])
    bn = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    expected = {"conv1.weight", "conv2.weight", "conv3.weight", "downsample.0.weight"}
    expected |= {f"{m}.{k}" for m in ("bn1", "bn2", "bn3", "downsample.1") for k in bn}
    assert set(module.state_dict()) == expected
    shapes = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    # torchvision resnet50 layer2.0 with stride on the 3x3 conv ("v1.5")
    assert shapes["conv1.weight"] == (64, 64, 1, 1)
    assert shapes["conv2.weight"] == (64, 64, 3, 3)
    assert shapes["conv3.weight"] == (256, 64, 1, 1)
    assert shapes["downsample.0.weight"] == (256, 64, 1, 1)
    assert module.conv2.stride == (2, 2) and module.conv1.stride == (1, 1)
    original = block.build(block.Params(out=256, stride=2, stride_on="1x1"), [(64, 56, 56)])
    assert original.conv1.stride == (2, 2) and original.conv2.stride == (1, 1)


# ---------------------------------------------------- forward passes against hand-written maths -------


def test_basic_block_computes_act_of_branch_plus_projection():
    block = BLOCKS["basic"]
    m = block.build(block.Params(out=8, stride=2), [(4, 6, 6)]).eval()
    x = torch.randn(2, 4, 6, 6)
    relu = torch.relu
    branch = m.bn2(m.conv2(relu(m.bn1(m.conv1(x)))))
    expected = relu(branch + m.downsample(x))
    torch.testing.assert_close(m(x), expected)


def test_preactivation_block_projects_the_preactivated_input():
    block = BLOCKS["basic"]
    m = block.build(block.Params(out=8, stride=2, order="pre"), [(4, 6, 6)]).eval()
    x = torch.randn(2, 4, 6, 6)
    pre = torch.relu(m.bn1(x))
    expected = m.conv2(torch.relu(m.bn2(m.conv1(pre)))) + m.downsample(pre)
    torch.testing.assert_close(m(x), expected)
    assert getattr(m, "act", None) is None, "a pre-activation block has no activation after the add"


def test_se_reweights_channels_by_the_gate():
    block = BLOCKS["se"]
    m = block.build(block.Params(ratio=4), [(8, 5, 5)])
    x = torch.randn(2, 8, 5, 5)
    s = x.mean((2, 3))
    hidden = torch.relu(s @ m.fc1.weight.flatten(1).T + m.fc1.bias)
    gate = torch.sigmoid(hidden @ m.fc2.weight.flatten(1).T + m.fc2.bias)
    torch.testing.assert_close(m(x), x * gate[:, :, None, None])


def test_inverted_residual_adds_input_only_when_shapes_agree():
    block = BLOCKS["inverted_residual"]
    same = block.build(block.Params(out=8), [(8, 6, 6)]).eval()
    x = torch.randn(2, 8, 6, 6)
    branch = same.project(same.depthwise(same.expand(x)))
    torch.testing.assert_close(same(x), branch + x)
    assert [op.kind for op in block.ops(block.Params(out=16), [(8, 6, 6)])].count("add") == 0
    # linear bottleneck: the projection ends with its norm, no activation
    assert isinstance(same.project[-1], torch.nn.BatchNorm2d)


def test_weighted_merge_is_fast_normalised_fusion():
    block = BLOCKS["weighted"]
    m = block.build(block.Params(), [(3, 4)] * 3)
    with torch.no_grad():
        m.weight.copy_(torch.tensor([2.0, -1.0, 1.0]))   # the negative weight is clipped to 0
    a, b, c = (torch.randn(2, 3, 4) for _ in range(3))
    torch.testing.assert_close(m(a, b, c), (2 * a + 0 * b + 1 * c) / (3 + 1e-4))


def test_weighted_merge_gradients_match_numeric_gradients():
    block = BLOCKS["weighted"]
    m = block.build(block.Params(), [(2, 3)] * 2).double()
    with torch.no_grad():
        m.weight.copy_(torch.tensor([0.7, 1.3], dtype=torch.float64))
    a = torch.randn(1, 2, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(1, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda w, x, y: torch.func.functional_call(m, {"weight": w}, (x, y)),
                                    (m.weight.detach().clone().requires_grad_(), a, b))


def test_space_to_depth_and_depth_to_space_are_inverse():
    s2d, d2s = BLOCKS["space_to_depth"], BLOCKS["depth_to_space"]
    x = torch.randn(2, 3, 8, 12)
    down = s2d.build(s2d.Params(factor=2), [(3, 8, 12)])(x)
    assert down.shape == (2, 12, 4, 6)
    torch.testing.assert_close(d2s.build(d2s.Params(factor=2), [(12, 4, 6)])(down), x)


def test_concat_projection_maps_the_stack_with_a_1x1_conv():
    block = BLOCKS["concat"]
    params = block.Params(out=5)
    m = block.build(params, [(4, 3, 3), (2, 3, 3)]).eval()
    a, b = torch.randn(2, 4, 3, 3), torch.randn(2, 2, 3, 3)
    torch.testing.assert_close(m(a, b), m.project(torch.cat([a, b], 1)))
    assert m.project[0].kernel_size == (1, 1) and m.project[0].in_channels == 6
    assert block.output_shape(params, [(4, 3, 3), (2, 3, 3)]) == (5, 3, 3)


def test_global_pool_keepdim_and_head_on_vectors():
    gp = BLOCKS["global_pool"]
    assert gp.output_shape(gp.Params(), [(8, 4, 4)]) == (8,)
    assert gp.output_shape(gp.Params(keepdim=True), [(8, 4, 4)]) == (8, 1, 1)
    x = torch.randn(2, 8, 4, 4)
    torch.testing.assert_close(gp.build(gp.Params(kind="max"), [(8, 4, 4)])(x), x.amax((2, 3)))
    head = BLOCKS["head"]
    module = head.build(head.Params(classes=3), [(8,)])
    assert [name for name, _ in module.named_children()] == ["fc"]


def test_plain_linear_inherits_no_defaults_and_keeps_plain_names():
    block = BLOCKS["linear"]
    assert block.inherits == ()
    module = block.build(block.Params(out=4), [(6,)])
    assert isinstance(module, torch.nn.Linear) and set(module.state_dict()) == {"weight", "bias"}


def test_pool_output_size_formula_matches_pytorch_everywhere():
    """PyTorch's ceil_mode rule (drop a last window starting in the padding) on every small case."""
    from archlab.blocks.pool import pool_spatial

    for size in range(1, 10):
        for k in range(1, 5):
            for s in range(1, 4):
                for p in range(0, k // 2 + 1):
                    if size + 2 * p < k:
                        continue
                    for ceil in (False, True):
                        real = torch.nn.functional.max_pool1d(
                            torch.zeros(1, 1, size), k, s, p, ceil_mode=ceil).shape[-1]
                        assert pool_spatial((size,), (k,), (s,), (p,), ceil) == (real,), (size, k, s, p, ceil)


def test_upsample_sizes_match_pytorch_for_fractional_scales():
    block = BLOCKS["upsample"]
    for size in (3, 5, 7):
        for scale in (1.5, 2.5, 3):
            params = block.Params(scale=scale, mode="bilinear")
            out = block.build(params, [(2, size, size + 1)])(torch.zeros(1, 2, size, size + 1))
            assert tuple(out.shape[1:]) == block.output_shape(params, [(2, size, size + 1)])


@pytest.mark.parametrize(("name", "raw", "shape"), [
    ("bottleneck", {"out": 32, "stride": 2, "zero_init": True}, (16, 6, 6)),
    ("basic", {"out": 8, "zero_init": True, "order": "pre"}, (8, 5, 5)),
    ("inverted_residual", {"expand": 3, "zero_init": True}, (8, 5, 5)),
])
def test_zero_init_blocks_start_as_their_shortcut(name, raw, shape):
    block = BLOCKS[name]
    m = block.build(block.Params(**raw), [shape]).eval()
    x = torch.randn(2, *shape)
    shortcut = m.downsample(x) if getattr(m, "downsample", None) is not None else x
    expected = torch.relu(shortcut) if raw.get("order") != "pre" and name != "inverted_residual" else shortcut
    torch.testing.assert_close(m(x), expected)
