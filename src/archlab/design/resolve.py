"""From a design's data to a :class:`~archlab.graph.Graph`: names, variables, defaults, widths,
stages, groups, merges, residuals and shapes, all checked before any tensor exists.

The vocabulary (docs/design-language.md is the full reference):

* a **node** is a mapping in a ``layers:`` list. It is one of
  - a block: ``{block: conv, out: 64, kernel: 3}`` (any registered block, or one defined in the
    design's ``blocks:`` section);
  - a merge: ``{merge: concat, from: [a, b]}`` (``concat``, ``sum``, ``weighted``; ``out: N`` on a
    concat adds the 1x1 projection);
  - a group: ``{name: enc1, layers: [...]}``, a sub-list with its own names;
* ``depth: N`` on a block or group repeats it as a stage (the stride only at the stage entry);
* ``residual: true`` wraps a block, a stage's blocks or a group in a shortcut add;
* ``from:`` names earlier nodes (never positions); the default is the node above;
* a compound node (a block with a merge or a residual) becomes a container whose parts are named
  ``<name>.merge``, ``<name>.block`` and ``<name>.residual``.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from .. import limits
from ..blocks import BLOCKS, get_block
from ..blocks.layers import make_divisible
from ..errors import ArchlabError, BlockError, DesignError, closest, unknown_name
from ..graph import INPUT, Graph, Node, block_formula
from .expr import ExprError, free_variables, substitute
from .source import LocDict, LocList, line_of

TOP_KEYS = {
    "archlab": "format version of the design language (1)",
    "name": "the design's name",
    "description": "what the design is and what it demonstrates",
    "task": "classification | regression | segmentation | generation | other",
    "input": "input shape without the batch: [3, 224, 224], [1, 16000], [64]",
    "variables": "named values with defaults, used as $name or ${expr}",
    "defaults": "norm, act, order and conv kind for the whole design",
    "width": "width policy: multiplier, divisor, policy (explicit|double|quadruple|regnet), base",
    "search": "a design space for archlab search (docs/search.md); ignored when building",
    "blocks": "blocks defined in this design from other blocks (cells)",
    "drop_path": "stochastic depth for every block with a drop_path setting: rate, schedule "
                 "(linear|linear_exclusive|constant)",
    "layers": "the network: a list of nodes",
    "output": "the output node name, or a list of names (default: the last node)",
    "review": "design-review settings (thresholds, disabled rules, suppressions)",
    "notes": "free text",
}
NODE_KEYS = {"name", "block", "from", "merge", "residual", "depth", "layers", "defaults",
             "fixed_width"}
DEFAULT_KEYS = {"norm": "norm", "act": "act", "order": "order", "conv": "kind"}
WIDTH_KEYS = {"multiplier", "divisor", "policy", "base"}
BLOCKDEF_KEYS = {"params", "inputs", "layers", "output", "description", "defaults"}
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RESERVED = {INPUT, "merge", "block", "residual"}
MERGES = ("concat", "sum", "weighted")
TASKS = ("classification", "regression", "segmentation", "generation", "other")


@dataclass
class Scope:
    """Names visible to a list of nodes: its own (earlier siblings) and its parents'."""

    prefix: str
    names: dict[str, str] = field(default_factory=dict)
    later: dict[str, int | None] = field(default_factory=dict)
    parent: Scope | None = None
    env: dict[str, Any] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)  # 'input' and block-input names

    def lookup(self, name: str) -> str | None:
        scope: Scope | None = self
        while scope is not None:
            if name in scope.aliases:
                return scope.aliases[name]
            if name in scope.names:
                return scope.names[name]
            scope = scope.parent
        return None

    def later_line(self, name: str) -> tuple[bool, int | None]:
        scope: Scope | None = self
        while scope is not None:
            if name in scope.later:
                return True, scope.later[name]
            scope = scope.parent
        return False, None

    def visible(self) -> list[str]:
        out: list[str] = []
        scope: Scope | None = self
        while scope is not None:
            out += list(scope.aliases) + list(scope.names)
            scope = scope.parent
        return out


