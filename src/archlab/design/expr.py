"""Variables and arithmetic in design files, without running code.

A value ``$width`` is replaced by the variable ``width`` (keeping its type). A string
``${width * 2}`` or ``$(width * 2)`` is an arithmetic expression over variables and numbers
(inside a YAML flow mapping ``{...}`` write ``$(...)``, since YAML reads ``{`` there; quote an
expression that contains a comma). Expressions are parsed
with :mod:`ast` and evaluated by walking a whitelist of node types (numbers, names, + - * / // %
**, unary minus, comparisons, ``a if c else b``, and the functions below). Anything else is
rejected: there is no ``eval`` and no attribute access, so a design file cannot run code.
"""

from __future__ import annotations

import ast
import functools
import math
import operator
import re
from collections.abc import Callable, Mapping
from typing import Any

from .. import limits
from ..errors import DesignError, LimitError, unknown_name

_WHOLE_VAR = re.compile(r"^\$([A-Za-z_][A-Za-z0-9_]*)$")
_WHOLE_EXPR = re.compile(r"^\$(?:\{(.*)\}|\((.*)\))$", re.S)
_EMBEDDED = re.compile(r"\$\{([^}]*)\}|\$\(([^)]*(?:\([^)]*\)[^)]*)*)\)|\$([A-Za-z_][A-Za-z0-9_]*)")


def _make_divisible(value: float, divisor: int = 8) -> int:
    from ..blocks.layers import make_divisible

    if isinstance(divisor, bool) or not isinstance(divisor, (int, float)) or divisor < 1:
        raise ValueError(f"divisible(x, d) needs a divisor d of at least 1, got {divisor!r}")
    return make_divisible(value, int(divisor))


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "min": min,
    "max": max,
    "round": round,
    "int": int,
    "float": float,
    "abs": abs,
    "ceil": math.ceil,
    "floor": math.floor,
    "sqrt": math.sqrt,
    "divisible": _make_divisible,  # divisible(x, 8): MobileNet's round-to-a-multiple rule
}

_BINOPS = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_CMPOPS = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge,
}


class ExprError(ValueError):
    """An expression is malformed or uses something not allowed."""


class ExprLimitError(ExprError):
    """An expression is larger than a limit; carries the LimitError with the limit's fix."""

    def __init__(self, error: LimitError) -> None:
        self.error = error
        super().__init__(f"{error.message}; {error.fix}")


def _depth(tree: ast.AST) -> int:
    """Nesting depth of an expression, computed without recursion."""
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in ast.iter_child_nodes(node))
    return deepest


def _checked(value: Any, text: str) -> Any:
    """A computed value within the limits: finite floats, integers and strings not too large."""
    limit = limits.active()
    if isinstance(value, float) and not math.isfinite(value):
        raise ExprError(f"'{text}' gives {value} (the number overflows or is not a number)")
    if isinstance(value, int) and not isinstance(value, bool) and \
            abs(value) >= 10 ** limit.integer_digits:
        digits = int(value.bit_length() * math.log10(2)) + 1
        raise ExprLimitError(limits.exceeded("integer_digits", digits,
                                             f"the number of digits computed by '{text[:80]}'"))
    if isinstance(value, str) and len(value) > limit.string_chars:
        raise ExprLimitError(limits.exceeded("string_chars", len(value),
                                             f"the length of the string computed by '{text[:80]}'"))
    return value


def evaluate(text: str, variables: Mapping[str, Any]) -> Any:
    """Evaluate an arithmetic expression over ``variables``.

    >>> evaluate("width * 2 + 1", {"width": 32})
    65
    >>> evaluate("divisible(width * 0.75)", {"width": 32})
    24
    """
    limit = limits.active()
    if len(text) > limit.expression_chars:
        raise ExprLimitError(limits.exceeded("expression_chars", len(text),
                                             "the length of an expression"))
    try:
        body, depth = _parsed(text.strip())
    except SyntaxError as exc:
        raise ExprError(f"cannot parse the expression '{text}': {exc.msg}") from None
    except (RecursionError, MemoryError):
        raise ExprLimitError(limits.exceeded("expression_depth", "too deep to parse",
                                             "the nesting of an expression")) from None
    if depth > limit.expression_depth:
        raise ExprLimitError(limits.exceeded("expression_depth", depth,
                                             "the nesting depth of an expression"))
    try:
        return _eval(body, variables, text)
    except RecursionError:  # a limit raised above what Python's stack allows
        raise ExprLimitError(limits.exceeded("expression_depth", depth,
                                             "the nesting depth of an expression")) from None


@functools.lru_cache(maxsize=4096)
def _parsed(text: str) -> tuple[ast.AST, int]:
    """The expression's tree and nesting depth, parsed once per distinct text: a search resolves
    the same `$(width * 2)` in thousands of variants. The tree is only read, never changed."""
    tree = ast.parse(text, mode="eval")
    return tree.body, _depth(tree.body)


def _eval(node: ast.AST, env: Mapping[str, Any], text: str) -> Any:
    return _checked(_eval_node(node, env, text), text)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _string_product(left: Any, right: Any, text: str) -> None:
    """'ab' * 10**9 would build a huge string before any check: check its size first."""
    if isinstance(left, str) and isinstance(right, int):
        n = len(left) * max(right, 0)
    elif isinstance(right, str) and isinstance(left, int):
        n = len(right) * max(left, 0)
    else:
        return
    if n > limits.active().string_chars:
        raise ExprLimitError(limits.exceeded("string_chars", n, "the length of the string "
                                             f"computed by '{text[:80]}'"))


