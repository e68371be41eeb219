"""label_noise and the class mix (session 9, issue 14): the neighbours' agreement read class by
class against each class's own share (a class-imbalance fault, a 5 % minority the model never
predicts, is not "labels the inputs do not predict"), and a probe whose class mix fails the
chi-square by chance on shuffled data judged on its losses reweighted to the batches' class
shares, while data in label order (the batches' own order test) stays unjudged. Oracles:
scipy's exact binomial and hand-computed post-stratified means on constructed records."""

from __future__ import annotations

import math

import numpy as np
import pytest

from archlab.diagnose import HealthState
from archlab.diagnose.detectors_labels import (
    LabelNoise, class_neighbour_agreement, neighbour_agreement, probe_is_representative,
    probe_loss_mean, probe_mix)

scipy_stats = pytest.importorskip("scipy.stats")


# ---------------------------------------------------------- the neighbours, class by class


def test_class_neighbour_agreement_is_the_exact_binomial_per_class():
    """Per class: directed neighbours of its examples carrying its label, against
    (n_c - 1) / (n - 1); the p-value is scipy's one-sided exact binomial."""
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 90)
    near = [[int(j) for j in rng.choice(np.delete(np.arange(90), i), 3, replace=False)]
            for i in range(90)]
    rows = class_neighbour_agreement(y, near)
    assert [r["class"] for r in rows] == [0, 1, 2]
    for r in rows:
        members = np.flatnonzero(y == r["class"])
        agree = sum(int(y[j] == r["class"]) for i in members for j in near[i])
        assert r["examples"] == members.size and r["neighbours"] == 3 * members.size
        assert r["agreeing"] == agree
        assert r["chance"] == pytest.approx((members.size - 1) / 89, rel=1e-12)
        want = scipy_stats.binomtest(agree, 3 * members.size, r["chance"],
                                     alternative="greater").pvalue
        assert r["p"] == pytest.approx(want, rel=1e-9)
        assert r["p"] > 0.01   # labels independent of the neighbours: at chance


