"""Integrity of the SECOND fresh held-out fault suite (archlab.diagnose.fault_catalogue_fresh2).

Only the catalogue is checked here, never the detectors' verdicts on it: the suite is judged
once, by ``benchmarks/fault_suite.py --fresh2``, so that no test tunes a rule to it. Every run
below has the monitor off.

* size and coverage: >= 32 faults and >= 13 healthy set-ups, the three user paths among both,
  the four data kinds the issue names; no name reused from the other catalogues;
* every fault is its healthy twin (same path and data) with ONE kind of change (model, training
  or data), has a taxonomy source, and expected / plausible causes that are names of the
  detector registry (``archlab.diagnose.DETECTORS``), ``data_error``, or NO_DETECTOR (a fault
  no documented detector means: counted as a miss);
* every fault was recorded to hurt (3 seeds, monitor off) and every healthy set-up to learn;
* a data fault really changes the training data, and leaves validation alone unless it is a
  property of the data (units, scaling); a model fault really builds a different network;
* each user path trains 4 steps and returns the suite's Result.
"""

from __future__ import annotations

import functools
import math
from dataclasses import replace

import pytest
import torch

from archlab.diagnose import DETECTORS
from archlab.diagnose.fault_catalogue import SETUPS as MAIN_SETUPS
from archlab.diagnose.fault_catalogue_fresh import SETUPS as FRESH1_SETUPS
from archlab.diagnose.fault_catalogue_fresh2 import (
    CANDIDATES,
    CLASSES,
    DATA_KINDS,
    FAULTS,
    HEALTHY,
    HURT,
    HURT_MARGIN,
    NO_DETECTOR,
    NOT_HURTING,
    PATHS,
    SETUPS,
    archlab_data,
    hurt,
    prepare,
    run_fresh2,
)
from archlab.diagnose.faults import Result

NAMES = set(DETECTORS) | {"data_error"}
TWINS = {s.name: s for s in HEALTHY}


def test_size_and_coverage():
    assert len(FAULTS) >= 32 and len(HEALTHY) >= 13
    names = [s.name for s in CANDIDATES + HEALTHY]
    assert len(set(names)) == len(names)
    assert not set(names) & {s.name for s in MAIN_SETUPS + FRESH1_SETUPS}   # nothing reused
    assert {s.path for s in FAULTS} == set(PATHS) == {s.path for s in HEALTHY}
    wanted = {"images", "tabular regression", "sequences", "synthetic"}
    assert wanted <= {DATA_KINDS[s.data] for s in FAULTS}
    assert wanted <= {DATA_KINDS[s.data] for s in HEALTHY}
    assert [s.name for s in SETUPS] == [s.name for s in FAULTS + HEALTHY]
    assert NO_DETECTOR not in NAMES


@pytest.mark.parametrize("s", CANDIDATES, ids=lambda s: s.name)
def test_fault_is_its_twin_with_one_change(s):
    twin = TWINS[s.twin]
    assert (twin.path, twin.data) == (s.path, s.data)
    changed = [s.model is not twin.model, s.train != twin.train, s.prep != twin.prep]
    assert sum(changed) == 1, f"{s.name}: changes model/train/prep {changed}"
    if s.train != twin.train:   # one training setting
        assert len(set(s.train.items()) ^ set(twin.train.items())) <= 2, s.train
    assert any(tag in s.source for tag in ("H20", "AT", "DD")), s.source
    assert s.expected and set(s.expected) <= NAMES | {NO_DETECTOR}, s.expected
    assert NO_DETECTOR not in s.expected or s.expected == (NO_DETECTOR,)
    assert set(s.plausible) <= NAMES and not set(s.plausible) & set(s.expected), s.plausible


@pytest.mark.parametrize("s", FAULTS, ids=lambda s: s.name)
def test_fault_was_recorded_to_hurt(s):
    assert len(HURT[s.name]) == 3 and len(HURT[s.twin]) == 3
    if s.expected != ("data_error",):   # refused before training: hurts by definition
        assert hurt(s.name) > HURT_MARGIN, f"{s.name}: {HURT[s.name]} vs twin {HURT[s.twin]}"


def test_candidates_left_out_were_measured_and_did_not_hurt():
    for name, why in NOT_HURTING.items():
        assert name in HURT and why, name
        assert hurt(name) <= HURT_MARGIN, name
        assert name not in {s.name for s in FAULTS}


def test_healthy_twins_learn():
    """Each healthy set-up was recorded well above chance (so a fault's drop means something)."""
    for s in HEALTHY:
        assert all(math.isfinite(v) for v in HURT[s.name]), s.name
        chance = 0.0 if s.task == "regression" else 1 / CLASSES[s.data]
        assert min(HURT[s.name]) > chance + 0.25, (s.name, HURT[s.name])


@functools.cache
def _data_of(name: str):
    s = next(s for s in CANDIDATES + HEALTHY if s.name == name)
    if s.path == "archlab":
        x, y = archlab_data(s)
        return x, y, None, None
    return prepare(s, 0)


def _data(s):
    return _data_of(s.name)


def _same(a, b):
    return a.shape == b.shape and torch.equal(a.nan_to_num(7.0), b.nan_to_num(7.0))


@pytest.mark.parametrize("s", [s for s in CANDIDATES if s.prep != TWINS[s.twin].prep],
                         ids=lambda s: s.name)
def test_data_fault_changes_the_training_data(s):
    xtr, ytr, xva, yva = _data(s)
    txtr, tytr, txva, tyva = _data(TWINS[s.twin])
    assert not (_same(xtr, txtr) and _same(ytr, tytr)), s.name
    keys = {k for k, _ in set(s.prep.items()) ^ set(TWINS[s.twin].prep.items())}
    if xva is not None and not keys & {"scale", "targets", "offset", "raw_columns", "train_limit"}:
        assert _same(xva, txva) and _same(yva, tyva), s.name   # validation left alone
    if s.prep.get("nan_targets"):
        assert torch.isnan(ytr).any() and not torch.isnan(tytr).any()
    if s.prep.get("rare"):
        assert len(ytr) < len(tytr)


@pytest.mark.parametrize("s", [s for s in CANDIDATES if s.model is not TWINS[s.twin].model],
                         ids=lambda s: s.name)
def test_model_fault_builds_a_different_network(s):
    twin = TWINS[s.twin]
    shape = tuple(_data(twin)[0].shape[1:])
    n_out = 1 if s.task == "regression" else CLASSES[s.data]
    torch.manual_seed(0)
    a = s.model(shape, n_out)
    torch.manual_seed(0)
    b = twin.model(shape, n_out)
    if s.path == "archlab":   # designs are dicts
        assert a != b
        return
    x = torch.randn(8, *shape)
    with torch.no_grad():
        a.eval(), b.eval()
        same_output = torch.allclose(a(x), b(x))
    # a different function, or a different structure (dropout only acts in training mode)
    assert not same_output or repr(a) != repr(b), s.name


@pytest.mark.parametrize("path", PATHS)
def test_runner_trains_and_returns_a_result(path, tmp_path):
    s = next(s for s in HEALTHY if s.path == path and s.data in ("checker", "wine", "blobs"))
    r = run_fresh2(replace(s, train={**s.train, "batch": 32}), seed=0, monitor=False, steps=4)
    assert isinstance(r, Result) and r.fired == {} and r.steps >= 4
    assert math.isfinite(r.score) and 0.0 <= r.score <= 1.0
