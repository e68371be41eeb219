"""Source of the classes and helpers a standalone (ejected) model file needs.

The ejected file must run without archlab, so for every archlab module class in the model it
carries that class's own methods (``forward`` and what it calls) as archlab wrote them, and the
module-level helpers and constants those methods use, found by reading their free names. Each
class gets a plain ``__init__`` that takes its layers, its tensor shapes and its settings as
arguments: the values the archlab block computed when the design was built, written out.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import sys
import textwrap
import types
from dataclasses import dataclass, field

from torch import nn

from .onnx import ExportError

_MODULE_STATE = set(nn.Module().__dict__)  # what every nn.Module has: not a setting
KINDS = "@@KINDS@@\n"  # replaced by the design blocks a class serves
_MARK = '\n    @@KINDS@@\n    """'
BLOCK_BASE = "Block"


def is_torch_class(cls: type) -> bool:
    """A class torch.nn offers under its own name (``nn.Conv2d``)."""
    return cls.__module__.startswith("torch.") and getattr(nn, cls.__name__, None) is cls


def settings_of(module: nn.Module) -> dict:
    """Plain attributes an archlab module set in its ``__init__`` (not torch's own state)."""
    return {k: v for k, v in module.__dict__.items() if k not in _MODULE_STATE}


@dataclass
class Source:
    """What the ejected file defines, in the order it must appear."""

    imports: dict[str, str] = field(default_factory=dict)        # line -> line
    constants: dict[str, str] = field(default_factory=dict)      # name -> "NAME = value"
    functions: dict[str, str] = field(default_factory=dict)      # name -> source
    classes: dict[type, str] = field(default_factory=dict)       # class -> source
    class_names: dict[type, str] = field(default_factory=dict)
    notes: dict[type, list[str]] = field(default_factory=dict)   # class -> block kinds using it
    _busy: set = field(default_factory=set)

    def __post_init__(self) -> None:
        self.imports["import torch"] = "import torch"
        self.imports["from torch import nn"] = "from torch import nn"

    # ---- names used by copied code ---------------------------------------------------------
    def need(self, name: str, value, where: str) -> None:
        """Make ``name`` (bound to ``value`` in archlab's module) defined in the ejected file."""
        if isinstance(value, types.ModuleType):
            self.imports.setdefault(_import_line(name, value, where), _import_line(name, value, where))
        elif isinstance(value, type) and issubclass(value, nn.Module) and not is_torch_class(value) \
                and not value.__module__.startswith("torch"):
            self.add_class(value, where)
        elif inspect.isfunction(value) and value.__module__.startswith("archlab"):
            self.add_function(name, value)
        elif (inspect.isclass(value) or callable(value)) and _importable(value, name):
            line = f"from {_public_module(value)} import {name}"
            self.imports.setdefault(line, line)
        elif _is_literal(value):
            self.constants.setdefault(name, f"{name} = {literal(value)}")
        elif isinstance(value, (types.GenericAlias, type(list[int] | None))):
            self.constants.setdefault(name, f"{name} = {value!r}")
        else:
            raise ExportError(f"the generated code needs '{name}' ({type(value).__name__} from "
                              f"{getattr(value, '__module__', '?')}), which cannot be written "
                              "without archlab", path=where,
                              fix="export this design as --format torchscript, onnx or "
                                  "exported-program instead")

    def add_function(self, name: str, fn) -> None:
        if name in self.functions or name in self._busy:
            return
        self._busy.add(name)
        src = textwrap.dedent(inspect.getsource(fn))
        self._resolve(ast.parse(src), fn.__globals__, f"function {fn.__name__}")
        self.functions[name] = src.rstrip() + "\n"

    # ---- classes -----------------------------------------------------------------------
    def add_class(self, cls: type, where: str) -> str:
        if cls in self.class_names:
            return self.class_names[cls]
        name = self._unique(cls.__name__)
        self.class_names[cls] = name
        own_init = "__init__" in cls.__dict__
        bases = []
        for base in cls.__bases__:
            if base is nn.Module:
                bases.append(self.block_base() if own_init else "nn.Module")
            elif is_torch_class(base):
                bases.append(f"nn.{base.__name__}")
            elif issubclass(base, nn.Module):
                bases.append(self.add_class(base, where))
            else:
                raise ExportError(f"class {cls.__name__} derives from {base.__name__}, which the "
                                  "generated code cannot define", path=where)
        source = textwrap.dedent(inspect.getsource(cls))
        node = ast.parse(source).body[0]
        lines = source.splitlines()
        kept = []
        for stmt in node.body:
            if isinstance(stmt, ast.Expr) and isinstance(getattr(stmt, "value", None), ast.Constant) \
                    and isinstance(stmt.value.value, str):
                continue
            if isinstance(stmt, ast.FunctionDef) and stmt.name in ("__init__", "extra_repr"):
                continue
            kept.append(stmt)
        module_globals = vars(sys.modules[cls.__module__])
        self._resolve(ast.Module(body=kept, type_ignores=[]), module_globals, where)
        body = []
        for stmt in kept:
            first = min([stmt.lineno] + [d.lineno for d in getattr(stmt, "decorator_list", [])])
            body.append("\n".join(lines[first - 1:stmt.end_lineno]))
        doc = (ast.get_docstring(node) or cls.__name__).rstrip()
        text = f"class {name}({', '.join(bases)}):\n"
        text += textwrap.indent(f'"""{doc}\n{KINDS}"""', "    ") + "\n\n"
        if own_init and cls.__bases__[0] is not nn.Module:
            body.insert(0, textwrap.indent(generic_init(cls), "    "))
        text += "\n\n".join(body) if body else ""
        self.classes[cls] = text.rstrip() + "\n"
        return name

    def block_base(self) -> str:
        """The shared base of ejected archlab classes: its __init__ takes layers, shapes and
        settings (written once instead of once per class)."""
        if ("base", BLOCK_BASE) not in self.classes:
            self.class_names[("base", BLOCK_BASE)] = BLOCK_BASE
            self.classes[("base", BLOCK_BASE)] = (
                f"class {BLOCK_BASE}(nn.Module):\n"
                '    """Base of the blocks below. Each is built from its layers, the shapes of its own\n'
                "    tensors (their values come from the weights file) and its settings: the values\n"
                '    archlab computed for the node when it built the design."""\n\n'
                + textwrap.indent(generic_init(nn.Module), "    "))
        return BLOCK_BASE

    def set_kinds(self, cls: type, kinds: set[str]) -> None:
        text = self.classes[cls]
        note = f"\n\n    Used for the design's {', '.join(sorted(kinds))} node(s).\n    " if kinds else ""
        self.classes[cls] = text.replace(_MARK, note + '"""')

    def _unique(self, name: str) -> str:
        taken = set(self.class_names.values()) | set(self.functions) | set(self.constants)
        out, i = name, 2
        while out in taken:
            out, i = f"{name}{i}", i + 1
        return out

    def _resolve(self, tree: ast.AST, module_globals: dict, where: str) -> None:
        for name in sorted(free_names(tree)):
            if hasattr(builtins, name) or name == "__class__":
                continue
            if name in module_globals:
                self.need(name, module_globals[name], where)

    def text(self) -> str:
        out = []
        plain = sorted(line for line in self.imports if line.startswith("import "))
        froms = sorted(line for line in self.imports if line.startswith("from "))
        out.append("from __future__ import annotations\n")
        out.append("\n".join(plain + froms) + "\n")
        if self.constants:
            out.append("\n".join(self.constants.values()) + "\n")
        for src in self.functions.values():
            out.append("\n" + src)
        for src in self.classes.values():
            out.append("\n" + src.replace(_MARK, '"""').rstrip() + "\n")
        return "\n".join(out)


