"""gradients_cleared rules out a dead output before naming the loop (issue 14, fresh6
f6_l_borehole_relu_out seed 1: a ReLU after a regression's output layer, dead on whole batches,
leaves every gradient exactly 0 with the loop intact).

Oracle: autograd itself. A ReLU (module or functional) whose inputs are all negative passes
back a gradient of exactly 0 to every parameter before it, whatever the loop does; a loop that
calls zero_grad(set_to_none=False) between backward() and step() leaves exactly 0 too, on a live
network whose output layer's bias would otherwise have a gradient."""

from __future__ import annotations

import torch
from torch import nn

from archlab.diagnose import HealthRecorder


class FunctionalReluOut(nn.Module):
    """A regression MLP whose output goes through F.relu (no module the monitor watches)."""

    def __init__(self, width=16):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, width), nn.Tanh())
        self.out = nn.Linear(width, 1)

    def forward(self, x):
        return torch.relu(self.out(self.body(x)))


def _model(kind: str, dead: bool) -> nn.Module:
    torch.manual_seed(0)
    if kind == "module":
        m = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1), nn.ReLU())
        out = m[2]
    else:
        m = FunctionalReluOut()
        out = m.out
    if dead:
        with torch.no_grad():
            out.bias.fill_(-50.0)   # every output's pre-activation < 0: the ReLU is dead
    return m


def _run(model, bug=None, steps=20):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(256, 4, generator=g)
    y = x[:, :1] + 0.1 * torch.randn(256, 1, generator=g)   # half the targets negative
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    rec = HealthRecorder()
    rec.attach(model, optimizer=opt)
    for step in range(steps):
        i = (step * 32) % 256
        xb, yb = x[i:i + 32], y[i:i + 32]
        rec.begin_step(targets=yb)
        loss = nn.functional.mse_loss(model(xb), yb)
        rec.after_loss(loss)
        opt.zero_grad()
        loss.backward()
        if bug == "zero_grad_late_zeros":
            opt.zero_grad(set_to_none=False)
        rec.before_optimizer_step()
        opt.step()
        rec.end_step()
    rec.finish(None)
    return {v.detector: v for v in rec.events}, model


def test_the_oracle_a_dead_relu_output_leaves_exactly_zero_gradients():
    for kind in ("module", "functional"):
        model = _model(kind, dead=True)
        x = torch.randn(32, 4)
        nn.functional.mse_loss(model(x), torch.randn(32, 1)).backward()
        assert all(p.grad is not None and torch.count_nonzero(p.grad) == 0
                   for p in model.parameters())


def test_dead_relu_output_is_not_named_cleared_gradients():
    """The loop is intact; the zeros come from the output ReLU (watched module, or functional)."""
    for kind in ("module", "functional"):
        fired, _ = _run(_model(kind, dead=True))
        assert "gradients_cleared" not in fired, (kind, fired["gradients_cleared"].message)


def test_cleared_gradients_behind_a_live_relu_output_are_still_named():
    """zero_grad(set_to_none=False) between backward and step on a live ReLU-output network:
    exactly-0 gradients too, but the watched ReLU's output is not 0: the loop is named."""
    fired, _ = _run(_model("module", dead=False), bug="zero_grad_late_zeros")
    v = fired["gradients_cleared"]
    assert v.step == 2 and "exactly 0" in v.message and "cleared in between" in v.message


def test_a_dead_output_on_a_live_loop_is_silent_but_cleared_none_gradients_still_fire():
    """Gradients set to None (zero_grad's default) are never a dead output's: autograd fills
    zeros for the parameters it reaches. A dead output with the loop clearing to None fires."""
    model = _model("module", dead=True)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(256, 4, generator=g)
    y = x[:, :1]
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    rec = HealthRecorder()
    rec.attach(model, optimizer=opt)
    for step in range(10):
        xb, yb = x[step * 16:(step + 1) * 16], y[step * 16:(step + 1) * 16]
        rec.begin_step(targets=yb)
        loss = nn.functional.mse_loss(model(xb), yb)
        rec.after_loss(loss)
        loss.backward()
        opt.zero_grad()          # cleared to None between backward and step
        rec.before_optimizer_step()
        opt.step()
        rec.end_step()
    rec.finish(None)
    fired = {v.detector: v for v in rec.events}
    assert ".grad is None" in fired["gradients_cleared"].message


def _sigmoid_model(saturated: bool) -> nn.Module:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1), nn.Sigmoid())
    if saturated:
        with torch.no_grad():
            m[2].bias.fill_(50.0)   # sigmoid(z > 17) is 1.0 in float32: s (1 - s) = 0
    return m


def test_a_live_sigmoid_output_does_not_excuse_cleared_gradients():
    """A sigmoid's derivative is never 0 on a live output: zero_grad(set_to_none=False) between
    backward and step behind a watched sigmoid (outputs spread over (0, 1)) is still named."""
    fired, _ = _run(_sigmoid_model(saturated=False), bug="zero_grad_late_zeros")
    v = fired["gradients_cleared"]
    assert v.step == 2 and "cleared in between" in v.message


def test_a_sigmoid_pinned_at_one_explains_the_zeros():
    """Oracle: a sigmoid at exactly 1.0 passes back exactly 0 to every parameter before it."""
    model = _sigmoid_model(saturated=True)
    x = torch.randn(32, 4)
    nn.functional.mse_loss(model(x), torch.randn(32, 1)).backward()
    assert all(torch.count_nonzero(p.grad) == 0 for p in model.parameters())
    fired, _ = _run(_sigmoid_model(saturated=True))
    assert "gradients_cleared" not in fired
