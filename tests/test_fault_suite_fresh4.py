"""Integrity of the FOURTH fresh held-out fault suite (archlab.diagnose.fault_catalogue_fresh4).

Only the catalogue is checked here, never the detectors' verdicts on it: the suite is judged
once, by ``benchmarks/fault_suite.py --fresh4``, so that no test tunes a rule to it. Every run
below has the monitor off.

* size and coverage: >= 40 faults and >= 15 healthy set-ups (5 per user path), the three user
  paths among both, the four data kinds the issue names; no name reused from the other
  catalogues; plain loops both with and without ``val_size``; none of the earlier suites' data;
* every fault is its healthy twin (same path and data) with ONE change (the model, one
  training setting or one data knob), has a taxonomy source, and expected / plausible causes
  that are names of the detector registry (``archlab.diagnose.DETECTORS``), ``data_error``, or
  NO_DETECTOR (a fault no documented detector means: counted as a miss);
* every fault was recorded to hurt (3 seeds, monitor off) and every healthy set-up to learn;
* a data fault really changes the training data, and leaves validation alone unless it is a
  property of the data (units, scaling); a model fault really builds a different network;
* each user path trains 4 steps and returns the suite's Result;
* the benchmark's ``--fresh4`` goes through the same code path as the other fresh suites.

The checks are written once, in ``tests/fault_suite_integrity.py``; this module describes the
suite (:data:`SUITE`) and holds the checks of its own data sets.
"""

from __future__ import annotations

import pytest
import torch

from archlab.diagnose.fault_catalogue_fresh4 import TOKENS, raw

pytest.register_assert_rewrite("fault_suite_integrity")   # its asserts explained as here

from fault_suite_integrity import (  # noqa: E402
    Suite,
    integrity_tests,
    sorted_targets_unlike_twin,
    token_input,
    unscaled_inputs,
)


def data_checks():
    x, y = raw("mnist14")
    assert x.shape == (5000, 1, 14, 14) and set(y.unique().tolist()) == set(range(10))
    assert 200 < float(x.max()) <= 255 and float(x.min()) == 0   # raw pixels, pooled
    x, y = raw("tokens")
    assert x.dtype == torch.long and int(x.max()) == 4 and int(x.min()) == 0
    counts = torch.stack([(x == v).sum(1) for v in range(5)], 1)
    assert torch.equal(counts.argmax(1), y)   # the label is the most frequent token


SUITE = Suite(   # the first of these suites: some checks came later (the flags below)
    number=4,
    min_faults=40,
    runner_data=("moons", "wine", "blobs20"),
    scale_keys=frozenset({"unscaled", "raw_targets"}),   # properties of the data: validation too
    data_checks=data_checks,
    knob_checks=(("sort", sorted_targets_unlike_twin), ("unscaled", unscaled_inputs(10, 5))),
    example_input=token_input(TOKENS, 5),
    healthy_exact=False,
    path_shares=False,
    counts_documented=False,
    hurt_covers_all=False,
    setup_step=False,
    bench_doc=False,
)
globals().update(integrity_tests(SUITE))
