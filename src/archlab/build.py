"""Graph -> ``torch.nn.Module``, and saving/loading built models.

The built model is a ``torch.fx.GraphModule``: its ``forward`` is generated Python code that calls
each node's module in order, exactly what a person would write by hand. Nothing of the design is
interpreted at run time, so a built design runs as fast as the same network written by hand
(benchmarks/builder_overhead.py measures it). Submodules sit at their node paths
(``layer2.0.conv1``), so state-dict keys name the design's nodes.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import types
from pathlib import Path
from typing import Any

from torch import fx, nn

from .errors import ArchlabError, DesignError
from .graph import INPUT, Graph

WEIGHTS_FILE = "weights.safetensors"
DESIGN_FILE = "design.yaml"


class _Container(nn.Module):
    """A node path prefix with no module of its own (a stage, a group, a compound node)."""

    def forward(self, *args):  # pragma: no cover - containers are never called
        raise RuntimeError("a design container module is not callable")


def _class_name(name: str) -> str:
    parts = re.split(r"[^A-Za-z0-9]+", name)
    out = "".join(p[:1].upper() + p[1:] for p in parts if p)
    return out if out and not out[0].isdigit() else f"Design{out}"


def _attach(root: nn.Module, path: str, module: nn.Module) -> None:
    *parents, leaf = path.split(".")
    owner = root
    for part in parents:
        child = owner._modules.get(part)
        if child is None:
            child = _Container()
            owner.add_module(part, child)
        owner = child
    if leaf in owner._modules:
        raise DesignError(f"module path '{path}' is used twice")
    owner.add_module(leaf, module)


def build_graph(graph: Graph, name: str = "design") -> fx.GraphModule:
    root = nn.Module()
    for node in graph.nodes:
        _attach(root, node.path, node.block_class.build(node.params, node.input_shapes))
    g = fx.Graph()
    values: dict[str, fx.Node] = {INPUT: g.placeholder("x")}
    for node in graph.nodes:
        # an input that is no node is another node's weight (a tied table: 'wte.weight')
        args = tuple(values[p] if p in values else g.get_attr(p) for p in node.inputs)
        values[node.path] = g.call_module(node.path, args)
    outs = [values[p] for p in graph.outputs]
    g.output(outs[0] if len(outs) == 1 else tuple(outs))
    g.lint()
    module = fx.GraphModule(root, g, class_name=_class_name(name))
    return module


def build(design: Any, **variables: Any) -> fx.GraphModule:
    """Build a design (a Design, path, zoo name, dict or YAML text) into a plain PyTorch module.

    >>> import torch, archlab
    >>> net = archlab.build({"input": [3, 8, 8], "layers": [{"block": "conv", "out": 4}]})
    >>> tuple(net(torch.zeros(2, 3, 8, 8)).shape)
    (2, 4, 8, 8)
    """
    from .design import Design, load

    if not isinstance(design, Design) or variables:
        design = load(design, **variables)
    model = build_graph(design.graph, design.name)
    model.archlab_design = design.name  # a plain attribute: no buffer, no hook
    return model


# ------------------------------------------------------------------------ save / load -------


def save(model: nn.Module, design: Any, folder: str | Path) -> Path:
    """Write ``weights.safetensors`` (tensors only: safe to load) and ``design.yaml`` (the
    resolved design), each atomically, so ``load_built(folder)`` rebuilds the same model."""
    from safetensors.torch import save_file

    from .design import Design, load

    if not isinstance(design, Design):
        design = load(design)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    _atomic(folder / WEIGHTS_FILE, lambda p: save_file(state, str(p), metadata={
        "archlab_design": design.name, "format": "archlab-weights-1"}))
    text = design.to_yaml()
    _atomic(folder / DESIGN_FILE, lambda p: Path(p).write_text(text, encoding="utf-8"))
    info = {"name": design.name, "params": design.graph.param_count,
            "input": list(design.input_shape)}
    _atomic(folder / "model.json", lambda p: Path(p).write_text(json.dumps(info, indent=2)))
    return folder


def load_built(folder: str | Path, strict: bool = True) -> nn.Module:
    """Rebuild a model saved with :func:`save` and load its weights."""
    from safetensors.torch import load_file

    from .design import load

    folder = Path(folder)
    weights, design_file = folder / WEIGHTS_FILE, folder / DESIGN_FILE
    for f in (weights, design_file):
        if not f.is_file():
            raise ArchlabError(f"'{folder}' has no {f.name}", fix="give a folder written by "
                               "`archlab build DESIGN -o FOLDER`")
    model = build(load(design_file))
    state = load_file(str(weights))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if strict and (missing or unexpected):
        raise ArchlabError(f"weights in '{weights}' do not match the design: missing "
                           f"{missing[:5]}, unexpected {unexpected[:5]}")
    return model


def _atomic(path: Path, write) -> None:
    """Write to a temporary file in the same folder, then rename: never a half-written file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=str(path.parent))
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; match a plain open()
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


class _CallableModule(types.ModuleType):
    """``archlab.build`` is both this module and the function :func:`build`: importing the
    module (``from archlab.build import save``) binds the name ``archlab.build`` to it, so
    calling the module calls the function and ``archlab.build(design)`` works in any order of
    imports (as ``archlab.train`` and ``archlab.review`` do)."""

    def __call__(self, *args, **kwargs):
        return build(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

__all__ = ["build", "build_graph", "load_built", "save"]
