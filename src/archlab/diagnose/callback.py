"""``HealthMonitor``: the health recorder as a Lightning callback, for any Lightning project.

    from archlab.diagnose import HealthMonitor
    trainer = lightning.Trainer(callbacks=[HealthMonitor("runs/mnist/health")])

It needs nothing from the LightningModule beyond automatic optimisation; the validation loss is
read from ``trainer.callback_metrics`` (``val_loss``, ``val/loss``, ... or ``val_loss_key``).
From the trainer it also reads the optimizer (learning rate, which parameters it updates) and
``gradient_clip_val``; from batches shaped ``(x, y, ...)`` or ``{"y"|"target"|"label": ...}``
the targets (label entropy or target variance: the loss rules' reference, see
:mod:`archlab.diagnose.baselines`). ``reference={...}`` declares the reference instead
(:meth:`HealthRecorder.set_reference`).
A regulariser written into the training loss (an L1 or L2 term) is reported by the module, so
the regularisation rule can weigh it: set ``self.health_penalty = term`` (a float or 0-d tensor,
the penalty part of the loss returned by ``training_step``; an L2 term), or ``{"value": term,
"degree": 1, "what": "L1 0.05 x sum |w|"}`` (degree 1 for L1, 2 for L2), before returning
the loss; the callback reads it once per step (:meth:`HealthState.record_penalty`).
Events are appended to ``<folder>/events.jsonl`` as they are raised, so they survive a crash;
the per-layer series are written at the end of training (and on an exception).
"""

from __future__ import annotations

import json
from pathlib import Path

import lightning.pytorch as pl
import torch

from .detectors import Verdict
from .monitor import HealthRecorder

VAL_LOSS_KEYS = ("val_loss", "val/loss", "loss/val", "valid_loss", "validation_loss", "val_loss_epoch")


def _targets_of(batch):
    """The targets of a batch ``(x, y, ...)`` or ``{"y"|"target"|"label"...: y}``, else None."""
    if isinstance(batch, (tuple, list)) and len(batch) >= 2 and isinstance(batch[1], torch.Tensor):
        return batch[1]
    if isinstance(batch, dict):
        for key in ("y", "target", "targets", "label", "labels"):
            if isinstance(batch.get(key), torch.Tensor):
                return batch[key]
    return None


LOSS_NAMES = {"ce": "cross_entropy", "mse": "mse", "bce": "bce", "dice": "dice", "l1": "l1"}


def _training_targets(trainer):
    """All training targets as the model is trained on them (scaled), when the training data
    loader's dataset exposes them (archlab's in-memory batches ``.y``, ``TensorDataset``)."""
    loader = getattr(trainer, "train_dataloader", None)
    dataset = getattr(loader, "dataset", None)
    y = getattr(dataset, "y", None)
    if y is None and isinstance(dataset, torch.utils.data.TensorDataset) and len(dataset.tensors) > 1:
        y = dataset.tensors[1]
    return y if isinstance(y, torch.Tensor) else None


def _reference_of(trainer, pl_module) -> dict:
    """The know-nothing loss of an archlab run (a DesignModule with ``task``): the training
    split's label entropy for cross entropy, its target variance (as trained on) for MSE. Only
    the loss kind, or nothing, for any other Lightning project: the recorder then estimates
    the reference from the targets of the batches it samples."""
    task = getattr(pl_module, "task", None)
    loss = LOSS_NAMES.get(getattr(task, "loss_name", ""), None)
    out = {"loss": loss} if loss else {}
    y = _training_targets(trainer)
    if y is None:
        return out
    if loss == "cross_entropy" and not y.is_floating_point() and y.numel():
        from .baselines import entropy

        out["label_entropy"] = entropy(torch.bincount(y.reshape(-1).long()).tolist())
    elif loss == "mse" and y.is_floating_point() and y.numel() > 1:
        out["target_variance"] = float(y.double().var(unbiased=False))
    return out