class Resolver:
    def __init__(self, raw: Any, source: str, overrides: dict[str, Any] | None = None) -> None:
        self.raw = raw
        self.source = source
        self.overrides = dict(overrides or {})
        self.nodes: list[Node] = []
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.paths: set[str] = set()
        self.expanding: list[str] = []  # design-defined blocks being expanded (cycle guard)

    # ---- errors ---------------------------------------------------------------------------
    def error(self, message: str, container: Any = None, key: Any = None, where: str = "",
              fix: str | None = None) -> DesignError:
        line = None
        if isinstance(container, (LocDict, LocList)):
            line = container.line if key is None else container.line_of(key)
        return DesignError(message, source=self.source, line=line, path=where or None, fix=fix)

    # ---- top level ------------------------------------------------------------------------
    def run(self) -> tuple[Graph, dict[str, Any]]:
        raw = self.raw
        if not isinstance(raw, dict):
            raise self.error(f"a design must be a mapping with 'input' and 'layers', got "
                             f"{_kind(raw)}", raw,
                             fix="start from a zoo design: `archlab show resnet18 --yaml`")
        for key in raw:
            if key not in TOP_KEYS:
                best = closest(str(key), TOP_KEYS)
                raise self.error(f"unknown top-level key '{key}'; valid keys: "
                                 f"{', '.join(TOP_KEYS)}", raw, key,
                                 fix=f"did you mean '{best}'?" if best else None)
        task = raw.get("task")
        if task is not None and task not in TASKS:
            raise self.error(unknown_name("task", str(task), TASKS), raw, "task", "task",
                             fix="write one of them, or leave 'task' out")
        for key in ("input", "layers"):
            if key not in raw:
                raise self.error(f"the design has no '{key}'", raw,
                                 fix="add input: [3, 224, 224] (the shape without batch)"
                                 if key == "input" else "add layers: [...] with the network's nodes")
        env = self.variables(raw)
        input_shape = self.input_shape(raw, env)
        self.shapes[INPUT] = input_shape
        self.input_size = input_shape
        self.width = self.width_policy(raw, env)
        env.update(self.width.get("derived", {}))  # variables a width rule defines (regnet)
        self.blockdefs = self.block_definitions(raw)
        defaults = self.defaults(raw.get("defaults"), raw, "defaults", env, {})
        layers = raw["layers"]
        if not isinstance(layers, list) or not layers:
            raise self.error("'layers' must be a non-empty list of nodes", raw, "layers",
                             fix="write layers:\n  - {block: conv, out: 32}")
        planned, at = _planned_nodes(layers, limits.active().nodes)
        if planned > limits.active().nodes:  # before resolving any: tens of thousands of layers
            raise limits.exceeded("nodes", planned, "the number of nodes the layers ask for "
                                  "(at least)", source=self.source, line=line_of(layers, at),
                                  path=f"layers[{at}]")
        top = Scope(prefix="", env=env, defaults=defaults, aliases={INPUT: INPUT})
        last = self.resolve_list(layers, top, INPUT, "layers")
        self.drop_path_schedule(raw, env)
        outputs = self.outputs(raw, top, last, env)
        graph = Graph(input_shape, self.nodes, outputs)
        meta = {"variables": env}
        return graph, meta

    def variables(self, raw: dict) -> dict[str, Any]:
        declared = raw.get("variables") or {}
        if not isinstance(declared, dict):
            raise self.error("'variables' must be a mapping of name: default", raw, "variables")
        for name in self.overrides:
            if name not in declared:
                names = ", ".join(declared) or "none"
                best = closest(name, declared)
                raise ArchlabError(
                    f"unknown variable '{name}'; this design declares: {names}",
                    source=self.source,
                    fix=f"did you mean '{best}'?" if best else "declare it under 'variables:'")
        env: dict[str, Any] = {}
        for name, default in declared.items():
            if not isinstance(name, str) or not NAME_RE.match(name):
                raise self.error(f"variable name '{name}' must be an identifier (letters, digits, _)",
                                 declared, name)
            if isinstance(default, (dict, list)):
                raise self.error(f"variable '{name}' must have a single value, got a "
                                 f"{type(default).__name__}", declared, name)
            value = self.overrides.get(name, default)
            unknown = free_variables(value) - set(env)
            if unknown:
                raise self.error(f"variable '{name}' uses {', '.join(sorted(unknown))}, which is not "
                                 "declared above it", declared, name,
                                 fix="declare variables before the ones that use them")
            try:
                env[name] = substitute(value, env)
            except ExprError as exc:
                raise self.error(str(exc), declared, name, f"variables.{name}") from None
        return env

    def subst(self, value: Any, env: dict, container: Any, key: Any, where: str) -> Any:
        """Substitute variables in a value (recursively for mappings and lists)."""
        if isinstance(value, dict):
            out = LocDict()
            out.line = getattr(value, "line", None)
            out.key_lines = dict(getattr(value, "key_lines", {}))
            for k, v in value.items():
                out[k] = self.subst(v, env, value, k, f"{where}.{k}")
            return out
        if isinstance(value, list):
            out_list = LocList()
            out_list.line = getattr(value, "line", None)
            out_list.item_lines = list(getattr(value, "item_lines", []))
            for i, v in enumerate(value):
                out_list.append(self.subst(v, env, value, i, f"{where}[{i}]"))
            return out_list
        try:
            return substitute(value, env)
        except ExprError as exc:
            raise self.error(str(exc), container, key, where) from None

    def input_shape(self, raw: dict, env: dict) -> tuple[int, ...]:
        shape = self.subst(raw["input"], env, raw, "input", "input")
        if not isinstance(shape, list) or not shape or not all(
                isinstance(x, int) and not isinstance(x, bool) for x in shape):
            raise self.error(f"'input' must be a list of positive integers (the shape without batch), "
                             f"got {shape!r}", raw, "input",
                             fix="e.g. input: [3, 224, 224] for images, [1, 16000] for sequences, "
                             "[64] for vectors")
        if any(x <= 0 for x in shape):
            raise self.error(f"'input' sizes must be positive, got {list(shape)}", raw, "input")
        self.check_elements(shape, "the input", raw, "input", "input")
        return tuple(shape)

    def check_elements(self, shape: tuple, what: str, raw: Any, key: Any, where: str) -> None:
        """A tensor larger than the limit is refused before anything is allocated."""
        elements = math.prod(shape) if shape else 1
        if elements > limits.active().tensor_elements:
            line = self.line(raw, key)
            raise limits.exceeded("tensor_elements", elements,
                                  f"the number of elements of {what} {list(shape)}",
                                  source=self.source, line=line, path=where)

    def width_policy(self, raw: dict, env: dict) -> dict[str, Any]:
        spec = self.subst(raw.get("width") or {}, env, raw, "width", "width")
        if not isinstance(spec, dict):
            raise self.error("'width' must be a mapping (multiplier, divisor, policy, base)", raw,
                             "width")
        if spec.get("policy") == "regnet":  # the RegNet rule: stages as variables (design/regnet.py)
            from .regnet import regnet_policy

            return regnet_policy(spec, lambda msg, key, fix: self.error(
                msg, spec, key, f"width.{key}" if key else "width", fix=fix))
        for key in spec:
            if key not in WIDTH_KEYS:
                raise self.error(unknown_name("width key", str(key), WIDTH_KEYS), spec, key, "width")
        policy = spec.get("policy", "explicit")
        if policy not in ("explicit", "double", "quadruple"):
            raise self.error(f"width policy must be explicit, double or quadruple, got '{policy}'",
                             spec, "policy", "width.policy")
        multiplier = spec.get("multiplier", 1.0)
        divisor = spec.get("divisor", 8)
        base = spec.get("base")
        if not isinstance(multiplier, (int, float)) or multiplier <= 0:
            raise self.error(f"width multiplier must be a positive number, got {multiplier!r}",
                             spec, "multiplier", "width.multiplier")
        if not isinstance(divisor, int) or divisor <= 0:
            raise self.error(f"width divisor must be a positive integer, got {divisor!r}",
                             spec, "divisor", "width.divisor")
        if policy != "explicit" and (not isinstance(base, int) or base <= 0):
            raise self.error(f"width policy '{policy}' needs a positive integer 'base' (the width "
                             f"at full resolution), got {base!r}", spec, "base" if base else None,
                             "width.base", fix="add base: 32")
        return {"policy": policy, "multiplier": float(multiplier), "divisor": divisor, "base": base}

    def block_definitions(self, raw: dict) -> dict[str, Any]:
        defs = raw.get("blocks") or {}
        if not isinstance(defs, dict):
            raise self.error("'blocks' must be a mapping of block name: definition", raw, "blocks")
        for name, body in defs.items():
            where = f"blocks.{name}"
            if not isinstance(name, str) or not NAME_RE.match(name):
                raise self.error(f"block name '{name}' must be an identifier", defs, name, where)
            if name in BLOCKS:
                raise self.error(f"block '{name}' is already a built-in block", defs, name, where,
                                 fix="choose another name for the design's block")
            if not isinstance(body, dict) or "layers" not in body:
                raise self.error(f"block '{name}' needs 'layers' (and optionally params, inputs, "
                                 "output)", defs, name, where)
            for key in body:
                if key not in BLOCKDEF_KEYS:
                    raise self.error(unknown_name("block-definition key", str(key), BLOCKDEF_KEYS),
                                     body, key, where)
            if not isinstance(body["layers"], list) or not body["layers"]:
                raise self.error(f"'layers' of block '{name}' must be a non-empty list of nodes",
                                 body, "layers", where,
                                 fix="write layers:\n  - {block: conv, out: 32}")
        return defs

    def defaults(self, spec: Any, container: Any, key: str, env: dict,
                 inherited: dict[str, Any]) -> dict[str, Any]:
        if spec is None:
            return dict(inherited)
        spec = self.subst(spec, env, container, key, key)
        if not isinstance(spec, dict):
            raise self.error("'defaults' must be a mapping of norm/act/order/conv", container, key)
        out = dict(inherited)
        for k, v in spec.items():
            if k not in DEFAULT_KEYS:
                raise self.error(unknown_name("default", str(k), DEFAULT_KEYS), spec, k, key)
            out[DEFAULT_KEYS[k]] = v
        return out

    def outputs(self, raw: dict, scope: Scope, last: str, env: dict) -> list[str]:
        if "output" not in raw:
            return [last]
        spec = self.subst(raw["output"], env, raw, "output", "output")
        names = spec if isinstance(spec, list) else [spec]
        paths = []
        for name in names:
            path = scope.lookup(str(name)) if isinstance(name, str) else None
            if path is None:
                path = str(name) if str(name) in self.shapes else None
            if path is None or path == INPUT:
                raise self.error(unknown_name("output node", str(name), scope.visible()),
                                 raw, "output", "output")
            paths.append(path)
        return paths

    # ---- lists and nodes ------------------------------------------------------------------
    def resolve_list(self, items: list, scope: Scope, prev: str, where: str) -> str:
        for i, item in enumerate(items):
            if isinstance(item, dict) and isinstance(item.get("name"), str):
                scope.later.setdefault(item["name"], items.line_of(i)
                                       if isinstance(items, LocList) else None)
        for i, item in enumerate(items):
            prev = self.resolve_node(item, scope, prev, f"{where}[{i}]", items, i)
        return prev

    def resolve_node(self, raw: Any, scope: Scope, prev: str, where: str, parent: Any,
                     index: int) -> str:
        if not isinstance(raw, dict):
            raise self.error(f"a node must be a mapping such as {{block: conv, out: 64}}, got "
                             f"{raw!r}", parent, index, where,
                             fix="write the node as a mapping, e.g. - {block: conv, out: 64}")
        name = raw.get("name")
        if name is not None:
            if not isinstance(name, str) or not NAME_RE.match(name):
                raise self.error(f"node name {name!r} must be an identifier (letters, digits, _; "
                                 "not starting with a digit)", raw, "name", where)
            if name in RESERVED:
                raise self.error(f"'{name}' is a reserved name", raw, "name", where,
                                 fix="choose another name")
            if name in _module_attributes():
                raise self.error(f"node name '{name}' is taken by an attribute of the built module "
                                 f"(torch.fx.GraphModule.{name}): the node would replace it",
                                 raw, "name", where, fix=f"rename the node, e.g. '{name}_net' or '{name}1'")
            if name in scope.names:
                raise self.error(f"duplicate node name '{name}' (first used for "
                                 f"'{scope.names[name]}')", raw, "name", where,
                                 fix="give each node in a list its own name")
            scope.later.pop(name, None)
            where = f"{where} ({name})"
        kinds = [k for k in ("block", "merge", "layers") if k in raw]
        if not kinds:
            raise self.error("a node needs 'block', 'merge' or 'layers'; got keys "
                             f"{', '.join(map(str, raw))}", raw, None, where,
                             fix="e.g. {block: conv, out: 64} or {merge: sum, from: [a, b]}")
        if "block" in raw and "layers" in raw:
            raise self.error("a node has either 'block' or 'layers', not both", raw, "layers", where)
        if "layers" in raw:  # a group: only node keys (a block's other keys are its settings)
            for key in raw:
                if key not in NODE_KEYS:
                    best = closest(str(key), NODE_KEYS)
                    hint = (" (a group's output is its last node)" if key == "output" else "")
                    raise self.error(f"unknown key '{key}' on a group{hint}; valid keys: "
                                     f"{', '.join(sorted(NODE_KEYS))}", raw, key, where,
                                     fix=f"did you mean '{best}'?" if best and key != "output"
                                     else "remove it, or move the node to the end of the group")
        inputs = self.inputs(raw, scope, prev, where)
        defaults = self.defaults(raw.get("defaults"), raw, "defaults", scope.env, scope.defaults)
        depth = self.subst(raw.get("depth", None), scope.env, raw, "depth", where)
        if depth is not None and (not isinstance(depth, int) or isinstance(depth, bool) or depth < 1):
            raise self.error(f"'depth' must be a positive integer, got {depth!r}", raw, "depth",
                             where, fix="depth: 2 repeats the block twice")
        if depth is not None and len(self.nodes) + depth > limits.active().nodes:
            raise limits.exceeded("nodes", len(self.nodes) + depth, f"the number of nodes with "
                                  f"'depth: {depth}'", source=self.source,
                                  line=self.line(raw, "depth"), path=where)
        if name is None:
            name = self.auto_name(raw, scope)
        base_path = scope.prefix + name
        if depth is None:
            out = self.resolve_instance(raw, scope, base_path, inputs, defaults, where, first=True)
        else:
            # Each repetition reads the last k values of (inputs..., outputs so far): a one-input
            # block reads the repetition before it; a two-input cell [prev_prev, prev] reads the
            # two before it, as NAS cells do.
            history = list(inputs)
            out = None
            for i in range(depth):
                ins = inputs if i == 0 else history[-len(inputs):]
                out = self.resolve_instance(raw, scope, f"{base_path}.{i}", ins, defaults,
                                            f"{where}.depth[{i}]", first=(i == 0))
                history.append(out)
        scope.names[name] = out
        return out

    def auto_name(self, raw: dict, scope: Scope) -> str:
        stem = raw.get("block") or (raw.get("merge") if isinstance(raw.get("merge"), str) else None)
        stem = stem if isinstance(stem, str) and NAME_RE.match(stem) else "group"
        if stem in RESERVED:
            stem = f"{stem}_"
        i = 0
        while f"{scope.prefix}{stem}{i}" in self.paths or f"{stem}{i}" in scope.names:
            i += 1
        return f"{stem}{i}"

    def inputs(self, raw: dict, scope: Scope, prev: str, where: str) -> list[str]:
        if "from" not in raw:
            return [prev]
        spec = raw["from"]
        names = spec if isinstance(spec, list) else [spec]
        if not names:
            raise self.error("'from' is empty", raw, "from", where)
        paths = []
        for name in names:
            if not isinstance(name, str):
                raise self.error(f"'from' takes node names, got {name!r}; positions are not "
                                 "allowed (they shift silently when a layer is inserted)",
                                 raw, "from", where, fix="name the node and use its name")
            if name == raw.get("name"):
                raise self.error(f"node '{name}' takes its own output as input (a cycle)", raw,
                                 "from", where, fix="take the input from an earlier node")
            path = scope.lookup(name)
            if path is None:
                later, line = scope.later_line(name)
                if later:
                    at = f" (line {line})" if line else ""
                    raise self.error(f"'{name}' is defined later{at}; a node can only take inputs "
                                     "from nodes above it", raw, "from", where,
                                     fix="move this node below it, or reorder the layers")
                raise self.error(unknown_name("node", name, scope.visible()), raw, "from", where)
            paths.append(path)
        return paths

    def resolve_instance(self, raw: dict, scope: Scope, path: str, inputs: list[str],
                         defaults: dict, where: str, first: bool) -> str:
        residual = self.subst(raw.get("residual", False), scope.env, raw, "residual", where)
        if residual not in (True, False, None) and not isinstance(residual, dict):
            raise self.error(f"'residual' must be true, false or a mapping of options, got "
                             f"{residual!r}", raw, "residual", where)
        has_merge = "merge" in raw and ("block" in raw or "layers" in raw)
        compound = bool(residual) or has_merge
        prefix = f"{path}." if compound else ""
        self.claim(path, raw, where)
        node_in = inputs
        if "merge" in raw:
            merge_path = f"{prefix}merge" if has_merge else path
            node_in = [self.merge(raw, scope, merge_path, inputs, defaults, where)]
        elif len(inputs) > 1 and ("block" in raw and self.takes_one(raw["block"])) or (
                len(inputs) > 1 and "layers" in raw):
            raise self.error(f"{len(inputs)} inputs need a merge first", raw, "from", where,
                             fix="add merge: concat (or sum / weighted)")
        if "block" in raw:
            out = self.block(raw, scope, f"{prefix}block" if compound else path, node_in,
                             defaults, where, first)
        elif "layers" in raw:
            out = self.group(raw, scope, path, node_in, defaults, where)
        else:
            out = node_in[0]
        if residual:
            opts = residual if isinstance(residual, dict) else {}
            skip = node_in[0]
            params = dict(opts)
            out = self.leaf("shortcut_add", params, f"{path}.residual", [out, skip], defaults,
                            where + ".residual", raw, "residual")
        return out

    def takes_one(self, block: Any) -> bool:
        if isinstance(block, str) and block in BLOCKS:
            return BLOCKS[block].n_inputs == 1
        if isinstance(block, str) and block in self.blockdefs:
            return len(self.blockdefs[block].get("inputs") or [INPUT]) == 1
        return True

    def claim(self, path: str, raw: Any, where: str) -> None:
        if path in self.paths:
            raise self.error(f"two nodes share the module path '{path}'", raw, None, where,
                             fix="rename one of them")
        self.paths.add(path)

    # ---- the three node kinds -------------------------------------------------------------
    def merge(self, raw: dict, scope: Scope, path: str, inputs: list[str], defaults: dict,
              where: str) -> str:
        spec = self.subst(raw["merge"], scope.env, raw, "merge", where)
        if isinstance(spec, str):
            kind, params = spec, {}
        elif isinstance(spec, dict) and "kind" in spec:
            params = {k: v for k, v in spec.items() if k != "kind"}
            kind = spec["kind"]
        else:
            raise self.error(f"'merge' must be one of {', '.join(MERGES)} or a mapping with "
                             f"'kind', got {spec!r}", raw, "merge", where,
                             fix="write merge: concat, or merge: {kind: weighted, ...}")
        if kind not in MERGES:
            raise self.error(unknown_name("merge", str(kind), MERGES), raw, "merge", where + ".merge")
        if "block" not in raw and "layers" not in raw:  # a plain merge node: other keys are its params
            params.update({k: self.subst(v, scope.env, raw, k, where) for k, v in raw.items()
                           if k not in NODE_KEYS})
        if len(inputs) < 2:
            raise self.error(f"merge '{kind}' needs at least two inputs in 'from', got "
                             f"{len(inputs)}", raw, "from" if "from" in raw else "merge", where,
                             fix="list the branches: from: [a, b]")
        return self.leaf(kind, params, path, inputs, defaults, where + ".merge", raw, "merge")

    def block(self, raw: dict, scope: Scope, path: str, inputs: list[str], defaults: dict,
              where: str, first: bool) -> str:
        name = self.subst(raw["block"], scope.env, raw, "block", where)
        env = self.input_env(scope.env, raw, inputs)
        params = {k: self.subst(v, env, raw, k, f"{where}.{k}") for k, v in raw.items()
                  if k not in NODE_KEYS}
        if not first and "stride" in params:
            params["stride"] = 1  # a stage downsamples at its entry only
        fixed = bool(raw.get("fixed_width", False))
        if isinstance(name, str) and name in self.blockdefs:
            return self.expand(name, params, raw, scope, path, inputs, defaults, where, first)
        if not isinstance(name, str) or name not in BLOCKS:
            choices = list(BLOCKS) + list(self.blockdefs)
            raise self.error(unknown_name("block", str(name), choices), raw, "block", where)
        if BLOCKS[name].node_refs:
            inputs = self.references(BLOCKS[name], params, raw, scope, inputs, where)
        return self.leaf(name, params, path, inputs, defaults, where, raw, None,
                         fixed_width=fixed)

    # ---- widths relative to the input, references to other nodes, drop-path schedule ------
    def input_env(self, env: dict, raw: dict, inputs: list[str]) -> dict:
        """The scope's variables plus the node's input sizes, for settings written relative to
        the input (``out: $(in_channels // 2)``): in_channels = the first axis of the first
        input (channels of (C, H, W) and (C, L)), in_features = its last axis (the features of
        tokens (L, D) and vectors). A design variable of the same name wins."""
        if not _mentions(raw.values(), "in_"):
            return env
        shape = self.shapes[inputs[0]]
        return {"in_channels": shape[0], "in_features": shape[-1], **env}

    def references(self, cls, params: dict, raw: dict, scope: Scope, inputs: list[str],
                   where: str) -> list[str]:
        """Settings that name another node (``tie: wte``): the name becomes the node's path and
        the node's shared table (``wte.weight``) an extra input."""
        nodes = {n.path: n for n in self.nodes}
        for key in cls.node_refs:
            ref = params.get(key)
            if ref is None:
                continue
            target = scope.lookup(ref) if isinstance(ref, str) else None
            if target is None or target not in nodes:
                raise self.error(unknown_name("node", str(ref), [n for n in scope.visible()
                                                                 if n != INPUT]),
                                 raw, key, where, fix="name an embedding node above this one")
            node = nodes[target]
            tied = getattr(node.block_class, "tied_weight", None)
            if tied is None:
                raise self.error(f"'{key}: {ref}' must name a node with a table to share (an "
                                 f"embedding), got a '{node.block}' node", raw, key, where,
                                 fix="name an embedding node")
            attr, shape = tied(node.params)
            weight = f"{target}.{attr}"
            self.shapes[weight] = tuple(shape)
            params[key] = target
            inputs = [*inputs, weight]
        return inputs

    def drop_path_schedule(self, raw: dict, env: dict) -> None:
        """``drop_path: {rate: R, schedule: linear}``: every block with a drop_path setting that
        the node leaves unset gets a rate growing with its place i among the n such blocks:
        linear = R*i/(n-1) (torch.linspace(0, R, n): ConvNeXt, DeiT), linear_exclusive =
        R*i/n (torchvision's EfficientNet), constant = R. Drop path changes no shape or count."""
        if "drop_path" not in raw:
            return
        spec = self.subst(raw["drop_path"], env, raw, "drop_path", "drop_path")
        if isinstance(spec, (int, float)) and not isinstance(spec, bool):
            spec = {"rate": spec}
        if not isinstance(spec, dict):
            raise self.error("'drop_path' must be a mapping {rate: 0.1, schedule: linear}", raw,
                             "drop_path", "drop_path")
        for key in spec:
            if key not in ("rate", "schedule"):
                raise self.error(unknown_name("drop_path key", str(key), ("rate", "schedule")),
                                 spec, key, "drop_path")
        rate, schedule = spec.get("rate", 0.0), spec.get("schedule", "linear")
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
            raise self.error(f"drop_path rate must be a number in [0, 1), got {rate!r}", spec,
                             "rate", "drop_path.rate", fix="e.g. rate: 0.1")
        schedules = ("linear", "linear_exclusive", "constant")
        if schedule not in schedules:
            raise self.error(unknown_name("drop_path schedule", str(schedule), schedules), spec,
                             "schedule", "drop_path.schedule")
        chosen = [n for n in self.nodes if "drop_path" in n.block_class.Params.model_fields
                  and "drop_path" not in n.params.model_fields_set]
        count = len(chosen)
        for i, node in enumerate(chosen):
            if schedule == "constant":
                value = rate
            elif schedule == "linear":
                value = rate * i / (count - 1) if count > 1 else rate
            else:
                value = rate * i / count
            node.params = node.params.model_copy(update={"drop_path": float(value)})
            node.__dict__.pop("_ops", None)  # op records computed before the schedule

    def group(self, raw: dict, scope: Scope, path: str, inputs: list[str], defaults: dict,
              where: str) -> str:
        layers = raw["layers"]
        if not isinstance(layers, list) or not layers:
            raise self.error("'layers' of a group must be a non-empty list of nodes", raw,
                             "layers", where)
        inner = Scope(prefix=f"{path}.", parent=scope, env=scope.env, defaults=defaults)
        return self.resolve_list(layers, inner, inputs[0], f"{where}.layers")

    def expand(self, name: str, params: dict, raw: dict, scope: Scope, path: str,
               inputs: list[str], defaults: dict, where: str, first: bool) -> str:
        """A block defined in the design's ``blocks:`` section, expanded in place."""
        body = self.blockdefs[name]
        if name in self.expanding:
            chain = " -> ".join([*self.expanding, name])
            raise self.error(f"block '{name}' uses itself ({chain}), which would never end", raw,
                             "block", where, fix="a block may only use blocks other than itself")
        self.expanding.append(name)
        try:
            return self._expand(name, body, params, raw, scope, path, inputs, defaults, where, first)
        finally:
            self.expanding.pop()

    def _expand(self, name: str, body: dict, params: dict, raw: dict, scope: Scope, path: str,
                inputs: list[str], defaults: dict, where: str, first: bool) -> str:
        declared = body.get("params") or {}
        if not isinstance(declared, dict):
            raise self.error(f"'params' of block '{name}' must be a mapping of name: default",
                             body, "params", f"blocks.{name}")
        for key in params:
            if key not in declared:
                raise self.error(
                    f"unknown setting '{key}' for block '{name}'; it takes: "
                    f"{', '.join(declared) or 'nothing'}", raw, key, where,
                    fix=(f"did you mean '{closest(key, declared)}'?" if closest(key, declared)
                         else f"declare it under blocks.{name}.params"))
        env = dict(scope.env)
        for key, default in declared.items():
            env[key] = self.subst(params.get(key, default), env, declared, key,
                                  f"blocks.{name}.params.{key}")
        if not first and "stride" in declared:
            env["stride"] = 1
        in_names = body.get("inputs") or [INPUT]
        if not isinstance(in_names, list) or len(in_names) != len(inputs):
            raise self.error(f"block '{name}' takes {len(in_names)} input(s) "
                             f"({', '.join(map(str, in_names))}), got {len(inputs)}", raw,
                             "from" if "from" in raw else "block", where)
        block_defaults = self.defaults(body.get("defaults"), body, "defaults", env, defaults)
        inner = Scope(prefix=f"{path}.", env=env, defaults=block_defaults,
                      aliases=dict(zip(in_names, inputs, strict=True)))
        last = self.resolve_list(body["layers"], inner, inputs[0], f"blocks.{name}.layers")
        out_name = body.get("output")
        if out_name is None:
            return last
        out = inner.lookup(str(out_name))
        if out is None:
            raise self.error(unknown_name("output node", str(out_name), inner.visible()), body,
                             "output", f"blocks.{name}.output")
        return out

    # ---- one registered block -------------------------------------------------------------
    def leaf(self, block: str, params: dict, path: str, inputs: list[str], defaults: dict,
             where: str, raw: Any, key: Any, fixed_width: bool = False) -> str:
        cls = get_block(block)
        params = dict(params)
        for field_name, value in defaults.items():
            if field_name in cls.inherits and field_name in cls.Params.model_fields \
                    and field_name not in params:
                params[field_name] = value
        in_shapes = [self.shapes[i] for i in inputs]
        auto = [f for f in cls.width_fields if params.get(f) == "auto"]
        if auto:
            probe = {**params, **{f: 1 for f in auto}}
            shape = self.shape(cls, block, probe, in_shapes, inputs, raw, key, where)
            width = self.level_width(shape, raw, where)
            params.update({f: width for f in auto})
        elif not fixed_width and self.width["multiplier"] != 1.0:
            for f in cls.width_fields:
                if isinstance(params.get(f), int) and not isinstance(params.get(f), bool):
                    params[f] = make_divisible(params[f] * self.width["multiplier"],
                                               self.width["divisor"])
        out_shape, p = self.shape(cls, block, params, in_shapes, inputs, raw, key, where,
                                  validated=True)
        if len(self.nodes) >= limits.active().nodes:
            raise limits.exceeded("nodes", len(self.nodes) + 1, "the number of nodes",
                                  source=self.source, line=self.line(raw, key), path=where)
        self.check_elements(tuple(out_shape), f"the output of block '{block}'", raw, key, where)
        self.nodes.append(Node(path=path, block=block, params=p, inputs=list(inputs),
                               input_shapes=in_shapes, output_shape=tuple(out_shape), where=where,
                               source=self.source, line=self.line(raw, key),
                               stage=path.rsplit(".", 1)[0] if "." in path else ""))
        params_count = self.nodes[-1].param_count
        if params_count > limits.active().tensor_elements:
            raise limits.exceeded("tensor_elements", params_count,
                                  f"the number of parameters of block '{block}'",
                                  source=self.source, line=self.line(raw, key), path=where)
        self.shapes[path] = tuple(out_shape)
        self.paths.add(path)
        return path

    def line(self, raw: Any, key: Any) -> int | None:
        if isinstance(raw, LocDict):
            return raw.line if key is None else raw.line_of(key)
        return None

    def level_width(self, shape: tuple, raw: Any, where: str) -> int:
        policy = self.width["policy"]
        if policy == "explicit":
            raise self.error("'auto' width needs a width policy", raw, None, where,
                             fix="add width: {policy: double, base: 32} at the top of the design")
        if len(shape) < 2 or len(self.input_size) < 2:
            raise self.error("'auto' width needs feature maps with a spatial size", raw, None, where)
        ratio = self.input_size[1] / shape[1]
        level = max(0, round(math.log2(ratio))) if ratio > 0 else 0
        factor = 2 if policy == "double" else 4
        width = self.width["base"] * factor ** level
        if self.width["multiplier"] != 1.0:
            width = make_divisible(width * self.width["multiplier"], self.width["divisor"])
        return int(width)

    def shape(self, cls, block: str, params: dict, in_shapes: list, inputs: list[str], raw: Any,
              key: Any, where: str, validated: bool = False):
        memo_key = _settings_key(cls, params)
        p = _VALIDATED.get(memo_key) if memo_key is not None else None
        if p is None:
            self.check_values(cls, block, params, raw, key, where)
            try:
                p = cls.Params.model_validate(params)
            except ValidationError as exc:
                raise self.validation_error(exc, cls, block, raw, key, where) from None
            if memo_key is not None:
                if len(_VALIDATED) >= _VALIDATED_MAX:
                    _VALIDATED.clear()
                _VALIDATED[memo_key] = p
        try:
            out = block_formula(cls, "output_shape", p, in_shapes)
        except (IndexError, ValueError, TypeError, ArithmeticError) as exc:
            raise self.error(f"block '{block}' cannot work with these settings "
                             f"({_settings(params)}) on input {[list(s) for s in in_shapes]}: {exc}",
                             raw, key, where, fix="check the settings against the block's "
                             "reference: `archlab show` lists it; docs/design-language.md") from None
        except BlockError as exc:
            message = self.name_inputs(exc.message, inputs)
            fix = self.name_inputs(exc.fix, inputs) if exc.fix else None
            line_key = exc.field if (exc.field and isinstance(raw, dict) and exc.field in raw) else key
            raise self.error(message, raw, line_key, where, fix=fix) from None
        return (out, p) if validated else out

    def check_values(self, cls, block: str, params: dict, raw: Any, key: Any, where: str) -> None:
        """What pydantic's lax mode would take silently: a boolean for a number (YAML reads
        true/yes/on as booleans: `out: true` would be one channel), an empty list of sizes, a
        negative padding."""
        for name, value in params.items():
            info = cls.Params.model_fields.get(name)
            if info is None:
                continue
            kinds = _leaf_types(info.annotation)
            line_key = name if isinstance(raw, dict) and name in raw else key
            items = value if isinstance(value, list) else [value]
            if bool not in kinds and any(isinstance(v, bool) for v in items):
                raise self.error(f"'{name}' of block '{block}' takes a number, got "
                                 f"{str(value).lower()} (a boolean)", raw, line_key, where,
                                 fix=f"write a number, e.g. {name}: {_example(info)}; YAML reads "
                                     "true/false/yes/no/on/off as booleans")
            if isinstance(value, list) and not value and int in kinds:
                raise self.error(f"'{name}' of block '{block}' is an empty list", raw, line_key,
                                 where, fix=f"write one value, or one per spatial axis, e.g. "
                                            f"{name}: {_example(info)}")
            if "padding" in name and any(isinstance(v, int) and not isinstance(v, bool) and v < 0
                                         for v in items):
                raise self.error(f"'{name}' of block '{block}' must not be negative, got {value}",
                                 raw, line_key, where,
                                 fix=f"write {name}: 0 or more (or 'same'/'valid' where allowed)")

    @staticmethod
    def name_inputs(text: str, inputs: list[str]) -> str:
        def repl(m: re.Match) -> str:
            i = int(m.group(1))
            return f"'{inputs[i]}'" if i < len(inputs) else m.group(0)

        return re.sub(r"input #(\d+)", repl, text)

    def validation_error(self, exc: ValidationError, cls, block: str, raw: Any, key: Any,
                         where: str) -> DesignError:
        err = exc.errors()[0]
        loc = [str(x) for x in err.get("loc", ())]
        field_name = loc[0] if loc else None
        line_key = field_name if isinstance(raw, dict) and field_name in raw else key
        if err.get("type") == "extra_forbidden" and len(loc) > 1:
            inner = loc[-1]
            spec = ".".join(loc[:-1])
            return self.error(f"unknown key '{inner}' in '{spec}' of block '{block}'", raw,
                              line_key, where, fix=self.field_help(cls, field_name))
        if err.get("type") == "extra_forbidden" and field_name:
            valid = sorted(set(cls.Params.model_fields) | NODE_KEYS)
            best = closest(field_name, valid)
            return self.error(f"unknown key '{field_name}' for block '{block}'; valid keys: "
                              f"{', '.join(valid)}", raw, line_key, where,
                              fix=f"did you mean '{best}'?" if best else None)
        received = err.get("input")
        message = str(err.get("msg", "invalid value"))
        message = message.replace("Value error, ", "")
        shown = ".".join(loc) if loc else "settings"
        if err.get("type") == "missing":
            return self.error(f"block '{block}' needs '{shown}'", raw, line_key, where,
                              fix=self.field_help(cls, loc[0] if loc else None))
        return self.error(f"'{shown}' of block '{block}': {message}, got {received!r}", raw,
                          line_key, where, fix=_value_fix(err, shown, self.field_help(
                              cls, loc[0] if loc else None)))

    @staticmethod
    def field_help(cls, name: str | None) -> str | None:
        info = cls.Params.model_fields.get(name) if name else None
        if info is None or not info.description:
            return None
        return f"'{name}': {info.description}"


