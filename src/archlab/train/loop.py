"""archlab's own single-process training loop: the same LightningModule hooks and the same
Lightning Callback objects as ``lightning.Trainer``, without its fixed cost per step.

Why: ``lightning.Trainer`` costs about 0.35 ms a step by itself (its data fetcher, progress
trackers, result collection, profiler contexts and hook dispatch), which is most of an epoch of a
small model (benchmarks/training.py: a bare Trainer ran ``digits_mlp`` at 1.8x a hand-written
loop). :class:`LoopTrainer` runs one process on the CPU and drives:

* the module's hooks in Lightning's order: ``setup``, ``configure_optimizers``, ``on_fit_start``,
  ``on_train_start``, ``on_train_epoch_start``, per batch ``on_train_batch_start`` /
  ``training_step`` (manual optimisation: ``optimizers()``, ``manual_backward``,
  ``lr_schedulers()``; automatic optimisation when gradients are clipped: zero_grad, backward,
  ``on_before_optimizer_step``, ``configure_gradient_clipping`` and the per-step schedule, as
  Lightning's automatic loop does) / ``on_train_batch_end``, then validation at the end of the
  epoch (``on_validation_*``, ``validation_step`` in inference mode, the module's modes restored),
  ``on_train_epoch_end`` and the test loop of :meth:`LoopTrainer.test`;
* the callbacks' hooks in Lightning's order, with Lightning's ordering of the list (checkpoint
  callbacks last) and its split of ``on_train_epoch_end`` (monitoring callbacks,
  ``EarlyStopping`` and ``ModelCheckpoint``, after the module's own hook). Lightning's own
  ``ModelCheckpoint`` and ``EarlyStopping`` run unchanged against this object;
* checkpoints in Lightning's format (``epoch``, ``global_step``, ``state_dict``, ``loops`` with
  Lightning's progress counters, ``callbacks`` by state key, ``optimizer_states``,
  ``lr_schedulers``), written through :class:`~archlab.train.checkpoint.SafeCheckpointIO`: a
  checkpoint of either loop resumes with either loop. The run's own checkpoints (``best.ckpt``,
  ``last.ckpt``: :class:`~archlab.train.engine.RunCheckpoint` inside
  :meth:`LoopTrainer.background_checkpoints`) are written on a time cadence
  (``checkpoint_interval``, :meth:`~archlab.train.checkpoint.SafeCheckpointIO.end_epoch`: at the
  end of the first epoch that many seconds after the last write and after the last epoch,
  exact copies kept in memory in between and written on errors and Ctrl-C), to their temporary
  files on the training thread and renamed into place by one background thread
  (:data:`BACKGROUND_WRITES`); ``fit`` waits for it before the ``on_train_end`` hooks and on
  every error or interruption, and a failed rename stops the run with a
  :class:`~archlab.train.checkpoint.CheckpointError`.

Only hooks that do something are called: LightningModule's empty hooks (a docstring or
``pass``: :data:`_NOOP_MODULE_HOOKS`) and the hooks a callback names in ``idle_hooks`` are left
out, the per-hook callback lists are made once and again whenever ``trainer.callbacks``
changes, and a manual step with nothing to run in its closure calls the optimiser's step
without one. Serialising checkpoints on the background thread was measured and left out: the
pickler and torch's zip writer hold the GIL throughout, so the training thread waited as long
as it would have worked (400 digits_mlp steps with 20 checkpoints: 536 ms inline, 595 ms with
the serialisation handed to a thread, load 8.7); only the renames, which wait in the kernel
without the GIL, go there.

A callback may read the attributes listed in :data:`TRAINER_ATTRIBUTES`; any other attribute of
``lightning.Trainer`` raises an error that names the fix (``loop='lightning'``).
:func:`loop_applies` says when a run takes this loop; everything else (several devices or
processes, a strategy, mixed precision, an accelerator other than the CPU, Lightning's own
callbacks other than checkpoints and early stopping) keeps ``lightning.Trainer``.
"""

from __future__ import annotations

import contextlib
import copy
import os
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, Checkpoint, EarlyStopping, ModelCheckpoint
from lightning.pytorch.trainer.states import RunningStage, TrainerFn, TrainerState, TrainerStatus

from ..errors import UsageError
from .checkpoint import SafeCheckpointIO
from .config import TrainConfig

# The run's own checkpoints are renamed into place by a background thread (False: on the
# training thread, as lightning.Trainer does). A checkpoint of a small model costs about 5 ms
# here, 4 of them the rename over the previous file (ext4 starts writing the new file's data
# back at that rename, and the rename waits), two an epoch: a third of an epoch of digits_mlp.
BACKGROUND_WRITES = True

# what a callback run by this loop may read or set on ``trainer`` (the rest of lightning.Trainer
# is refused with the fix)
TRAINER_ATTRIBUTES = (
    "callbacks", "callback_metrics", "logged_metrics", "progress_bar_metrics", "current_epoch",
    "global_step", "max_epochs", "max_steps", "min_epochs", "should_stop", "interrupted",
    "is_global_zero", "global_rank", "local_rank", "node_rank", "world_size", "num_devices",
    "num_nodes", "default_root_dir", "log_dir", "lightning_module", "model", "optimizers",
    "lr_scheduler_configs", "strategy", "precision_plugin", "precision", "state", "training",
    "validating", "testing", "sanity_checking", "fast_dev_run", "gradient_clip_val",
    "gradient_clip_algorithm", "num_training_batches", "num_val_batches", "num_test_batches",
    "train_dataloader", "val_dataloaders", "test_dataloaders", "loggers", "logger",
    "checkpoint_callback", "checkpoint_callbacks", "early_stopping_callback",
    "early_stopping_callbacks", "check_val_every_n_epoch", "val_check_interval",
    "received_sigterm", "save_checkpoint", "fit", "test", "batch_idx",
)

