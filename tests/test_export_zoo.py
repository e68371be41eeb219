"""Every zoo design leaves archlab as one standalone PyTorch file with bit-identical outputs (the
built model is the oracle), and scripts with torch.jit.script to a module computing the same
outputs (`export --format torchscript`; test_export.py also saves and reloads scripted models)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
import torch

import archlab
from archlab.build import build
from archlab.export.eject import eject, load_ejected
from archlab.export.source import example_input

sys.path.insert(0, str(Path(__file__).parent))
from export_sizes import small  # noqa: E402

ALLOWED_IMPORTS = {"__future__", "torch", "typing", "collections", "math", "pathlib", "safetensors"}


def _outputs(model, x):
    with torch.no_grad():
        y = model(x)
    return y if isinstance(y, tuple) else (y,)


@pytest.mark.parametrize("name", archlab.zoo.names())
def test_zoo_design_ejects_bit_identical(name, tmp_path):
    design = archlab.load(name, **small(name, archlab.load(name).variables))
    torch.manual_seed(0)
    model = build(design).eval()
    x = example_input(design, batch=2, seed=7)
    want = _outputs(model, x)

    info = eject(model, design, tmp_path, check=False)
    got = _outputs(load_ejected(info["file"]), x)
    assert len(want) == len(got)
    for a, b in zip(want, got, strict=True):
        assert torch.equal(a, b), f"{name}: max difference {(a - b).abs().max()}"
    source = Path(info["file"]).read_text()
    tree = ast.parse(source)
    modules = {(n.module if isinstance(n, ast.ImportFrom) else a.name).split(".")[0]
               for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
               for a in (n.names if isinstance(n, ast.Import) else [n])}
    assert modules <= ALLOWED_IMPORTS, modules
    for node in design.graph.nodes[:5]:  # every node at its design path, shapes in a comment
        assert f"# {node.path}: {node.block}," in source

    scripted = torch.jit.script(model)
    for a, b in zip(want, _outputs(scripted, x), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
