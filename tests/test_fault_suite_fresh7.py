"""Integrity of the SEVENTH fresh held-out fault suite (archlab.diagnose.fault_catalogue_fresh7).

Only the catalogue is checked here, never the detectors' verdicts on it: the suite is judged
once, by ``benchmarks/fault_suite.py --fresh7``, so that no test tunes a rule to it. Every run
below has the monitor off. The checks are written once, in ``tests/fault_suite_integrity.py``
(listed there); this module describes the suite (:data:`SUITE`: its counts, data and knobs) and
holds the checks of its own data sets.
"""

from __future__ import annotations

import pytest
import torch

from archlab.diagnose.fault_catalogue_fresh7 import PIXEL_MAX, raw

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


SUITE = Suite(
    number=7,
    min_faults=40,
    runner_data=("pinwheel", "sinefront", "pumps"),
    scale_keys=frozenset({"unscaled", "raw_targets"}),   # properties of the data: validation too
    data_checks=data_checks,
    knob_checks=(
        ("label_noise", stated_label_noise),
        ("sort", sorted_targets),
        ("unscaled", unscaled_inputs(5, 1)),
        ("raw_targets", wider_targets(10)),
    ),
)
globals().update(integrity_tests(SUITE))
