"""The data, label, clipping and schedule rules against oracles: batch label mixes computed by
slicing known label orders, label counts drawn from known class shares, clipping applied by
torch's own clip_grad_norm_, and learning rates decayed by torch's own scheduler."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from archlab.diagnose import HealthRecorder, HealthState
from archlab.diagnose.detectors import DETECTORS, Verdict, attribute
from archlab.diagnose.detectors_gradients import clip_evidence
from archlab.diagnose.detectors_labels import LabelNoise
from archlab.diagnose.taxonomy import ClassImbalance, ClippingTooTight, Unshuffled, distinct_classes

EXPLAINS = {d: cls.explains for d, cls in DETECTORS.items()}


def batches_state(labels: np.ndarray, batch: int, samples: int, classes: int) -> HealthState:
    """What the monitor records for the first ``samples`` batches of ``labels`` taken in order:
    the label counts, the distinct classes and the size of each batch."""
    st = HealthState(output_width=classes)
    t = st.targets
    t.update(kind="classes", counts=[0] * classes, batch_classes=[], batch_sizes=[])
    for i in range(samples):
        b = labels[(i * batch) % len(labels):][:batch]
        for c in b:
            t["counts"][int(c)] += 1
        t["batch_classes"].append(len(set(b.tolist())))
        t["batch_sizes"].append(len(b))
    st.sample_steps = list(range(samples))
    return st


# --------------------------------------------------------------------- unshuffled_data ----

def test_distinct_classes_moments_match_random_batches():
    """The closed-form mean and variance of the distinct classes in a random batch equal those
    of 20,000 simulated batches (the oracle), for balanced and skewed shares."""
    rng = np.random.default_rng(0)
    for p, b in [(np.array([0.5, 0.5]), 4), (np.array([0.7, 0.2, 0.1]), 6),
                 (np.full(10, 0.1), 12)]:
        draws = rng.choice(len(p), size=(20000, b), p=p)
        d = np.array([len(set(r)) for r in draws.tolist()])
        mean, var = distinct_classes(p, b)
        assert mean == pytest.approx(d.mean(), abs=0.02)
        assert var == pytest.approx(d.var(), rel=0.05, abs=0.005)


@pytest.mark.parametrize("classes", [2, 3, 10])
def test_sorted_labels_are_found_for_any_number_of_classes(classes):
    labels = np.repeat(np.arange(classes), 600 // classes)          # sorted by class
    v = Unshuffled().check(batches_state(labels, 32, 18, classes))
    assert v is not None and v.evidence["deficit_fraction"] > 0.8
    assert v.evidence["onset_step"] == 0


@pytest.mark.parametrize("classes,prior", [(2, None), (10, None), (2, [0.95, 0.05]),
                                           (5, [0.6, 0.1, 0.1, 0.1, 0.1])])
def test_shuffled_labels_are_not_called_ordered(classes, prior):
    """Random batches, balanced or skewed, over many samples: never ordered."""
    rng = np.random.default_rng(1)
    for seed in range(5):
        labels = rng.choice(classes, size=6000, p=prior)
        assert Unshuffled().check(batches_state(labels, 32, 150, classes)) is None


def test_too_few_samples_or_one_class_say_nothing():
    labels = np.repeat(np.arange(2), 300)
    assert Unshuffled().check(batches_state(labels, 32, 5, 2)) is None     # < min_samples
    assert Unshuffled().check(batches_state(np.zeros(600, int), 32, 18, 2)) is None


def test_what_sorted_data_causes_is_its_consequence():
    """Loss bursts, label counts skewed by the stretch sampled, dead units and layers without
    gradient, raised after the order's onset, are reported as symptoms of it."""
    order = Verdict("unshuffled_data", 60, "", evidence={"onset_step": 0})
    others = [Verdict(n, 15, "") for n in ("exploding_gradients", "class_imbalance",
                                           "lr_too_high", "dying_relu", "vanishing_gradients",
                                           "over_regularisation")]
    attribute(others + [order], EXPLAINS)
    assert all(v.kind == "symptom" and "unshuffled_data" in v.consequence_of for v in others)
    assert order.kind == "cause"


