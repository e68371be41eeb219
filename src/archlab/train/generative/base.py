"""What the generative LightningModules share: metrics dicts, seeded randomness, optimisers."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import nn

from ..config import TrainConfig
from ..engine import epoch_seed, make_optimizer


class GenerativeModule(L.LightningModule):
    """Base of the GAN, VAE, autoencoder and image-to-image modules.

    ``train_metrics``, ``val_metrics`` and ``test_metrics`` hold the latest epoch's floats (the
    per-epoch ``metrics.csv`` reads them, as for classification); ``history`` holds per-step
    scalars that the generative health detectors read (``health/generative.jsonl``).
    """

    def __init__(self, config: TrainConfig, steps_per_epoch: int, value_range: tuple[float, float],
                 checkpoint_extra: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.config = config
        self.steps_per_epoch = steps_per_epoch
        self.value_range = value_range
        self.checkpoint_extra = checkpoint_extra or {}
        self.train_metrics: dict = {}
        self.val_metrics: dict = {}
        self.test_metrics: dict = {}
        self.history: list[dict] = []
        self.epoch_hooks: list = []      # callables(module, epoch) run at validation end (samples)
        self._sums: dict[str, dict[str, float]] = {}
        self.rng = torch.Generator()

    # ---- additive metric sums -----------------------------------------------------------
    def _reset(self, name: str) -> None:
        self._sums[name] = {"count": 0.0}

    def _add(self, name: str, n: int, **values: float | torch.Tensor) -> None:
        sums = self._sums.setdefault(name, {"count": 0.0})
        sums["count"] += n
        for k, v in values.items():
            sums[k] = sums.get(k, 0.0) + float(v) * n

    def _means(self, name: str) -> dict:
        sums = self._sums.get(name, {"count": 0.0})
        n = max(sums["count"], 1.0)
        return {k: v / n for k, v in sums.items() if k != "count"}

    def epoch_train_metrics(self) -> dict:
        self.train_metrics = self._means("train")
        return self.train_metrics

    def on_train_epoch_start(self) -> None:
        # per rank under DDP: each process draws its own noise (the same noise on every rank would
        # make the global batch's generated half the same samples repeated)
        seed = epoch_seed(self.config.seed, self.current_epoch) + 1_000_003 * int(self.global_rank)
        torch.manual_seed(seed)
        self.rng.manual_seed(seed)
        self._reset("train")

    def on_validation_epoch_start(self) -> None:
        self._reset("val")

    def on_test_epoch_start(self) -> None:
        torch.manual_seed(self.config.seed)
        self.rng.manual_seed(self.config.seed + 1)
        self._reset("test")

    # Evaluation for modules that score a batch with ``self._eval(name, batch)`` (the
    # reconstruction and image-to-image modules); the GAN module overrides these steps.
    def validation_step(self, batch, batch_idx: int) -> None:
        self._eval("val", batch)

    def on_validation_epoch_end(self) -> None:
        self.val_metrics = self._means("val")
        self.log("val/loss", self.val_metrics.get("loss", float("nan")), prog_bar=True)
        self.run_epoch_hooks()

    def test_step(self, batch, batch_idx: int) -> None:
        self._eval("test", batch)

    def on_test_epoch_end(self) -> None:
        self.test_metrics = self._means("test")

    def run_epoch_hooks(self) -> None:
        if self.trainer is not None and self.trainer.sanity_checking:
            return
        for hook in self.epoch_hooks:
            hook(self, self.current_epoch)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["archlab"] = dict(self.checkpoint_extra)
        # what a resumed run needs beyond weights, optimisers and epoch (Lightning's own): how
        # many per-step records precede it, and the GAN's batch count (its d_steps phase)
        checkpoint["generative"] = {"history_rows": len(self.history),
                                    "batches": int(getattr(self, "_batches", 0))}

    def record(self, **values: float) -> None:
        """One per-step health record (floats; NaN stays NaN)."""
        self.history.append({"step": len(self.history), "epoch": int(self.current_epoch), **values})


def grad_norm(model: nn.Module) -> float:
    """Global L2 norm of a model's gradients (0 when none)."""
    norms = [p.grad.detach().norm() for p in model.parameters() if p.grad is not None]
    return float(torch.stack(norms).norm()) if norms else 0.0


def optimizer_for(model: nn.Module, config: TrainConfig, lr: float, steps: int):
    """archlab's optimiser (Adam by default, weight decay on weights only) at learning rate ``lr``."""
    return make_optimizer(model, config.model_copy(update={"lr": lr}), steps)
