"""The judge: a classifier archlab trains on a data set, whose features judge generated samples.

Nothing pre-trained can be downloaded, so archlab trains its own feature network: a small CNN
(three conv-BN-ReLU layers, a hidden layer of 128 units: the layout of the zoo's mnist_cnn) on
the data set's own training split, with 2-pixel shifts, for :data:`JUDGE_EPOCHS` epochs with a
cosine learning-rate schedule. It is trained once per data set and
image shape and cached as an ordinary run folder in a cache folder given explicitly
(``Judge.for_data(data, cache=DIR)``, ``archlab train --judge-cache DIR``, the ``judge_cache``
option; default :data:`DEFAULT_CACHE`, ``~/.cache/archlab/judges/``), its test accuracy recorded
in the run's summary and in every report. No environment variable chooses it. Features are the 128 hidden units (the input of the last linear layer).

Its Frechet distance is reported as **classifier-FID on <data>**, never as FID: Inception-v3
features (2048 values from a network trained on ImageNet) and these (128 values from a
network trained on the same few thousand digits) are different spaces with different scales,
so the numbers are not comparable with published FIDs, nor between data sets or judges; they
compare generators judged by the same judge at the same sample sizes.

The judge's own ceiling is part of every report: ``judge_real_confident_share``, the share of the
real images of the judge's own test split that it labels with probability >= 0.9. A confident
share of generated samples is read against it: samples cannot be expected to be labelled more
confidently than real digits are. Version 1 (8 epochs, constant rate) labelled about 91-93% of
real test digits confidently, so a 90% target on samples sat almost at its ceiling; version 2
trains longer with a cosine schedule (see docs/training.md for the measured figures).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .metrics import class_coverage, frechet_distance, precision_recall

JUDGE_VERSION = 2
JUDGE_EPOCHS = 30
JUDGE_SCHEDULE = "cosine"


def judge_name(data: str) -> str:
    return f"classifier-FID on {data}"


DEFAULT_CACHE = Path("~/.cache/archlab/judges")


def cache_root(cache: str | Path | None = None) -> Path:
    """The judges' cache folder: ``cache`` when given, else ``~/.cache/archlab/judges/``."""
    return Path(cache if cache is not None else DEFAULT_CACHE).expanduser()


def judge_design(shape: tuple[int, ...], classes: int) -> dict:
    c, h, w = shape
    pools = 2 if min(h, w) >= 8 else 1
    layers = [{"name": "conv1", "block": "conv", "out": 16},
              {"name": "pool1", "block": "maxpool", "kernel": 2},
              {"name": "conv2", "block": "conv", "out": 32, "depth": 2}]
    if pools == 2:
        layers.append({"name": "pool2", "block": "maxpool", "kernel": 2})
    layers += [{"name": "flatten", "block": "flatten"},
               {"name": "fc1", "block": "linear", "out": 128, "act": "relu"},
               {"name": "drop", "block": "dropout", "p": 0.25},
               {"name": "fc2", "block": "linear", "out": classes}]
    return {"archlab": 1, "name": "judge_cnn", "task": "classification", "input": [c, h, w],
            "defaults": {"norm": "batch", "act": "relu"}, "layers": layers}


@dataclass
class Judge:
    """A trained judge classifier (eval mode) with the scaling of its own run."""

    model: nn.Module
    scaling: object
    data: str
    accuracy: float
    run: Path
    classes: int
    real_confident_share: float = float("nan")   # of the judge's own test split (its ceiling)
    _features: list = field(default_factory=list)

    @classmethod
    def for_data(cls, data, *, epochs: int = JUDGE_EPOCHS, seed: int = 0, cache: str | Path | None = None,
                 progress: bool = False) -> Judge:
        """The cached judge of a data set (name, path or spec), trained first when missing, in
        the folder ``cache`` (default ``~/.cache/archlab/judges/``)."""
        from ..train.data import DataSpec, load_data
        from ..train.run import Run, train

        spec = DataSpec.of(data)
        arrays = load_data(spec)
        shape = arrays.sample_shape if len(arrays.sample_shape) == 3 else (1, *arrays.sample_shape)
        safe = "".join(ch if ch.isalnum() else "_" for ch in Path(spec.source).name)
        key = f"{safe}-{'x'.join(map(str, shape))}-e{epochs}-s{seed}-v{JUDGE_VERSION}"
        root = cache_root(cache)
        done = [f for f in sorted(root.glob(f"{key}*")) if f.name.removeprefix(key).lstrip("-").isdigit()
                or f.name == key]
        done = [f for f in done if (f / "summary.json").exists() and (f / "model.safetensors").exists()]
        if done:
            run = Run.open(done[0])
        else:   # an interrupted earlier attempt keeps its folder; this one takes the next name
            name, i = key, 2
            while (root / name).exists():
                name, i = f"{key}-{i}", i + 1
            run = train(judge_design(shape, arrays.n_classes), spec, epochs=epochs, seed=seed,
                        augment="shift=2", schedule=JUDGE_SCHEDULE, out=str(root), name=name,
                        progress=progress, health=False)
        acc = float(run.test_metrics.get("accuracy", float("nan")))
        judge = cls(run.model(), run.scaling, Path(spec.source).name, acc, run.path, arrays.n_classes)
        test = torch.as_tensor(run.splits.test if len(run.splits.test) else run.splits.val)
        if len(test):
            judge.real_confident_share = class_coverage(judge.features(arrays.x[test])[1])["confident_share"]
        return judge

    @property
    def name(self) -> str:
        return judge_name(self.data)

    @torch.no_grad()
    def features(self, raw: torch.Tensor, batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
        """Unscaled images (N, C, H, W) in the data's own units -> (features (N, 128), probs (N, K))."""
        captured: list[torch.Tensor] = []
        head = self.model.get_submodule("fc2")
        handle = head.register_forward_pre_hook(lambda m, args: captured.append(args[0].flatten(1)))
        probs = []
        try:
            x = self.scaling.apply(raw.float().cpu())
            for i in range(0, len(x), batch):
                probs.append(self.model(x[i:i + batch]).softmax(1))
        finally:
            handle.remove()
        return torch.cat(captured), torch.cat(probs)

    def report(self, samples_raw: torch.Tensor, real_raw: torch.Tensor,
               real_features: torch.Tensor | None = None) -> dict:
        """Judge generated samples against real images (both unscaled, same shape)."""
        fake_f, fake_p = self.features(samples_raw)
        real_f = real_features if real_features is not None else self.features(real_raw)[0]
        out = {"judge": self.name, "judge_accuracy": self.accuracy,
               "judge_real_confident_share": self.real_confident_share, "samples": len(fake_f),
               "real_samples": len(real_f),
               "classifier_fid": frechet_distance(real_f.double().numpy(), fake_f.double().numpy())}
        out.update(precision_recall(real_f, fake_f))
        out.update(class_coverage(fake_p))
        out["feature_spread"] = float(fake_f.std(0).mean() / real_f.std(0).mean().clamp_min(1e-12))
        return out
