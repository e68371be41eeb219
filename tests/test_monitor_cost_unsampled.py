"""What an unsampled step costs: the schedule read from a kept stretch of steps (the same steps as
``is_sampled``, the oracle), and the Lightning callback's read of ``health_penalty`` without
``nn.Module.__getattr__``'s raised AttributeError (the same values as ``getattr``, the oracle).
Counts of Python calls, never time."""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

from archlab.diagnose import HealthRecorder
from archlab.diagnose.callback import _penalty_of, _read_penalty
from archlab.diagnose.monitor import interval_span, is_sampled, sample_interval
from archlab.diagnose.state import HealthState


@pytest.mark.parametrize("dense,max_every", [(8, 64), (8, 48), (1, 1), (3, 16), (0, 64), (5, 7)])
def test_scheduled_steps_are_is_sampled(dense, max_every):
    rec = HealthRecorder(dense=dense, max_every=max_every, detectors=[])
    steps = list(range(3000)) + [10, 2, 5000, 700, 700, 0, 129, 128, 127]   # jumps back too
    assert [rec._scheduled(s) for s in steps] == [is_sampled(s, dense, max_every) for s in steps]
    for s in range(0, 2000, 7):
        k, until = interval_span(s, dense, max_every)
        assert k == sample_interval(s, dense, max_every)
        end = until if until is not None else 2100
        assert all(sample_interval(t, dense, max_every) == k for t in range(s, min(end, 2100)))
        if until is not None:
            assert sample_interval(until, dense, max_every) != k


def _calls_named(fn, name: str) -> int:
    seen = []

    def prof(frame, event, arg):
        if event == "call" and frame.f_code.co_name == name:
            seen.append(frame.f_code.co_filename)

    sys.setprofile(prof)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return len(seen)


class _Property(nn.Module):
    @property
    def health_penalty(self):
        return 0.5


class _OwnGetattr:
    def __getattr__(self, name):
        if name == "health_penalty":
            return 0.25
        raise AttributeError(name)


class _Slots:
    __slots__ = ("health_penalty",)


def test_penalty_read_as_getattr_reads_it():
    plain = nn.Linear(2, 2)
    set_float = nn.Linear(2, 2)
    set_float.health_penalty = 0.1
    buffer = nn.Linear(2, 2)
    buffer.register_buffer("health_penalty", torch.tensor(0.2))
    sub = nn.Linear(2, 2)
    sub.health_penalty = nn.Identity()   # absurd, but Module.__getattr__ finds it
    slots = _Slots()
    slotted = _Slots()
    slotted.health_penalty = 3.0

    class Bare:
        pass

    bare = Bare()
    bare.health_penalty = {"value": 1.0}
    for m in (plain, set_float, buffer, sub, _Property(), _OwnGetattr(), slots, slotted, bare,
              Bare(), object()):
        assert _penalty_of(m) is getattr(m, "health_penalty", None), type(m)


def test_unsampled_penalty_read_calls_no_module_getattr():
    """Per step of a module that reports no penalty: no ``Module.__getattr__`` call (it raises
    and catches an AttributeError); a reported penalty is still read once and cleared."""
    m = nn.Sequential(nn.Linear(3, 3))
    st = HealthState()
    assert _calls_named(lambda: _read_penalty(m, st), "__getattr__") == 0
    m.health_penalty = torch.tensor(0.3)
    _read_penalty(m, st)
    assert st.penalty["values"] == [pytest.approx(0.3)]
    assert m.health_penalty is None
    assert _calls_named(lambda: _read_penalty(m, st), "__getattr__") == 0
    assert st.penalty["values"] == [pytest.approx(0.3)]