def _imbalanced(neighbours: str):
    """116 examples of class 0 and 6 of each of two minority classes. 'shells': the
    Gaussian-quantile shells of fresh6's minority fault, built here (6-d standard normal,
    class = the radius's tercile, the outer two keeping 5 %) with each example's 3 nearest
    probe examples (Euclidean): the majority sits among itself, the sparse minority among the
    majority; 'random': neighbours drawn without regard to the labels (a label column shifted
    against its inputs)."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(6000, 6))
    r = np.linalg.norm(x, axis=1)
    lab = np.digitize(r, np.quantile(r, [1 / 3, 2 / 3]))
    keep = np.r_[np.flatnonzero(lab == 0)[:116], np.flatnonzero(lab == 1)[:6],
                 np.flatnonzero(lab == 2)[:6]]
    rng.shuffle(keep)
    x, y = x[keep], lab[keep]
    if neighbours == "shells":
        d = ((x[:, None] - x[None]) ** 2).sum(-1)
        np.fill_diagonal(d, np.inf)
        near = np.argsort(d, 1)[:, :3].tolist()
    else:
        near = [[int(j) for j in rng.choice(np.delete(np.arange(128), i), 3, replace=False)]
                for i in range(128)]
    return y, near


COUNTS = [1160, 60, 60]
H = float(-sum(c / 1280 * math.log(c / 1280) for c in COUNTS))   # 0.377


def _memorising_state(y, near, seed=0):
    """The memorisation picture on imbalanced labels: the probe fitted far below H (most
    losses ~0.05, a few ~2), validation just above H (0.40-0.42) on every pass."""
    rng = np.random.default_rng(seed)
    st = HealthState(param_layers=["a"])
    for j, val in enumerate([0.42, 0.41, 0.40]):
        st.validation.append({"step": 64 * (j + 1) - 4, "epoch": j, "train_loss": 0.3,
                              "val_loss": val, "val_size": 300})
    for j in range(2):
        loss = np.where(rng.random(128) < 0.06, rng.normal(2.0, 0.2, 128),
                        rng.gamma(2.0, 0.03, 128)).clip(1e-3)
        pred = np.where(loss < math.log(2), y, (y + 1) % 3)
        wrong = np.flatnonzero(pred != y)
        st.label_probe.append({
            "step": 64 * (j + 1), "n": 128, "classes": 3, "fitted": float((pred == y).mean()),
            "per_class_fitted": {}, "contradicted": wrong.tolist(),
            "predicted": pred[wrong].tolist(), "confidence_contradicted": 0.9,
            "confidence_fitted": 0.95, "labels": y.tolist(), "all_predicted": pred.tolist(),
            "all_confidence": [0.9] * 128, "all_label_loss": loss.tolist(), "neighbours": near})
    st.targets = {"kind": "classes", "counts": list(COUNTS)}
    return st


def test_a_minority_among_the_majority_is_not_labels_the_inputs_do_not_predict():
    """Class imbalance: the probe is fitted far below H while validation (its class shares
    unknown to the monitor) stays above H. Pooled, the neighbours agree at chance (the
    majority's pairs set chance at sum pi^2 ~ 0.83 and the minority's disagreeing pairs pull
    the count down), which the old gate read as 'labels independent of the inputs'; the
    majority's own agreement (nearly every neighbour a majority example, chance 115/127) is
    far beyond its share, so nothing is named."""
    y, near = _imbalanced("shells")
    assert neighbour_agreement(y, near)[3] >= 0.01   # the pooled gate alone would pass it
    rows = {r["class"]: r for r in class_neighbour_agreement(y, near)}
    assert rows[0]["neighbours"] == 348 and rows[0]["agreeing"] >= 340   # chance: 115/127
    assert rows[0]["p"] < 1e-6
    assert rows[1]["agreeing"] + rows[2]["agreeing"] <= 2   # the minority among the majority
    assert LabelNoise().check(_memorising_state(y, near)) is None


def test_labels_shifted_on_imbalanced_data_are_still_named():
    """The same records with neighbours independent of the labels (a label column shifted
    one row on imbalanced data): every class at chance, the memorisation reading names it,
    with the per-class p-values in its evidence."""
    y, near = _imbalanced("random")
    rows = class_neighbour_agreement(y, near)
    assert all(r["p"] >= 0.01 / 3 for r in rows)
    v = LabelNoise().check(_memorising_state(y, near))
    assert v is not None and "the labels do not follow from the inputs" in v.message
    assert v.evidence["know_nothing_loss"] == pytest.approx(H, rel=1e-12)
    assert v.evidence["p_neighbours_agree_by_class"] == {r["class"]: r["p"] for r in rows}


# ------------------------------------------------------------ the probe's class mix


def _off_mix_labels():
    """A probe of 128 whose mix fails the chi-square at 1 % against balanced batches
    (48/32/24/24 against 32 each) but holds every class."""
    return np.array([0] * 48 + [1] * 32 + [2] * 24 + [3] * 24)


def _gap_state(y, ordered: bool, seed=0):
    """Wrong training labels (40 %: loss ~2.5) on a probe, validation at 0.5 around each
    evaluation; 20 sampled batches of 32 whose distinct-class counts are those of random
    batches (4 of 4) or of data in label order (1 each)."""
    rng = np.random.default_rng(seed)
    st = HealthState(param_layers=["a"])
    for j, val in enumerate([0.6, 0.5, 0.5, 0.5]):
        st.validation.append({"step": 64 * (j + 1) - 4, "epoch": j, "train_loss": 1.0,
                              "val_loss": val, "val_size": 300})
    for j in range(3):
        wrong = rng.random(128) < 0.4
        loss = np.where(wrong, rng.normal(2.5, 0.5, 128), rng.gamma(2.0, 0.15, 128)).clip(1e-3)
        pred = np.where(loss > 1.0, (y + 1) % 4, y)
        bad = np.flatnonzero(pred != y)
        st.label_probe.append({
            "step": 64 * (j + 1), "n": 128, "classes": 4, "fitted": float((pred == y).mean()),
            "per_class_fitted": {}, "contradicted": bad.tolist(), "predicted": pred[bad].tolist(),
            "confidence_contradicted": 0.8, "confidence_fitted": 0.8, "labels": y.tolist(),
            "all_predicted": pred.tolist(), "all_confidence": [0.8] * 128,
            "all_label_loss": loss.tolist(), "neighbours": []})
    st.targets = {"kind": "classes", "counts": [1000] * 4, "batch_sizes": [32] * 20,
                  "batch_classes": [1 if ordered else 4] * 20}
    return st


def test_post_stratified_mean_is_the_hand_computed_one():
    y = _off_mix_labels()
    loss = np.random.default_rng(1).gamma(2.0, 0.3, 128)
    mean, se = probe_loss_mean(loss, y, [1000] * 4, weighted=True)
    per = [loss[y == c] for c in range(4)]
    assert mean == pytest.approx(sum(p.mean() for p in per) / 4, rel=1e-12)
    assert se == pytest.approx(math.sqrt(sum(p.var(ddof=1) / p.size for p in per)) / 4, rel=1e-12)
    plain = probe_loss_mean(loss, y, [1000] * 4, weighted=False)
    assert plain == pytest.approx((loss.mean(), loss.std(ddof=1) / math.sqrt(128)), rel=1e-12)
    # a class of the batches with fewer than 2 probe examples: its share cannot be read
    assert probe_loss_mean(loss, np.r_[np.zeros(127, int), 1], [500, 500, 10, 10], True) is None


def test_a_chance_mix_on_shuffled_batches_is_judged_on_reweighted_losses():
    """The probe's mix fails the chi-square (p < 0.01) but the batches are random: the gap
    test judges it, on the losses reweighted to the batches' shares (hand-computed z)."""
    y = _off_mix_labels()
    ok, p = probe_is_representative(y, [1000] * 4, 0.01)
    assert not ok and p == pytest.approx(
        scipy_stats.chisquare(np.bincount(y), [32] * 4).pvalue, rel=1e-9)
    st = _gap_state(y, ordered=False)
    judged, reweighted, _, z_order = probe_mix(st, y, 0.01)
    assert judged and reweighted and z_order < scipy_stats.norm.isf(0.01)
    v = LabelNoise().check(st)
    assert v is not None and "worse than the validation examples" in v.message
    assert v.evidence["probe_reweighted_to_batch_shares"] is True
    for row, e in zip(v.evidence["pairs"], st.label_probe[-2:], strict=True):
        loss = np.asarray(e["all_label_loss"])
        per = [loss[y == c] for c in range(4)]
        mean = sum(p.mean() for p in per) / 4
        se2 = sum(p.var(ddof=1) / p.size for p in per) / 16
        z = (mean - 0.5) / math.sqrt(se2 + loss.var(ddof=1) / 300)
        assert row["probe_loss"] == pytest.approx(mean, rel=1e-12)
        assert row["z"] == pytest.approx(z, rel=1e-9)


