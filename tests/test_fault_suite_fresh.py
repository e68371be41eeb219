"""Integrity of the FRESH held-out fault suite (archlab.diagnose.fault_catalogue_fresh).

Only the catalogue is checked here, never the detectors' verdicts on it: the fresh half is
judged once, by ``benchmarks/fault_suite.py --fresh``, so that no test tunes a rule to it.

* size and coverage: >= 20 faults and >= 8 healthy set-ups, the three user paths among both,
  the four data kinds the issue names (images, tabular regression, sequences, synthetic);
* every fault is its healthy twin (same path and data) with ONE kind of change (model, training
  or data), has a taxonomy source, and expected / plausible causes that are detector names;
* every fault was recorded to hurt (its validation score against its twin, 3 seeds);
* each data fault really changes the training data it claims to, and leaves validation alone
  unless it is a property of the data (units, scaling) or of the training statistics;
* each runner trains a few steps (monitor off) and returns the suite's Result.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from archlab.diagnose.detectors import DETECTORS
from archlab.diagnose.fault_catalogue import SETUPS as OLD_SETUPS
from archlab.diagnose.fault_catalogue_fresh import (
    DATA_KINDS,
    FAULTS,
    HEALTHY,
    HURT,
    HURT_MARGIN,
    PATHS,
    SETUPS,
    hurt,
    prepare,
    run_fresh,
)
from archlab.diagnose.faults import Result

NAMES = set(DETECTORS) | {"data_error"}
TWINS = {s.name: s for s in HEALTHY}


def test_size_and_coverage():
    assert len(FAULTS) >= 20 and len(HEALTHY) >= 8
    assert len({s.name for s in SETUPS}) == len(SETUPS)
    assert not {s.name for s in SETUPS} & {s.name for s in OLD_SETUPS}   # nothing reused
    assert {s.path for s in FAULTS} == set(PATHS) == {s.path for s in HEALTHY}
    kinds = {DATA_KINDS[s.data] for s in SETUPS}
    assert {"images", "tabular regression", "sequences", "synthetic"} <= kinds
    assert len({DATA_KINDS[s.data] for s in FAULTS}) >= 4


@pytest.mark.parametrize("s", FAULTS, ids=lambda s: s.name)
def test_fault_is_its_twin_with_one_change(s):
    twin = TWINS[s.twin]
    assert (twin.path, twin.data) == (s.path, s.data)
    changed = [s.model is not twin.model, s.train != twin.train, s.prep != twin.prep]
    assert sum(changed) == 1, f"{s.name}: changes model/train/prep {changed}"
    assert any(tag in s.source for tag in ("H20", "AT", "DD")), s.source
    assert s.expected and set(s.expected) <= NAMES, s.expected
    assert set(s.plausible) <= NAMES and not set(s.plausible) & set(s.expected), s.plausible


@pytest.mark.parametrize("s", FAULTS, ids=lambda s: s.name)
def test_fault_was_recorded_to_hurt(s):
    assert len(HURT[s.name]) == 3 and len(HURT[s.twin]) == 3
    assert hurt(s.name) > HURT_MARGIN, f"{s.name}: {HURT[s.name]} vs twin {HURT[s.twin]}"


def test_healthy_twins_learn():
    """Each healthy set-up was recorded well above chance (so a fault's drop means something)."""
    chance = {"digits": 0.1, "mnist5k": 0.1, "cancer": 0.63, "spiral": 0.25, "waves": 1 / 3,
              "diabetes": 0.0}
    for s in HEALTHY:
        assert all(math.isfinite(v) for v in HURT[s.name]), s.name
        assert min(HURT[s.name]) > chance[s.data] + 0.2, (s.name, HURT[s.name])


@pytest.mark.parametrize("s", [s for s in FAULTS if s.prep != TWINS[s.twin].prep],
                         ids=lambda s: s.name)
def test_data_fault_changes_the_training_data(s):
    xtr, ytr, xva, yva = prepare(s, 0)
    txtr, tytr, txva, tyva = prepare(TWINS[s.twin], 0)
    changed = xtr.shape != txtr.shape or not torch.equal(xtr.nan_to_num(7.0), txtr.nan_to_num(7.0)) \
        or not torch.equal(ytr, tytr)
    assert changed, s.name
    keys = set(s.prep.items()) ^ set(TWINS[s.twin].prep.items())
    # units and scaling touch both splits; fewer training rows change the training statistics
    # validation is standardised with; the other data faults touch the training split only
    if not {k for k, _ in keys} & {"gain", "offset", "scale", "targets", "train_limit"}:
        assert torch.equal(xva, txva) and torch.equal(yva, tyva), s.name
    if s.prep.get("nan_rows"):
        assert torch.isnan(xtr).any() and not torch.isnan(txtr).any()


@pytest.mark.parametrize("path", PATHS)
def test_runner_trains_and_returns_a_result(path):
    torch.set_num_threads(1)
    s = next(s for s in HEALTHY if s.path == path and s.data in ("digits", "spiral", "waves"))
    short = replace(s, train={**s.train, "steps": 4})
    r = run_fresh(short, seed=0, monitor=False)
    assert isinstance(r, Result) and r.fired == {} and r.steps >= 4
    assert math.isfinite(r.score) and 0.0 <= r.score <= 1.0
