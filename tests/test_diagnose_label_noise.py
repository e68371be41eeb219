"""label_noise under heavy noise: the rank and binomial tests of
archlab.diagnose.detectors_labels against scipy (the oracle, tests only), and the rule on
probe records built to be wrong labels, hard examples, or a majority-class predictor."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from archlab.diagnose import HealthRecorder, HealthState
from archlab.diagnose.detectors_labels import LabelNoise, binom_sf, mann_whitney_less

scipy_stats = pytest.importorskip("scipy.stats")


@pytest.mark.parametrize("seed", range(4))
def test_mann_whitney_matches_scipy(seed):
    rng = np.random.default_rng(seed)
    a = np.round(rng.uniform(0.4, 1, 20 + seed), 2)   # rounded: ties, as in the probe
    b = np.round(rng.uniform(0.5, 1, 60), 2)
    want = scipy_stats.mannwhitneyu(a, b, alternative="less", method="asymptotic").pvalue
    assert mann_whitney_less(a, b) == pytest.approx(want, rel=1e-9, abs=1e-12)
    assert mann_whitney_less([], b) == 1.0


@pytest.mark.parametrize("k,n,p", [(0, 10, 0.3), (3, 10, 0.2), (20, 128, 0.01), (128, 128, 0.5),
                                   (60, 128, 0.45)])
def test_binomial_tail_matches_scipy(k, n, p):
    assert binom_sf(k, n, p) == pytest.approx(scipy_stats.binom.sf(k - 1, n, p), rel=1e-9,
                                              abs=1e-300)


def _state(pred, conf, labels, classes, neighbours=None):
    """Three evaluations (steps 64, 128, 192) with the given per-evaluation predictions and
    confidences, the weights moving (update ratio 1e-3)."""
    st = HealthState(param_layers=["a"])
    y = np.asarray(labels)
    for step, p, c in zip((64, 128, 192), pred, conf, strict=True):
        p, c = np.asarray(p), np.asarray(c, float)
        fitted = p == y
        wrong = np.flatnonzero(~fitted)
        share = {k: float(fitted[y == k].mean()) for k in range(classes) if (y == k).sum() >= 4}
        st.label_probe.append({
            "step": step, "n": y.size, "classes": classes, "fitted": float(fitted.mean()),
            "per_class_fitted": share, "contradicted": wrong.tolist(),
            "predicted": p[wrong].tolist(),
            "confidence_contradicted": float(np.median(c[wrong])) if wrong.size else math.nan,
            "confidence_fitted": float(np.median(c[fitted])), "labels": y.tolist(),
            "all_predicted": p.tolist(), "all_confidence": c.tolist(),
            "neighbours": neighbours if neighbours is not None else _same_true(y.size, classes)})
    st.sample_steps = list(range(0, 200, 8))
    st.series["update_ratio"] = [[1e-3]] * len(st.sample_steps)
    st.series["grad_norm"] = [[1.0]] * len(st.sample_steps)
    st.series["weight_norm"] = [[1.0]] * len(st.sample_steps)
    st.losses = [1.5] * 200
    return st


def _same_true(n, classes):
    """Neighbours in input space: the next three examples of the same true class (true class
    = index mod classes, as in _noisy)."""
    return [[(i + classes * j) % n for j in (1, 2, 3)] for i in range(n)]


def _noisy(rate, classes=10, n=128, seed=0, hard=False):
    """True classes t, labels y with a fraction ``rate`` replaced by another class; the model
    predicts t (clean structure) with confidence ~0.8 everywhere; with ``hard`` the
    contradicted examples get confidence ~0.35 instead (overlap, not wrong labels)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) % classes
    y = t.copy()
    flip = rng.random(n) < rate
    y[flip] = (t[flip] + rng.integers(1, classes, flip.sum())) % classes
    conf = [np.clip(rng.normal(0.8, 0.05, n), 0, 1) for _ in range(3)]
    if hard:
        for c in conf:
            c[flip] = np.clip(rng.normal(0.35, 0.05, flip.sum()), 0, 1)
    return [t] * 3, conf, y


def test_heavy_noise_is_named_where_the_ratio_reading_cannot():
    """50 % wrong labels over 10 classes: every class is fitted at ~0.5, below the ratio
    reading's floor, and the tests name it."""
    pred, conf, y = _noisy(0.5)
    st = _state(pred, conf, y, 10)
    assert LabelNoise()._ratios(st, st.label_probe, 1e-3) is None
    v = LabelNoise().check(st)
    assert v is not None and v.evidence["p_persistence"] < v.evidence["alpha_bonferroni"]
    assert v.evidence["p_less_confident"] >= 0.05


