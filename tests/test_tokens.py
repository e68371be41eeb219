"""Issue 13, the language: learned tensors, axis operations, concat along an axis, widths
relative to the input, tied embeddings, causal attention, layer scale and drop path on residual
nodes, RegNet's bottleneck rule, and error messages that name a working fix.

Oracles: PyTorch's own modules and functions (``F.scaled_dot_product_attention(is_causal=True)``,
``nn.Conv2d`` with groups, ``x[:, 0]``), hand formulas, and exact error text.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import archlab
from archlab import build  # the function (importing archlab.build first would shadow it)
from archlab.blocks import BLOCKS
from archlab.errors import BlockError, DesignError


def design(layers: str, head: str = "input: [3, 8, 8]\n", extra: str = "") -> archlab.Design:
    return archlab.load(head + extra + "layers:\n" + layers)


def error_of(text: str) -> str:
    with pytest.raises(DesignError) as info:
        archlab.load(text)
    return str(info.value)


# ------------------------------------------------------------------------ concat axis -------


def test_concat_of_sequences_with_other_lengths_says_it_joins_channels():
    text = ("input: [768, 196]\nlayers:\n  - {name: a, block: identity}\n"
            "  - {name: cls, block: conv, out: 768, kernel: 196, padding: 0, from: input}\n"
            "  - {merge: concat, from: [cls, a]}\n")
    message = error_of(text)
    assert ("merge 'concat' joins along channels (axis 0) unless an axis is given; it needs equal "
            "sizes on all other axes, got (768, 1) from 'cls' and (768, 196) from 'a'") in message
    assert "to join along axis 1 instead, write merge: {kind: concat, axis: 1}" in message
    fixed = archlab.load(text.replace("merge: concat,", "merge: {kind: concat, axis: 1},"))
    assert fixed.graph.output_shape == (768, 197)


def test_concat_along_an_axis_matches_torch_cat():
    block = BLOCKS["concat"]
    p = block.Params(axis=1)
    module = block.build(p, [(4, 2, 5), (4, 3, 5)])
    a, b = torch.randn(2, 4, 2, 5), torch.randn(2, 4, 3, 5)
    assert torch.equal(module(a, b), torch.cat([a, b], 2))
    assert block.output_shape(p, [(4, 2, 5), (4, 3, 5)]) == (4, 5, 5)
    with pytest.raises(BlockError, match="the projection 'out' of a concat maps channels; it "
                                         "needs axis: 0"):
        block.output_shape(block.Params(axis=1, out=8), [(4, 2, 5), (4, 3, 5)])


# ------------------------------------------------------------------- learned and axis -------


def test_class_token_position_and_select_equal_hand_written_vit_steps():
    d = design("  - {name: p, block: patch_embed, out: 6, patch: 4}\n"
               "  - {name: cls, block: learned, shape: [1, 6], combine: concat, init: zeros}\n"
               "  - {name: pos, block: learned, shape: [5, 6]}\n"
               "  - {name: first, block: select, axis: 0, index: 0}\n")
    assert [n.output_shape for n in d.graph.nodes] == [(4, 6), (5, 6), (5, 6), (6,)]
    net = build(d)
    x = torch.randn(3, 3, 8, 8)
    patches = net.p.proj(x).flatten(2).transpose(1, 2)
    tokens = torch.cat([net.cls.value.expand(3, -1, -1), patches], 1) + net.pos.value
    assert torch.equal(net(x), tokens[:, 0])
    assert d.graph.param_count == 6 * 3 * 16 + 6 + 6 + 30


def test_axis_blocks_check_shapes_and_name_the_fix():
    with pytest.raises(BlockError, match=r"index 5 is outside axis 0 of size 5 .*; use an index "
                                         r"from 0 to 4"):
        BLOCKS["select"].output_shape(BLOCKS["select"].Params(index=5), [(5, 6)])
    with pytest.raises(BlockError, match=r"axis 2 does not exist in an input of shape \(5, 6\)"):
        BLOCKS["transpose"].output_shape(BLOCKS["transpose"].Params(axes=[0, 2]), [(5, 6)])
    with pytest.raises(BlockError, match=r"permute order \[1, 0\] has 2 axes, the input \(3, 4, 5\) "
                                         r"has 3; list all 3 axes, e.g. order: \[2, 1, 0\]"):
        BLOCKS["permute"].output_shape(BLOCKS["permute"].Params(order=[1, 0]), [(3, 4, 5)])
    with pytest.raises(BlockError, match=r"a learned tensor concatenated along axis 0 needs the "
                                         r"input's sizes on the other axes, got \[1, 5\] for input "
                                         r"\(4, 6\); use shape: \[1, 6\]"):
        BLOCKS["learned"].output_shape(BLOCKS["learned"].Params(shape=[1, 5], combine="concat"),
                                       [(4, 6)])


def test_slice_and_permute_equal_python_indexing():
    x = torch.randn(2, 7, 4, 3)
    s = BLOCKS["slice"].build(BLOCKS["slice"].Params(axis=0, start=-5, step=2), [(7, 4, 3)])
    assert torch.equal(s(x), x[:, -5::2])
    p = BLOCKS["permute"].build(BLOCKS["permute"].Params(order=[2, 0, 1]), [(7, 4, 3)])
    assert torch.equal(p(x), x.permute(0, 3, 1, 2))


def test_patch_size_that_does_not_divide_suggests_sizes():
    with pytest.raises(BlockError, match=r"patch size 16 must divide the input size, got \(30, 30\); "
                                         r"use patch: 15 or 10 \(divisors of 30 nearest 16\), or an "
                                         r"input size of 16 or 32"):
        BLOCKS["patch_embed"].output_shape(BLOCKS["patch_embed"].Params(out=8), [(3, 30, 30)])


# ------------------------------------------------------------- widths relative to input -------


def test_width_relative_to_the_input_halves_a_densenet_transition():
    d = design("  - {block: conv, out: 24}\n"
               "  - {name: transition, block: conv, out: $(in_channels // 2), kernel: 1}\n"
               "  - {name: flat, block: flatten}\n"
               "  - {name: halved, block: linear, out: $(in_features // 2)}\n",
               head="input: [3, 8, 8]\n")
    assert d.graph.node("transition").output_shape == (12, 8, 8)
    assert d.graph.node("halved").output_shape == (12 * 64 // 2,)


# ------------------------------------------------------------------------ divisibility -------


def test_divisibility_errors_suggest_the_nearest_values_that_work():
    with pytest.raises(BlockError, match=r"input channels \(=64\) must be divisible by groups \(=3\); "
                                         r"use groups: 2 or 4 \(divisors of 64 nearest 3\)"):
        BLOCKS["conv"].output_shape(BLOCKS["conv"].Params(out=64, groups=3), [(64, 4, 4)])
    with pytest.raises(BlockError, match=r"token width D \(=768\) must be divisible by heads \(=10\); "
                                         r"use heads: 8 or 12"):
        BLOCKS["transformer_block"].output_shape(BLOCKS["transformer_block"].Params(heads=10),
                                                 [(197, 768)])


# ------------------------------------------------------------------- tied embeddings -------


def test_tie_errors_name_the_node_and_the_fix():
    head = "input: [6]\nlayers:\n  - {name: wte, block: embedding, vocab: 10, out: 4}\n"
    message = error_of(head + "  - {block: unembed, tie: wtf}\n")
    assert "unknown node 'wtf'" in message and "did you mean 'wte'?" in message
    message = error_of(head + "  - {name: ln, block: layer_norm}\n  - {block: unembed, tie: ln}\n")
    assert "'tie: ln' must name a node with a table to share (an embedding), got a 'layer_norm' " \
        "node" in message
    message = error_of(head + "  - {block: learned, shape: [6, 1], combine: concat, axis: 1}\n"
                       "  - {block: unembed, tie: wte}\n")
    assert "unembed needs features of width 4 (the table (10, 4) of 'wte'), got input (6, 5)" in message


def test_token_ids_analyse_with_their_integer_dtype():
    d = archlab.load("gpt2_small", vocab=50, length=8, width=16, heads=2, depth=1)
    a = archlab.analyze(d, batch=2, input_dtype=torch.long)
    assert a.totals["params"] == d.graph.param_count
    assert a.memory.input_bytes == 2 * 8 * 8


# ---------------------------------------------------------------------------- causal -------


def test_causal_self_attention_equals_pytorch_sdpa():
    block = BLOCKS["transformer_block"]
    p = block.Params(heads=2, causal=True)
    m = block.build(p, [(6, 8)]).eval()
    x = torch.randn(3, 6, 8)
    att = m.self_attention
    q, k, v = F.linear(m.ln_1(x), att.in_proj_weight, att.in_proj_bias).chunk(3, -1)
    q, k, v = (t.reshape(3, 6, 2, 4).transpose(1, 2) for t in (q, k, v))
    y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(3, 6, 8)
    h = x + att.out_proj(y)
    with torch.no_grad():
        torch.testing.assert_close(m(x), h + m.mlp(m.ln_2(h)))
    sa = BLOCKS["self_attention"]
    seq = sa.build(sa.Params(heads=2, causal=True, residual=False), [(8, 6)]).eval()
    xs = torch.randn(2, 8, 6)
    later = xs.clone()
    later[:, :, 4:] += 1.0
    with torch.no_grad():
        assert torch.equal(seq(xs)[:, :, :4], seq(later)[:, :, :4])


# ---------------------------------------------------- layer scale, drop path, residual -------


def test_layer_scale_and_drop_path_on_a_residual_node():
    d = design("  - {block: conv, out: 8}\n"
               "  - {name: branch, block: conv, out: 8, residual: {layer_scale: 0.5, drop_path: 0.3}}\n",
               extra="defaults: {norm: none}\n")
    node = d.graph.node("branch.residual")
    assert node.param_count == 8                      # gamma, one per channel
    kinds = [op.kind for op in node.ops()]
    assert kinds == ["mul", "drop_path", "add"]
    net = build(d).eval()
    x = torch.randn(2, 3, 8, 8)
    stem = net.conv0(x)
    with torch.no_grad():
        torch.testing.assert_close(net(x), stem + 0.5 * net.branch.block(stem))
    analysis = archlab.analyze(d, memory=False)
    flagged = [op for op in analysis.ops if op.kind == "drop_path"]
    assert flagged and flagged[0].extra == {"rate": 0.3, "training_only": True,
                                            "training_elementwise": 8 * 64}


def test_drop_path_schedule_key_is_checked():
    base = "input: [3, 8, 8]\n{}layers:\n  - {{block: conv, out: 8, residual: true, depth: 3}}\n"
    d = archlab.load(base.format("drop_path: {rate: 0.2}\n"))
    rates = [n.params.drop_path for n in d.graph.nodes if n.block == "shortcut_add"]
    assert rates == pytest.approx([0.0, 0.1, 0.2])
    assert "unknown drop_path schedule 'cosine'" in error_of(
        base.format("drop_path: {rate: 0.2, schedule: cosine}\n"))
    assert "drop_path rate must be a number in [0, 1), got 1.5" in error_of(
        base.format("drop_path: {rate: 1.5}\n"))


# ----------------------------------------------------------------- RegNet bottleneck -------


def test_regnet_bottleneck_rule_by_group_width_and_ratio():
    block = BLOCKS["bottleneck"]
    p = block.Params(out=96, stride=2, group_width=24, bottleneck_ratio=0.5)
    m = block.build(p, [(48, 8, 8)])
    assert (m.conv2.in_channels, m.conv2.out_channels, m.conv2.groups) == (48, 48, 2)
    hand = nn.ModuleList([nn.Conv2d(48, 48, 1, bias=False), nn.Conv2d(48, 48, 3, groups=2, bias=False),
                          nn.Conv2d(48, 96, 1, bias=False), nn.Conv2d(48, 96, 1, bias=False)])
    norms = 2 * (48 + 48 + 96 + 96)
    assert block.param_count(p, [(48, 8, 8)]) == sum(q.numel() for q in hand.parameters()) + norms
    with pytest.raises(BlockError, match=r"bottleneck mid width round\(out \* bottleneck_ratio\) "
                                         r"\(=100\) must be divisible by group_width \(=16\); mid = "
                                         r"round\(100 \* 1.0\); use group_width: 20 or 10 \(divisors "
                                         r"of 100 nearest 16\), or out: 96 or 112"):
        block.output_shape(block.Params(out=100, group_width=16), [(48, 8, 8)])
