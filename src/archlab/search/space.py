"""A design space: which design variables and training options a search may change, over which
values, under which conditions and constraints (docs/search.md).

A space is either the ``search:`` section of a design, or a separate file that names its design::

    space: small_cnn                 # the space's name (optional)
    design: mnist_cnn                # zoo name or path (relative to this file); not in `search:`
    variables:                       # design variables (the design's `variables:`)
      width: {int: [8, 64], step: 8}
      hidden: {choice: [32, 64, 128]}
      w: {int: [8, 256], log: true, each: [w1, w2, w3]}     # AnyNet: one range, one per stage
      ratio: {float: [0.1, 0.5], when: {block: bottleneck}} # only for that choice of block
      classes: 10                    # a fixed value
    constraints:
      - non_decreasing: [w1, w2, w3]   # Radosavovic et al. 2020: w_{i+1} >= w_i
      - "w1 * 4 >= hidden"              # any expression over variables (no code runs)
    train:                           # training options (archlab train's), searched alike
      lr: {log: [1.0e-4, 1.0e-2]}
      l2: {log: [1.0e-6, 1.0e-3]}
      schedule: {choice: [constant, cosine]}
      batch: {choice: [32, 64, 128]}

A kind is one of ``choice`` (a list), ``int`` or ``float`` ([low, high], inclusive, optional
``step`` and ``log: true``) and ``log`` (a float on a log scale). Nothing in a space runs code:
constraints are read by the design language's expression walker.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..design.expr import FUNCTIONS, ExprError, evaluate
from ..design.source import LocDict, LocList, parse_text, read_file
from ..errors import ArchlabError, closest

KINDS = ("choice", "int", "float", "log")
OPTION_KEYS = {"step", "log", "when", "each"}
SPACE_KEYS = {"space": "the space's name", "design": "the design it changes (zoo name or path)",
              "variables": "design variables to search", "constraints": "conditions between them",
              "train": "training options to search", "description": "what the space explores"}
SECTION_KEYS = {k: v for k, v in SPACE_KEYS.items() if k not in ("design", "space")} | {
    "name": "the space's name"}


class SpaceError(ArchlabError):
    """A design space is malformed: the message names the file, line and key, and the fix."""


@dataclass(frozen=True)
class Variable:
    """One searched dimension.

    name:    the design variable (or training option) it sets.
    kind:    choice | int | float.
    low, high, step, log: the range (int/float); choices: the values (choice).
    when:    {variable: allowed values}: the dimension exists only when those hold.
    target:  'design' or 'train'.
    line:    where it is declared.
    """

    name: str
    kind: str
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    choices: tuple = ()
    when: tuple[tuple[str, tuple], ...] = ()
    target: str = "design"
    line: int | None = None

    def active(self, values: dict[str, Any]) -> bool:
        return all(values.get(name) in allowed for name, allowed in self.when)

    def suggest(self, trial: Any) -> Any:
        """The value an Optuna trial suggests for this dimension."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high),
                                     step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), step=self.step,
                                   log=self.log)

    def describe(self) -> str:
        if self.kind == "choice":
            text = "one of " + ", ".join(map(str, self.choices))
        else:
            text = f"{self.kind} in [{self.low:g}, {self.high:g}]"
            text += f" step {self.step:g}" if self.step else ""
            text += " (log scale)" if self.log else ""
        if self.when:
            text += " when " + " and ".join(f"{n} in {list(v)}" for n, v in self.when)
        return text


@dataclass(frozen=True)
class Constraint:
    """A condition the sampled variables must satisfy (an expression that must be true)."""

    text: str
    line: int | None = None

    def holds(self, values: dict[str, Any]) -> bool:
        return bool(evaluate(self.text, values))


