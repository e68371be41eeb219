"""The generative part of the fault suite in CI: its set-ups are well formed, the faults the pair
checks exist for are refused before training, and the reduced form of the trained set-ups
(REDUCED_SAMPLES images, batch 16, narrow networks, a few hundred steps at most) finds every
development fault and raises no alarm on any healthy set-up of either half. The full form (1,200
images, several seeds, held-out faults scored apart) is benchmarks/fault_suite.py --generative."""

from __future__ import annotations

import pytest

from archlab.diagnose.detectors import DETECTORS
from archlab.diagnose.faults_generative import PAIR_CHECK, run_setup, setups
from archlab.diagnose.generative import GENERATIVE_DETECTORS

SETUPS = setups()
TRAINED_DEV_FAULTS = [s for s in SETUPS if not s.healthy and not s.held_out and PAIR_CHECK not in s.expected]
HEALTHY = [s for s in SETUPS if s.healthy]


def test_setups_are_well_formed():
    names = [s.name for s in SETUPS]
    assert len(names) == len(set(names))
    assert sum(s.healthy for s in SETUPS) >= 4 and sum(not s.healthy for s in SETUPS) >= 8
    assert any(s.held_out and s.healthy for s in SETUPS) and any(s.held_out and not s.healthy for s in SETUPS)
    for s in SETUPS:
        for name in s.expected:
            assert name == PAIR_CHECK or name in GENERATIVE_DETECTORS or name in DETECTORS, (s.name, name)
    # the faults are all present, and faults for the detectors that had never fired
    problems = " ".join(s.problem for s in SETUPS)
    for words in ("10x", "ReLU", "sigmoid", "no normalisation", "KL weight 0", "KL weight 100"):
        assert words in problems
    expected = {name for s in SETUPS for name in s.expected}
    assert {"mode_collapse", "gan_oscillation", "vanishing_gradients"} <= expected


@pytest.mark.parametrize("setup", [s for s in SETUPS if PAIR_CHECK in s.expected], ids=lambda s: s.name)
def test_pair_faults_are_found_before_training(setup, tmp_path):
    outcome = run_setup(setup, out=str(tmp_path), samples=120)
    assert outcome.found and outcome.fired == [PAIR_CHECK], outcome
    assert outcome.message
    assert not any(tmp_path.iterdir())   # refused before a run folder was made


@pytest.mark.parametrize("setup", TRAINED_DEV_FAULTS, ids=lambda s: s.name)
def test_trained_development_fault_is_found_in_the_reduced_form(setup, tmp_path):
    outcome = run_setup(setup, out=str(tmp_path), reduced=True)
    assert outcome.found, outcome


@pytest.mark.parametrize("setup", HEALTHY, ids=lambda s: s.name)
def test_healthy_setup_raises_no_alarm_in_the_reduced_form(setup, tmp_path):
    outcome = run_setup(setup, out=str(tmp_path), reduced=True)
    assert outcome.fired == [], outcome
