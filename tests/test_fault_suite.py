"""The fault suite in its CI form: one seed, short runs, both halves.

* every development fault must be found by one of its expected detectors, without an alarm
  naming another cause (a symptom attributed to a right cause is that cause's evidence, see
  docs/diagnostics.md "Causes and symptoms"; the scoring rule itself is tested on hand-made
  results);
* no healthy set-up, of either half, may raise any alarm (110 steps: past the loss rules'
  100-step wait).

The held-out faults are judged by benchmarks/fault_suite.py only (3 seeds, full length,
reported apart from the development half), so that no test tunes a rule to them.

The catalogue's shape (>= 40 faults, >= 15 healthy twins, three user paths, four data kinds,
a taxonomy source per fault) and the recorded development/held-out split are checked too."""

from __future__ import annotations

import pytest

from archlab.diagnose.fault_catalogue import FAULTS, HEALTHY, HELD_OUT, SETUPS, half, split
from archlab.diagnose.faults import DATA_KINDS, PATHS, Result, run_setup


def test_catalogue_covers_the_issue():
    assert len(FAULTS) >= 40 and len(HEALTHY) >= 15
    assert {s.path for s in FAULTS} == set(PATHS) and {s.path for s in HEALTHY} == set(PATHS)
    assert len({DATA_KINDS[s.data] for s in SETUPS}) >= 4
    assert len({s.name for s in SETUPS}) == len(SETUPS)
    healthy = {s.name: s for s in HEALTHY}
    for s in FAULTS:
        twin = healthy[s.twin]   # every fault is injected into a healthy twin ...
        assert (twin.path, twin.data) == (s.path, s.data), s.name
        assert any(tag in s.source for tag in ("H20", "AT", "DD")), s.name   # ... from a taxonomy


def test_split_is_the_recorded_one():
    """The halves were drawn once with random.Random(14); the rule still gives the record."""
    for group in (FAULTS, HEALTHY):
        dev, held = split([s.name for s in group])
        assert set(held) == {s.name for s in group if s.name in HELD_OUT}
        assert set(dev) == {s.name for s in group if half(s) == "dev"}
    assert sum(half(s) == "held-out" for s in FAULTS) >= 20


def test_scoring_follows_the_verdict_hierarchy():
    """Symptoms attributed to a right cause are evidence; a lone symptom is "cause unknown";
    an unattributed symptom beside a named cause, or any alarm on a healthy run, counts."""
    def result(fired, symptoms, expected=("frozen_layers",), plausible=()):
        r = Result("x", 0, not expected, expected, plausible)
        r.fired = {d: 0 for d in fired}
        r.symptoms = symptoms
        return r

    r = result(["frozen_layers", "loss_not_decreasing"], {"loss_not_decreasing": ["frozen_layers"]})
    assert r.detected and r.cause_named and not r.cause_unknown and r.false_alarms == []
    r = result(["loss_not_decreasing"], {"loss_not_decreasing": []})     # found nothing else
    assert not r.detected and r.cause_unknown and r.false_alarms == []
    r = result(["frozen_layers", "oscillating_loss"], {"oscillating_loss": []})
    assert r.cause_named and r.false_alarms == ["oscillating_loss"]
    r = result(["frozen_layers", "lr_too_high", "oscillating_loss"], {"oscillating_loss": ["lr_too_high"]})
    assert r.false_alarms == ["lr_too_high", "oscillating_loss"]          # explained by a wrong cause
    r = result(["loss_not_decreasing"], {"loss_not_decreasing": []}, expected=("loss_not_decreasing",))
    assert r.detected and not r.cause_named and r.false_alarms == []      # found by its symptom only
    r = result(["loss_not_decreasing"], {"loss_not_decreasing": []}, expected=())
    assert r.false_alarms == ["loss_not_decreasing"]                      # healthy: every alarm
    # a cause raised after a divergence is reported as its consequence (a symptom of it)
    r = result(["lr_too_high", "dying_relu"], {"dying_relu": ["lr_too_high"]}, expected=("lr_too_high",))
    assert r.cause_named and r.false_alarms == []
    r = result(["lr_too_high", "dying_relu"], {}, expected=("lr_too_high",))
    assert r.false_alarms == ["dying_relu"]                               # left a cause: wrong


@pytest.mark.parametrize("setup", [s for s in FAULTS if half(s) == "dev"], ids=lambda s: s.name)
def test_development_fault_is_found(setup):
    r = run_setup(setup, seed=0, steps=setup.ci_steps)
    assert r.detected, f"{setup.name}: expected one of {setup.expected}, fired {r.fired}"
    assert not r.false_alarms, f"{setup.name}: wrong-cause alarms {r.false_alarms}: {r.messages}"


@pytest.mark.parametrize("setup", HEALTHY, ids=lambda s: f"{half(s)}-{s.name}")
def test_healthy_setup_raises_no_alarm(setup):
    r = run_setup(setup, seed=0, steps=110)
    assert r.fired == {}, f"{setup.name} ({half(setup)}): false alarms {r.messages}"
