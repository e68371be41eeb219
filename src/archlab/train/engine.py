"""The training engine: PyTorch Lightning runs the loop; archlab adds the design, data and defaults.

Seams for other capabilities (the diagnostics health monitor, custom runs):

* :func:`archlab.train.prepare` (in ``setup.py``) turns a design, a data source and options into a :class:`Setup`: the data,
  split and scaled, the built network, the task, and the Lightning pair
  (:class:`DesignModule`, :class:`ArrayDataModule`); ``archlab.train.build_modules`` returns
  only the pair.
* :func:`default_callbacks` lists the callbacks of an archlab run (checkpoints, the per-epoch
  metrics CSV, early stopping, the progress bar); extend the list, or pass ``callbacks=`` to
  :func:`archlab.train.train`.
* :func:`make_trainer` builds the ``lightning.Trainer`` with archlab's settings, including the
  scale-out passthrough (``accelerator``, ``devices``, ``num_nodes``, ``strategy``).

Overhead choices (benchmarks/training.py measures them against a hand-written loop and a bare
``lightning.Trainer``): the data lives in memory and is fetched a whole batch per index call (no
per-sample collate); the step is taken in ``training_step`` (Lightning's manual optimisation, the
same hooks without the automatic loop's closures); metrics are accumulated in tensors and logged
once per epoch (the training accuracy from each step's kept hits, counted together); the
attribute Lightning sets around every hook call skips nn.Module's checks and the checkpoint
callbacks format their state key once and name their idle per-step hook; checkpoints are
serialised by :func:`~archlab.train.checkpoint.torch_save_bytes` (torch.save's bytes, a leaner
pickler); no model summary, no sanity validation pass.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, Sampler, SequentialSampler

from .checkpoint import SafeCheckpointIO, frozen_norm_modules
from .config import TrainConfig
from .data import ArrayData
from .prepare import Scaling, Splits, augment
from .tasks import Task

CHECKPOINT_DIR = "checkpoints"
METRICS_FILE = "metrics.csv"


def epoch_seed(seed: int, epoch: int) -> int:
    """The random state of epoch ``epoch`` depends only on (seed, epoch), never on what ran
    before: a run resumed from a checkpoint replays exactly the batches, dropout masks and
    augmentations of an uninterrupted one."""
    return (int(seed) * 1_000_003 + int(epoch) * 7_919 + 17) % (2**63 - 1)


# --------------------------------------------------------------------------------- data -----


class BatchTensors(torch.utils.data.Dataset):
    """In-memory (x, y) that hands out a whole batch per index call (``__getitems__``), so the
    data loader does no per-sample work: as cheap as slicing tensors in a hand-written loop."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], self.y[i]

    def __getitems__(self, indices: list[int]):
        idx = torch.as_tensor(indices)
        return self.x[idx], self.y[idx]


def _keep_batch(batch):
    return batch  # __getitems__ already returns the stacked batch


class EpochShuffleSampler(Sampler[int]):
    """A fresh permutation each epoch, drawn from (seed, epoch) only (see :func:`epoch_seed`).
    Lightning calls ``set_epoch`` at the start of every epoch."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def order(self) -> torch.Tensor:
        """This epoch's permutation as an int64 tensor."""
        g = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        return torch.randperm(self.n, generator=g)

    def __iter__(self):
        return iter(self.order().tolist())


class IndexBatches(BatchSampler):
    """Batches of indices as int64 tensors sliced from the epoch's whole order (the permutation
    of :class:`EpochShuffleSampler`, or 0..N-1 in order), so a step pays one slice instead of
    drawing 64 Python ints and building a tensor from them, as a hand-written loop slices its
    permutation. The batches are those of ``BatchSampler`` over the same sampler, index for
    index. Any other sampler (Lightning's DistributedSampler, which it puts in place with the
    same constructor arguments for several processes) is batched as ``BatchSampler`` does."""

    def __iter__(self):
        if isinstance(self.sampler, EpochShuffleSampler):
            order = self.sampler.order()
        elif isinstance(self.sampler, SequentialSampler):
            order = torch.arange(len(self.sampler), dtype=torch.int64)
        else:
            yield from super().__iter__()
            return
        n = len(order)
        stop = n - n % self.batch_size if self.drop_last else n
        for i in range(0, stop, self.batch_size):
            yield order[i:i + self.batch_size]


