"""The design language: both design processes, names, merges, defaults, width policies,
variables, residuals, design-defined blocks, round trips, and safety."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import archlab
from archlab.cli import main
from archlab.design.expr import ExprError, evaluate


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_flat_layer_list_equals_hand_written_sequential():
    design = archlab.load({
        "input": [3, 16, 16],
        "defaults": {"norm": "none", "act": "relu"},
        "layers": [
            {"block": "conv", "out": 8, "kernel": 3},
            {"block": "conv", "out": 16, "kernel": 3, "stride": 2},
            {"block": "flatten"},
            {"block": "linear", "out": 10},
        ]})
    torch.manual_seed(0)
    built = archlab.build(design)
    ref = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU(),
                        nn.Flatten(), nn.Linear(16 * 8 * 8, 10))
    ref_params = [p for p in ref.parameters()]
    assert [tuple(p.shape) for p in built.parameters()] == [tuple(p.shape) for p in ref_params]
    with torch.no_grad():
        for p, q in zip(built.parameters(), ref_params, strict=True):
            q.copy_(p)
    x = torch.randn(4, 3, 16, 16)
    torch.testing.assert_close(built(x), ref(x))


def test_stage_repeats_block_with_stride_only_at_entry():
    d = archlab.load({"input": [16, 32, 32], "layers": [
        {"name": "stage", "block": "conv", "out": 32, "stride": 2, "depth": 3}]})
    paths = [n.path for n in d.graph.nodes]
    assert paths == ["stage.0", "stage.1", "stage.2"]
    assert [n.output_shape for n in d.graph.nodes] == [(32, 16, 16)] * 3
    assert [n.params.stride for n in d.graph.nodes] == [2, 1, 1]


def test_names_reach_across_any_distance_and_insertions_do_not_shift_them():
    base = {"input": [3, 16, 16], "layers": [
        {"name": "enc", "block": "conv", "out": 8},
        {"name": "mid", "block": "conv", "out": 8},
        {"name": "cat", "merge": "concat", "from": ["enc", "mid"]}]}
    d1 = archlab.load(base)
    inserted = {**base, "layers": [base["layers"][0], {"name": "extra", "block": "conv", "out": 8},
                                   *base["layers"][1:]]}
    d2 = archlab.load(inserted)
    assert d1.graph.node("cat").inputs == ["enc", "mid"] == d2.graph.node("cat").inputs
    assert d2.graph.output_shape == (16, 16, 16)


@pytest.mark.parametrize("merge,channels,extra_params", [
    ("concat", 24, 0), ("sum", 8, 0), ("weighted", 8, 3), ({"kind": "concat", "out": 16}, 16, None)])
def test_merges(merge, channels, extra_params):
    d = archlab.load({"input": [4, 8, 8], "defaults": {"norm": "none", "act": "identity"}, "layers": [
        {"name": "a", "block": "conv", "out": 8},
        {"name": "b", "block": "conv", "out": 8, "from": "input"},
        {"name": "c", "block": "conv", "out": 8, "from": "input"},
        {"name": "m", "merge": merge, "from": ["a", "b", "c"]}]})
    assert d.graph.output_shape == (channels, 8, 8)
    model = archlab.build(d)
    y = model(torch.randn(2, 4, 8, 8))
    assert y.shape == (2, channels, 8, 8)
    assert _count(model) == d.graph.param_count
    if extra_params is not None:
        assert d.graph.node("m").param_count == extra_params


def test_weighted_merge_is_a_normalised_non_negative_sum():
    d = archlab.load({"input": [2, 4, 4], "layers": [
        {"name": "a", "block": "identity"}, {"name": "b", "block": "identity", "from": "input"},
        {"name": "m", "merge": "weighted", "from": ["a", "b"]}]})
    model = archlab.build(d)
    x = torch.randn(1, 2, 4, 4)
    y = model(x)  # equal weights: (x + x) / (2 + eps) ~ x
    torch.testing.assert_close(y, x, atol=1e-3, rtol=1e-3)


def test_defaults_are_set_once_and_overridden_per_stage_and_block():
    d = archlab.load({"input": [3, 8, 8], "defaults": {"act": "silu", "norm": "group"}, "layers": [
        {"name": "a", "block": "conv", "out": 32},
        {"name": "s", "block": "conv", "out": 32, "depth": 2, "defaults": {"act": "gelu"}},
        {"name": "b", "block": "conv", "out": 32, "act": "relu", "norm": "none"}]})
    acts = {n.path: n.params.act.kind for n in d.graph.nodes}
    norms = {n.path: n.params.norm.kind for n in d.graph.nodes}
    assert acts == {"a": "silu", "s.0": "gelu", "s.1": "gelu", "b": "relu"}
    assert norms == {"a": "group", "s.0": "group", "s.1": "group", "b": "none"}
    # A6: no conv bias before a norm, a bias when no norm follows
    assert d.graph.node("a").param_count == 3 * 32 * 9 + 2 * 32
    assert d.graph.node("b").param_count == 32 * 32 * 9 + 32


def test_conv_kind_default():
    d = archlab.load({"input": [8, 8, 8], "defaults": {"conv": "separable"}, "layers": [
        {"block": "conv", "out": 16}]})
    assert d.graph.nodes[0].params.kind == "separable"
    assert d.graph.param_count == 8 * 9 + 2 * 8 + 8 * 16 + 2 * 16


@pytest.mark.parametrize("policy,factor", [("double", 2), ("quadruple", 4)])
def test_width_policies(policy, factor):
    d = archlab.load({"input": [3, 32, 32], "width": {"policy": policy, "base": 8}, "layers": [
        {"name": "l0", "block": "conv", "out": "auto"},
        {"name": "l1", "block": "conv", "out": "auto", "stride": 2},
        {"name": "l2", "block": "conv", "out": "auto", "stride": 2}]})
    assert [n.output_shape[0] for n in d.graph.nodes] == [8, 8 * factor, 8 * factor ** 2]
    if policy == "quadruple":  # A9: each level holds the same number of activation values
        sizes = {n.output_shape[0] * n.output_shape[1] * n.output_shape[2] for n in d.graph.nodes}
        assert len(sizes) == 1


def test_width_multiplier_rounds_to_a_multiple_of_eight():
    spec = {"input": [3, 8, 8], "width": {"multiplier": 0.75}, "layers": [
        {"block": "conv", "out": 32}, {"block": "conv", "out": 24}, {"block": "conv", "out": 10, "fixed_width": True}]}
    d = archlab.load(spec)
    assert [n.output_shape[0] for n in d.graph.nodes] == [24, 24, 10]


def test_variables_make_variants_from_python_and_cli(capsys):
    assert archlab.load("resnet18", width=32).graph.node("layer4.1").output_shape[0] == 256
    assert main(["show", "resnet18", "--set", "width=32", "--set", "classes=10", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["outputs"] == [[10]]
    assert data["total_params"] == archlab.load("resnet18", width=32, classes=10).graph.param_count
    assert data["schema"] == "archlab.show/1"
    assert {"path", "block", "inputs", "output", "params", "multiply_adds", "line"} <= set(data["nodes"][0])


def test_variables_can_use_expressions_and_earlier_variables():
    d = archlab.load({"input": [3, 8, 8], "variables": {"w": 8, "w2": "$(w * 2)"},
                      "layers": [{"block": "conv", "out": "${w2 + w}"}]})
    assert d.graph.output_shape[0] == 24


def test_expressions_cannot_run_code():
    with pytest.raises(ExprError):
        evaluate("__import__('os').system('true')", {})
    with pytest.raises(ExprError):
        evaluate("().__class__", {})
    with pytest.raises(ExprError):
        evaluate("2 ** 1000", {})


def test_input_shapes_of_images_sequences_and_vectors():
    img = archlab.load({"input": [3, 224, 224], "layers": [{"block": "conv", "out": 8, "stride": 2}]})
    seq = archlab.load({"input": [1, 16000], "layers": [{"block": "conv", "out": 8, "kernel": 9, "stride": 4}]})
    vec = archlab.load({"input": [64], "layers": [{"block": "linear", "out": 10}]})
    assert img.graph.output_shape == (8, 112, 112)
    assert seq.graph.output_shape == (8, 4000)
    assert vec.graph.output_shape == (10,)


def test_residual_around_block_and_group_with_automatic_projection():
    d = archlab.load({"input": [8, 16, 16], "layers": [
        {"name": "b", "block": "conv", "out": 16, "stride": 2, "residual": True},
        {"name": "g", "residual": {"projection": "avgpool", "act": "relu"}, "layers": [
            {"block": "conv", "out": 32, "stride": 2}, {"block": "conv", "out": 32, "act": "none"}]}]})
    paths = [n.path for n in d.graph.nodes]
    assert paths == ["b.block", "b.residual", "g.conv0", "g.conv1", "g.residual"]
    assert d.graph.node("g.residual").inputs == ["g.conv1", "b.residual"]
    model = archlab.build(d)
    assert model(torch.randn(2, 8, 16, 16)).shape == (2, 32, 4, 4)
    assert _count(model) == d.graph.param_count
    # the identity shortcut adds no parameters
    same = archlab.load({"input": [8, 8, 8], "layers": [{"block": "conv", "out": 8, "residual": True}]})
    assert same.graph.node("conv0.residual").param_count == 0


def test_design_defined_blocks_compose_cells():
    d = archlab.load({
        "input": [3, 16, 16],
        "blocks": {"cell": {"inputs": ["x", "y"], "params": {"out": 8}, "layers": [
            {"name": "p", "block": "conv", "from": "x", "out": "$out"},
            {"name": "q", "block": "conv", "from": "y", "out": "$out", "kernel": 5},
            {"name": "m", "merge": "sum", "from": ["p", "q"]}]}},
        "layers": [
            {"name": "stem", "block": "conv", "out": 8},
            {"name": "c1", "block": "cell", "from": ["stem", "input"], "out": 8},
            {"name": "c2", "block": "cell", "from": ["c1", "stem"], "out": 8}]})
    assert [n.path for n in d.graph.nodes][-3:] == ["c2.p", "c2.q", "c2.m"]
    assert d.graph.node("c2.p").inputs == ["c1.m"] and d.graph.node("c2.q").inputs == ["stem"]
    assert archlab.build(d)(torch.randn(1, 3, 16, 16)).shape == (1, 8, 16, 16)


def test_round_trip_build_save_load_gives_identical_outputs(tmp_path):
    design = archlab.load("resnet18", width=16, classes=7, size=64)
    torch.manual_seed(1)
    model = archlab.build(design).eval()
    archlab.save(model, design, tmp_path / "m")
    again = archlab.load_built(tmp_path / "m").eval()
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(model(x), again(x), rtol=0, atol=0)
    resolved = archlab.load(tmp_path / "m" / "design.yaml")
    assert resolved.graph.param_count == design.graph.param_count
    assert resolved.variables == design.variables


def test_build_command_writes_safetensors_and_design(tmp_path, capsys):
    assert main(["build", "dcgan_generator", "-o", str(tmp_path / "g")]) == 0
    files = {p.name for p in (tmp_path / "g").iterdir()}
    assert {"weights.safetensors", "design.yaml", "model.json"} <= files
    model = archlab.load_built(tmp_path / "g")
    assert model(torch.randn(2, 100)).shape == (2, 3, 64, 64)


def test_dict_and_yaml_text_give_the_same_design():
    text = "input: [3, 8, 8]\nlayers:\n  - {name: a, block: conv, out: 4}\n"
    a = archlab.load(text)
    b = archlab.load({"input": [3, 8, 8], "layers": [{"name": "a", "block": "conv", "out": 4}]})
    assert a.graph.param_count == b.graph.param_count and a.graph.output_shape == b.graph.output_shape
    assert a.graph.nodes[0].line == 3


def test_custom_block_registered_from_python_is_usable_by_name():
    from pydantic import Field

    from archlab.blocks import BLOCKS, Block, BlockParams, register_block
    from archlab.ops import act_op

    class ScaleParams(BlockParams):
        factor: float = Field(2.0, description="multiplier")

    class Scale(nn.Module):
        def __init__(self, factor):
            super().__init__()
            self.factor = factor

        def forward(self, x):
            return x * self.factor

    @register_block
    class ScaleBlock(Block):
        """Multiply by a constant: (C, H, W) -> (C, H, W). Test block (no paper)."""

        name = "test_scale"
        Params = ScaleParams

        @classmethod
        def output_shape(cls, p, inputs):
            return inputs[0]

        @classmethod
        def ops(cls, p, inputs):
            return [act_op("", "mul", inputs[0])]

        @classmethod
        def build(cls, p, inputs):
            return Scale(p.factor)

    try:
        net = archlab.build({"input": [2, 4], "layers": [{"block": "test_scale", "factor": 3.0}]})
        torch.testing.assert_close(net(torch.ones(1, 2, 4)), torch.full((1, 2, 4), 3.0))
    finally:
        BLOCKS.pop("test_scale")


def test_built_model_is_plain_pytorch_with_no_hooks_or_extra_buffers():
    model = archlab.build("resnet18")
    assert isinstance(model, torch.fx.GraphModule)
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks
    n_buffers = sum(1 for _ in model.buffers())
    assert n_buffers == 3 * sum(1 for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert "def forward(self, x)" in model.code  # generated code, not an interpreter


def test_depth_repeats_a_two_input_cell_over_the_two_previous_outputs():
    d = archlab.load({
        "input": [4, 8, 8],
        "blocks": {"cell": {"inputs": ["prev_prev", "prev"], "layers": [
            {"name": "a", "block": "conv", "from": "prev_prev", "out": 4},
            {"name": "b", "block": "conv", "from": "prev", "out": 4},
            {"name": "m", "merge": "sum", "from": ["a", "b"]}]}},
        "layers": [
            {"name": "stem", "block": "conv", "out": 4},
            {"name": "cells", "block": "cell", "from": ["input", "stem"], "depth": 3}]})
    g = d.graph
    assert g.node("cells.0.a").inputs == ["input"] and g.node("cells.0.b").inputs == ["stem"]
    assert g.node("cells.1.a").inputs == ["stem"] and g.node("cells.1.b").inputs == ["cells.0.m"]
    assert g.node("cells.2.a").inputs == ["cells.0.m"] and g.node("cells.2.b").inputs == ["cells.1.m"]


def test_per_position_layer_norm_equals_pytorch_layer_norm_over_channels():
    """norm: {kind: layer, per_position: true} on (C, L): each step normalised over its
    channels, as nn.LayerNorm does on (N, L, C) (the oracle)."""
    torch.manual_seed(0)
    net = archlab.build({"input": [6, 9], "layers": [
        {"block": "norm", "norm": {"kind": "layer", "per_position": True}}]})
    ref = nn.LayerNorm(6)
    with torch.no_grad():
        ref.weight.uniform_(0.5, 1.5)
        ref.bias.uniform_(-0.5, 0.5)
        params = dict(net.named_parameters())
        (w,) = [v for k, v in params.items() if k.endswith("weight")]
        (b,) = [v for k, v in params.items() if k.endswith("bias")]
        w.copy_(ref.weight)
        b.copy_(ref.bias)
    x = torch.randn(3, 6, 9)
    torch.testing.assert_close(net(x), ref(x.transpose(1, 2)).transpose(1, 2))
    # the default layer norm of a feature map normalises channels and positions together
    whole = archlab.build({"input": [6, 9], "layers": [{"block": "norm", "norm": "layer"}]})
    y = whole(x)
    torch.testing.assert_close(y.mean(dim=(1, 2)), torch.zeros(3), atol=1e-5, rtol=0)


def test_per_position_needs_layer_norm():
    with pytest.raises(archlab.DesignError) as info:
        archlab.load({"input": [6, 9], "layers": [
            {"block": "norm", "norm": {"kind": "batch", "per_position": True}}]})
    assert "per_position applies to norm 'layer' only, got norm 'batch'" in str(info.value)