def test_hard_examples_are_not_wrong_labels():
    """The same persistent contradictions at confidence 0.35 against 0.8: Mann-Whitney finds
    them less confident (hard examples where classes overlap)."""
    pred, conf, y = _noisy(0.5, hard=True)
    assert LabelNoise().check(_state(pred, conf, y, 10)) is None


def test_moving_misfits_are_not_wrong_labels():
    """A model guessing at random among the classes at each evaluation: its misfits do not
    persist beyond the binomial's chance level."""
    rng = np.random.default_rng(1)
    y = np.arange(128) % 2
    pred = [np.where(rng.random(128) < 0.6, y, 1 - y) for _ in range(3)]
    conf = [np.full(128, 0.9) for _ in range(3)]
    assert LabelNoise().check(_state(pred, conf, y, 2)) is None


def test_a_majority_class_predictor_is_not_wrong_labels():
    """Always class 0, confidently, on 3 classes: contradictions persistent and as confident as
    the fits, but classes 1 and 2 are never fitted (no better than guessing)."""
    y = np.arange(128) % 3
    pred = [np.zeros(128, int)] * 3
    conf = [np.full(128, 0.9)] * 3
    assert LabelNoise().check(_state(pred, conf, y, 3)) is None


def test_the_probe_records_every_example_in_one_copy():
    """A real loop: the monitor's probe records each example's predicted class and top-class
    probability, equal to the model's own softmax on the probe (the oracle)."""
    torch.manual_seed(0)
    x = torch.randn(512, 4)
    y = (x[:, 0] > 0).long()
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    rec = HealthRecorder()
    rec.attach(model, optimizer=opt)
    for _ in range(200):
        i = torch.randint(0, 512, (32,))
        rec.begin_step(targets=y[i])
        loss = nn.functional.cross_entropy(model(x[i]), y[i])
        rec.after_loss(loss)
        if len(rec.state.label_probe) == 2:   # evaluated on this step's weights: the oracle now
            break
        opt.zero_grad()
        loss.backward()
        rec.before_optimizer_step()
        opt.step()
        rec.end_step()
    e = rec.state.label_probe[-1]
    assert e["step"] == 128
    xp = torch.cat(rec._label_probe.x)
    with torch.no_grad():
        p = torch.softmax(model(xp), 1)
    conf, pred = p.max(1)
    assert e["labels"] == torch.cat(rec._label_probe.y).tolist()
    assert e["all_predicted"] == pred.tolist()
    assert np.allclose(e["all_confidence"], conf.numpy(), atol=1e-4)
    # each example's loss on its label: the model's own cross entropy, per example
    want = nn.functional.cross_entropy(model(xp), torch.cat(rec._label_probe.y), reduction="none")
    assert np.allclose(e["all_label_loss"], want.detach().numpy(), atol=1e-3)
    d = torch.cdist(xp, xp) + torch.diag(torch.full((len(xp),), math.inf))
    assert [sorted(r) for r in e["neighbours"]] == [sorted(r) for r in
                                                   d.topk(3, largest=False).indices.tolist()]
    assert sorted(e["contradicted"]) == [i for i, (a, b) in
                                         enumerate(zip(e["all_predicted"], e["labels"], strict=True)) if a != b]


def test_labels_the_model_cannot_read_are_not_wrong_labels():
    """The same confident, persistent contradictions, but each contradicted example's nearest
    examples carry its GIVEN label (the labels are right; the model misses what decides them,
    e.g. tokens it does not read): the neighbour sign test finds no side with the model."""
    pred, conf, y = _noisy(0.5)
    n = y.size
    near = [[j for j in range(n) if j != i and y[j] == y[i]][:3] for i in range(n)]
    assert LabelNoise().check(_state(pred, conf, y, 10, neighbours=near)) is None
    assert LabelNoise().check(_state(pred, conf, y, 10)) is not None


def test_heavy_noise_below_the_fitted_confidence_floor_is_named_by_the_tests():
    """50 % wrong labels over 10 classes early in training: the fitted examples' median
    confidence 0.3 is 0.22 of the way from chance (below min_confidence = 0.25, which guards
    the ratio reading only); the tests still name it, and the ratio reading stays silent."""
    pred, conf, y = _noisy(0.5)
    rng = np.random.default_rng(5)
    conf = [np.clip(rng.normal(0.3, 0.03, y.size), 0, 1) for _ in range(3)]
    st = _state(pred, conf, y, 10)
    cf = st.label_probe[-1]["confidence_fitted"]
    assert (cf - 0.1) / 0.9 < LabelNoise().t["min_confidence"]
    v = LabelNoise().check(st)
    assert v is not None and "p_persistence" in v.evidence
