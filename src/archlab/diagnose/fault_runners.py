"""The three user paths a fault-suite set-up trains on (see :mod:`archlab.diagnose.faults`).

* :func:`run_lightning`: a LightningModule and ``lightning.Trainer`` with :class:`HealthMonitor`
  (gradient clipping through ``gradient_clip_val``, schedules through ``configure_optimizers``);
* :func:`run_plain`: a hand-written PyTorch loop driving :class:`HealthRecorder` with the
  optimizer attached (clipping, when the set-up clips, happens before the recorder reads the
  gradients, as in most loops, and is not declared);
* :func:`run_archlab`: ``archlab.train.train`` (the engine behind ``archlab train``) on the
  set-up's module, with the data written to an ``.npz`` file; the run's ``health/`` folder is
  read back. A data error raised before training counts as the detector ``data_error``.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np
import torch

from .faults import Result, Setup, build_model, loss_fn, make_optimizer, make_schedule, prepare, score


def _n_out(s: Setup, ytr, yva) -> int:
    if s.task == "regression":
        return int(ytr.shape[1])
    return int(torch.cat([ytr, yva]).max()) + 1


def _loader(s: Setup, xtr, ytr, seed: int):
    g = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xtr, ytr), batch_size=s.batch,
                                       shuffle=s.labels != "sort", generator=g,
                                       drop_last=len(xtr) > s.batch)


def _result(s: Setup, seed: int, events, steps: int, model, xva, yva, overhead: float) -> Result:
    r = Result(s.name, seed, s.healthy, s.expected, s.plausible, steps=steps,
               score=score(s, model, xva, yva), overhead=overhead)
    for v in events:
        r.fired.setdefault(v.detector, v.step)
        r.messages.setdefault(v.detector, v.message)
        if v.kind == "symptom":
            r.symptoms[v.detector] = list(v.explained_by)
    return r


# ---------------------------------------------------------------------------- lightning ----


def run_lightning(s: Setup, seed: int, steps: int, monitor: bool, folder: Path, options: dict,
                  epochs: int | None) -> Result:
    import lightning.pytorch as pl

    from .callback import HealthMonitor

    xtr, ytr, xva, yva = prepare(s, seed)
    model = build_model(s, tuple(xtr.shape[1:]), _n_out(s, ytr, yva))
    lossf = loss_fn(s)

    class Module(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.model = model

        def training_step(self, batch, batch_idx):
            x, y = batch
            return lossf(self.model(x), y)

        def validation_step(self, batch, batch_idx):
            x, y = batch
            self.log("val_loss", lossf(self.model(x), y), prog_bar=False)

        def configure_optimizers(self):
            opt = make_optimizer(s, self.model)
            sched = make_schedule(s, opt, steps)
            if sched is None:
                return opt
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    val = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xva, yva), batch_size=512)
    clock = EpochClock.make()
    callbacks = [clock]
    hm = None
    if monitor:
        hm = HealthMonitor(folder / "health", **options)
        callbacks.append(hm)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False,
                         max_steps=-1 if epochs else steps, max_epochs=epochs or -1,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0,
                         default_root_dir=str(folder), gradient_clip_val=s.clip,
                         val_check_interval=None, callbacks=callbacks)
    trainer.fit(Module(), _loader(s, xtr, ytr, seed), val)
    r = _result(s, seed, hm.events if hm else [], trainer.global_step, model, xva, yva,
                hm.recorder.overhead if hm else math.nan)
    r.epoch_seconds = clock.wall
    return r


class EpochClock:
    """A Lightning callback timing each training epoch (wall time)."""

    @staticmethod
    def make():
        import lightning.pytorch as pl

        class _Clock(pl.Callback):
            def __init__(self):
                self.wall: list[float] = []

            def on_train_epoch_start(self, trainer, pl_module):
                self._t = time.perf_counter()

            def on_train_epoch_end(self, trainer, pl_module):
                self.wall.append(time.perf_counter() - self._t)

        return _Clock()


# -------------------------------------------------------------------------------- plain ----


def run_plain(s: Setup, seed: int, steps: int, monitor: bool, folder: Path, options: dict,
              epochs: int | None) -> Result:
    from .monitor import HealthRecorder

    xtr, ytr, xva, yva = prepare(s, seed)
    model = build_model(s, tuple(xtr.shape[1:]), _n_out(s, ytr, yva))
    opt = make_optimizer(s, model)
    sched = make_schedule(s, opt, steps)
    lossf = loss_fn(s)
    rec = HealthRecorder(**options) if monitor else None
    if rec is not None:
        rec.attach(model, optimizer=opt)
    loader = _loader(s, xtr, ytr, seed)
    per_epoch = len(loader)
    total = epochs * per_epoch if epochs else steps
    step, epoch_seconds = 0, []
    stop = False
    while step < total and not stop:
        t0 = time.perf_counter()
        for x, y in loader:
            if step >= total:
                break
            if rec is not None:
                rec.begin_step(targets=y)
            loss = lossf(model(x), y)
            if rec is not None and not rec.after_loss(loss, replay=lambda x=x: model(x)):
                stop = True   # stop at the first NaN, as the Lightning callback does
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if s.clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), s.clip)
            if rec is not None:
                rec.before_optimizer_step()
            opt.step()
            if sched is not None:
                sched.step()
            if rec is not None:
                rec.end_step()
            step += 1
            if stop:
                break
        epoch_seconds.append(time.perf_counter() - t0)
        if rec is not None:
            with torch.no_grad():
                model.eval()
                val_loss = float(lossf(model(xva), yva))
                model.train()
            rec.validation(val_loss, len(epoch_seconds) - 1, val_size=len(xva))
    if rec is not None:
        rec.finish(folder / "health")
    r = _result(s, seed, rec.events if rec else [], step, model, xva, yva,
                rec.overhead if rec else math.nan)
    r.epoch_seconds = epoch_seconds
    return r


# ------------------------------------------------------------------------------ archlab ----


def _run_score(s: Setup, run, y: np.ndarray) -> float:
    """The run's last validation accuracy, or R^2 from its validation MSE."""
    last = run.metrics[-1] if run.metrics else {}
    if s.task == "regression":
        val = y[np.asarray(run.splits.val)]
        value = 1 - float(last.get("val_mse", math.nan)) / float(val.var())
    else:
        value = float(last.get("val_accuracy", math.nan))
    return value if math.isfinite(value) else math.nan


