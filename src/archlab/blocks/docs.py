"""Generate the Markdown reference of every registered block, norm, activation and conv kind.

    python -m archlab.blocks.docs > docs/blocks.md

The reference is generated from the registries themselves (docstrings, pydantic fields, examples),
so it cannot drift from the code; a test fails when docs/blocks.md is out of date.
"""

from __future__ import annotations

import inspect
import sys
import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from . import BLOCKS
from .base import Block
from .layers import ACTIVATIONS, NORMS, ActSpec, NormSpec
from .se import SESpec

REGENERATE = "python -m archlab.blocks.docs > docs/blocks.md"

# The norm registry holds factories without docstrings of their own; say what each computes.
NORM_NOTES = {
    "batch": "normalise each channel over the batch and spatial positions; running statistics "
             "for inference (Ioffe & Szegedy 2015)",
    "layer": "normalise each sample over all its features; for feature maps channel-wise over "
             "(C, H, W), i.e. group norm with one group (Ba et al. 2016)",
    "group": "normalise each sample over groups of channels (`groups`, default 32; Wu & He 2018)",
    "instance": "normalise each sample and channel over its spatial positions (Ulyanov et al. 2016)",
    "none": "no normalisation",
}

# 'standard' and 'grouped' share one plan function; say how they differ.
CONV_KIND_NOTES = {
    "standard": "a dense convolution (`groups` may still be set)",
    "grouped": "a grouped convolution: `groups` > 1 channel groups (Krizhevsky et al. 2012; ResNeXt)",
    "depthwise": "one filter per input channel, groups = C (Howard et al. 2017)",
}

ACT_NOTES = {
    "relu": "max(0, x) (Nair & Hinton 2010)",
    "relu6": "min(max(0, x), 6), MobileNet's low-precision-friendly ReLU (Howard et al. 2017)",
    "leaky_relu": "x if x > 0 else slope * x; `slope` default 0.01 (Maas et al. 2013)",
    "prelu": "leaky ReLU with a learned slope, one parameter (He et al. 2015)",
    "silu": "x * sigmoid(x), also called swish (Elfwing et al. 2018; Ramachandran et al. 2017)",
    "hardswish": "x * relu6(x + 3) / 6 (Howard et al. 2019, MobileNetV3)",
    "hardsigmoid": "relu6(x + 3) / 6, the SE gate of MobileNetV3",
    "gelu": "x * Phi(x) (Hendrycks & Gimpel 2016)",
    "sigmoid": "1 / (1 + exp(-x))",
    "tanh": "hyperbolic tangent",
    "identity": "no activation (alias `none`): linear output, e.g. narrow layers (A12)",
}


# ------------------------------------------------------------------------ formatting -------