def test_the_same_mix_on_ordered_batches_is_not_judged():
    """The same probe, batches of one class each (data in label order): not judged."""
    y = _off_mix_labels()
    st = _gap_state(y, ordered=True)
    judged, _, _, z_order = probe_mix(st, y, 0.01)
    assert not judged and z_order > 5
    assert LabelNoise().check(st) is None
    # and without the batches' class counts the order cannot be read: not judged either
    st.targets = {"kind": "classes", "counts": [1000] * 4}
    assert LabelNoise().check(st) is None


def test_an_off_mix_with_a_hard_class_leaves_no_gap_once_reweighted():
    """Clean labels, class 0 hard (loss ~1.6 on its examples, ~0.05 on the others), a probe
    holding 56 of class 0 on random batches: the plain mean, 0.73, sits above a validation
    loss of 0.45 (the balanced mix, 0.44, plus a little) by more than the Bonferroni level on
    each evaluation and would name wrong labels; reweighted to the balanced batches it is
    0.44, and nothing is named."""
    y = np.array([0] * 56 + [1] * 24 + [2] * 24 + [3] * 24)
    st = _gap_state(y, ordered=False)
    rng = np.random.default_rng(5)
    for e in st.label_probe:
        loss = np.where(y == 0, rng.normal(1.6, 0.1, 128), rng.normal(0.05, 0.01, 128)).clip(1e-3)
        e["all_label_loss"] = loss.tolist()
    for v in st.validation:
        v["val_loss"] = 0.45
    assert probe_mix(st, y, 0.01)[:2] == (True, True)
    plain = [np.mean(e["all_label_loss"]) for e in st.label_probe]
    sd = [np.std(e["all_label_loss"], ddof=1) for e in st.label_probe]
    z_plain = [(m - 0.45) / (s * math.sqrt(1 / 128 + 1 / 300)) for m, s in zip(plain, sd, strict=True)]
    assert min(z_plain) > scipy_stats.norm.isf(0.01 / 3)   # the mix alone would make a gap
    assert LabelNoise().check(st) is None


def test_a_state_read_back_with_a_nan_median_is_judged_as_in_memory(tmp_path):
    """A probe evaluation where no example is fitted (a model predicting one class that the
    probe lacks) has no fitted median (nan); a saved state holds it as the string 'nan'
    (JSON), and `archlab diagnose` judges the state read back: label_noise must give the
    in-memory answer, not raise (it raised TypeError in math.isfinite)."""
    y = np.arange(128) % 4
    st = HealthState(param_layers=["a"])
    st.losses = [1.0] * 200
    for j in range(3):
        st.label_probe.append({
            "step": 64 * (j + 1), "n": 128, "classes": 5, "fitted": 0.0,
            "per_class_fitted": {c: 0.0 for c in range(4)}, "contradicted": list(range(128)),
            "predicted": [4] * 128, "confidence_contradicted": 0.9,
            "confidence_fitted": math.nan, "labels": y.tolist(), "all_predicted": [4] * 128,
            "all_confidence": [0.9] * 128, "all_label_loss": [2.0] * 128, "neighbours": []})
    st.targets = {"kind": "classes", "counts": [1000] * 4}
    back = HealthState.load(st.save(tmp_path / "health"))
    assert back.label_probe[0]["confidence_fitted"] == "nan"
    assert LabelNoise().check(st) is None
    assert LabelNoise().check(back) is None
