"""The fault suite in its CI form: one seed, short runs. Every injected fault must be found by
one of its expected detectors, and no healthy set-up may raise any alarm. The full suite (3 seeds,
full length, overhead) is benchmarks/fault_suite.py."""

from __future__ import annotations

import pytest
import torch

from archlab.diagnose.faults import SETUPS, run_setup


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)   # tiny models: threads only contend on a shared CI machine
    yield
    torch.set_num_threads(before)


def test_suite_covers_the_issue():
    faults = [s for s in SETUPS if not s.healthy]
    healthy = [s for s in SETUPS if s.healthy]
    assert len(faults) >= 12 and len(healthy) >= 6
    assert {s.data for s in SETUPS} >= {"digits", "mnist5k", "synthetic"}
    assert len({s.name for s in SETUPS}) == len(SETUPS)


@pytest.mark.parametrize("setup", [s for s in SETUPS if not s.healthy], ids=lambda s: s.name)
def test_injected_fault_is_found(setup):
    r = run_setup(setup, seed=0, steps=setup.short_steps)
    assert r.detected, f"{setup.name}: expected one of {setup.expected}, fired {r.fired}"
    assert not r.false_alarms, f"{setup.name}: unrelated alarms {r.false_alarms}"


@pytest.mark.parametrize("setup", [s for s in SETUPS if s.healthy], ids=lambda s: s.name)
def test_healthy_setup_raises_no_alarm(setup):
    r = run_setup(setup, seed=0, steps=setup.short_steps)
    assert r.fired == {}, f"{setup.name}: false alarms {r.fired}"
    assert r.steps == setup.short_steps
