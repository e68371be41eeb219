"""Known-faulty and healthy training set-ups: the ground truth the health monitor is judged on.

A :class:`Setup` is a small, complete training job (data, model, optimiser, steps, and the
*user path*: ``archlab train``, a LightningModule with :class:`HealthMonitor`, or a plain
PyTorch loop driving :class:`HealthRecorder`). A faulty set-up is its **healthy twin** with one
fault injected (:func:`faulty`), the detectors that must report it (``expected``: any one counts)
and its source in the published fault taxonomies; ``plausible`` lists detectors that are right
to fire as a consequence (a learning rate of 10 also kills ReLUs): neither hits nor false
alarms. A healthy set-up has ``expected == ()`` and must raise no alarm at all.

The set-ups themselves are in :mod:`archlab.diagnose.fault_catalogue`, with the
development / held-out split. Each run records the validation score (accuracy; R^2 for
regression) so that the suite can show every fault hurts against its twin.

Used by ``benchmarks/fault_suite.py`` (3 seeds, full length, overhead) and by
``tests/test_fault_suite.py`` (1 seed, short). Data: the built-in ``digits`` and ``mnist5k``,
the synthetic generators of :mod:`archlab.train.data`, and scikit-learn's Friedman #1
regression function (tabular); nothing is downloaded.
"""

from __future__ import annotations

import functools
import math
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

PATHS = ("lightning", "plain", "archlab")
DATA_KINDS = {"digits": "images", "mnist5k": "images", "synthetic": "synthetic",
              "sequence": "sequences", "tabular": "tabular regression"}

# ---------------------------------------------------------------------------------- data ----


@functools.lru_cache(maxsize=8)
def _dataset(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    if name == "tabular":   # Friedman #1 (1991): a standard non-linear tabular regression
        from sklearn.datasets import make_friedman1

        x, y = make_friedman1(n_samples=1500, n_features=10, noise=0.5, random_state=1)
        return torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32).unsqueeze(1)
    from ..train.data import load_data

    spec = {"digits": "digits", "mnist5k": "mnist5k",
            "synthetic": {"source": "synthetic-classification", "samples": 1500,
                          "shape": (8,), "classes": 6, "seed": 1},
            "sequence": {"source": "synthetic-sequence", "samples": 600, "shape": (1, 32),
                         "classes": 3, "seed": 1}}[name]
    d = load_data(spec)
    return d.x, d.y


