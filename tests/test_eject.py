"""Eject (``export --format python``): the file runs where archlab cannot be imported, and reads
as hand-written code (one class per block kind, node paths, shapes in comments). Bit-identity on
every zoo design is in test_export_zoo.py."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import torch

import archlab
from archlab.build import build
from archlab.export.eject import eject, load_ejected
from archlab.export.source import example_input

sys.path.insert(0, str(Path(__file__).parent))
from export_sizes import small  # noqa: E402


def _design(name: str):
    return archlab.load(name, **small(name, archlab.load(name).variables))


def test_ejected_file_runs_without_archlab(tmp_path):
    design = _design("mnist_cnn")
    torch.manual_seed(0)
    model = build(design).eval()
    info = eject(model, design, tmp_path / "out", check=False)
    x = example_input(design, batch=2, seed=1)
    torch.save(x, tmp_path / "x.pt")
    script = textwrap.dedent(f"""
        import importlib.abc, sys
        class NoArchlab(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "archlab":
                    raise ImportError("archlab is not installed here")
        sys.meta_path.insert(0, NoArchlab())
        sys.path.insert(0, {str(Path(info['file']).parent)!r})
        import torch, mnist_cnn
        model = mnist_cnn.load()
        with torch.no_grad():
            torch.save(model(torch.load({str(tmp_path / 'x.pt')!r})), {str(tmp_path / 'y.pt')!r})
        assert not any(m.startswith("archlab") for m in sys.modules)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    with torch.no_grad():
        assert torch.equal(torch.load(tmp_path / "y.pt"), model(x))


def test_ejected_source_reads_as_hand_written(tmp_path):
    design = _design("resnet18")
    info = eject(build(design).eval(), design, tmp_path / "r.py")
    assert info["bit_identical"] is True
    source = Path(info["file"]).read_text()
    assert "class ResidualBlock(Block):" in source            # one class per block kind used
    assert "Used for the design's basic node(s)." in source
    assert "class ConvBlock(nn.Sequential):" in source
    assert "nn.Conv2d(3, 16, 7, stride=2, padding=3, bias=False)," in source
    assert "# layer2.0: basic, (N, 16, 8, 8) -> (N, 32, 4, 4)" in source
    assert "layer2_0 = self.layer2[0](layer1_1)  # (N, 32, 4, 4)" in source
    assert "def load(weights: str = 'r.safetensors'" in source
    assert source.count("class ") == len({line.split("(")[0] for line in source.splitlines()
                                           if line.startswith("class ")})


def test_tied_weights_are_tied_again(tmp_path):
    design = archlab.load({"name": "tied", "input": [8],
                           "layers": [{"name": "a", "block": "linear", "out": 8},
                                      {"name": "b", "block": "linear", "out": 8}]})
    model = build(design).eval()
    model.b.weight = model.a.weight  # one tensor under two names, as tied embeddings are
    info = eject(model, design, tmp_path)
    assert info["bit_identical"]
    source = Path(info["file"]).read_text()
    assert "self.b.weight = self.a.weight  # tied: one tensor" in source
    ejected = load_ejected(info["file"])
    assert ejected.b.weight is ejected.a.weight
