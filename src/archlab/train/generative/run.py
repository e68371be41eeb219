"""Generative runs: train into a run folder, save sample grids and judge the samples.

A generative run folder holds what a classification run holds (design.yaml, config.yaml,
data.json, splits.npz, scaling.json, metrics.csv, checkpoints/, model.safetensors,
summary.json, health/) and::

      discriminator.yaml            gan, image-to-image with a discriminator
      discriminator.safetensors     its weights
      samples/epoch_003.png         gan: the fixed-noise grid after each epoch; vae: prior samples;
                                    autoencoder, image-to-image: input / output / target rows
      samples/reconstructions.png   vae, autoencoder: input, reconstruction pairs (test split)
      samples/prior.png             vae: decoded N(0, I) samples
      samples/interpolation.png     vae: decoded straight lines between encoded test images
      health/generative.jsonl       per-step losses, D outputs and gradient norms (gan)
      judge.json                    gan, vae: the judge's report per epoch and at the end
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from ..checkpoint import atomic_write_text, read_checkpoint, save_weights
from ..config import make_config
from ..engine import CHECKPOINT_DIR, METRICS_FILE, EpochMetricsCSV, _progress_bar, make_trainer
from .images import save_grid, to_unit
from .setup import GenerativeSetup, prepare_generative, with_task_defaults

SAMPLES_DIR = "samples"
HISTORY_FILE = "generative.jsonl"


def spaced(total: int, n: int) -> torch.Tensor:
    """n indices spread evenly over range(total) (all of them when total <= n)."""
    if total <= n:
        return torch.arange(total)
    return torch.linspace(0, total - 1, n).round().long()


def nearest_distance(x: torch.Tensor) -> torch.Tensor:
    """Median over the images of the distance to the nearest other image (L2, flattened)."""
    flat = x.flatten(1).double()
    d = torch.cdist(flat, flat)
    d.fill_diagonal_(float("inf"))
    return d.min(1).values.median()


def neighbour_ratio(samples: torch.Tensor, real: torch.Tensor) -> float:
    """:func:`nearest_distance` of the samples over that of as many real images."""
    return float(nearest_distance(samples) / nearest_distance(real).clamp_min(1e-12))


class SampleWriter:
    """Epoch hook: the sample grid of the epoch and, with a judge, its report in val_metrics."""

    def __init__(self, setup: GenerativeSetup, run_dir: Path, judge=None) -> None:
        self.setup, self.folder, self.judge = setup, Path(run_dir) / SAMPLES_DIR, judge
        self.reports: list[dict] = []
        self._real = None

    def real(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Real images of the test split (raw units) and their judge features, computed once."""
        if self._real is None:
            idx = torch.as_tensor(self.setup.splits.test if len(self.setup.splits.test) else self.setup.splits.val)
            raw = self.setup.data.x[idx].float()
            feats = self.judge.features(raw)[0] if self.judge is not None else None
            self._real = (raw, feats)
        return self._real

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        s = self.setup.scaling
        mean = torch.tensor(s.mean).view(1, -1, 1, 1)
        std = torch.tensor(s.std).view(1, -1, 1, 1)
        return x.detach().cpu() * std + mean

    def __call__(self, module, epoch: int) -> None:
        trainer = getattr(module, "_trainer", None)
        if trainer is not None and not trainer.is_global_zero:
            return   # DDP: rank 0 samples, judges and writes
        grid = self.grid(module)
        if grid is not None:
            save_grid(grid, self.folder / f"epoch_{epoch:03d}.png", rows=8)
        health: dict = {"epoch": epoch}
        if self.setup.task in ("gan", "vae"):
            health["sample_spread"] = self.spread(grid)
            health["neighbour_ratio"] = self.neighbour_ratio(grid)
            module.val_metrics["sample_spread"] = health["sample_spread"]
        if self.judge is not None and self.setup.task in ("gan", "vae"):
            report = self.evaluate(module, self.setup.config.judge_samples, seed=self.setup.config.seed + epoch)
            self.reports = [r for r in self.reports if r["epoch"] < epoch] + [{"epoch": epoch, **report}]
            atomic_write_text(self.folder.parent / "judge.json", json.dumps({"epochs": self.reports}, indent=2))
            for key in ("classifier_fid", "precision", "recall", "confident_share", "classes_covered",
                        "min_class_share", "feature_spread"):
                module.val_metrics[key] = float(report[key])
            health.update(classes_covered=report["classes_covered"], class_histogram=report["class_histogram"],
                          feature_spread=report["feature_spread"])
        if self.setup.config.health:
            folder = self.folder.parent / "health"
            folder.mkdir(parents=True, exist_ok=True)
            with open(folder / "samples.jsonl", "a" if epoch else "w") as fh:
                fh.write(json.dumps(health) + "\n")

    def spread(self, grid: torch.Tensor) -> float:
        """Mean per-pixel standard deviation across generated samples over the same for real
        images (both in [0, 1]): near 0 when every sample is the same image."""
        ds = self.setup.datamodule.split("val" if len(self.setup.splits.val) else "train")
        real = to_unit(ds.x[spaced(len(ds), len(grid))], self.setup.value_range)
        return float(grid.std(0).mean() / real.std(0).mean().clamp_min(1e-12))

    def neighbour_ratio(self, grid: torch.Tensor) -> float:
        """Median distance from each sample to its nearest other sample over the same for as many
        real images (both in [0, 1]): near 0 when the samples are near-copies of one another (or
        lie on a short curve, as from a latent of one value); noise-like samples score above 1."""
        ds = self.setup.datamodule.split("val" if len(self.setup.splits.val) else "train")
        return neighbour_ratio(grid, to_unit(ds.x[spaced(len(ds), len(grid))], self.setup.value_range))

    def evaluate(self, module, n: int, seed: int) -> dict:
        samples = module.sample(n, torch.Generator().manual_seed(int(seed) + 31))
        raw_real, real_f = self.real()
        return self.judge.report(self.raw(samples), raw_real, real_f)

    @torch.no_grad()
    def grid(self, module) -> torch.Tensor | None:
        vr = self.setup.value_range
        task = self.setup.task
        if task == "gan":
            return to_unit(module.generate(module.fixed_noise), vr)   # the sampler (weight average)
        if task == "vae":
            return to_unit(module.sample(64, torch.Generator().manual_seed(int(self.setup.config.seed))), vr)
        source, target = self._test_batch(16)
        model = module.model if task != "image-to-image" else module.generator
        was = model.training
        model.eval()
        fed = source if task == "image-to-image" else module.corrupt(source, torch.Generator().manual_seed(3))
        out = model(fed)
        out = module.output_to_range(out) if task != "image-to-image" else out
        model.train(was)
        return to_unit(torch.cat([fed, out.reshape(target.shape), target]), vr)

    def _test_batch(self, n: int):
        ds = self.setup.datamodule.split("test" if len(self.setup.splits.test) else "val")
        idx = spaced(len(ds), n)   # spread over the split (a data set sorted by class shows all)
        x, y = ds.x[idx], ds.y[idx]
        return (x, y) if self.setup.task == "image-to-image" else (x, x)

    # ---- the final pictures ------------------------------------------------------------------
    @torch.no_grad()
    def final(self, module) -> None:
        vr = self.setup.value_range
        if self.setup.task in ("vae", "autoencoder"):
            x, _ = self._test_batch(32)
            model = module.model
            model.eval()
            fed = module.corrupt(x, torch.Generator().manual_seed(3))
            rec = module.output_to_range(model(fed)).reshape(x.shape)
            rows = [fed, rec] if module.corruption is None else [x, fed, rec]
            pairs = torch.stack(rows, 1).flatten(0, 1)
            save_grid(to_unit(pairs, vr), self.folder / "reconstructions.png", rows=8)
        if self.setup.task == "vae":
            save_grid(to_unit(module.sample(64, torch.Generator().manual_seed(1)), vr),
                      self.folder / "prior.png", rows=8)
            x, _ = self._test_batch(16)
            z = module.encode(x)
            a, b = z[0::2][:8], z[1::2][:8]
            steps = torch.linspace(0, 1, 8).view(1, 8, *([1] * (z.dim() - 1)))
            line = (a.unsqueeze(1) * (1 - steps) + b.unsqueeze(1) * steps).flatten(0, 1)
            like = torch.zeros((len(line), *x.shape[1:]))
            save_grid(to_unit(module.output_to_range(module.decode(line, like)), vr),
                      self.folder / "interpolation.png", rows=len(a))
        if self.setup.task == "gan":
            save_grid(self.grid(module), self.folder / "final.png", rows=8)


