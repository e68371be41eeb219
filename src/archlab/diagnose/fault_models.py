"""Small networks of the fault suite, healthy and with faults built in (see fault_catalogue)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def mlp(n_in: int, n_out: int, hidden=(64, 64), act: Callable[[], nn.Module] | None = nn.ReLU,
        norm: bool = False, dropout: float = 0.0) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten()]
    for h in hidden:
        layers.append(nn.Linear(n_in, h))
        if norm:
            layers.append(nn.BatchNorm1d(h))
        if act is not None:
            layers.append(act())
        if dropout:
            layers.append(nn.Dropout(dropout))
        n_in = h
    layers.append(nn.Linear(n_in, n_out))
    return nn.Sequential(*layers)


def cnn(channels: int, n_out: int, act: Callable[[], nn.Module] | None = nn.ReLU,
        norm: bool = True) -> nn.Sequential:
    """conv-BN-act-pool, conv-BN-act, global pool, linear; ``act=None`` leaves only linear ops
    (convolutions, batch norm, max/average pooling, a linear head)."""
    def block(cin, cout):
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1, bias=not norm)]
        if norm:
            layers.append(nn.BatchNorm2d(cout))
        if act is not None:
            layers.append(act())
        return layers

    pool: nn.Module = nn.MaxPool2d(2) if act is not None else nn.AvgPool2d(2)
    return nn.Sequential(*block(channels, 8), pool, *block(8, 16), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(16, n_out))


def conv1d_net(channels: int, n_out: int, act: Callable[[], nn.Module] | None = nn.ReLU) -> nn.Sequential:
    """Sequences (N, C, L): conv-act-pool, conv-act, global average, linear."""
    acts = (lambda: [act()]) if act is not None else (lambda: [])
    return nn.Sequential(nn.Conv1d(channels, 16, 5, padding=2), *acts(), nn.AvgPool1d(2),
                         nn.Conv1d(16, 16, 5, padding=2), *acts(), nn.AdaptiveAvgPool1d(1),
                         nn.Flatten(), nn.Linear(16, n_out))


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


class SquashedNet(nn.Module):
    """A hand-written classifier whose forward ends in a functional sigmoid or softmax (the
    probabilities-as-logits fault in code, not in a layer) around a ``body`` of logits."""

    def __init__(self, body: nn.Module, squash: str = "sigmoid") -> None:
        super().__init__()
        self.body = body
        self.squash = squash

    def forward(self, x):
        z = self.body(x)
        return torch.sigmoid(z) if self.squash == "sigmoid" else torch.softmax(z, dim=1)


def zero_init(model: nn.Module) -> nn.Module:
    for p in model.parameters():
        nn.init.zeros_(p)
    return model


def negative_bias(model: nn.Module, bias: float = -4.0) -> nn.Module:
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.constant_(m.bias, bias)
    return model


def scaled(model: nn.Module, gain: float) -> nn.Module:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear):
                m.weight.mul_(gain)
    return model