def run_archlab(s: Setup, seed: int, steps: int, monitor: bool, folder: Path, options: dict,
                epochs: int | None) -> Result:
    """``archlab.train.train`` on the set-up's module; ``steps`` rounds up to whole epochs."""
    from ..errors import ArchlabError
    from ..train import train

    xtr, ytr, xva, yva = prepare(s, seed)
    model = build_model(s, tuple(xtr.shape[1:]), _n_out(s, ytr, yva))
    # the set-up's own split: training rows first, validation rows last (split 0.8/0.2/0)
    x = torch.cat([xtr, xva]).numpy()
    y = torch.cat([ytr, yva]).numpy()
    path = folder / "data.npz"
    np.savez(path, x=x, y=y)
    per_epoch = max(1, int(0.8 * len(x)) // s.batch)
    n_epochs = epochs or max(1, math.ceil(steps / per_epoch))
    opts = dict(epochs=n_epochs, batch=s.batch, lr=s.lr, optimizer=s.optimizer, seed=seed,
                out=str(folder), name="run", progress=False, health=monitor,
                scale=s.scaling != "raw", split=(0.8, 0.2, 0.0), stratify=False,
                task=s.task, l2=s.weight_decay)
    if s.task == "regression" and s.target_scale != 1.0:
        opts["scale_targets"] = False   # the fault: archlab train --no-scale-targets
    # archlab's SGD is Nesterov with momentum (0.9 by default): momentum=False is not offered
    if s.clip:
        opts["clip"] = s.clip
    callbacks = []
    if options and monitor:   # non-default monitor options: the monitor as the user adds it
        from .callback import HealthMonitor

        callbacks, opts["health"] = [HealthMonitor(**options)], False
    try:
        run = train(model, {"source": str(path)}, callbacks=callbacks, **opts)
    except ArchlabError as err:
        r = Result(s.name, seed, s.healthy, s.expected, s.plausible)
        r.fired, r.messages = {"data_error": 0}, {"data_error": str(err)}
        return r
    from .state import read_events

    events = read_events(run.path / "health") if monitor else []
    r = Result(s.name, seed, s.healthy, s.expected, s.plausible,
               steps=int(n_epochs * per_epoch), score=_run_score(s, run, y))
    for e in events:
        r.fired.setdefault(e["detector"], e["step"])
        r.messages.setdefault(e["detector"], e["message"])
        if e.get("kind") == "symptom":
            r.symptoms[e["detector"]] = list(e.get("explained_by", []))
    return r