def _planned_nodes(items: Any, limit: int) -> tuple[int, int]:
    """A lower bound of the nodes a layers list resolves to (written depths multiply, groups
    add up), counted on the raw data and stopping once above ``limit``; with the index of the
    item where the count went over (or the last item)."""
    if not isinstance(items, list):
        return 0, 0
    total = 0
    for i, item in enumerate(items):
        count = 1
        if isinstance(item, dict):
            if isinstance(item.get("layers"), list):
                count = max(1, _planned_nodes(item["layers"], limit)[0])
            depth = item.get("depth")
            if isinstance(depth, int) and not isinstance(depth, bool) and depth > 1:
                count *= depth
        total += count
        if total > limit:
            return total, i
    return total, max(len(items) - 1, 0)


# Settings that passed the value checks and pydantic, by block class and settings: a search
# resolves the same block settings in thousands of variants. Params models are frozen, so one
# validated instance can be shared.
_VALIDATED: dict = {}
_VALIDATED_MAX = 16384


def _settings_key(cls, params: Any) -> Any:
    """A hashable key of the raw settings that keeps each value's type (True and 1 hash alike
    but must not share a check), or None when a value cannot be keyed."""
    def freeze(v):
        if isinstance(v, dict):
            return ("d", tuple(sorted((str(k), freeze(x)) for k, x in v.items())))
        if isinstance(v, (list, tuple)):
            return ("l", tuple(freeze(x) for x in v))
        if v is None or isinstance(v, (bool, int, float, str)):
            return (type(v).__name__, v)
        raise TypeError
    try:
        key = (cls, freeze(params))
        hash(key)
        return key
    except TypeError:
        return None