class HistoryWriter(Callback):
    """Writes the module's per-step health records to ``health/generative.jsonl`` each epoch."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / HISTORY_FILE
        self.written = 0

    def on_train_start(self, trainer, pl_module) -> None:
        self.writes = trainer.is_global_zero   # DDP: rank 0 writes its own replica's record
        if not self.writes:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("")
        self.written = 0
        self.flush(pl_module)   # a resumed run's records before the checkpoint (resume_generative)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.flush(pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        self.flush(pl_module)

    def on_exception(self, trainer, pl_module, exception) -> None:
        self.flush(pl_module)

    def flush(self, pl_module) -> None:
        if not getattr(self, "writes", True):
            return
        rows = pl_module.history[self.written:]
        if rows:
            with open(self.path, "a") as fh:
                for r in rows:
                    fh.write(json.dumps({k: (v if v == v and abs(v) != float("inf") else str(v))
                                         if isinstance(v, float) else v for k, v in r.items()}) + "\n")
            self.written += len(rows)


def generative_callbacks(setup: GenerativeSetup, run_dir: Path, has_val: bool,
                         monitor: dict | None = None) -> list[Callback]:
    """metrics.csv, checkpoints, the per-step record and the per-network layer monitor
    (:mod:`.health`, with ``monitor``: the recorder options), the progress bar."""
    c = setup.config
    ckpt = Path(run_dir) / CHECKPOINT_DIR
    callbacks: list[Callback] = [EpochMetricsCSV(Path(run_dir) / METRICS_FILE)]
    if setup.task in ("vae", "autoencoder", "image-to-image") and has_val:
        callbacks.append(ModelCheckpoint(dirpath=ckpt, filename="best", monitor="val/loss", mode="min",
                                         save_top_k=1, save_on_train_epoch_end=True, save_weights_only=True,
                                         auto_insert_metric_name=False, enable_version_counter=False))
    callbacks.append(ModelCheckpoint(dirpath=ckpt, filename="last", monitor=None, save_top_k=1,
                                     save_on_train_epoch_end=True, every_n_epochs=c.save_every,
                                     auto_insert_metric_name=False, enable_version_counter=False))
    if c.health:
        from .health import health_callback, split_options

        callbacks.append(HistoryWriter(Path(run_dir) / "health"))
        callbacks.append(health_callback(setup, Path(run_dir) / "health", split_options(monitor)[0]))
    if c.progress:
        callbacks.append(_progress_bar())
    return callbacks


def train_generative(design: Any, data: Any = "mnist5k", *, callbacks: Sequence[Callback] = (),
                     variables: dict | None = None, judge_model=None, **options: Any):
    """Train a generative task (``task='gan' | 'vae' | 'autoencoder' | 'image-to-image'``) and
    return the :class:`~archlab.train.run.Run`. ``judge_model``: a :class:`archlab.judge.Judge`
    to use instead of the cached one of the data set (gan, vae; the option ``judge=False`` skips
    judging; ``judge_cache=DIR`` is the folder of the cached judges, default
    ``~/.cache/archlab/judges/``)."""
    import os

    from ..run import (
        RUN_DIR_ENV,
        Run,
        _data_spec,
        _launched_run_dir,
        _run_name,
        _write_run_files,
        claim_run_dir,
    )

    callbacks, monitor = _monitor_options(list(callbacks))
    if monitor is not None:   # archlab train's --health-* options: they configure this run's monitor
        options = {**options, "health": True}
    config = make_config(with_task_defaults(options)).resolved_seed()
    inherited = _launched_run_dir()
    if inherited is not None:  # a DDP worker process: rank 0's run folder and seed
        config = config.model_copy(update={"seed": Run.open(inherited).config.seed, "name": inherited.name,
                                           "out": str(inherited.parent)})
    setup = prepare_generative(design, data, config, variables=variables)
    judge = _judge(setup, data, judge_model)
    if inherited is not None:
        writer = SampleWriter(setup, inherited, judge)
        setup.module.epoch_hooks.append(writer)
        return fit_generative(setup, inherited, writer, list(callbacks), monitor)
    run_dir = claim_run_dir(Path(config.out) / (config.name or _run_name(setup, data)),
                            numbered=config.name is None)
    _write_run_files(run_dir, setup, _data_spec(data))
    os.environ[RUN_DIR_ENV] = str(run_dir)   # Lightning's DDP launcher starts the other ranks from here
    if setup.discriminator_design is not None:
        atomic_write_text(run_dir / "discriminator.yaml", setup.discriminator_design.to_yaml())
    if setup.task == "vae":
        import math

        (run_dir / "health").mkdir(exist_ok=True)
        atomic_write_text(run_dir / "health" / "generative_context.json",
                          json.dumps({"latent_units": math.prod(setup.module.latent_shape)}))
    writer = SampleWriter(setup, run_dir, judge)
    setup.module.epoch_hooks.append(writer)
    return fit_generative(setup, run_dir, writer, list(callbacks), monitor)


def _judge(setup: GenerativeSetup, data: Any, judge_model=None):
    config = setup.config
    judge = judge_model if config.judge else None
    if judge is None and config.judge and config.task in ("gan", "vae") and setup.data.y is not None:
        from ...judge import Judge

        judge = Judge.for_data(data if not hasattr(data, "x") else data.source, progress=config.progress,
                               cache=config.judge_cache)
    return judge


def resume_generative(run, *, callbacks: Sequence[Callback] = (), epochs: int | None = None):
    """Continue a generative run (:class:`~archlab.train.run.Run`) from ``checkpoints/last.ckpt``:
    both networks' weights and both optimisers' states, the epoch and Lightning's loop state
    (Lightning's checkpoint), the per-step record and the GAN's batch count (the d_steps phase),
    the judge's reports of the finished epochs. The fixed noise and the per-epoch random streams
    are functions of (seed, epoch), so the resumed run draws what the uninterrupted one would.
    The per-network layer monitor records the resumed part (as the classification monitor does),
    its steps numbered as the run's batches."""
    from ..checkpoint import read_checkpoint

    ckpt = run.path / CHECKPOINT_DIR / "last.ckpt"
    config = run.config
    if epochs:
        config = config.model_copy(update={"epochs": epochs})
    d_file = run.path / "discriminator.yaml"
    if config.discriminator and d_file.exists():   # the pair as trained, variables resolved
        config = config.model_copy(update={"discriminator": str(d_file), "d_variables": {}})
    data = run.data_info["spec"]
    setup = prepare_generative(run.design(), data, config, splits=run.splits)
    state = read_checkpoint(ckpt)
    done = int(state.get("epoch", -1)) + 1            # epochs finished before the checkpoint
    saved = state.get("generative") or {}
    module = setup.module
    history = run.path / "health" / HISTORY_FILE
    rows = _read_jsonl(history)[:int(saved.get("history_rows", 0))]
    module.history = rows
    module._batches = int(saved.get("batches", len(rows)))
    samples = run.path / "health" / "samples.jsonl"
    if samples.exists():   # an epoch sampled after the checkpoint is sampled again
        kept = [r for r in _read_jsonl(samples) if int(r.get("epoch", 0)) < done]
        samples.write_text("".join(json.dumps(r) + "\n" for r in kept))
    writer = SampleWriter(setup, run.path, _judge(setup, data))
    judged = run.path / "judge.json"
    if judged.exists():
        writer.reports = [r for r in json.loads(judged.read_text()).get("epochs", []) if r["epoch"] < done]
    module.epoch_hooks.append(writer)
    return fit_generative(setup, run.path, writer, list(callbacks), None, ckpt_path=str(ckpt))


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _monitor_options(callbacks: list[Callback]) -> tuple[list[Callback], dict | None]:
    """A :class:`~archlab.diagnose.callback.HealthMonitor` among the callbacks (archlab train
    passes one for its --health-* options) assumes automatic optimisation; its options go to the
    per-network monitor instead (:mod:`.health`), and it leaves the list."""
    try:
        from ...diagnose.callback import HealthMonitor
    except ImportError:
        return callbacks, None
    found = [c for c in callbacks if isinstance(c, HealthMonitor)]
    if not found:
        return callbacks, None
    opts = {k: v for k, v in found[-1].options.items() if k != "expected_frozen" or v}
    return [c for c in callbacks if not isinstance(c, HealthMonitor)], opts


def fit_generative(setup: GenerativeSetup, run_dir: Path, writer: SampleWriter, extra: list[Callback],
                   monitor: dict | None = None, ckpt_path: str | None = None):
    from ..run import Run

    dm = setup.datamodule
    has_val = len(setup.splits.val) > 0
    callbacks = generative_callbacks(setup, run_dir, has_val, monitor) + extra
    trainer = make_trainer(setup.config.model_copy(update={"clip": None, "strategy": _strategy(setup.config)}),
                           run_dir, callbacks)
    started = time.perf_counter()
    trainer.fit(setup.module, train_dataloaders=dm.train_dataloader(),
                val_dataloaders=dm.val_dataloader() if has_val else None, ckpt_path=ckpt_path)
    fit_seconds = time.perf_counter() - started
    best = next((c.best_model_path for c in callbacks if isinstance(c, ModelCheckpoint)
                 and c.monitor is not None and c.best_model_path), None)
    if best:
        setup.module.load_state_dict(read_checkpoint(Path(best))["state_dict"])
    test: dict = {}
    if len(setup.splits.test):
        trainer.test(setup.module, dataloaders=dm.test_dataloader(), verbose=False)
        test = dict(setup.module.test_metrics)
    if not trainer.is_global_zero:   # a DDP worker: rank 0 judges and writes the run
        return Run(run_dir, setup.model)
    writer.final(setup.module)
    judged = None
    if writer.judge is not None and setup.task in ("gan", "vae"):
        judged = writer.evaluate(setup.module, setup.config.judge_samples, seed=setup.config.seed + 10_000)
        test.update({k: v for k, v in judged.items() if isinstance(v, (int, float)) and k != "k"})
        atomic_write_text(run_dir / "judge.json", json.dumps({"epochs": writer.reports, "final": judged}, indent=2))
    meta = {"archlab_design": setup.design.to_yaml(), "format": "archlab-weights-1"}
    save_weights(setup.model, run_dir / "model.safetensors", meta)
    if setup.discriminator is not None:
        save_weights(setup.discriminator, run_dir / "discriminator.safetensors",
                     {"archlab_design": setup.discriminator_design.to_yaml(), "format": "archlab-weights-1"})
    health = _health(setup, run_dir, monitor)
    rows = getattr(callbacks[0], "rows", [])
    summary = {
        "run": str(run_dir), "design": setup.design.name,
        "discriminator": setup.discriminator_design.name if setup.discriminator_design else None,
        "data": setup.data.source, "task": setup.task, "loss": setup.loss or setup.config.gan_loss,
        "corrupt": str(setup.corruption) if setup.corruption else None,
        "value_range": list(setup.value_range), "seed": setup.config.seed, "epochs_run": len(rows),
        "best_epoch": None, "params": sum(p.numel() for p in setup.model.parameters()),
        "discriminator_params": sum(p.numel() for p in setup.discriminator.parameters())
        if setup.discriminator is not None else None,
        "train_seconds": round(sum(float(r.get("seconds", 0) or 0) for r in rows), 3),
        "fit_seconds": round(fit_seconds, 3),
        "val": {k[4:]: v for k, v in (rows[-1] if rows else {}).items() if k.startswith("val_")},
        "test": test, "judge": {k: judged[k] for k in ("judge", "judge_accuracy", "judge_real_confident_share")}
        if judged else None,
        "health": health, "transfer": None,
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    from ..setup import code_revision

    summary["code"] = code_revision()
    summary["torch"] = torch.__version__
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2, default=float))
    return Run(run_dir, setup.model)


def _strategy(config) -> str | None:
    """DDP for generative modules: each optimizer step's backward leaves the other network's
    parameters without gradient (the discriminator step detaches the samples), which plain DDP
    refuses ("parameters that were not used in producing the loss"): DDP then has to look for
    unused parameters on every backward."""
    return "ddp_find_unused_parameters_true" if config.strategy == "ddp" else config.strategy


def _health(setup: GenerativeSetup, run_dir: Path, monitor: dict | None = None) -> dict | None:
    """Run the generative detectors over the recorded history and merge the per-network
    monitors' verdicts (health/events.jsonl)."""
    if not setup.config.health:
        return None
    try:
        from ...diagnose.generative import assess_run
    except ImportError:
        return None
    from .health import split_options

    _, names, thresholds = split_options(monitor)
    return assess_run(run_dir, thresholds, detectors=names)
