"""Eject: one standalone, readable PyTorch file and a safetensors file for a built design.

The file imports only torch (and the standard library): one class per block kind the design
uses (an archlab block's own ``forward`` as archlab wrote it; a sequential block as a named
``nn.Sequential``), the network class with every node at its design path, each node's shapes in
a comment, and a ``load()`` function. Loading the pair gives bit-identical outputs to the built
model: the modules are the same PyTorch modules called in the same order (a test holds this on
every zoo design, and ``eject`` checks it each time it writes).
"""

from __future__ import annotations

import importlib.util
import keyword
import re
import sys
import textwrap
from pathlib import Path

import torch
from torch import fx, nn

from .codegen import Source, is_torch_class, literal, settings_of
from .onnx import ExportError

INDENT = "    "
_CONV_LIKE = ("kernel_size", "stride", "padding", "dilation", "output_padding")
# torch modules whose __init__ takes *args: their arguments by name
_RNN_ARGS = ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout",
             "bidirectional", "proj_size")


def _camel(name: str) -> str:
    parts = re.split(r"[^A-Za-z0-9]+", name)
    out = "".join(p[:1].upper() + p[1:] for p in parts if p)
    return out if out and not out[0].isdigit() else f"Net{out}"


def _shape(shape) -> str:
    return "(N, " + ", ".join(str(s) for s in shape) + ")" if shape else "(N,)"


