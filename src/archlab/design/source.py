"""Reading a design's text into plain Python data that remembers where each value came from.

YAML is parsed with PyYAML's *safe* composer (no tags that construct objects, no code), and the
result is made of :class:`LocDict` / :class:`LocList`, ordinary ``dict``/``list`` subclasses that
carry the 1-based line of the mapping and of each key. Errors can then say ``design.yaml:41``.
A Python dict given directly has no lines; errors then name ``<dict>`` and the node path.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import yaml

from .. import limits
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


class _Expansion:
    """Counts what converting the composed YAML costs: aliases make a small text expand into a
    huge structure ('billion laughs'), and an anchor used inside itself never ends."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.values = 0
        self.limit = limits.active().yaml_nodes
        self.open: set[int] = set()  # ids of the mappings/lists being converted (cycle guard)


def _convert(node: yaml.Node, source: str, state: _Expansion | None = None) -> Any:
    state = state or _Expansion(source)
    line = node.start_mark.line + 1
    state.values += 1
    if state.values > state.limit:
        raise limits.exceeded("yaml_nodes", f"more than {state.limit:,}",
                              "the number of values after expanding YAML aliases",
                              source=source, line=line)
    if not isinstance(node, yaml.ScalarNode) and node.tag not in _SAFE_TAGS:
        raise DesignError(f"the YAML tag '{node.tag}' is not allowed: nothing in a design file "
                          "may construct objects or run code", source=source, line=line,
                          fix="remove the tag")
    if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
        if id(node) in state.open:
            raise DesignError("a YAML anchor is used inside itself (a cyclic alias), which would "
                              "never end", source=source, line=line,
                              fix="write the value out, or use an alias only after its anchor's "
                                  "value is complete")
        state.open.add(id(node))
        try:
            return _convert_container(node, source, state, line)
        finally:
            state.open.discard(id(node))
    # scalars: resolved with the safe constructor's rules (int, float, bool, null, str)
    return _construct_scalar(node, source)


def _convert_container(node: yaml.Node, source: str, state: _Expansion, line: int) -> Any:
    if isinstance(node, yaml.MappingNode):
        out = LocDict()
        out.line = line
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise DesignError("YAML merge keys ('<<') are not supported",
                                  source=source, line=key_node.start_mark.line + 1,
                                  fix="write the keys out, or use a variable")
            key = _convert(key_node, source, state)
            if isinstance(key, (dict, list)):
                raise DesignError("a mapping key must be a plain value", source=source,
                                  line=key_node.start_mark.line + 1)
            if key in out:
                raise DesignError(f"duplicate key '{key}'", source=source,
                                  line=key_node.start_mark.line + 1,
                                  fix="remove one of the two; YAML would silently keep the last")
            out[key] = _convert(value_node, source, state)
            out.key_lines[key] = key_node.start_mark.line + 1
        return out
    out_list = LocList()
    out_list.line = line
    for item in node.value:
        out_list.append(_convert(item, source, state))
        out_list.item_lines.append(item.start_mark.line + 1)
    return out_list


def _check_expansion(root: yaml.Node, source: str) -> None:
    """The number of values the composed YAML expands to once aliases are followed, counted on
    the node graph (each shared node once, without expanding anything), and cycles: a 'billion
    laughs' is refused before its first expansion."""
    limit = limits.active().yaml_nodes
    size: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    open_: set[int] = set()
    while stack:
        node, done = stack.pop()
        key = id(node)
        if isinstance(node, yaml.ScalarNode):
            size[key] = 1
            continue
        children = ([n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode)
                    else list(node.value))
        if done:
            open_.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in children)
            if size[key] > limit:
                raise limits.exceeded("yaml_nodes", size[key], "the number of values after "
                                      "expanding YAML aliases", source=source,
                                      line=node.start_mark.line + 1)
            continue
        if key in size:
            continue
        if key in open_:
            raise DesignError("a YAML anchor is used inside itself (a cyclic alias), which would "
                              "never end", source=source, line=node.start_mark.line + 1,
                              fix="write the value out, or use an alias only after its anchor's "
                                  "value is complete")
        open_.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in size)


