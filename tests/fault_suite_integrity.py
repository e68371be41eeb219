"""The integrity checks of the blind fault suites (fresh3 onwards), written once.

Each ``tests/test_fault_suite_freshN.py`` describes its suite with a :class:`Suite` and takes
the test functions from :func:`integrity_tests`. Only the catalogue is checked, never the
detectors' verdicts on it (a suite is judged once, by ``benchmarks/fault_suite.py --freshN``, so
that no test tunes a rule to it), and every run has the monitor off. The checks:

* size and coverage: at least ``min_faults`` faults and 15 healthy set-ups (5 per user path),
  each path holding roughly a third of the faults; the three user paths and the four data
  kinds the issue names among both, as the module docstring counts them; no name reused from
  the other catalogues; plain loops both with and without ``val_size``; none of the earlier
  fresh suites' data sets;
* every fault is its healthy twin (same path and data) with ONE change (the model, one
  training setting or one data knob), has a taxonomy source, and expected / plausible causes
  that are names of the detector registry (``archlab.diagnose.DETECTORS``), ``data_error``, or
  NO_DETECTOR (a fault no documented detector means: counted as a miss);
* every fault was recorded to hurt (3 seeds, monitor off, margin > HURT_MARGIN) and every
  healthy set-up to learn; candidates left out were measured and did not hurt;
* the suite's data sets are what they say (its own ``data_checks``), finite, with labels in range;
* a data fault really changes the training data, and leaves validation alone unless it is a
  property of the data (``scale_keys``: units, scaling), and each knob does what it says
  (``knob_checks``); a model fault really builds a different network;
* every set-up builds and takes one optimiser step (the archlab designs through
  ``archlab.build``); each user path trains 4 steps and returns the suite's Result;
* the benchmark's ``--freshN`` goes through the same code path as the other fresh suites.

The checks and their messages are those the suites' test modules carried, one copy each, before
they were gathered here; where a suite checked less or otherwise (fresh3 to fresh5 came first),
a field of :class:`Suite` says so; its default is what fresh6 onwards check.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType

import pytest
import torch

import archlab
from archlab.diagnose import DETECTORS
from archlab.diagnose import fault_suite_runner as runner
from archlab.diagnose.faults import Result

NAMES = set(DETECTORS) | {"data_error"}
WANTED_KINDS = {"images", "tabular regression", "sequences", "synthetic"}

# A knob check reads (s, xtr, ytr, txtr, tytr): the fault's training split and its twin's.
KnobCheck = Callable[..., None]


def catalogue(n: int) -> ModuleType:
    return importlib.import_module(f"archlab.diagnose.fault_catalogue_fresh{n}")


# --- checks of one data knob, shared by the suites that name them --------------------------

def stated_label_noise(s, xtr, ytr, txtr, tytr):
    """The stated share of labels is wrong, every one of them."""
    wrong = float((ytr != tytr).float().mean())
    assert abs(wrong - s.prep["label_noise"]) < 0.01, wrong


def sorted_targets(s, xtr, ytr, txtr, tytr):
    flat = ytr.reshape(len(ytr), -1)[:, 0]
    assert torch.all(flat[1:] >= flat[:-1])


def sorted_targets_unlike_twin(s, xtr, ytr, txtr, tytr):
    assert torch.all(ytr[1:] >= ytr[:-1]) and not torch.all(tytr[1:] >= tytr[:-1])


def unscaled_inputs(factor: float, mean: float) -> KnobCheck:
    """Inputs left in their units: ``factor`` x the twin's largest value, or a mean above ``mean``."""
    def check(s, xtr, ytr, txtr, tytr):
        assert float(xtr.abs().max()) > factor * float(txtr.abs().max()) or float(xtr.mean()) > mean
    return check


def wider_targets(factor: float) -> KnobCheck:
    """Targets in raw units: their spread ``factor`` x the twin's."""
    def check(s, xtr, ytr, txtr, tytr):
        assert float(ytr.std()) > factor * float(tytr.std())
    return check


# --- how the one-step test feeds an archlab design ------------------------------------------

def scale_by_global_mean(xtr):
    """fresh5's: centred on the overall mean, divided by 100 (token inputs left alone)."""
    return (xtr - xtr.nanmean()) / 100.0 if xtr.is_floating_point() else xtr


def scale_per_channel(xtr):
    dims = [0] + list(range(2, xtr.dim()))   # as archlab scales: per column / channel
    return (xtr - xtr.nan_to_num(0.0).mean(dims, keepdim=True)) / xtr.nan_to_num(0.0).std(
        dims, keepdim=True).clamp_min(1e-6)


def batch_nan_to_zero(xtr):
    """fresh5's first batch: NaN to 0 in float inputs, token inputs as they are."""
    return xtr[:16].nan_to_num(0.0) if xtr.is_floating_point() else xtr[:16]


