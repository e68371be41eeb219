"""Known-faulty and healthy training set-ups: the ground truth the health monitor is judged on.

Each :class:`Setup` is a small, complete training job (data, model, optimiser, steps) with the
problem injected on purpose and the detectors that must report it (``expected``: any one of them
counts as a detection). ``plausible`` lists detectors that are right to fire as a consequence
(a learning rate of 10 also kills ReLUs): they are shown in the confusion table but are not
false alarms. A healthy set-up has ``expected == ()`` and must raise no alarm at all.

Used by ``benchmarks/fault_suite.py`` (3 seeds, full length, overhead) and by
``tests/test_fault_suite.py`` (1 seed, short). Data: the built-in ``digits`` and ``mnist5k``
and the synthetic generators of :mod:`archlab.train.data`; nothing is downloaded.
"""

from __future__ import annotations

import functools
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

# ---------------------------------------------------------------------------------- data ----


@functools.lru_cache(maxsize=8)
def _dataset(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    from ..train.data import load_data

    spec = {"digits": "digits", "mnist5k": "mnist5k",
            "synthetic": {"source": "synthetic-classification", "samples": 1200,
                          "shape": (32,), "classes": 4, "seed": 1},
            "sequence": {"source": "synthetic-sequence", "samples": 600, "shape": (1, 32),
                         "classes": 3, "seed": 1}}[name]
    d = load_data(spec)
    return d.x, d.y


def prepare(name: str, scaling: str, seed: int, train_limit: int | None, shuffle_labels: bool):
    """Split 80/20 (seeded), then scale with training-split statistics (principle C7).

    scaling: 'standard' (one mean/std over all features), 'per_feature' (a mean/std per input
    feature, as scikit-learn's StandardScaler: rare MNIST pixels become very large values),
    'raw' (left as read: 0-255 for mnist5k, 0-16 for digits), 'raw255' (digits rescaled to 0-255).
    """
    x, y = _dataset(name)
    g = torch.Generator().manual_seed(1000 + seed)
    order = torch.randperm(len(x), generator=g)
    cut = int(0.8 * len(x))
    tr, va = order[:cut], order[cut:]
    if train_limit:
        tr = tr[:train_limit]
    xtr, xva, ytr, yva = x[tr].clone(), x[va].clone(), y[tr].clone(), y[va].clone()
    if scaling == "standard":
        mean, std = xtr.mean(), xtr.std()
        xtr, xva = (xtr - mean) / std, (xva - mean) / std
    elif scaling == "per_feature":
        mean, std = xtr.mean(0, keepdim=True), xtr.std(0, keepdim=True).clamp_min(1e-3)
        xtr, xva = (xtr - mean) / std, (xva - mean) / std
    elif scaling == "raw255":
        xtr, xva = xtr * 255 / 16, xva * 255 / 16
    if shuffle_labels:
        ytr = ytr[torch.randperm(len(ytr), generator=g)]
    return xtr, ytr, xva, yva


# -------------------------------------------------------------------------------- models ----


def mlp(n_in: int, n_out: int, hidden=(64, 64), act: Callable[[], nn.Module] | None = nn.ReLU) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten()]
    for h in hidden:
        layers.append(nn.Linear(n_in, h))
        if act is not None:
            layers.append(act())
        n_in = h
    layers.append(nn.Linear(n_in, n_out))
    return nn.Sequential(*layers)


def cnn(channels: int, n_out: int, act: Callable[[], nn.Module] = nn.ReLU) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(channels, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), act(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), act(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, n_out))


class ResidualMLP(nn.Module):
    """(N, *) -> (N, n_out): a stem and two residual ReLU blocks (He et al. 2016)."""

    def __init__(self, n_in: int, n_out: int, width: int = 64) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Flatten(), nn.Linear(n_in, width), nn.ReLU())
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(width, width), nn.ReLU(),
                                                  nn.Linear(width, width)) for _ in range(2))
        self.act = nn.ReLU()
        self.head = nn.Linear(width, n_out)

    def forward(self, x):
        h = self.stem(x)
        for block in self.blocks:
            h = self.act(h + block(h))
        return self.head(h)


class SequenceClassifier(nn.Module):
    """(N, C, L) -> (N, n_out): a recurrent layer over L steps, the last state classified."""

    def __init__(self, channels: int, n_out: int, kind: str = "gru", hidden: int = 32,
                 recurrent_gain: float | None = None) -> None:
        super().__init__()
        if kind == "gru":
            self.rnn: nn.Module = nn.GRU(channels, hidden, batch_first=True)
        else:  # a plain ReLU RNN: its recurrent gain decides whether signals explode
            self.rnn = nn.RNN(channels, hidden, batch_first=True, nonlinearity="relu")
        if recurrent_gain is not None:
            with torch.no_grad():
                self.rnn.weight_hh_l0.copy_(recurrent_gain * torch.eye(hidden)
                                            + 0.1 * torch.randn(hidden, hidden))
        self.head = nn.Linear(hidden, n_out)

    def forward(self, x):
        out, _ = self.rnn(x.transpose(1, 2))
        return self.head(out[:, -1])