def _validation_size(trainer) -> int | None:
    """Examples in the validation pass (None when the loaders do not say: an iterable
    dataset, or a trainer without ``val_dataloaders``)."""
    try:
        loaders = getattr(trainer, "val_dataloaders", None)
    except Exception:   # a trainer-like object that refuses the attribute
        return None
    if loaders is None:
        return None
    if not isinstance(loaders, (list, tuple)):
        loaders = [loaders]
    total = 0
    for dl in loaders:
        try:
            n = len(dl.dataset)
        except (AttributeError, TypeError):
            return None
        limit = getattr(trainer, "limit_val_batches", 1.0)
        if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
            n = min(n, limit * (getattr(dl, "batch_size", None) or n))
        total += n
    return total or None


_MODULE_GETATTR = torch.nn.Module.__getattr__


def _penalty_of(module):
    """``getattr(module, "health_penalty", None)`` without its cost when the attribute is not
    set (every step of a module that reports nothing): on an ``nn.Module`` a missing attribute
    goes through ``Module.__getattr__``, which raises and catches an AttributeError (~2.5 us a
    step). Read from the instance's dict and the module's parameter, buffer and submodule
    tables (where ``nn.Module.__setattr__`` puts it, and where ``Module.__getattr__`` looks); a
    class that defines it (a property, a class attribute) or its own ``__getattr__`` is read
    by ``getattr`` as before."""
    cls = type(module)
    d = getattr(module, "__dict__", None)
    if (d is None or hasattr(cls, "health_penalty")
            or getattr(cls, "__getattr__", _MODULE_GETATTR) is not _MODULE_GETATTR):
        return getattr(module, "health_penalty", None)   # a class of its own making
    if "health_penalty" in d:
        return d["health_penalty"]
    for table in ("_parameters", "_buffers", "_modules"):
        held = d.get(table)
        if held and "health_penalty" in held:
            return held["health_penalty"]
    return None


def _read_penalty(module, state) -> None:
    """The penalty part of this step's loss, when the module reports it (``health_penalty``:
    a number or 0-d tensor, an L2 term; or {"value", "degree", "what"}); read once (the
    attribute is cleared, so a module that stops reporting is not read again)."""
    term = _penalty_of(module)
    if term is None:
        return
    module.health_penalty = None
    if isinstance(term, dict):
        if "value" not in term:
            raise ValueError("health_penalty: a dict must have 'value' (the penalty term of the "
                             f"loss), got keys {sorted(term)}; set {{'value': term, 'degree': 1 "
                             "or 2, 'what': text}}")
        state.record_penalty(term["value"], degree=term.get("degree", 2),
                             what=str(term.get("what", "")))
    else:
        state.record_penalty(term, degree=2, what="an L2 term in the loss")


