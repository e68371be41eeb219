"""A NaN in the inputs can leave the loss finite and still make the weight gradients NaN
(0 x NaN is NaN: a convolution whose NaN positions the loss never reads). The next step finds
the weights non-finite; the monitor names the input, not a divergence, when a sampled step saw
the non-finite input, or when the previous step's batch (sampled or not) holds it."""

import torch
from torch import nn

from archlab.diagnose.monitor import HealthRecorder


class LastStep(nn.Module):
    """Conv1d over a series; the forecast reads only the last position."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 8, 3)
        self.head = nn.Linear(8, 1)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x))[:, :, -1])


def _run(poison: bool, lr: float = 1e-3, steps: int = 12, at: int = 0, corrupt: int | None = None):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 1, 16, generator=g)
    y = x[:, 0, -1:].clone()
    first = x.clone()
    if poison:   # only the first batch: the first reading of one window, which the loss never reads
        first[3, 0, 0] = float("nan")
    torch.manual_seed(0)
    model = LastStep()
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    rec = HealthRecorder()
    rec.attach(model, optimizer=opt)
    losses = []
    for step in range(steps):
        xb = first if step == at else x
        rec.begin_step(targets=y)
        loss = nn.functional.mse_loss(model(xb), y)
        losses.append(float(loss.detach()))
        if not rec.after_loss(loss, replay=lambda xb=xb: model(xb)):
            rec.run_detectors()   # the loop stops at the non-finite loss: judge what was seen
            break
        opt.zero_grad()
        loss.backward()
        rec.before_optimizer_step()
        opt.step()
        if step == corrupt:   # weights made non-finite by something other than the batch
            with torch.no_grad():
                model.head.weight[0, 0] = float("inf")
        rec.end_step()
    return rec, losses


def test_a_nan_input_that_poisons_the_update_is_named_as_the_input():
    rec, losses = _run(poison=True)
    assert losses[0] == losses[0]   # the first loss is finite: the NaN positions are never read
    nf = rec.state.nonfinite
    assert nf is not None and nf["step"] == 1
    assert nf["cause"] == "input", nf
    assert "input batches that held NaN/Inf" in nf["detail"]
    fired = {e.detector for e in rec.events}
    assert "nan_inf" in fired and "exploding_gradients" not in fired
    v = next(e for e in rec.events if e.detector == "nan_inf")
    assert any("clean or impute the data" in f for f in v.fixes)


def test_clean_inputs_with_diverged_weights_stay_a_divergence():
    rec, _ = _run(poison=False, lr=1e6, steps=30)
    nf = rec.state.nonfinite
    assert nf is not None and nf["cause"] != "input"


def test_a_nan_input_at_an_unsampled_step_is_named_as_the_input():
    # step 17 is not sampled (every 2nd step from 16 on): no input statistics were read there;
    # the next step replays the previous batch, whose first reading is NaN
    rec, losses = _run(poison=True, steps=30, at=17)
    assert 17 not in rec.state.sample_steps and losses[17] == losses[17]
    nf = rec.state.nonfinite
    assert nf is not None and nf["step"] == 18
    assert nf["cause"] == "input", nf
    assert "previous step's input batch" in nf["detail"] and "'conv'" in nf["detail"]
    fired = {e.detector for e in rec.events}
    assert "nan_inf" in fired and "exploding_gradients" not in fired


def test_weights_gone_non_finite_after_a_clean_unsampled_step_stay_the_weights():
    # the same weights replayed on the previous (clean) batch: its input is finite there
    rec, _ = _run(poison=False, steps=30, corrupt=17)
    nf = rec.state.nonfinite
    assert 17 not in rec.state.sample_steps
    assert nf is not None and nf["step"] == 18 and nf["cause"] == "weights", nf
    assert nf["layer"] == "head"


def test_the_lightning_callback_replays_the_previous_batch_of_an_unsampled_nan_input(tmp_path):
    import json

    import lightning.pytorch as pl

    from archlab.diagnose import HealthMonitor

    class Module(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = LastStep()

        def training_step(self, batch, i):
            x, y = batch
            return nn.functional.mse_loss(self.net(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=1e-3)

    g = torch.Generator().manual_seed(0)
    x = torch.randn(8 * 24, 1, 16, generator=g)
    y = x[:, 0, -1:].clone()
    x[8 * 17 + 3, 0, 0] = float("nan")   # batch 17 (step 17, not sampled), a reading never read
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    torch.manual_seed(0)
    trainer = pl.Trainer(max_steps=24, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[HealthMonitor(tmp_path / "health")])
    trainer.fit(Module(), loader)
    nf = json.loads((tmp_path / "health" / "nonfinite.json").read_text())
    assert nf["step"] == 18 and nf["cause"] == "input", nf
    assert "previous step's input batch" in nf["detail"]
