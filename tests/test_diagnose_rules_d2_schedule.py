"""lr_schedule_decayed names a schedule that froze the model in the first half of the run at any
loss level, not only while the loss is still above half the know-nothing level (issue 14,
fresh6 f6_l_borehole_steplr_per_batch: StepLR(10, 0.1) meant per epoch, stepped per batch,
froze a regression at 0.3-0.5 x the target variance: missed on one seed, found at step 224 on
another).

Oracles: the schedule itself (StepLR(10, 0.1) stepped per batch is below 1e-3 x its first rate
from step 30 on: 0.1 ** 3), and the same model trained without the schedule, which goes on to
a loss several times lower (the frozen run is hurt)."""

from __future__ import annotations

import math

import torch
from torch import nn

from archlab.diagnose import HealthRecorder, HealthState
from archlab.diagnose.baselines import loss_reference
from archlab.diagnose.taxonomy import LrScheduleDecayed


def _data(seed=0, n=512):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    y = (x[:, :1] + 0.5 * x[:, 1:2] - 0.5 * x[:, 2:3] + 0.5 * torch.sin(3 * x[:, 3:4])
         + 0.05 * torch.randn(n, 1, generator=g))
    return x, (y - y.mean()) / y.std()


def _run(schedule, steps=300, seed=0):
    torch.manual_seed(seed)
    x, y = _data(seed)
    model = nn.Sequential(nn.Linear(6, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 1))
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    sched = None
    if schedule == "step_per_batch":
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.1)
    elif schedule == "step_per_epoch":   # x0.1 once, half-way: 1e-1 x its first rate at the end
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=steps // 2, gamma=0.1)
    elif schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    rec = HealthRecorder()
    rec.attach(model, optimizer=opt)
    g = torch.Generator().manual_seed(seed)
    step = 0
    while step < steps:
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x) - 31, 32):
            if step >= steps:
                break
            xb, yb = x[perm[i:i + 32]], y[perm[i:i + 32]]
            rec.begin_step(targets=yb)
            loss = nn.functional.mse_loss(model(xb), yb)
            rec.after_loss(loss)
            opt.zero_grad()
            loss.backward()
            rec.before_optimizer_step()
            opt.step()
            if sched is not None:
                sched.step()
            rec.end_step()
            step += 1
    rec.finish(None)
    return rec


def _fired(rec):
    return {v.detector: v for v in rec.events}


def test_a_per_batch_step_schedule_that_froze_a_partly_fitted_model_is_named():
    frozen, free = _run("step_per_batch"), _run(None)
    late = lambda rec: float(rec.state.loss_array()[-50:].mean())   # noqa: E731
    # the oracle: below the know-nothing level's half (the old rule's reach) yet hurt
    assert late(frozen) < 0.5 * loss_reference(frozen.state).value
    assert late(free) < 0.5 * late(frozen)
    v = _fired(frozen)["lr_schedule_decayed"]
    assert v.kind == "cause"
    assert 30 <= v.evidence["below_since_step"] <= 40      # 0.1 ** 3 from step 30, sampled
    assert v.evidence["fall_before"]["z"] > 2
    assert "first half of the run" in v.message
    assert "lr_schedule_decayed" not in _fired(free)


def test_schedules_that_anneal_at_the_end_are_quiet():
    for schedule in ("step_per_epoch", "cosine"):
        assert "lr_schedule_decayed" not in _fired(_run(schedule)), schedule


def _state(losses, lr_low_from, steps=200):
    st = HealthState(param_layers=["a"])
    st.losses = list(losses)
    st.sample_steps = list(range(0, steps, 4))
    st.initial_lr = 1e-2
    st.lr = [1e-2 if s < lr_low_from else 1e-7 for s in st.sample_steps]
    st.reference = {"target_variance": 1.0}
    return st


def test_a_model_at_its_floor_before_the_freeze_is_not_named():
    """The same freeze at step 40 of 200, on a loss already flat at 0.1 x the reference before
    it (batch noise only): nothing was being learned, so nothing was lost. A loss falling
    before the freeze is named."""
    rng = torch.Generator().manual_seed(0)
    noise = 0.02 * torch.randn(200, generator=rng)
    flat = [0.1 + float(e) for e in noise]
    assert LrScheduleDecayed().check(_state(flat, 40)) is None
    falling = [0.1 + 0.5 * math.exp(-s / 15) + float(e) if s < 40 else
               0.1 + 0.5 * math.exp(-40 / 15) + float(e) for s, e in enumerate(noise)]
    v = LrScheduleDecayed().check(_state(falling, 40))
    assert v is not None and v.evidence["below_since_step"] == 40
    # the test of the fall itself: the halves of the 40 steps before step 40
    import numpy as np

    from archlab.diagnose.taxonomy import falling_before

    f = falling_before(np.asarray(falling), 40)
    assert f["window"] == 20 and f["before"] > f["recent"] and f["z"] > 2
