"""Runs: train a design into a run folder, resume it, and use it later (evaluate, predict).

A run folder holds everything needed to understand, reproduce and reuse the run::

    runs/<name>/
      design.yaml          the resolved design (archlab.load reads it back)
      config.yaml          the full TrainConfig, with the seed actually used
      data.json            the data spec and what was read (samples, shape, classes)
      splits.npz           train/val/test sample indices (int64 arrays, no pickle)
      scaling.json         per-channel mean/std of the TRAINING split
      metrics.csv          one row per epoch
      checkpoints/         last.ckpt (resumable), best.ckpt (best validation metric)
      model.safetensors    the best weights, with the design in the metadata
      summary.json         test metrics, training time, code version
      health/              free for monitors (the diagnostics health monitor writes here)
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import yaml
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from torch import nn

from ..errors import ArchlabError, UsageError
from .checkpoint import (
    WEIGHTS_FILE,
    CheckpointError,
    atomic_write_text,
    compare_state,
    load_matching,
    read_checkpoint,
    read_weights,
    save_weights,
)
from .config import TrainConfig, make_config
from .data import ArrayData, DataSpec, load_data, load_named_inputs
from .engine import (
    CHECKPOINT_DIR,
    METRICS_FILE,
    Setup,
    _whole_row,
    default_callbacks,
    make_trainer,
    split_outputs,
)
from .prepare import Scaling, Splits
from .setup import code_revision, load_design, match_input, prepare
from .tasks import make_task

HEALTH_DIR = "health"
_SPLIT_NAMES = {"train": "training", "val": "validation", "test": "test"}


class RunError(ArchlabError):
    """A run folder is missing or incomplete."""


@dataclass
class Run:
    """A run folder. ``summary`` and ``metrics`` read its files; ``model()`` rebuilds the trained
    network; ``evaluate()`` and ``predict()`` use the run's own scaling statistics."""

    path: Path
    _module: nn.Module | None = None  # the trained network when this process trained it

    @classmethod
    def open(cls, path: str | Path) -> Run:
        p = Path(path)
        if not p.exists():
            raise RunError("no such run folder", source=str(p),
                           fix="check the path; runs are written under runs/ by `archlab train`")
        if not p.is_dir():
            raise RunError("not a run folder (a file, not a folder)", source=str(p),
                           fix="give a folder written by `archlab train`, e.g. runs/NAME")
        if not (p / "config.yaml").exists():
            raise RunError("not a run folder (no config.yaml)", source=str(p),
                           fix="give a folder written by `archlab train`, e.g. runs/NAME")
        return cls(p)

    def _read(self, name: str, reader, *, missing: Any = RunError):
        """One file of the run read by ``reader(path)``; a missing, damaged or hand-edited file
        is a :class:`RunError` naming the file (never a traceback)."""
        f = self.path / name
        if not f.exists():
            if missing is not RunError:
                return missing
            raise RunError(f"the run folder has no {name} (deleted?)", source=str(self.path),
                           fix="restore the file from a copy of the run, or train the run again")
        try:
            from ..limits import check_regular_file

            check_regular_file(f, f"run file {name}", limit=None)
            return reader(f)
        except ArchlabError as exc:
            raise exc.located(source=str(f)) from None
        except Exception as exc:  # damaged: not UTF-8, not JSON/YAML, truncated zip, wrong fields
            raise RunError(f"{name} is damaged or not what archlab wrote "
                           f"({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''})",
                           source=str(f),
                           fix="restore the file from a copy of the run, or train the run again") from None

    # ---- files ------------------------------------------------------------------------------
    @property
    def config(self) -> TrainConfig:
        def read(f: Path) -> TrainConfig:
            values = yaml.safe_load(f.read_text(encoding="utf-8"))
            if not isinstance(values, dict):
                raise ValueError(f"expected a mapping of settings, found {type(values).__name__}")
            return TrainConfig(**values)

        return self._read("config.yaml", read)

    @property
    def data_info(self) -> dict:
        def read(f: Path) -> dict:
            info = json.loads(f.read_text(encoding="utf-8"))
            if not isinstance(info, dict) or not {"task", "classes", "sample_shape"} <= set(info):
                raise ValueError("expected a mapping with task, classes and sample_shape")
            return info

        return self._read("data.json", read)

    @property
    def summary(self) -> dict:
        def read(f: Path) -> dict:
            summary = json.loads(f.read_text(encoding="utf-8"))
            if not isinstance(summary, dict):
                raise ValueError(f"expected a mapping, found {type(summary).__name__}")
            return summary

        return self._read("summary.json", read, missing={})

    @property
    def test_metrics(self) -> dict:
        return self.summary.get("test", {})

    @property
    def metrics(self) -> list[dict]:
        import csv

        def read(f: Path) -> list[dict]:
            with open(f, newline="", encoding="utf-8") as fh:
                # a torn last line (a run killed while appending its row) is left out
                return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(fh)
                        if _whole_row(row)]

        return self._read(METRICS_FILE, read, missing=[])

    @property
    def splits(self) -> Splits:
        return self._read("splits.npz", Splits.load)

    @property
    def scaling(self) -> Scaling:
        return self._read("scaling.json", Scaling.load)

    @property
    def health_dir(self) -> Path:
        return self.path / HEALTH_DIR

    def design(self):
        f = self.path / "design.yaml"
        if not f.exists():
            raise RunError("the run folder has no design.yaml (deleted?): the network cannot be "
                           "rebuilt without it", source=str(self.path),
                           fix="restore design.yaml from a copy of the run, or pass the design: "
                               "run.model(design=...)")
        if not self._read("design.yaml", lambda p: p.read_text(encoding="utf-8")).strip():
            raise RunError("this run was trained from a Python nn.Module and has no design.yaml",
                           source=str(self.path), fix="rebuild the module yourself and pass it to model(module=...)")
        return load_design(f)

    # ---- reuse ------------------------------------------------------------------------------
    def model(self, design: Any = None, *, module: nn.Module | None = None, partial: bool = False) -> nn.Module:
        """The trained network in eval mode. ``design``: load the weights into another (changed)
        design instead: differences are reported, ``partial=True`` loads what matches."""
        if design is None and module is None and self._module is not None:
            return self._module.eval()
        node_paths: list[str] = []
        if module is None:
            d = self.design() if design is None else load_design(design)
            from ..build import build

            module = build(d)
            node_paths = [n.path for n in d.graph.nodes]
        load_matching(module, read_weights(self.path), partial=partial, node_paths=node_paths,
                      source=str(self.path / WEIGHTS_FILE))
        return module.eval()

    def evaluate(self, data: Any = None, split: str = "test", batch: int = 256) -> dict:
        """Metrics on the run's own split (default: test), or on all of another data set, scaled
        with the run's training statistics."""
        info = self.data_info
        task = make_task(info["task"], self.config.loss, len(info["classes"])).with_target_scaling(self.scaling)
        if data is None:
            if split not in ("train", "val", "test"):
                raise UsageError(f"no split named '{split}'", path="split",
                                 fix="use split='train', 'val' or 'test'")
            idx = torch.as_tensor(getattr(self.splits, split))
            if len(idx) == 0:  # metrics of no samples would read as a loss of 0
                fractions = ",".join(f"{f:g}" for f in self.config.split)
                others = [s for s in ("test", "val", "train") if s != split and len(getattr(self.splits, s))]
                raise RunError(f"the run's {_SPLIT_NAMES[split]} split is empty (trained with "
                               f"--split {fractions}): there is nothing to evaluate",
                               source=str(self.path),
                               fix=f"evaluate the {others[0]} split (--split {others[0]}) or other "
                                   "data (--data FILE)")
            arrays = load_data(DataSpec(**info["spec"]))
            x, y = arrays.x[idx], arrays.y[idx]
        else:
            arrays = load_data(data)
            x, y = arrays.x, arrays.y
        model = self.model()
        x = match_input(ArrayData(x, y, arrays.task, arrays.classes, arrays.source),
                        tuple(info["sample_shape"])).x
        x = self.scaling.apply(x)
        y = self.scaling.apply_target(y)  # the task's metrics undo it: they are in the data's units
        state = task.empty_state()
        with torch.no_grad():
            for i in range(0, len(x), batch):
                out, _ = split_outputs(model(x[i:i + batch]))
                task.update(state, out, y[i:i + batch], task.loss(out, y[i:i + batch]))
        return task.compute(state)

    def predict(self, inputs: torch.Tensor | Sequence[str], batch: int = 256) -> dict:
        """Predictions for unscaled inputs (a tensor (N, *sample_shape) or files: .npy, .npz,
        .csv, images, image folders). Returns ``outputs``, ``names`` (where each sample came
        from: file name, ``file.npy[i]`` or ``file.csv:LINE``) and, for classification,
        ``labels`` (class names) and ``probabilities``."""
        info = self.data_info
        if isinstance(inputs, torch.Tensor):
            x, names = inputs, [str(i) for i in range(len(inputs))]
        else:
            features = math.prod(info["sample_shape"])
            x, names = load_named_inputs(list(inputs), label=(info.get("spec") or {}).get("label"),
                                         features=features)
        try:
            x = match_input(ArrayData(x.float(), None, info["task"], tuple(info["classes"]),
                                      "inputs"), tuple(info["sample_shape"])).x
        except ArchlabError as exc:  # name the files the inputs came from
            where = ", ".join(map(str, inputs)) if not isinstance(inputs, torch.Tensor) else None
            raise exc.located(source=where) from None
        if x.numel() and not torch.isfinite(x).all():  # as in training: every task, every input
            row = int(torch.nonzero(~torch.isfinite(x.reshape(len(x), -1)).all(1))[0])
            raise RunError(f"inputs contain NaN or infinity (first in {names[row]})",
                           source=names[row].rsplit("[", 1)[0],
                           fix="clean or impute the missing values before predicting")
        x = self.scaling.apply(x)
        model = self.model()
        with torch.no_grad():
            out = torch.cat([split_outputs(model(x[i:i + batch]))[0] for i in range(0, len(x), batch)])
        if info["task"] == "regression":
            out = self.scaling.unscale_target(out)  # predictions in the data's units
        result: dict[str, Any] = {"task": info["task"], "outputs": out, "names": names}
        if info["task"] in ("classification", "segmentation"):
            probs = out.softmax(1)
            result["probabilities"] = probs
            result["predicted"] = probs.argmax(1)
            if info["task"] == "classification":
                result["labels"] = [info["classes"][i] for i in result["predicted"].tolist()]
        return result