_SUPPORTED_LIGHTNING_CALLBACKS = (ModelCheckpoint, EarlyStopping)


def loop_applies(config: TrainConfig, callbacks: list[Callback]) -> list[str]:
    """Why a run must keep ``lightning.Trainer`` (an empty list: archlab's loop runs it).

    archlab's loop is one process on the CPU, in 32-bit precision, with callbacks that read
    only :data:`TRAINER_ATTRIBUTES`; ``loop='lightning'`` always takes Lightning's Trainer."""
    reasons = []
    if config.loop == "lightning":
        reasons.append("loop='lightning'")
    accelerator = str(config.accelerator).lower()
    if accelerator not in ("cpu", "auto"):
        reasons.append(f"accelerator '{config.accelerator}'")
    elif accelerator == "auto" and _accelerator_available():
        reasons.append("an accelerator is available (accelerator 'auto')")
    if str(config.devices) not in ("1", "auto"):
        reasons.append(f"devices {config.devices}")
    if config.num_nodes != 1:
        reasons.append(f"num_nodes {config.num_nodes}")
    if str(config.strategy) not in ("auto", "single_device"):
        reasons.append(f"strategy '{config.strategy}'")
    if str(config.precision) not in ("32-true", "32"):
        reasons.append(f"precision '{config.precision}'")
    for cb in callbacks:
        if type(cb).__module__.startswith(("lightning.", "pytorch_lightning.")) and \
                not isinstance(cb, _SUPPORTED_LIGHTNING_CALLBACKS):
            reasons.append(f"Lightning callback {type(cb).__name__}")
    return reasons


def _accelerator_available() -> bool:
    if torch.cuda.is_available():
        return True
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


# ------------------------------------------------------------------------ trainer parts -----


class _Strategy:
    """What callbacks and the module ask of ``trainer.strategy`` in one process."""

    is_global_zero = True
    world_size = 1
    global_rank = local_rank = node_rank = 0
    launcher = None
    root_device = torch.device("cpu")
    handles_gradient_accumulation = False

    def __init__(self, trainer: LoopTrainer) -> None:
        self._trainer = trainer
        # the run's own checkpoints are written once `checkpoint_interval` seconds have passed
        # (SafeCheckpointIO.end_epoch); copies of the epochs between are kept in memory
        self.checkpoint_io = SafeCheckpointIO(interval=getattr(trainer.config, "checkpoint_interval", 0.0))
        self.precision_plugin = trainer.precision_plugin
        self._lightning_optimizers: list[_StepOptimizer] = []

    @property
    def lightning_module(self):
        return self._trainer.lightning_module

    @property
    def model(self):
        return self._trainer.lightning_module

    def broadcast(self, obj, src: int = 0):
        return obj

    def barrier(self, name: str | None = None) -> None:
        pass

    def reduce(self, tensor, group=None, reduce_op="mean"):
        return tensor

    def all_gather(self, tensor, group=None, sync_grads=False):
        return tensor

    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:  # noqa: A002
        return decision

    def save_checkpoint(self, checkpoint: dict, filepath, storage_options=None) -> None:
        self.checkpoint_io.save_checkpoint(checkpoint, filepath)

    def remove_checkpoint(self, filepath) -> None:
        self.checkpoint_io.remove_checkpoint(filepath)

    def optimizer_state(self, optimizer) -> dict:
        return optimizer.state_dict()

    def lightning_module_state_dict(self) -> dict:
        return self._trainer.lightning_module.state_dict()

    def backward(self, loss: torch.Tensor, optimizer, *args, **kwargs) -> torch.Tensor:
        """Lightning's backward: ``on_before_backward`` hooks, the backward pass, then
        ``on_after_backward`` hooks (callbacks first, then the module)."""
        t = self._trainer
        t._hook("on_before_backward", loss)
        t.lightning_module.backward(loss, *args, **kwargs)
        loss = loss.detach()
        t._hook("on_after_backward")
        return loss


class _StepOptimizer:
    """What ``LightningModule.optimizers()`` hands out, made as Lightning's ``LightningOptimizer``
    is (an instance of the optimiser's own class sharing its state): ``step`` calls the
    ``on_before_optimizer_step`` hooks after the closure, as Lightning's precision plugin does,
    and counts the manual loop's steps (Lightning's ``global_step``)."""

    def __init__(self, optimizer: torch.optim.Optimizer, trainer: LoopTrainer) -> None:
        self.__dict__ = {k: v for k, v in optimizer.__dict__.items() if k not in ("step", "__del__")}
        self.__class__ = type("Loop" + optimizer.__class__.__name__, (self.__class__, optimizer.__class__), {})
        self._optimizer = optimizer
        self._loop = trainer

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self._optimizer

    def step(self, closure=None, **kwargs):
        trainer = self._loop
        if not trainer._automatic:
            trainer._manual_steps += 1
            if closure is None and not trainer._before_optimizer_step_hooks():
                # nothing would run in the closure: the optimiser's step without one (no
                # enable_grad context, no closure call), as Lightning's would compute the same
                return self._optimizer.step(**kwargs)
        return self._optimizer.step(closure=trainer._wrap_closure(self._optimizer, closure), **kwargs)


