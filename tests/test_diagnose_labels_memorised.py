"""label_noise where the gap test cannot see it (session 8, issue 14): labels that do not follow
from the inputs (a label column shifted one row, in both splits: the model memorises, validation
stays at the know-nothing level), and heavy noise in both splits read by the persistence tests
on two evaluations (a 150-step run has two) with the confidence test at the window's first
evaluation. Statistics against scipy (the oracle, tests only) and hand computations, the
look-alikes on constructed probe records, and one seeded end-to-end run named with its clean
twin quiet."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from archlab.diagnose import HealthRecorder, HealthState
from archlab.diagnose.detectors_labels import LabelNoise, neighbour_agreement

scipy_stats = pytest.importorskip("scipy.stats")


# ---------------------------------------------------------------- the neighbours' agreement


def test_neighbour_agreement_is_the_exact_binomial_over_unordered_pairs():
    """Agreeing pairs against chance sum_c pi_c^2, each unordered pair once; the p-value is
    scipy's one-sided exact binomial."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 128)
    near = [[int(j) for j in rng.choice(np.delete(np.arange(128), i), 3, replace=False)]
            for i in range(128)]
    agree, total, chance, p = neighbour_agreement(y, near)
    pairs = {tuple(sorted((i, j))) for i, row in enumerate(near) for j in row}
    assert total == len(pairs) and agree == sum(y[i] == y[j] for i, j in pairs)
    share = np.bincount(y) / 128
    assert chance == pytest.approx(float((share ** 2).sum()), rel=1e-12)
    want = scipy_stats.binomtest(agree, total, chance, alternative="greater").pvalue
    assert p == pytest.approx(want, rel=1e-9)
    assert p > 0.01   # random labels: agreement at chance
    # labels that follow from the inputs: the neighbours are of the example's class
    same = [[(i + 4 * k) % 128 for k in (1, 2, 3)] for i in range(128)]
    assert neighbour_agreement(np.arange(128) % 4, same)[3] < 1e-30


# ------------------------------------------------------- memorised, not generalised (records)

H4 = math.log(4)


def _memorising_state(val_losses, probe_losses, labels, neighbours, val_size=200):
    """Validation passes 4 steps before each probe evaluation (steps 64, 128, ...) and one after
    the last; the probe's per-example losses as given (predicted: the label where the loss is
    below ln 2, else the next class)."""
    st = HealthState(param_layers=["a"])
    y = np.asarray(labels)
    assert len(val_losses) == len(probe_losses) + 1
    for j, val in enumerate(val_losses):
        st.validation.append({"step": 64 * (j + 1) - 4, "epoch": j, "train_loss": 1.0,
                              "val_loss": float(val), "val_size": val_size})
    for j, loss in enumerate(probe_losses):
        loss = np.asarray(loss, float)
        pred = np.where(loss < math.log(2), y, (y + 1) % 4)
        wrong = np.flatnonzero(pred != y)
        st.label_probe.append({
            "step": 64 * (j + 1), "n": y.size, "classes": 4, "fitted": float((pred == y).mean()),
            "per_class_fitted": {}, "contradicted": wrong.tolist(), "predicted": pred[wrong].tolist(),
            "confidence_contradicted": 0.4, "confidence_fitted": 0.4, "labels": y.tolist(),
            "all_predicted": pred.tolist(), "all_confidence": [0.4] * y.size,
            "all_label_loss": loss.tolist(), "neighbours": neighbours})
    st.targets = {"kind": "classes", "counts": [1000] * 4}
    return st


def _random_labels(seed=0):
    """Labels independent of the inputs: neighbours drawn without regard to the labels."""
    rng = np.random.default_rng(seed)
    y = np.arange(128) % 4
    rng.shuffle(y)
    near = [[(i + k) % 128 for k in (1, 2, 3)] for i in range(128)]
    return y, near


def _memorised_losses(seed, fraction=0.35):
    """A model that memorised ``fraction`` of its training labels (loss ~0.3) and knows
    nothing of the rest (loss ~ln 4 + a little: slightly confident, at random)."""
    rng = np.random.default_rng(seed)
    mem = rng.random(128) < fraction
    return np.where(mem, rng.gamma(2.0, 0.15, 128), rng.normal(1.5, 0.15, 128)).clip(1e-3)


def test_memorised_labels_are_named_with_the_hand_computed_statistic():
    y, near = _random_labels()
    losses = [_memorised_losses(0, 0.1), _memorised_losses(1)]
    vals = [1.40, 1.39, 1.41]   # validation at the know-nothing level ln 4 = 1.386
    st = _memorising_state(vals, losses, y, near)
    v = LabelNoise().check(st)
    assert v is not None and "know_nothing_loss" in v.evidence
    ev = v.evidence
    assert ev["know_nothing_loss"] == pytest.approx(H4, rel=1e-12)
    # the latest evaluation against the SMALLER validation loss of the passes around it
    loss = losses[-1]
    z = (loss.mean() - 1.39) / (loss.std(ddof=1) * math.sqrt(1 / 128 + 1 / 200))
    assert ev["z"] == pytest.approx(z, rel=1e-9)
    assert ev["z_critical"] == pytest.approx(scipy_stats.norm.isf(0.01 / 2), rel=1e-9)
    assert ev["p_neighbours_agree"] >= 0.01


