"""Integrity of the FIFTH fresh held-out fault suite (archlab.diagnose.fault_catalogue_fresh5).

Only the catalogue is checked here, never the detectors' verdicts on it: the suite is judged
once, by ``benchmarks/fault_suite.py --fresh5``, so that no test tunes a rule to it. Every run
below has the monitor off. The checks are written once, in ``tests/fault_suite_integrity.py``
(listed there); this module describes the suite (:data:`SUITE`: its counts, data and knobs) and
holds the checks of its own data sets.
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
    stated_label_noise,
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
    knob_checks=(
        ("label_noise", stated_label_noise),
        ("sort", sorted_targets),
        ("unscaled", unscaled_inputs(5, 1)),
        ("target_unit", wider_targets(100)),
    ),
    example_input=token_input(TOKENS, KEY_VOCAB),
    archlab_inputs=scale_by_global_mean,
    first_batch=batch_nan_to_zero,
    copy_params=False,   # the one-step check as this suite wrote it: every set-up's parameters move
)
globals().update(integrity_tests(SUITE))
