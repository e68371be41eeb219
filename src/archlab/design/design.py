"""The :class:`Design`: a validated design with its resolved graph, and :func:`load`."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .. import zoo
from ..errors import DesignError, UsageError, closest
from ..graph import Graph
from .resolve import resolve
from .source import LocDict, LocList, parse_text, read_file


def _plain(value: Any) -> Any:
    """LocDict/LocList -> dict/list, recursively (for YAML/JSON output)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


@dataclass
class Design:
    """A design, validated and resolved.

    raw:        the design's data as written (variables not substituted).
    source:     where it came from: a file path, 'zoo:NAME', '<dict>' or '<text>'.
    variables:  effective variable values (defaults with overrides applied).
    graph:      the resolved graph (nodes, shapes, ops).
    """

    raw: Any
    source: str
    variables: dict[str, Any]
    graph: Graph
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        name = self.raw.get("name")
        if isinstance(name, str) and name:
            return name
        if self.source.endswith((".yaml", ".yml")):
            return Path(self.source).stem
        return "design"

    @property
    def description(self) -> str:
        return str(self.raw.get("description") or "").strip()

    @property
    def task(self) -> str | None:
        return self.raw.get("task")

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.graph.input_shape

    @property
    def review_config(self) -> dict[str, Any]:
        """The design's optional ``review:`` section (design-review settings), as plain data."""
        return _plain(self.raw.get("review") or {})

    def to_dict(self) -> dict[str, Any]:
        """The resolved design: the design as written with its variables set to the values used,
        so that ``load(design.to_dict())`` rebuilds exactly the same network."""
        data = _plain(self.raw)
        if self.variables:
            data["variables"] = dict(self.variables)
        if "name" not in data:
            data = {"name": self.name, **data}
        return data

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None, width=100)

    def with_variables(self, **variables: Any) -> Design:
        """A variant of this design with some variables changed."""
        return load(copy.deepcopy(self.raw), _source=self.source, **{**self.overrides, **variables})

    def build(self):
        from ..build import build

        return build(self)

    def __repr__(self) -> str:
        return (f"Design({self.name!r}, input={list(self.input_shape)}, nodes={len(self.graph)}, "
                f"params={self.graph.param_count:,})")


def load(source: Any, _source: str | None = None, **variables: Any) -> Design:
    """Load a design from a path, a zoo name, a dict or YAML text; ``variables`` override the
    design's variables (``archlab.load("resnet18", width=32)``).

    >>> d = load({"input": [3, 8, 8], "layers": [{"block": "conv", "out": 4}]})
    >>> d.graph.output_shape
    (4, 8, 8)
    """
    if isinstance(source, Design):
        return source.with_variables(**variables) if variables else source
    raw, where = _read(source)
    if _source is not None:
        where = _source
    graph, meta = resolve(raw, where, variables)
    return Design(raw=raw, source=where, variables=meta["variables"], graph=graph,
                  overrides=dict(variables))


def _read(source: Any) -> tuple[Any, str]:
    if isinstance(source, Mapping):
        return source, "<dict>"
    if isinstance(source, Path):
        return read_file(source)
    if not isinstance(source, str):
        raise DesignError(f"a design is a path, a zoo name, a dict or YAML text, got "
                          f"{type(source).__name__}")
    text = source.strip()
    if "\n" in text or (":" in text and not Path(text).exists() and not text.endswith((".yaml", ".yml"))):
        return parse_text(source, "<text>"), "<text>"
    if zoo.exists(text) and not Path(text).exists():
        path = zoo.path(text)
        data, _ = read_file(path)
        return data, f"zoo:{text}"
    if Path(text).exists() or text.endswith((".yaml", ".yml")) or "/" in text:
        return read_file(text)
    best = closest(text, zoo.names())
    raise DesignError(f"'{text}' is neither a design file nor a zoo design",
                      fix=(f"did you mean the zoo design '{best}'?" if best else
                           f"zoo designs: {', '.join(zoo.names())}"))


def parse_assignments(items: list[str] | None) -> dict[str, Any]:
    """``["width=48", "act=silu"]`` -> ``{"width": 48, "act": "silu"}`` (values read as YAML
    scalars, so numbers and booleans keep their type)."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise UsageError(f"--set takes name=value, got '{item}'", fix="e.g. --set width=48")
        name, _, value = item.partition("=")
        name = name.strip()
        if not name:
            raise UsageError(f"--set takes name=value, got '{item}' (no name)", path="--set",
                             fix="e.g. --set width=48")
        try:
            parsed = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            parsed = value
        if isinstance(parsed, (dict, list)) or parsed is None:
            parsed = value
        if isinstance(parsed, str):  # YAML 1.1 reads 1e20 (no dot) as text: it is a number
            try:
                parsed = float(parsed) if parsed.strip().lower() not in ("nan", "inf", "-inf",
                                                                         "infinity") else parsed
            except ValueError:
                pass
        out[name] = parsed
    return out


__all__ = ["Design", "LocDict", "LocList", "load", "parse_assignments"]