def _number(text: str):
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


# ------------------------------------------------------------------------------ training ----


def _run_name(setup: Setup, data: Any) -> str:
    design = setup.design.name if setup.design is not None else type(setup.model).__name__.lower()
    source = Path(str(setup.data.source)).name.replace(".", "_") or "data"
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{design}-{source}-{stamp}-s{setup.config.seed}"


def claim_run_dir(folder: Path, *, numbered: bool) -> Path:
    """Create a new, empty run folder and return it; an existing run is never written into.

    ``numbered`` (a generated name): take the first free ``NAME``, ``NAME-2``, ``NAME-3``...
    as Lightning's and Ultralytics' run folders do. A name the user chose is refused when taken,
    with the fix. The folder is created with ``mkdir`` (atomic), so two processes starting at
    once never share a folder, and stale files of an older run never mix with a new one."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise RunError("the folder for run folders is a file", source=str(folder.parent),
                       fix="give --out a folder (it is created when missing)") from None
    except PermissionError:
        raise RunError("cannot create the folder for run folders (permission denied)",
                       source=str(folder.parent), fix="give --out a folder you can write to") from None
    candidate, i = folder, 1
    while True:
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            if not numbered:
                what = "a run folder" if (candidate / "config.yaml").exists() else "a file or folder"
                raise RunError(f"{what} named '{candidate.name}' already exists: a run is never "
                               "overwritten", source=str(candidate),
                               fix=f"continue it with `archlab train --resume {candidate}`, choose another "
                                   "--name, or omit --name for a new numbered folder") from None
            i += 1
            candidate = folder.with_name(f"{folder.name}-{i}")
        except PermissionError:
            raise RunError("cannot create the run folder (permission denied)", source=str(candidate),
                           fix="give --out a folder you can write to") from None


def _write_run_files(run_dir: Path, setup: Setup, data_spec: dict) -> None:
    (run_dir / HEALTH_DIR).mkdir(exist_ok=True)
    atomic_write_text(run_dir / "design.yaml", setup.design.to_yaml() if setup.design is not None else "")
    atomic_write_text(run_dir / "config.yaml",
                      yaml.safe_dump(setup.config.model_dump(mode="json"), sort_keys=False))
    info = {"spec": data_spec, **setup.data.describe(), "splits": setup.splits.sizes()}
    atomic_write_text(run_dir / "data.json", json.dumps(info, indent=2))
    setup.splits.save(run_dir / "splits.npz")
    setup.scaling.save(run_dir / "scaling.json")


def _data_spec(data: Any) -> dict:
    if isinstance(data, ArrayData):
        return {"source": data.source}
    return DataSpec.of(data).model_dump(mode="json")


def train(design: Any, data: Any = "mnist5k", *, callbacks: Sequence[Callback] = (),
          variables: dict | None = None, **options: Any) -> Run:
    """Train a design on data and return the :class:`Run`.

    ``design``: a Design, path, zoo name, dict, YAML text, or a plain ``nn.Module``.
    ``data``: ``'digits'``, ``'mnist5k'``, ``'synthetic-classification'``, a path, or a mapping of
    :class:`~archlab.train.data.DataSpec` fields. ``options``: :class:`TrainConfig` fields
    (``epochs=5, lr=3e-3, optimizer='sgd', patience=3, seed='random', ...``). ``callbacks``:
    Lightning callbacks added to :func:`~archlab.train.engine.default_callbacks`.
    Generative tasks (``task='gan' | 'vae' | 'autoencoder' | 'image-to-image'``) are trained by
    :func:`archlab.train.generative.train_generative`.

    >>> import tempfile
    >>> run = train('digits_mlp', 'digits', epochs=2, lr=3e-3, progress=False, health=False,
    ...             out=tempfile.mkdtemp())
    >>> run.test_metrics['accuracy'] > 0.5, len(run.metrics)
    (True, 2)
    """
    from .generative import GENERATIVE_TASKS, train_generative

    if options.get("task") in GENERATIVE_TASKS:
        return train_generative(design, data, callbacks=callbacks, variables=variables, **options)
    config = make_config(options).resolved_seed()
    inherited = _launched_run_dir()
    if inherited is not None:  # a DDP worker process: same run folder and seed as rank 0
        run = Run.open(inherited)
        config = config.model_copy(update={"seed": run.config.seed, "name": inherited.name,
                                           "out": str(inherited.parent)})
    setup = prepare(design, data, config, variables=variables)
    run_dir = inherited or Path(config.out) / (config.name or _run_name(setup, data))
    if inherited is None:
        run_dir = claim_run_dir(run_dir, numbered=config.name is None)
        _write_run_files(run_dir, setup, _data_spec(data))
        # Lightning's DDP launcher re-runs this command once per extra device; they inherit the
        # environment, so they find rank 0's run folder (and its drawn seed) here.
        os.environ[RUN_DIR_ENV] = str(run_dir)
    return _fit(setup, run_dir, list(callbacks), ckpt_path=None)


RUN_DIR_ENV = "ARCHLAB_RUN_DIR"


def _launched_run_dir() -> Path | None:
    """Rank 0's run folder when this process is a DDP worker started by Lightning's launcher."""
    rank = int(os.environ.get("LOCAL_RANK", "0") or 0) + int(os.environ.get("NODE_RANK", "0") or 0)
    inherited = os.environ.get(RUN_DIR_ENV)
    if rank > 0 and inherited and (Path(inherited) / "config.yaml").exists():
        return Path(inherited)
    return None


def resume(path: str | Path, *, callbacks: Sequence[Callback] = (), epochs: int | None = None,
           loop: str | None = None) -> Run:
    """Continue a run from ``checkpoints/last.ckpt`` with its own design, data, splits, scaling
    and seed: it ends with the metrics an uninterrupted run would have reached.
    ``epochs`` raises the epoch budget (train longer); ``loop`` ('auto' | 'lightning') overrides
    the run's choice of training loop (a checkpoint of either loop resumes with either)."""
    run = Run.open(path)
    ckpt = run.path / CHECKPOINT_DIR / "last.ckpt"
    if not ckpt.exists():
        raise RunError("no checkpoints/last.ckpt to resume from", source=str(run.path),
                       fix="the run stopped before its first epoch ended; start it again with archlab train")
    config = run.config
    from .generative import GENERATIVE_TASKS

    if config.task in GENERATIVE_TASKS:   # two optimisers, samples, judge: its own resume
        from .generative.run import resume_generative

        return resume_generative(run, callbacks=callbacks, epochs=epochs)
    if epochs and epochs > config.epochs and config.schedule != "constant":
        # the schedule's length is fixed when a run starts (onecycle refuses extra steps, cosine
        # would climb back up): a longer run needs a schedule laid out for its length
        raise UsageError(f"--epochs {epochs}: this run's {config.schedule} schedule was laid out for "
                         f"{config.epochs} epochs when it started and cannot be extended",
                         source=str(run.path), path="--epochs",
                         fix=f"start a new run from its weights (archlab train DESIGN --init-from {run.path} "
                             f"--epochs {epochs}), or resume without --epochs")
    if epochs:
        config = config.model_copy(update={"epochs": epochs})
    if loop is not None:
        config = make_config({**config.model_dump(), "loop": loop})
    spec = run.data_info["spec"]
    setup = prepare(run.design(), spec, config, splits=run.splits, scaling=run.scaling)
    state = read_weights(ckpt)
    diff = compare_state(setup.model.state_dict(), state, setup.node_paths)
    if not diff.exact:  # report per node, instead of Lightning's raw strict-loading error
        raise CheckpointError(f"the checkpoint does not fit the run's design: {diff.describe()}",
                              source=str(ckpt), fix="start a new run with --init-from to reuse the matching weights")
    for stale in ckpt.parent.glob(".*.tmp"):  # writes a killed run never finished (never published)
        stale.unlink(missing_ok=True)
    return _fit(setup, run.path, list(callbacks), ckpt_path=str(ckpt))


