"""Integrity of the THIRD fresh held-out fault suite (archlab.diagnose.fault_catalogue_fresh3).

Only the catalogue is checked here, never the detectors' verdicts on it: the suite is judged
once, by ``benchmarks/fault_suite.py --fresh3``, so that no test tunes a rule to it. Every run
below has the monitor off. The checks are written once, in ``tests/fault_suite_integrity.py``
(listed there); this module describes the suite (:data:`SUITE`: its counts, data and knobs).
"""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite("fault_suite_integrity")   # its asserts explained as here

from fault_suite_integrity import Suite, integrity_tests  # noqa: E402

SUITE = Suite(   # the first of these suites: the checks that came later are off (the flags below)
    number=3,
    min_faults=40,
    runner_data=("rings", "cancer", "spiral"),
    scale_keys=frozenset({"unscaled", "skip_column", "raw_targets"}),   # properties of the data
    healthy_exact=False,
    path_shares=False,
    path_kinds=False,
    counts_documented=False,
    hurt_covers_all=False,
    setup_step=False,
    bench_doc=False,
)
globals().update(integrity_tests(SUITE))