def _loop(model, x, y, steps, *, sort=False, batch=32, lr=1e-2, clip=None, declare=True,
          gamma=None, optimizer="sgd", seed=0):
    opt = (torch.optim.SGD(model.parameters(), lr=lr) if optimizer == "sgd"
           else torch.optim.Adam(model.parameters(), lr=lr))
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma) if gamma else None
    rec = HealthRecorder()
    rec.attach(model, optimizer=opt, clip=clip if (clip and declare) else None)
    g = torch.Generator().manual_seed(seed)
    step = 0
    while step < steps:
        order = torch.argsort(y, stable=True) if sort else torch.randperm(len(x), generator=g)
        for i in range(0, len(x) - batch + 1, batch):
            if step >= steps:
                break
            xb, yb = x[order[i:i + batch]], y[order[i:i + batch]]
            rec.begin_step(targets=yb)
            loss = nn.functional.cross_entropy(model(xb), yb)
            rec.after_loss(loss)
            opt.zero_grad()
            loss.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            rec.before_optimizer_step()
            opt.step()
            if sched:
                sched.step()
            rec.end_step()
            step += 1
    rec.finish(None)
    return rec


def blobs(n, classes, sep, seed, *, wrong=0.0, dim=8):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=g) * sep
    y = torch.randint(0, classes, (n,), generator=g)
    x = centres[y] + torch.randn(n, dim, generator=g)
    if wrong:
        flip = torch.rand(n, generator=g) < wrong
        y = y.clone()
        y[flip] = torch.randint(0, classes, (int(flip.sum()),), generator=g)
    return x, y


