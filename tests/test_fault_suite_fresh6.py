"""Integrity of the SIXTH fresh held-out fault suite (archlab.diagnose.fault_catalogue_fresh6).

Only the catalogue is checked here, never the detectors' verdicts on it: the suite is judged
once, by ``benchmarks/fault_suite.py --fresh6``, so that no test tunes a rule to it. Every run
below has the monitor off. The checks are written once, in ``tests/fault_suite_integrity.py``
(listed there); this module describes the suite (:data:`SUITE`: its counts, data and knobs) and
holds the checks of its own data sets and of its ``divide`` knob.
"""

from __future__ import annotations

import pytest
import torch

from archlab.diagnose.fault_catalogue_fresh6 import SENSOR_MAX, raw

pytest.register_assert_rewrite("fault_suite_integrity")   # its asserts explained as here

from fault_suite_integrity import (  # noqa: E402
    Suite,
    integrity_tests,
    sorted_targets,
    stated_label_noise,
    unscaled_inputs,
    wider_targets,
)


def data_checks():
    x, y = raw("gratings")
    assert x.shape == (1200, 1, 16, 16) and set(y.unique().tolist()) == {0, 1, 2, 3}
    assert float(x.min()) >= 0 and float(x.max()) <= SENSOR_MAX and 1500 < float(x.mean()) < 2500
    x, y = raw("chirps")
    assert x.shape == (1200, 1, 64) and set(y.unique().tolist()) == {0, 1, 2}
    assert 45 < float(x.mean()) < 55   # mV on a 50 mV baseline
    x, y = raw("adding")
    assert x.shape == (1500, 2, 20) and torch.equal(x[:, 1].sum(1), torch.full((1500,), 2.0))
    assert torch.allclose((x[:, 0] * x[:, 1]).sum(1, keepdim=True), y, atol=1e-5)
    x, y = raw("xor")
    assert x.shape == (1500, 8) and torch.equal(y, ((x[:, 0] > 0) ^ (x[:, 1] > 0)).long())
    x, y = raw("borehole")
    assert x.shape == (1500, 8) and float(x.max()) > 1e5 and float(x[:, 0].max()) <= 0.15
    x, y = raw("loans")
    counts = torch.bincount(y)
    assert x.shape == (2000, 6) and int(counts.min()) > 600   # tertiles: balanced


def divided_inputs(s, xtr, ytr, txtr, tytr):
    """Divided by a constant instead of scaled (255 for a 12-bit sensor): inputs stay above 1."""
    assert float(xtr.max()) <= SENSOR_MAX / s.prep["divide"] and float(xtr.mean()) > 1


SUITE = Suite(
    number=6,
    min_faults=55,
    runner_data=("quantiles", "xor", "loans"),
    scale_keys=frozenset({"unscaled", "divide", "raw_targets"}),   # properties of the data
    data_checks=data_checks,
    knob_checks=(
        ("label_noise", stated_label_noise),
        ("sort", sorted_targets),
        ("unscaled", unscaled_inputs(5, 1)),
        ("divide", divided_inputs),
        ("raw_targets", wider_targets(10)),
    ),
)
globals().update(integrity_tests(SUITE))
