"""Diagnostics: sanity checks before training, a health monitor during, evidence after.

* :class:`HealthMonitor`: Lightning callback (any Lightning project) recording per-layer
  gradient norms, update-to-weight ratios, activation statistics, dead and saturated units and
  NaN/Inf, with registered :mod:`detectors <archlab.diagnose.detectors>`;
  :class:`HealthRecorder` is the same without Lightning (drive it from any loop).
* :func:`check`: pre-training sanity checks (``archlab check DESIGN``); :func:`check_data`:
  validation of a data set (``archlab check --data``).
* :mod:`~archlab.diagnose.baselines`: the references loss rules compare with (know-nothing
  loss, running baseline), for detectors of other modules too.
* :func:`diagnose`: a run's health summary and plots (``archlab diagnose``).
* :func:`gradcheck`: a custom layer's backward against numeric gradients (``archlab gradcheck``).

Heavy pieces (Lightning, matplotlib) are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from .detectors import DETECTORS, Detector, Verdict, make_detectors, register_detector
from .monitor import HealthRecorder
from .state import HealthState, read_events

_LAZY = {
    "HealthMonitor": "archlab.diagnose.callback:HealthMonitor",
    "check": "archlab.diagnose.checks:check",
    "check_data": "archlab.diagnose.data_checks:check_data",
    "diagnose": "archlab.diagnose.summary:diagnose",
    "gradcheck": "archlab.diagnose.gradcheck:gradcheck",
}

__all__ = ["DETECTORS", "Detector", "HealthMonitor", "HealthRecorder", "HealthState", "Verdict",
           "check", "check_data", "diagnose", "gradcheck", "make_detectors", "read_events",
           "register_detector"]


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'archlab.diagnose' has no attribute '{name}'")
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)
