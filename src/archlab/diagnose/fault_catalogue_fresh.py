"""A FRESH held-out fault suite: set-ups written after the first held-out half had been seen,
by someone who did not read the detectors' rules, and judged once (``benchmarks/fault_suite.py
--fresh``). CI checks only its integrity (``tests/test_fault_suite_fresh.py``), never verdicts.

How it differs from :mod:`~archlab.diagnose.fault_catalogue`: its own data (scikit-learn's
bundled diabetes and breast-cancer tables, spirals and waveforms generated here, digits read
straight from scikit-learn, mnist5k rescaled to [0, 1]), its own models, magnitudes and seeds,
and its own user code: a LightningModule (one with dict batches), a plain loop written from the
usage in docs/diagnostics.md (some declare the reference, some do not) and ``archlab.train``.
It returns the suite's :class:`~archlab.diagnose.faults.Result`, so the figures are the same.

Each fault is its healthy twin with one fault injected, a source in the published taxonomies
(**H20** Humbatova et al., ICSE 2020; **AT** AUTOTRAINER's problem types; **DD** DeepDiagnosis's
conditions), ``expected`` (detectors that name the cause) and ``plausible`` (true consequences),
both chosen from the fault's nature and the detectors' one-line meanings before any monitored
run. :data:`HURT` records each one's validation score against its twin (monitor off).

Two ``plausible`` lists were widened on 2026-12-03 (session 8), long after the judging, because a
rule written later names the injected bug itself: ``label_noise`` on ``fl_lstm_labels_rolled``
(its source is "wrong labels") and ``gradients_cleared`` on ``fp_digits_zero_grad_late`` (the
rule's subject is exactly that bug). Nothing else changed; the judged figures stand as recorded.
"""

from __future__ import annotations

import functools
import math
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .faults import Result

PATHS = ("lightning", "plain", "archlab")
DATA_KINDS = {"digits": "images", "mnist5k": "images", "diabetes": "tabular regression",
              "cancer": "tabular classification", "spiral": "synthetic", "waves": "sequences"}


# ---------------------------------------------------------------------------------- data ----
@functools.cache
def _raw(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        return torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16, torch.tensor(d.target)
    if name == "mnist5k":
        from ..train.data import load_data

        d = load_data("mnist5k")
        return d.x / 255.0, d.y
    if name == "diabetes":   # raw units: age in years, blood pressure in mm Hg, ...
        from sklearn.datasets import load_diabetes

        x, y = load_diabetes(return_X_y=True, scaled=False)
        return torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)[:, None]
    if name == "cancer":
        from sklearn.datasets import load_breast_cancer

        x, y = load_breast_cancer(return_X_y=True)
        return torch.tensor(x, dtype=torch.float32), torch.tensor(y)
    rng = np.random.default_rng(2026)
    if name == "spiral":     # four interleaved arms, 1.25 turns each, noisy angle
        t = rng.uniform(0.15, 1.0, (4, 400))
        theta = 2.5 * np.pi * t + np.arange(4)[:, None] * np.pi / 2 + rng.normal(0, 0.18, t.shape)
        x = np.stack([t * np.cos(theta), t * np.sin(theta)], -1).reshape(-1, 2)
        return torch.tensor(x, dtype=torch.float32), torch.arange(4).repeat_interleave(400)
    if name == "waves":      # sine / square / sawtooth, random frequency, phase, amplitude, noise
        grid = np.arange(48) / 48
        xs = []
        for kind in range(3):
            u = 2 * np.pi * (rng.uniform(2, 4, (300, 1)) * grid + rng.uniform(0, 1, (300, 1)))
            wave = [np.sin(u), np.sign(np.sin(u)), 2 * ((u / (2 * np.pi)) % 1) - 1][kind]
            xs.append(rng.uniform(0.6, 1.4, (300, 1)) * wave + rng.normal(0, 0.35, u.shape))
        x = np.concatenate(xs)[:, None, :]
        return torch.tensor(x, dtype=torch.float32), torch.arange(3).repeat_interleave(300)
    raise KeyError(name)