class LogFeatures(nn.Module):
    """(N, F) -> (N, F): log of the features, written without an epsilon: log(0) = -inf."""

    def forward(self, x):
        return torch.log(x)


def _zero_init(model: nn.Module) -> nn.Module:
    for p in model.parameters():
        nn.init.zeros_(p)
    return model


def _negative_bias(model: nn.Module, bias: float = -4.0) -> nn.Module:
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.constant_(m.bias, bias)
    return model


def _freeze_first(model: nn.Module, n: int = 2) -> nn.Module:
    for m in [m for m in model.modules() if isinstance(m, nn.Linear)][:n]:
        m.requires_grad_(False)
    return model


def _scaled(model: nn.Module, gain: float) -> nn.Module:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear):
                m.weight.mul_(gain)
    return model


# -------------------------------------------------------------------------------- set-ups ---


@dataclass(frozen=True)
class Setup:
    """One training job. ``model(n_in, n_out, sample_shape)`` builds the network."""

    name: str
    description: str                       # the injected fault, or what makes it healthy
    data: str                              # 'digits', 'mnist5k', 'synthetic', 'sequence'
    model: Callable[[int, int, tuple], nn.Module]
    optimizer: str = "adam"                # 'adam' or 'sgd' (momentum 0.9 when momentum=True)
    lr: float = 1e-3
    momentum: bool = False
    steps: int = 150                       # optimiser steps (full length; CI runs fewer)
    batch: int = 64
    scaling: str = "standard"
    shuffle_labels: bool = False
    train_limit: int | None = None         # keep only this many training examples
    expected: tuple[str, ...] = ()         # detectors that count as finding the fault
    plausible: tuple[str, ...] = ()        # consequences that are not false alarms
    ci_steps: int = 30                     # shortest run that still shows it (the CI test)

    @property
    def healthy(self) -> bool:
        return not self.expected

    @property
    def short_steps(self) -> int:
        """Steps of the CI run: healthy set-ups run past the loss detectors' 100-step warm-up."""
        return 110 if self.healthy else self.ci_steps


def _n(shape) -> int:
    return math.prod(shape)


