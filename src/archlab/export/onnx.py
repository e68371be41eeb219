"""ONNX export with torch's exporter, checked with ``onnx.checker`` and run with onnxruntime.

The exported graph has a dynamic batch axis (named ``batch``): the check runs it at two batch
sizes other than the one it was traced with, and compares onnxruntime's outputs with the
PyTorch model's (``TOLERANCE``, absolute, on outputs scaled to unit size).
"""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

from ..errors import ArchlabError

TOLERANCE = 1e-5   # max |onnxruntime - torch| / max(1, max |torch|) on random inputs
OPSET = 18


class ExportError(ArchlabError):
    """A model cannot be exported in the asked format, or the export disagrees with it."""


def _quiet():
    """torch's exporter prints progress and warnings about missing torchvision ops."""
    for name in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript"):
        logging.getLogger(name).setLevel(logging.ERROR)
    return contextlib.redirect_stdout(io.StringIO())


def export_onnx(model, design, path: str | Path, *, check: bool = True) -> dict:
    """Write ``path`` (.onnx) and, with ``check``, verify it; returns what the check measured."""
    import torch

    from .source import example_input

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    x = example_input(design, batch=2)
    batch = torch.export.Dim("batch", min=1)
    try:
        with _quiet():
            program = torch.onnx.export(model, (x,), dynamo=True, opset_version=OPSET,
                                        input_names=["x"], dynamic_shapes={"x": {0: batch}},
                                        verbose=False)
            program.save(str(path))
    except Exception as exc:
        raise _onnx_failure(exc, model, design) from None
    info = {"format": "onnx", "file": str(path), "opset": OPSET}
    if check:
        info.update(check_onnx(model, design, path))
    return info


def _onnx_failure(exc: Exception, model, design) -> ExportError:
    """Which node failed, and why: an op with no ONNX function, or a module torch.export
    cannot trace. Each block kind is tried alone once (only when the whole model failed)."""
    import re

    import torch

    from .script import first_failing_node

    text = str(exc)
    missing = re.search(r"No ONNX function found for <OpOverload\(op='([\w.]+)'", text)

    def convert(module, inputs):
        with _quiet():
            torch.onnx.export(module, inputs, dynamo=True, opset_version=OPSET, verbose=False)

    node = first_failing_node(model, design, convert, once_per_kind=True)
    if missing:
        return ExportError(f"torch's ONNX exporter has no ONNX function for {missing.group(1)}, "
                           "which this node's computation uses", path=node,
                           fix="export as --format exported-program, torchscript or python "
                               "(they keep every PyTorch op), or change the node's block")
    return ExportError(f"torch's ONNX exporter failed ({_first_line(exc)})", path=node,
                       fix="the node's module uses an operation torch.export cannot trace "
                           "(data-dependent control flow or Python state); export it as "
                           "--format torchscript or python instead")


def check_onnx(model, design, path: Path) -> dict:
    import numpy as np
    import onnx
    import onnxruntime as ort
    import torch

    from .source import example_input

    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    worst = 0.0
    for batch, seed in ((1, 1), (3, 2)):  # not the traced batch size: the axis is dynamic
        x = example_input(design, batch=batch, seed=seed)
        with torch.no_grad():
            expected = model(x)
        expected = expected if isinstance(expected, (tuple, list)) else (expected,)
        got = session.run(None, {name: x.numpy()})
        if len(got) != len(expected):
            raise ExportError(f"the ONNX model gives {len(got)} outputs, the model {len(expected)}",
                              source=str(path))
        for e, g in zip(expected, got, strict=True):
            e = e.numpy()
            if e.shape != g.shape:
                raise ExportError(f"ONNX output shape {g.shape} differs from the model's {e.shape} "
                                  f"at batch {batch}", source=str(path),
                                  fix="the batch axis was not exported as dynamic")
            scale = max(1.0, float(np.abs(e).max()))
            worst = max(worst, float(np.abs(e - g).max()) / scale)
    if worst > TOLERANCE:
        raise ExportError(f"onnxruntime's outputs differ from PyTorch's by {worst:.2e} (relative "
                          f"to the output scale), more than {TOLERANCE:.0e}", source=str(path),
                          fix="report it with the design: an operator is exported inexactly")
    return {"checked": True, "onnx_checker": "passed", "max_difference": worst,
            "dynamic_batch": session.get_inputs()[0].shape[0]}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__