def prepare(s: FreshSetup, seed: int, scale: bool = True):
    """80/20 split drawn from ``seed``; inputs standardised with training statistics (per
    feature for tables and points, one mean/std for images and waves) unless ``prep['scale']``
    is 'raw' or ``scale`` is False (archlab scales itself); then the data faults of ``s.prep``,
    on the training split unless they are a property of the data (units, intercept)."""
    x, y = _raw(s.data)
    p = s.prep
    g = torch.Generator().manual_seed(4242 + 131 * seed)
    order = torch.randperm(len(x), generator=g)
    cut = int(0.8 * len(x))
    tr, va = order[:cut], order[cut:]
    if p.get("train_limit"):
        tr = tr[:p["train_limit"]]
    xtr, xva, ytr, yva = x[tr].clone(), x[va].clone(), y[tr].clone(), y[va].clone()
    if scale and p.get("scale", "standard") == "standard":
        dims = 0 if xtr.dim() == 2 else None
        mean = xtr.mean(0, keepdim=True) if dims == 0 else xtr.mean()
        std = (xtr.std(0, keepdim=True) if dims == 0 else xtr.std()).clamp_min(1e-6)
        xtr, xva = (xtr - mean) / std, (xva - mean) / std
    if ytr.is_floating_point() and scale and p.get("targets", "standard") == "standard":
        mean, std = ytr.mean(), ytr.std()
        ytr, yva = (ytr - mean) / std, (yva - mean) / std
    gain, offset = p.get("gain", 1.0), p.get("offset", 0.0)   # units of both splits
    xtr, xva = xtr * gain + offset, xva * gain + offset
    if p.get("intercept"):   # a column of ones, as statistics code adds for the intercept
        xtr = torch.cat([xtr, torch.ones(len(xtr), 1)], 1)
        xva = torch.cat([xva, torch.ones(len(xva), 1)], 1)
    if p.get("label_noise"):
        flip = torch.rand(len(ytr), generator=g) < p["label_noise"]
        ytr[flip] = torch.randint(0, int(y.max()) + 1, (int(flip.sum()),), generator=g)
    if p.get("roll_labels"):   # the label column is one row out of step with the inputs
        ytr = torch.roll(ytr, 1)
    if p.get("minority_keep"):   # class 0 keeps only this fraction of its training examples
        zero = torch.nonzero(ytr == 0).flatten()
        drop = zero[max(2, int(len(zero) * p["minority_keep"])):]
        keep = torch.ones(len(ytr), dtype=torch.bool)
        keep[drop] = False
        xtr, ytr = xtr[keep], ytr[keep]
    if p.get("nan_rows"):   # a gap of missing readings in a few training sequences
        rows = torch.randperm(len(xtr), generator=g)[:p["nan_rows"]]
        xtr[rows, ..., 20:26] = math.nan
    if p.get("sort"):
        keep = torch.argsort(ytr, stable=True)
        xtr, ytr = xtr[keep], ytr[keep]
    return xtr, ytr, xva, yva


# -------------------------------------------------------------------------------- set-ups ---
@dataclass(frozen=True)
class FreshSetup:
    """One training job. ``model(sample_shape, n_out)`` builds the network; ``train`` holds
    optimiser, lr, batch, steps, clip, schedule, loss, loop bugs; ``prep`` the data knobs."""

    name: str
    description: str
    path: str                               # 'lightning', 'plain' or 'archlab'
    data: str                               # a key of DATA_KINDS
    model: Callable[[tuple, int], nn.Module]
    train: dict = field(default_factory=dict)
    prep: dict = field(default_factory=dict)
    expected: tuple[str, ...] = ()
    plausible: tuple[str, ...] = ()
    twin: str = ""
    source: str = ""

    @property
    def healthy(self) -> bool:
        return not self.expected

    @property
    def task(self) -> str:
        return "regression" if self.data == "diabetes" else "classification"


def fault(twin: FreshSetup, name: str, description: str, source: str, expected: tuple[str, ...],
          plausible: tuple[str, ...] = (), model=None, train=None, prep=None) -> FreshSetup:
    """``twin`` with one fault: a new model, or train/prep entries merged over the twin's."""
    return replace(twin, name=name, description=description, source=source, expected=expected,
                   plausible=plausible, twin=twin.name, model=model or twin.model,
                   train={**twin.train, **(train or {})}, prep={**twin.prep, **(prep or {})})


