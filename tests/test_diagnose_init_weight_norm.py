"""The monitor records each layer's weight norm at attach without its biases (what the
init-ratio rules compare with the default-initialisation norm), and keeps it through save/load."""

from __future__ import annotations

import torch
from torch import nn

from archlab.diagnose.monitor import HealthRecorder
from archlab.diagnose.state import HealthState


def test_weight_norm_at_attach_leaves_biases_out_and_survives_save(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.BatchNorm1d(8), nn.Linear(8, 2))
    with torch.no_grad():
        model[0].weight.mul_(0.01)            # a bias at its default beside tiny weights
    rec = HealthRecorder()
    rec.attach(model, torch.optim.SGD(model.parameters(), lr=0.1))
    got = rec.state.init_weight_norm
    lin0 = next(k for k in got if k.endswith("0"))
    lin3 = next(k for k in got if k.endswith("3"))
    bn = next(k for k in got if k.endswith("2"))
    assert abs(got[lin0] - float(model[0].weight.detach().norm())) < 1e-6    # the bias is left out
    assert got[lin0] < 0.1 * float(torch.cat([model[0].weight.flatten(), model[0].bias]).detach().norm())
    assert abs(got[lin3] - float(model[3].weight.detach().norm())) < 1e-6
    assert abs(got[bn] - float(model[2].weight.detach().norm())) < 1e-6      # a norm layer's scale
    rec.state.save(tmp_path)
    assert HealthState.load(tmp_path).init_weight_norm == got