class _NoProfiler:
    def profile(self, name):
        import contextlib

        return contextlib.nullcontext()

    def start(self, name) -> None:
        pass

    def stop(self, name) -> None:
        pass


# ------------------------------------------------------------------------------ trainer -----


class LoopTrainer:
    """A single-process stand-in for ``lightning.Trainer`` with the attributes callbacks read
    (:data:`TRAINER_ATTRIBUTES`), and ``fit``, ``test`` and ``save_checkpoint``."""

    archlab_loop = True

    def __init__(self, config: TrainConfig, run_dir: Path, callbacks: list[Callback]) -> None:
        from lightning.pytorch.plugins.precision import Precision

        from .engine import _quiet_lightning

        _quiet_lightning()  # the same warnings filtered as under make_trainer

        self.config = config
        self.max_epochs = config.epochs
        self.max_steps = -1
        self.min_epochs = None
        self.default_root_dir = str(run_dir)
        self.precision_plugin = Precision()
        self.precision = "32-true"
        self.strategy = _Strategy(self)
        self.profiler = _NoProfiler()
        if config.clip is not None:
            from lightning.pytorch.utilities import GradClipAlgorithmType

            self.gradient_clip_val: float | None = config.clip
            self.gradient_clip_algorithm = GradClipAlgorithmType(config.clip_by.lower())
        else:
            self.gradient_clip_val = None
            self.gradient_clip_algorithm = None
        # Lightning's order: checkpoint callbacks move to the end of the list
        self._callbacks = _CallbackList([c for c in callbacks if not isinstance(c, Checkpoint)] +
                                        [c for c in callbacks if isinstance(c, Checkpoint)])
        self.callback_metrics: dict[str, torch.Tensor] = {}
        self.logged_metrics: dict[str, torch.Tensor] = {}
        self.progress_bar_metrics: dict[str, float] = {}
        self.loggers: list = []
        self.logger = None
        self.state = TrainerState()
        self.current_epoch = 0
        self.batch_idx = 0
        self.should_stop = False
        self.sanity_checking = False
        self.fast_dev_run = False
        self.received_sigterm = False
        self.check_val_every_n_epoch = 1
        self.val_check_interval = 1.0
        self.is_global_zero = True
        self.global_rank = self.local_rank = self.node_rank = 0
        self.world_size = self.num_devices = self.num_nodes = 1
        self.lightning_module: L.LightningModule | None = None
        self.optimizers: list[torch.optim.Optimizer] = []
        self.lr_scheduler_configs: list = []
        self.train_dataloader = None
        self.val_dataloaders = None
        self.test_dataloaders = None
        self.num_training_batches = 0
        self.num_val_batches: list[int] = []
        self.num_test_batches: list[int] = []
        self._automatic = False
        self._manual_steps = 0       # optimiser steps of manual optimisation (Lightning's global_step)
        self._auto_steps = 0         # optimiser steps of automatic optimisation
        self._auto_zero_grads = 0
        self._scheduler_steps = 0
        self._batches_total = 0
        self._batches_epoch = 0
        self._last_batch = False
        self._val_epoch = 0
        self._val_last = False
        self._epochs_done = 0        # epoch_progress.completed
        self._epochs_started = 0     # epoch_progress.processed/started/ready
        self._hooks: dict[tuple, list] = {}
        self._hooks_version = -1     # the callback list's version the hook lists were made for
        self._offsets: dict[str, int] = {}
        self._background_saves = False

    # ---- attributes of lightning.Trainer ------------------------------------------------------
    def __getattr__(self, name: str):
        # only called for attributes this object lacks
        if name.startswith("__"):
            raise AttributeError(name)
        raise AttributeError(
            f"trainer.{name}: archlab's own training loop (one process on the CPU) has no such "
            f"attribute; a callback run by it may use {', '.join(TRAINER_ATTRIBUTES[:12])} ... "
            "(archlab.train.loop.TRAINER_ATTRIBUTES). Fix: train with loop='lightning' "
            "(archlab train --loop lightning) to run lightning.Trainer")

    @property
    def callbacks(self) -> list[Callback]:
        return self._callbacks

    @callbacks.setter
    def callbacks(self, value) -> None:
        self._callbacks = _CallbackList(value)

    @property
    def model(self):
        return self.lightning_module

    @property
    def global_step(self) -> int:
        return self._auto_steps if self._automatic else self._manual_steps

    @property
    def interrupted(self) -> bool:
        return self.state.status == TrainerStatus.INTERRUPTED

    @property
    def training(self) -> bool:
        return self.state.stage == RunningStage.TRAINING

    @property
    def validating(self) -> bool:
        return self.state.stage == RunningStage.VALIDATING

    @property
    def testing(self) -> bool:
        return self.state.stage == RunningStage.TESTING

    @property
    def log_dir(self) -> str:
        return self.default_root_dir

    @property
    def checkpoint_callbacks(self) -> list:
        return [c for c in self.callbacks if isinstance(c, Checkpoint)]

    @property
    def checkpoint_callback(self):
        found = self.checkpoint_callbacks
        return found[0] if found else None

    @property
    def early_stopping_callbacks(self) -> list:
        return [c for c in self.callbacks if isinstance(c, EarlyStopping)]

    @property
    def early_stopping_callback(self):
        found = self.early_stopping_callbacks
        return found[0] if found else None

    # ---- hook dispatch ------------------------------------------------------------------------
    def _callbacks_with(self, name: str, monitoring: bool | None = None) -> list:
        """The callbacks that override hook ``name`` (the base class's hooks do nothing, so
        leaving them out changes nothing), in order; ``monitoring`` as Lightning's split. A
        callback may name hooks it overrides but that do nothing with its settings
        (``idle_hooks``: ``RunCheckpoint`` without step-wise saving, the progress line off a
        terminal); they are left out too. The lists are made once per hook and made again
        when the callback list changes."""
        callbacks = self._callbacks
        if self._hooks_version != callbacks.version:
            self._hooks.clear()
            self._hooks_version = callbacks.version
        key = (name, monitoring)
        found = self._hooks.get(key)
        if found is None:
            base = getattr(Callback, name, None)
            found = []
            for cb in callbacks:
                if monitoring is True and not isinstance(cb, (EarlyStopping, Checkpoint)):
                    continue
                if monitoring is False and isinstance(cb, (EarlyStopping, Checkpoint)):
                    continue
                if name in getattr(cb, "idle_hooks", ()):
                    continue
                fn = getattr(type(cb), name, None)
                if fn is not base or name in vars(cb):
                    found.append(getattr(cb, name))
            self._hooks[key] = found
        return found

    def _callback_hook(self, name: str, *args, monitoring: bool | None = None) -> None:
        fns = self._callbacks_with(name, monitoring)
        if not fns:
            return
        module = self.lightning_module
        prev = module._current_fx_name
        module._current_fx_name = name
        for fn in fns:
            fn(self, module, *args)
        module._current_fx_name = prev

    def _module_hook(self, name: str, *args, **kwargs):
        module = self.lightning_module
        if getattr(type(module), name, None) in _NOOP_MODULE_HOOKS and name not in module.__dict__:
            return None  # LightningModule's own empty hook: calling it changes nothing
        fn = getattr(module, name, None)
        if not callable(fn):
            return None
        prev = module._current_fx_name
        module._current_fx_name = name
        out = fn(*args, **kwargs)
        module._current_fx_name = prev
        return out

    def _hook(self, name: str, *args) -> None:
        """Callbacks' hook, then the module's (Lightning's order)."""
        self._callback_hook(name, *args)
        self._module_hook(name, *args)

    # ---- logging from the module ---------------------------------------------------------------
    def log_epoch_metrics(self, metrics: dict[str, float], prog_bar: bool = True) -> None:
        """``self.log`` of epoch-level values: the float32 tensors Lightning's callback_metrics hold."""
        for k, v in metrics.items():
            t = v.detach().float().clone() if isinstance(v, torch.Tensor) else torch.tensor(float(v))
            self.callback_metrics[k] = t
            self.logged_metrics[k] = t
            if prog_bar:
                self.progress_bar_metrics[k] = float(t)

    # ---- optimisation ------------------------------------------------------------------------
    def _before_optimizer_step_hooks(self) -> bool:
        """Whether a callback or the module has an ``on_before_optimizer_step`` that does something."""
        module = self.lightning_module
        return bool(self._callbacks_with("on_before_optimizer_step")) or not (
            getattr(type(module), "on_before_optimizer_step", None) in _NOOP_MODULE_HOOKS
            and "on_before_optimizer_step" not in module.__dict__)

    def _wrap_closure(self, optimizer, closure):
        """The closure a step runs: the user's closure (or none), then the
        ``on_before_optimizer_step`` hooks and, in automatic optimisation, gradient clipping."""

        def wrapped():
            out = closure() if closure is not None else None
            self._hook("on_before_optimizer_step", optimizer)
            if self._automatic:
                self._module_hook("configure_gradient_clipping", optimizer,
                                  gradient_clip_val=self.gradient_clip_val,
                                  gradient_clip_algorithm=self.gradient_clip_algorithm)
            return out

        return wrapped

    def _configure_optimizers(self, module) -> None:
        from lightning.pytorch.core.optimizer import _init_optimizers_and_lr_schedulers

        optimizers, schedulers = _init_optimizers_and_lr_schedulers(module)
        if len(optimizers) != 1:
            raise UsageError(f"archlab's training loop takes one optimiser; configure_optimizers "
                             f"returned {len(optimizers)}", fix="train with loop='lightning'")
        self.optimizers = optimizers
        self.lr_scheduler_configs = schedulers
        self.strategy._lightning_optimizers = [_StepOptimizer(o, self) for o in optimizers]

    def _automatic_step(self, batch, batch_idx: int):
        """Lightning's automatic optimisation of one batch: the optimiser's step runs the closure
        (training_step, zero_grad, backward), then the hooks and clipping, then the schedule."""
        optimizer = self.strategy._lightning_optimizers[0]
        result: dict[str, Any] = {}

        def closure():
            out = self._module_hook("training_step", batch, batch_idx)
            loss = out["loss"] if isinstance(out, dict) else out
            self._callback_hook("on_before_zero_grad", optimizer.optimizer)
            self._module_hook("on_before_zero_grad", optimizer.optimizer)
            self._module_hook("optimizer_zero_grad", self.current_epoch, batch_idx, optimizer.optimizer)
            self._auto_zero_grads += 1
            if loss is not None:
                self.strategy.backward(loss, optimizer.optimizer)
                result["loss"] = loss.detach()
            return loss

        self._module_hook("optimizer_step", self.current_epoch, batch_idx, optimizer, closure)
        self._auto_steps += 1
        for cfg in self.lr_scheduler_configs:
            if cfg.interval == "step" and cfg.frequency and (batch_idx + 1) % cfg.frequency == 0:
                self._module_hook("lr_scheduler_step", cfg.scheduler, None)
                self._scheduler_steps += 1
        return result

    # ---- fit -----------------------------------------------------------------------------------
    def fit(self, module: L.LightningModule, train_dataloaders=None, val_dataloaders=None,
            ckpt_path: str | None = None) -> None:
        _set_torch_flags(self.config.deterministic)
        self.lightning_module = module
        module.trainer = self  # type: ignore[assignment]
        self.train_dataloader = train_dataloaders
        self.val_dataloaders = val_dataloaders
        self.num_training_batches = len(train_dataloaders)
        self.num_val_batches = [len(val_dataloaders)] if val_dataloaders is not None else []
        self.state.fn = TrainerFn.FITTING
        self.state.status = TrainerStatus.RUNNING
        self.state.stage = RunningStage.TRAINING
        self._automatic = bool(module.automatic_optimization)
        try:
            self._fit(module, ckpt_path)
            self._finish_writes()
            self.state.status = TrainerStatus.FINISHED
        except KeyboardInterrupt as exc:
            # Ctrl-C keeps the run: the checkpoints of finished epochs stay (their writes are
            # waited for; a failed one raises), `interrupted` tells the caller, which names the
            # resume command
            self._on_exception(exc)
            self.state.status = TrainerStatus.INTERRUPTED
            self._finish_writes()
        except BaseException as exc:
            self._on_exception(exc)
            self.state.status = TrainerStatus.INTERRUPTED
            self._finish_writes(exc)
            raise
        finally:
            self.state.stage = None

    def _finish_writes(self, during: BaseException | None = None) -> None:
        """Wait for the background checkpoint writes and end the writer's thread. A failed write
        raises its :class:`CheckpointError`, or, while another error is on its way, is added to
        that error's notes (the first error stays the one raised)."""
        try:
            self.strategy.checkpoint_io.teardown()  # kept checkpoints written, renames waited for
        except Exception as err:
            if during is None:
                raise
            during.add_note(f"and a checkpoint write failed too: {err}")

    @contextlib.contextmanager
    def background_checkpoints(self):
        """Checkpoints saved inside (``trainer.save_checkpoint``) are written to their
        temporary files and renamed into place by the background writer, after the call
        returns; ``RunCheckpoint`` saves the run's own checkpoints inside it. Anything else is
        in place when ``save_checkpoint`` returns, as under ``lightning.Trainer``."""
        previous, self._background_saves = self._background_saves, BACKGROUND_WRITES
        try:
            yield
        finally:
            self._background_saves = previous

    def _on_exception(self, exc: BaseException) -> None:
        # as Lightning's: the callbacks' on_exception (no teardown hooks on this path)
        self._callback_hook("on_exception", exc)

    def _teardown(self, stage: str) -> None:
        self._callback_hook("teardown", stage)
        self._module_hook("teardown", stage)

    def _fit(self, module, ckpt_path: str | None) -> None:
        self._callback_hook("setup", "fit")
        self._module_hook("setup", "fit")
        ckpt = None
        if ckpt_path is not None:
            ckpt = self.strategy.checkpoint_io.load_checkpoint(ckpt_path)
            self._restore_modules_and_callbacks(module, ckpt)
        self._module_hook("configure_model")
        self._configure_optimizers(module)
        self._callback_hook("on_fit_start")
        self._module_hook("on_fit_start")
        if ckpt is not None:
            self._restore_training_state(ckpt)
        module.zero_grad()
        self._callback_hook("on_train_start")
        self._module_hook("on_train_start")
        self.strategy.checkpoint_io.restart_clock()
        while not self._fit_done():
            self._run_epoch(module)
        # the last epoch's checkpoints are on disk before the run's end hooks (and are part of
        # the last epoch's time): written at its end, or now if the stop came later
        self.strategy.checkpoint_io.publish_kept()
        self.strategy.checkpoint_io.flush()
        self._callback_hook("on_train_end")
        self._module_hook("on_train_end")
        self._callback_hook("on_fit_end")
        self._module_hook("on_fit_end")
        self._teardown("fit")

    def _fit_done(self) -> bool:
        if self.num_training_batches == 0:
            return True
        if self.max_epochs is not None and self.max_epochs >= 0 and self._epochs_started >= self.max_epochs:
            return True
        return self.should_stop

    def _run_epoch(self, module) -> None:
        loader = self.train_dataloader
        sampler = getattr(loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(self._epochs_started)
        batch_sampler = getattr(loader, "batch_sampler", None)
        if batch_sampler is not None and hasattr(getattr(batch_sampler, "sampler", None), "set_epoch"):
            batch_sampler.sampler.set_epoch(self._epochs_started)
        self.current_epoch = self._epochs_started
        self._callback_hook("on_train_epoch_start")
        self._module_hook("on_train_epoch_start")
        self._epochs_started += 1
        self._batches_epoch = 0
        # Lightning's training-epoch loop restarts these "current" counters every epoch
        self._offsets.update(scheduler=self._scheduler_steps, auto=self._auto_steps,
                             zero=self._auto_zero_grads)
        self._last_batch = False
        n = self.num_training_batches
        automatic = self._automatic
        start_hooks = self._callbacks_with("on_train_batch_start")
        end_hooks = self._callbacks_with("on_train_batch_end")
        module_start = _overridden(module, "on_train_batch_start")
        module_end = _overridden(module, "on_train_batch_end")
        for batch_idx, batch in enumerate(_batches(loader)):
            self.batch_idx = batch_idx
            self._last_batch = batch_idx + 1 >= n
            if start_hooks:
                self._callback_hook("on_train_batch_start", batch, batch_idx)
            if module_start and self._module_hook("on_train_batch_start", batch, batch_idx) == -1:
                break  # Lightning: -1 skips the rest of the epoch
            if automatic:
                out = self._automatic_step(batch, batch_idx)
            else:
                module._current_fx_name = "training_step"
                out = module.training_step(batch, batch_idx)
                out = {"loss": out} if isinstance(out, torch.Tensor) else (out or {})
            if end_hooks:
                self._callback_hook("on_train_batch_end", out, batch, batch_idx)
            if module_end:
                self._module_hook("on_train_batch_end", out, batch, batch_idx)
            self._batches_epoch += 1
            self._batches_total += 1
            if self.should_stop or self._last_batch:
                break
        if self.val_dataloaders is not None and (self._last_batch or self.should_stop):
            self._module_hook("on_validation_model_zero_grad")
            self._evaluate(module, self.val_dataloaders, RunningStage.VALIDATING)
            self.state.stage = RunningStage.TRAINING
        self._callback_hook("on_train_epoch_end", monitoring=False)
        self._module_hook("on_train_epoch_end")
        # the checkpoint callbacks hand their files to the checkpoint IO, which writes them
        # together once the interval has passed (always after the last epoch), or keeps copies
        self._callback_hook("on_train_epoch_end", monitoring=True)
        self.strategy.checkpoint_io.end_epoch(final=self._fit_done())
        self._epochs_done += 1

    # ---- evaluation ----------------------------------------------------------------------------
    def _evaluate(self, module, loader, stage: RunningStage) -> None:
        name = "validation" if stage == RunningStage.VALIDATING else "test"
        self.state.stage = stage
        with torch.inference_mode():
            modes = {m: m.training for m in module.modules()}
            self._module_hook(f"on_{name}_model_eval")
            self._hook(f"on_{name}_start")
            self._hook(f"on_{name}_epoch_start")
            step = getattr(module, f"{name}_step")
            start_hooks = self._callbacks_with(f"on_{name}_batch_start")
            end_hooks = self._callbacks_with(f"on_{name}_batch_end")
            module_start = _overridden(module, f"on_{name}_batch_start")
            module_end = _overridden(module, f"on_{name}_batch_end")
            n = 0
            for batch_idx, batch in enumerate(_batches(loader)):
                if start_hooks:
                    self._callback_hook(f"on_{name}_batch_start", batch, batch_idx)
                if module_start:
                    self._module_hook(f"on_{name}_batch_start", batch, batch_idx)
                module._current_fx_name = f"{name}_step"
                out = step(batch, batch_idx)
                if end_hooks:
                    self._callback_hook(f"on_{name}_batch_end", out, batch, batch_idx)
                if module_end:
                    self._module_hook(f"on_{name}_batch_end", out, batch, batch_idx)
                n += 1
            if stage == RunningStage.VALIDATING:
                self._val_epoch = n  # Lightning resets the total of the validation loop too
                self._val_last = n > 0
            self._hook(f"on_{name}_epoch_end")
            self._hook(f"on_{name}_end")
            if _overridden(module, f"on_{name}_model_train"):
                self._module_hook(f"on_{name}_model_train")
            else:
                for m, training in modes.items():
                    m.training = training

    def test(self, module: L.LightningModule, dataloaders=None, verbose: bool = False, **_: Any) -> list:
        """Lightning's test loop: ``setup('test')``, the ``on_test_*`` hooks and ``test_step``
        over ``dataloaders`` in inference mode."""
        self.lightning_module = module
        module.trainer = self  # type: ignore[assignment]
        self.test_dataloaders = dataloaders
        self.num_test_batches = [len(dataloaders)]
        self.state.fn = TrainerFn.TESTING
        self.state.status = TrainerStatus.RUNNING
        self._callback_hook("setup", "test")
        self._module_hook("setup", "test")
        try:
            self._evaluate(module, dataloaders, RunningStage.TESTING)
        finally:
            self.state.stage = None
        self._teardown("test")
        self.state.status = TrainerStatus.FINISHED
        return [dict(self.callback_metrics)]

    # ---- checkpoints ---------------------------------------------------------------------------
    def save_checkpoint(self, filepath, weights_only: bool = False, storage_options=None) -> None:
        if self._background_saves:
            # the loop counters are made for each checkpoint (_loops_state): kept copies share them
            self.strategy.checkpoint_io.save_deferred(self.dump_checkpoint(weights_only), filepath,
                                                      fresh=("loops",))
        else:
            self.strategy.save_checkpoint(self.dump_checkpoint(weights_only), filepath)

    def dump_checkpoint(self, weights_only: bool = False) -> dict:
        """The checkpoint ``lightning.Trainer`` writes at the end of a training epoch, key for key."""
        module = self.lightning_module
        checkpoint: dict[str, Any] = {
            "epoch": self.current_epoch,
            "global_step": self.global_step,
            "pytorch-lightning_version": L.__version__,
            "state_dict": module.state_dict(),
            "loops": self._loops_state(),
        }
        if not weights_only:
            states = {}
            for cb in self.callbacks:
                state = cb.state_dict()
                if state:
                    states[cb.state_key] = state
            checkpoint["callbacks"] = states
            checkpoint["optimizer_states"] = [o.state_dict() for o in self.optimizers]
            checkpoint["lr_schedulers"] = [c.scheduler.state_dict() for c in self.lr_scheduler_configs]
            for cb in self._callbacks_with("on_save_checkpoint"):
                prev = module._current_fx_name
                module._current_fx_name = "on_save_checkpoint"
                cb(self, module, checkpoint)
                module._current_fx_name = prev
        self._module_hook("on_save_checkpoint", checkpoint)
        return checkpoint

    def _loops_state(self) -> dict:
        """Lightning's loop counters as its fit loop holds them at the end of a training epoch,
        so that ``lightning.Trainer`` resumes a checkpoint of this loop (and this loop one of
        Lightning's)."""

        def progress(n_total, n_current, keys=("ready", "started", "processed", "completed")):
            return {"total": {k: n_total[k] for k in keys}, "current": {k: n_current[k] for k in keys}}

        def same(n, keys):
            return {k: n for k in keys}

        four = ("ready", "started", "processed", "completed")
        two = ("ready", "completed")
        three = ("ready", "started", "completed")
        b_total, b_cur = self._batches_total, self._batches_epoch
        batch = {"total": same(b_total, four), "current": same(b_cur, four), "is_last_batch": self._last_batch}
        epoch_total = {"ready": self._epochs_started, "started": self._epochs_started,
                       "processed": self._epochs_started, "completed": self._epochs_done}
        auto, zero = self._auto_steps, self._auto_zero_grads
        manual = self._manual_steps
        fit = {
            "state_dict": {},
            "epoch_loop.state_dict": {"_batches_that_stepped": self._batches_total},
            "epoch_loop.batch_progress": batch,
            "epoch_loop.scheduler_progress": {"total": same(self._scheduler_steps, two),
                                              "current": same(self._cur("scheduler", self._scheduler_steps), two)},
            "epoch_loop.automatic_optimization.state_dict": {},
            "epoch_loop.automatic_optimization.optim_progress": {"optimizer": {
                "step": {"total": same(auto, two), "current": same(self._cur("auto", auto), two)},
                "zero_grad": {"total": same(zero, three), "current": same(self._cur("zero", zero), three)}}},
            "epoch_loop.manual_optimization.state_dict": {},
            "epoch_loop.manual_optimization.optim_step_progress": {
                "total": same(manual, two), "current": same(self._cur("manual", manual), two)},
            "epoch_loop.val_loop.state_dict": {},
            "epoch_loop.val_loop.batch_progress": {
                "total": same(self._val_epoch, four), "current": same(self._val_epoch, four),
                "is_last_batch": self._val_last},
            "epoch_progress": progress(epoch_total, {k: self._cur("epoch", v) for k, v in epoch_total.items()}),
        }

        def idle(with_last: bool) -> dict:
            d = {"total": same(0, four), "current": same(0, four)}
            if with_last:
                d["is_last_batch"] = False
            return {"state_dict": {}, "batch_progress": d}

        return {"fit_loop": fit, "validate_loop": idle(True), "test_loop": idle(True),
                "predict_loop": idle(False)}

    def _cur(self, name: str, total: int) -> int:
        """Lightning's "current" counter: the total less its value at the start of the epoch for
        the counters Lightning's training-epoch loop restarts every epoch (the scheduler's and
        the automatic optimisation's); the others equal their totals, over a resume too."""
        return total - self._offsets.get(name, 0)

    def _restore_modules_and_callbacks(self, module, ckpt: dict) -> None:
        self._module_hook("on_load_checkpoint", ckpt)
        module.load_state_dict(ckpt["state_dict"], strict=module.strict_loading)
        states = ckpt.get("callbacks") or {}
        for cb in self._callbacks_with("on_load_checkpoint"):
            cb(self, module, ckpt)
        for cb in self.callbacks:
            state = states.get(cb.state_key, states.get(getattr(cb, "_legacy_state_key", None)))
            if state:
                cb.load_state_dict(copy.deepcopy(state))

    def _restore_training_state(self, ckpt: dict) -> None:
        for opt, state in zip(self.optimizers, ckpt.get("optimizer_states", []), strict=False):
            opt.load_state_dict(state)
        for cfg, state in zip(self.lr_scheduler_configs, ckpt.get("lr_schedulers", []), strict=False):
            cfg.scheduler.load_state_dict(state)
        fit = (ckpt.get("loops") or {}).get("fit_loop") or {}
        epochs = fit.get("epoch_progress", {}).get("total", {})
        # archlab's checkpoints are written at the end of a training epoch: the next one starts
        self._epochs_started = self._epochs_done = int(epochs.get("processed", ckpt.get("epoch", -1) + 1))
        self.current_epoch = self._epochs_started
        total = lambda key, sub: int(((fit.get(key) or {}).get("total") or {}).get(sub, 0))  # noqa: E731
        self._batches_total = total("epoch_loop.batch_progress", "completed")
        self._manual_steps = total("epoch_loop.manual_optimization.optim_step_progress", "completed")
        auto = ((fit.get("epoch_loop.automatic_optimization.optim_progress") or {}).get("optimizer") or {})
        self._auto_steps = int(((auto.get("step") or {}).get("total") or {}).get("completed", 0))
        self._auto_zero_grads = int(((auto.get("zero_grad") or {}).get("total") or {}).get("completed", 0))
        self._scheduler_steps = total("epoch_loop.scheduler_progress", "completed")
        # Lightning carries its "current" counters over a resume (they equal the totals here)
        self._offsets = {}


class _CallbackList(list):
    """The trainer's callbacks: a list that counts its changes, so that the loop's per-hook
    lists of callbacks (:meth:`LoopTrainer._callbacks_with`) are made again after any."""

    version = 0

    def _changed(self) -> None:
        self.version += 1


def _counting(name: str):
    method = getattr(list, name)

    def changes(self, *args, **kwargs):
        out = method(self, *args, **kwargs)
        self._changed()
        return out

    changes.__name__ = name
    return changes


for _name in ("append", "extend", "insert", "remove", "pop", "clear", "sort", "reverse",
              "__setitem__", "__delitem__", "__iadd__", "__imul__"):
    setattr(_CallbackList, _name, _counting(_name))


def _does_nothing(fn) -> bool:
    """A function whose body is only a docstring or ``pass`` (its code loads None and returns)."""
    import dis

    code = getattr(fn, "__code__", None)
    if code is None:
        return False
    for ins in dis.get_instructions(code):
        if ins.opname in ("RESUME", "NOP", "RETURN_VALUE"):
            continue
        if ins.opname in ("LOAD_CONST", "RETURN_CONST") and ins.argval is None:
            continue
        return False
    return True


# LightningModule's hooks that do nothing (most of ModelHooks, DataHooks and CheckpointHooks):
# the loop does not call them, nor set the module's _current_fx_name around them. The hooks
# with a body (on_validation_model_eval, backward, optimizer_step, ...) are called as before.
_NOOP_MODULE_HOOKS = frozenset(
    getattr(L.LightningModule, name) for name in dir(L.LightningModule)
    if name.startswith(("on_", "configure_model", "setup", "teardown", "prepare_data"))
    and callable(getattr(L.LightningModule, name, None))
    and _does_nothing(getattr(L.LightningModule, name)))


def _batches(loader):
    """The loader's batches. archlab's in-memory loader in this process (``IndexBatches`` over
    a dataset with ``__getitems__``, the identity collate, no worker processes) is read as
    DataLoader's own fetcher reads it, ``dataset.__getitems__(indices)`` per batch, without the
    iterator's per-batch machinery (about 40 us a batch): the same batches, index for index.
    Any other loader is iterated as it is."""
    from .engine import IndexBatches, _keep_batch

    if getattr(loader, "num_workers", 1) == 0 and getattr(loader, "collate_fn", None) is _keep_batch \
            and isinstance(getattr(loader, "batch_sampler", None), IndexBatches) \
            and callable(getattr(loader.dataset, "__getitems__", None)):
        fetch = loader.dataset.__getitems__
        return (fetch(indices) for indices in loader.batch_sampler)
    return iter(loader)


def _overridden(module, name: str) -> bool:
    fn = getattr(type(module), name, None)
    return fn is not None and fn is not getattr(L.LightningModule, name, None)


def _set_torch_flags(deterministic: bool) -> None:
    """What ``lightning.Trainer(deterministic=..., benchmark=False)`` sets."""
    torch.use_deterministic_algorithms(bool(deterministic))
    if deterministic:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = bool(deterministic)


# ----------------------------------------------------------------------------- progress -----


class LoopProgress(Callback):
    """A one-line progress display for archlab's loop: epoch, step, the epoch's metrics and its
    time, redrawn in place at most five times a second on a terminal (one line per epoch
    otherwise). Its cost is one clock read per step."""

    def __init__(self, stream=None, interval: float = 0.2) -> None:
        self.stream = stream or sys.stderr
        self.interval = interval
        self._next = 0.0
        self._t0 = 0.0
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())

    @property
    def idle_hooks(self) -> tuple[str, ...]:
        """Off a terminal the line is drawn once an epoch: nothing to do per step."""
        return () if self._tty else ("on_train_batch_end",)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._t0 = time.perf_counter()
        self._next = self._t0 + self.interval

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._tty:
            now = time.perf_counter()
            if now >= self._next:
                self._next = now + self.interval
                self._draw(trainer, batch_idx + 1, end="")

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        train = pl_module.epoch_train_metrics() if hasattr(pl_module, "epoch_train_metrics") else {}
        self._draw(trainer, trainer.num_training_batches, end="\n",
                   extra={"train/loss": train["loss"]} if "loss" in train else {})

    def _draw(self, trainer, step: int, end: str, extra: dict | None = None) -> None:
        values = {**trainer.progress_bar_metrics, **(extra or {})}
        metrics = "  ".join(f"{k} {v:.4g}" for k, v in values.items())
        text = (f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}  step {step}/"
                f"{trainer.num_training_batches}  {time.perf_counter() - self._t0:.1f}s  {metrics}")
        self.stream.write(("\r\033[K" if self._tty else "") + text + end)
        self.stream.flush()