@functools.lru_cache(maxsize=1)
def _module_attributes() -> frozenset:
    """Names a node may not take: a node becomes an attribute of the built GraphModule (or of a
    container module), so 'code', 'forward', 'training' or 'to' would shadow the module's own."""
    from torch import fx, nn

    return frozenset(dir(fx.GraphModule)) | frozenset(vars(nn.Module()))  # + 'training', ...


def _leaf_types(annotation: Any) -> frozenset:
    """The plain types an annotation admits: ``int | list[int] | Literal['same']`` -> {int, str}.
    Memoised per annotation: every leaf of every design asks it of each of its fields."""
    try:
        return _leaf_types_cached(annotation)
    except TypeError:  # an unhashable annotation
        return _leaf_types_of(annotation)


@functools.lru_cache(maxsize=1024)
def _leaf_types_cached(annotation: Any) -> frozenset:
    return _leaf_types_of(annotation)


def _leaf_types_of(annotation: Any) -> frozenset:
    import typing

    out: set = set()
    stack = [annotation]
    while stack:
        ann = stack.pop()
        if typing.get_origin(ann) is typing.Literal:
            out |= {type(a) for a in typing.get_args(ann)}
        elif typing.get_args(ann):
            stack.extend(typing.get_args(ann))
        elif isinstance(ann, type):
            out.add(ann)
        elif ann is typing.Any:
            out |= {bool, int, float, str}
    if float in out:
        out.add(int)
    return frozenset(out)