class ArrayDataModule(L.LightningDataModule):
    """Train/val/test loaders over an :class:`ArrayData`, scaled with training-split statistics.

    Shapes: x (N, *sample_shape) float32 scaled; y as in :mod:`archlab.train.data`.
    """

    def __init__(self, data: ArrayData, splits: Splits, scaling: Scaling, batch: int,
                 workers: int = 0, seed: int = 0) -> None:
        super().__init__()
        self.data, self.splits, self.scaling = data, splits, scaling
        self.batch, self.workers, self.seed = batch, workers, seed
        self._sets: dict[str, BatchTensors] = {}

    def split(self, name: str) -> BatchTensors:
        if name not in self._sets:
            idx = torch.as_tensor(getattr(self.splits, name), dtype=torch.int64)
            # scaled once, up front: the statistics are fixed, so per-batch scaling would be waste
            self._sets[name] = BatchTensors(self.scaling.apply(self.data.x[idx]).contiguous(),
                                            self.scaling.apply_target(self.data.y[idx]).contiguous())
        return self._sets[name]

    def setup(self, stage: str | None = None) -> None:
        for name in ("train", "val", "test"):
            self.split(name)

    def _loader(self, name: str, shuffle: bool) -> DataLoader:
        ds = self.split(name)
        sampler = EpochShuffleSampler(len(ds), self.seed) if shuffle else SequentialSampler(ds)
        # A loader without its own generator draws its worker seed from the global RNG when an
        # epoch's iterator is created, which shifts dropout masks by one draw depending on when
        # Lightning creates it (it differs after a resume). Its own generator keeps it out.
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(ds, batch_sampler=IndexBatches(sampler, self.batch, drop_last=False),
                          num_workers=self.workers, collate_fn=_keep_batch,
                          persistent_workers=self.workers > 0, pin_memory=False, generator=generator)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.splits.train) / self.batch)


# -------------------------------------------------------------------------------- module -----


def _variational_kl():
    """``archlab.blocks.variational.kl_loss`` if that block family is installed, else None."""
    try:
        from ..blocks.variational import kl_loss  # provided by the variational blocks issue
    except ImportError:
        return None
    return kl_loss


def split_outputs(out) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """A design with several outputs (``output: [fc, aux]``) predicts with the first; the others
    are auxiliary heads that only add to the training loss."""
    if isinstance(out, (tuple, list)):
        return out[0], tuple(out[1:])
    return out, ()


