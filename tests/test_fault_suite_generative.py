"""The generative part of the fault suite: its set-ups are well formed, and the faults the pair
checks exist for are found before training (the training-time faults and the healthy set-ups
run in benchmarks/fault_suite.py: minutes of CPU, too long for CI)."""

from __future__ import annotations

import pytest

from archlab.diagnose.faults_generative import PAIR_CHECK, run_setup, setups
from archlab.diagnose.generative import GENERATIVE_DETECTORS

SETUPS = setups()


def test_setups_are_well_formed():
    names = [s.name for s in SETUPS]
    assert len(names) == len(set(names))
    assert sum(s.healthy for s in SETUPS) >= 4 and sum(not s.healthy for s in SETUPS) >= 8
    assert any(s.held_out and s.healthy for s in SETUPS) and any(s.held_out and not s.healthy for s in SETUPS)
    for s in SETUPS:
        for name in s.expected:
            assert name == PAIR_CHECK or name in GENERATIVE_DETECTORS, (s.name, name)
    # the faults are all present
    problems = " ".join(s.problem for s in SETUPS)
    for words in ("10x", "ReLU", "sigmoid", "no normalisation", "KL weight 0", "KL weight 100"):
        assert words in problems


@pytest.mark.parametrize("setup", [s for s in SETUPS if PAIR_CHECK in s.expected], ids=lambda s: s.name)
def test_pair_faults_are_found_before_training(setup, tmp_path):
    outcome = run_setup(setup, out=str(tmp_path), samples=120)
    assert outcome.found and outcome.fired == [PAIR_CHECK], outcome
    assert outcome.message
    assert not any(tmp_path.iterdir())   # refused before a run folder was made