def test_validation_below_the_know_nothing_level_is_signal_not_wrong_labels():
    """One validation pass clearly below ln 4 (the labels carry information): not this reading
    (a tiny training set memorises too, after it learned what generalises)."""
    y, near = _random_labels()
    losses = [_memorised_losses(0, 0.1), _memorised_losses(1)]
    assert LabelNoise().check(_memorising_state([1.40, 1.20, 1.41], losses, y, near)) is None


def test_neighbours_sharing_labels_are_signal_not_wrong_labels():
    """The same records, but each example's nearest inputs carry its label: the labels follow
    from the inputs (a validation split from another distribution, a class missing from
    training), so the memorisation reading does not name wrong labels."""
    y = np.arange(128) % 4
    same = [[(i + 4 * k) % 128 for k in (1, 2, 3)] for i in range(128)]
    losses = [_memorised_losses(0, 0.1), _memorised_losses(1)]
    assert LabelNoise().check(_memorising_state([1.40, 1.39, 1.41], losses, y, same)) is None


def test_held_out_loss_blowing_up_is_not_memorisation():
    """Validation far above the know-nothing level (more than the probe's gain below it): a
    model confidently wrong on held-out data (a shifted split, a blow-up), not memorisation."""
    y, near = _random_labels()
    losses = [_memorised_losses(0, 0.1), _memorised_losses(1)]
    gain = H4 - losses[-1].mean()
    vals = [1.40, H4 + 1.5 * gain, H4 + 2 * gain]
    assert LabelNoise().check(_memorising_state(vals, losses, y, near)) is None


def test_no_memorisation_yet_is_not_named():
    """The probe fitted no better than validation (both at ln 4 + a little)."""
    y, near = _random_labels()
    rng = np.random.default_rng(3)
    losses = [rng.normal(1.42, 0.1, 128) for _ in range(2)]
    assert LabelNoise().check(_memorising_state([1.41, 1.42, 1.42], losses, y, near)) is None


# ------------------------------------------- heavy noise in both splits: two evaluations


def _two_evaluations(pred, conf, labels, classes=10):
    """Two probe evaluations (steps 64, 128), the weights moving; neighbours: the next three
    examples of the same true class (true class = index mod classes)."""
    st = HealthState(param_layers=["a"])
    y = np.asarray(labels)
    n = y.size
    near = [[(i + classes * j) % n for j in (1, 2, 3)] for i in range(n)]
    for step, p, c in zip((64, 128), pred, conf, strict=True):
        p, c = np.asarray(p), np.asarray(c, float)
        fitted = p == y
        wrong = np.flatnonzero(~fitted)
        share = {k: float(fitted[y == k].mean()) for k in range(classes) if (y == k).sum() >= 4}
        st.label_probe.append({
            "step": step, "n": n, "classes": classes, "fitted": float(fitted.mean()),
            "per_class_fitted": share, "contradicted": wrong.tolist(),
            "predicted": p[wrong].tolist(),
            "confidence_contradicted": float(np.median(c[wrong])),
            "confidence_fitted": float(np.median(c[fitted])), "labels": y.tolist(),
            "all_predicted": p.tolist(), "all_confidence": c.tolist(), "neighbours": near})
    st.sample_steps = list(range(0, 136, 8))
    st.series["update_ratio"] = [[1e-3]] * len(st.sample_steps)
    st.series["grad_norm"] = [[1.0]] * len(st.sample_steps)
    st.series["weight_norm"] = [[1.0]] * len(st.sample_steps)
    st.losses = [1.5] * 136
    return st


def _heavy(rate=0.5, seed=0, classes=10, n=128):
    rng = np.random.default_rng(seed)
    t = np.arange(n) % classes
    y = t.copy()
    flip = rng.random(n) < rate
    y[flip] = (t[flip] + rng.integers(1, classes, flip.sum())) % classes
    return t, y, flip, rng


def test_heavy_noise_is_named_on_two_evaluations():
    """50 % wrong labels, a run of 150 steps: two probe evaluations. The persistence tests
    need not wait for a third (before session 8 they did, and such runs were never read)."""
    t, y, flip, rng = _heavy()
    conf = [np.clip(rng.normal(0.8, 0.05, 128), 0, 1) for _ in range(2)]
    st = _two_evaluations([t, t], conf, y)
    v = LabelNoise().check(st)
    assert v is not None and v.evidence["evaluation_steps"] == [64, 128]
    assert v.evidence["persistently_contradicted"] == int(flip.sum())