def _scan(text: str, source: str) -> None:
    """Check the YAML event stream (PyYAML's parser is iterative, not recursive) against the
    limits before anything is composed: nesting depth, aliases, values and string sizes."""
    limit = limits.active()
    depth = aliases = values = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        line = event.start_mark.line + 1 if event.start_mark else None
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            values += 1
            if depth > limit.yaml_depth:
                raise limits.exceeded("yaml_depth", depth, "the nesting depth of mappings and "
                                      "lists", source=source, line=line)
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1
        elif isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > limit.yaml_aliases:
                raise limits.exceeded("yaml_aliases", aliases, "the number of YAML aliases "
                                      "(*name)", source=source, line=line)
        elif isinstance(event, yaml.ScalarEvent):
            values += 1
            if len(event.value) > limit.string_chars:
                raise limits.exceeded("string_chars", len(event.value), "the length of a value",
                                      source=source, line=line)
        if values > limit.yaml_nodes:
            raise limits.exceeded("yaml_nodes", values, "the number of values", source=source,
                                  line=line)


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
    """Parse YAML text into LocDict/LocList/scalars. Raises DesignError with the line.

    The same text under the same limits is parsed once (a search loads one design file for
    thousands of variants); each call gets its own copy of the tree."""
    return copy.deepcopy(_parse_text_once(text, source, limits.active()))


@functools.lru_cache(maxsize=64)
def _parse_text_once(text: str, source: str, active_limits: limits.Limits) -> Any:
    # the limits are part of the key: a text accepted under raised limits is checked again
    # under the default ones
    if not text.strip():
        raise DesignError("the design is empty", source=source,
                          fix="start from a zoo design: `archlab show resnet18 --yaml`")
    limits.check("file_bytes", len(text.encode("utf-8", "surrogatepass")),
                 "the size of the design text in bytes", source=source)
    try:
        _scan(text, source)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or str(exc)
        raise DesignError(f"invalid YAML: {problem}", source=source, line=line,
                          fix="check the indentation and the ':' after each key") from None
    except yaml.YAMLError as exc:
        raise DesignError(f"invalid YAML: {exc}", source=source,
                          fix="a design is plain UTF-8 YAML text; remove control characters") from None
    except RecursionError:  # a limit above what Python's stack allows
        raise limits.exceeded("yaml_depth", "too deep for Python's stack",
                              "the nesting depth of mappings and lists", source=source) from None
    if node is None:
        raise DesignError("the design is empty", source=source,
                          fix="start from a zoo design: `archlab show resnet18 --yaml`")
    _check_expansion(node, source)
    try:
        return _convert(node, source)
    except RecursionError:
        raise limits.exceeded("yaml_depth", "too deep for Python's stack",
                              "the nesting depth of mappings and lists", source=source) from None


def read_file(path: str | Path) -> tuple[Any, str]:
    path = Path(path)
    if not path.exists():
        raise DesignError(f"no such design file '{path}'",
                          fix="check the path, or use a zoo name (see `archlab zoo`)")
    if path.is_dir():
        raise DesignError(f"'{path}' is a folder, expected a design file (.yaml)",
                          fix="give the YAML file inside it, e.g. design.yaml")
    limits.check_regular_file(path, "design file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DesignError(f"design file '{path}' is not UTF-8 text ({exc.reason} at byte "
                          f"{exc.start})", source=str(path),
                          fix="save the design as UTF-8 YAML") from None
    except OSError as exc:
        raise DesignError(f"cannot read design file '{path}': {exc.strerror}", source=str(path),
                          fix="check the file's permissions") from None
    return parse_text(text, str(path)), str(path)
