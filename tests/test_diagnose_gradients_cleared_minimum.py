"""gradients_cleared judges each sample by its own batch's loss (issue 14; fresh7
f7_l_pinwheel_adam_lr_2 seed 2: Adam at lr 2 left logits of ~1e6, most batches cost thousands
and some exactly 0, with every gradient exactly 0 on those; the recent mean stayed high and the
loop was named although it was intact).

Oracle: autograd. Cross entropy on logits whose softmax rounds to 1.0 at every example's label
is exactly 0, and so is every gradient; a batch with a wrong-side example costs its margin."""

from __future__ import annotations

import torch
from torch import nn

from archlab.diagnose import HealthRecorder


def _data():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(320) % 2
    x = torch.randn(320, 2, generator=g) * 0.1 + (2.0 * y[:, None] - 1.0)   # two blobs at -1, +1
    return x, y


def _model():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(2, 2))
    with torch.no_grad():   # logits ~1e4 x (the blob's side): softmax 1.0 at the right class
        m[0].weight.copy_(torch.tensor([[-1e4, -1e4], [1e4, 1e4]]))
        m[0].bias.zero_()
    return m


def _run(bug=None, steps=20):
    """Steps 0-9: batches whose labels are flipped (loss ~4e4 each); steps 10-19: batches the
    model fits with margins of ~4e4 (loss exactly 0, every gradient exactly 0)."""
    x, y = _data()
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=1e-9)
    rec = HealthRecorder()
    rec.attach(model, optimizer=opt)
    own = []
    for step in range(steps):
        xb, yb = x[step * 16:(step + 1) * 16], y[step * 16:(step + 1) * 16]
        if step < 10:
            yb = 1 - yb
        rec.begin_step(targets=yb)
        loss = nn.functional.cross_entropy(model(xb), yb)
        rec.after_loss(loss)
        opt.zero_grad()
        loss.backward()
        if bug == "zero_grad_late":
            opt.zero_grad()
        own.append((float(loss.detach()), [p.grad.clone() if p.grad is not None else None
                                  for p in model.parameters()]))
        rec.before_optimizer_step()
        opt.step()
        rec.end_step()
    rec.finish(None)
    return {v.detector: v for v in rec.events}, own


def test_the_oracle_fitted_batches_cost_exactly_nothing_and_have_no_gradient():
    _, own = _run()
    for step, (loss, grads) in enumerate(own):
        if step < 10:
            assert loss > 1e3 and any(torch.count_nonzero(g) for g in grads)
        else:
            assert loss == 0.0 and all(torch.count_nonzero(g) == 0 for g in grads)


def test_zero_gradients_on_batches_at_their_minimum_are_not_cleared_gradients():
    """Samples at steps 10, 11, 12 have exactly-0 gradients and a loss of exactly 0, while the
    mean of the last 10 losses is ~3e4 (steps 3-9): the batches explain the zeros."""
    fired, own = _run()
    assert sum(l for l, _ in own[3:13]) / 10 > 1e3   # what the recent-mean test alone saw
    assert "gradients_cleared" not in fired, fired["gradients_cleared"].message


def test_cleared_gradients_on_costly_batches_are_still_named_with_their_losses():
    fired, own = _run(bug="zero_grad_late")
    v = fired["gradients_cleared"]
    assert v.step == 2 and ".grad is None" in v.message and "cleared in between" in v.message
    assert v.evidence["step_losses"] == [own[s][0] for s in (0, 1, 2)]
    assert all(l > 1e3 for l in v.evidence["step_losses"])
    assert "zero_grad() before loss.backward()" in v.fixes[0]
