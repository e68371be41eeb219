"""Integrity of the FIFTH fresh held-out fault suite (archlab.diagnose.fault_catalogue_fresh5).

Only the catalogue is checked here, never the detectors' verdicts on it: the suite is judged
once, by ``benchmarks/fault_suite.py --fresh5``, so that no test tunes a rule to it. Every run
below has the monitor off.

* size and coverage: >= 55 faults and 15 healthy set-ups (5 per user path), each path holding
  roughly a third of the faults; the three user paths and the four data kinds the issue names
  among both, as the module docstring counts them; no name reused from the other catalogues;
  plain loops both with and without ``val_size``; none of the earlier fresh suites' data;
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
* the benchmark's ``--fresh5`` goes through the same code path as the other fresh suites.

The checks are written once, in ``tests/fault_suite_integrity.py``; this module describes the
suite (:data:`SUITE`) and holds the checks of its own data sets.
"""

from __future__ import annotations

import pytest
import torch

from archlab.diagnose.fault_catalogue_fresh5 import KEY_VOCAB, TOKENS, raw

pytest.register_assert_rewrite("fault_suite_integrity")   # its asserts explained as here

from fault_suite_integrity import (  # noqa: E402
    Suite,
    batch_nan_to_zero,
    integrity_tests,
    scale_by_global_mean,
    sorted_targets,
    token_input,
    unscaled_inputs,
    wider_targets,
)


def data_checks():
    x, y = raw("spots")
    assert x.shape == (1200, 1, 16, 16) and set(y.unique().tolist()) == {0, 1, 2, 3}
    assert float(x.min()) >= 0 and 200 < float(x.max()) <= 255   # raw 0-255 units
    x, y = raw("seqmnist")
    assert x.shape == (5000, 14, 14) and set(y.unique().tolist()) == set(range(10))
    x, y = raw("keys")
    assert x.dtype == torch.long and int(x.max()) == KEY_VOCAB - 1 and int(x.min()) == 0
    counts = torch.stack([(x == k).sum(1) for k in range(4)], 1)
    assert torch.equal(counts.argmax(1), y) and bool((counts.max(1).values == 2).all())
    x, y = raw("mackey")
    assert x.shape[1:] == (1, 32) and 0.2 < float(x.min()) and float(x.max()) < 1.6
    x, y = raw("iris")
    assert x.shape == (150, 4) and torch.equal(y, torch.sort(y).values)   # shipped in class order


SUITE = Suite(
    number=5,
    min_faults=55,
    runner_data=("circles", "hastie", "iris"),
    scale_keys=frozenset({"unscaled", "target_unit"}),   # properties of the data: validation too
    data_checks=data_checks,
    knob_checks=(("sort", sorted_targets), ("unscaled", unscaled_inputs(5, 1)),
                 ("target_unit", wider_targets(100))),
    example_input=token_input(TOKENS, KEY_VOCAB),
    archlab_inputs=scale_by_global_mean,
    first_batch=batch_nan_to_zero,
    copy_params=False,   # the one-step check as this suite wrote it: every set-up's parameters move
)
globals().update(integrity_tests(SUITE))
