"""TorchScript (``torch.jit.script``) and ``torch.export`` programs of a built design.

When a whole model does not convert, the error names the first node whose own module does not
convert, with torch's reason: the node path is where to look in the design.
"""

from __future__ import annotations

from pathlib import Path

from .onnx import ExportError, _first_line


def first_failing_node(model, design, convert, once_per_kind: bool = False) -> str | None:
    """The path of the first design node whose module alone fails ``convert(module, inputs)``
    (``once_per_kind``: try only the first node of each block kind, for slow conversions)."""
    import torch

    from ..graph import INPUT
    from .source import example_input

    values = {INPUT: example_input(design, batch=2)}
    tried: set[str] = set()
    with torch.no_grad():
        for node in design.graph.nodes:
            module = model.get_submodule(node.path)
            args = tuple(values[p] for p in node.inputs)
            if not (once_per_kind and node.block in tried):
                tried.add(node.block)
                try:
                    convert(module, args)
                except Exception:
                    return node.path
            values[node.path] = module(*args)
    return None


def export_torchscript(model, design, path: str | Path, *, check: bool = True) -> dict:
    import torch

    from .source import example_input

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        scripted = torch.jit.script(model)
    except Exception as exc:
        node = first_failing_node(model, design, lambda m, _inp: torch.jit.script(m))
        raise ExportError(f"torch.jit.script failed ({_first_line(exc)})", path=node,
                          fix="this block's forward uses Python TorchScript does not support "
                              "(*args, getattr by a computed name, assigning tensors to self); "
                              "use --format exported-program, onnx or python") from None
    scripted.save(str(path))
    info = {"format": "torchscript", "file": str(path)}
    if check:
        loaded = torch.jit.load(str(path))
        x = example_input(design, batch=3, seed=1)
        info.update(_compare(model, loaded, x, path))
    return info


def export_program(model, design, path: str | Path, *, check: bool = True) -> dict:
    """A ``torch.export`` program (``.pt2``) with a dynamic batch axis."""
    import torch

    from .source import example_input

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    x = example_input(design, batch=2)
    try:
        program = torch.export.export(model, (x,), dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1)}})
    except Exception as exc:
        node = first_failing_node(model, design, lambda m, inp: torch.export.export(m, inp))
        raise ExportError(f"torch.export failed ({_first_line(exc)})", path=node,
                          fix="the node's module has data-dependent control flow or Python "
                              "state; use --format torchscript or python") from None
    torch.export.save(program, str(path))
    info = {"format": "exported-program", "file": str(path)}
    if check:
        loaded = torch.export.load(str(path)).module()
        info.update(_compare(model, loaded, example_input(design, batch=3, seed=1), path))
    return info


def _compare(model, other, x, path) -> dict:
    import torch

    with torch.no_grad():
        a, b = model(x), other(x)
    a = a if isinstance(a, (tuple, list)) else (a,)
    b = b if isinstance(b, (tuple, list)) else (b,)
    worst = max(float((p - q).abs().max()) / max(1.0, float(p.abs().max())) for p, q in zip(a, b, strict=True))
    if worst > 1e-5:
        raise ExportError(f"the exported model's outputs differ from the model's by {worst:.2e}",
                          source=str(path))
    return {"checked": True, "max_difference": worst}
