"""lr_too_high's summed-gradients form (session 8, brief D1b, issue 14): a loop that never
calls ``zero_grad`` sums the gradients over the steps, so each step applies lr x the sum of
all past gradients. Found from the reads of the first 32 steps: the gradient norm of the layers
that learn (the median layer) rises at nearly every read (a one-sided sign test at 1e-3)
and the total at least doubles.

Oracles: the recorded norms are those of the running sum of the batch gradients (computed here
apart, batch by batch); the needed count of rises is the binomial tail summed upwards; the same
loop with ``zero_grad`` is not named; a body outside the optimizer (only the head given to it,
``opt.zero_grad()`` clearing the head alone) keeps its gradients but is never stepped, and is
not named either.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from archlab.diagnose import HealthRecorder
from archlab.diagnose.detectors import SUMMED_ALPHA, _rises_needed, summed_gradients


def _data(seed=0, n=512):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = torch.sin(2 * x[:, :1]) * x[:, 1:2] + 0.1 * torch.randn(n, 1, generator=g)
    return x, (y - y.mean()) / y.std(), g


def _loop(steps=60, *, zero_grad=True, head_only=False, adam=False):
    x, y, g = _data()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                          nn.Linear(32, 1))
    params = model[4].parameters() if head_only else model.parameters()
    opt = torch.optim.Adam(params, 1e-3) if adam else torch.optim.SGD(params, 1e-3)
    rec = HealthRecorder(detectors=["lr_too_high"])
    rec.attach(model, optimizer=opt)
    rec.set_reference(target_variance=1.0)
    summed, norms = None, {}
    for step in range(steps):
        idx = torch.randint(0, len(x), (32,), generator=g)
        rec.begin_step(targets=y[idx])
        loss = nn.functional.mse_loss(model(x[idx]), y[idx])
        rec.after_loss(loss)
        if zero_grad:
            opt.zero_grad()
        # the oracle: this batch's own gradient, summed apart over the steps
        batch = torch.autograd.grad(loss, list(model.parameters()), retain_graph=True)
        summed = [b.clone() for b in batch] if summed is None or zero_grad else [
            s + b for s, b in zip(summed, batch, strict=True)]
        norms[step] = math.sqrt(sum(float((s ** 2).sum()) for s in summed))
        loss.backward()
        rec.before_optimizer_step()
        opt.step()
        rec.end_step()
    rec.finish(None)
    return rec, norms


def _fired(rec):
    return {v.detector: v for v in rec.events}


def _needed_oracle(n, alpha):
    """The fewest k with P(Binomial(n, 1/2) >= k) < alpha, the tail summed from k upwards."""
    for k in range(n + 1):
        if sum(math.comb(n, j) for j in range(k, n + 1)) / 2 ** n < alpha:
            return k
    return n + 1


def test_the_rises_needed_are_the_binomial_tail():
    for n in (10, 16, 24, 40):
        assert _rises_needed(n, SUMMED_ALPHA) == _needed_oracle(n, SUMMED_ALPHA)
    assert _rises_needed(10, 1e-3) == 10   # 1/1024 < 1e-3: all ten
    assert _rises_needed(24, 1e-3) == 20


def test_a_loop_without_zero_grad_is_a_learning_rate_too_high():
    rec, norms = _loop(zero_grad=False)
    ev = summed_gradients(rec.state)
    assert ev is not None
    # the recorded norms are the running sum's (every layer learns here)
    steps = rec.state.sample_steps[:ev["reads"]]
    assert np.allclose(ev["grad_norms"], [norms[s] for s in steps], rtol=1e-4)
    n = ev["reads"]
    per = np.count_nonzero(np.diff(rec.state.array("grad_norm")[:n], axis=0) > 0, axis=0)
    assert ev["layer_rises"] == per.tolist() and ev["rises"] == float(np.median(per))
    assert ev["rises"] >= ev["rises_needed"] == _needed_oracle(ev["reads"] - 1, SUMMED_ALPHA)
    v = _fired(rec)["lr_too_high"]
    assert v.evidence["summed_gradients"] == ev
    assert v.step == min(s for s in rec.state.sample_steps if s > 32)   # one look, after 32
    assert "zero_grad" in v.fixes[0]


def test_adam_without_zero_grad_is_found_too():
    rec, _ = _loop(zero_grad=False, adam=True)
    assert summed_gradients(rec.state) is not None
    assert "summed_gradients" in _fired(rec)["lr_too_high"].evidence


def test_a_loop_that_clears_its_gradients_is_not_named():
    rec, norms = _loop(zero_grad=True)
    assert summed_gradients(rec.state) is None
    assert "lr_too_high" not in _fired(rec)
    # the oracle's batch norms rise about half the time
    n = [norms[s] for s in rec.state.sample_steps if s <= 32]
    assert np.count_nonzero(np.diff(n) > 0) < _needed_oracle(len(n) - 1, SUMMED_ALPHA)


def test_gradients_kept_by_layers_outside_the_optimizer_are_not_asked():
    # opt.zero_grad() clears the head alone; the body's gradients add up, but nothing steps it
    rec, _ = _loop(zero_grad=True, head_only=True)
    assert summed_gradients(rec.state) is None
    assert "lr_too_high" not in _fired(rec)
