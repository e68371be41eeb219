"""``--check model.py:factory``: does the imported design compute what the file's own network
computes? The factory (the user's own Python, named explicitly on the command line) builds the
reference module; the file's state dict loads into it by its own names; both run on the same
random input in eval mode."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from .weights import WeightsImportError

TOLERANCE = 1e-5  # max |design - reference| / max(1, max |reference|)


def load_factory(spec: str):
    """``path/to/model.py:factory`` -> the callable (the file is imported: it is the user's code)."""
    file, sep, name = spec.rpartition(":")
    if not sep or not file or not name:
        raise WeightsImportError(f"--check expects FILE.py:FACTORY, received '{spec}'",
                                 fix="e.g. --check reference.py:resnet18 (a function or class "
                                     "that returns the network the weights came from)")
    path = Path(file)
    if not path.is_file():
        raise WeightsImportError("reference file not found", source=file,
                                 fix="give the Python file that defines the factory")
    module_spec = importlib.util.spec_from_file_location(f"archlab_check_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_spec.name] = module
    try:
        module_spec.loader.exec_module(module)
    finally:
        sys.modules.pop(module_spec.name, None)
    factory = getattr(module, name, None)
    if not callable(factory):
        names = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_"))
        raise WeightsImportError(f"'{file}' defines no callable '{name}'", source=file,
                                 fix=f"callables there: {', '.join(names[:12]) or 'none'}")
    return factory


def check_against(model, design, file_state: dict, spec: str) -> dict:
    """Load ``file_state`` into the factory's module (strictly, by its own names) and compare."""
    import torch

    from .source import example_input

    reference = load_factory(spec)()
    try:
        missing, unexpected = reference.load_state_dict(file_state, strict=False)
    except RuntimeError as exc:  # shapes differ: torch lists them one per line
        lines = [ln.strip() for ln in str(exc).splitlines() if "size mismatch" in ln]
        raise WeightsImportError(
            f"the weights file does not load into the reference from '{spec}' by its own names: "
            f"{'; '.join(lines[:2]) or str(exc)[:200]}",
            fix="give the factory that made the file (same class count, widths)") from None
    if missing or unexpected:
        raise WeightsImportError(
            f"the weights file does not load into the reference from '{spec}' by its own names: "
            f"missing {list(missing)[:4]}, unexpected {list(unexpected)[:4]}",
            fix="give the factory that made the file (same class count, widths)")
    x = example_input(design, batch=2, seed=5)
    model.eval()
    reference.eval()
    with torch.no_grad():
        got, want = model(x), reference(x)
    got = got[0] if isinstance(got, (tuple, list)) else got
    want = want[0] if isinstance(want, (tuple, list)) else want
    if tuple(got.shape) != tuple(want.shape):
        raise WeightsImportError(f"the design gives outputs of shape {tuple(got.shape)}, the "
                                 f"reference {tuple(want.shape)}", fix="compare like with like: "
                                 "same classes and input size (--set)")
    worst = float((got - want).abs().max()) / max(1.0, float(want.abs().max()))
    if worst > TOLERANCE:
        raise WeightsImportError(
            f"outputs differ from the reference's by {worst:.2e} (relative to the output scale, "
            f"limit {TOLERANCE:.0e}): the weights were loaded into the wrong places or the "
            "design is not the same network", fix="read the report's 'order' and 'reshaped' rows; "
            "fix the design, or rename the file's tensors to the design's node paths")
    return {"reference": spec, "max_difference": worst, "agrees": True}
