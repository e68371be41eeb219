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

from .checkpoint import CheckpointError, SafeCheckpointIO, StateDiff, compare_state, freeze, load_matching
from .config import TrainConfig, make_config
from .data import ArrayData, DataError, DataSpec, load_data, register_dataset
from .engine import ArrayDataModule, DesignModule, Setup, default_callbacks, make_trainer
from .prepare import AugmentSpec, Scaling, Splits, fit_scaling, make_splits
from .run import Run, RunError, resume, train
from .setup import build_modules, prepare
from .tasks import Task, TrainingSetupError


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
    "fit_scaling", "freeze", "load_data", "load_matching", "make_config", "make_splits",
    "make_trainer", "prepare", "register_dataset", "resume", "train",
]