def yaml_value(value: Any) -> str:
    """One value in YAML flow style, as a person would write it in a design file.

    >>> yaml_value({'kind': 'group', 'groups': 4})
    '{kind: group, groups: 4}'
    >>> yaml_value([1, 2])
    '[1, 2]'
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        plain = value and not any(c in value for c in ":{}[],#&*!|>'\"%@`") and value.strip() == value
        return value if plain and value.lower() not in ("true", "false", "null", "yes", "no") else repr(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {yaml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(yaml_value(v) for v in value) + "]"
    if isinstance(value, BaseModel):
        return yaml_value(_compact(value))
    return str(value)


def _compact(model: BaseModel) -> Any:
    """A spec as written in a design: just the kind when the other fields keep their defaults."""
    data = model.model_dump(exclude_defaults=True)
    if isinstance(model, NormSpec | ActSpec) and set(data) <= {"kind"}:
        return model.kind
    return data


def example_line(name: str, params: dict) -> str:
    """The example as a YAML node line: ``- {block: conv, out: 64, kernel: 7, stride: 2}``."""
    return "- " + yaml_value({"block": name, **params})


def type_name(annotation: Any) -> str:
    """A readable type: ``int | tuple[int, ...]``, ``'avg' | 'max'``, ``NormSpec``."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin is not None:
        inner = ", ".join("..." if a is Ellipsis else type_name(a) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    if annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", str(annotation))


def _constraints(info) -> str:
    parts = []
    for meta in info.metadata:
        for attr, sign in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
            bound = getattr(meta, attr, None)
            if bound is not None:
                parts.append(f"{sign} {bound}")
    return f" ({', '.join(parts)})" if parts else ""


def _default(info) -> str:
    if info.default is PydanticUndefined and info.default_factory is None:
        return "required"
    value = info.default if info.default_factory is None else info.default_factory()
    return f"`{yaml_value(value)}`"


def _cell(text: str) -> str:
    """Text for one Markdown table cell: pipes escaped, on one line."""
    return text.replace("|", "\\|").replace("\n", " ")


def params_table(params: type[BaseModel]) -> list[str]:
    if not params.model_fields:
        return ["No settings."]
    rows = ["| field | type | default | description |", "|---|---|---|---|"]
    for name, info in params.model_fields.items():
        desc = info.description or ""
        rows.append(f"| `{name}` | {_cell(type_name(info.annotation))}{_constraints(info)} | "
                    f"{_cell(_default(info))} | {_cell(desc)} |")
    return rows


def _strip_doctests(doc: str) -> str:
    """Drop ``>>>`` examples and their expected output (a doctest block ends at a blank line)."""
    out, in_example = [], False
    for line in doc.splitlines():
        if line.lstrip().startswith(">>>"):
            in_example = True
            continue
        if in_example:
            if line.strip() == "":
                in_example = False
            continue
        out.append(line)
    return "\n".join(out).strip()


# --------------------------------------------------------------------------- sections -------


def block_section(block: type[Block]) -> list[str]:
    lines = [f"### `{block.name}`", ""]
    doc = _strip_doctests(inspect.getdoc(block) or "")
    lines += [doc, ""]
    facts = ["inputs: several, named in `from: [a, b, ...]`" if block.n_inputs is None
             else f"inputs: {block.n_inputs}"]
    if block.inherits:
        facts.append("inherits design defaults: " + ", ".join(f"`{f}`" for f in block.inherits))
    else:
        facts.append("inherits no design defaults")
    if block.width_fields:
        facts.append("width fields: " + ", ".join(f"`{f}`" for f in block.width_fields))
    lines += ["*" + "; ".join(facts) + ".*", ""]
    lines += params_table(block.Params) + [""]
    if block.examples:
        lines += ["Examples:", "", "```yaml"]
        for params, shapes in block.examples:
            ins = ", ".join(str(tuple(s)) for s in shapes)
            label = "inputs" if len(shapes) > 1 else "input"
            lines.append(f"{example_line(block.name, params)}   # {label} {ins}")
        lines += ["```", ""]
    return lines


def families() -> dict[str, list[type[Block]]]:
    """Registered blocks grouped by family, families in registration order."""
    groups: dict[str, list[type[Block]]] = {}
    for block in BLOCKS.values():
        groups.setdefault(block.family or "other", []).append(block)
    return groups


def conv_kinds() -> dict[str, Any]:
    from .conv import CONV_KINDS
    return CONV_KINDS


def reference() -> str:
    """The whole Markdown reference."""
    lines = [
        "# Block reference",
        "",
        f"Generated by `{REGENERATE}` from the block registry; do not edit by hand.",
        "",
        "Every block below is used in a design as a node `- {block: NAME, ...fields}`. Shapes are "
        "written without the batch axis. Parameters are counted as PyTorch counts them (BatchNorm "
        "running statistics are buffers); compute is counted in multiply-adds "
        "(1 multiply-add = 2 FLOPs).",
        "",
        "## Contents",
        "",
    ]
    groups = families()
    for family, blocks in groups.items():
        names = ", ".join(f"[`{b.name}`](#{b.name})" for b in blocks)
        lines.append(f"- **{family}**: {names}")
    lines += ["- [Norms](#norms), [Activations](#activations), [SE spec](#se-spec), "
              "[Conv kinds](#conv-kinds)", ""]
    for family, blocks in groups.items():
        lines += [f"## {family}", ""]
        for block in blocks:
            lines += block_section(block)
    lines += ["## Norms", "", "Written `norm: NAME` or `norm: {kind: NAME, ...}`; fields:", ""]
    lines += params_table(NormSpec) + ["", "| kind | what it does |", "|---|---|"]
    for name in NORMS:
        note = NORM_NOTES.get(name) or _first_line(NORMS[name])
        lines.append(f"| `{name}` | {_cell(note)} |")
    lines += ["", "## Activations", "", "Written `act: NAME` or `act: {kind: NAME, ...}`; fields:", ""]
    lines += params_table(ActSpec) + ["", "| kind | what it computes |", "|---|---|"]
    for name in ACTIVATIONS:
        note = ACT_NOTES.get(name) or _first_line(ACTIVATIONS[name])
        lines.append(f"| `{name}` | {_cell(note)} |")
    lines += ["", "## SE spec", "",
              "The `se` field of `basic`, `bottleneck` and `inverted_residual`: `se: true` (Hu et al.'s "
              "settings) or `se: {ratio: 4, gate: hardsigmoid, divisor: 8}` (MobileNetV3); fields:", ""]
    lines += params_table(SESpec)
    lines += ["", "## Conv kinds", "", "The `kind` field of `conv` (a design default: `defaults: {conv: KIND}`).", "",
              "| kind | what it builds |", "|---|---|"]
    for name, plan in conv_kinds().items():
        note = CONV_KIND_NOTES.get(name) or _first_line(plan)
        lines.append(f"| `{name}` | {_cell(note)} |")
    return "\n".join(lines).rstrip() + "\n"


def _first_line(obj: Any) -> str:
    doc = inspect.getdoc(obj) if obj is not None else ""
    return doc.strip().splitlines()[0] if doc else ""


def main() -> int:
    sys.stdout.write(reference())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