class DesignModule(L.LightningModule):
    """A built design plus its task, optimiser and schedule, as a LightningModule.

    ``forward``: (N, *input_shape) -> the network's output. Metrics of the latest epoch are kept
    in ``train_metrics``, ``val_metrics`` and ``test_metrics`` (dicts of floats and lists).
    """

    def __init__(self, model: nn.Module, task: Task, config: TrainConfig, steps_per_epoch: int,
                 checkpoint_extra: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.model = model
        self.task = task
        self.config = config
        self.steps_per_epoch = steps_per_epoch
        self.checkpoint_extra = checkpoint_extra or {}
        self.train_metrics: dict = {}
        self.val_metrics: dict = {}
        self.test_metrics: dict = {}
        self._state: dict[str, dict[str, torch.Tensor]] = {}
        self._train_done_epoch = -1
        self._aug = torch.Generator()
        kl = _variational_kl()
        has_variational = any(type(m).__module__.startswith("archlab.blocks.variational")
                              for m in model.modules())
        self._kl = kl if (kl is not None and has_variational) else None
        self._penalised = [p for p in model.parameters() if p.ndim > 1]
        self._frozen_norms = frozen_norm_modules(model)
        # The optimiser step is taken in training_step (Lightning's manual optimisation): the same
        # zero_grad, backward, step and schedule, with the same hooks (on_before_backward,
        # on_after_backward, on_before_optimizer_step), but without the automatic loop's closure
        # machinery, which cost about 0.35 ms a step (benchmarks/training.py). Gradient clipping
        # keeps the automatic loop: the Trainer clips there and callbacks (the health monitor)
        # read the threshold from ``trainer.gradient_clip_val``.
        self.automatic_optimization = config.clip is not None
        self._stepping = [False]  # a list: set every step, and nn.Module.__setattr__ is slow

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def __setattr__(self, name: str, value: Any) -> None:
        # Lightning sets _current_fx_name around every hook call, about 40 times a step; it is a
        # plain string, so nn.Module's checks for parameters, buffers and submodules (~1.7 us
        # each time) are skipped for it
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def train(self, mode: bool = True):
        super().train(mode)
        for m in self._frozen_norms:  # frozen nodes keep their running statistics too
            m.eval()
        return self

    # ---- training ---------------------------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        # Lightning keeps each submodule's own mode (it never calls .train() on the whole), so
        # frozen norms are put in eval mode here, at every epoch
        for m in self._frozen_norms:
            m.eval()
        seed = epoch_seed(self.config.seed, self.current_epoch)
        if self.device.type == "cpu":  # dropout masks etc.: on the CPU only its generator draws;
            torch.default_generator.manual_seed(seed)  # torch.manual_seed seeds every backend: 0.4 ms
        else:
            torch.manual_seed(seed)
        self._aug.manual_seed(seed)
        self._state["train"] = self.task.empty_train_state(self.device)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        if self._stepping[0]:
            # called again from inside the backward hooks (the health monitor replays the batch's
            # forward pass to find the first non-finite value): the loss only, no second step
            return self._training_loss(batch, record=False)
        total = self._training_loss(batch, record=True)
        if self.automatic_optimization or self._trainer is None:
            return total  # the automatic loop steps; outside a Trainer there is nothing to step
        optimizer = self.optimizers()
        self._stepping[0] = True
        try:
            optimizer.zero_grad()
            self.manual_backward(total)
            optimizer.step()
        finally:
            self._stepping[0] = False
        scheduler = self.lr_schedulers()
        if scheduler is not None:  # per step, as the automatic loop does for interval "step"
            scheduler.step()
        return total.detach()

    def _training_loss(self, batch, record: bool) -> torch.Tensor:
        """The training loss of one batch (auxiliary heads, L1 and KL terms included); ``record``
        adds the batch to this epoch's training metrics."""
        x, y = batch
        if self.config.augment.active:
            x = augment(x, self.config.augment, self._aug)
        out, aux = split_outputs(self.model(x))
        loss = self.task.loss(out, y)
        if record:
            self.task.update_train(self._state["train"], out, y, loss)
        total = loss
        for extra in aux:  # auxiliary heads (Inception's): same target, smaller weight
            total = total + self.config.aux_weight * self.task.loss(extra, y)
        if self.config.l1:
            penalty = self.config.l1 * sum(p.abs().sum() for p in self._penalised)
            total = total + penalty
            if record:   # told to the health monitor (its regularisation rule weighs the share)
                self.health_penalty = {"value": penalty.detach(), "degree": 1,
                                       "what": f"L1 penalty {self.config.l1:g} x sum |w|"}
        if self._kl is not None:
            # the block stores the batch-mean KL per sample (ELBO convention); beta weights it
            total = total + self.config.kl_weight * self._kl(self.model)
        return total

    def epoch_train_metrics(self) -> dict:
        """This epoch's training metrics (computed once, summed over devices)."""
        if self._train_done_epoch != self.current_epoch and "train" in self._state:
            self.train_metrics = self.task.compute_train(self._reduced("train"))
            self._train_done_epoch = self.current_epoch
        return self.train_metrics

    def on_train_epoch_end(self) -> None:
        m = self.epoch_train_metrics()
        if m:
            self._log_epoch({"train/loss": m["loss"]})

    def _log_epoch(self, metrics: dict[str, float]) -> None:
        """Epoch-level values into ``trainer.callback_metrics`` (what checkpoints and early
        stopping follow): ``self.log_dict`` under ``lightning.Trainer``, directly under archlab's
        own loop (:mod:`archlab.train.loop`), which keeps no per-step result collection."""
        if getattr(self._trainer, "archlab_loop", False):
            self._trainer.log_epoch_metrics(metrics)
        else:
            self.log_dict(metrics, prog_bar=True, sync_dist=False)

    # ---- evaluation -------------------------------------------------------------------------
    def _eval_step(self, name: str, batch) -> None:
        x, y = batch
        out, _ = split_outputs(self.model(x))
        loss = self.task.loss(out, y)
        self.task.update(self._state[name], out, y, loss)

    def _reduced(self, name: str) -> dict[str, torch.Tensor]:
        state = self._state[name]
        if name == "train":
            self.task.settle_train(state)  # the held correct predictions counted
        if self._trainer is not None and self._trainer.world_size > 1:
            # counts kept as Python ints become tensors here, so every sum covers all devices
            state = {k: self.trainer.strategy.reduce(
                v if isinstance(v, torch.Tensor) else torch.tensor(v, device=self.device),
                reduce_op="sum") for k, v in state.items() if k not in ("hits", "hit_elements")}
        return state

    def on_validation_epoch_start(self) -> None:
        self._state["val"] = self.task.empty_state(self.device)

    def validation_step(self, batch, batch_idx: int) -> None:
        self._eval_step("val", batch)

    def on_validation_epoch_end(self) -> None:
        self.val_metrics = self.task.compute(self._reduced("val"))
        self._log_epoch({"val/loss": self.val_metrics["loss"],
                         f"val/{self.task.monitor}": self.val_metrics[self.task.monitor]})

    def on_test_epoch_start(self) -> None:
        self._state["test"] = self.task.empty_state(self.device)

    def test_step(self, batch, batch_idx: int) -> None:
        self._eval_step("test", batch)

    def on_test_epoch_end(self) -> None:
        self.test_metrics = self.task.compute(self._reduced("test"))

    def predict_step(self, batch, batch_idx: int):
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return split_outputs(self.model(x))[0]

    # ---- optimiser (C14), regularisation (C4), schedule ------------------------------------
    def configure_optimizers(self):
        return make_optimizer(self.model, self.config, self.steps_per_epoch)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # plain strings only: the design and code version travel with the weights (C11)
        checkpoint["archlab"] = dict(self.checkpoint_extra)


def make_optimizer(model: nn.Module, config: TrainConfig, steps_per_epoch: int) -> dict:
    """The optimiser and its per-step schedule. Weight decay (L2) applies to conv/linear weights
    only: decaying biases and norm scales adds no regularisation but shifts activations."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim > 1]
    other = [p for p in params if p.ndim <= 1]
    groups = [g for g in ({"params": decay, "weight_decay": config.l2},
                          {"params": other, "weight_decay": 0.0}) if g["params"]]
    if config.optimizer == "sgd":
        opt = torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=True)
    elif config.optimizer == "adamw":
        opt = torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, eps=config.eps)
    else:
        opt = torch.optim.Adam(groups, lr=config.lr, betas=config.betas, eps=config.eps)
    total = max(1, steps_per_epoch * config.epochs)
    if config.schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    elif config.schedule == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=total)
    else:
        return {"optimizer": opt}
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


# ----------------------------------------------------------------------------- callbacks -----


class EpochMetricsCSV(Callback):
    """One row per epoch in ``metrics.csv``: epoch, train and validation metrics, lr, seconds.

    Written at the end of each training epoch, before the checkpoint of that epoch: the first
    write of a process rewrites the file atomically (header and all rows), later ones append
    their row when the columns are unchanged (one ``write`` of one line instead of a new file
    and a rename each epoch). A run killed during an append can leave a torn last line; the
    resume skips it and rewrites the file. On resume, rows of epochs not covered by the
    checkpoint are dropped. The columns (every key of every row, in first-seen order) are
    extended by the new rows' keys instead of gathered again from all rows each epoch, which
    grew with the square of the epochs (rows are only ever appended to ``rows``; a new list,
    as on resume, is read whole again).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.rows: list[dict] = []
        self._t0 = 0.0
        self._written: tuple[list[str], int] | None = None  # (columns, rows) this process wrote
        self._columns: tuple[list | None, int, list[str]] = (None, 0, [])  # (rows, rows read, their columns)

    def on_train_start(self, trainer, pl_module) -> None:
        import csv

        # after Lightning restored a checkpoint, so current_epoch is the epoch resumed at
        self.rows = []
        self._written = None
        if self.path.exists() and trainer.current_epoch > 0:  # resuming: keep finished epochs
            with open(self.path, newline="") as fh:
                self.rows = [{k: _number(v) for k, v in r.items()} for r in csv.DictReader(fh)
                             if _whole_row(r) and int(r["epoch"]) < trainer.current_epoch]

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        import time

        self._t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        import time

        if not trainer.is_global_zero:
            return
        row: dict[str, Any] = {"epoch": trainer.current_epoch}
        for prefix, metrics in (("train", pl_module.epoch_train_metrics()), ("val", pl_module.val_metrics)):
            for k, v in metrics.items():
                if isinstance(v, float):
                    row[f"{prefix}_{k}"] = round(v, 6)
        opt = trainer.optimizers[0] if trainer.optimizers else None
        row["lr"] = opt.param_groups[0]["lr"] if opt else ""
        row["seconds"] = round(time.perf_counter() - self._t0, 3)
        self.rows.append(row)
        self.write()

    def write(self) -> None:
        import csv
        import io

        from .checkpoint import atomic_write_text

        columns = self.columns()
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns)
        written = self._written
        if written is not None and written[0] == columns and 0 <= written[1] <= len(self.rows) \
                and self.path.exists():
            writer.writerows(self.rows[written[1]:])  # the same columns: append the new rows
            with open(self.path, "a", newline="") as fh:
                fh.write(buf.getvalue())
        else:
            writer.writeheader()
            writer.writerows(self.rows)
            atomic_write_text(self.path, buf.getvalue())
        self._written = (columns, len(self.rows))


    def columns(self) -> list[str]:
        """Every key of every row, in first-seen order (the file's header)."""
        rows = self.rows
        held, read, known = self._columns
        if held is not rows or read > len(rows):
            read, known = 0, []
        columns = list(known)
        seen = set(columns)
        for r in rows[read:]:
            for k in r:
                if k not in seen:
                    seen.add(k)
                    columns.append(k)
        self._columns = (rows, len(rows), columns)
        return list(columns)


