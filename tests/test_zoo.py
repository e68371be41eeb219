"""Every zoo design: it loads, inferred shapes equal a real forward pass (on the meta device, so
even VGG-19 costs no memory or compute), the built model's parameter count equals the design's
formula, and designs with a published count reproduce it exactly."""

from __future__ import annotations

import pytest
import torch

import archlab
from archlab import zoo
from archlab.cli import main

NAMES = zoo.names()


def _record_shapes(model: torch.nn.Module, paths: set[str]) -> dict[str, tuple]:
    shapes: dict[str, tuple] = {}
    handles = []
    for name, module in model.named_modules():
        if name in paths:
            def hook(mod, args, out, name=name):
                first = out[0] if isinstance(out, (tuple, list)) else out
                shapes[name] = tuple(first.shape[1:])
            handles.append(module.register_forward_hook(hook))
    return shapes, handles


@pytest.mark.parametrize("name", NAMES)
def test_zoo_shapes_match_a_real_forward(name):
    design = archlab.load(name)
    with torch.device("meta"):
        model = archlab.build(design)
    model.eval()
    paths = {n.path for n in design.graph.nodes}
    shapes, handles = _record_shapes(model, paths)
    x = torch.empty((2, *design.input_shape), device="meta")
    with torch.no_grad():
        out = model(x)
    for h in handles:
        h.remove()
    outs = out if isinstance(out, (tuple, list)) else (out,)
    assert [tuple(o.shape[1:]) for o in outs] == [tuple(s) for s in design.graph.output_shapes]
    for node in design.graph.nodes:
        assert shapes[node.path] == tuple(node.output_shape), node.path


@pytest.mark.parametrize("name", NAMES)
def test_zoo_param_formula_equals_built_module(name):
    design = archlab.load(name)
    with torch.device("meta"):
        model = archlab.build(design)
    assert sum(p.numel() for p in model.parameters()) == design.graph.param_count


@pytest.mark.parametrize("name", sorted(zoo.PUBLISHED))
def test_zoo_reproduces_published_parameter_count(name):
    if not zoo.exists(name):
        pytest.fail(f"zoo design '{name}' with a published count is missing")
    assert archlab.load(name).graph.param_count == zoo.PUBLISHED[name]


@pytest.mark.parametrize("name,expected", [
    ("resnet18", 1.814e9), ("resnet50", 4.089e9), ("mobilenet_v2", 0.301e9)])
def test_multiply_adds_match_torchvision_figures(name, expected):
    # torchvision's published GFLOPS for these models are multiply-adds of conv+linear at 224
    assert abs(archlab.load(name).graph.multiply_adds - expected) / expected < 1e-3


@pytest.mark.parametrize("name", NAMES)
def test_show_works_for_every_zoo_design(name, capsys):
    assert main(["show", name]) == 0
    assert "total" in capsys.readouterr().out


def test_zoo_lists_every_design(capsys):
    assert main(["zoo"]) == 0
    out = capsys.readouterr().out
    for name in NAMES:
        assert name in out


def test_foundation_designs_are_present():
    for name in ("resnet18", "resnet50", "mobilenet_v2", "vgg19", "unet", "dcgan_generator",
                 "dcgan_discriminator"):
        assert name in NAMES
