"""HealthRecorder.penalty: a plain loop reports the regulariser part of its loss; the rules and
the default train_loss of validation() then read the data term (loss less the penalty)."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from archlab.diagnose.monitor import HealthRecorder


def _loop(report: bool, steps: int = 40, l1: float = 1e-2):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 6, generator=g)
    y = (x[:, 0] > 0).long()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    rec = HealthRecorder(detectors=["over_regularisation"])
    rec.attach(model, optimizer=opt)
    totals, terms = [], []
    for _ in range(steps):
        i = torch.randint(0, 256, (32,), generator=g)
        rec.begin_step(targets=y[i])
        data = nn.functional.cross_entropy(model(x[i]), y[i])
        term = l1 * sum(p.abs().sum() for p in model.parameters())
        loss = data + term
        rec.after_loss(loss)
        if report:
            rec.penalty(term, degree=1, what="L1")
        opt.zero_grad()
        loss.backward()
        rec.before_optimizer_step()
        opt.step()
        rec.end_step()
        totals.append(float(loss.detach()))
        terms.append(float(term.detach()))
    return rec, np.array(totals), np.array(terms)


def test_a_reported_penalty_leaves_the_data_term_for_the_rules():
    rec, totals, terms = _loop(report=True)
    got = rec.state.loss_array()
    assert got.shape == totals.shape
    np.testing.assert_allclose(got, totals - terms, rtol=1e-5, atol=1e-6)
    assert rec.state.penalty["degree"] == 1


def test_without_a_report_the_rules_read_the_recorded_loss():
    rec, totals, _ = _loop(report=False)
    np.testing.assert_allclose(rec.state.loss_array(), totals, rtol=1e-6)


def test_validation_defaults_to_the_data_terms_mean():
    rec, totals, terms = _loop(report=True)
    rec.validation(0.5, epoch=0)
    want = float(np.mean(totals - terms))
    assert math.isclose(rec.state.validation[-1]["train_loss"], want, rel_tol=1e-5)
    # with no report the mean is the recorded loss's
    rec2, totals2, _ = _loop(report=False)
    rec2.validation(0.5, epoch=0)
    assert math.isclose(rec2.state.validation[-1]["train_loss"], float(np.mean(totals2)), rel_tol=1e-6)


def test_a_bad_degree_is_refused_with_the_fix():
    rec = HealthRecorder()
    with pytest.raises(ValueError, match="degree=1 for an L1 term"):
        rec.penalty(0.1, degree=0)