@dataclass
class Space:
    """A validated design space over one design."""

    name: str
    design_raw: Any                  # the design's data (its `search:` section removed)
    design_source: str
    variables: list[Variable]
    constraints: list[Constraint]
    fixed: dict[str, Any] = field(default_factory=dict)        # design variables set, not searched
    fixed_train: dict[str, Any] = field(default_factory=dict)  # training options set
    source: str = "<space>"
    description: str = ""

    @property
    def design_defaults(self) -> dict[str, Any]:
        return dict(self.design_raw.get("variables") or {})

    def suggest(self, trial: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """(design variables, training options) for one Optuna trial (define-by-run: a
        conditional dimension is asked only when its condition holds)."""
        values: dict[str, Any] = dict(self.fixed)
        train: dict[str, Any] = dict(self.fixed_train)
        for var in self.variables:
            if var.active({**values, **train}):
                (values if var.target == "design" else train)[var.name] = var.suggest(trial)
        return values, train

    def violations(self, values: dict[str, Any], train: dict[str, Any]) -> list[str]:
        """The constraints that the sampled point breaks (design defaults fill the rest)."""
        env = {**_plain(self.design_defaults), **values, **train}
        return [c.text for c in self.constraints if not c.holds(env)]

    def candidate_design(self, values: dict[str, Any]):
        """The sampled design (an ordinary design: its resolved YAML is saved with the trial)."""
        from ..design import load

        return load(copy.deepcopy(self.design_raw), _source=self.design_source, **values)

    def fingerprint(self) -> str:
        """A hash of everything that decides which designs the space holds."""
        data = {"design": _plain(self.design_raw), "fixed": self.fixed,
                "fixed_train": self.fixed_train,
                "variables": [v.__dict__ | {"line": None} for v in self.variables],
                "constraints": [c.text for c in self.constraints]}
        text = json.dumps(data, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def describe(self) -> list[tuple[str, str]]:
        rows = [(("train." if v.target == "train" else "") + v.name, v.describe())
                for v in self.variables]
        rows += [(k, f"fixed {v!r}") for k, v in {**self.fixed, **self.fixed_train}.items()]
        rows += [("constraint", c.text) for c in self.constraints]
        return rows


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# ---------------------------------------------------------------------------- reading ----


def load_space(source: Any) -> Space:
    """A space from a space file, a design with a ``search:`` section (path or zoo name), YAML
    text or a dict."""
    if isinstance(source, Space):
        return source
    if isinstance(source, dict):
        raw, where = source, "<dict>"
    elif isinstance(source, (str, Path)) and Path(source).exists():
        raw, where = read_file(source)
    elif isinstance(source, str) and "\n" in source:
        raw, where = parse_text(source, "<text>"), "<text>"
    else:
        from .. import zoo

        if isinstance(source, str) and zoo.exists(source):
            raw, _ = read_file(zoo.path(source))
            where = f"zoo:{source}"
        else:
            raise SpaceError(f"'{source}' is not a space file, a design with a 'search:' section "
                             "or YAML text", fix="give the path of a .yaml file (docs/search.md)")
    if not isinstance(raw, dict):
        raise SpaceError("a space must be a mapping (variables, constraints, train)", source=where,
                         line=getattr(raw, "line", None))
    if "search" in raw and "layers" in raw:  # a design that carries its own space
        section = raw["search"]
        if not isinstance(section, dict):
            raise SpaceError("'search' must be a mapping (variables, constraints, train)",
                             source=where, line=_line(raw, "search"), path="search")
        design = {k: v for k, v in raw.items() if k != "search"}
        design = _copy_loc(raw, design)
        name = section.get("name") or raw.get("name") or Path(where).stem
        return _parse(section, design, where, where, str(name), "search", SECTION_KEYS)
    if "layers" in raw:
        raise SpaceError("this design has no 'search:' section", source=where,
                         fix="add search: {variables: {width: {int: [8, 64]}}} to it, or write a "
                             "space file with design: <this design> (docs/search.md)")
    if "design" not in raw:
        raise SpaceError("a space file needs 'design' (the design it changes)", source=where,
                         line=getattr(raw, "line", None),
                         fix="add design: mnist_cnn (a zoo name) or design: mynet.yaml")
    design_raw, design_where = _read_design(raw, where)
    name = raw.get("space") or Path(where).stem
    return _parse(raw, design_raw, design_where, where, str(name), "", SPACE_KEYS)


def _copy_loc(orig: Any, data: dict) -> LocDict:
    out = LocDict(data)
    out.line = getattr(orig, "line", None)
    out.key_lines = dict(getattr(orig, "key_lines", {}))
    return out


def _line(container: Any, key: Any = None) -> int | None:
    if isinstance(container, (LocDict, LocList)):
        return container.line if key is None else container.line_of(key)
    return None


def _read_design(raw: dict, where: str) -> tuple[Any, str]:
    from .. import zoo

    ref = raw["design"]
    if isinstance(ref, dict):
        return ref, f"{where}:design"
    if not isinstance(ref, str):
        raise SpaceError(f"'design' must be a zoo name or a path, got {ref!r}", source=where,
                         line=_line(raw, "design"), path="design")
    base = Path(where).parent if where not in ("<dict>", "<text>") else Path(".")
    path = Path(ref) if Path(ref).is_absolute() else base / ref
    if path.exists():
        data, design_where = read_file(path)
    elif zoo.exists(ref):
        data, _ = read_file(zoo.path(ref))
        design_where = f"zoo:{ref}"
    else:
        best = closest(ref, zoo.names())
        raise SpaceError(f"design '{ref}' is neither a file (looked for {path}) nor a zoo design",
                         source=where, line=_line(raw, "design"), path="design",
                         fix=f"did you mean '{best}'?" if best else "give a path or a zoo name")
    if isinstance(data, dict) and "search" in data:
        data = _copy_loc(data, {k: v for k, v in data.items() if k != "search"})
    return data, design_where


def _parse(section: dict, design: Any, design_where: str, where: str, name: str, prefix: str,
           keys: dict[str, str]) -> Space:
    def err(message: str, container: Any, key: Any, path: str, fix: str | None = None):
        return SpaceError(message, source=where, line=_line(container, key),
                          path=f"{prefix}.{path}".strip(".") if path else prefix or None, fix=fix)

    for key in section:
        if key not in keys:
            best = closest(str(key), keys)
            raise err(f"unknown key '{key}'; a space takes: {', '.join(keys)}", section, key, str(key),
                      fix=f"did you mean '{best}'?" if best else None)
    declared = design.get("variables") or {}
    from ..train.config import TrainConfig

    options = set(TrainConfig.model_fields)
    variables: list[Variable] = []
    fixed: dict[str, Any] = {}
    fixed_train: dict[str, Any] = {}
    seen: dict[str, Variable] = {}
    for target, block, valid in (("design", "variables", declared), ("train", "train", options)):
        specs = section.get(block) or {}
        if not isinstance(specs, dict):
            raise err(f"'{block}' must be a mapping of name: range", section, block, block)
        for vname, spec in specs.items():
            path = f"{block}.{vname}"
            names = [vname]
            if isinstance(spec, dict) and "each" in spec:
                each = spec["each"]
                if not isinstance(each, list) or not each or not all(isinstance(x, str) for x in each):
                    raise err("'each' must list the variables that take this range, one per stage",
                              spec, "each", path, fix="e.g. each: [w1, w2, w3, w4]")
                names = list(each)
            for n in names:
                if n not in valid:
                    best = closest(str(n), valid)
                    hint = {"weight_decay": "l2", "batch_size": "batch", "learning_rate": "lr"}.get(n)
                    fix = (f"archlab calls it '{hint}'" if hint else
                           f"did you mean '{best}'?" if best else
                           ("declare it under the design's 'variables:' and use it as $" + n
                            if target == "design" else "see archlab train --help"))
                    message = (f"'{n}' is not a variable of the design (known: "
                               f"{', '.join(map(str, valid)) or 'none'})" if target == "design"
                               else f"'{n}' is not a training option")
                    raise err(message, specs, vname, path, fix=fix)
                if n in seen or n in fixed or n in fixed_train:
                    raise err(f"'{n}' is declared twice in the space", specs, vname, path,
                              fix="keep one declaration")
            if not isinstance(spec, dict):
                if isinstance(spec, list):
                    raise err(f"'{vname}' is a list; a searched value needs its kind", specs, vname,
                              path, fix=f"write {vname}: {{choice: {list(spec)}}}")
                (fixed if target == "design" else fixed_train)[vname] = spec
                continue
            for n in names:
                var = _variable(n, spec, target, seen, err, specs, vname, path)
                seen[n] = var
                variables.append(var)
    constraints = _constraints(section.get("constraints") or [], section, seen, declared, fixed,
                               err)
    return Space(name=name, design_raw=design, design_source=design_where, variables=variables,
                 constraints=constraints, fixed=fixed, fixed_train=fixed_train, source=where,
                 description=str(section.get("description") or ""))


def _variable(name: str, spec: dict, target: str, seen: dict, err, specs, key, path) -> Variable:
    # 'log' is a kind ({log: [1e-4, 1e-2]}) or, as true/false, an option of int/float ranges
    kinds = [k for k in KINDS if k in spec and not (k == "log" and isinstance(spec[k], bool))]
    for k in spec:
        if k not in KINDS and k not in OPTION_KEYS:  # noqa: SIM102
            best = closest(str(k), [*KINDS, *OPTION_KEYS])
            raise err(f"unknown key '{k}' in '{key}'; kinds: {', '.join(KINDS)}; options: "
                      f"{', '.join(sorted(OPTION_KEYS))}", spec, k, path,
                      fix=f"did you mean '{best}'?" if best else None)
    if len(kinds) != 1:
        raise err(f"'{key}' needs exactly one kind ({', '.join(KINDS)}), got "
                  f"{', '.join(kinds) or 'none'}", specs, key, path,
                  fix=f"e.g. {key}: {{int: [8, 64]}} or {key}: {{choice: [a, b]}}")
    kind = kinds[0]
    line = _line(specs, key)
    when = _when(spec, seen, err, path)
    if kind == "choice":
        values = spec["choice"]
        if not isinstance(values, list) or not values:
            raise err(f"'choice' of '{key}' must be a non-empty list of values, got {values!r}",
                      spec, "choice", path, fix="e.g. choice: [relu, silu]")
        if any(isinstance(v, (dict, list)) or v is None for v in values):
            raise err(f"'choice' of '{key}' takes plain values (numbers, strings, true/false)",
                      spec, "choice", path)
        if len(set(map(repr, values))) != len(values):
            raise err(f"'choice' of '{key}' repeats a value: {values}", spec, "choice", path,
                      fix="list each value once")
        for k in ("step", "log"):
            if k in spec:
                raise err(f"'{k}' applies to int/float ranges, not to a choice", spec, k, path)
        return Variable(name, "choice", choices=tuple(values), when=when, target=target, line=line)
    bounds = spec[kind]
    ok = (isinstance(bounds, list) and len(bounds) == 2
          and all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds))
    if not ok:
        raise err(f"'{kind}' of '{key}' must be [low, high], got {bounds!r}", spec, kind, path,
                  fix=f"e.g. {kind}: [1, 10]" if kind == "int" else f"e.g. {kind}: [0.0001, 0.1]")
    low, high = bounds
    if kind == "int" and not all(isinstance(b, int) for b in bounds):
        raise err(f"'int' of '{key}' needs whole-number bounds, got {bounds}", spec, kind, path,
                  fix="use float: [...] for a real-valued range")
    if low >= high:
        raise err(f"range of '{key}' must have low < high, got [{low}, {high}]", spec, kind, path,
                  fix=f"write [{min(low, high)}, {max(low, high)}]" if low != high else
                  f"a single value is fixed: write {key}: {low}")
    log = kind == "log" or bool(spec.get("log", False))
    if log and low <= 0:
        raise err(f"a log range needs low > 0, got [{low}, {high}]", spec, kind, path,
                  fix="start the range above zero, e.g. [1e-5, ...], or drop log")
    step = spec.get("step")
    if step is not None:
        if not isinstance(step, (int, float)) or isinstance(step, bool) or step <= 0:
            raise err(f"'step' of '{key}' must be a positive number, got {step!r}", spec, "step", path)
        if log:
            raise err(f"'{key}' has both 'step' and a log scale; Optuna samples one or the other",
                      spec, "step", path, fix="drop step or drop log")
        if kind == "int" and not isinstance(step, int):
            raise err(f"'step' of int '{key}' must be a whole number, got {step}", spec, "step", path)
        if not math.isclose(((high - low) / step) % 1, 0, abs_tol=1e-9) and \
                not math.isclose(((high - low) / step) % 1, 1, abs_tol=1e-9):
            raise err(f"range [{low}, {high}] of '{key}' is not a whole number of steps of {step}",
                      spec, "step", path, fix=f"make high - low a multiple of {step}")
    return Variable(name, "float" if kind == "log" else kind, low=low, high=high, step=step,
                    log=log, when=when, target=target, line=line)


def _when(spec: dict, seen: dict, err, path: str) -> tuple:
    when = spec.get("when")
    if when is None:
        return ()
    if not isinstance(when, dict) or not when:
        raise err("'when' must map a choice variable to its value(s)", spec, "when", path,
                  fix="e.g. when: {block: bottleneck}")
    out = []
    for name, allowed in when.items():
        parent = seen.get(name)
        if parent is None or parent.kind != "choice":
            raise err(f"'when' refers to '{name}', which is not a choice declared above it", when,
                      name, f"{path}.when", fix="declare the choice variable first, e.g. "
                      f"{name}: {{choice: [a, b]}}")
        values = tuple(allowed) if isinstance(allowed, list) else (allowed,)
        for v in values:
            if v not in parent.choices:
                raise err(f"'when' value {v!r} is not one of {name}'s choices "
                          f"({', '.join(map(str, parent.choices))})", when, name, f"{path}.when")
        out.append((name, values))
    return tuple(out)


def _constraints(items: Any, section: dict, seen: dict, declared: dict, fixed: dict,
                 err) -> list[Constraint]:
    if not isinstance(items, list):
        raise err("'constraints' must be a list", section, "constraints", "constraints",
                  fix='e.g. constraints: ["w1 <= w2", {non_decreasing: [w1, w2, w3]}]')
    known = set(seen) | set(declared) | set(fixed)
    out = []
    for i, item in enumerate(items):
        line = _line(items, i)
        path = f"constraints[{i}]"
        if isinstance(item, dict) and set(item) <= {"non_decreasing", "non_increasing"} and len(item) == 1:
            kind, names = next(iter(item.items()))
            if not isinstance(names, list) or len(names) < 2:
                raise err(f"'{kind}' takes a list of two or more variables", items, i, path)
            op = "<=" if kind == "non_decreasing" else ">="
            texts = [f"{a} {op} {b}" for a, b in zip(names[:-1], names[1:], strict=True)]
        elif isinstance(item, str):
            texts = [item.strip().lstrip("$").strip("(){}") if item.strip().startswith("$") else item]
        else:
            raise err(f"a constraint is an expression or {{non_decreasing: [...]}}, got {item!r}",
                      items, i, path, fix='e.g. "w1 <= w2"')
        for text in texts:
            try:
                tree = ast.parse(text.strip(), mode="eval")
            except SyntaxError as exc:
                raise err(f"cannot read constraint '{text}': {exc.msg}", items, i, path,
                          fix='write a comparison such as "w1 <= w2"') from None
            names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} - set(FUNCTIONS)
            unknown = sorted(set(names) - known)
            if unknown:
                best = closest(unknown[0], known)
                raise err(f"constraint '{text}' uses {', '.join(unknown)}, not a variable of the "
                          "space or the design", items, i, path,
                          fix=f"did you mean '{best}'?" if best else
                          f"known variables: {', '.join(sorted(known))}")
            probe = {n: 1 for n in known}
            try:
                evaluate(text, probe)
            except ExprError as exc:
                raise err(f"cannot read constraint '{text}': {exc}", items, i, path) from None
            out.append(Constraint(text, line))
    return out