def _fit(setup: Setup, run_dir: Path, extra: list[Callback], ckpt_path: str | None) -> Run:
    has_val = len(setup.splits.val) > 0
    callbacks, trainer = make_run_trainer(setup.config, run_dir, setup.task, has_val, extra)
    dm = setup.datamodule
    started = time.perf_counter()
    trainer.fit(setup.module, train_dataloaders=dm.train_dataloader(),
                val_dataloaders=dm.val_dataloader() if has_val else None, ckpt_path=ckpt_path)
    fit_seconds = time.perf_counter() - started
    if trainer.interrupted:
        raise UsageError("training was interrupted", source=str(run_dir),
                         fix=f"continue with: archlab train --resume {run_dir}")

    # Test with the best validation checkpoint: the test split is the last sanity check (C9).
    ckpt_cb = next((c for c in callbacks if isinstance(c, ModelCheckpoint) and c.monitor is not None), None)
    best = ckpt_cb.best_model_path if has_val and ckpt_cb is not None and ckpt_cb.best_model_path else None
    best_epoch = None
    if best:
        best_ckpt = read_checkpoint(Path(best))
        setup.module.load_state_dict(best_ckpt["state_dict"])
        # the epoch whose weights are kept, read from the kept file itself: the summary can
        # never name another epoch than the one model.safetensors and the test metrics come from
        best_epoch = int(best_ckpt["epoch"]) if "epoch" in best_ckpt else None
    test: dict = {}
    if len(setup.splits.test):
        trainer.test(setup.module, dataloaders=dm.test_dataloader(), verbose=False)
        test = setup.module.test_metrics
    if trainer.is_global_zero:
        extra_meta = {"archlab_design": setup.design.to_yaml() if setup.design is not None else "",
                      "format": "archlab-weights-1"}
        save_weights(setup.model, run_dir / WEIGHTS_FILE, extra_meta)
        metrics_cb = callbacks[0]
        rows = getattr(metrics_cb, "rows", [])
        summary = {
            "run": str(run_dir),
            "design": setup.design.name if setup.design is not None else type(setup.model).__name__,
            "data": setup.data.source,
            "task": setup.task.name,
            "seed": setup.config.seed,
            "epochs_run": len(rows),
            "best_epoch": best_epoch if best_epoch is not None else _best_epoch(rows, setup),
            "params": sum(p.numel() for p in setup.model.parameters()),
            "train_seconds": round(sum(float(r.get("seconds", 0) or 0) for r in rows), 3),
            "fit_seconds": round(fit_seconds, 3),
            "val": _final_val(rows),
            "test": test,
            "transfer": setup.transfer,
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "code": code_revision(),
            "torch": torch.__version__,
        }
        atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2))
    return Run(run_dir, setup.model)


