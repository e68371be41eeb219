"""Integrity of the THIRD fresh held-out fault suite (archlab.diagnose.fault_catalogue_fresh3).

Only the catalogue is checked here, never the detectors' verdicts on it: the suite is judged
once, by ``benchmarks/fault_suite.py --fresh3``, so that no test tunes a rule to it. Every run
below has the monitor off.

* size and coverage: >= 40 faults and >= 15 healthy set-ups (5 per user path), the three user
  paths among both, the four data kinds the issue names; no name reused from the other
  catalogues; plain loops both with and without ``val_size``;
* every fault is its healthy twin (same path and data) with ONE change (the model, one
  training setting or one data knob), has a taxonomy source, and expected / plausible causes
  that are names of the detector registry (``archlab.diagnose.DETECTORS``), ``data_error``, or
  NO_DETECTOR (a fault no documented detector means: counted as a miss);
* every fault was recorded to hurt (3 seeds, monitor off) and every healthy set-up to learn;
* a data fault really changes the training data, and leaves validation alone unless it is a
  property of the data (units, scaling); a model fault really builds a different network;
* each user path trains 4 steps and returns the suite's Result;
* the benchmark's ``--fresh3`` goes through the same code path as the other fresh suites.
"""

from __future__ import annotations

import functools
import importlib.util
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from archlab.diagnose import DETECTORS
from archlab.diagnose.fault_catalogue import SETUPS as MAIN_SETUPS
from archlab.diagnose.fault_catalogue_fresh import SETUPS as FRESH1_SETUPS
from archlab.diagnose.fault_catalogue_fresh2 import CANDIDATES as FRESH2_CANDIDATES
from archlab.diagnose.fault_catalogue_fresh2 import HEALTHY as FRESH2_HEALTHY
from archlab.diagnose.fault_catalogue_fresh3 import (
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
    run_fresh3,
)
from archlab.diagnose.faults import Result

NAMES = set(DETECTORS) | {"data_error"}
TWINS = {s.name: s for s in HEALTHY}
SCALE_KEYS = {"unscaled", "skip_column", "raw_targets"}   # properties of the data: val too


def test_size_and_coverage():
    assert len(FAULTS) >= 40 and len(HEALTHY) >= 15
    names = [s.name for s in CANDIDATES + HEALTHY]
    assert len(set(names)) == len(names)
    others = {s.name for s in MAIN_SETUPS + FRESH1_SETUPS + FRESH2_CANDIDATES + FRESH2_HEALTHY}
    assert not set(names) & others   # nothing reused
    assert {s.path for s in FAULTS} == set(PATHS) == {s.path for s in HEALTHY}
    assert all(sum(s.path == p for s in HEALTHY) >= 5 for p in PATHS)
    wanted = {"images", "tabular regression", "sequences", "synthetic"}
    assert wanted <= {DATA_KINDS[s.data] for s in FAULTS}
    assert wanted <= {DATA_KINDS[s.data] for s in HEALTHY}
    assert [s.name for s in SETUPS] == [s.name for s in FAULTS + HEALTHY]
    assert NO_DETECTOR not in NAMES
    plain = [s for s in HEALTHY if s.path == "plain"]   # users differ: some pass val_size
    assert {bool(s.train.get("val_size")) for s in plain} == {True, False}


@pytest.mark.parametrize("s", CANDIDATES, ids=lambda s: s.name)
def test_fault_is_its_twin_with_one_change(s):
    twin = TWINS[s.twin]
    assert (twin.path, twin.data) == (s.path, s.data)
    changed = [s.model is not twin.model, s.train != twin.train, s.prep != twin.prep]
    assert sum(changed) == 1, f"{s.name}: changes model/train/prep {changed}"
    if s.train != twin.train:   # one training setting
        keys = {k for k, _ in set(s.train.items()) ^ set(twin.train.items())}
        assert len(keys) == 1, keys
    if s.prep != twin.prep:   # one data knob
        assert len({k for k, _ in set(s.prep.items()) ^ set(twin.prep.items())}) == 1
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
    assert {s.name for s in CANDIDATES} == {s.name for s in FAULTS} | set(NOT_HURTING)


def test_healthy_twins_learn():
    """Each healthy set-up was recorded well above chance (so a fault's drop means something):
    accuracy above chance + 0.25 on every seed, R^2 above 0.25."""
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
    if xva is not None and not keys & SCALE_KEYS:
        assert _same(xva, txva) and _same(yva, tyva), s.name   # validation left alone
    if s.prep.get("nan_targets"):
        assert torch.isnan(ytr).any() and not torch.isnan(tytr).any()
    if s.prep.get("nan_inputs"):
        assert torch.isnan(xtr).any() and not torch.isnan(txtr).any()
    if s.prep.get("minority") or s.prep.get("train_limit"):
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
        ya, yb = a(x), b(x)
    # a different function, or a different structure (dropout only acts in training mode)
    assert ya.shape != yb.shape or not torch.allclose(ya, yb) or repr(a) != repr(b), s.name


@pytest.mark.parametrize("path", PATHS)
def test_runner_trains_and_returns_a_result(path):
    s = next(s for s in HEALTHY if s.path == path and s.data in ("rings", "cancer", "spiral"))
    r = run_fresh3(replace(s, train={**s.train, "batch": 32}), seed=0, monitor=False, steps=4)
    assert isinstance(r, Result) and r.fired == {} and r.steps >= 4
    assert math.isfinite(r.score) and 0.0 <= r.score <= 1.0


def test_benchmark_runs_fresh3_through_the_shared_path():
    """``--fresh3`` names this module and its ``run_fresh3``, as ``--fresh2`` names its own."""
    path = Path(__file__).parents[1] / "benchmarks" / "fault_suite.py"
    spec = importlib.util.spec_from_file_location("fault_suite_bench", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.FRESH["fresh3"] == "fault_catalogue_fresh3"
    module = importlib.import_module(f"archlab.diagnose.{bench.FRESH['fresh3']}")
    assert module.run_fresh3 is run_fresh3 and module.SETUPS is SETUPS
    for label, name in bench.FRESH.items():   # the same contract for every fresh suite
        other = importlib.import_module(f"archlab.diagnose.{name}")
        assert callable(getattr(other, f"run_{label}")) and other.SETUPS
