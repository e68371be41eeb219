"""label_noise from the held-out gap: the model fits its own training examples (the label
probe, evaluation mode) worse than the validation examples it never trained on. The statistic
against a hand computation and scipy (the oracle, tests only), its look-alikes on constructed
probe records, and one seeded end-to-end run: wrong labels in the training split named, the
clean twin quiet."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from archlab.diagnose import HealthRecorder, HealthState
from archlab.diagnose.detectors_labels import LabelNoise, chi_square_sf, probe_is_representative

scipy_stats = pytest.importorskip("scipy.stats")


@pytest.mark.parametrize("df", [1, 2, 3, 9])
@pytest.mark.parametrize("q", [0.5, 0.05, 0.01, 0.001])
def test_chi_square_tail_matches_scipy(df, q):
    """The closed forms against scipy."""
    x = scipy_stats.chi2.isf(q, df)
    assert chi_square_sf(x, df) == pytest.approx(q, rel=1e-9)


def test_representative_probe_against_scipy():
    counts = [300, 320, 290, 310]
    labels = np.repeat(np.arange(4), [31, 34, 30, 33])
    ok, p = probe_is_representative(labels, counts, 0.01)
    obs = np.bincount(labels, minlength=4)
    want = scipy_stats.chisquare(obs, np.asarray(counts) / sum(counts) * labels.size).pvalue
    assert ok and p == pytest.approx(want, rel=1e-9)
    # data in label order: the first sampled batches are all class 0 (or 0 and 1)
    assert not probe_is_representative(np.zeros(128, int), counts, 0.01)[0]
    assert not probe_is_representative(np.repeat([0, 1], 64), counts, 0.01)[0]


def _gap_state(probe_losses, val_losses, labels, val_size=300, classes=4, counts=None):
    """Probe evaluations at steps 64, 128, ... with the given per-example losses on the given
    labels, each 4 steps after a validation pass; ``val_losses`` has one more entry: the pass
    after the last probe evaluation (step 64 (k + 1) - 4)."""
    st = HealthState(param_layers=["a"])
    y = np.asarray(labels)
    assert len(val_losses) == len(probe_losses) + 1
    for j, val in enumerate(val_losses):
        st.validation.append({"step": 64 * (j + 1) - 4, "epoch": j, "train_loss": 1.0,
                              "val_loss": float(val), "val_size": val_size})
    for j, loss in enumerate(probe_losses):
        step = 64 * (j + 1)
        loss = np.asarray(loss, float)
        pred = np.where(loss > 1.0, (y + 1) % classes, y)   # a high loss: another class predicted
        wrong = np.flatnonzero(pred != y)
        st.label_probe.append({
            "step": step, "n": y.size, "classes": classes, "fitted": float((pred == y).mean()),
            "per_class_fitted": {}, "contradicted": wrong.tolist(), "predicted": pred[wrong].tolist(),
            "confidence_contradicted": 0.8, "confidence_fitted": 0.8, "labels": y.tolist(),
            "all_predicted": pred.tolist(), "all_confidence": [0.8] * y.size,
            "all_label_loss": loss.tolist(), "neighbours": []})
    st.targets = {"kind": "classes", "counts": counts or [1000] * classes}
    return st


def _wrong_label_losses(rate, n=128, seed=0):
    """Per-example losses of a model that learned the clean function: ~0.3 on a right label,
    ~2.5 on a wrong one."""
    rng = np.random.default_rng(seed)
    wrong = rng.random(n) < rate
    return np.where(wrong, rng.normal(2.5, 0.5, n), rng.gamma(2.0, 0.15, n)).clip(1e-3)


def test_the_gap_statistic_is_the_hand_computed_one():
    """40 % wrong labels in training only: the probe's mean loss far above the validation
    loss; the evidence's z is (mean - val) / (s sqrt(1/n + 1/val_size)), and the level
    inv_cdf(1 - 0.01/m) is scipy's."""
    y = np.arange(128) % 4
    losses = [_wrong_label_losses(0.4, seed=s) for s in range(3)]
    st = _gap_state(losses, [0.6, 0.5, 0.55, 0.52], y)
    v = LabelNoise().check(st)
    assert v is not None and v.detector == "label_noise"
    # each against the larger validation loss of the pass before and the pass after
    for row, loss, val in zip(v.evidence["pairs"], losses[-2:], [0.55, 0.55], strict=True):
        z = (loss.mean() - val) / (loss.std(ddof=1) * math.sqrt(1 / 128 + 1 / 300))
        assert row["z"] == pytest.approx(z, rel=1e-9)
    assert v.evidence["z_critical"] == pytest.approx(scipy_stats.norm.isf(0.01 / 3), rel=1e-9)