class Writer:
    """Renders a built model's module tree as constructor calls and its graph as a forward."""

    def __init__(self, model: fx.GraphModule, design) -> None:
        self.model = model
        self.design = design
        self.nodes = {n.path: n for n in design.graph.nodes}
        self.src = Source()
        self.block_classes: dict[str, str] = {}  # block kind -> class name (sequential blocks)
        self.kinds_of: dict[type, set[str]] = {}

    # ---- modules ---------------------------------------------------------------------------
    def module(self, m: nn.Module | None, path: str, depth: int) -> str:
        if m is None:
            return "None"
        node = self.nodes.get(path)
        cls = type(m)
        if _is_container(m):
            return self.container(m, path, depth)
        if node is not None and cls is nn.Sequential:
            return self.sequential(m, path, depth, self.block_class(node.block))
        if cls in (nn.Sequential, nn.ModuleList, nn.ModuleDict):
            return self.sequential(m, path, depth, f"nn.{cls.__name__}")
        if is_torch_class(cls):
            return self.torch_module(m, f"nn.{cls.__name__}", path)
        if node is not None:
            self.kinds_of.setdefault(cls, set()).add(node.block)
        name = self.src.add_class(cls, path or "the model")
        if "__init__" not in cls.__dict__ and any(is_torch_class(b) for b in cls.__mro__[1:]):
            return self.torch_module(m, name, path)  # e.g. a LayerNorm with its own forward
        return self.custom(m, name, path, depth)

    def block_class(self, block: str) -> str:
        if block not in self.block_classes:
            from ..blocks import get_block

            name = self.src._unique(_camel(block) + "Block")
            summary = get_block(block).summary() or f"the '{block}' block"
            self.src.class_names[("block", block)] = name
            self.src.classes[("block", block)] = (
                f"class {name}(nn.Sequential):\n{INDENT}\"\"\"{block}: {summary}\"\"\"\n")
            self.block_classes[block] = name
        return self.block_classes[block]

    def children(self, m: nn.Module, path: str, depth: int) -> list[tuple[str, str]]:
        out = []
        for name, child in m._modules.items():
            child_path = f"{path}.{name}" if path else name
            out.append((name, self.module(child, child_path, depth + 1)))
        return out

    def comment(self, path: str, pad: str) -> str:
        node = self.nodes.get(path)
        if node is None:
            return ""
        ins = ", ".join(_shape(s) for s in node.input_shapes)
        return f"{pad}# {path}: {node.block}, {ins} -> {_shape(node.output_shape)}\n"

    def container(self, m: nn.Module, path: str, depth: int) -> str:
        items = self.children(m, path, depth)
        names = [n for n, _ in items]
        pad = INDENT * (depth + 1)
        if names == [str(i) for i in range(len(names))]:
            body = "".join(f"{self.comment(f'{path}.{n}', pad)}{pad}{text},\n" for n, text in items)
            return f"nn.ModuleList([\n{body}{INDENT * depth}])"
        body = "".join(f"{self.comment(f'{path}.{n}', pad)}{pad}{n!r}: {text},\n" for n, text in items)
        return f"nn.ModuleDict({{\n{body}{INDENT * depth}}})"

    def sequential(self, m: nn.Module, path: str, depth: int, ctor: str) -> str:
        items = self.children(m, path, depth)
        names = [n for n, _ in items]
        pad = INDENT * (depth + 1)
        if not items:
            return f"{ctor}()"
        if isinstance(m, nn.ModuleDict):
            body = "".join(f"{pad}{n!r}: {t},\n" for n, t in items)
            return f"{ctor}({{\n{body}{INDENT * depth}}})"
        if names == [str(i) for i in range(len(names))]:
            body = "".join(f"{pad}{t},\n" for _, t in items)
            return f"{ctor}([\n{body}{INDENT * depth}])" if isinstance(m, nn.ModuleList) \
                else f"{ctor}(\n{body}{INDENT * depth})"
        self.src.imports.setdefault("from collections import OrderedDict",
                                    "from collections import OrderedDict")
        body = "".join(f"{pad}({n!r}, {t}),\n" for n, t in items)
        return f"{ctor}(OrderedDict([\n{body}{INDENT * depth}]))"

    def torch_module(self, m: nn.Module, ctor: str, path: str) -> str:
        import inspect

        cls = type(m)
        base = next(b for b in cls.__mro__ if is_torch_class(b))
        if isinstance(m, nn.RNNBase):
            names = _RNN_ARGS
            params = {n: inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=None)
                      for n in names}
        else:
            params = dict(inspect.signature(base.__init__).parameters)
            params.pop("self", None)
        args, kwargs = [], []
        for name, p in params.items():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or name in ("device", "dtype") \
                    or name.startswith("_"):
                continue
            if not hasattr(m, name):
                if p.default is inspect.Parameter.empty:
                    raise ExportError(f"cannot write {cls.__name__}(...): its argument '{name}' "
                                      "is not stored on the module", path=path,
                                      fix="export as --format torchscript or exported-program")
                continue
            value = getattr(m, name)
            if isinstance(value, (torch.Tensor, type(None))) and name == "bias":
                value = value is not None
            if isinstance(value, torch.Size):
                value = tuple(value)
            if name in _CONV_LIKE and isinstance(value, tuple) and value and \
                    all(v == value[0] for v in value) and isinstance(value[0], int):
                value = value[0]
            if p.default is not inspect.Parameter.empty and _same(value, p.default):
                continue
            text = literal(value)
            if p.default is inspect.Parameter.empty and not kwargs:
                args.append(text)
            else:
                kwargs.append(f"{name}={text}")
        return f"{ctor}({', '.join(args + kwargs)})"

    def custom(self, m: nn.Module, name: str, path: str, depth: int) -> str:
        pad = INDENT * (depth + 1)
        parts = []
        items = self.children(m, path, depth + 1)
        if items:
            body = "".join(f"{pad}{INDENT}{n!r}: {t},\n" for n, t in items)
            parts.append(f"layers={{\n{body}{pad}}}")
        params = {n: (None if p is None else tuple(p.shape)) for n, p in m._parameters.items()}
        if params:
            parts.append(f"parameters={literal(params)}")
        buffers = {n: (tuple(b.shape), str(b.dtype).removeprefix("torch."))
                   for n, b in m._buffers.items() if b is not None}
        if buffers:
            parts.append(f"buffers={literal(buffers)}")
        for key, value in settings_of(m).items():
            if isinstance(value, torch.Size):
                value = tuple(value)
            if isinstance(value, torch.Tensor):
                # not a parameter or buffer: a result the forward stores (a VAE's KL term), which
                # the next forward writes again; eject's own check catches any other use
                value = None
            if not _plain(value):
                raise ExportError(f"{type(m).__name__}.{key} holds a {type(value).__name__}, "
                                  "which the generated code cannot write", path=path,
                                  fix="export as --format torchscript or exported-program")
            parts.append(f"{key}={literal(value)}")
        if not parts:
            return f"{name}()"
        one_line = f"{name}({', '.join(parts)})"
        if "\n" not in one_line and len(one_line) + len(pad) < 96:
            return one_line
        return f"{name}(\n" + "".join(f"{pad}{p},\n" for p in parts) + f"{INDENT * depth})"

    # ---- forward ---------------------------------------------------------------------------
    def accessor(self, path: str) -> str:
        text, owner = "self", self.model
        for part in path.split("."):
            child = owner._modules.get(part)
            if child is None:  # a parameter or buffer (a tied weight read by another node)
                return f"{text}.{part}" if part.isidentifier() else f"getattr({text}, {part!r})"
            if _is_container(owner):
                names = list(owner._modules)
                text += f"[{part}]" if names == [str(i) for i in range(len(names))] else f"[{part!r}]"
            elif isinstance(owner, (nn.Sequential, nn.ModuleList)) and part.isdigit():
                text += f"[{part}]"
            elif part.isidentifier() and not keyword.iskeyword(part):
                text += f".{part}"
            else:
                text += f".get_submodule({part!r})"
            owner = child
        return text

    def forward(self) -> tuple[str, list[str]]:
        names: dict[fx.Node, str] = {}
        used: set[str] = {"self", "torch", "nn"}
        lines, params = [], []

        def var(base: str) -> str:
            base = re.sub(r"\W", "_", base)
            base = f"n{base}" if base[:1].isdigit() else base
            base = base + "_" if keyword.iskeyword(base) else base
            out, i = base, 2
            while out in used:
                out, i = f"{base}_{i}", i + 1
            used.add(out)
            return out

        def arg(a) -> str:
            if isinstance(a, fx.Node):
                return names[a]
            if isinstance(a, (tuple, list)):
                inner = ", ".join(arg(x) for x in a)
                return f"({inner},)" if isinstance(a, tuple) and len(a) == 1 else (
                    f"({inner})" if isinstance(a, tuple) else f"[{inner}]")
            return literal(a)

        for n in self.model.graph.nodes:
            if n.op == "placeholder":
                names[n] = var(n.target)
                shape = _shape(self.design.input_shape)
                params.append(names[n])
                lines.append(f"# {names[n]}: {shape}")
            elif n.op == "call_module":
                names[n] = var(n.target)
                call = f"{names[n]} = {self.accessor(n.target)}({', '.join(arg(a) for a in n.args)})"
                node = self.nodes.get(n.target)
                note = f"  # {_shape(node.output_shape)}" if node is not None else ""
                lines.append(call + note)
            elif n.op == "get_attr":
                names[n] = var(n.target)
                lines.append(f"{names[n]} = {self.accessor(n.target)}")
            elif n.op == "call_function":
                names[n] = var(n.name)
                fn = n.target
                if getattr(fn, "__name__", "") == "getitem":
                    lines.append(f"{names[n]} = {arg(n.args[0])}[{arg(n.args[1])}]")
                elif getattr(fn, "__module__", "").startswith("torch") or fn.__module__ is None:
                    kw = [f"{k}={arg(v)}" for k, v in n.kwargs.items()]
                    lines.append(f"{names[n]} = torch.{fn.__name__}("
                                 f"{', '.join([arg(a) for a in n.args] + kw)})")
                else:
                    raise ExportError(f"the generated forward cannot call {fn!r}", path=n.name)
            elif n.op == "output":
                lines.append(f"return {arg(n.args[0])}")
            else:
                raise ExportError(f"the generated forward cannot write a '{n.op}' step", path=n.name)
        return "\n".join(lines), params

    # ---- the file --------------------------------------------------------------------------
    def text(self, class_name: str, weights_name: str) -> str:
        d = self.design
        init_lines = []
        for name, child in self.model._modules.items():
            init_lines.append(self.comment(name, "").rstrip())
            init_lines.append(f"self.{name} = {self.module(child, name, 0)}"
                              if name.isidentifier() and not keyword.iskeyword(name)
                              else f"self.add_module({name!r}, {self.module(child, name, 0)})")
        for alias, first in _ties(self.model):  # one tensor under two names: tie them again
            init_lines.append(f"{self.accessor(alias)} = {self.accessor(first)}  # tied: one tensor")
        init_body = "\n".join(line for line in init_lines if line)
        forward_body, params = self.forward()
        for cls, kinds in self.kinds_of.items():  # say which design blocks each class serves
            self.src.set_kinds(cls, kinds)
        g = d.graph
        outs = ", ".join(_shape(s) for s in g.output_shapes)
        description = " ".join((d.description or "").split())
        doc = textwrap.fill(f"{d.name}: {description}" if description else d.name, 92)
        header = (f'"""{doc}\n\nWritten by `archlab export --format python` from the resolved '
                  f"design; it needs only PyTorch\n(and safetensors to read the weights). "
                  f"Input {_shape(g.input_shape)} -> output {outs};\n"
                  f"{g.param_count:,} parameters.\n\n"
                  f"    model = load({weights_name!r})\n"
                  f"    y = model(x)\n"
                  '"""\n\n')
        model_cls = (
            f"class {class_name}(nn.Module):\n"
            f'{INDENT}"""{d.name}: {_shape(g.input_shape)} -> {outs}."""\n\n'
            f"{INDENT}def __init__(self) -> None:\n"
            f"{INDENT * 2}super().__init__()\n"
            f"{textwrap.indent(init_body, INDENT * 2)}\n\n"
            f"{INDENT}def forward(self, {', '.join(params)}):\n"
            f"{textwrap.indent(forward_body, INDENT * 2)}\n")
        loader = (
            f"def load(weights: str = {weights_name!r}, device: str = \"cpu\") -> {class_name}:\n"
            f'{INDENT}"""The network with its weights, in eval mode. Relative paths are next to '
            'this file."""\n'
            f"{INDENT}from pathlib import Path\n\n"
            f"{INDENT}from safetensors.torch import load_file\n\n"
            f"{INDENT}path = Path(weights)\n"
            f"{INDENT}if not path.is_absolute() and not path.exists():\n"
            f"{INDENT * 2}path = Path(__file__).with_name(weights)\n"
            f"{INDENT}model = {class_name}()\n"
            f"{INDENT}model.load_state_dict(load_file(str(path), device=device))\n"
            f"{INDENT}return model.to(device).eval()\n")
        return header + self.src.text() + "\n\n" + model_cls + "\n\n" + loader


