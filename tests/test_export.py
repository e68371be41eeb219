"""``archlab export``: ONNX (onnx.checker, onnxruntime within 1e-5, a dynamic batch axis),
TorchScript and torch.export programs saved and reloaded, the three sources (design, run,
built folder), and the errors: unknown format, a module that cannot be converted (named by its
node path)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

import archlab
from archlab.blocks import BLOCKS, Block, BlockParams, register_block
from archlab.build import build
from archlab.cli import main
from archlab.export.onnx import ExportError, export_onnx
from archlab.export.script import export_program, export_torchscript
from archlab.export.source import example_input

SMALL_VIT = {"size": 32, "width": 64, "heads": 4, "depth": 2, "classes": 10}


def _cli(capsys, *args):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_onnx_matches_pytorch_with_a_dynamic_batch(tmp_path):
    design = archlab.load("resnet18", size=32, width=16, classes=10)
    torch.manual_seed(0)
    model = build(design).eval()
    info = export_onnx(model, design, tmp_path / "r.onnx")
    assert info["checked"] and info["max_difference"] <= 1e-5 and info["dynamic_batch"] == "batch"
    # an independent run: the file passes the checker and runs at a batch size never traced
    onnx.checker.check_model(onnx.load(str(tmp_path / "r.onnx")))
    session = ort.InferenceSession(str(tmp_path / "r.onnx"), providers=["CPUExecutionProvider"])
    x = torch.randn(5, 3, 32, 32)
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        want = model(x).numpy()
    assert got.shape == (5, 10)
    assert np.abs(got - want).max() <= 1e-5 * max(1.0, np.abs(want).max())


def test_onnx_of_a_vision_transformer(tmp_path):
    design = archlab.load("vit_b_16", **SMALL_VIT)
    model = build(design).eval()
    info = export_onnx(model, design, tmp_path / "vit.onnx")
    assert info["max_difference"] <= 1e-5


def test_torchscript_and_exported_program_round_trip(tmp_path):
    design = archlab.load("mnist_cnn")
    model = build(design).eval()
    script = export_torchscript(model, design, tmp_path / "m.pt")
    program = export_program(model, design, tmp_path / "m.pt2")
    x = example_input(design, batch=4, seed=9)
    with torch.no_grad():
        want = model(x)
        assert torch.equal(torch.jit.load(str(tmp_path / "m.pt"))(x), want)
        got = torch.export.load(str(tmp_path / "m.pt2")).module()(x)  # batch 4: dynamic axis
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert script["checked"] and program["checked"]


class _Scaled(nn.Module):
    """x * spec.scale, the scale kept in a Python object (neither TorchScript nor eject can
    write it; torch.export traces it)."""

    def __init__(self) -> None:
        super().__init__()
        self.spec = type("Spec", (), {"scale": 2.0})()

    def forward(self, x):
        return x * self.spec.scale


class _ScaledBlock(Block):
    name = "scaled_for_test"
    family = "test"
    Params = BlockParams

    @classmethod
    def output_shape(cls, p, inputs):
        return tuple(inputs[0])

    @classmethod
    def ops(cls, p, inputs):
        return []

    @classmethod
    def build(cls, p, inputs):
        return _Scaled()


@pytest.fixture
def opaque_design():
    register_block(_ScaledBlock)
    yield archlab.load({"name": "opaque", "input": [4],
                        "layers": [{"name": "fc", "block": "linear", "out": 4},
                                   {"name": "odd", "block": "scaled_for_test"}]})
    BLOCKS.pop("scaled_for_test", None)


def test_unconvertible_module_is_named_by_node_path(opaque_design, tmp_path):
    model = build(opaque_design).eval()
    with pytest.raises(ExportError, match=r"^odd: torch.jit.script failed \(.*\); this block's "
                                          r"forward uses Python TorchScript does not support"):
        export_torchscript(model, opaque_design, tmp_path / "o.pt")
    from archlab.export.eject import eject

    with pytest.raises(ExportError, match=r"^odd: _Scaled.spec holds a Spec, which the generated "
                                          r"code cannot write; export as --format torchscript"):
        eject(model, opaque_design, tmp_path / "o")
    info = export_program(model, opaque_design, tmp_path / "o.pt2")  # torch.export traces it
    assert info["checked"]


def test_cli_exports_design_built_folder_and_run(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = _cli(capsys, "export", "mnist_cnn", "--format", "python")
    assert code == 0, err
    assert "exported mnist_cnn (fresh weights, seed 0) as python -> export/mnist_cnn/mnist_cnn.py" in out
    assert "check: loading the file gives bit-identical outputs to the built model" in out

    code, out, err = _cli(capsys, "build", "digits_mlp", "-o", "built")
    assert code == 0, err
    code, out, err = _cli(capsys, "export", "built", "--format", "torchscript", "-o", "d.pt", "--json")
    data = json.loads(out)
    assert code == 0 and data["kind"] == "built" and data["checked"] and data["file"] == "d.pt"
    built = archlab.load_built("built")
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(torch.jit.load("d.pt")(x), built(x))

    run = archlab.train("digits_mlp", "digits", epochs=1, batch=128, out=str(tmp_path / "runs"),
                        progress=False, health=False)
    code, out, err = _cli(capsys, "export", run.path, "--format", "python", "-o", "ej", "--json")
    data = json.loads(out)
    assert code == 0 and data["kind"] == "run" and data["bit_identical"], err
    from archlab.export.eject import load_ejected

    with torch.no_grad():
        assert torch.equal(load_ejected(data["file"])(x), run.model()(x))


def test_cli_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = _cli(capsys, "export", "resnet18", "--format", "onxx")
    assert code == 2
    assert ("error: unknown export format 'onxx'; valid export formats: exported-program, onnx, "
            "python, torchscript; did you mean 'onnx'?") in err
    (tmp_path / "empty").mkdir()
    code, _, err = _cli(capsys, "export", "empty", "--format", "onnx")
    assert code == 2 and "empty: the folder is neither a run (config.yaml) nor a built model" in err
    code, _, err = _cli(capsys, "weights", "import", "resnet18", "missing.pth")
    assert code == 2 and "missing.pth: weights file not found" in err


def test_onnx_names_the_node_whose_op_has_no_onnx_function(tmp_path):
    # the FIR-IIR filter's scan uses cumprod, which torch's exporter lowers to prims.prod: no
    # ONNX function exists for it (torch.export and TorchScript keep it)
    design = archlab.load({"name": "filter", "input": [2, 8, 8],
                           "layers": [{"name": "filter", "block": "fir_iir", "out": 2}]})
    with pytest.raises(ExportError, match=r"^filter: torch's ONNX exporter has no ONNX function for "
                                          r"prims.prod, which this node's computation uses; export "
                                          r"as --format exported-program"):
        export_onnx(build(design).eval(), design, tmp_path / "f.onnx")