class HealthMonitor(pl.Callback):
    """Samples per-layer health on a fixed schedule of steps (every step at first, then
    sparser: :func:`archlab.diagnose.monitor.sample_interval`), runs the detectors, and writes
    ``health/`` in the run folder.

    Args:
        folder: where to write; default ``<trainer.default_root_dir>/health``.
        every: sample every ``every``-th step instead of the schedule.
        dense, max_every: the schedule (every step below ``2 * dense``, at most every
            ``max_every``-th step later).
        reference: ``{"classes", "label_entropy", "target_variance", "loss"}`` (any of them),
            the know-nothing loss the loss rules compare with.
        detectors: detector names to run (default: all registered).
        thresholds: ``{detector: {threshold: value}}`` overrides.
        expected_frozen: layer paths frozen on purpose (not reported by ``frozen_layers``).
        val_loss_key: name of the validation loss in ``trainer.callback_metrics``.
        stop_on_nonfinite: stop training at the first NaN/Inf loss (after locating it).
        echo: print each verdict as it is raised.
    """

    def __init__(self, folder: str | Path | None = None, *, every: int | None = None,
                 dense: int = 8, max_every: int = 64, detectors=None,
                 thresholds: dict | None = None, expected_frozen: tuple[str, ...] = (),
                 val_loss_key: str | None = None, stop_on_nonfinite: bool = True,
                 echo: bool = False, dead_window: int = 4, reference: dict | None = None) -> None:
        self.folder = Path(folder) if folder is not None else None
        self.options = dict(every=every, dense=dense, max_every=max_every, detectors=detectors,
                            thresholds=thresholds, expected_frozen=tuple(expected_frozen),
                            dead_window=dead_window)
        self.reference = dict(reference or {})
        self.recorder = HealthRecorder(**self.options)  # validates names and thresholds now
        self.val_loss_key = val_loss_key
        self.stop_on_nonfinite = stop_on_nonfinite
        self.echo = echo
        self._batch = None
        self._finished = False
        self._writes = True

    @property
    def events(self) -> list[Verdict]:
        return self.recorder.events

    @property
    def state(self):
        return self.recorder.state

    # ------------------------------------------------------------------ lightning hooks ----
    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage != "fit":
            return
        self.recorder = HealthRecorder(**self.options)
        clip = getattr(trainer, "gradient_clip_val", None)
        self.recorder.attach(pl_module, clip=float(clip) if clip else None,
                             clip_algorithm=str(getattr(trainer, "gradient_clip_algorithm", None)
                                                or "norm"))
        if self.reference:
            self.recorder.set_reference(**self.reference)
        self.recorder.on_event = self._on_event
        self._finished = False
        if self.folder is None:
            self.folder = Path(trainer.default_root_dir) / "health"
        # with several processes (DDP) each rank measures its own replica; rank 0 writes
        self._writes = trainer.is_global_zero
        if self._writes:
            self.folder.mkdir(parents=True, exist_ok=True)
            (self.folder / "events.jsonl").write_text("")

    def on_train_start(self, trainer, pl_module) -> None:
        if trainer.optimizers:   # configured after setup(): known from here on
            self.recorder.set_optimizer(trainer.optimizers[0])
        if not self.reference:   # the training data loader is attached from here on
            self.recorder.set_reference(**_reference_of(trainer, pl_module))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._batch = (batch, batch_idx)
        self.recorder.begin_step(targets=_targets_of(batch))

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        # the replay holds its own batch: the recorder keeps the previous step's replay (a
        # NaN input at an unsampled step is found by replaying that batch)
        batch = self._batch
        ok = self.recorder.after_loss(loss, replay=lambda: self._replay(pl_module, batch))
        _read_penalty(pl_module, self.recorder.state)
        if not ok and self.stop_on_nonfinite:
            trainer.should_stop = True

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.recorder.before_optimizer_step()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.recorder.end_step()
        self._batch = None

    def on_validation_end(self, trainer, pl_module) -> None:
        # not on_validation_epoch_end: callbacks run before the LightningModule's own epoch-end
        # hook, which is where the validation loss is often logged
        if trainer.sanity_checking:
            return
        metrics = trainer.callback_metrics
        keys = (self.val_loss_key,) if self.val_loss_key else VAL_LOSS_KEYS
        for key in keys:
            if key in metrics:
                self.recorder.validation(float(metrics[key]), trainer.current_epoch,
                                         val_size=_validation_size(trainer))
                return

    def on_train_end(self, trainer, pl_module) -> None:
        self._finish()

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._finish()

    # ------------------------------------------------------------------ internals ----------
    def _finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        self.recorder.finish(self.folder if self._writes else None)

    def _on_event(self, verdict: Verdict) -> None:
        if self.folder is not None and self._writes:
            with open(self.folder / "events.jsonl", "a") as fh:
                fh.write(json.dumps(verdict.to_dict()) + "\n")
        if self.echo:
            print(f"[health] step {verdict.step} {verdict.detector}: {verdict.message}")

    def _replay(self, pl_module, held: tuple | None = None) -> None:
        """Run a batch's training_step again (forward only, logging silenced) so the
        recorder's hooks can see which module made the first NaN/Inf: ``held`` (batch,
        batch_idx), by default the current batch."""
        held = held if held is not None else self._batch
        if held is None:
            return
        batch, batch_idx = held
        pl_module.log = lambda *a, **k: None        # the replay must not log a second time
        pl_module.log_dict = lambda *a, **k: None
        try:
            pl_module.training_step(batch, batch_idx)
        finally:
            del pl_module.log
            del pl_module.log_dict
