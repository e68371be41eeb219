"""Two wrong causes of the taxonomy rules, against oracles (brief D2, issue 14).

* ``clipping_too_tight`` read an L1 penalty as an undeclared clip: the gradient of
  lambda x sum |w| is lambda sign(w), of norm lambda sqrt(n) in a layer of n non-zero weights
  whatever the batch, so when it dominates the data term the total norm is pinned to a
  fraction of a percent, as clip_grad_norm_ pins it. Clipping rescales every layer by one
  factor, so the layers' squared norms compensate each other; a constant-norm term pins each
  layer on its own. Oracles: torch's own clip_grad_norm_, and lambda sqrt(n) counted from the
  shapes.
* ``unscaled_targets`` read the first batch of targets sorted by value (extreme values, close
  together: a mean far above its small spread) as an offset. Oracles: targets standardised by
  construction (mean 0, std 1 over the split), and the same targets shifted by 50 std.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from archlab.diagnose import HealthRecorder, HealthState
from archlab.diagnose.detectors_gradients import COMPENSATED, clip_evidence, compensation
from archlab.diagnose.taxonomy import UnscaledTargets


def _data(seed=0, n=1024, wave=False):
    """Four normal inputs and a standardised target; ``wave``: the target is sin(3 x0), whose
    values crowd at the two extremes as an oscillating series' do (Mackey-Glass)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    if wave:
        y = torch.sin(3 * x[:, :1]) + 0.01 * torch.randn(n, 1, generator=g)
    else:
        y = x[:, :1] * x[:, 1:2] + torch.sin(x[:, 2:3]) + 0.1 * torch.randn(n, 1, generator=g)
    return x, (y - y.mean()) / y.std()