def _whole_row(row: dict) -> bool:
    """A row with every column (a run killed while appending can leave a torn last line)."""
    return None not in row and None not in row.values() and str(row.get("epoch", "")).isdigit()


def _number(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


class RunCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` with its ``state_key`` formatted once. Lightning formats
    the key of every callback on every hook call, ten times a step, and the settings it is made
    of never change after construction. The key is ModelCheckpoint's own, so the callback state
    in checkpoints written before or by a plain ``ModelCheckpoint`` is restored on resume.

    In archlab's own loop its files are handed to the checkpoint IO at the end of the epoch
    (``LoopTrainer.background_checkpoints``), which writes them on its time cadence
    (``checkpoint_interval``; exact copies kept in memory in between) and has them renamed into
    place by a background thread, in order ('best' before 'last'); the loop waits for the
    renames before the run ends. Under ``lightning.Trainer`` it writes as ``ModelCheckpoint``
    does, every epoch."""

    @property
    def idle_hooks(self) -> tuple[str, ...]:
        """Hooks that do nothing with this callback's settings (archlab's loop leaves them out):
        ``on_train_batch_end`` saves only every N training steps or after a time interval."""
        if self._every_n_train_steps < 1 and self._train_time_interval is None:
            return ("on_train_batch_end",)
        return ()

    @property
    def state_key(self) -> str:
        key = self.__dict__.get("_state_key")
        if key is None:
            key = ModelCheckpoint.state_key.fget(self).replace(type(self).__qualname__, "ModelCheckpoint", 1)
            self.__dict__["_state_key"] = key
        return key

    def _monitor_candidates(self, trainer) -> dict[str, torch.Tensor]:
        """ModelCheckpoint's own, with each tensor cloned instead of deep-copied (the same copy,
        an eighth of the time: 0.16 ms a call, twice an epoch, was a twentieth of the checkpoint
        cost of digits_mlp)."""
        import copy

        candidates = {k: v.detach().clone() if isinstance(v, torch.Tensor) else copy.deepcopy(v)
                      for k, v in trainer.callback_metrics.items()}
        epoch, step = candidates.get("epoch"), candidates.get("step")
        candidates["epoch"] = epoch.int() if isinstance(epoch, torch.Tensor) else torch.tensor(trainer.current_epoch)
        candidates["step"] = step.int() if isinstance(step, torch.Tensor) else torch.tensor(trainer.global_step)
        return candidates

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        background = getattr(trainer, "background_checkpoints", None)
        if background is None:
            return super().on_train_epoch_end(trainer, pl_module)
        with background():
            return super().on_train_epoch_end(trainer, pl_module)


def monitor_of(task: Task, has_val: bool) -> tuple[str, str]:
    """The metric that early stopping and the best checkpoint follow, and its direction."""
    return (f"val/{task.monitor}", task.mode) if has_val else ("train/loss", "min")


def default_callbacks(config: TrainConfig, run_dir: Path, task: Task, has_val: bool = True) -> list[Callback]:
    """The callbacks of an archlab run; extend this list to add your own (e.g. a health monitor).

    * two ``ModelCheckpoint``: ``checkpoints/best.ckpt`` (weights) on the validation metric (only
      with a validation split) and ``checkpoints/last.ckpt`` every ``save_every`` epochs
      (resumable), via :class:`SafeCheckpointIO` (in archlab's loop on the time cadence of
      ``checkpoint_interval``);
    * :class:`EpochMetricsCSV`: ``metrics.csv``;
    * ``EarlyStopping`` when ``patience`` is set;
    * the diagnostics ``HealthMonitor`` (``health/``) when ``health`` is on and installed;
    * a rich progress bar when ``progress`` is on.
    """
    monitor, mode = monitor_of(task, has_val)
    callbacks: list[Callback] = [EpochMetricsCSV(Path(run_dir) / METRICS_FILE)]
    if has_val:  # without a validation split no epoch is chosen: the last epoch's weights are kept
        callbacks.append(
            # Both checkpoints are written at the end of the training epoch, after the metrics
            # row, so a crash between the two at worst repeats one epoch. 'best' comes first so
            # that 'last' carries the best-so-far state, and a resumed run picks the same best
            # epoch. 'best' serves testing and the exported weights only: no optimiser state, a
            # third of the bytes of an Adam checkpoint
            RunCheckpoint(dirpath=Path(run_dir) / CHECKPOINT_DIR, filename="best", monitor=monitor,
                          mode=mode, save_top_k=1, save_on_train_epoch_end=True, save_weights_only=True,
                          auto_insert_metric_name=False, enable_version_counter=False))
    callbacks += [
        # Lightning's save_last only writes when 'best' did: a separate callback writes the
        # resumable checkpoint every `save_every` epochs, improvement or not.
        RunCheckpoint(dirpath=Path(run_dir) / CHECKPOINT_DIR, filename="last", monitor=None,
                      save_top_k=1, save_on_train_epoch_end=True, every_n_epochs=config.save_every,
                      auto_insert_metric_name=False, enable_version_counter=False),
    ]
    if config.patience:
        callbacks.append(EarlyStopping(monitor=monitor, mode=mode, patience=config.patience,
                                       check_on_train_epoch_end=True))
    if config.health:
        monitor = _health_monitor(config, Path(run_dir))
        if monitor is not None:
            callbacks.append(monitor)
    if config.progress:
        callbacks.append(_progress_bar())
    return callbacks


# --logger: Lightning's loggers, fed by one callback (the trainer itself keeps logger=False, so
# metrics.csv stays the run's own log and a run without --logger pays nothing)
LOGGERS = {"tensorboard": ("tensorboard", "TensorBoardLogger"), "mlflow": ("mlflow", "MLFlowLogger"),
           "csv": (None, "CSVLogger")}


def require_logger(kind: str) -> None:
    """Raise, naming the ``archlab[loggers]`` extra, when the logger's package is missing."""
    import importlib.util

    from ..errors import UsageError

    if kind not in LOGGERS:
        raise UsageError(f"unknown logger '{kind}'", fix="use --logger tensorboard, mlflow or csv")
    package, cls = LOGGERS[kind]
    if package and importlib.util.find_spec(package) is None and \
            not (kind == "tensorboard" and importlib.util.find_spec("tensorboardX") is not None):
        raise UsageError(f"--logger {kind} needs the '{package}' package, which is not installed",
                         fix="pip install 'archlab[loggers]' (tensorboard and mlflow-skinny)")


def make_logger(kind: str, run_dir: Path, name: str = "archlab"):
    """A Lightning logger writing inside the run folder: ``tensorboard/``, ``mlflow.db`` (an
    MLflow SQLite store) or ``csv_logs/``. A missing optional package raises an error naming the extra."""
    require_logger(kind)
    from lightning.pytorch import loggers

    run_dir = Path(run_dir)
    if kind == "tensorboard":
        return loggers.TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version="")
    if kind == "mlflow":
        # a SQLite store in the run folder (MLflow's file store is deprecated); `mlflow ui
        # --backend-store-uri sqlite:///RUN/mlflow.db` shows it
        return loggers.MLFlowLogger(experiment_name=name, run_name=run_dir.name,
                                    tracking_uri=f"sqlite:///{(run_dir / 'mlflow.db').resolve()}")
    return loggers.CSVLogger(save_dir=str(run_dir), name="csv_logs", version="")


def _flat(prefix: str, value: Any, out: dict) -> dict:
    if isinstance(value, dict):
        for k, v in value.items():
            _flat(f"{prefix}/{k}" if prefix else str(k), v, out)
    elif isinstance(value, (list, tuple)):
        out[prefix] = ",".join(map(str, value))
    else:
        out[prefix] = value
    return out


class LoggerCallback(Callback):
    """Sends a run to a Lightning logger: the run's config and the design's figures as
    hyper-parameters when training starts, each epoch's metrics (as in metrics.csv) when it ends.

    ``kind``: 'tensorboard' | 'mlflow' | 'csv'. ``hparams``: extra hyper-parameters (the design's
    figures and variables). The logger is made when the run folder is known (at setup)."""

    def __init__(self, kind: str, hparams: dict | None = None, name: str = "archlab") -> None:
        self.kind, self.hparams, self.name = kind, dict(hparams or {}), name
        self.logger = None

    def setup(self, trainer, pl_module, stage: str) -> None:
        if self.logger is None and trainer.is_global_zero:
            self.logger = make_logger(self.kind, Path(trainer.default_root_dir), self.name)

    def on_train_start(self, trainer, pl_module) -> None:
        if self.logger is None:
            return
        params = _flat("config", pl_module.config.model_dump(mode="json"), {})
        params.update(_flat("", self.hparams, {}))
        self.logger.log_hyperparams({k: ("" if v is None else v) for k, v in params.items()})

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.logger is None:
            return
        metrics: dict[str, float] = {}
        for prefix, values in (("train", pl_module.epoch_train_metrics()), ("val", pl_module.val_metrics)):
            for k, v in values.items():
                if isinstance(v, float) and math.isfinite(v):
                    metrics[f"{prefix}/{k}"] = v
        if trainer.optimizers:
            metrics["lr"] = float(trainer.optimizers[0].param_groups[0]["lr"])
        self.logger.log_metrics(metrics, step=trainer.current_epoch)

    def on_train_end(self, trainer, pl_module) -> None:
        if self.logger is not None:
            self.logger.finalize("success")


def _health_monitor(config: TrainConfig, run_dir: Path) -> Callback | None:
    """The diagnostics health monitor, writing ``<run>/health/``, when that capability is
    installed. Nodes frozen over loaded weights (``--freeze`` with ``--init-from``) are frozen
    on purpose and not reported as frozen layers; frozen without them they keep their random
    initialisation (fixed random features), which ``frozen_layers`` names."""
    try:
        from ..diagnose.callback import HealthMonitor
    except ImportError:
        return None
    return HealthMonitor(run_dir / "health",
                         expected_frozen=tuple(config.freeze) if config.init_from else ())


def _progress_bar() -> Callback:
    try:
        from lightning.pytorch.callbacks import RichProgressBar

        return RichProgressBar(refresh_rate=1, leave=True)
    except (ImportError, ModuleNotFoundError):  # rich missing: Lightning's tqdm bar
        from lightning.pytorch.callbacks import TQDMProgressBar

        return TQDMProgressBar(refresh_rate=10)


def make_trainer(config: TrainConfig, run_dir: Path, callbacks: list[Callback]) -> L.Trainer:
    """A ``lightning.Trainer`` with archlab's settings; scale-out options pass through."""
    _quiet_lightning()
    return L.Trainer(
        max_epochs=config.epochs,
        accelerator=config.accelerator,
        devices=config.devices,
        num_nodes=config.num_nodes,
        strategy=config.strategy,
        precision=config.precision,
        deterministic=config.deterministic,
        gradient_clip_val=config.clip,
        gradient_clip_algorithm=config.clip_by if config.clip else None,
        callbacks=callbacks,
        plugins=[SafeCheckpointIO()],
        default_root_dir=str(run_dir),
        logger=False,                # metrics.csv is the run's log; no per-step logger cost
        enable_model_summary=False,  # archlab analyze shows the design; skip the extra pass
        enable_progress_bar=config.progress,
        num_sanity_val_steps=0,      # the design is already shape-checked; diagnostics run checks
        enable_checkpointing=True,
        benchmark=False,
    )


def _quiet_lightning() -> None:
    for name in ("lightning.pytorch", "lightning.fabric", "lightning.pytorch.utilities.rank_zero",
                 "lightning.pytorch.accelerators.cuda"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # in-memory data: a worker process would only add copying; the warning does not apply
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
    # a resumed run writes into its own checkpoint folder on purpose
    warnings.filterwarnings("ignore", message=".*exists and is not empty.*")
    warnings.filterwarnings("ignore", message=".*treespec, LeafSpec.*")  # inside Lightning


# ------------------------------------------------------------------------------ setup -------


@dataclass
class Setup:
    """Everything a run trains with, before training starts (see :func:`prepare`)."""

    config: TrainConfig
    design: Any                       # archlab Design, or None for a plain nn.Module
    model: nn.Module
    data: ArrayData
    splits: Splits
    scaling: Scaling
    task: Task
    module: DesignModule
    datamodule: ArrayDataModule
    node_paths: list[str] = field(default_factory=list)
    transfer: dict | None = None