def generic_init(cls: type) -> str:
    """The ``__init__`` of an ejected archlab class: layers, tensor shapes and settings in."""
    base = cls.__bases__[0] if cls is not nn.Module else nn.Module
    try:
        inspect.signature(base).bind()
        sup = "super().__init__()"
    except TypeError:  # a torch base that needs arguments: its state comes in as settings
        sup = "nn.Module.__init__(self)"
    return textwrap.dedent(f'''\
        def __init__(self, layers: dict | None = None, parameters: dict | None = None,
                     buffers: dict | None = None, **settings) -> None:
            """``layers``: name -> module; ``parameters``/``buffers``: name -> shape (values come
            from the weights file); ``settings``: the block's plain attributes."""
            {sup}
            for name, layer in (layers or {{}}).items():
                self.add_module(name, layer)
            for name, shape in (parameters or {{}}).items():
                self.register_parameter(name, None if shape is None else nn.Parameter(torch.empty(shape)))
            for name, (shape, dtype) in (buffers or {{}}).items():
                self.register_buffer(name, torch.empty(shape, dtype=getattr(torch, dtype)))
            for name, value in settings.items():
                setattr(self, name, value)''')


def free_names(tree: ast.AST) -> set[str]:
    """Names a piece of code reads but does not bind itself (per function scope)."""
    loaded: set[str] = set()
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (loaded if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
    return loaded - bound


def _import_line(name: str, module: types.ModuleType, where: str) -> str:
    full = module.__name__
    top = full.split(".")[0]
    if top != "torch" and top not in sys.stdlib_module_names:
        raise ExportError(f"the generated code would import '{full}'; the ejected file may "
                          "import only torch and the standard library", path=where,
                          fix="export as --format torchscript or exported-program instead")
    if name == full:
        return f"import {full}"
    parent, _, leaf = full.rpartition(".")
    if parent and leaf == name:
        return f"from {parent} import {leaf}"
    return f"import {full} as {name}"


def _public_module(value) -> str:
    return value.__module__


def _importable(value, name: str) -> bool:
    mod = getattr(value, "__module__", None) or ""
    top = mod.split(".")[0]
    if top != "torch" and top not in sys.stdlib_module_names:
        return False
    return getattr(sys.modules.get(mod), name, None) is value


def _is_literal(value) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (tuple, list)):
        return all(_is_literal(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, (str, int)) and _is_literal(v) for k, v in value.items())
    return False


def literal(value) -> str:
    """Python source for a plain value (floats exactly, as repr writes them)."""
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return f"float('{value}')"
    if isinstance(value, tuple):
        inner = ", ".join(literal(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, list):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {literal(v)}" for k, v in value.items()) + "}"
    return repr(value)