def batch_nonfinite_to_zero(xtr):
    return xtr[:16].nan_to_num(0.0, posinf=0.0)


def random_input(s, shape):
    return torch.randn(8, *shape)


def token_input(tokens, vocab: int):
    """Random token ids for the data sets in ``tokens``, random floats for the others."""
    def example(s, shape):
        if s.data in tokens:
            return torch.randint(0, vocab, (8, *shape))
        return torch.randn(8, *shape)
    return example


@dataclass(frozen=True)
class Suite:
    number: int                          # archlab.diagnose.fault_catalogue_fresh<number>
    min_faults: int                      # at least this many faults
    runner_data: tuple[str, ...]         # a healthy set-up per path on one of these trains 4 steps
    scale_keys: frozenset[str]           # knobs that are properties of the data: validation too
    knob_checks: tuple[tuple[str, KnobCheck], ...] = ()   # (knob, check), in this order
    data_checks: Callable[[], None] | None = None   # its own data sets (None: no such test)
    example_input: Callable = random_input
    # a check of a data fault before the shared ones; True ends the test (fresh8: val_unscaled)
    data_fault_first: Callable | None = None
    # a model fault with the same function and layers as its twin: check (s, a, b, x) instead
    same_function: Callable | None = None
    healthy_exact: bool = True           # exactly 5 healthy set-ups per path (else at least)
    path_shares: bool = True             # each path holds roughly a third of the faults
    path_kinds: bool = True              # each path meets at least 3 kinds of data
    counts_documented: bool = True       # the docstring's counts are the catalogue's
    hurt_covers_all: bool = True         # HURT holds exactly the candidates and healthy set-ups
    setup_step: bool = True              # every set-up builds and takes one optimiser step
    archlab_inputs: Callable = scale_per_channel
    first_batch: Callable = batch_nonfinite_to_zero
    copy_params: bool = True             # a set-up's bug "copy_params" leaves its parameters unmoved
    bench_doc: bool = True               # the benchmark's docstring names --freshN