def _mlp(n_in=8, classes=2, width=32):
    return nn.Sequential(nn.Linear(n_in, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                         nn.Linear(width, classes))


def _fired(rec):
    return {v.detector: v for v in rec.events}


def test_a_sorted_two_class_run_is_named_and_its_symptoms_attributed():
    torch.manual_seed(0)
    x, y = blobs(1024, 2, 2.0, 0)
    rec = _loop(_mlp(), x, y, 60, sort=True, lr=0.05)
    fired = _fired(rec)
    assert fired["unshuffled_data"].kind == "cause"
    causes = [v.detector for v in rec.events if v.kind == "cause"]
    assert causes == ["unshuffled_data"], causes
    shuffled = _fired(_loop(_mlp(), x, y, 60, lr=0.05))
    assert "unshuffled_data" not in shuffled and "class_imbalance" not in shuffled


# --------------------------------------------------------------------- class_imbalance ----

def counts_state(counts, classes, samples=10) -> HealthState:
    """Label counts over ``samples`` sampled batches that each held every class seen (shuffled)."""
    st = HealthState(output_width=classes)
    present = sum(1 for c in counts if c)
    size = max(1, int(sum(counts) // samples))
    st.targets.update(kind="classes", counts=list(counts), batch_classes=[present] * samples,
                      batch_sizes=[size] * samples)
    return st


def test_imbalance_waits_for_the_order_test():
    """One batch of a sorted split holds one class: no imbalance verdict from it. After 8
    shuffled batches the same shortfall is judged."""
    assert ClassImbalance().check(counts_state([640, 0], 2, samples=1)) is None
    sorted_state = batches_state(np.repeat(np.arange(2), 600), 64, 12, 2)
    assert ClassImbalance().check(sorted_state) is None and Unshuffled().check(sorted_state)


def test_half_the_classes_rare_is_imbalance():
    """Digits-like counts where classes 5-9 keep 4 % of their examples: the entropy is 0.77 x
    ln 10 (the old rule's 0.7 missed it); the rarest share, 0.04 x balanced, is far below a
    fifth, and 2,000 labels make it certain."""
    rng = np.random.default_rng(0)
    share = np.array([1.0] * 5 + [0.04] * 5)
    counts = np.bincount(rng.choice(10, size=2000, p=share / share.sum()), minlength=10)
    v = ClassImbalance().check(counts_state(counts, 10))
    assert v is not None and sorted(v.evidence["classes_below"]) == [5, 6, 7, 8, 9]
    assert v.evidence["p_value"] < 1e-5


def test_imbalance_needs_enough_labels_and_a_real_shortfall():
    rng = np.random.default_rng(0)
    share = np.array([1.0] * 5 + [0.04] * 5)
    few = np.bincount(rng.choice(10, size=60, p=share / share.sum()), minlength=10)
    assert ClassImbalance().check(counts_state(few, 10)) is None        # 60 labels: not yet sure
    for seed in range(5):   # balanced, and mildly skewed (the rarest at half its share): silent
        r = np.random.default_rng(seed)
        assert ClassImbalance().check(counts_state(np.bincount(r.choice(10, size=20000), minlength=10), 10)) is None
        mild = np.array([1.0] * 9 + [0.5])
        assert ClassImbalance().check(counts_state(
            np.bincount(r.choice(10, size=20000, p=mild / mild.sum()), minlength=10), 10)) is None
    # a class missing from training altogether, once enough labels are seen
    assert ClassImbalance().check(counts_state([300] * 9 + [0], 10)) is not None
    # one dominant class: half of the labels in class 0, the rest spread over nine (ratio 9)
    dom = np.array([9.0] + [1.0] * 9)
    r = np.random.default_rng(0)
    v = ClassImbalance().check(counts_state(np.bincount(r.choice(10, size=4000, p=dom / dom.sum()),
                                                        minlength=10), 10))
    assert v is not None and v.evidence["largest_class"] == 0
    # two classes 75/25 (ratio 3): imbalanced in the data check's sense, not a training fault
    assert ClassImbalance().check(counts_state([3000, 1000], 2)) is None


# ---------------------------------------------------------------- clipping_too_tight ----

@pytest.mark.parametrize("declare", [True, False])
def test_clipping_read_after_the_clip_is_named_not_a_low_learning_rate(declare):
    """A plain loop clipping by norm to 1e-4 before the recorder reads the gradients: the total
    norm read equals the threshold on every sample. Declared or not, clipping_too_tight names
    it, and lr_too_low, which reads the small updates it makes, is its consequence."""
    torch.manual_seed(0)
    x, y = blobs(2048, 4, 2.0, 0)
    rec = _loop(_mlp(classes=4), x, y, 160, lr=0.05, clip=1e-4, declare=declare)
    fired = _fired(rec)
    v = fired["clipping_too_tight"]
    assert v.kind == "cause" and v.evidence["clip_value"] == pytest.approx(1e-4, rel=1e-3)
    assert ("declared" if declare else "no declared") in v.evidence["how"]
    if "lr_too_low" in fired:
        assert fired["lr_too_low"].consequence_of == ["clipping_too_tight"]
    assert [e.detector for e in rec.events if e.kind == "cause"] == ["clipping_too_tight"]


def test_a_clip_that_does_not_bind_is_not_clipping():
    torch.manual_seed(0)
    x, y = blobs(1024, 4, 2.0, 0)
    rec = _loop(_mlp(classes=4), x, y, 60, lr=0.05, clip=1e3)
    assert clip_evidence(rec.state) is None
    assert "clipping_too_tight" not in _fired(rec)


def test_an_undeclared_clip_that_binds_on_most_samples_is_seen():
    """Clipping binds on 8 of 10 samples (the other two are below the threshold): pinned."""
    st = HealthState(param_layers=["a", "b"])
    rng = np.random.default_rng(0)
    rows = []
    for i in range(10):
        share = rng.uniform(0.2, 0.8)
        total = 0.5 if i in (3, 7) else 1.0
        rows.append([total * math.sqrt(share), total * math.sqrt(1 - share)])
    st.series["grad_norm"] = rows
    st.sample_steps = list(range(10))
    assert clip_evidence(st)["clip_value"] == pytest.approx(1.0)
    st.series["grad_norm"] = [[r[0] * (1 + 0.05 * i), r[1]] for i, r in enumerate(rows)]
    assert clip_evidence(st) is None   # norms that move with the batch: no clipping


def test_clipping_rule_waits_for_a_stalled_loss():
    st = HealthState(param_layers=["a", "b"])
    assert ClippingTooTight().check(st) is None


# ------------------------------------------------------------------------- label_noise ----

def test_a_decayed_schedule_is_not_wrong_labels():
    """ExponentialLR(0.95) stepped every batch on a checkerboard (class = parity of the cell):
    training stops by step ~100 with the model near chance. Its misfits persist, unchanged,
    because nothing moves any more, not because the labels are wrong (they are all correct)."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2400, 2, generator=g) * 4 - 2
    y = ((torch.floor(x[:, 0]) + torch.floor(x[:, 1])) % 2).long()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                          nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2))
    rec = _loop(model, x, y, 260, batch=64, lr=1e-2, gamma=0.95, optimizer="adam")
    probe = rec.state.label_probe
    # the look-alike: a third of the probe contradicted, the same examples at every evaluation
    assert all(len(e["contradicted"]) >= 0.3 * e["n"] for e in probe)
    assert probe[-1]["contradicted"] == probe[-2]["contradicted"]
    fired = _fired(rec)
    assert "label_noise" not in fired
    assert fired["lr_schedule_decayed"].kind == "cause"


def _probe(step, conf_fitted, conf_contr, classes=2):
    contradicted = list(range(30))
    return {"step": step, "n": 128, "classes": classes, "fitted": 98 / 128,
            "per_class_fitted": {c: 0.75 for c in range(classes)},
            "contradicted": contradicted, "predicted": [1] * 30,
            "confidence_contradicted": conf_contr, "confidence_fitted": conf_fitted}


def test_label_noise_needs_a_model_that_learned_and_still_learns():
    """The same persistent, confident-as-the-rest contradictions: named when the model is
    confident and its weights move; not when it sits near chance (underfitting) or does not
    move between the evaluations (stopped learning)."""
    def state(conf, update):
        st = HealthState(param_layers=["a"])
        st.label_probe = [_probe(s, conf, conf) for s in (64, 128, 192)]
        st.sample_steps = list(range(0, 200, 8))
        st.series["update_ratio"] = [[update]] * len(st.sample_steps)
        st.series["grad_norm"] = [[1.0]] * len(st.sample_steps)
        st.series["weight_norm"] = [[1.0]] * len(st.sample_steps)
        st.losses = [0.5] * 200
        return st

    assert LabelNoise().check(state(0.95, 1e-3)) is not None
    assert LabelNoise().check(state(0.55, 1e-3)) is None      # 0.1 of the way from 0.5 to 1
    assert LabelNoise().check(state(0.95, 1e-7)) is None      # nothing moves


def test_wrong_labels_are_still_found():
    x, y = blobs(2000, 4, 3.0, 0, wrong=0.3)
    torch.manual_seed(0)
    rec = _loop(_mlp(classes=4), x, y, 200, lr=1e-3, optimizer="adam")
    assert "label_noise" in _fired(rec)


# ------------------------------------------------------- unshuffled_data, regression ----

def _regression_loop(x, y, steps, *, sort, batch=32, seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(x.shape[1], 32), nn.ReLU(), nn.Linear(32, 1))
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    rec = HealthRecorder()
    rec.attach(model, optimizer=opt)
    g = torch.Generator().manual_seed(seed)
    step = 0
    while step < steps:
        order = torch.argsort(y[:, 0]) if sort else torch.randperm(len(x), generator=g)
        for i in range(0, len(x) - batch + 1, batch):
            if step >= steps:
                break
            xb, yb = x[order[i:i + batch]], y[order[i:i + batch]]
            rec.begin_step(targets=yb)
            loss = nn.functional.mse_loss(model(xb), yb)
            rec.after_loss(loss)
            opt.zero_grad()
            loss.backward()
            rec.before_optimizer_step()
            opt.step()
            rec.end_step()
            step += 1
    rec.finish(None)
    return rec


def test_regression_targets_sorted_by_value_are_found():
    """Targets sorted by value: nearly all their variance lies between the batches (random
    batches of 32 leave ~1/32 there)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2048, 6, generator=g)
    y = (x @ torch.randn(6, 1, generator=g) + 0.3 * torch.randn(2048, 1, generator=g))
    y = (y - y.mean()) / y.std()
    v = _fired(_regression_loop(x, y, 120, sort=True)).get("unshuffled_data")
    assert v is not None and v.evidence["between_batch_share"] > 0.9
    assert "unshuffled_data" not in _fired(_regression_loop(x, y, 120, sort=False))


def test_value_order_needs_a_spread_within_batches():
    from archlab.diagnose.taxonomy import value_order_evidence

    assert value_order_evidence([(1, float(i), float(i * i)) for i in range(20)]) is None
    rng = np.random.default_rng(0)
    pairs = [rng.normal(size=2) for _ in range(400)]   # random batches of 2: F ~ 1
    ev = value_order_evidence([(2, float(p.sum()), float((p * p).sum())) for p in pairs])
    assert ev["p_value"] > 1e-3


def test_the_tails_match_scipy():
    """The monitor's own binomial tail (exact) and F tail (Wilson-Hilferty) against scipy's."""
    stats = pytest.importorskip("scipy.stats")
    from archlab.diagnose.taxonomy import binomial_cdf, f_sf

    for k, n, q in [(19, 652, 1 / 6), (0, 64, 1 / 6), (100, 1000, 1 / 6), (150, 1000, 1 / 6),
                    (5, 40, 0.3), (0, 300, 0.02)]:
        assert binomial_cdf(k, n, q) == pytest.approx(stats.binom.cdf(k, n, q), rel=1e-9)
    for f, d1, d2 in [(3.0, 10, 3000), (1.2, 40, 1200), (8.0, 8, 500), (2.0, 60, 4000)]:
        assert f_sf(f, d1, d2) == pytest.approx(stats.f.sf(f, d1, d2), rel=0.15)


def test_what_a_decayed_schedule_leaves_is_its_consequence():
    """Tiny updates and a training loss left high, raised after the rate fell, are the
    schedule's; raised before it, they stay causes."""
    decayed = Verdict("lr_schedule_decayed", 176, "", evidence={"onset_step": 144})
    low, reg = Verdict("lr_too_low", 150, ""), Verdict("over_regularisation", 160, "")
    early = Verdict("over_regularisation", 100, "")
    attribute([low, reg, decayed], EXPLAINS)
    assert low.consequence_of == reg.consequence_of == ["lr_schedule_decayed"]
    attribute([early, decayed], EXPLAINS)
    assert early.kind == "cause"