def _is_container(m: nn.Module) -> bool:
    """A node-path prefix (a stage, a group) with no module of its own: fx keeps it as a plain
    ``nn.Module``."""
    return type(m) is nn.Module or type(m).__name__ == "_Container"


def _same(a, b) -> bool:
    """The value equals the argument's default (so the call leaves it out)."""
    try:
        return type(a) is type(b) and bool(a == b)
    except Exception:
        return False


def _plain(value) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (tuple, list)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(_plain(v) for v in value.values())
    return False


def eject_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer by name (non-persistent buffers too: the ejected file
    registers them as ordinary buffers), each its own copy (tied weights are written twice)."""
    state = {n: t for n, t in model.named_parameters(remove_duplicate=False)}
    state.update({n: t for n, t in model.named_buffers(remove_duplicate=False)})
    return {n: t.detach().cpu().clone().contiguous() for n, t in state.items()}


def eject(model: fx.GraphModule, design, out: str | Path, *, check: bool = True) -> dict:
    """Write ``out`` (a .py file, or a folder to hold ``<name>.py``) and its ``.safetensors``."""
    from safetensors.torch import save_file

    out = Path(out)
    stem = re.sub(r"\W", "_", design.name)
    py = out if out.suffix == ".py" else out / f"{stem}.py"
    py.parent.mkdir(parents=True, exist_ok=True)
    weights = py.with_suffix(".safetensors")
    class_name = _camel(design.name)
    writer = Writer(model, design)
    text = writer.text(class_name, weights.name)
    py.write_text(text, encoding="utf-8")
    save_file(eject_state(model), str(weights), metadata={"archlab_design": design.name})
    info = {"format": "python", "file": str(py), "weights": str(weights), "class": class_name,
            "lines": text.count("\n")}
    if check:
        info.update(check_eject(model, design, py, weights))
    return info


def _ties(model: nn.Module) -> list[tuple[str, str]]:
    first: dict[int, str] = {}
    ties = []
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in first:
            ties.append((name, first[id(p)]))
        else:
            first[id(p)] = name
    return ties


def load_ejected(py: str | Path, weights: str | Path | None = None):
    """Import an ejected file (it is archlab's own output) and call its ``load()``."""
    py = Path(py)
    spec = importlib.util.spec_from_file_location(f"ejected_{py.stem}", py)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(spec.name, None)
    return module.load(str(weights or py.with_suffix(".safetensors")))


def check_eject(model, design, py: Path, weights: Path) -> dict:
    from .source import example_input

    ejected = load_ejected(py, weights)
    x = example_input(design, batch=2, seed=3)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        a, b = model(x), ejected(x)
    model.train(was_training)
    a = a if isinstance(a, (tuple, list)) else (a,)
    b = b if isinstance(b, (tuple, list)) else (b,)
    if len(a) != len(b) or not all(torch.equal(p, q) for p, q in zip(a, b, strict=True)):
        raise ExportError("the ejected model's outputs are not bit-identical to the built model's",
                          source=str(py), fix="report it with the design: a module was written wrongly")
    return {"checked": True, "bit_identical": True}