SETUPS: list[Setup] = [
    # ------------------------------------------------------------------ injected faults -----
    Setup("deep_sigmoid", "8 sigmoid hidden layers, plain SGD", "digits",
          lambda i, o, s: mlp(i, o, (32,) * 8, nn.Sigmoid), "sgd", 0.1,
          expected=("vanishing_gradients",),
          plausible=("loss_not_decreasing", "lr_too_low", "saturated_activations")),
    Setup("lr_10", "SGD with learning rate 10", "digits", lambda i, o, s: mlp(i, o), "sgd", 10.0,
          expected=("exploding_gradients", "lr_too_high", "nan_inf"),
          plausible=("dying_relu", "oscillating_loss", "loss_not_decreasing", "vanishing_gradients")),
    Setup("negative_bias_relu", "ReLU layers with biases initialised at -4", "mnist5k",
          lambda i, o, s: _negative_bias(mlp(i, o, (128, 64))), "adam", 1e-3,
          expected=("dying_relu",),
          plausible=("vanishing_gradients", "loss_not_decreasing", "lr_too_low")),
    Setup("raw_pixels", "mnist5k inputs left in 0-255", "mnist5k", lambda i, o, s: mlp(i, o),
          "sgd", 0.01, scaling="raw", expected=("unscaled_inputs",),
          plausible=("exploding_gradients", "lr_too_high", "nan_inf", "dying_relu",
                     "oscillating_loss", "loss_not_decreasing", "vanishing_gradients")),
    Setup("zero_init", "every weight and bias initialised to 0", "digits",
          lambda i, o, s: _zero_init(mlp(i, o)), "adam", 1e-3, expected=("vanishing_gradients",),
          plausible=("dying_relu", "loss_not_decreasing", "lr_too_low")),
    Setup("shuffled_labels", "training labels shuffled (no signal)", "digits",
          lambda i, o, s: mlp(i, o), "adam", 1e-3, shuffle_labels=True,
          ci_steps=110, expected=("loss_not_decreasing", "overfitting"), plausible=("lr_too_low",)),
    Setup("lr_1e-7", "Adam with learning rate 1e-7", "mnist5k", lambda i, o, s: mlp(i, o),
          "adam", 1e-7, ci_steps=110, expected=("lr_too_low",), plausible=("loss_not_decreasing",)),
    Setup("missing_nonlinearity", "three linear layers without activations", "synthetic",
          lambda i, o, s: mlp(i, o, (64, 64), act=None), "adam", 1e-3,
          expected=("missing_nonlinearity",)),
    Setup("softmax_before_ce", "softmax at the end of the model, then cross entropy", "digits",
          lambda i, o, s: nn.Sequential(mlp(i, o), nn.Softmax(dim=1)), "adam", 1e-3,
          expected=("probabilities_as_logits",),
          plausible=("loss_not_decreasing", "lr_too_low", "vanishing_gradients")),
    Setup("exploding_rnn", "ReLU RNN with recurrent gain 1.5 over 32 steps", "sequence",
          lambda i, o, s: SequenceClassifier(s[0], o, "rnn", recurrent_gain=1.5), "sgd", 0.01,
          expected=("exploding_gradients", "nan_inf"),
          plausible=("lr_too_high", "oscillating_loss", "loss_not_decreasing", "dying_relu")),
    Setup("frozen_layers", "the first two linear layers left with requires_grad=False", "mnist5k",
          lambda i, o, s: _freeze_first(mlp(i, o, (64, 64, 64))), "adam", 1e-3,
          expected=("frozen_layers",)),
    Setup("nan_custom_op", "a custom layer takes log() of ReLU outputs without an epsilon",
          "synthetic", lambda i, o, s: nn.Sequential(nn.Linear(i, 32), nn.ReLU(), LogFeatures(),
                                                     nn.Linear(32, o)), "adam", 1e-3,
          expected=("nan_inf",)),
    Setup("high_lr_adam", "Adam with learning rate 0.1", "digits", lambda i, o, s: mlp(i, o),
          "adam", 0.1, expected=("lr_too_high", "oscillating_loss"),
          plausible=("exploding_gradients", "dying_relu", "loss_not_decreasing", "nan_inf")),
    Setup("overfit_small_data", "a wide MLP on 64 training examples for 60 epochs", "digits",
          lambda i, o, s: mlp(i, o, (512, 512)), "adam", 1e-3, train_limit=64, batch=32,
          steps=120, ci_steps=80, expected=("overfitting",)),
    Setup("saturated_tanh", "tanh MLP with weights initialised 8x too large", "synthetic",
          lambda i, o, s: _scaled(mlp(i, o, (64, 64), nn.Tanh), 8.0), "sgd", 0.05,
          expected=("saturated_activations",),
          plausible=("vanishing_gradients", "loss_not_decreasing", "lr_too_low")),
    # ------------------------------------------------------------------ healthy -------------
    Setup("healthy_mlp_digits", "ReLU MLP, Adam 1e-3, standardised inputs", "digits",
          lambda i, o, s: mlp(i, o)),
    Setup("healthy_cnn_mnist", "conv-BN-ReLU net, SGD+momentum 0.05", "mnist5k",
          lambda i, o, s: cnn(s[0], o), "sgd", 0.05, momentum=True, batch=32),
    Setup("healthy_tanh_synthetic", "tanh MLP, SGD 0.05, Glorot-scale init", "synthetic",
          lambda i, o, s: mlp(i, o, (64, 64), nn.Tanh), "sgd", 0.05),
    Setup("healthy_gru_sequence", "GRU classifier, Adam 1e-2, batch 32", "sequence",
          lambda i, o, s: SequenceClassifier(s[0], o, "gru"), "adam", 1e-2, batch=32),
    Setup("healthy_residual_mnist", "residual ReLU MLP, Adam 1e-3", "mnist5k",
          lambda i, o, s: ResidualMLP(i, o)),
    Setup("healthy_per_feature_mnist", "MLP on per-pixel standardised MNIST (values up to ~70)",
          "mnist5k", lambda i, o, s: mlp(i, o), scaling="per_feature"),
    Setup("healthy_leaky_cnn_digits", "conv-BN-LeakyReLU net, Adam 1e-3", "digits",
          lambda i, o, s: cnn(s[0], o, nn.LeakyReLU)),
]


def setups(names=None) -> list[Setup]:
    if names is None:
        return list(SETUPS)
    by = {s.name: s for s in SETUPS}
    return [by[n] for n in names]


# ------------------------------------------------------------------------------ running ----


