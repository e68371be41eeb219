"""Three rules of session 8 (brief D1, issue 14, the sixth suite's misses) against oracles.

* ``frozen_layers``: hidden layers computed under ``torch.no_grad()`` keep requires_grad on and
  stay in the optimizer, but backward never reaches them: their ``.grad`` is None on every
  step and they never move while the output layer learns. Oracle: the same network without the
  ``no_grad`` (every layer gets a gradient), and a branch taken on alternate steps (a gradient
  on some steps: not this).
* ``lr_too_low``: ``opt.step()`` under an ``if step % 25 == 0``: the gradients of 24 batches
  in 25 are cleared unused. Oracle: the sampled steps that are multiples of 25 are the ones
  with an update; the same loop stepping on every batch learns and is not named.
* ``divergence_onset``: a loss above 3x the know-nothing level counts as a divergence when the
  median of it and the 4 losses after it is (a majority of 5); one spiking batch does not.
  Oracle: np.median over each window, the non-finite losses as +inf.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from archlab.diagnose import HealthRecorder, HealthState
from archlab.diagnose.detectors import (
    DIVERGED,
    Frozen,
    diverged_loss_step,
    divergence_onset,
    skipped_steps,
)


class Body(nn.Module):
    """A 4-32-32-1 ReLU MLP; ``no_grad``: the hidden layers run under torch.no_grad() (copied
    from an inference helper); ``alternate``: the second hidden layer is used on odd calls only."""

    def __init__(self, no_grad=False, alternate=False):
        super().__init__()
        self.h1, self.h2, self.out = nn.Linear(4, 32), nn.Linear(32, 32), nn.Linear(32, 1)
        self.no_grad, self.alternate, self.calls = no_grad, alternate, 0

    def forward(self, x):
        self.calls += 1
        with torch.set_grad_enabled(not self.no_grad and torch.is_grad_enabled()):
            h = torch.relu(self.h1(x))
            if not self.alternate or self.calls % 2:
                h = torch.relu(self.h2(h))
        return self.out(h)


def _data(seed=0, n=512):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = torch.sin(2 * x[:, :1]) * x[:, 1:2] + 0.1 * torch.randn(n, 1, generator=g)
    return x, (y - y.mean()) / y.std(), g


def _loop(model, steps, *, lr=1e-3, step_every=1, detectors=("frozen_layers", "lr_too_low")):
    x, y, g = _data()
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr)
    rec = HealthRecorder(detectors=list(detectors))
    rec.attach(model, optimizer=opt)
    rec.set_reference(target_variance=1.0)
    for step in range(steps):
        idx = torch.randint(0, len(x), (32,), generator=g)
        rec.begin_step(targets=y[idx])
        loss = nn.functional.mse_loss(model(x[idx]), y[idx])
        rec.after_loss(loss)
        opt.zero_grad()
        loss.backward()
        rec.before_optimizer_step()
        if step % step_every == 0:
            opt.step()
        rec.end_step()
    rec.finish(None)
    return rec


def _fired(rec):
    return {v.detector: v for v in rec.events}


# ------------------------------------------------------------------- frozen_layers ----

def test_layers_under_no_grad_are_named_frozen():
    rec = _loop(Body(no_grad=True), 40, detectors=("frozen_layers",))
    v = _fired(rec)["frozen_layers"]
    assert v.evidence["no_gradient"] == ["h1", "h2"]           # the two hidden layers, not 'out'
    assert v.layers == ["h1", "h2"] and v.step <= 8
    assert not Frozen.can_be_consequence(v)                    # the code's structure, not a trace


def test_every_layer_with_a_gradient_is_not_named():
    assert "frozen_layers" not in _fired(_loop(Body(), 40, detectors=("frozen_layers",)))
    # a layer reached on alternate steps has a gradient on some of them: not "never reached"
    rec = _loop(Body(alternate=True), 40, detectors=("frozen_layers",))
    assert "frozen_layers" not in _fired(rec)


# ------------------------------------------------------------------- lr_too_low ----

def test_an_optimizer_stepped_every_25th_batch_is_a_learning_rate_too_low():
    rec = _loop(Body(), 130, step_every=25)
    st = rec.state
    ev = skipped_steps(st)
    # the oracle: the samples with an update are the steps that are multiples of 25
    stepped = [s for s, read in zip(st.sample_steps, st.grad_read, strict=False) if read and s % 25 == 0]
    assert ev is not None and ev["stepped_at"] == stepped[-8:]
    assert ev["stepped_share"] == len(stepped) / ev["samples"]
    v = _fired(rec)["lr_too_low"]
    assert v.evidence["form"] == "skipped optimizer steps" and v.step >= 100
    assert "optimizer.step() on every batch" in v.fixes[0]


def test_a_loop_that_steps_on_every_batch_skips_none():
    rec = _loop(Body(), 130, lr=1e-3)
    assert skipped_steps(rec.state) is None
    assert "lr_too_low" not in _fired(rec)


# --------------------------------------------------------------- divergence_onset ----

def _oracle(losses, level, span=5):
    inf = np.where(np.isfinite(losses), losses, np.inf)
    for i, v in enumerate(losses):
        if not np.isfinite(v):
            return i
        if v > level and i + span <= len(losses) and np.median(inf[i:i + span]) > level:
            return i
    return None


def test_one_spiking_batch_is_not_a_divergence():
    st = HealthState(param_layers=["a"], losses=[1.0] * 5 + [9.0] + [1.0] * 10,
                     reference={"classes": 3})
    assert divergence_onset(st) is None                       # 9 > 3 x ln 3, once
    st.losses = [1.0] * 5 + [9.0, 9.0, 1.0, 9.0] + [1.0] * 10
    assert divergence_onset(st) == 5                          # 3 of the 5 from step 5
    st.losses = [1.0] * 5 + [9.0, float("nan")]
    assert divergence_onset(st) == 6                          # a non-finite loss at once


def test_the_diverged_step_is_the_median_of_five():
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(1, 40))
        losses = rng.choice([0.5, 1.0, 4.0, 9.0, np.inf, np.nan], size=n,
                            p=[0.4, 0.3, 0.1, 0.15, 0.03, 0.02])
        assert diverged_loss_step(losses, DIVERGED) == _oracle(losses, DIVERGED)
