"""Lightning callbacks of a search trial: Optuna pruning and the fidelity limits.

Pruning reports the validation metric after every validation epoch (``Trial.report``) and, when
the pruner says so, stops training at once; the search then records the trial as PRUNED. Only
single-objective studies prune: Optuna's ``Trial.report`` raises for multi-objective studies.
"""

from __future__ import annotations

import time

from lightning.pytorch.callbacks import Callback


class PruningCallback(Callback):
    """Reports ``val/<metric>`` to an Optuna trial each epoch; stops the run when pruned."""

    def __init__(self, trial, metric: str) -> None:
        self.trial = trial
        self.metric = metric
        self.pruned = False
        self.pruned_at: int | None = None

    def on_validation_end(self, trainer, pl_module) -> None:
        # after the module's own epoch-end hook has logged the epoch's metric (as EarlyStopping)
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(f"val/{self.metric}")
        if value is None:
            return
        epoch = int(trainer.current_epoch)
        self.trial.report(float(value), epoch)
        last = trainer.max_epochs is not None and epoch >= trainer.max_epochs - 1
        if not last and self.trial.should_prune():  # the last epoch is paid for: keep its result
            self.pruned, self.pruned_at = True, epoch
            trainer.should_stop = True


class FidelityCallback(Callback):
    """Stops a trial after ``steps`` optimiser steps or ``minutes`` of training, whichever first
    (the epoch budget is the trainer's own)."""

    def __init__(self, steps: int | None = None, minutes: float | None = None) -> None:
        self.steps = steps
        self.minutes = minutes
        self.started = 0.0

    def on_train_start(self, trainer, pl_module) -> None:
        self.started = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.steps is not None and trainer.global_step >= self.steps:
            trainer.should_stop = True
        if self.minutes is not None and time.perf_counter() - self.started >= 60 * self.minutes:
            trainer.should_stop = True