def test_a_model_getting_worse_is_not_wrong_labels():
    """Clean labels, a run that degrades: each probe evaluation (4 steps after the pass
    before it) is worse than that pass, but not worse than the pass after it."""
    y = np.arange(128) % 4
    losses = [_wrong_label_losses(0.0, seed=s) + 0.6 * (s + 1) for s in range(3)]
    vals = [0.3 + 0.6 * j for j in range(4)]   # the loss rises by 0.6 per 64 steps
    assert LabelNoise().check(_gap_state(losses, vals, y)) is None
    # against the pass before alone it would have been named (the look-alike is real)
    for loss, before in zip(losses[-2:], vals[1:3], strict=True):
        z = (loss.mean() - before) / (loss.std(ddof=1) * math.sqrt(1 / 128 + 1 / 300))
        assert z > scipy_stats.norm.isf(0.01 / 3)


def test_clean_labels_leave_no_gap():
    """The same model on correct labels: the training examples fitted better than held-out
    ones (probe mean ~0.3 vs validation 0.5): nothing named."""
    y = np.arange(128) % 4
    losses = [_wrong_label_losses(0.0, seed=s) for s in range(3)]
    assert LabelNoise().check(_gap_state(losses, [0.6, 0.55, 0.5, 0.5], y)) is None


def test_a_small_gap_within_noise_is_not_named():
    """Probe mean 0.05 above a validation loss of 0.3 with sd ~0.2 and 36 validation examples:
    z ~ 1.3, below the Bonferroni level."""
    y = np.arange(128) % 4
    losses = [_wrong_label_losses(0.0, seed=s) + 0.05 for s in range(3)]
    st = _gap_state(losses, [float(x.mean()) - 0.05 for x in losses] + [0.0], y, val_size=36)
    assert LabelNoise().check(st) is None


def test_one_evaluation_is_not_enough():
    """The gap on one pair only (the latest): gap_evaluations = 2 asks for two in a row."""
    y = np.arange(128) % 4
    losses = [_wrong_label_losses(0.0, seed=0), _wrong_label_losses(0.4, seed=1)]
    assert LabelNoise().check(_gap_state(losses, [0.6, 0.55, 0.5], y)) is None


def test_unknown_validation_size_and_an_unrepresentative_probe_are_not_judged():
    """Without val_size the smallest sampled training batch stands for it (none recorded: not
    judged); a probe of one class (data in label order: the first batches) is not the
    training split's mix."""
    y = np.arange(128) % 4
    losses = [_wrong_label_losses(0.4, seed=s) for s in range(3)]
    vals = [0.6, 0.55, 0.5, 0.5]
    assert LabelNoise().check(_gap_state(losses, vals, y)) is not None
    st = _gap_state(losses, vals, y, val_size=None)
    assert LabelNoise().check(st) is None
    st.targets["batch_sizes"] = [256, 256, 200]
    v = LabelNoise().check(st)
    assert v is not None and {r["val_size"] for r in v.evidence["pairs"]} == {200}
    y0 = np.zeros(128, int)
    assert LabelNoise().check(_gap_state(losses, vals, y0)) is None


def _run(noise: float, seed: int = 0):
    """A plain loop (the recorder with the optimizer attached, validation every epoch with its
    size) on 4 Gaussian blobs; ``noise`` of the TRAINING labels replaced by another class."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[2.0, 0], [-2, 0], [0, 2], [0, -2]])
    yall = torch.randint(0, 4, (1600,), generator=g)
    xall = centres[yall] + 0.7 * torch.randn(1600, 2, generator=g)
    xtr, ytr, xva, yva = xall[:1200], yall[:1200].clone(), xall[1200:], yall[1200:]
    flip = torch.rand(1200, generator=g) < noise
    ytr[flip] = (ytr[flip] + torch.randint(1, 4, (int(flip.sum()),), generator=g)) % 4
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 4))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    rec = HealthRecorder()
    rec.attach(model, optimizer=opt)
    step = 0
    for _epoch in range(4):   # 152 steps: two probe evaluations (64, 128)
        order = torch.randperm(1200, generator=g)
        for i in range(0, 1200, 32):
            idx = order[i:i + 32]
            rec.begin_step(targets=ytr[idx])
            loss = nn.functional.cross_entropy(model(xtr[idx]), ytr[idx])
            rec.after_loss(loss)
            opt.zero_grad()
            loss.backward()
            rec.before_optimizer_step()
            opt.step()
            rec.end_step()
            step += 1
        with torch.no_grad():
            model.eval()
            val = float(nn.functional.cross_entropy(model(xva), yva))
            model.train()
        rec.validation(val, _epoch, val_size=len(xva))
    return rec


def test_end_to_end_wrong_training_labels_named_clean_twin_quiet():
    noisy = _run(0.4)
    named = [v for v in noisy.events if v.detector == "label_noise"]
    assert named
    # the persistence tests may name it first (at the second probe evaluation, step 128); the
    # gap reading holds on the run's records as well
    gap = LabelNoise()._held_out_gap(noisy.state)
    assert gap is not None and "pairs" in gap.evidence
    # the probe's loss on its labels is the model's own cross entropy (per example, eval mode)
    e = noisy.state.label_probe[-1]
    assert len(e["all_label_loss"]) == e["n"]
    clean = _run(0.0)
    assert not [v for v in clean.events if v.detector == "label_noise"]
    assert not [v for v in clean.events if v.kind == "cause"]