class SuiteModule:
    """Factory for the LightningModule (imported lazily: lightning is slow to import)."""

    @staticmethod
    def make(model: nn.Module, setup: Setup):
        import lightning.pytorch as pl

        class _Module(pl.LightningModule):
            def __init__(self):
                super().__init__()
                self.model = model

            def training_step(self, batch, batch_idx):
                x, y = batch
                return F.cross_entropy(self.model(x), y)

            def validation_step(self, batch, batch_idx):
                x, y = batch
                self.log("val_loss", F.cross_entropy(self.model(x), y), prog_bar=False)

            def configure_optimizers(self):
                params = [p for p in self.parameters() if p.requires_grad]
                if setup.optimizer == "sgd":
                    return torch.optim.SGD(params, lr=setup.lr, momentum=0.9 if setup.momentum else 0.0)
                return torch.optim.Adam(params, lr=setup.lr)

        return _Module()


@dataclass
class Result:
    setup: str
    seed: int
    healthy: bool
    expected: tuple[str, ...]
    plausible: tuple[str, ...]
    fired: dict[str, int] = field(default_factory=dict)   # detector -> first step
    steps: int = 0
    seconds: float = 0.0                                  # wall time of fit()
    cpu_seconds: float = 0.0                              # this process's CPU time of fit()
    epoch_seconds: list[float] = field(default_factory=list)      # wall time per epoch
    epoch_cpu_seconds: list[float] = field(default_factory=list)  # CPU time per epoch
    overhead: float = math.nan                            # monitor's own estimate

    @property
    def detected(self) -> bool:
        return any(d in self.fired for d in self.expected)

    @property
    def delay(self) -> int | None:
        hits = [self.fired[d] for d in self.expected if d in self.fired]
        return min(hits) if hits else None

    @property
    def false_alarms(self) -> list[str]:
        return [d for d in self.fired if d not in self.expected and d not in self.plausible]


def _epoch_clock():
    """A callback that times each training epoch (wall and this process's CPU time)."""
    import lightning.pytorch as pl

    class EpochClock(pl.Callback):
        def __init__(self):
            self.wall: list[float] = []
            self.cpu: list[float] = []

        def on_train_epoch_start(self, trainer, pl_module):
            self._t, self._c = time.perf_counter(), time.process_time()

        def on_train_epoch_end(self, trainer, pl_module):
            self.wall.append(time.perf_counter() - self._t)
            self.cpu.append(time.process_time() - self._c)

    return EpochClock()


def run_setup(setup: Setup, seed: int = 0, *, steps: int | None = None, monitor: bool = True,
              folder: str | Path | None = None, monitor_options: dict | None = None,
              epochs: int | None = None) -> Result:
    """Train one set-up with Lightning (and the health monitor unless ``monitor=False``).
    Without ``folder`` the run's files go to a temporary folder that is removed afterwards."""
    if folder is None:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="archlab-fault-") as tmp:
            return run_setup(setup, seed, steps=steps, monitor=monitor, folder=tmp,
                             monitor_options=monitor_options, epochs=epochs)
    import lightning.pytorch as pl

    from .callback import HealthMonitor

    torch.manual_seed(seed)
    xtr, ytr, xva, yva = prepare(setup.data, setup.scaling, seed, setup.train_limit,
                                 setup.shuffle_labels)
    n_out = int(torch.cat([ytr, yva]).max()) + 1
    shape = tuple(xtr.shape[1:])
    module = SuiteModule.make(setup.model(_n(shape), n_out, shape), setup)
    g = torch.Generator().manual_seed(seed)
    train = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xtr, ytr),
                                        batch_size=setup.batch, shuffle=True, generator=g,
                                        drop_last=len(xtr) > setup.batch)
    val = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xva, yva), batch_size=512)
    clock = _epoch_clock()
    callbacks = [clock]   # first, so its epoch-end time excludes the other callbacks' epoch ends
    hm = None
    if monitor:
        hm = HealthMonitor(Path(folder) / "health", **(monitor_options or {}))
        callbacks.append(hm)
    max_steps = steps or setup.steps
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's advice on workers/loggers is noise here
        import logging

        logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
        trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False,
                             max_steps=-1 if epochs else max_steps, max_epochs=epochs or -1,
                             enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, num_sanity_val_steps=0,
                             default_root_dir=str(folder),
                             callbacks=callbacks)
        t0, c0 = time.perf_counter(), time.process_time()
        trainer.fit(module, train, val)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    result = Result(setup.name, seed, setup.healthy, setup.expected, setup.plausible,
                    steps=trainer.global_step, seconds=seconds, cpu_seconds=cpu,
                    epoch_seconds=clock.wall, epoch_cpu_seconds=clock.cpu)
    if hm is not None:
        result.fired = {v.detector: v.step for v in hm.events}
        result.overhead = hm.recorder.overhead
    return result


def with_steps(setup: Setup, steps: int) -> Setup:
    return replace(setup, steps=steps)
