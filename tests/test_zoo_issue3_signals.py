"""The signal and sequence designs of issue 3: deepwatermap, fir_iir_net, vae_mnist,
lstm_classifier, transformer_classifier.

Each is loaded with small variables and run for real (not only on the meta device): every node's
inferred shape equals the shape its module produces, the parameter count equals the built
model's, and the multiply-adds equal PyTorch's FLOP counter. Then what each design demonstrates.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import archlab
from archlab.blocks.variational import kl_loss

SMALL = {
    "deepwatermap": {"base": 1, "size": 32},
    "fir_iir_net": {"size": 40, "width": 8},
    "vae_mnist": {"width": 8, "latent": 4},
    "lstm_classifier": {"length": 12, "hidden": 8},
    "transformer_classifier": {"length": 12, "width": 16},
}


def _forward_recording(model: torch.nn.Module, paths: set[str], x: torch.Tensor):
    shapes: dict[str, tuple] = {}
    handles = []
    for name, module in model.named_modules():
        if name in paths:
            def hook(mod, args, out, name=name):
                shapes[name] = tuple(out.shape[1:])
            handles.append(module.register_forward_hook(hook))
    with FlopCounterMode(display=False) as counter:
        out = model(x)
    for handle in handles:
        handle.remove()
    return out, shapes, counter.get_total_flops() // 2 // x.shape[0]


@pytest.mark.parametrize("name", sorted(SMALL))
def test_inferred_shapes_params_and_multiply_adds_equal_a_real_forward(name):
    torch.manual_seed(0)
    design = archlab.load(name, **SMALL[name])
    model = archlab.build(design)
    x = torch.randn(2, *design.input_shape)
    out, shapes, measured = _forward_recording(model, {n.path for n in design.graph.nodes}, x)
    assert tuple(out.shape[1:]) == design.graph.output_shape
    for node in design.graph.nodes:
        assert shapes[node.path] == tuple(node.output_shape), node.path
    assert design.graph.param_count == sum(p.numel() for p in model.parameters())
    assert design.graph.multiply_adds == measured
    assert torch.isfinite(out).all()
    if name == "deepwatermap":  # a water probability per pixel
        assert ((out > 0) & (out < 1)).all()


def test_deepwatermap_every_level_holds_the_same_number_of_activations():
    design = archlab.load("deepwatermap")
    base, size = design.variables["base"], design.variables["size"]
    counts = {node.path: math.prod(node.output_shape) for node in design.graph.nodes}
    water = counts.pop("water")
    assert water == size * size  # one probability per pixel
    # the width policy quadruple makes every level (full, 1/2, ..., 1/16 resolution) hold
    # base * size^2 values: encoder, bottleneck, decoder and every skip sum alike
    levels = {}
    for node in design.graph.nodes[:-1]:
        levels.setdefault(node.output_shape[1], set()).add(counts[node.path])
    assert sorted(levels) == [size // 16, size // 8, size // 4, size // 2, size]
    assert all(level == {base * size * size} for level in levels.values())
    # channels x4 per 2x downscale: 4, 16, 64, 256, 1024
    widths = [design.graph.node(f"down{i}.add").output_shape[0] for i in range(1, 5)]
    assert [design.graph.node("stem").output_shape[0], *widths] == [4, 16, 64, 256, 1024]


def test_deepwatermap_adds_skips_and_upsamples_by_depth_to_space():
    graph = archlab.load("deepwatermap").graph
    blocks = {node.block for node in graph.nodes}
    assert "concat" not in blocks and "depth_to_space" in blocks
    skip = graph.node("skip3")
    assert skip.block == "sum" and skip.inputs == ["up4.refine.add", "down3.add"]
    assert graph.node("water").params.act.kind == "sigmoid"
    assert graph.input_shape[0] == 6


def test_fir_iir_net_is_its_input_plus_a_learned_correction():
    torch.manual_seed(0)
    model = archlab.build("fir_iir_net", **SMALL["fir_iir_net"]).eval()
    x = torch.randn(2, 6, 40, 40)
    with torch.no_grad():
        model.project[2].weight.zero_()  # the last pointwise conv: no correction at all
        model.project[2].bias.zero_()
        assert torch.equal(model(x), x)
    blocks = {type(m).__name__ for m in model.modules()}
    assert "VerticalIIR" in blocks


def test_fir_iir_net_is_causal_down_the_rows():
    # no line buffering: rows below r never change the output at row r
    torch.manual_seed(0)
    model = archlab.build("fir_iir_net", **SMALL["fir_iir_net"]).eval()
    x = torch.randn(1, 6, 40, 40)
    y = x.clone()
    y[:, :, 25:] = torch.randn(1, 6, 15, 40)
    with torch.no_grad():
        assert torch.allclose(model(x)[:, :, :25], model(y)[:, :, :25], atol=1e-6)


def test_vae_mnist_trains_with_the_kl_term():
    torch.manual_seed(0)
    model = archlab.build("vae_mnist", **SMALL["vae_mnist"])
    images = torch.rand(8, 1, 28, 28)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(3):
        optimiser.zero_grad()
        reconstruction = model(images)
        assert reconstruction.shape == images.shape
        bce = torch.nn.functional.binary_cross_entropy(reconstruction, images, reduction="sum")
        loss = bce / images.shape[0] + kl_loss(model)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]
    model.eval()  # eval uses the mean: deterministic reconstructions
    with torch.no_grad():
        assert torch.equal(model(images), model(images))


@pytest.mark.parametrize("name", ["lstm_classifier", "transformer_classifier"])
def test_sequence_classifiers_give_one_score_per_class(name):
    torch.manual_seed(0)
    design = archlab.load(name, **SMALL[name])
    model = archlab.build(design).eval()
    x = torch.randn(3, *design.input_shape)
    with torch.no_grad():
        scores = model(x)
    assert scores.shape == (3, design.variables["classes"])
    # the sequence order matters to both (recurrence; positional encoding)
    with torch.no_grad():
        assert not torch.allclose(model(x.flip(2)), scores, atol=1e-4)