def prepare(s: Setup, seed: int):
    """Split 80/20 (seeded), scale with training-split statistics (principle C7), then inject
    the set-up's data faults into the training split only.

    scaling: 'standard' (one mean/std over all inputs), 'per_feature' (a mean/std per input
    feature, as scikit-learn's StandardScaler: rare MNIST pixels become very large values),
    'raw' (left as read: 0-255 for mnist5k, 0-16 for digits), 'raw255' (digits rescaled to 0-255).
    Regression targets are standardised unless ``target_scale`` multiplies them."""
    x, y = _dataset(s.data)
    g = torch.Generator().manual_seed(1000 + seed)
    order = torch.randperm(len(x), generator=g)
    cut = int(0.8 * len(x))
    tr, va = order[:cut], order[cut:]
    if s.train_limit:
        tr = tr[:s.train_limit]
    xtr, xva, ytr, yva = x[tr].clone(), x[va].clone(), y[tr].clone(), y[va].clone()
    if s.scaling == "standard":
        mean, std = xtr.mean(), xtr.std()
        xtr, xva = (xtr - mean) / std, (xva - mean) / std
    elif s.scaling == "per_feature":
        mean, std = xtr.mean(0, keepdim=True), xtr.std(0, keepdim=True).clamp_min(1e-3)
        xtr, xva = (xtr - mean) / std, (xva - mean) / std
    elif s.scaling == "raw255":
        xtr, xva = xtr * 255 / 16, xva * 255 / 16
    if ytr.is_floating_point():   # regression targets standardised (then scaled by the fault)
        mean, std = ytr.mean(), ytr.std()
        ytr, yva = (ytr - mean) / std * s.target_scale, (yva - mean) / std * s.target_scale
    if s.labels == "shuffle":
        ytr = ytr[torch.randperm(len(ytr), generator=g)]
    elif s.labels == "sort":
        keep = torch.argsort(ytr, stable=True)
        xtr, ytr = xtr[keep], ytr[keep]
    elif s.labels == "imbalance":   # classes 1.. keep a twentieth of their examples
        keep = torch.ones(len(ytr), dtype=torch.bool)
        for c in range(1, int(ytr.max()) + 1):
            idx = torch.nonzero(ytr == c).flatten()
            keep[idx[max(2, len(idx) // 20):]] = False
        xtr, ytr = xtr[keep], ytr[keep]
    if s.nan_inputs:
        rows = torch.randperm(len(xtr), generator=g)[:s.nan_inputs]
        xtr.view(len(xtr), -1)[rows, 0] = math.nan
    if s.nan_targets:
        rows = torch.randperm(len(ytr), generator=g)[:s.nan_targets]
        ytr[rows] = math.nan
    return xtr, ytr, xva, yva


# -------------------------------------------------------------------------------- set-ups ---


@dataclass(frozen=True)
class Setup:
    """One training job. ``model(n_in, n_out, sample_shape)`` builds the network."""

    name: str
    description: str                       # the injected fault, or what makes it healthy
    path: str                              # 'lightning', 'plain' or 'archlab'
    data: str                              # 'digits', 'mnist5k', 'synthetic', 'sequence', 'tabular'
    model: Callable[[int, int, tuple], nn.Module]
    optimizer: str = "adam"                # 'adam', 'adamw' or 'sgd'
    lr: float = 1e-3
    momentum: bool = False
    weight_decay: float = 0.0
    steps: int = 150                       # optimiser steps (full length; CI runs fewer)
    batch: int = 64
    scaling: str = "standard"
    labels: str | None = None              # None, 'shuffle', 'sort' (unshuffled), 'imbalance'
    target_scale: float = 1.0              # regression targets x this after standardising
    nan_inputs: int = 0                    # training rows whose first input is NaN
    nan_targets: int = 0
    train_limit: int | None = None         # keep only this many training examples
    clip: float | None = None              # gradient-norm clipping threshold
    schedule: str | None = None            # None, 'cosine' (to 0 at the end), 'collapse' (x0.01 / 10 steps)
    optimize: str = "all"                  # 'all' or 'head' (only the last layer is in the optimizer)
    freeze: int = 0                        # first n linear layers get requires_grad=False
    expected: tuple[str, ...] = ()         # detectors that count as finding the fault
    plausible: tuple[str, ...] = ()        # consequences that are not false alarms
    twin: str = ""                         # the healthy set-up this fault was injected into
    source: str = ""                       # taxonomy entry (see fault_catalogue)
    ci_steps: int = 40                     # shortest run that still shows it (the CI test)

    @property
    def healthy(self) -> bool:
        return not self.expected

    @property
    def task(self) -> str:
        return "regression" if self.data == "tabular" else "classification"


def faulty(twin: Setup, name: str, description: str, expected: tuple[str, ...], source: str,
           plausible: tuple[str, ...] = (), **changes) -> Setup:
    """The healthy ``twin`` with one fault injected (``changes``)."""
    return replace(twin, name=name, description=description, expected=expected,
                   plausible=plausible, twin=twin.name, source=source, **changes)


# ------------------------------------------------------------------------------ running ----


@dataclass
class Result:
    setup: str
    seed: int
    healthy: bool
    expected: tuple[str, ...]
    plausible: tuple[str, ...]
    fired: dict[str, int] = field(default_factory=dict)   # detector -> first step
    messages: dict[str, str] = field(default_factory=dict)
    symptoms: dict[str, list[str]] = field(default_factory=dict)  # symptom -> causes explaining it
    steps: int = 0
    score: float = math.nan                               # validation accuracy / R^2
    seconds: float = 0.0
    epoch_seconds: list[float] = field(default_factory=list)
    overhead: float = math.nan                            # the monitor's own timing

    @property
    def detected(self) -> bool:
        """An expected detector fired (a cause, or a symptom the set-up lists)."""
        return any(d in self.fired for d in self.expected)

    @property
    def cause_named(self) -> bool:
        """An expected CAUSE fired: the monitor said why, not only what."""
        return any(d in self.fired and d not in self.symptoms for d in self.expected)

    @property
    def cause_unknown(self) -> bool:
        """Found only as a symptom that no fired cause explains: "found, cause unknown"."""
        return not self.cause_named and any(not c for c in self.symptoms.values())

    @property
    def delay(self) -> int | None:
        hits = [self.fired[d] for d in self.expected if d in self.fired]
        return min(hits) if hits else None

    @property
    def false_alarms(self) -> list[str]:
        """Wrong-cause alarms: a cause that is neither expected nor plausible; or a symptom that
        is neither, unless a fired expected or plausible cause explains it (then it is that
        cause's evidence). A symptom explained by nothing counts when a cause was named beside
        it (it stands beside the verdict as an alarm of its own); on a run where no cause fired
        it is "found, cause unknown" (:attr:`cause_unknown`), not a wrong cause."""
        if self.healthy:
            return list(self.fired)   # on a healthy run every alarm is a false alarm
        right = set(self.expected) | set(self.plausible)
        causes = [d for d in self.fired if d not in self.symptoms]
        wrong = []
        for d in self.fired:
            if d in right:
                continue
            if d in self.symptoms and (any(c in right for c in self.symptoms[d])
                                       or not self.symptoms[d] and not causes):
                continue
            wrong.append(d)
        return wrong


def run_setup(setup: Setup, seed: int = 0, *, steps: int | None = None, monitor: bool = True,
              folder: str | Path | None = None, monitor_options: dict | None = None,
              epochs: int | None = None) -> Result:
    """Train one set-up on its user path (with the health monitor unless ``monitor=False``).
    Without ``folder`` the run's files go to a temporary folder that is removed afterwards.
    ``epochs`` (lightning and plain paths) trains whole epochs instead of ``steps``."""
    if folder is None:
        with tempfile.TemporaryDirectory(prefix="archlab-fault-") as tmp:
            return run_setup(setup, seed, steps=steps, monitor=monitor, folder=tmp,
                             monitor_options=monitor_options, epochs=epochs)
    from . import fault_runners

    runner = {"lightning": fault_runners.run_lightning, "plain": fault_runners.run_plain,
              "archlab": fault_runners.run_archlab}[setup.path]
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's advice on workers/loggers is noise here
        t0 = time.perf_counter()
        result = runner(setup, seed, steps or setup.steps, monitor, Path(folder),
                        monitor_options or {}, epochs)
        result.seconds = time.perf_counter() - t0
    return result


def make_optimizer(s: Setup, model: nn.Module):
    params = [p for p in model.parameters() if p.requires_grad]
    if s.optimize == "head":
        params = list(_last_linear(model).parameters())
    if s.optimizer == "sgd":
        return torch.optim.SGD(params, lr=s.lr, momentum=0.9 if s.momentum else 0.0,
                               weight_decay=s.weight_decay)
    if s.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay)
    return torch.optim.Adam(params, lr=s.lr, weight_decay=s.weight_decay)


def make_schedule(s: Setup, opt, steps: int):
    if s.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    if s.schedule == "collapse":   # a step schedule meant per epoch, stepped per batch
        return torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.01)
    return None


def loss_fn(s: Setup):
    return F.mse_loss if s.task == "regression" else F.cross_entropy


def build_model(s: Setup, shape: tuple, n_out: int) -> nn.Module:
    model = s.model(math.prod(shape), n_out, shape)
    for m in [m for m in model.modules() if isinstance(m, nn.Linear)][:s.freeze]:
        m.requires_grad_(False)
    return model


def score(s: Setup, model: nn.Module, xva: torch.Tensor, yva: torch.Tensor) -> float:
    """Validation accuracy (classification) or R^2 (regression); nan when non-finite."""
    was = model.training
    model.eval()
    with torch.no_grad():
        out = model(xva)
    model.train(was)
    if s.task == "regression":
        mse = float(((out - yva) ** 2).mean())
        var = float(((yva - yva.mean()) ** 2).mean())
        value = 1 - mse / var
    else:
        value = float((out.argmax(1) == yva).float().mean()) if torch.isfinite(out).all() else math.nan
    return value if math.isfinite(value) else math.nan


def _last_linear(model: nn.Module) -> nn.Module:
    return [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))][-1]
