"""The resolver validates each distinct block setting once (a search resolves the same settings
in thousands of variants), and the memo never lets a value through that a fresh check refuses:
True and 1 hash alike, so the key keeps each value's type.

Oracle: the same design resolved with an empty memo."""

from __future__ import annotations

import pytest

import archlab
from archlab.design import resolve


def _linear(out) -> dict:
    return {"input": [4], "layers": [{"name": "fc", "block": "linear", "out": out}]}


def test_a_boolean_is_refused_after_the_same_number_was_accepted():
    assert archlab.load(_linear(1)).graph.param_count == 5
    with pytest.raises(archlab.DesignError, match="takes a number, got true"):
        archlab.load(_linear(True))


def test_memoised_and_fresh_resolution_agree_on_every_zoo_design():
    for name in archlab.zoo.names():
        warm = archlab.load(name).graph
        resolve._VALIDATED.clear()
        cold = archlab.load(name).graph
        assert [n.params for n in warm.nodes] == [n.params for n in cold.nodes], name
        assert warm.param_count == cold.param_count, name


def test_lists_and_tuples_of_the_same_values_share_one_check_but_types_do_not_mix():
    a = resolve._settings_key(object, {"kernel": [3, 3], "flag": True})
    b = resolve._settings_key(object, {"kernel": [3, 3], "flag": 1})
    assert a is not None and b is not None and a != b
    assert resolve._settings_key(object, {"x": object()}) is None  # not keyable: no memo