def test_memorisation_lowering_the_contradicted_confidence_is_still_named():
    """At the first evaluation the wrongly labelled examples are predicted (their true class)
    as confidently as the rest; at the second, memorisation has pulled them toward their
    labels (confidence 0.5 vs 0.8). The confidence test reads the first: named. Reading the
    last evaluation (the rule before session 8) refuses it."""
    t, y, flip, rng = _heavy(seed=1)
    first = np.clip(rng.normal(0.8, 0.05, 128), 0, 1)
    last = np.clip(rng.normal(0.8, 0.05, 128), 0, 1)
    last[flip] = np.clip(rng.normal(0.5, 0.05, flip.sum()), 0, 1)
    v = LabelNoise().check(_two_evaluations([t, t], [first, last], y))
    assert v is not None and v.evidence["p_less_confident"] >= 0.05
    held = flip
    assert scipy_stats.mannwhitneyu(last[held], last[~held], alternative="less").pvalue < 0.05


def test_hard_examples_unsure_from_the_start_are_not_wrong_labels():
    """Contradicted at confidence 0.35 already at the first evaluation: hard examples."""
    t, y, flip, rng = _heavy(seed=2)
    conf = []
    for _ in range(2):
        c = np.clip(rng.normal(0.8, 0.05, 128), 0, 1)
        c[flip] = np.clip(rng.normal(0.35, 0.05, flip.sum()), 0, 1)
        conf.append(c)
    assert LabelNoise().check(_two_evaluations([t, t], conf, y)) is None


# ------------------------------------------------------------------ end to end


def _run(shift: bool, seed: int = 0):
    """A plain loop on 4 Gaussian blobs in 8 dimensions (validation every epoch, with its
    size); with ``shift`` the label column of the whole file is one row off its inputs, so
    both splits carry labels unrelated to their inputs (the gap test sees nothing)."""
    g = torch.Generator().manual_seed(seed)
    centres = 2.0 * torch.randn(4, 8, generator=g)
    y = torch.randint(0, 4, (800,), generator=g)
    x = centres[y] + torch.randn(800, 8, generator=g)
    if shift:
        y = torch.roll(y, 1)
    xtr, ytr, xva, yva = x[:600], y[:600], x[600:], y[600:]
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                          nn.Linear(256, 4))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    rec = HealthRecorder()
    rec.attach(model, optimizer=opt)
    for epoch in range(6):   # 114 steps: probe evaluations at 64 (and validation around it)
        order = torch.randperm(600, generator=g)
        for i in range(0, 600, 32):
            idx = order[i:i + 32]
            rec.begin_step(targets=ytr[idx])
            loss = nn.functional.cross_entropy(model(xtr[idx]), ytr[idx])
            rec.after_loss(loss)
            opt.zero_grad()
            loss.backward()
            rec.before_optimizer_step()
            opt.step()
            rec.end_step()
        with torch.no_grad():
            model.eval()
            val = float(nn.functional.cross_entropy(model(xva), yva))
            model.train()
        rec.validation(val, epoch, val_size=len(xva))
    return rec


def test_end_to_end_shifted_label_column_named_clean_twin_quiet():
    shifted = _run(True)
    named = [v for v in shifted.events if v.detector == "label_noise"]
    assert named and "know_nothing_loss" in named[0].evidence
    clean = _run(False)
    assert not [v for v in clean.events if v.detector == "label_noise"]


def test_the_readings_are_judged_once_per_new_record(monkeypatch):
    """The detectors run on every sample; the probe readings change only with a new probe
    evaluation or validation pass, so they are computed once per such record."""
    y, near = _random_labels()
    losses = [_memorised_losses(0, 0.1), _memorised_losses(1)]
    st = _memorising_state([1.40, 1.20, 1.41], losses, y, near)   # not named: signal
    det = LabelNoise()
    calls = []
    real = LabelNoise._memorised_not_generalised
    monkeypatch.setattr(LabelNoise, "_memorised_not_generalised",
                        lambda self, s: calls.append(1) or real(self, s))
    assert det.check(st) is None and det.check(st) is None
    assert len(calls) == 1
    st.validation.append(dict(st.validation[-1], step=st.validation[-1]["step"] + 60))
    det.check(st)
    assert len(calls) == 2


def test_two_evaluations_of_a_guessing_model_are_not_wrong_labels():
    """The binomial on two evaluations: a model guessing 40 % of its predictions afresh at
    each evaluation contradicts about 0.4 x 0.4 of the probe at both by chance, which the test
    does not take for persistence."""
    rng = np.random.default_rng(4)
    t = np.arange(128) % 10
    pred = [np.where(rng.random(128) < 0.6, t, rng.integers(0, 10, 128)) for _ in range(2)]
    conf = [np.full(128, 0.8) for _ in range(2)]
    assert LabelNoise().check(_two_evaluations(pred, conf, t)) is None
