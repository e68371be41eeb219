"""Property-based fuzzing of ``archlab.load``: whatever it is given, it returns a Design or
raises an ArchlabError (never another exception, never a hang).

Three sources of inputs: every zoo design with one to three values mutated (replaced by numbers
at the edges, booleans, expressions, strings, lists, mappings; keys deleted or added), zoo design
texts with characters inserted, deleted or replaced, and random nested structures. A fixed
example budget, a per-example deadline and derandomize=True keep CI reproducible; each example
also runs under an alarm, so a hang fails the test instead of stopping the suite.
"""

from __future__ import annotations

import copy
import signal

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import archlab
from archlab import zoo
from archlab.errors import ArchlabError

ZOO = {name: zoo.path(name).read_text() for name in zoo.names()}
DATA = {name: yaml.safe_load(text) for name, text in ZOO.items()}
for _name in ZOO:  # warm up: the first load imports every block module (seconds, not the fuzz)
    archlab.load(_name)
SETTINGS = dict(deadline=10_000, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
ALARM_SECONDS = 20

EDGE_NUMBERS = [0, -1, 1, 2, 3, 7, -4, 10**6, 10**12, 2**40, 10**30, 1e29, 1e308, -1e308,
                float("inf"), float("-inf"), float("nan"), 0.5, -0.0, 1e-320]
EXPRESSIONS = ["${1/0}", "${ceil(1e308*10)}", "${round(1e400)}", "${divisible(8, 0)}",
               "${'a' * 10**9}", "${(9**64)**64}", "${" + "-" * 500 + "1}", "${nope}", "$nope",
               "${width * 2}", "${__import__('os')}", "${x.y}", "${[1][0]}", "${2 ** 65}",
               "$(8 // 0)", "${sqrt(-1)}", "${min()}", "${'a' < 1}", "${" + "(" * 100 + "1" + ")" * 100 + "}"]
STRINGS = ["", " ", "auto", "same", "valid", "conv", "relu", "input", "merge", "nope", "\x00",
           "é", "a" * 300, "!!python/object", "*alias", "&anchor", "{", "[", ":", "- x"]

scalars = st.one_of(st.sampled_from(EDGE_NUMBERS), st.booleans(), st.none(),
                    st.sampled_from(EXPRESSIONS), st.sampled_from(STRINGS),
                    st.integers(min_value=-(2**70), max_value=2**70),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(
        ["block", "out", "kernel", "stride", "padding", "depth", "from", "name", "merge",
         "layers", "residual", "groups", "act", "norm", "input", "x", "defaults"]), inner,
        max_size=4)), max_leaves=12)


def _guarded(load) -> None:
    """Run ``load()`` under an alarm; only ArchlabError may escape."""
    def alarm(signum, frame):
        raise TimeoutError(f"archlab.load ran past {ALARM_SECONDS} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(ALARM_SECONDS)
    try:
        load()
    except ArchlabError as exc:
        assert str(exc)  # a message, always
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _paths(node, prefix=()):
    """Every (path to a value) in a nested structure, containers included."""
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*prefix, i))


def _mutate(data, path, action, value):
    if not path:
        return value if action == "replace" else data
    parent = data
    for step in path[:-1]:
        parent = parent[step]
    key = path[-1]
    if action == "replace":
        parent[key] = value
    elif action == "delete":
        del parent[key]
    elif action == "add" and isinstance(parent, dict):
        parent[f"{key}_x" if isinstance(key, str) else "extra"] = value
    elif action == "add" and isinstance(parent, list):
        parent.insert(key, value)
    return data


@settings(max_examples=150, **SETTINGS)
@given(name=st.sampled_from(sorted(DATA)), edits=st.lists(st.tuples(
    st.integers(min_value=0), st.sampled_from(["replace", "delete", "add"]), values),
    min_size=1, max_size=3))
def test_mutated_zoo_designs(name, edits) -> None:
    data = copy.deepcopy(DATA[name])
    for pick, action, value in edits:
        paths = list(_paths(data))
        data = _mutate(data, paths[pick % len(paths)], action, value)
    _guarded(lambda: archlab.load(data))


@settings(max_examples=100, **SETTINGS)
@given(name=st.sampled_from(sorted(ZOO)), edits=st.lists(st.tuples(
    st.integers(min_value=0), st.sampled_from(["insert", "delete", "replace"]),
    st.sampled_from(list(":-[]{}&*!|>#'\"\t\n ,$%@`\\") + ["\x00", "\ufeff", "é", "  ", "\n  - "])),
    min_size=1, max_size=4))
def test_mutated_zoo_texts(name, edits) -> None:
    text = ZOO[name]
    for pick, action, piece in edits:
        i = pick % (len(text) + 1)
        if action == "insert":
            text = text[:i] + piece + text[i:]
        elif action == "delete":
            text = text[:i] + text[i + len(piece):]
        else:
            text = text[:i] + piece + text[i + 1:]
    if "\n" not in text:
        text += "\n"
    _guarded(lambda: archlab.load(text))


@settings(max_examples=120, **SETTINGS)
@given(input_shape=st.one_of(values, st.lists(st.integers(min_value=-3, max_value=40),
                                              max_size=4)),
       layers=st.one_of(values, st.lists(values, max_size=5)),
       extra=st.dictionaries(st.sampled_from(["variables", "defaults", "width", "blocks",
                                              "output", "task", "name", "typo"]), values,
                             max_size=3))
def test_random_structures(input_shape, layers, extra) -> None:
    _guarded(lambda: archlab.load({"input": input_shape, "layers": layers, **extra}))


@pytest.mark.parametrize("text", [
    "a: &a [*a]\n",
    "x0: &x0 [a, a, a, a, a, a, a, a, a]\n" + "".join(
        f"x{i}: &x{i} [*x{i - 1}, *x{i - 1}, *x{i - 1}, *x{i - 1}, *x{i - 1}, *x{i - 1}, *x{i - 1}, "
        f"*x{i - 1}, *x{i - 1}]\n" for i in range(1, 9)) + "input: [8]\nlayers: []\n",
    "input: [8]\nlayers: " + "[" * 50_000 + "]" * 50_000 + "\n",
], ids=["cyclic-alias", "billion-laughs", "deep-nesting"])
def test_known_bombs_are_refused_quickly(text) -> None:
    with pytest.raises(ArchlabError):
        _guarded_raise(text)


def _guarded_raise(text: str) -> None:
    def alarm(signum, frame):
        raise TimeoutError("archlab.load ran past 20 s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(ALARM_SECONDS)
    try:
        archlab.load(text)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
