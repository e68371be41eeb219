"""Reading a design's text into plain Python data that remembers where each value came from.

YAML is parsed with PyYAML's *safe* composer (no tags that construct objects, no code), and the
result is made of :class:`LocDict` / :class:`LocList`, ordinary ``dict``/``list`` subclasses that
carry the 1-based line of the mapping and of each key. Errors can then say ``design.yaml:41``.
A Python dict given directly has no lines; errors then name ``<dict>`` and the node path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..errors import DesignError


class LocDict(dict):
    """A dict that knows its own line and the line of each key."""

    line: int | None = None
    key_lines: dict

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.key_lines = {}

    def line_of(self, key: Any) -> int | None:
        return self.key_lines.get(key, self.line)


class LocList(list):
    """A list that knows its own line and the line of each item."""

    line: int | None = None
    item_lines: list

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.item_lines = []

    def line_of(self, index: int) -> int | None:
        if 0 <= index < len(self.item_lines):
            return self.item_lines[index]
        return self.line


def line_of(container: Any, key: Any = None) -> int | None:
    if isinstance(container, (LocDict, LocList)):
        return container.line if key is None else container.line_of(key)
    return None


_SAFE_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "map",
                                                  "seq")}


def _convert(node: yaml.Node, source: str) -> Any:
    line = node.start_mark.line + 1
    if not isinstance(node, yaml.ScalarNode) and node.tag not in _SAFE_TAGS:
        raise DesignError(f"the YAML tag '{node.tag}' is not allowed: nothing in a design file "
                          "may construct objects or run code", source=source, line=line,
                          fix="remove the tag")
    if isinstance(node, yaml.MappingNode):
        out = LocDict()
        out.line = line
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise DesignError("YAML merge keys ('<<') are not supported",
                                  source=source, line=key_node.start_mark.line + 1,
                                  fix="write the keys out, or use a variable")
            key = _convert(key_node, source)
            if isinstance(key, (dict, list)):
                raise DesignError("a mapping key must be a plain value", source=source,
                                  line=key_node.start_mark.line + 1)
            if key in out:
                raise DesignError(f"duplicate key '{key}'", source=source,
                                  line=key_node.start_mark.line + 1,
                                  fix="remove one of the two; YAML would silently keep the last")
            out[key] = _convert(value_node, source)
            out.key_lines[key] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        out_list = LocList()
        out_list.line = line
        for item in node.value:
            out_list.append(_convert(item, source))
            out_list.item_lines.append(item.start_mark.line + 1)
        return out_list
    # scalars: resolved with the safe constructor's rules (int, float, bool, null, str)
    return _construct_scalar(node, source)


class _ScalarLoader(yaml.SafeLoader):
    def __init__(self) -> None:  # no stream: only used to construct single scalars
        yaml.SafeLoader.__init__(self, "")


_SCALAR_LOADER = _ScalarLoader()


def _construct_scalar(node: yaml.Node, source: str) -> Any:
    if node.tag not in _SAFE_TAGS:
        raise DesignError(f"the YAML tag '{node.tag}' is not allowed: nothing in a design file "
                          "may construct objects or run code", source=source,
                          line=node.start_mark.line + 1, fix="remove the tag")
    try:
        return _SCALAR_LOADER.construct_object(node, deep=True)
    except yaml.YAMLError as exc:
        raise DesignError(f"cannot read the value {node.value!r}: {exc}", source=source,
                          line=node.start_mark.line + 1) from None


def parse_text(text: str, source: str = "<text>") -> Any:
    """Parse YAML text into LocDict/LocList/scalars. Raises DesignError with the line."""
    if not text.strip():
        raise DesignError("the design is empty", source=source,
                          fix="start from a zoo design: `archlab show resnet18 --yaml`")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or str(exc)
        raise DesignError(f"invalid YAML: {problem}", source=source, line=line,
                          fix="check the indentation and the ':' after each key") from None
    except yaml.YAMLError as exc:
        raise DesignError(f"invalid YAML: {exc}", source=source) from None
    if node is None:
        raise DesignError("the design is empty", source=source,
                          fix="start from a zoo design: `archlab show resnet18 --yaml`")
    return _convert(node, source)


def read_file(path: str | Path) -> tuple[Any, str]:
    path = Path(path)
    if not path.exists():
        raise DesignError(f"no such design file '{path}'",
                          fix="check the path, or use a zoo name (see `archlab zoo`)")
    if path.is_dir():
        raise DesignError(f"'{path}' is a folder, expected a design file (.yaml)",
                          fix="give the YAML file inside it, e.g. design.yaml")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DesignError(f"cannot read design file '{path}': {exc}") from None
    return parse_text(text, str(path)), str(path)
