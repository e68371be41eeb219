"""Integrity of the FOURTH fresh held-out fault suite (archlab.diagnose.fault_catalogue_fresh4).

Only the catalogue is checked here, never the detectors' verdicts on it: the suite is judged
once, by ``benchmarks/fault_suite.py --fresh4``, so that no test tunes a rule to it. Every run
below has the monitor off. The checks are written once, in ``tests/fault_suite_integrity.py``
(listed there); this module describes the suite (:data:`SUITE`: its counts, data and knobs) and
holds the checks of its own data sets.
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
    stated_label_noise,
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


SUITE = Suite(   # an early suite: some checks came later (the flags below)
    number=4,
    min_faults=40,
    runner_data=("moons", "wine", "blobs20"),
    scale_keys=frozenset({"unscaled", "raw_targets"}),   # properties of the data: validation too
    data_checks=data_checks,
    knob_checks=(
        ("label_noise", stated_label_noise),
        ("sort", sorted_targets_unlike_twin),
        ("unscaled", unscaled_inputs(10, 5)),
    ),
    example_input=token_input(TOKENS, 5),
    healthy_exact=False,
    path_shares=False,
    counts_documented=False,
    hurt_covers_all=False,
    setup_step=False,
    bench_doc=False,
)
globals().update(integrity_tests(SUITE))