def integrity_tests(d: Suite) -> dict[str, Callable]:
    """The suite's test functions, by the names its module gives them."""
    suite = catalogue(d.number)
    label = f"fresh{d.number}"
    CANDIDATES, HEALTHY, FAULTS, SETUPS = suite.CANDIDATES, suite.HEALTHY, suite.FAULTS, suite.SETUPS
    CLASSES, DATA_KINDS, PATHS, HURT = suite.CLASSES, suite.DATA_KINDS, suite.PATHS, suite.HURT
    NO_DETECTOR, NOT_HURTING, HURT_MARGIN, hurt = (suite.NO_DETECTOR, suite.NOT_HURTING,
                                                   suite.HURT_MARGIN, suite.hurt)
    TWINS = {s.name: s for s in HEALTHY}
    run = getattr(suite, f"run_{label}")
    tests: dict[str, Callable] = {}

    def test(f):
        tests[f.__name__] = f
        return f

    @test
    def test_size_and_coverage():
        from archlab.diagnose.fault_catalogue import SETUPS as MAIN_SETUPS
        from archlab.diagnose.fault_catalogue_fresh import SETUPS as FRESH1_SETUPS
        earlier = [catalogue(k) for k in range(2, d.number)]
        assert len(FAULTS) >= d.min_faults and (
            len(HEALTHY) == 15 if d.healthy_exact else len(HEALTHY) >= 15)
        names = [s.name for s in CANDIDATES + HEALTHY]
        assert len(set(names)) == len(names)
        others = {s.name for s in MAIN_SETUPS + FRESH1_SETUPS}
        for m in earlier:
            others |= {s.name for s in m.CANDIDATES + m.HEALTHY}
        assert not set(names) & others   # nothing reused
        if earlier[1:]:   # DATA_KINDS from fresh3 on: none of theirs again
            other_data = set().union(*(set(m.DATA_KINDS) for m in earlier[1:]))
            assert not set(DATA_KINDS) & other_data
        assert {s.path for s in FAULTS} == set(PATHS) == {s.path for s in HEALTHY}
        if d.healthy_exact:
            assert all(sum(s.path == p for s in HEALTHY) == 5 for p in PATHS)
        else:
            assert all(sum(s.path == p for s in HEALTHY) >= 5 for p in PATHS)
        if d.path_shares:
            for p in PATHS:   # roughly a third of the faults on each path
                assert 0.25 <= sum(s.path == p for s in FAULTS) / len(FAULTS) <= 0.42, p
        if d.path_kinds:
            for p in PATHS:   # every path meets several kinds of data
                assert len({DATA_KINDS[s.data] for s in FAULTS if s.path == p}) >= 3, p
        assert WANTED_KINDS <= {DATA_KINDS[s.data] for s in FAULTS}
        assert WANTED_KINDS <= {DATA_KINDS[s.data] for s in HEALTHY}
        assert [s.name for s in SETUPS] == [s.name for s in FAULTS + HEALTHY]
        assert NO_DETECTOR not in NAMES
        plain = [s for s in HEALTHY if s.path == "plain"]   # users differ: some pass val_size
        assert {bool(s.train.get("val_size")) for s in plain} == {True, False}

    if d.counts_documented:
        @test
        def test_counts_are_as_documented():
            """The docstring's counts of faults per path and per data kind are the catalogue's."""
            doc = " ".join(suite.__doc__.split())
            m = re.search(r"(\d+) hurt and form :data:`FAULTS` \((\d+) on the Lightning path, "
                          r"(\d+) plain loop, (\d+) ``archlab.train``\)", doc)
            assert m, "the docstring states the faults per path"
            assert [int(v) for v in m.groups()] == [len(FAULTS)] + [
                sum(s.path == p for s in FAULTS) for p in PATHS]
            m = re.search(r"(\d+) candidate faults were measured", doc)
            assert m and int(m.group(1)) == len(CANDIDATES)
            for kind in sorted(set(DATA_KINDS.values())):
                n = sum(DATA_KINDS[s.data] == kind for s in FAULTS)
                assert re.search(rf"{kind} {n}\b", doc), (kind, n)

    @test
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

    @test
    @pytest.mark.parametrize("s", FAULTS, ids=lambda s: s.name)
    def test_fault_was_recorded_to_hurt(s):
        assert len(HURT[s.name]) == 3 and len(HURT[s.twin]) == 3
        if s.expected != ("data_error",):   # refused before training: hurts by definition
            assert hurt(s.name) > HURT_MARGIN, (
                f"{s.name}: {HURT[s.name]} vs twin {HURT[s.twin]}")

    @test
    def test_candidates_left_out_were_measured_and_did_not_hurt():
        for name, why in NOT_HURTING.items():
            assert name in HURT and why, name
            assert hurt(name) <= HURT_MARGIN, name
            assert name not in {s.name for s in FAULTS}
        assert {s.name for s in CANDIDATES} == {s.name for s in FAULTS} | set(NOT_HURTING)
        if d.hurt_covers_all:
            assert set(HURT) == {s.name for s in CANDIDATES + HEALTHY}

    @test
    def test_healthy_twins_learn():
        """Each healthy set-up was recorded well above chance (so a fault's drop means
        something): accuracy above chance + 0.25 on every seed, R^2 above 0.25."""
        for s in HEALTHY:
            assert all(math.isfinite(v) for v in HURT[s.name]), s.name
            chance = 0.0 if s.task == "regression" else 1 / CLASSES[s.data]
            assert min(HURT[s.name]) > chance + 0.25, (s.name, HURT[s.name])

    if d.data_checks is not None:
        @test
        def test_data_sets_are_what_they_say():
            """The generated and shipped data: shapes, label ranges, units, finite values, no
            download (the suite's own data sets first)."""
            d.data_checks()
            for name in DATA_KINDS:
                x, y = suite.raw(name)
                assert torch.isfinite(x.float()).all() and len(x) == len(y), name
                if name in CLASSES:
                    assert int(y.max()) + 1 == CLASSES[name], name
                else:
                    assert y.shape == (len(x), 1) and y.dtype == torch.float32, name

    @functools.cache
    def data_of(name: str):
        s = next(s for s in CANDIDATES + HEALTHY if s.name == name)
        if s.path == "archlab":
            x, y = suite.archlab_data(s)
            return x, y, None, None
        return suite.prepare(s, 0)

    def data(s):
        return data_of(s.name)

    @test
    @pytest.mark.parametrize("s", [s for s in CANDIDATES if s.prep != TWINS[s.twin].prep],
                             ids=lambda s: s.name)
    def test_data_fault_changes_the_training_data(s):
        xtr, ytr, xva, yva = data(s)
        txtr, tytr, txva, tyva = data(TWINS[s.twin])
        if d.data_fault_first and d.data_fault_first(s, (xtr, ytr, xva, yva),
                                                     (txtr, tytr, txva, tyva)):
            return
        assert not (_same(xtr, txtr) and _same(ytr, tytr)), s.name
        keys = {k for k, _ in set(s.prep.items()) ^ set(TWINS[s.twin].prep.items())}
        if xva is not None and not keys & d.scale_keys:
            assert _same(xva, txva) and _same(yva, tyva), s.name   # validation left alone
        if s.prep.get("nan_targets"):
            assert torch.isnan(ytr).any() and not torch.isnan(tytr).any()
        if s.prep.get("nan_inputs"):
            assert torch.isnan(xtr).any() and not torch.isnan(txtr).any()
        if s.prep.get("minority") or s.prep.get("train_limit"):
            assert len(ytr) < len(tytr)
        for knob, check in d.knob_checks:
            if s.prep.get(knob):
                check(s, xtr, ytr, txtr, tytr)

    @test
    @pytest.mark.parametrize("s", [s for s in CANDIDATES if s.model is not TWINS[s.twin].model],
                             ids=lambda s: s.name)
    def test_model_fault_builds_a_different_network(s):
        twin = TWINS[s.twin]
        shape = tuple(data(twin)[0].shape[1:])
        n_out = 1 if s.task == "regression" else CLASSES[s.data]
        torch.manual_seed(0)
        a = s.model(shape, n_out)
        torch.manual_seed(0)
        b = twin.model(shape, n_out)
        if s.path == "archlab":   # designs are dicts
            assert a != b
            return
        x = d.example_input(s, shape)
        with torch.no_grad():
            a.eval(), b.eval()
            ya, yb = a(x), b(x)
        # a different function, or a different structure (dropout only acts in training mode)
        if d.same_function is None:
            assert ya.shape != yb.shape or not torch.allclose(ya, yb) or repr(a) != repr(b), s.name
        elif not (ya.shape != yb.shape or not torch.allclose(ya, yb) or repr(a) != repr(b)):
            d.same_function(s, a, b, x)   # the same function and layers: the suite's own check

    if d.setup_step:
        @test
        @pytest.mark.parametrize("s", SETUPS, ids=lambda s: s.name)
        def test_every_setup_builds_and_takes_one_step(s):
            """The set-up's network (the design built by archlab on the archlab path) takes one
            optimiser step on its own training data; the loss is a number (NaN faults aside)."""
            xtr, ytr, _, _ = data(s)
            n_out = 1 if s.task == "regression" else CLASSES[s.data]
            shape = tuple(xtr.shape[1:])
            if s.path == "archlab":
                torch.manual_seed(0)
                net = archlab.build(archlab.load(s.model(shape, n_out)))
                xtr = d.archlab_inputs(xtr)
                if s.task == "regression":
                    ytr = (ytr - ytr.mean()) / ytr.std()
                params = list(net.parameters())
            else:
                net = suite.RUNNER.build(s, shape, 0)
                params = runner.params(s.train, net)
            opt = runner.optimizer(s.train, params)
            x, y = d.first_batch(xtr), ytr[:16]
            out = net(x)
            assert out.shape[0] == 16
            lossf = runner.loss(s)
            loss = lossf(net, out, y.nan_to_num(0.0) if y.is_floating_point() else y)
            opt.zero_grad()
            loss.backward()
            before = [p.detach().clone() for p in params]
            opt.step()
            assert math.isfinite(loss.item()), s.name
            if not d.copy_params:
                assert any(not torch.equal(a, p) for a, p in zip(before, params, strict=True)), s.name
                return
            moved = any(not torch.equal(a, p) for a, p in zip(before, params, strict=True))
            # the optimizer over a copy of the model: its parameters get no gradient (the fault)
            assert moved is (s.train.get("bug") != "copy_params"), s.name

    @test
    @pytest.mark.parametrize("path", PATHS)
    def test_runner_trains_and_returns_a_result(path):
        s = next(s for s in HEALTHY if s.path == path and s.data in d.runner_data)
        r = run(replace(s, train={**s.train, "batch": 32}), seed=0, monitor=False, steps=4)
        assert isinstance(r, Result) and r.fired == {} and r.steps >= 4
        assert math.isfinite(r.score) and 0.0 <= r.score <= 1.0

    def test_benchmark_runs_through_the_shared_path():
        """``--freshN`` names this module and its ``run_freshN``, as the other suites do."""
        path = Path(__file__).parents[1] / "benchmarks" / "fault_suite.py"
        spec = importlib.util.spec_from_file_location("fault_suite_bench", path)
        bench = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(bench)
        assert bench.FRESH[label] == f"fault_catalogue_{label}"
        module = importlib.import_module(f"archlab.diagnose.{bench.FRESH[label]}")
        assert getattr(module, f"run_{label}") is run and module.SETUPS is SETUPS
        if d.bench_doc:
            assert f"--{label}" in bench.__doc__
        for other_label, name in bench.FRESH.items():   # the same contract for every fresh suite
            other = importlib.import_module(f"archlab.diagnose.{name}")
            assert callable(getattr(other, f"run_{other_label}")) and other.SETUPS

    tests[f"test_benchmark_runs_{label}_through_the_shared_path"] = (
        test_benchmark_runs_through_the_shared_path)
    return tests


def _same(a, b):   # the name the suites' modules gave it: pytest's explanations read the same
    if a.dtype == torch.long or b.dtype == torch.long:
        return a.shape == b.shape and torch.equal(a, b)
    return a.shape == b.shape and torch.equal(a.nan_to_num(7.0), b.nan_to_num(7.0))
