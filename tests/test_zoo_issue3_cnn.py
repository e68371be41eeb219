"""Issue 3, image classification: the zoo designs xception, shufflenet_v2, mobilenet_v3_large,
mobilenet_v3_small, se_resnet50, squeezenet, inception_v3 and nas_cell_net, and the blocks they
introduce (channel_split, channel_shuffle, shuffle_unit, xception_block, inception_a..e,
inception_aux, fire).

Oracles: the published parameter counts (torchvision / timm), the built model's own parameters,
a real forward pass (on the meta device for the big networks, so no memory or time is spent on
weights), PyTorch's FLOP counter, and ``torch.nn.ChannelShuffle``.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import archlab
from archlab.blocks import BLOCKS
from archlab.cli import main
from archlab.errors import ArchlabError
from archlab.zoo import PUBLISHED

# Published parameter counts (PyTorch convention), issue 3's table.
TABLE = {
    "xception": 22_855_952,
    "shufflenet_v2": 2_278_604,
    "mobilenet_v3_large": 5_483_032,
    "mobilenet_v3_small": 2_542_856,
    "se_resnet50": 28_088_024,
    "squeezenet": 1_248_424,
    "inception_v3": 27_161_264,
}
DESIGNS = [*TABLE, "nas_cell_net"]

_loaded: dict[str, archlab.Design] = {}


def design(name: str):
    if name not in _loaded:
        _loaded[name] = archlab.load(name)
    return _loaded[name]


def module_at(net: nn.Module, path: str) -> nn.Module:
    return net.get_submodule(path)


# ------------------------------------------------------------------------ the zoo table -------


@pytest.mark.parametrize("name", list(TABLE))
def test_parameter_count_equals_published(name):
    assert PUBLISHED[name] == TABLE[name]
    assert design(name).graph.param_count == TABLE[name]


@pytest.mark.parametrize("name", DESIGNS)
def test_inferred_shapes_counts_and_paths_equal_a_real_forward(name):
    """Build on the meta device, run a forward pass, and compare every node's inferred output
    shape, the parameter count, the multiply-adds and the op paths with the real module."""
    d = design(name)
    graph = d.graph
    with torch.device("meta"):
        net = archlab.build(d).eval()
    assert sum(p.numel() for p in net.parameters()) == graph.param_count

    seen: dict[str, tuple[int, ...]] = {}

    def recorder(path):
        def hook(module, args, output):
            seen[path] = tuple(output.shape[1:])
        return hook

    for node in graph.nodes:
        module_at(net, node.path).register_forward_hook(recorder(node.path))
    x = torch.empty(1, *d.input_shape, device="meta")
    with FlopCounterMode(display=False) as counter:
        out = net(x)
    outs = out if isinstance(out, tuple) else (out,)

    assert {n.path: tuple(n.output_shape) for n in graph.nodes} == seen
    assert [tuple(o.shape[1:]) for o in outs] == [tuple(s) for s in graph.output_shapes]
    assert counter.get_total_flops() // 2 == graph.multiply_adds
    paths = {p for p, _ in net.named_modules()}
    assert {op.path for op in graph.ops()} <= paths


@pytest.mark.parametrize("name", DESIGNS)
def test_archlab_show_exits_zero(name, capsys):
    assert main(["show", name]) == 0
    assert name in capsys.readouterr().out


def test_show_json_lists_both_inception_outputs(capsys):
    assert main(["show", "inception_v3", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["total_params"] == TABLE["inception_v3"]
    assert data["outputs"] == [[1000], [1000]]
    aux = [n for n in data["nodes"] if n["block"] == "inception_aux"]
    assert [n["inputs"] for n in aux] == [["mixed_6e"]]


@pytest.mark.parametrize(("variables", "published"), [
    # torchvision shufflenet_v2_x0_5, x1_5, x2_0: the width variants are tables of stage widths
    ({"stage2": 48, "stage3": 96, "stage4": 192}, 1_366_792),
    ({"stage2": 176, "stage3": 352, "stage4": 704}, 3_503_624),
    ({"stage2": 244, "stage3": 488, "stage4": 976, "features": 2048}, 7_393_996),
])
def test_shufflenet_v2_width_variants_equal_torchvision(variables, published):
    assert archlab.load("shufflenet_v2", **variables).graph.param_count == published


def test_inception_v3_has_the_aux_classifier_as_second_output():
    d = design("inception_v3")
    assert d.graph.outputs[1].endswith("aux")
    assert d.graph.output_shapes == [(1000,), (1000,)]
    aux = d.graph.node(d.graph.outputs[1])
    assert aux.block == "inception_aux" and aux.input_shapes == [(768, 17, 17)]
    # torchvision's figure for the network without the aux head (eval mode): 5.713 G
    # multiply-adds at 299x299
    assert round((d.graph.multiply_adds - aux.multiply_adds) / 1e9, 3) == 5.713


@pytest.mark.parametrize("name", ["squeezenet", "shufflenet_v2", "nas_cell_net"])
def test_small_input_trains_one_step_on_cpu(name):
    """A real forward and backward (not meta) at a small size: every parameter gets a gradient."""
    variables = {} if name == "nas_cell_net" else {"size": 64, "classes": 10}
    torch.manual_seed(0)
    d = archlab.load(name, **variables)
    net = archlab.build(d).train()
    out = net(torch.randn(2, *d.input_shape))
    assert tuple(out.shape) == (2, *d.graph.output_shape)
    out.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_nas_cell_net_cells_read_the_two_previous_cells():
    """The NASNet/DARTS wiring: cell k maps the outputs of cells k-2 and k-1 to its width."""
    graph = design("nas_cell_net").graph
    cells = sorted({n.path.split(".")[0] for n in graph.nodes if n.path.startswith("cell")})
    assert cells == [f"cell{k}" for k in range(1, 9)]
    for k in range(3, 9):
        assert graph.node(f"cell{k}.s0").inputs == [f"cell{k - 2}.out"]
        assert graph.node(f"cell{k}.s1").inputs == [f"cell{k - 1}.out"]
    sums = [n for n in graph.nodes if n.block == "sum"]
    assert len(sums) == 4 * len(cells)
    # reduction cells halve the grid: 32 -> 16 -> 8
    assert graph.node("cell3.out").output_shape[1:] == (16, 16)
    assert graph.node("cell8.out").output_shape == (4 * 64, 8, 8)


# ------------------------------------------------------------------------------- blocks -------


def _run(block: str, params: dict, shape: tuple[int, ...], x: torch.Tensor) -> torch.Tensor:
    cls = BLOCKS[block]
    return cls.build(cls.Params(**params), [shape])(x)


@pytest.mark.parametrize(("channels", "groups"), [(16, 2), (12, 3), (12, 4)])
def test_channel_shuffle_equals_torch_channel_shuffle(channels, groups):
    x = torch.randn(2, channels, 3, 5)
    expected = nn.ChannelShuffle(groups)(x)
    assert torch.equal(_run("channel_shuffle", {"groups": groups}, (channels, 3, 5), x), expected)


def test_channel_split_parts_cover_the_input_in_order():
    x = torch.randn(2, 10, 4)
    parts = [_run("channel_split", {"sizes": [3, 5, 2], "part": i}, (10, 4), x) for i in range(3)]
    assert [p.shape[1] for p in parts] == [3, 5, 2]
    assert torch.equal(torch.cat(parts, 1), x)


# Each block against the same cell written with plain nodes (conv, act, pools, channel_split,
# channel_shuffle, merges): equal parameters and multiply-adds and, with the same weights, equal
# outputs. This checks each block's wiring (branch order, where the pool and shortcut sit) and
# shows that the cells are expressible in the design language (A1).
SEP = {"block": "conv", "kind": "separable", "inner": "none", "act": "none"}
EQUIVALENT = {
    "shuffle_unit stride 1": ([16, 8, 8], [{"block": "shuffle_unit"}], [
        {"name": "kept", "block": "channel_split", "part": 0},
        {"name": "rest", "block": "channel_split", "part": 1, "from": "input"},
        {"name": "pw1", "block": "conv", "kernel": 1},
        {"name": "dw", "block": "conv", "kind": "depthwise", "act": "none"},
        {"name": "pw2", "block": "conv", "kernel": 1},
        {"name": "cat", "merge": "concat", "from": ["kept", "pw2"]},
        {"name": "shuffle", "block": "channel_shuffle"},
    ]),
    "shuffle_unit stride 2": ([8, 9, 9], [{"block": "shuffle_unit", "out": 16, "stride": 2}], [
        {"name": "b1_dw", "block": "conv", "kind": "depthwise", "stride": 2, "act": "none"},
        {"name": "b1_pw", "block": "conv", "kernel": 1, "out": 8},
        {"name": "b2_pw1", "block": "conv", "kernel": 1, "out": 8, "from": "input"},
        {"name": "b2_dw", "block": "conv", "kind": "depthwise", "stride": 2, "act": "none"},
        {"name": "b2_pw2", "block": "conv", "kernel": 1},
        {"name": "cat", "merge": "concat", "from": ["b1_pw", "b2_pw2"]},
        {"name": "shuffle", "block": "channel_shuffle"},
    ]),
    "xception_block": ([8, 9, 9], [{"block": "xception_block", "out": 16, "stride": 2}], [
        {"name": "relu0", "block": "act"},
        {"name": "sep0", **SEP, "out": 16},
        {"name": "relu1", "block": "act"},
        {"name": "sep1", **SEP, "out": 16},
        {"name": "pool", "block": "maxpool", "kernel": 3, "stride": 2, "padding": 1},
        {"name": "shortcut", "block": "conv", "kernel": 1, "stride": 2, "out": 16, "act": "none",
         "from": "input"},
        {"name": "add", "merge": "sum", "from": ["pool", "shortcut"]},
    ]),
    "xception_block grow last": ([8, 6, 6], [{"block": "xception_block", "out": 12, "reps": 3,
                                               "grow_first": False, "start_with_relu": False}], [
        {"name": "sep0", **SEP, "out": 8},
        {"name": "relu1", "block": "act"},
        {"name": "sep1", **SEP, "out": 8},
        {"name": "relu2", "block": "act"},
        {"name": "sep2", **SEP, "out": 12},
        {"name": "shortcut", "block": "conv", "kernel": 1, "out": 12, "act": "none", "from": "input"},
        {"name": "add", "merge": "sum", "from": ["sep2", "shortcut"]},
    ]),
    "fire": ([12, 7, 7], [{"block": "fire", "squeeze": 4, "expand1x1": 6, "expand3x3": 10,
                          "norm": "none"}], [
        {"name": "squeeze", "block": "conv", "kernel": 1, "out": 4, "norm": "none"},
        {"name": "e1", "block": "conv", "kernel": 1, "out": 6, "norm": "none"},
        {"name": "e3", "block": "conv", "kernel": 3, "out": 10, "norm": "none", "from": "squeeze"},
        {"name": "cat", "merge": "concat", "from": ["e1", "e3"]},
    ]),
    "inception_a": ([16, 7, 5], [{"block": "inception_a", "branch1x1": 8, "branch5x5_reduce": 4,
                                  "branch5x5": 8, "branch3x3dbl_reduce": 4, "branch3x3dbl": 6,
                                  "pool_features": 2}], [
        {"name": "b1", "block": "conv", "kernel": 1, "out": 8},
        {"name": "b5_1", "block": "conv", "kernel": 1, "out": 4, "from": "input"},
        {"name": "b5_2", "block": "conv", "kernel": 5, "out": 8},
        {"name": "b3_1", "block": "conv", "kernel": 1, "out": 4, "from": "input"},
        {"name": "b3_2", "block": "conv", "kernel": 3, "out": 6},
        {"name": "b3_3", "block": "conv", "kernel": 3, "out": 6},
        {"name": "bp_pool", "block": "avgpool", "kernel": 3, "stride": 1, "padding": 1, "from": "input"},
        {"name": "bp", "block": "conv", "kernel": 1, "out": 2},
        {"name": "cat", "merge": "concat", "from": ["b1", "b5_2", "b3_3", "bp"]},
    ]),
    "inception_e": ([8, 5, 6], [{"block": "inception_e", "branch1x1": 4, "branch3x3": 3,
                                 "branch3x3dbl_reduce": 6, "branch3x3dbl": 5, "pool_features": 2}], [
        {"name": "b1", "block": "conv", "kernel": 1, "out": 4},
        {"name": "b3", "block": "conv", "kernel": 1, "out": 3, "from": "input"},
        {"name": "b3_a", "block": "conv", "kernel": [1, 3], "out": 3},
        {"name": "b3_b", "block": "conv", "kernel": [3, 1], "out": 3, "from": "b3"},
        {"name": "d1", "block": "conv", "kernel": 1, "out": 6, "from": "input"},
        {"name": "d2", "block": "conv", "kernel": 3, "out": 5},
        {"name": "d_a", "block": "conv", "kernel": [1, 3], "out": 5},
        {"name": "d_b", "block": "conv", "kernel": [3, 1], "out": 5, "from": "d2"},
        {"name": "bp_pool", "block": "avgpool", "kernel": 3, "stride": 1, "padding": 1, "from": "input"},
        {"name": "bp", "block": "conv", "kernel": 1, "out": 2},
        {"name": "cat", "merge": "concat", "from": ["b1", "b3_a", "b3_b", "d_a", "d_b", "bp"]},
    ]),
}


@pytest.mark.parametrize("case", list(EQUIVALENT))
def test_block_equals_the_same_cell_written_with_plain_nodes(case):
    shape, block_layers, plain_layers = EQUIVALENT[case]
    # Inception's BN eps (0.001) for both, so that only the wiring can differ
    defaults = {"norm": {"kind": "batch", "eps": 0.001}, "act": "relu"}
    block = archlab.load({"input": shape, "defaults": defaults, "layers": block_layers})
    plain = archlab.load({"input": shape, "defaults": defaults, "layers": plain_layers})
    assert block.graph.output_shape == plain.graph.output_shape
    assert block.graph.param_count == plain.graph.param_count
    assert block.graph.multiply_adds == plain.graph.multiply_adds
    a, b = archlab.build(block).eval(), archlab.build(plain).eval()
    # both hold the same layers in the same order; give them the same random weights and statistics
    pairs = [*zip(a.parameters(), b.parameters(), strict=True),
             *zip(a.buffers(), b.buffers(), strict=True)]
    torch.manual_seed(0)
    with torch.no_grad():
        for wa, wb in pairs:
            assert wa.shape == wb.shape
            if wb.is_floating_point():
                wb.copy_(torch.rand_like(wb) + 0.5)  # positive, so running variances stay valid
                wa.copy_(wb)
    x = torch.randn(2, *shape)
    torch.testing.assert_close(a(x), b(x))


def _error(layers: list, input_shape=(16, 8, 8)) -> str:
    with pytest.raises(ArchlabError) as info:
        archlab.load({"input": list(input_shape), "layers": layers})
    return str(info.value)


def test_shuffle_unit_stride_1_must_keep_the_width():
    message = _error([{"block": "shuffle_unit", "out": 32}])
    assert "a stride-1 shuffle_unit passes half its input through, so out must equal the input " \
           "channels (16), got out=32" in message
    assert "use out: 16, or stride: 2 to change the width" in message


def test_channel_split_and_shuffle_errors_name_the_numbers():
    message = _error([{"block": "channel_split"}], (15, 4, 4))
    assert "channel_split into halves needs an even channel count, got 15 channels" in message
    assert "sizes: [7, 8]" in message
    message = _error([{"block": "channel_split", "sizes": [4, 4]}])
    assert "sizes must add up to the input channels (16), got sizes=[4, 4] (sum 8)" in message
    message = _error([{"block": "channel_split", "part": 2}])
    assert "channel_split has 2 parts (0..1), got part=2" in message
    message = _error([{"block": "channel_shuffle", "groups": 3}])
    assert "channel_shuffle needs channels divisible by groups, got channels=16, groups=3" in message


def test_xception_block_rejects_stride_3():
    message = _error([{"block": "xception_block", "stride": 3}])
    assert "xception_block stride must be 1 or 2, got 3" in message


def test_inception_module_too_small_input_says_so():
    message = _error([{"block": "inception_aux"}], (768, 16, 16))
    assert "inception_aux needs a feature map of at least 17x17 (average pool 5/3, then a 5x5 " \
           "conv), got 16x16" in message
    message = str(pytest.raises(ArchlabError, archlab.load, "inception_v3", size=298).value)
    assert message.startswith("zoo:inception_v3:")  # the file and line of the aux node
    assert "(aux)" in message and "Inception-v3's 17x17 at a 299x299 input" in message


def test_fire_formula_matches_the_paper_module():
    """SqueezeNet fire2 (96 -> s16, e64 + e64) in the published network: 11,920 parameters."""
    cls = BLOCKS["fire"]
    p = cls.Params(squeeze=16, expand1x1=64, expand3x3=64)
    assert cls.param_count(p, [(96, 54, 54)]) == 96 * 16 + 16 + 16 * 64 + 64 + 9 * 16 * 64 + 64
    assert cls.output_shape(p, [(96, 54, 54)]) == (128, 54, 54)


def test_resolved_design_round_trips(tmp_path):
    d = design("inception_v3")
    again = archlab.load(d.to_yaml())
    assert again.graph.param_count == TABLE["inception_v3"]
    assert again.graph.outputs == d.graph.outputs
    json.dumps(d.to_dict())  # plain data, no Python objects