def _loop(x, y, steps, *, l1=0.0, clip=None, sort=False, declare_variance=None, seed=0):
    """A plain regression loop (Adam 1e-3, batch 32) that reports its L1 term as the docs show
    (rec.penalty(term, degree=1)) and may clip by norm without declaring it."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(x.shape[1], 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                          nn.Linear(64, 1))
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    rec = HealthRecorder()
    rec.attach(model, optimizer=opt)
    if declare_variance is not None:
        rec.set_reference(target_variance=declare_variance)
    weights = [p for name, p in model.named_parameters() if name.endswith("weight")]
    g = torch.Generator().manual_seed(seed)
    step = 0
    while step < steps:
        order = torch.argsort(y[:, 0], stable=True) if sort else torch.randperm(len(x), generator=g)
        for i in range(0, len(x) - 32 + 1, 32):
            if step >= steps:
                break
            xb, yb = x[order[i:i + 32]], y[order[i:i + 32]]
            rec.begin_step(targets=yb)
            loss = nn.functional.mse_loss(model(xb), yb)
            if l1:
                term = l1 * sum(w.abs().sum() for w in weights)
                loss = loss + term
            rec.after_loss(loss)
            if l1:
                rec.penalty(term, degree=1, what=f"L1 {l1}")
            opt.zero_grad()
            loss.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            rec.before_optimizer_step()
            opt.step()
            rec.end_step()
            step += 1
    rec.finish(None)
    return rec, model


def _fired(rec):
    return {v.detector: v for v in rec.events}


# ---------------------------------------------------------------- clipping_too_tight ----

def test_an_l1_penalty_is_not_an_undeclared_clip():
    """L1 1.0 on a 4-64-64-1 MLP, no clipping: each weight layer's gradient norm is
    lambda sqrt(n) (16, 64, 8 from the shapes) to a percent, the total pinned below PINNED as
    a clip would leave it, yet the total moves as much as its parts: no clipping named.
    (Before the compensation test, clipping_too_tight fired here at step 64.)"""
    x, y = _data()
    rec, model = _loop(x, y, 120, l1=1.0)
    g = rec.state.array("grad_norm")[-10:]
    weights = [p.numel() for name, p in model.named_parameters() if name.endswith("weight")]
    assert np.allclose(g[:, :3], [math.sqrt(n) for n in weights], rtol=0.02)   # the trap
    total = np.sqrt((g ** 2).sum(axis=1))
    assert (total.max() - total.min()) / total.max() < 1e-3                  # pinned, as a clip
    assert compensation(g) > COMPENSATED
    assert clip_evidence(rec.state) is None
    fired = _fired(rec)
    assert "clipping_too_tight" not in fired
    assert fired["over_regularisation"].kind == "cause"   # the penalty is the cause named


def test_an_undeclared_clip_still_compensates_to_rounding():
    """The same loop without the penalty, clipped by torch's clip_grad_norm_ to 1e-3 and not
    declared: the layers' squared norms sum to the threshold's square to rounding while each
    moves with the batch, so the clip is still seen (Adam divides the clip's scale out again,
    so the loss falls and clipping_too_tight rightly names nothing: its other half)."""
    x, y = _data()
    rec, _ = _loop(x, y, 120, clip=1e-3)
    ev = clip_evidence(rec.state)
    assert ev is not None and ev["clip_value"] == pytest.approx(1e-3, rel=1e-3)
    assert ev["total_over_parts_spread"] < 1e-3


def test_compensation_against_clip_grad_norm():
    """Random layer gradients whose scales move with the 'batch' (tens of percent): rescaled by
    clip_grad_norm_ they compensate to rounding; left alone, the total moves as its parts."""
    rng = np.random.default_rng(0)
    clipped, free = [], []
    for _ in range(10):
        grads = [torch.tensor(rng.normal(size=n) * rng.uniform(0.5, 1.5), dtype=torch.float32)
                 for n in (200, 1000, 30)]
        free.append([float(t.norm()) for t in grads])
        params = [torch.zeros_like(t, requires_grad=True) for t in grads]
        for p, t in zip(params, grads, strict=True):
            p.grad = t.clone()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        clipped.append([float(p.grad.norm()) for p in params])
    assert compensation(np.array(clipped)) < 1e-4
    assert compensation(np.array(free)) > 0.3
    assert math.isnan(compensation(np.ones((10, 3))))   # a constant gradient: nothing to compare


# ------------------------------------------------------------------ unscaled_targets ----

def test_sorted_standardised_targets_are_not_called_unscaled():
    """Targets standardised over the split (a wave: values crowd at its extremes) but iterated
    in sorted order: the first batch holds the 32 lowest values (|mean| > 10 x their std: the
    trap), yet the split is at unit scale. The order is named, not the scale. (Before,
    unscaled_targets fired at step 0.)"""
    x, y = _data(wave=True)
    first = torch.sort(y[:, 0]).values[:32].double()
    assert abs(float(first.mean())) > 10 * float(first.std(unbiased=False))   # the trap
    fired = _fired(_loop(x, y, 60, sort=True)[0])
    assert "unshuffled_data" in fired
    assert "unscaled_targets" not in fired


def test_offset_targets_are_still_found_once_the_batches_are_shown_random():
    """The same targets shifted by 50 std (variance 1, below the variance bound; mean 50 > 10 x
    std) and shuffled: named after the 8 samples the order test needs (steps 0-7)."""
    x, y = _data(wave=True)
    v = _fired(_loop(x, y + 50.0, 60)[0]).get("unscaled_targets")
    assert v is not None and v.step == 7
    assert v.evidence["batches_unordered"]["samples"] == 8
    assert v.evidence["target_mean"] == pytest.approx(50.0, abs=0.5)
    assert v.evidence["onset_step"] == 0


def test_declared_moments_or_a_huge_variance_are_judged_at_once():
    """A declared variance is the split's (archlab train declares it): the offset is judged on
    the first sample. A variance above the bound is conclusive whatever the order (a stretch of
    sorted targets is no more spread than the split)."""
    st = HealthState(output_width=1, sample_steps=[0])
    st.reference = {"target_variance": 1.0}
    st.targets.update(kind="values", n=32, sum=32 * 50.0, sumsq=32 * 2501.0, absmax=52.0,
                      matches_output=True)
    assert UnscaledTargets().check(st) is not None
    big = HealthState(output_width=1, sample_steps=[0])
    vals = np.linspace(1000.0, 1100.0, 32)   # one sorted stretch, variance ~880
    big.targets.update(kind="values", n=32, sum=float(vals.sum()), sumsq=float((vals ** 2).sum()),
                       absmax=1100.0, matches_output=True)
    assert UnscaledTargets().check(big) is not None
    # the same stretch's offset alone (its variance scaled below the bound) waits
    small = HealthState(output_width=1, sample_steps=[0])
    vals = np.linspace(-2.3, -2.0, 32)
    small.targets.update(kind="values", n=32, sum=float(vals.sum()),
                         sumsq=float((vals ** 2).sum()), absmax=2.3, matches_output=True)
    assert UnscaledTargets().check(small) is None