# --------------------------------------------------------------------------------- models ---
def conv_net(shape: tuple, n_out: int, norm: bool = False, end: str | None = None) -> nn.Module:
    """5x5 conv-act-maxpool, 3x3 conv-act-maxpool, a hidden linear layer; ``end='softmax0'``
    puts a softmax over dimension 0 (the batch) after the head."""
    c, h, w = shape
    bn = (lambda k: [nn.BatchNorm2d(k)]) if norm else (lambda k: [])
    layers = [nn.Conv2d(c, 6, 5, padding=2), *bn(6), nn.ReLU(), nn.MaxPool2d(2),
              nn.Conv2d(6, 12, 3, padding=1), *bn(12), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
              nn.Linear(12 * (h // 4) * (w // 4), 32), nn.ReLU(), nn.Linear(32, n_out)]
    if end == "softmax0":
        layers.append(nn.Softmax(dim=0))
    return nn.Sequential(*layers)


class FeaturesHead(nn.Module):
    """conv_net split into features (both convs and the hidden linear layer) and its last linear
    layer; ``freeze_features`` sets requires_grad False on the features (meant for pretrained
    features, here random ones)."""

    def __init__(self, shape: tuple, n_out: int, freeze_features: bool = False) -> None:
        super().__init__()
        net = conv_net(shape, n_out)
        self.features, self.head = net[:9], net[9:]
        self.features.requires_grad_(not freeze_features)

    def forward(self, x):
        return self.head(self.features(x))


class BatchStandardise(nn.Module):
    """Standardises each feature by the batch's own mean and std (written by hand)."""

    def __init__(self, eps: float) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x):
        return (x - x.mean(0)) / (x.std(0) + self.eps)


def regressor(shape: tuple, n_out: int, eps: float = 1e-5) -> nn.Module:
    return nn.Sequential(BatchStandardise(eps), nn.Linear(shape[0], 32), nn.SiLU(),
                         nn.Linear(32, 16), nn.SiLU(), nn.Linear(16, n_out))


class WaveLSTM(nn.Module):
    """(N, 1, L) -> (N, n_out): an LSTM over patches of ``patch`` samples, last state classified."""

    def __init__(self, n_out: int, hidden: int = 32, patch: int = 4) -> None:
        super().__init__()
        self.patch = patch
        self.lstm = nn.LSTM(patch, hidden, batch_first=True)
        self.out = nn.Linear(hidden, n_out)

    def forward(self, x):
        seq, _ = self.lstm(x.reshape(len(x), -1, self.patch))
        return self.out(seq[:, -1])


def tcn(shape: tuple, n_out: int) -> nn.Module:
    """Dilated 1-d convolutions with GELU, average over time, linear."""
    return nn.Sequential(nn.Conv1d(shape[0], 16, 5, padding=2), nn.GELU(),
                         nn.Conv1d(16, 16, 5, padding=4, dilation=2), nn.GELU(),
                         nn.Conv1d(16, 16, 5, padding=8, dilation=4), nn.GELU(),
                         nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(16, n_out))


def dense(widths, act: Callable[[], nn.Module], dropout: float = 0.0) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten()]
    for a, b in zip(widths[:-2], widths[1:-1], strict=True):
        layers += [nn.Linear(a, b), act()] + ([nn.Dropout(dropout)] if dropout else [])
    return nn.Sequential(*layers, nn.Linear(widths[-2], widths[-1]))


class HandSoftmax(nn.Module):
    """A classifier whose forward ends in a softmax written out: exp(z) / sum(exp(z))."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x):
        z = self.body(x)
        e = torch.exp(z - z.max(1, keepdim=True).values)
        return e / e.sum(1, keepdim=True)


def init_normal(model: nn.Module, std: float, bias: float = 0.0) -> nn.Module:
    """Every linear/conv weight drawn from N(0, std^2), every bias set to ``bias``."""
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            nn.init.normal_(m.weight, 0.0, std)
            nn.init.constant_(m.bias, bias)
    return model


def bias_at(model: nn.Module, bias: float) -> nn.Module:
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.constant_(m.bias, bias)
    return model


# ------------------------------------------------------------------------ healthy twins -----
def _s(name, description, path, data, model, **train) -> FreshSetup:
    prep = train.pop("prep", {})
    return FreshSetup(name, description, path, data, model, train=train, prep=prep)


L_CNN = _s("fh_l_mnist_cnn", "conv net on mnist5k in [0, 1], AdamW 2e-3, weight decay 0.01",
           "lightning", "mnist5k", lambda s, o: conv_net(s, o), optimizer="adamw", lr=2e-3,
           wd=0.01, batch=50, steps=160)
L_REG = _s("fh_l_diabetes_silu", "SiLU regressor on raw diabetes features plus an intercept "
           "column, standardised inside forward (with an epsilon), Adam 3e-3", "lightning",
           "diabetes", lambda s, o: regressor(s, o), lr=3e-3, batch=32, steps=200,
           prep={"scale": "raw", "intercept": True})
L_LSTM = _s("fh_l_waves_lstm", "LSTM over 4-sample patches of the waveforms, dict batches, "
            "Adam 1e-2", "lightning", "waves", lambda s, o: WaveLSTM(o), lr=1e-2, batch=32,
            steps=200, dict_batches=True)
L_BN = _s("fh_l_digits_bn_cosine", "conv-BN net on digits, SGD 0.05 momentum 0.9, cosine to 0",
          "lightning", "digits", lambda s, o: conv_net(s, o, norm=True), optimizer="sgd", lr=0.05,
          momentum=0.9, batch=32, steps=150, schedule=("cosine",))
P_GELU = _s("fh_p_digits_gelu", "GELU MLP, SGD 0.05 momentum 0.9, label smoothing 0.1, "
            "declared 10 classes", "plain", "digits", lambda s, o: dense((64, 96, 48, o), nn.GELU),
            optimizer="sgd", lr=0.05, momentum=0.9, batch=32, steps=180, smoothing=0.1, declare=True)
P_SPIRAL = _s("fh_p_spiral_tanh", "3-layer tanh MLP on four spirals, Adam 1e-2 (no reference "
              "declared)", "plain", "spiral", lambda s, o: dense((2, 48, 48, 48, o), nn.Tanh),
              lr=1e-2, batch=64, steps=250)
P_TCN = _s("fh_p_waves_tcn", "dilated 1-d conv net with GELU, Adam 3e-3", "plain", "waves",
           lambda s, o: tcn(s, o), lr=3e-3, batch=32, steps=150)
P_CANCER = _s("fh_p_cancer_mlp", "ReLU MLP with dropout 0.2 on breast-cancer features, Adam 1e-3, "
              "declared 2 classes", "plain", "cancer",
              lambda s, o: dense((30, 32, 16, o), nn.ReLU, 0.2), batch=32, steps=150, declare=True)
A_MNIST = _s("fh_a_mnist_leaky", "archlab train: LeakyReLU MLP 256-128 on mnist5k, Adam 1e-3, "
             "batch 128", "archlab", "mnist5k", lambda s, o: dense((784, 256, 128, o), nn.LeakyReLU),
             batch=128, steps=150)
A_REG = _s("fh_a_diabetes_sgd", "archlab train: ReLU MLP regression, SGD (Nesterov) 0.01",
           "archlab", "diabetes", lambda s, o: dense((10, 48, 24, o), nn.ReLU), optimizer="sgd",
           lr=0.01, batch=32, steps=180)
A_SPIRAL = _s("fh_a_spiral_relu", "archlab train: ReLU MLP 64-64 on four spirals, Adam 1e-2",
              "archlab", "spiral", lambda s, o: dense((2, 64, 64, o), nn.ReLU), lr=1e-2, batch=64,
              steps=200)
HEALTHY = [L_CNN, L_REG, L_LSTM, L_BN, P_GELU, P_SPIRAL, P_TCN, P_CANCER, A_MNIST, A_REG, A_SPIRAL,
           _s("fh_a_waves_tcn", "archlab train: dilated conv net on the waveforms, AdamW 3e-3",
              "archlab", "waves", lambda s, o: tcn(s, o), optimizer="adamw", lr=3e-3, batch=32,
              steps=150),
           _s("fh_p_digits_clip_warmup", "GELU MLP, Adam 2e-3 with a 30-step linear warm-up, "
              "clip_grad_norm_ 1.0 declared to the recorder", "plain", "digits",
              lambda s, o: dense((64, 96, 48, o), nn.GELU), lr=2e-3, batch=32, steps=180,
              schedule=("warmup", 30), clip=1.0, declare_clip=True)]

# ----------------------------------------------------------------------------- faults -------
DIVERGE = ("exploding_gradients", "lr_too_high", "nan_inf")
DIVERGE_SIDE = ("oscillating_loss", "loss_not_decreasing", "dying_relu")
NO_SIGNAL = ("loss_not_decreasing",)
FAULTS = [
    # --- lightning, mnist5k conv net
    fault(L_CNN, "fl_cnn_softmax_batch_dim", "nn.Softmax(dim=0) after the head (over the batch)",
          "H20 Model/wrong activation of the last layer; H20 Loss", ("probabilities_as_logits",),
          ("loss_not_decreasing", "vanishing_gradients", "lr_too_low"),
          model=lambda s, o: conv_net(s, o, end="softmax0")),
    fault(L_CNN, "fl_cnn_sgd_lr_2", "plain SGD with learning rate 2", "H20 Hyperparameters/"
          "learning rate; AT EG", DIVERGE, DIVERGE_SIDE, train={"optimizer": "sgd", "lr": 2.0}),
    fault(L_CNN, "fl_cnn_init_std_1", "every weight drawn from nn.init.normal_ (std 1)",
          "H20 Model/weights initialisation; AT EG", ("exploding_gradients",),
          ("nan_inf", "lr_too_high") + DIVERGE_SIDE, model=lambda s, o: init_normal(conv_net(s, o), 1.0)),
    fault(L_CNN, "fl_cnn_frozen_features", "the conv layers and the hidden linear layer frozen (requires_grad "
          "False) while random: only the head learns",
          "DD unchanged weights; H20 Training/freezing", ("frozen_layers",), NO_SIGNAL,
          model=lambda s, o: FeaturesHead(s, o, freeze_features=True)),
    # --- lightning, diabetes regression
    fault(L_REG, "fl_diabetes_raw_targets", "targets left in raw units (disease score 25-346)",
          "H20 Preprocessing/missing normalisation (targets)", ("unscaled_targets",), NO_SIGNAL,
          prep={"targets": "raw"}),
    fault(L_REG, "fl_diabetes_no_epsilon", "the in-forward standardisation has no epsilon: the "
          "intercept column gives 0/0", "DD NaN; H20 Model/layer properties (missing epsilon)",
          ("nan_inf",), (), model=lambda s, o: regressor(s, o, eps=0.0)),
    fault(L_REG, "fl_diabetes_sgd_lr_0.3", "SGD 0.3 with momentum 0.9", "H20 Hyperparameters/"
          "learning rate; AT EG", DIVERGE, ("oscillating_loss", "loss_not_decreasing"),
          train={"optimizer": "sgd", "lr": 0.3, "momentum": 0.9}),
    fault(L_REG, "fl_diabetes_lr_1e-6", "Adam with learning rate 1e-6", "H20 Hyperparameters/"
          "learning rate too low; AT SC", ("lr_too_low",), NO_SIGNAL, train={"lr": 1e-6}),
    # --- lightning, waves LSTM
    fault(L_LSTM, "fl_lstm_labels_rolled", "the label column is one row out of step with the "
          "signals", "H20 Training data quality/wrong labels", NO_SIGNAL,
          ("overfitting", "label_noise"), prep={"roll_labels": True}),
    fault(L_LSTM, "fl_lstm_40_examples", "only 40 training sequences", "H20 Training data "
          "quality/not enough data", ("overfitting",), (), prep={"train_limit": 40}),
    # --- lightning, digits conv-BN net
    fault(L_BN, "fl_digits_bn_batch_3", "conv-BN net trained with batches of 3",
          "H20 Hyperparameters/batch size", ("batchnorm_small_batch",),
          ("oscillating_loss", "loss_not_decreasing", "lr_too_high"),   # SGD noise ~ lr / batch
          train={"batch": 3}),
    fault(L_BN, "fl_digits_exp_decay_per_step", "ExponentialLR(gamma=0.8) meant per epoch, "
          "stepped per batch", "H20 Hyperparameters/learning rate schedule; AT SC",
          ("lr_schedule_decayed",), ("loss_not_decreasing", "lr_too_low"),
          train={"schedule": ("exp", 0.8)}),
    fault(L_BN, "fl_digits_clip_1e-4", "gradient_clip_val=1e-4", "H20 Hyperparameters (gradient "
          "clipping); AT SC", ("clipping_too_tight",), ("loss_not_decreasing", "lr_too_low"),
          train={"clip": 1e-4}),
    # --- plain loop, digits GELU MLP
    fault(P_GELU, "fp_digits_no_zero_grad", "the loop never calls zero_grad: gradients add up",
          "H20 Training/optimiser misuse; AT EG", ("exploding_gradients", "lr_too_high",
                                                   "oscillating_loss", "nan_inf"),
          NO_SIGNAL, train={"bug": "no_zero_grad"}),
    fault(P_GELU, "fp_digits_zero_grad_late", "zero_grad between backward and step: no update",
          "DD unchanged weights; H20 Training/optimiser misuse", ("frozen_layers", "vanishing_gradients"),
          ("loss_not_decreasing", "lr_too_low", "gradients_cleared"), train={"bug": "zero_grad_late"}),
    fault(P_GELU, "fp_digits_momentum_0.999", "SGD momentum 0.999 (meant 0.9)", "H20 Hyperparameters"
          "/optimiser settings; AT OL", ("oscillating_loss", "lr_too_high", "exploding_gradients"),
          ("nan_inf", "loss_not_decreasing"), train={"momentum": 0.999}),
    # --- plain loop, spirals tanh MLP
    fault(P_SPIRAL, "fp_spiral_units_x50", "coordinates in another unit: inputs x50",
          "H20 Preprocessing/missing normalisation", ("unscaled_inputs", "saturated_activations"),
          ("loss_not_decreasing", "vanishing_gradients", "lr_too_low"), prep={"gain": 50.0}),
    fault(P_SPIRAL, "fp_spiral_init_std_0.01", "weights drawn from N(0, 0.01^2)",
          "H20 Model/weights initialisation; AT VG", ("vanishing_gradients",),
          ("loss_not_decreasing", "lr_too_low"),
          model=lambda s, o: init_normal(dense((2, 48, 48, 48, o), nn.Tanh), 0.01)),
    fault(P_SPIRAL, "fp_spiral_label_noise_0.5", "half the training labels replaced at random",
          "H20 Training data quality/wrong labels", NO_SIGNAL, ("overfitting",),
          prep={"label_noise": 0.5}),
    fault(P_SPIRAL, "fp_spiral_sorted", "training points iterated sorted by arm, never shuffled",
          "H20 Training data/not shuffled", ("unshuffled_data",),
          ("oscillating_loss", "lr_too_high", "exploding_gradients", "class_imbalance",
           "loss_not_decreasing"), prep={"sort": True}),
    # --- plain loop, waves TCN
    fault(P_TCN, "fp_waves_offset_100", "sensor readings with an offset of +100 (not centred)",
          "H20 Preprocessing/missing normalisation", ("unscaled_inputs",),
          ("loss_not_decreasing", "exploding_gradients", "lr_too_high", "oscillating_loss"),
          prep={"offset": 100.0}),
    fault(P_TCN, "fp_waves_nan_gap", "four training sequences hold a gap of NaN readings",
          "DD NaN; H20 Training data quality", ("nan_inf",), (), prep={"nan_rows": 4}),
    fault(P_TCN, "fp_waves_rmsprop_0.1", "RMSprop with learning rate 0.1", "H20 Hyperparameters/"
          "learning rate; AT OL", ("lr_too_high", "oscillating_loss", "exploding_gradients", "nan_inf"),
          ("loss_not_decreasing",), train={"optimizer": "rmsprop", "lr": 0.1}),
    # --- plain loop, breast cancer
    fault(P_CANCER, "fp_cancer_raw_features", "features not standardised (areas up to 2500)",
          "H20 Preprocessing/missing normalisation", ("unscaled_inputs",),
          ("loss_not_decreasing", "exploding_gradients", "lr_too_high", "oscillating_loss",
           "dying_relu"), prep={"scale": "raw"}),
    fault(P_CANCER, "fp_cancer_minority_1_in_15", "malignant cases keep 1 in 15 training examples",
          "H20 Training data quality/unbalanced data", ("class_imbalance",), (),
          prep={"minority_keep": 1 / 15}),
    # --- archlab train
    fault(A_MNIST, "fa_mnist_sgd_lr_3", "archlab train --optimizer sgd --lr 3", "H20 Hyperparameters"
          "/learning rate; AT EG", DIVERGE, DIVERGE_SIDE, train={"optimizer": "sgd", "lr": 3.0}),
    fault(A_MNIST, "fa_mnist_hand_softmax", "forward ends in exp(z) / sum(exp(z)), then cross "
          "entropy", "H20 Model/wrong activation of the last layer; H20 Loss",
          ("probabilities_as_logits",), ("loss_not_decreasing", "lr_too_low", "vanishing_gradients"),
          model=lambda s, o: HandSoftmax(dense((784, 256, 128, o), nn.LeakyReLU))),
    fault(A_MNIST, "fa_mnist_relu_bias_-2", "ReLU in place of LeakyReLU, biases initialised at -2",
          "AT DR; DD dead node", ("dying_relu",), ("vanishing_gradients", "loss_not_decreasing",
                                                  "lr_too_low"),
          model=lambda s, o: bias_at(dense((784, 256, 128, o), nn.ReLU), -2.0)),
    fault(A_REG, "fa_diabetes_clip_1e-3", "archlab train --clip 1e-3", "H20 Hyperparameters "
          "(gradient clipping); AT SC", ("clipping_too_tight",), ("loss_not_decreasing", "lr_too_low"),
          train={"clip": 1e-3}),
    fault(A_REG, "fa_diabetes_no_scale_targets", "archlab train --no-scale-targets (raw scores)",
          "H20 Preprocessing/missing normalisation (targets)", ("unscaled_targets",),
          ("loss_not_decreasing", "exploding_gradients", "nan_inf", "oscillating_loss"),  # SGD
          prep={"targets": "raw"}),                                   # on raw scores diverges
    fault(A_SPIRAL, "fa_spiral_identity_acts", "nn.Identity where the ReLUs were meant",
          "H20 Model/missing activation", ("missing_nonlinearity",), NO_SIGNAL,
          model=lambda s, o: dense((2, 64, 64, o), nn.Identity)),
    fault(A_SPIRAL, "fa_spiral_lr_1e-6", "archlab train --lr 1e-6", "H20 Hyperparameters/learning "
          "rate too low; AT SC", ("lr_too_low",), NO_SIGNAL, train={"lr": 1e-6}),
]

# Validation score (accuracy; R^2 floored at -1 for diabetes; NAN: non-finite outputs) per seed
# 0, 1, 2, monitor OFF, measured on 2026-12-01 at 23:13-23:17 UTC (load average 5.1-7.1 on 2
# shared CPUs) BEFORE the judging run; the LSTM twin and its two faults again at 23:22 (load
# 8.8) after the twin was changed to read patches (its first form learned unevenly: 0.53-0.79). A fault hurts when its mean (NAN counted as -1) is more
# than 0.02 below its twin's: all 32 do (fa_mnist_hand_softmax only marginally: 0.035, one seed
# of three). No measured candidate was dropped. Left out on design grounds, before measuring:
# clipping at 1e-4 with Adam on the LSTM (Adam's step is nearly invariant to a uniform gradient
# scale, so it barely hurts; moved to the SGD twin), log_softmax before cross entropy (the
# same loss: not a fault), and faults no detector's meaning can name (a ReLU on a regression
# output, layers kept in a Python list and so never registered, NLL on raw logits, an LSTM fed
# time-major data): coverage gaps, not suite entries.
NAN = math.nan
HURT: dict[str, tuple[float, float, float]] = {
    "fl_cnn_softmax_batch_dim": (0.765, 0.819, 0.769),
    "fl_cnn_sgd_lr_2": (0.098, 0.102, 0.095),
    "fl_cnn_init_std_1": (0.276, 0.429, 0.301),
    "fl_cnn_frozen_features": (0.332, 0.306, 0.350),
    "fl_diabetes_raw_targets": (0.063, 0.091, 0.203),
    "fl_diabetes_no_epsilon": (NAN, NAN, NAN),
    "fl_diabetes_sgd_lr_0.3": (NAN, -0.007, 0.206),
    "fl_diabetes_lr_1e-6": (0.056, -0.036, 0.015),
    "fl_lstm_labels_rolled": (0.306, 0.311, 0.389),
    "fl_lstm_40_examples": (0.594, 0.578, 0.544),
    "fl_digits_bn_batch_3": (0.567, 0.619, 0.528),
    "fl_digits_exp_decay_per_step": (0.378, 0.356, 0.236),
    "fl_digits_clip_1e-4": (0.075, 0.097, 0.069),
    "fp_digits_no_zero_grad": (0.092, 0.097, 0.108),
    "fp_digits_zero_grad_late": (0.044, 0.097, 0.103),
    "fp_digits_momentum_0.999": (0.667, 0.803, 0.692),
    "fp_spiral_units_x50": (0.284, 0.219, 0.416),
    "fp_spiral_init_std_0.01": (0.253, 0.206, 0.247),
    "fp_spiral_label_noise_0.5": (0.394, 0.525, 0.469),
    "fp_spiral_sorted": (0.275, 0.309, 0.363),
    "fp_waves_offset_100": (0.256, 0.294, 0.272),
    "fp_waves_nan_gap": (NAN, NAN, NAN),
    "fp_waves_rmsprop_0.1": (0.450, 0.711, 0.650),
    "fp_cancer_raw_features": (0.921, 0.895, 0.947),
    "fp_cancer_minority_1_in_15": (0.851, 0.860, 0.886),
    "fa_mnist_sgd_lr_3": (0.105, 0.111, 0.104),
    "fa_mnist_hand_softmax": (0.911, 0.917, 0.829),
    "fa_mnist_relu_bias_-2": (0.091, 0.083, 0.092),
    "fa_diabetes_clip_1e-3": (-0.087, -0.005, -0.165),
    "fa_diabetes_no_scale_targets": (-1.000, -1.000, -1.000),
    "fa_spiral_identity_acts": (0.244, 0.228, 0.259),
    "fa_spiral_lr_1e-6": (0.181, 0.244, 0.300),
    "fh_l_mnist_cnn": (0.921, 0.947, 0.918),
    "fh_l_diabetes_silu": (0.500, 0.499, 0.497),
    "fh_l_waves_lstm": (0.811, 0.911, 0.956),
    "fh_l_digits_bn_cosine": (0.978, 0.989, 0.983),
    "fh_p_digits_gelu": (0.978, 0.986, 0.967),
    "fh_p_spiral_tanh": (0.956, 0.966, 0.994),
    "fh_p_waves_tcn": (0.933, 0.917, 0.861),
    "fh_p_cancer_mlp": (0.974, 0.982, 0.982),
    "fh_a_mnist_leaky": (0.915, 0.928, 0.919),
    "fh_a_diabetes_sgd": (0.432, 0.520, 0.428),
    "fh_a_spiral_relu": (0.966, 0.988, 0.991),
    "fh_a_waves_tcn": (0.967, 0.922, 0.917),
    "fh_p_digits_clip_warmup": (0.981, 0.969, 0.950),
}
HURT_MARGIN = 0.02


def hurt(name: str) -> float:
    """Twin's mean recorded score minus the fault's (non-finite counted as -1)."""
    def mean(xs):
        return sum(x if math.isfinite(x) else -1.0 for x in xs) / len(xs)

    twin = next(s.twin for s in FAULTS if s.name == name)
    return mean(HURT[twin]) - mean(HURT[name])


SETUPS: list[FreshSetup] = FAULTS + HEALTHY


# ------------------------------------------------------------------------------ running ----
def _optimizer(t: dict, params):
    kind, lr = t.get("optimizer", "adam"), t.get("lr", 1e-3)
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=t.get("momentum", 0.0),
                               weight_decay=t.get("wd", 0.0))
    if kind == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr)
    make = torch.optim.AdamW if kind == "adamw" else torch.optim.Adam
    return make(params, lr=lr, weight_decay=t.get("wd", 0.0))


def _schedule(t: dict, opt, steps: int):
    kind = t.get("schedule")
    if kind is None:
        return None
    if kind[0] == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    if kind[0] == "exp":
        return torch.optim.lr_scheduler.ExponentialLR(opt, gamma=kind[1])
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min(1.0, (k + 1) / kind[1]))


def _loss(s: FreshSetup):
    if s.task == "regression":
        return F.mse_loss
    smoothing = s.train.get("smoothing", 0.0)
    return lambda out, y: F.cross_entropy(out, y, label_smoothing=smoothing)


def _build(s: FreshSetup, xtr, ytr, seed: int) -> nn.Module:
    torch.manual_seed(9000 + 17 * seed)
    n_out = 1 if s.task == "regression" else int(_raw(s.data)[1].max()) + 1
    return s.model(tuple(xtr.shape[1:]), n_out)


def _score(s: FreshSetup, model: nn.Module, xva, yva) -> float:
    """Validation accuracy, or R^2 floored at -1 (a diverged regression); nan if not finite."""
    model.eval()
    with torch.no_grad():
        out = model(xva)
    if not torch.isfinite(out).all():
        return math.nan
    if s.task == "regression":
        return max(-1.0, float(1 - ((out - yva) ** 2).mean() / ((yva - yva.mean()) ** 2).mean()))
    return float((out.argmax(1) == yva).float().mean())


def _result(s: FreshSetup, seed: int, events, steps: int, score: float) -> Result:
    r = Result(s.name, seed, s.healthy, s.expected, s.plausible, steps=steps, score=score)
    for e in events:   # Verdict objects, or the dicts of events.jsonl
        e = e if isinstance(e, dict) else {**e.to_dict(), "kind": getattr(e, "kind", None),
                                           "explained_by": getattr(e, "explained_by", ())}
        r.fired.setdefault(e["detector"], e["step"])
        r.messages.setdefault(e["detector"], f"{e['message']} | evidence {e.get('evidence')}")
        if e.get("kind") == "symptom" and hasattr(r, "symptoms"):   # the suite's Result knows
            r.symptoms[e["detector"]] = list(e.get("explained_by") or [])   # symptoms vs causes
    return r


class _Dicts(torch.utils.data.Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"signal": self.x[i], "label": self.y[i]}


def run_lightning(s: FreshSetup, seed: int, monitor: bool, folder: Path) -> Result:
    import logging

    import lightning.pytorch as pl

    from .callback import HealthMonitor

    xtr, ytr, xva, yva = prepare(s, seed)
    net, t, lossf = _build(s, xtr, ytr, seed), s.train, _loss(s)
    dicts = t.get("dict_batches", False)

    class FreshModule(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net(x)

        def _step(self, batch):
            x, y = (batch["signal"], batch["label"]) if dicts else batch
            return lossf(self(x), y)

        def training_step(self, batch, batch_idx):
            loss = self._step(batch)
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch, batch_idx):
            self.log("val_loss", self._step(batch))

        def configure_optimizers(self):
            opt = _optimizer(t, self.parameters())
            sched = _schedule(t, opt, t["steps"])
            if sched is None:
                return opt
            return [opt], [{"scheduler": sched, "interval": "step"}]

    data = (_Dicts if dicts else torch.utils.data.TensorDataset)
    train_loader = torch.utils.data.DataLoader(
        data(xtr, ytr), batch_size=t["batch"], shuffle=not s.prep.get("sort"),
        generator=torch.Generator().manual_seed(seed), drop_last=len(xtr) > t["batch"])
    val_loader = torch.utils.data.DataLoader(data(xva, yva), batch_size=256)
    hm = HealthMonitor(folder / "health") if monitor else None
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, max_steps=t["steps"],
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0,
                         gradient_clip_val=t.get("clip"), default_root_dir=str(folder),
                         callbacks=[hm] if hm else [])
    trainer.fit(FreshModule(), train_loader, val_loader)
    return _result(s, seed, hm.events if hm else [], trainer.global_step, _score(s, net, xva, yva))


def run_plain(s: FreshSetup, seed: int, monitor: bool, folder: Path) -> Result:
    from .monitor import HealthRecorder

    xtr, ytr, xva, yva = prepare(s, seed)
    model, t, lossf = _build(s, xtr, ytr, seed), s.train, _loss(s)
    opt = _optimizer(t, model.parameters())
    sched = _schedule(t, opt, t["steps"])
    rec = HealthRecorder() if monitor else None
    if rec:
        rec.attach(model, optimizer=opt, **({"clip": t["clip"]} if t.get("declare_clip") else {}))
        if t.get("declare"):
            rec.set_reference(classes=int(_raw(s.data)[1].max()) + 1)
    g = torch.Generator().manual_seed(seed)
    batch, bug, step, epoch = t["batch"], t.get("bug"), 0, 0
    while step < t["steps"]:
        order = torch.arange(len(xtr)) if s.prep.get("sort") else torch.randperm(len(xtr), generator=g)
        for i in range(0, len(xtr) - batch + 1, batch):
            if step >= t["steps"]:
                break
            x, y = xtr[order[i:i + batch]], ytr[order[i:i + batch]]
            if rec:
                rec.begin_step(targets=y)
            loss = lossf(model(x), y)
            if rec and not rec.after_loss(loss, replay=lambda x=x: model(x)):
                step = t["steps"]   # NaN/Inf located: stop, as the docs' loop does
                break
            if bug != "no_zero_grad":
                opt.zero_grad()
            loss.backward()
            if bug == "zero_grad_late":
                opt.zero_grad()
            if t.get("clip"):
                torch.nn.utils.clip_grad_norm_(model.parameters(), t["clip"])
            if rec:
                rec.before_optimizer_step()
            opt.step()
            if sched:
                sched.step()
            if rec:
                rec.end_step()
            step += 1
        model.eval()
        with torch.no_grad():
            val_loss = float(lossf(model(xva), yva))
        model.train()
        if rec:
            rec.validation(val_loss, epoch)
        epoch += 1
    if rec:
        rec.finish(folder / "health")
    return _result(s, seed, rec.events if rec else [], step, _score(s, model, xva, yva))


def run_archlab(s: FreshSetup, seed: int, monitor: bool, folder: Path) -> Result:
    """``archlab.train.train`` on the module; the data file holds the training rows first and
    the validation rows last (split 0.8/0.2/0, not stratified); archlab scales the data unless
    the fault turns it off (``--no-scale``, ``--no-scale-targets``)."""
    from ..errors import ArchlabError
    from ..train import train
    from .state import read_events

    xtr, ytr, xva, yva = prepare(s, seed, scale=False)
    model, t = _build(s, xtr, ytr, seed), s.train
    x, y = torch.cat([xtr, xva]).numpy(), torch.cat([ytr, yva]).numpy()
    np.savez(folder / "data.npz", x=x, y=y)
    per_epoch = max(1, len(xtr) // t["batch"])
    opts = dict(epochs=max(1, math.ceil(t["steps"] / per_epoch)), batch=t["batch"], lr=t["lr"] if
                "lr" in t else 1e-3, optimizer=t.get("optimizer", "adam"), seed=seed,
                out=str(folder), name="run", progress=False, health=monitor, task=s.task,
                scale=s.prep.get("scale", "standard") != "raw", split=(0.8, 0.2, 0.0),
                stratify=False)
    if s.task == "regression":
        opts["scale_targets"] = s.prep.get("targets", "standard") != "raw"
    if t.get("clip"):
        opts["clip"] = t["clip"]
    try:
        run = train(model, {"source": str(folder / "data.npz")}, **opts)
    except ArchlabError as err:
        r = Result(s.name, seed, s.healthy, s.expected, s.plausible)
        r.fired, r.messages = {"data_error": 0}, {"data_error": str(err)}
        return r
    last = run.metrics[-1] if run.metrics else {}
    if s.task == "regression":
        score = 1 - float(last.get("val_mse", math.nan)) / float(y[np.asarray(run.splits.val)].var())
        score = max(-1.0, score) if math.isfinite(score) else math.nan
    else:
        score = float(last.get("val_accuracy", math.nan))
    events = read_events(run.path / "health") if monitor else []
    return _result(s, seed, events, opts["epochs"] * per_epoch, score if math.isfinite(score) else math.nan)


def run_fresh(s: FreshSetup, seed: int = 0, monitor: bool = True) -> Result:
    """Train one fresh set-up on its user path (monitor at its defaults unless ``monitor=False``)
    in a temporary folder; the Result carries the verdicts, their evidence and the score."""
    import time

    runner = {"lightning": run_lightning, "plain": run_plain, "archlab": run_archlab}[s.path]
    with tempfile.TemporaryDirectory(prefix="archlab-fresh-") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        r = runner(s, seed, monitor, Path(tmp))
        r.seconds = time.perf_counter() - t0
    return r
