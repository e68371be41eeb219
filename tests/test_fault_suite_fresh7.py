"""Integrity of the SEVENTH fresh held-out fault suite (archlab.diagnose.fault_catalogue_fresh7).

Only the catalogue is checked here, never the detectors' verdicts on it: the suite is judged
once, by ``benchmarks/fault_suite.py --fresh7``, so that no test tunes a rule to it. Every run
below has the monitor off.

* size and coverage: >= 40 faults (65 recorded) and 15 healthy set-ups (5 per user path),
  each path holding roughly a third of the faults; the three user paths and the four data kinds the issue names
  among both, as the module docstring counts them; no name reused from the other catalogues;
  plain loops both with and without ``val_size``; none of the earlier fresh suites' data sets;
* every fault is its healthy twin (same path and data) with ONE change (the model, one
  training setting or one data knob), has a taxonomy source, and expected / plausible causes
  that are names of the detector registry (``archlab.diagnose.DETECTORS``), ``data_error``, or
  NO_DETECTOR (a fault no documented detector means: counted as a miss);
* every fault was recorded to hurt (3 seeds, monitor off, margin > 0.02) and every healthy
  set-up to learn; candidates left out were measured and did not hurt;
* a data fault really changes the training data, and leaves validation alone unless it is a
  property of the data (units, scaling); a model fault really builds a different network;
* every set-up builds and takes one optimiser step (the archlab designs through
  ``archlab.build``); each user path trains 4 steps and returns the suite's Result;
* the benchmark's ``--fresh7`` goes through the same code path as the other fresh suites.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import re
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import archlab
from archlab.diagnose import DETECTORS
from archlab.diagnose import fault_catalogue_fresh7 as suite
from archlab.diagnose import fault_suite_runner as runner
from archlab.diagnose.fault_catalogue import SETUPS as MAIN_SETUPS
from archlab.diagnose.fault_catalogue_fresh import SETUPS as FRESH1_SETUPS
from archlab.diagnose.fault_catalogue_fresh2 import CANDIDATES as FRESH2_CANDIDATES
from archlab.diagnose.fault_catalogue_fresh2 import HEALTHY as FRESH2_HEALTHY
from archlab.diagnose.fault_catalogue_fresh3 import CANDIDATES as FRESH3_CANDIDATES
from archlab.diagnose.fault_catalogue_fresh3 import DATA_KINDS as FRESH3_DATA
from archlab.diagnose.fault_catalogue_fresh3 import HEALTHY as FRESH3_HEALTHY
from archlab.diagnose.fault_catalogue_fresh4 import CANDIDATES as FRESH4_CANDIDATES
from archlab.diagnose.fault_catalogue_fresh4 import DATA_KINDS as FRESH4_DATA
from archlab.diagnose.fault_catalogue_fresh4 import HEALTHY as FRESH4_HEALTHY
from archlab.diagnose.fault_catalogue_fresh5 import CANDIDATES as FRESH5_CANDIDATES
from archlab.diagnose.fault_catalogue_fresh5 import DATA_KINDS as FRESH5_DATA
from archlab.diagnose.fault_catalogue_fresh5 import HEALTHY as FRESH5_HEALTHY
from archlab.diagnose.fault_catalogue_fresh6 import CANDIDATES as FRESH6_CANDIDATES
from archlab.diagnose.fault_catalogue_fresh6 import DATA_KINDS as FRESH6_DATA
from archlab.diagnose.fault_catalogue_fresh6 import HEALTHY as FRESH6_HEALTHY
from archlab.diagnose.fault_catalogue_fresh7 import (
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
    PIXEL_MAX,
    SETUPS,
    archlab_data,
    hurt,
    prepare,
    raw,
    run_fresh7,
)
from archlab.diagnose.faults import Result

NAMES = set(DETECTORS) | {"data_error"}
TWINS = {s.name: s for s in HEALTHY}
SCALE_KEYS = {"unscaled", "raw_targets"}   # properties of the data: validation too


def test_size_and_coverage():
    assert len(FAULTS) >= 40 and len(HEALTHY) == 15
    names = [s.name for s in CANDIDATES + HEALTHY]
    assert len(set(names)) == len(names)
    others = {s.name for s in MAIN_SETUPS + FRESH1_SETUPS + FRESH2_CANDIDATES + FRESH2_HEALTHY
              + FRESH3_CANDIDATES + FRESH3_HEALTHY + FRESH4_CANDIDATES + FRESH4_HEALTHY
              + FRESH5_CANDIDATES + FRESH5_HEALTHY + FRESH6_CANDIDATES + FRESH6_HEALTHY}
    assert not set(names) & others   # nothing reused
    assert not set(DATA_KINDS) & (set(FRESH3_DATA) | set(FRESH4_DATA) | set(FRESH5_DATA)
                                  | set(FRESH6_DATA))
    assert {s.path for s in FAULTS} == set(PATHS) == {s.path for s in HEALTHY}
    assert all(sum(s.path == p for s in HEALTHY) == 5 for p in PATHS)
    for p in PATHS:   # roughly a third of the faults on each path
        assert 0.25 <= sum(s.path == p for s in FAULTS) / len(FAULTS) <= 0.42, p
    wanted = {"images", "tabular regression", "sequences", "synthetic"}
    for p in PATHS:   # every path meets several kinds of data
        assert len({DATA_KINDS[s.data] for s in FAULTS if s.path == p}) >= 3, p
    assert wanted <= {DATA_KINDS[s.data] for s in FAULTS}
    assert wanted <= {DATA_KINDS[s.data] for s in HEALTHY}
    assert [s.name for s in SETUPS] == [s.name for s in FAULTS + HEALTHY]
    assert NO_DETECTOR not in NAMES
    plain = [s for s in HEALTHY if s.path == "plain"]   # users differ: some pass val_size
    assert {bool(s.train.get("val_size")) for s in plain} == {True, False}


def test_counts_are_as_documented():
    """The docstring's counts of faults per path and per data kind are the catalogue's."""
    doc = " ".join(suite.__doc__.split())
    m = re.search(r"(\d+) hurt and form :data:`FAULTS` \((\d+) on the Lightning path, (\d+) plain "
                  r"loop, (\d+) ``archlab.train``\)", doc)
    assert m, "the docstring states the faults per path"
    assert [int(v) for v in m.groups()] == [len(FAULTS)] + [sum(s.path == p for s in FAULTS)
                                                             for p in PATHS]
    m = re.search(r"(\d+) candidate faults were measured", doc)
    assert m and int(m.group(1)) == len(CANDIDATES)
    for kind in sorted(set(DATA_KINDS.values())):
        n = sum(DATA_KINDS[s.data] == kind for s in FAULTS)
        assert re.search(rf"{kind} {n}\b", doc), (kind, n)


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
    assert set(HURT) == {s.name for s in CANDIDATES + HEALTHY}


def test_healthy_twins_learn():
    """Each healthy set-up was recorded well above chance (so a fault's drop means something):
    accuracy above chance + 0.25 on every seed, R^2 above 0.25."""
    for s in HEALTHY:
        assert all(math.isfinite(v) for v in HURT[s.name]), s.name
        chance = 0.0 if s.task == "regression" else 1 / CLASSES[s.data]
        assert min(HURT[s.name]) > chance + 0.25, (s.name, HURT[s.name])


def test_data_sets_are_what_they_say():
    """The generated and shipped data: shapes, label ranges, finite values, no download."""
    x, y = raw("swatches")
    assert x.shape == (1200, 3, 12, 12) and set(y.unique().tolist()) == {0, 1, 2, 3}
    assert float(x.min()) >= 0 and float(x.max()) <= PIXEL_MAX and float(x.max()) > 200
    x, y = raw("beats")
    assert x.shape == (1200, 1, 96) and set(y.unique().tolist()) == {0, 1, 2}
    assert 480 < float(x.median()) < 560   # ADC counts on a 512 baseline
    x, y = raw("oscillators")
    assert x.shape == (1500, 1, 64) and 8 <= float(y.min()) and float(y.max()) <= 60
    assert 990 < float(x.mean()) < 1010   # um on a 1,000 um offset
    x, y = raw("piston")
    assert x.shape == (1500, 7) and float(x.max()) > 9e4 and 100 < float(y.mean()) < 2000  # ms
    x, y = raw("otl")
    assert x.shape == (1500, 6) and 2000 < float(y.mean()) < 10000   # mV
    x, y = raw("sinefront")
    assert x.shape == (1500, 6) and torch.equal(y, (x[:, 1] > 1.2 * torch.sin(2 * x[:, 0])).long())
    x, y = raw("pinwheel")
    assert x.shape == (1500, 2) and int(torch.bincount(y).min()) > 250
    x, y = raw("pumps")
    assert x.shape == (1800, 7) and int(torch.bincount(y).min()) > 500
    assert float(x[:, 1].max()) > 4e4   # running hours, raw
    for name in DATA_KINDS:
        x, y = raw(name)
        assert torch.isfinite(x.float()).all() and len(x) == len(y), name
        if name in CLASSES:
            assert int(y.max()) + 1 == CLASSES[name], name
        else:
            assert y.shape == (len(x), 1) and y.dtype == torch.float32, name


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
    if a.dtype == torch.long or b.dtype == torch.long:
        return a.shape == b.shape and torch.equal(a, b)
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
    if s.prep.get("label_noise"):   # the stated share of labels is wrong, every one of them
        wrong = float((ytr != tytr).float().mean())
        assert abs(wrong - s.prep["label_noise"]) < 0.01, wrong
    if s.prep.get("sort"):
        flat = ytr.reshape(len(ytr), -1)[:, 0]
        assert torch.all(flat[1:] >= flat[:-1])
    if s.prep.get("unscaled"):
        assert float(xtr.abs().max()) > 5 * float(txtr.abs().max()) or float(xtr.mean()) > 1
    if s.prep.get("raw_targets"):
        assert float(ytr.std()) > 10 * float(tytr.std())


def _example_input(s, shape):
    return torch.randn(8, *shape)


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
    x = _example_input(s, shape)
    with torch.no_grad():
        a.eval(), b.eval()
        ya, yb = a(x), b(x)
    # a different function, or a different structure (dropout only acts in training mode)
    assert ya.shape != yb.shape or not torch.allclose(ya, yb) or repr(a) != repr(b), s.name


@pytest.mark.parametrize("s", SETUPS, ids=lambda s: s.name)
def test_every_setup_builds_and_takes_one_step(s):
    """The set-up's network (the design built by archlab on the archlab path) takes one
    optimiser step on its own training data; the loss is a number (NaN faults aside)."""
    xtr, ytr, _, _ = _data(s)
    n_out = 1 if s.task == "regression" else CLASSES[s.data]
    shape = tuple(xtr.shape[1:])
    if s.path == "archlab":
        torch.manual_seed(0)
        net = archlab.build(archlab.load(s.model(shape, n_out)))
        dims = [0] + list(range(2, xtr.dim()))   # as archlab scales: per column / channel
        xtr = (xtr - xtr.nan_to_num(0.0).mean(dims, keepdim=True)) / xtr.nan_to_num(0.0).std(
            dims, keepdim=True).clamp_min(1e-6)
        if s.task == "regression":
            ytr = (ytr - ytr.mean()) / ytr.std()
        params = list(net.parameters())
    else:
        net = suite.RUNNER.build(s, shape, 0)
        params = runner.params(s.train, net)
    opt = runner.optimizer(s.train, params)
    x, y = xtr[:16].nan_to_num(0.0, posinf=0.0), ytr[:16]
    out = net(x)
    assert out.shape[0] == 16
    lossf = runner.loss(s)
    loss = lossf(net, out, y.nan_to_num(0.0) if y.is_floating_point() else y)
    opt.zero_grad()
    loss.backward()
    before = [p.detach().clone() for p in params]
    opt.step()
    assert math.isfinite(loss.item()), s.name
    moved = any(not torch.equal(a, p) for a, p in zip(before, params, strict=True))
    # the optimizer over a copy of the model: its parameters get no gradient (the fault)
    assert moved is (s.train.get("bug") != "copy_params"), s.name


@pytest.mark.parametrize("path", PATHS)
def test_runner_trains_and_returns_a_result(path):
    s = next(s for s in HEALTHY if s.path == path and s.data in ("pinwheel", "sinefront", "pumps"))
    r = run_fresh7(replace(s, train={**s.train, "batch": 32}), seed=0, monitor=False, steps=4)
    assert isinstance(r, Result) and r.fired == {} and r.steps >= 4
    assert math.isfinite(r.score) and 0.0 <= r.score <= 1.0


def test_benchmark_runs_fresh7_through_the_shared_path():
    """``--fresh7`` names this module and its ``run_fresh7``, as ``--fresh6`` names its own."""
    path = Path(__file__).parents[1] / "benchmarks" / "fault_suite.py"
    spec = importlib.util.spec_from_file_location("fault_suite_bench", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.FRESH["fresh7"] == "fault_catalogue_fresh7"
    module = importlib.import_module(f"archlab.diagnose.{bench.FRESH['fresh7']}")
    assert module.run_fresh7 is run_fresh7 and module.SETUPS is SETUPS
    assert "--fresh7" in bench.__doc__
    for label, name in bench.FRESH.items():   # the same contract for every fresh suite
        other = importlib.import_module(f"archlab.diagnose.{name}")
        assert callable(getattr(other, f"run_{label}")) and other.SETUPS
