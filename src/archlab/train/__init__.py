"""Training a design with sound defaults (principles C3, C4, C6, C7, C9, C11, C13, C14, C15).

    import archlab
    run = archlab.train("mnist_cnn", data="mnist5k", epochs=5)      # -> Run (a run folder)
    run.test_metrics["accuracy"], run.path

PyTorch Lightning runs the loop, checkpoints, progress bar, clipping and multi-device scale-out;
archlab adds the design, the data pipeline (splits, training-split scaling, augmentation), task
presets, safe atomic checkpoints that know their design, transfer, and the run folder.

``archlab.train`` is both this package and the :func:`train` function: the package is callable,
so ``archlab.train(design, data=...)`` works however it was first imported.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

from .checkpoint import CheckpointError, SafeCheckpointIO, StateDiff, compare_state, freeze, load_matching
from .config import TrainConfig, make_config
from .data import ArrayData, DataError, DataSpec, load_data, register_dataset
from .engine import ArrayDataModule, DesignModule, Setup, default_callbacks, make_trainer
from .prepare import AugmentSpec, Scaling, Splits, fit_scaling, make_splits
from .run import Run, RunError, resume, train
from .setup import build_modules, prepare
from .tasks import Task, TrainingSetupError


def demo_step(out: str | Path = "runs", *, design: str = "mnist_cnn", data: str = "mnist5k",
              epochs: int = 5, **options) -> int:
    """The training step of ``make demo``: train a zoo design on real data for a few epochs and
    print its per-epoch and test metrics. Returns the exit status (0).

    Five epochs of the small CNN on mnist5k (one-cycle Adam, 2-pixel shifts) reach about 97%
    test accuracy in well under a minute on two quiet cores; benchmarks/training.py trains it
    for 12 epochs to >= 98%.
    """
    from .command import print_summary

    opts = {"batch": 32, "lr": 3e-3, "schedule": "onecycle", "augment": "shift=2", **options}
    run = train(design, data, epochs=epochs, out=str(Path(out) / "runs"), **opts)
    print_summary(run)
    return 0


class _CallableModule(types.ModuleType):
    """Lets ``archlab.train(...)`` call :func:`train` even when ``archlab.train`` resolved to
    this package (importing ``archlab.train.engine`` binds the package to that name)."""

    def __call__(self, *args, **kwargs) -> Run:
        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

__all__ = [
    "ArrayData", "ArrayDataModule", "AugmentSpec", "CheckpointError", "DataError", "DataSpec",
    "DesignModule", "Run", "RunError", "SafeCheckpointIO", "Scaling", "Setup", "Splits", "StateDiff",
    "Task", "TrainConfig", "TrainingSetupError", "build_modules", "compare_state", "default_callbacks",
    "demo_step", "fit_scaling", "freeze", "load_data", "load_matching", "make_config", "make_splits",
    "make_trainer", "prepare", "register_dataset", "resume", "train",
]
