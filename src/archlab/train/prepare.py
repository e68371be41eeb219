"""Splits, input scaling and image augmentation (principles C7, C9).

* Splits 70/20/10 by default, randomised with the run's seed, stratified by class for
  classification, so every split sees each class in proportion. The indices are saved with the
  run as ``splits.npz`` (plain int64 arrays, no pickle).
* Scaling: per-channel (images, sequences) or per-feature (vectors) mean and standard deviation,
  computed on the TRAINING split only and reused unchanged for validation, test and inference
  ("reuse the mean and the variance from the training data. Do not recompute them",
  deep-learning-designs, DD). Saved with the run as ``scaling.json``.
* Augmentation for images, in plain torch ops on whole batches (no torchvision): horizontal and
  vertical flips, and random shifts (a random crop of a zero-padded image).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .data import ArrayData, DataError


@dataclass(frozen=True)
class Splits:
    """Sample indices of the training, validation and test splits (sorted int64 arrays)."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}

    def save(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, train=self.train, val=self.val, test=self.test)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> Splits:
        with np.load(path, allow_pickle=False) as f:
            return cls(f["train"], f["val"], f["test"])


def make_splits(data: ArrayData, fractions: tuple[float, float, float], seed: int,
                stratify: bool = True) -> Splits:
    """Random train/val/test indices; per class when ``stratify`` and the task is classification.

    >>> import torch
    >>> from archlab.train.data import ArrayData
    >>> d = ArrayData(torch.zeros(100, 2), torch.arange(100) % 2, 'classification', ('a', 'b'), 't')
    >>> make_splits(d, (0.7, 0.2, 0.1), seed=0).sizes()
    {'train': 70, 'val': 20, 'test': 10}
    """
    rng = np.random.default_rng(seed)
    n = len(data)
    if stratify and data.task == "classification" and data.y is not None:
        labels = data.y.numpy()
        groups = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    else:
        groups = [np.arange(n)]
    # Each class is spread evenly over [0, 1) in a random order; sorting every sample by that
    # position and cutting the list at the split sizes gives each split its share of every class
    # while the totals stay exactly the rounded fractions of n.
    position = np.empty(n)
    for group in groups:
        group = rng.permutation(group)
        position[group] = (np.arange(len(group)) + rng.random()) / len(group)
    order = np.lexsort((rng.random(n), position))
    c_train, c_val, _ = _allocate(n, fractions)
    train, val, test = (np.sort(part).astype(np.int64) for part in
                        (order[:c_train], order[c_train:c_train + c_val], order[c_train + c_val:]))
    if len(train) == 0:
        raise DataError(f"the training split is empty ({n} samples, fractions {fractions})",
                        source=data.source, fix="use more data or a larger training fraction")
    for name, part, fraction in (("validation", val, fractions[1]), ("test", test, fractions[2])):
        if fraction > 0 and len(part) == 0:  # metrics of an empty split would be silently NaN
            raise DataError(f"the {name} split is empty: {n} samples are too few for the "
                            f"fractions {tuple(fractions)}", source=data.source,
                            fix="use more data (at least one sample in each split), or give "
                                "that split 0 with --split")
    return Splits(train, val, test)


def _allocate(n: int, fractions: tuple[float, float, float]) -> list[int]:
    exact = [f * n for f in fractions]
    counts = [math.floor(e) for e in exact]
    order = sorted(range(3), key=lambda i: exact[i] - counts[i], reverse=True)
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    return counts