def _value_fix(err: dict, name: str, help_text: str | None) -> str:
    """What to write instead of a value pydantic refused, from the kind of its error."""
    kind = str(err.get("type", ""))
    ctx = err.get("ctx") or {}
    if kind.startswith("int") or kind == "int_from_float":
        fix = f"write a whole number, e.g. {name}: 64"
    elif kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        bound = next(iter(ctx.values()), None)
        word = {"greater_than": "above", "greater_than_equal": "at least", "less_than": "below",
                "less_than_equal": "at most"}[kind]
        fix = f"write a value {word} {bound}"
    else:
        fix = "write a valid value"
    return f"{fix} ({help_text})" if help_text else fix


def _example(info: Any) -> Any:
    default = info.default
    return default if isinstance(default, (int, float, str)) and not isinstance(default, bool) else 3


def _settings(params: dict) -> str:
    return ", ".join(f"{k}: {v!r}" for k, v in params.items())[:200]


def _mentions(values: Any, text: str) -> bool:
    """Whether any string in ``values`` (nested mappings and lists too) contains ``text``."""
    for v in values:
        if isinstance(v, str) and text in v:
            return True
        if isinstance(v, dict) and _mentions(v.values(), text):
            return True
        if isinstance(v, list) and _mentions(v, text):
            return True
    return False


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"


def resolve(raw: Any, source: str, overrides: dict[str, Any] | None = None):
    return Resolver(raw, source, overrides).run()