def make_run_trainer(config: TrainConfig, run_dir: Path, task, has_val: bool, extra: list[Callback]):
    """The callbacks and the trainer of a run: archlab's own loop (:mod:`archlab.train.loop`)
    when it applies (one process on the CPU, 32-bit, callbacks it can run), else
    ``lightning.Trainer``; both drive the same module hooks and callbacks."""
    from .loop import LoopProgress, LoopTrainer, loop_applies

    callbacks = default_callbacks(config.model_copy(update={"progress": False}), run_dir, task, has_val) + extra
    if not loop_applies(config, callbacks):
        if config.progress:
            callbacks.append(LoopProgress())
        return callbacks, LoopTrainer(config, run_dir, callbacks)
    callbacks = default_callbacks(config, run_dir, task, has_val) + extra
    return callbacks, make_trainer(config, run_dir, callbacks)


def _best_epoch(rows: list[dict], setup: Setup) -> int | None:
    """The tie rule, the same as the best checkpoint's (Lightning replaces it only on a strict
    improvement): the EARLIEST epoch with the best validation value."""
    key = f"val_{setup.task.monitor}"
    best: tuple[float, int] | None = None
    for r in rows:
        v = r.get(key)
        if not isinstance(v, (int, float)) or v != v:
            continue
        better = best is None or (v > best[0] if setup.task.mode == "max" else v < best[0])
        if better:
            best = (v, int(r["epoch"]))
    return None if best is None else best[1]


def _final_val(rows: list[dict]) -> dict:
    if not rows:
        return {}
    return {k[4:]: v for k, v in rows[-1].items() if k.startswith("val_")}