@dataclass(frozen=True)
class Scaling:
    """Per-channel (or per-feature) standardisation: ``(x - mean) / std``.

    Statistics come from the training split; ``axis`` says which sample axis they index
    ('channel' = axis 0 of (C, ...), 'feature' = each element of a vector (F,), 'none').
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    axis: str = "channel"
    # regression targets: (y - target_mean) / target_std, statistics of the TRAINING split; the
    # model learns scaled targets, metrics and predictions are in the data's own units
    target_mean: float | None = None
    target_std: float | None = None

    def apply_target(self, y: torch.Tensor) -> torch.Tensor:
        if self.target_mean is None:
            return y
        return (y - self.target_mean) / self.target_std

    def unscale_target(self, out: torch.Tensor) -> torch.Tensor:
        if self.target_mean is None:
            return out
        return out * self.target_std + self.target_mean

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """(N, *sample_shape) -> same shape, scaled. Sample rank decides the broadcast."""
        if self.axis == "none":
            return x
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device)
        view = (1, -1) + (1,) * (x.dim() - 2)
        if x.dim() - 1 != 1 and self.axis == "channel":
            if x.shape[1] != len(self.mean):
                raise DataError(f"inputs have {x.shape[1]} channels, the run's scaling has {len(self.mean)}",
                                fix="give inputs shaped like the training data")
        return (x - mean.view(view)) / std.view(view)

    def to_json(self) -> dict:
        d = {"axis": self.axis, "mean": list(self.mean), "std": list(self.std), "fitted_on": "train split"}
        if self.target_mean is not None:
            d["target"] = {"mean": self.target_mean, "std": self.target_std}
        return d

    def save(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> Scaling:
        d = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(d, dict):
            raise ValueError(f"expected a mapping, found {type(d).__name__}")
        target = d.get("target") or {}
        if not isinstance(d.get("mean"), list) or not isinstance(d.get("std"), list) or \
                len(d["mean"]) != len(d["std"]) or not all(
                    isinstance(v, (int, float)) and math.isfinite(v) for v in d["mean"]):
            raise DataError("scaling.json needs 'mean' and 'std': lists of numbers of one length",
                            source=str(path),
                            fix="restore the file from a copy of the run, or train the run again")
        stds = list(d.get("std", [])) + ([target["std"]] if target.get("std") is not None else [])
        if any(not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0 for v in stds):
            raise DataError("scaling.json holds a standard deviation that is 0, negative or not a "
                            "number: scaling would divide by it", source=str(path),
                            fix="restore the file from a copy of the run, or train the run again")
        return cls(tuple(d["mean"]), tuple(d["std"]), d.get("axis", "channel"),
                   target.get("mean"), target.get("std"))


def fit_target_scaling(scaling: Scaling, y_train: torch.Tensor) -> Scaling:
    """``scaling`` with the regression targets' mean and std over the TRAINING split (one pair
    for all target elements: a vector target keeps its components' relative sizes). A constant
    target keeps std 1 (centred, not divided by zero)."""
    y = y_train.double()
    std = float(y.std(unbiased=False)) if y.numel() > 1 else 1.0
    return dataclasses.replace(scaling, target_mean=float(y.mean()), target_std=std if std > 1e-12 else 1.0)


def fit_scaling(x_train: torch.Tensor, enabled: bool = True) -> Scaling:
    """Statistics of the training inputs (N, *sample_shape); never of val/test.

    >>> s = fit_scaling(torch.tensor([[[1., 3.]], [[5., 7.]]]))   # (N=2, C=1, L=2)
    >>> s.mean, round(s.std[0], 4)
    ((4.0,), 2.2361)
    """
    if not enabled:
        return Scaling((), (), "none")
    x = x_train.double()
    if x.dim() == 2:  # vectors: one statistic per feature
        mean, std, axis = x.mean(0), x.std(0, unbiased=False), "feature"
    else:             # (N, C, ...): one statistic per channel, over samples and positions
        dims = [0] + list(range(2, x.dim()))
        mean, std, axis = x.mean(dims), x.std(dims, unbiased=False), "channel"
    # A constant channel/feature would divide by zero; leave it centred but unscaled, and say so.
    constant = int((std < 1e-8).sum())
    if constant:
        import warnings

        what = "features" if axis == "feature" else "channels"
        warnings.warn(f"{constant} of {std.numel()} input {what} are constant over the training "
                      f"split (std 0): they are centred but not scaled, and carry no information",
                      stacklevel=2)
    std = torch.where(std < 1e-8, torch.ones_like(std), std)
    return Scaling(tuple(mean.tolist()), tuple(std.tolist()), axis)


class AugmentSpec(BaseModel):
    """Image augmentation, applied to training batches only.

    Off by default: flips are wrong for digits and text, so the user opts in per data set.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    hflip: bool = Field(False, description="flip left-right with probability 1/2")
    vflip: bool = Field(False, description="flip top-bottom with probability 1/2")
    shift: int = Field(0, ge=0, description="random shift of up to this many pixels (pad + crop)")

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value):
        # "hflip,shift=2" on the command line
        if isinstance(value, str):
            out: dict = {}
            for item in filter(None, (v.strip() for v in value.split(","))):
                key, _, arg = item.partition("=")
                if key == "none":
                    continue
                out[key] = int(arg) if arg else (2 if key == "shift" else True)
            return out
        return value or {}

    @property
    def active(self) -> bool:
        return self.hflip or self.vflip or self.shift > 0


def augment(x: torch.Tensor, spec: AugmentSpec, generator: torch.Generator | None = None) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, H, W), each sample flipped/shifted independently."""
    if not spec.active or x.dim() != 4:
        return x
    n, _, h, w = x.shape
    dev = x.device

    def coin() -> torch.Tensor:
        return (torch.rand(n, generator=generator) < 0.5).to(dev).view(n, 1, 1, 1)

    if spec.hflip:
        x = torch.where(coin(), x.flip(3), x)
    if spec.vflip:
        x = torch.where(coin(), x.flip(2), x)
    if spec.shift:
        # pad by `shift`, then crop an (H, W) window at a per-sample random offset: two gathers,
        # one along rows and one along columns, so the whole batch moves in one pass
        p, c = spec.shift, x.shape[1]
        padded = torch.nn.functional.pad(x, (p, p, p, p))
        off = torch.randint(0, 2 * p + 1, (2, n), generator=generator).to(dev)
        rows = off[0].view(n, 1, 1, 1) + torch.arange(h, device=dev).view(1, 1, h, 1)
        x = padded.gather(2, rows.expand(n, c, h, w + 2 * p))
        cols = off[1].view(n, 1, 1, 1) + torch.arange(w, device=dev).view(1, 1, 1, w)
        x = x.gather(3, cols.expand(n, c, h, w))
    return x