def _eval_node(node: ast.AST, env: Mapping[str, Any], text: str) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, bool, str)):
        return node.value
    if isinstance(node, ast.Name):
        if node.id not in env:
            raise ExprError(unknown_name("variable", node.id, env))
        return env[node.id]
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        left, right = _eval(node.left, env, text), _eval(node.right, env, text)
        if isinstance(node.op, ast.Pow) and _is_number(right) and abs(right) > 64:
            raise ExprError(f"exponent {right} is too large in '{text}'")
        if isinstance(node.op, ast.Mult):
            _string_product(left, right, text)
        if isinstance(node.op, ast.Mod) and isinstance(left, str):
            raise ExprError(f"'%' on a string is not allowed in '{text}'")
        try:
            return _BINOPS[type(node.op)](left, right)
        except ZeroDivisionError:
            raise ExprError(f"division by zero in '{text}'") from None
        except (ArithmeticError, TypeError, ValueError) as exc:
            raise ExprError(f"cannot compute '{text}': {exc}") from None
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _eval(node.operand, env, text)
        if not _is_number(value):
            raise ExprError(f"a sign needs a number, got {value!r} in '{text}'")
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _CMPOPS:
        try:
            return _CMPOPS[type(node.ops[0])](_eval(node.left, env, text),
                                              _eval(node.comparators[0], env, text))
        except TypeError as exc:
            raise ExprError(f"cannot compare in '{text}': {exc}") from None
    if isinstance(node, ast.IfExp):
        return (_eval(node.body, env, text) if _eval(node.test, env, text)
                else _eval(node.orelse, env, text))
    if isinstance(node, ast.BoolOp):
        values = [_eval(v, env, text) for v in node.values]
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
        if node.func.id not in FUNCTIONS:
            raise ExprError(unknown_name("function", node.func.id, FUNCTIONS))
        args = [_eval(a, env, text) for a in node.args]
        if node.func.id in ("int", "float") and any(isinstance(a, str) and len(a) > 100
                                                    for a in args):
            raise ExprError(f"{node.func.id}() of a long string is not allowed in '{text}'")
        try:
            return FUNCTIONS[node.func.id](*args)
        except ZeroDivisionError:
            raise ExprError(f"division by zero in '{text}'") from None
        except (ArithmeticError, TypeError, ValueError) as exc:
            raise ExprError(f"cannot compute '{text}': {exc}") from None
    raise ExprError(f"'{ast.unparse(node)}' is not allowed in an expression; only numbers, "
                    f"variables, arithmetic and {', '.join(sorted(FUNCTIONS))}")


def substitute(value: Any, env: Mapping[str, Any]) -> Any:
    """Replace ``$name`` and ``${expr}`` in one scalar value (strings only; others unchanged)."""
    if not isinstance(value, str) or "$" not in value:
        return value
    m = _WHOLE_VAR.match(value)
    if m:
        if m.group(1) not in env:
            raise ExprError(unknown_name("variable", m.group(1), env))
        return env[m.group(1)]
    m = _WHOLE_EXPR.match(value)
    if m:
        inner = m.group(1) if m.group(1) is not None else m.group(2)
        if "$" not in inner:
            return _integral(evaluate(inner, env))

    def piece(match: re.Match) -> str:
        if match.group(3) is not None:
            if match.group(3) not in env:
                raise ExprError(unknown_name("variable", match.group(3), env))
            return str(env[match.group(3)])
        expr = match.group(1) if match.group(1) is not None else match.group(2)
        return str(_integral(evaluate(expr, env)))

    return _EMBEDDED.sub(piece, value)


def _integral(value: Any) -> Any:
    """3.0 -> 3: widths computed with '/' stay usable as channel counts."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def substitute_tree(data: Any, env: Mapping[str, Any], *, where: Callable[[Any, Any], tuple]) -> Any:
    """Substitute variables everywhere in a nested structure, keeping Loc containers' lines.

    ``where(container, key) -> (line, path)`` locates an error.
    """
    from .source import LocDict, LocList

    def walk(node: Any, path: str) -> Any:
        if isinstance(node, dict):
            out = LocDict()
            out.line = getattr(node, "line", None)
            out.key_lines = dict(getattr(node, "key_lines", {}))
            for k, v in node.items():
                out[k] = walk_value(node, k, v, f"{path}.{k}" if path else str(k))
            return out
        if isinstance(node, list):
            out_list = LocList()
            out_list.line = getattr(node, "line", None)
            out_list.item_lines = list(getattr(node, "item_lines", []))
            for i, v in enumerate(node):
                out_list.append(walk_value(node, i, v, f"{path}[{i}]"))
            return out_list
        return node

    def walk_value(container: Any, key: Any, value: Any, path: str) -> Any:
        if isinstance(value, (dict, list)):
            return walk(value, path)
        try:
            return substitute(value, env)
        except ExprLimitError as exc:
            line = container.line_of(key) if hasattr(container, "line_of") else None
            raise exc.error.located(line=line, path=path) from None
        except ExprError as exc:
            line = container.line_of(key) if hasattr(container, "line_of") else None
            raise DesignError(str(exc), line=line, path=path) from None

    return walk(data, "")


def free_variables(value: Any) -> set[str]:
    """Names a string value refers to (for ordering variable definitions)."""
    if not isinstance(value, str) or "$" not in value:
        return set()
    names: set[str] = set()
    for m in _EMBEDDED.finditer(value):
        if m.group(3):
            names.add(m.group(3))
        else:
            expr = m.group(1) if m.group(1) is not None else m.group(2)
            if len(expr) > limits.active().expression_chars:
                continue  # evaluate() reports it with the limit
            try:
                tree = ast.parse(expr.strip(), mode="eval")
            except (SyntaxError, RecursionError, MemoryError):
                continue
            names |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} - set(FUNCTIONS)
    return names
