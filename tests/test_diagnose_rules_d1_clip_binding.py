"""``detectors.clipping_binding`` (the clip test that lr_too_low, frozen_layers' on-purpose form
and vanishing_gradients' sigmoid form use to rule out a binding clip) against oracles.

An L1 penalty's gradient lambda sign(w) has norm lambda sqrt(n) in a layer of n non-zero
weights, whatever the batch: when it dominates the data term the total norm is pinned to a
fraction of a percent, as clip_grad_norm_ pins it, while the small bias layers' shares move.
Clipping rescales every layer by one factor, so the layers' squared norms compensate each
other; the constant-norm term pins each layer on its own and the total moves as its parts do
(``detectors_gradients.compensation``). Oracles: lambda sqrt(n) counted from the shapes, and
torch's own clip_grad_norm_.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from archlab.diagnose import HealthRecorder
from archlab.diagnose.detectors import clipping_binding
from archlab.diagnose.detectors_gradients import COMPENSATED, compensation


def _loop(steps, *, l1=0.0, clip=None, seed=0):
    """A plain regression loop (Adam 1e-3, batch 32, a 4-64-64-2-1 ReLU MLP: the 2-unit
    bottleneck is a layer of few weights, whose data gradient is a large part of its own) that
    may add an L1 term to its loss or clip by norm, without telling the monitor either."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1024, 4, generator=g)
    y = x[:, :1] * x[:, 1:2] + torch.sin(x[:, 2:3]) + 0.1 * torch.randn(1024, 1, generator=g)
    y = (y - y.mean()) / y.std()
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                          nn.Linear(64, 2), nn.Linear(2, 1))
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    rec = HealthRecorder(detectors=["lr_too_low"])   # the series alone are under test
    rec.attach(model, optimizer=opt)
    weights = [p for name, p in model.named_parameters() if name.endswith("weight")]
    for _ in range(steps):
        idx = torch.randint(0, len(x), (32,), generator=g)
        xb, yb = x[idx], y[idx]
        rec.begin_step(targets=yb)
        loss = nn.functional.mse_loss(model(xb), yb)
        if l1:
            loss = loss + l1 * sum(w.abs().sum() for w in weights)
        rec.after_loss(loss)
        opt.zero_grad()
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        rec.before_optimizer_step()
        opt.step()
        rec.end_step()
    return rec, model


def test_an_l1_penalty_does_not_bind_as_a_clip():
    """L1 1.5, no clipping: each large weight layer's gradient norm is lambda sqrt(n) to 2 %
    (the trap), the total pinned below 1e-4 as a clip would leave it while the bottleneck's
    share moves by more than 1e-3, yet the total moves as much as its parts: no binding clip.
    (Before the compensation test clipping_binding returned the pinned total as an undeclared
    threshold.)"""
    lam = 1.5
    rec, model = _loop(150, l1=lam)
    g = rec.state.array("grad_norm")[-5:]
    weights = [p.numel() for name, p in model.named_parameters() if name.endswith("weight")]
    assert np.allclose(g[:, :3], [lam * math.sqrt(n) for n in weights[:3]], rtol=0.02)
    total = np.sqrt((g ** 2).sum(axis=1))
    assert (total.max() - total.min()) / total.max() < 1e-4                   # pinned, as a clip
    shares = g / total[:, None]
    assert np.max(shares.max(axis=0) - shares.min(axis=0)) > 1e-3            # the shares move
    assert compensation(g) > COMPENSATED
    assert clipping_binding(rec.state) is None


def test_an_undeclared_clip_still_binds():
    """The same loop without the penalty, clipped by torch's clip_grad_norm_ to 1e-3 and not
    declared: the layers' squared norms sum to the threshold's square to rounding."""
    rec, _ = _loop(120, clip=1e-3)
    ev = clipping_binding(rec.state)
    assert ev is not None and ev["clip_value"] == pytest.approx(1e-3, rel=1e-3)
    assert ev["total_over_parts_spread"] < 1e-3
