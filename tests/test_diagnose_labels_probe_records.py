"""The label probe's record, counted from its one read-back in Python (session 8: ~140 small
tensor ops fewer per evaluation), against the tensor computation it replaced (the oracle,
written out here): every field equal to the last bit, on probes of even and odd size, with
classes below the per-class minimum, ties in the median, and a model that fits all or none."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from archlab.diagnose.label_probe import PROBE_CLASS_MIN, LabelProbe


class _State:
    def __init__(self):
        self.step = 0
        self.output_op = []
        self.label_probe = []


def _reference(model, x, y):
    """The record's fields as the probe computed them with tensor ops before session 8."""
    model.eval()
    with torch.no_grad():
        out = model(x).float()
    model.train()
    p = torch.softmax(out, 1)
    conf, pred = p.max(1)
    fitted = pred == y
    classes = int(out.shape[1])
    counts = torch.bincount(y, minlength=classes)
    hits = torch.bincount(y[fitted], minlength=classes)
    wrong = (~fitted).nonzero().flatten()
    nll = -p.gather(1, y[:, None]).squeeze(1).clamp_min(1e-12).log()
    every = torch.stack((pred.to(conf.dtype), conf, nll)).tolist()
    share = (hits / counts.clamp_min(1)).tolist()
    return {
        "n": len(y), "classes": classes, "fitted": float(fitted.float().mean()),
        "per_class_fitted": {c: share[c] for c, k in enumerate(counts.tolist())
                             if k >= PROBE_CLASS_MIN},
        "contradicted": wrong.tolist(), "predicted": pred[wrong].tolist(),
        "confidence_contradicted": float(conf[wrong].median()) if len(wrong) else math.nan,
        "confidence_fitted": float(conf[fitted].median()) if bool(fitted.any()) else math.nan,
        "labels": y.tolist(), "all_predicted": [int(c) for c in every[0]],
        "all_confidence": [round(c, 4) for c in every[1]],
        "all_label_loss": [round(c, 4) for c in every[2]]}


def _same(a, b):
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a)
                      and math.isnan(b))


@pytest.mark.parametrize("batches,classes,seed,bias", [
    (16, 10, 0, 0.0),     # 128 examples, 10 classes
    (5, 3, 1, 0.0),       # 40 examples: an even count, 3 classes
    (7, 7, 2, 0.0),       # 56 examples, classes with fewer than 4 examples
    (6, 4, 3, 50.0),      # one class always predicted (saturated): ties among confidences
])
def test_the_record_is_the_tensor_computation_to_the_last_bit(batches, classes, seed, bias):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, classes))
    with torch.no_grad():
        model[2].bias[0] += bias
    probe, st = LabelProbe(), _State()
    g = torch.Generator().manual_seed(seed)
    for _ in range(batches):   # 8 examples kept per batch
        xb = torch.randn(32, 6, generator=g)
        tb = torch.randint(0, classes, (32,), generator=g)
        probe.observe(st, (model, (xb,)), model(xb).detach(), tb)
    st.step = 64
    xb = torch.randn(32, 6, generator=g)
    tb = torch.randint(0, classes, (32,), generator=g)
    probe.observe(st, (model, (xb,)), model(xb).detach(), tb)
    assert st.label_probe, "no evaluation recorded"
    got = st.label_probe[-1]
    want = _reference(model, probe.x[0], probe.y[0].long())
    for key, value in want.items():
        if isinstance(value, dict):
            assert got[key].keys() == value.keys(), key
            assert all(_same(got[key][c], value[c]) for c in value), key
        else:
            assert _same(got[key], value), key


def test_a_model_that_fits_every_example_has_no_contradicted_median():
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.copy_(torch.tensor([5.0, -5.0]))   # always class 0, confidently
    probe, st = LabelProbe(), _State()
    for _ in range(4):
        xb = torch.randn(16, 4)
        probe.observe(st, (model, (xb,)), model(xb).detach(), torch.zeros(16, dtype=torch.long))
    st.step = 64
    xb = torch.randn(16, 4)
    probe.observe(st, (model, (xb,)), model(xb).detach(), torch.zeros(16, dtype=torch.long))
    e = st.label_probe[-1]
    assert e["contradicted"] == [] and math.isnan(e["confidence_contradicted"])
    assert e["fitted"] == 1.0 and e["per_class_fitted"] == {0: 1.0}
