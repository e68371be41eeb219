"""Integrity of the EIGHTH fresh held-out fault suite (archlab.diagnose.fault_catalogue_fresh8).

Only the catalogue is checked here, never the detectors' verdicts on it: the suite is judged
once, by ``benchmarks/fault_suite.py --fresh8``, so that no test tunes a rule to it. Every run
below has the monitor off.

* size and coverage: >= 40 faults (74 recorded) and 15 healthy set-ups (5 per user path),
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
* the benchmark's ``--fresh8`` goes through the same code path as the other fresh suites.
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
from archlab.diagnose import fault_catalogue_fresh8 as suite
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
from archlab.diagnose.fault_catalogue_fresh7 import CANDIDATES as FRESH7_CANDIDATES
from archlab.diagnose.fault_catalogue_fresh7 import DATA_KINDS as FRESH7_DATA
from archlab.diagnose.fault_catalogue_fresh7 import HEALTHY as FRESH7_HEALTHY
from archlab.diagnose.fault_catalogue_fresh8 import (
    CANDIDATES,
    CHURN_CODES,
    CHURN_LEVELS,
    CLASSES,
    DATA_KINDS,
    FAULTS,
    GRAVITY,
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
    raw,
    run_fresh8,
)
from archlab.diagnose.faults import Result

NAMES = set(DETECTORS) | {"data_error"}
TWINS = {s.name: s for s in HEALTHY}
SCALE_KEYS = {"unscaled", "raw_targets", "val_unscaled"}   # validation too


def test_size_and_coverage():
    assert len(FAULTS) >= 40 and len(HEALTHY) == 15
    names = [s.name for s in CANDIDATES + HEALTHY]
    assert len(set(names)) == len(names)
    others = {s.name for s in MAIN_SETUPS + FRESH1_SETUPS + FRESH2_CANDIDATES + FRESH2_HEALTHY
              + FRESH3_CANDIDATES + FRESH3_HEALTHY + FRESH4_CANDIDATES + FRESH4_HEALTHY
              + FRESH5_CANDIDATES + FRESH5_HEALTHY + FRESH6_CANDIDATES + FRESH6_HEALTHY
              + FRESH7_CANDIDATES + FRESH7_HEALTHY}
    assert not set(names) & others   # nothing reused
    assert not set(DATA_KINDS) & (set(FRESH3_DATA) | set(FRESH4_DATA) | set(FRESH5_DATA)
                                  | set(FRESH6_DATA) | set(FRESH7_DATA))
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
    """The generated data: shapes, label ranges, units, finite values, no download."""
    x, y = raw("galaxies")
    assert x.shape == (1200, 1, 20, 20) and set(y.unique().tolist()) == {0, 1, 2}
    assert torch.equal(x, x.round()) and float(x.min()) >= 0 and float(x.max()) > 500  # counts
    assert 70 < float(x.median()) < 160   # the sky
    x, y = raw("ising")
    assert x.shape == (1200, 1, 16, 16) and set(x.unique().tolist()) == {-1.0, 1.0}
    # the temperature bands order the nearest-neighbour agreement (periodic lattice)
    agree = (x * torch.roll(x, 1, 2) + x * torch.roll(x, 1, 3)).mean((1, 2, 3)) / 2
    means = [float(agree[y == c].mean()) for c in range(3)]
    assert means[0] > means[1] > means[2] > 0, means
    x, y = raw("wing")
    assert x.shape == (1500, 10) and float(x[:, 8].min()) >= 1700 and 100 < float(y.min())
    assert float(y.max()) < 600   # pounds
    x, y = raw("projectile")
    assert x.shape == (1500, 7) and float(y.min()) > 0 and float(y.max()) > 300   # metres
    v0, ang = x[:, 0], torch.deg2rad(x[:, 1])   # drag only shortens the vacuum range
    vacuum = v0 * torch.cos(ang) * (v0 * torch.sin(ang) + torch.sqrt((v0 * torch.sin(ang)) ** 2
                                                                      + 2 * GRAVITY * x[:, 6])) / GRAVITY
    assert bool((y[:, 0] <= vacuum * 1.05).all())
    x, y = raw("churn")
    assert x.shape == (1800, 8) and torch.bincount(y).tolist() == [600, 600, 600]
    for col, levels in zip(CHURN_CODES, CHURN_LEVELS, strict=True):
        assert set(x[:, col].unique().tolist()) == set(range(levels)), col
    assert float(x[:, 0].max()) > 70 and float(x[:, 1].max()) > 100   # months, dollars
    x, y = raw("activity")
    assert x.shape == (1200, 3, 64) and set(y.unique().tolist()) == {0, 1, 2, 3}
    norm = x.norm(dim=1).mean(1)   # gravity in m/s^2 on the idle windows
    assert abs(float(norm[y == 0].mean()) - GRAVITY) < 0.2
    x, y = raw("lotka")
    assert x.shape == (1500, 2, 48) and torch.equal(x, x.round()) and float(x.min()) >= 0
    assert 0.6 <= float(y.min()) and float(y.max()) <= 1.4
    x, y = raw("dartboard")
    assert x.shape == (2000, 2) and float(x.norm(dim=1).max()) <= 1.0
    assert int(torch.bincount(y).min()) > 400
    for name in DATA_KINDS:
        x, y = raw(name)
        assert torch.isfinite(x.float()).all() and len(x) == len(y), name
        if name in CLASSES:
            assert int(y.max()) + 1 == CLASSES[name], name
        else:
            assert y.shape == (len(x), 1) and y.dtype == torch.float32, name


def test_churn_codes_are_never_scaled():
    """The entity-embedding twin reads the category codes: scaling leaves them as codes."""
    s = next(s for s in HEALTHY if s.data == "churn" and s.path != "archlab")
    xtr, _, xva, _ = prepare(s, 0)
    for col, levels in zip(CHURN_CODES, CHURN_LEVELS, strict=True):
        assert set(xtr[:, col].unique().tolist()) <= set(range(levels)), col
        assert set(xva[:, col].unique().tolist()) <= set(range(levels)), col
    assert abs(float(xtr[:, 0].mean())) < 1e-4 and abs(float(xtr[:, 0].std()) - 1) < 1e-3


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
    if s.prep.get("val_unscaled"):   # the scaler applied to the training split only
        assert _same(xtr, txtr) and _same(ytr, tytr) and not _same(xva, txva), s.name
        x, _ = raw(s.data)
        assert float(xva.mean()) > 1 and float(xva.max()) <= float(x.max())
        return
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
    if ya.shape != yb.shape or not torch.allclose(ya, yb) or repr(a) != repr(b):
        return
    # the same function and layers: the gradients differ (a .detach() in the forward pass)
    a(x).sum().backward()
    b(x).sum().backward()
    ga = [p.grad for p in a.parameters()]
    gb = [p.grad for p in b.parameters()]
    assert any((u is None) != (v is None) or (u is not None and not torch.allclose(u, v))
               for u, v in zip(ga, gb, strict=True)), s.name
    assert any(u is None for u in ga)   # the layers before the detach get no gradient


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
    s = next(s for s in HEALTHY if s.path == path and s.data in ("dartboard", "churn"))
    r = run_fresh8(replace(s, train={**s.train, "batch": 32}), seed=0, monitor=False, steps=4)
    assert isinstance(r, Result) and r.fired == {} and r.steps >= 4
    assert math.isfinite(r.score) and 0.0 <= r.score <= 1.0


def test_benchmark_runs_fresh8_through_the_shared_path():
    """``--fresh8`` names this module and its ``run_fresh8``, as ``--fresh6`` names its own."""
    path = Path(__file__).parents[1] / "benchmarks" / "fault_suite.py"
    spec = importlib.util.spec_from_file_location("fault_suite_bench", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.FRESH["fresh8"] == "fault_catalogue_fresh8"
    module = importlib.import_module(f"archlab.diagnose.{bench.FRESH['fresh8']}")
    assert module.run_fresh8 is run_fresh8 and module.SETUPS is SETUPS
    assert "--fresh8" in bench.__doc__
    for label, name in bench.FRESH.items():   # the same contract for every fresh suite
        other = importlib.import_module(f"archlab.diagnose.{name}")
        assert callable(getattr(other, f"run_{label}")) and other.SETUPS
