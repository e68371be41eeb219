"""Wrong labels (Humbatova et al. 2020, *Training data quality / wrong labels*): label noise,
labels shuffled or offset against their inputs in part of the data.

The mechanism is the known memorisation dynamics of networks trained on noisy labels (Arpit et
al. 2017, "A closer look at memorization in deep networks"; Zhang et al. 2017): a network first
learns the function the correctly labelled majority defines, and fits the wrongly labelled
examples only much later, by memorising them one by one. In between, on a fixed set of training
examples, the wrongly labelled ones form a group of their own: the model predicts another
class for them, the same class evaluation after evaluation (their true class), and as
confidently as it predicts the labels it fits, because their inputs are ordinary examples of
that class. Clean data that is merely hard looks different, which is what the rule reads:

* **the model has learned every class** (at least ``min_class_fitted`` of the probe examples of
  each class get their label as the top prediction): a model that has not learned the task
  (underfitting, a flat loss, labels that carry no signal at all) misfits examples for its own
  reasons, and a model that only predicts the majority class of imbalanced data misfits the
  minority classes wholesale; neither is evidence about the labels;
* **a large group is contradicted** (at least ``min_contradicted`` of the probe): a calibrated
  model cannot confidently contradict many correct labels. Where a model says another class
  has posterior p, at most 1 - p of the examples there can carry the given label, so
  contradictions at the fitted examples' confidence are rare on correctly labelled data;
* **confidently** (median top probability over the contradicted examples at least
  ``confidence_ratio`` x the median over the fitted ones): a hard but correctly labelled example
  lies where the classes overlap, where the model is unsure; a wrong label sits on an ordinary
  example of another class;
* **persistently** (at least ``persistence`` of the contradicted examples were contradicted, with
  the same predicted class, on each of the previous ``evaluations`` - 1 evaluations, 64 steps
  apart, and the contradicted fraction is stable: its smallest value over the evaluations is at
  least ``stable`` x its largest): a model still learning changes its mind about the examples
  it misfits and misfits fewer of them at every evaluation; the true class of a wrongly
  labelled example does not change, nor does their number (until memorisation slowly lowers
  it).

The probe: the monitor keeps 8 training examples of each of the first sampled classification
batches (128 in all; fewer for large inputs), a fixed set chosen by the step schedule alone, and
from step 64 on runs the model on it every 64 steps in evaluation mode without gradients
(:meth:`archlab.diagnose.monitor.HealthRecorder` records ``state.label_probe``). Its cost is one
forward pass over 128 examples per 64 steps.

Two look-alikes of persistence are ruled out before wrong labels are named:

* **a model that stopped learning** (a learning rate decayed to nothing, ``lr_decayed``, or
  weights that hardly move between the evaluations: median update-to-weight ratio over the
  samples between the first and the last evaluation below ``min_update_ratio``, the level
  below which ``lr_too_low`` calls a run stalled) changes its mind about nothing, so every
  misfit it has persists: its contradictions are its unfinished learning, not the labels;
* **an underfitting model** is unsure about what it gets right: a model that has learned the
  function the correct labels define predicts them confidently. On each evaluation the median
  confidence of the fitted examples must lie at least ``min_confidence`` of the way from chance
  (1 / C) to certainty; a model near chance (confidences ~0.5 on two classes) contradicts and
  fits examples alike by coin flip.

**Heavy noise: the tests.** With wrong labels at rate r no class can be fitted much beyond
1 - r, so under heavy noise (40-50 %) the model fits every class at 0.2-0.6 and the fixed ratios
above (a class floor of 0.5, a confidence ratio) exclude exactly the faults they are for. The
probe therefore also records every probe example's predicted class, top-class probability and
label (one copy per evaluation), and the rule names wrong labels, on the last ``evaluations``
evaluations (the probe's common first examples), when all of these hold:

* a model that stopped learning is ruled out as above (the fitted-confidence floor is NOT
  applied here: under wrong labels at rate r a calibrated model is at most about
  (1 - r - 1/C) / (1 - 1/C) of the way from chance, and early in training far less, so the
  floor excluded exactly the heavy noise these tests are for; a model near chance is read
  by the persistence test and the every-class gate below instead);
* every class (>= 4 probe examples) is fitted beyond guessing (fitted share > 1 / C): a class
  the model never gets right (a majority-class predictor, a class not learned yet) is
  contradicted for that reason;
* **persistence beyond chance** (exact binomial test): k examples are contradicted at every
  evaluation with the same predicted class. Were each evaluation's misfits independent of the
  others' (a model guessing, or still moving its boundary), an example would be so with
  probability at most prod_j q_j (q_j: evaluation j's contradicted fraction); the rule asks
  P(Binomial(n, prod q_j) >= k) < alpha / m, with alpha = ``alpha`` = 0.01 and m the number
  of windows checked so far in the run (Bonferroni: the rule is tested once per evaluation),
  and k >= ``min_contradicted`` x n (the size of fault worth naming);
* **not a model still learning** (exact sign test, McNemar): between the first and the last
  evaluation, the examples that went from contradicted to fitted are not significantly more
  than those that went the other way (one-sided p >= alpha / m);
* **the neighbours side with the model** (exact sign test): a wrong label sits on an ordinary
  example of the predicted class, so its ``PROBE_NEIGHBOURS`` = 3 nearest probe examples in
  input space (Euclidean; Hamming on token ids; computed once per probe size by the monitor)
  carry the predicted class more often than the given label. Where the labels are right but
  the model cannot read what decides them (an input slice it never sees, a region where the
  classes overlap), the given label is as common there as the predicted one. Over the
  contradicted examples, of the neighbours' labels equal to one of the two, the predicted
  class must be the more frequent with P(Binomial(a + b, 1/2) >= a) < alpha / m;
* **as confident as the fitted** (Mann-Whitney U, one-sided, normal approximation with tie and
  continuity corrections): the persistently contradicted examples' top-class probabilities
  are not significantly lower than those of the examples fitted at every evaluation
  (p >= ``alpha_confidence`` = 0.05; a gate that must NOT reject, so no multiple-testing
  correction, which would only loosen it). Hard but correct examples sit where the classes
  overlap and are contradicted at visibly lower confidence, which this test detects.

Seen suites (3 seeds, 2026-12-02 14:09-14:22 UTC, load 4-5.5): the tests named 1 of the 6
fresh3 wrong-label runs (45 % on digits, seed 1) and none of the 18 fresh4 ones, with no
alarm on any healthy run and no label_noise anywhere else. What stopped them: the
fitted-confidence gate (``min_confidence`` of the way from chance) at the first evaluation
(step 64: 50 % noise on 10 classes gives 0.21-0.24), the Mann-Whitney gate on wine and blobs
(their contradicted examples are significantly less confident, p < 1e-3), the sign test
against still learning, and the neighbour test on token ids (Hamming distance says little).
Most of those runs last 150-250 steps: two or three probe evaluations in all.

With the gap test and the floor on the ratio reading only (2026-12-03 15:40-15:56 UTC,
``benchmarks/fault_suite.py --only`` on the wrong-label faults and their twins, load 6.6-10):
fresh3 3 of 6 (digits 3/3; rings 0/3), fresh4 5 of 18 (50 % on tokens 3/3 by the gap,
50 % on MNIST through ``archlab train`` 2/3 by the tests below the old floor), fresh5 3 of 18
(40 % on spots 3/3 by the gap), no healthy twin alarmed. Replayed on the probe records of the
225 healthy classification runs of the six seen suites, the gap test's closest approach was
1.7 standard errors below its level on two consecutive evaluations; one evaluation alone
(``gap_evaluations`` = 1) would have named two healthy ResNet runs at step 64 (eval-mode batch
norm early in training), which is why two are asked. On the probe records of 590 runs of the
other classification faults of those suites no gap verdict and no label_noise; there data
left in label order clears the gap's level (``f2_p_checker_sorted`` by 8.6 and 17 standard
errors, its third seed by far more, its probe losses hardly spreading; ``f3_p_sensor_sorted``
by 1.4) and is held back by the chi-square gate alone. Still missed: 35-45 % flips on two
classes (circles, Hastie, rings: in 150-300 steps the model learns too little for either
reading), labels shifted by a row (no signal left: ``loss_not_decreasing`` is the symptom),
plain loops on wine and blobs (the gap closes as the model memorises, z 1.9-2.9 at the first
evaluation), and wrong labels in both splits through ``archlab train`` on wine, circles and
row-by-row MNIST (no gap by construction; the memorisation tests' Mann-Whitney and
still-learning gates).

**Training labels worse than held-out ones: the gap test** (tried first, on its own). Where
the training labels are wrong and the validation labels are not (a corrupted training label
file, an annotation pass over the training split, a join on the wrong key), the model, in
evaluation mode, fits its own training examples worse than examples it never trained on. On
correctly labelled data of one distribution this cannot happen beyond noise: the
generalisation gap is one-sided (E[training loss] <= E[held-out loss] at the same weights).
The probe records each example's loss on its given label (-ln p(label), from the same
forward pass), and each probe evaluation is compared with the larger validation loss of the
pass at most 64 steps before it and the next pass after it (a model still learning makes the
pass before the worse one, a model getting worse the pass after: either way the null holds).
The rule asks, on each of the last ``gap_evaluations`` = 2 consecutive probe evaluations,
z = (mean probe loss - validation loss) / (s sqrt(1/n + 1/val_size)) >= inv_cdf(1 - alpha/m)
(s: the probe losses' standard deviation, the one spread both means share under the null;
n: probe examples; m: the probe evaluations paired so far, Bonferroni, as the rule is tested
once per evaluation; alpha = 0.01, the rule's test level). Each of the two is a test at the
full level, so asking for both only lowers the false-alarm rate; two is the shortest
persistence (a single evaluation can sit on a transient). The probe's size and the
validation set's enter the error term; dropout and other train-mode regularisation do not
matter (the probe runs in evaluation mode, as validation does). When the training code does
not give the validation size (``validation(..., val_size=)``), the smallest sampled training
batch stands for it (a validation set at least one batch large: the bound the overfitting
rule uses). Not judged: when the probe's class counts do not fit those of every sampled
batch (Pearson's chi-square p < alpha: data in label order, whose first batches, where the
probe comes from, hold one or two classes), and after a divergence. The test assumes the
validation loss is the mean cross entropy (as the loss rules' know-nothing reference ln C
does). What it cannot tell apart (the verdict names both): augmentation that makes training
inputs harder than validation ones (the probe holds the augmented inputs), and validation
data from an easier distribution than the training data. Wrong labels in both splits leave
no gap; the memorisation tests above still read them.

**Labels the inputs do not predict: memorised, not generalised** (session 8, tried after the
gap test). A label column shifted one row against its inputs, labels shuffled, or a join on
the wrong key, in the whole file (both splits: ``archlab train`` splits one file), leave no
gap: validation is as wrong as training. They leave another picture: the model memorises its
training examples one by one (networks fit random labels, slowly: Zhang et al. 2017) while
nothing it learns carries over. On correctly labelled data whatever lowers the training loss
lowers the held-out loss too, below the know-nothing cross entropy H = -sum_c pi_c ln pi_c of
the class shares. The rule names it on the latest probe evaluation when (1) the probe is fitted
better than validation beyond noise: the gap's z, against the SMALLER validation loss of the
passes around it (the conservative side here), <= -inv_cdf(1 - alpha/m); (2) the probe is
fitted below H beyond noise ((H - mean probe loss) sqrt(n) / s at the same level: it memorised
something); (3) no validation pass so far fell below H beyond noise ((val_loss - H) sqrt(val_size)
/ s > -level, s the probe losses' sd); (4) the passes around the evaluation are at most
H + (H - mean probe loss): a model confidently wrong on held-out data by more than it gained on
its training labels has a shifted validation split or blew up (``lr_too_high``, a class
missing from training, validation data scaled differently; the scale is a symmetry argument,
not a bound, and this gate was added after the replay on the seen suites' other faults showed
those look-alikes); and (5) the labels do not follow
from the inputs without the model either: of the probe's nearest-neighbour pairs in input
space (3 per example, each unordered pair once) no more share a label than chance sum_c pi_c^2
(exact binomial, p >= alpha; pairs sharing an example make it reject too easily, the safe side
for a gate that must not reject). The message names the look-alike it cannot rule out: inputs
that carry no information about the labels (a wrong column, constant inputs) give the same
picture, and the user's next step is the same: check the label-to-input join. A tiny training
set (``overfitting``) memorises too but its labels carry signal, so its validation loss falls
below H first (3); a model still learning shows no significant gap (1).

**Heavy noise in both splits: two evaluations, and the confidence test at the first** (session
8). The persistence tests read the last ``evaluations`` = 3 evaluations, or the last
``test_evaluations`` = 2 where only two exist (a run of 150-190 steps has two: 64 and 128); the
binomial against prod q_j is as valid on two as on three, the Bonferroni m counts the windows
read. The Mann-Whitney test (contradicted not less confident than fitted) reads the window's
FIRST evaluation: memorisation pulls each wrongly labelled example toward its given label
(Arpit et al. 2017), lowering the top-class probability of exactly those examples as training
goes on, so at later evaluations wrong labels look less confident too (fresh6, 50 % on
gratings through ``archlab train``, seed 2: p = 0.003 at step 128, 0.55 at step 64); hard
examples are unsure from the start. Dropping the test altogether named the healthy ``f6h_l_loans_bnmlp`` (2 of 3 seeds).

Measured (2026-12-03 17:40-18:00 UTC, load 7-12): on the probe records of the 225 healthy and
614 other-fault classification runs of the seen suites (session 7's capture, the probe code
unchanged since) the three readings above named no healthy run and no other fault except
faults whose labels are shuffled or rolled against their inputs (main ``l_shuffled_labels`` and
``l_seq_shuffled_labels`` seed 2, fresh ``fl_lstm_labels_rolled`` seeds 1 and 2: wrong labels by
their source, listed under ``loss_not_decreasing``). Through ``benchmarks/fault_suite.py --only``
(live, 3 seeds, 17:54-18:16 UTC, load 9-21) on the wrong-label faults and their twins: fresh6
4 -> 10 of 18 (gratings shifted a row 2/3, chirps file shifted 2/3, gratings 50 % through
``archlab train`` 2/3), fresh4 5 -> 8 of 18 (MNIST 50 % through ``archlab train`` 3/3, wine
1/3, blobs 1/3), fresh5 3 of 18 and fresh3 3 of 6 unchanged; no twin alarmed. Still missed:
40-45 % flips on two or three classes where the model learns nothing in 150 steps (chirps in a
plain loop, circles), validation below H in one pass (gratings shift seed 1), a gap just short
of its level (chirps file shift seed 1, z = -2.4 against -2.58).

**The class mix** (session 9). Two look-alikes of the class mix. (i) Class imbalance: with
one class holding most training labels the know-nothing cross entropy H of the training shares
is small, and a validation split holding the classes in other shares (a training split
subsampled to a 5 % minority, validation left whole) stays above H although the model learned
what the inputs say; pooled, the neighbours' agreement is then at chance too, because the
majority's pairs set chance at sum_c pi_c^2 (~0.9) and the minority's examples, sparse, sit
among the majority (fresh6 ``f6_l_quantiles_minority_0.05`` seed 2: pooled p = 0.14, named
wrongly beside ``class_imbalance``). The memorisation reading therefore also reads the
neighbours class by class (:func:`class_neighbour_agreement`): a class whose examples' nearest
probe examples carry its label beyond its own share ((n_c - 1) / (n - 1); p < alpha / C,
Bonferroni over the classes) follows from the inputs (there: the majority, 361 of 363 against
0.94, p = 3e-7). Labels shifted or shuffled on imbalanced data leave every class at chance and
are still named. (ii) A probe whose class mix fails the chi-square at ``alpha`` is not
evidence of data in label order by itself: on shuffled data it happens at rate alpha
(fresh7 ``f7_l_swatches_labels_45`` seed 1: p = 0.0087, the gap's z 6.6 and 6.2 unjudged).
Such a probe is judged when the batches' own order test (distinct classes per batch against
random batches, :func:`~archlab.diagnose.order_evidence.order_evidence`) finds them random
(z < inv_cdf(1 - alpha)), on its losses reweighted to the batches' class shares
(post-stratification, :func:`probe_loss_mean`), so its mix cannot bias the comparison with
validation; batches in label order, or a class of the batches with fewer than 2 probe
examples, leave it unjudged as before.

Not found, and why (fresh7, session 9): a label column shifted one row in the training split
of the pulse traces (Lightning): in 200 steps the GRU learns nothing from random labels, the
probe and validation both sit at H and the probe's neighbours agree at chance (p 0.29-0.67).
Agreement at chance is no evidence of independence where the neighbours say little: on the
healthy sign-XOR of fresh6, which plateaus near H for its first 160 steps, the pooled p of 128
examples is 1e-7, 2e-5 and 0.014 over three seeds; naming a model that learns nothing on the
neighbours alone would name such plateaus. Telling them apart needs the validation split's
inputs and labels, which the monitor does not keep. 40 % wrong labels on the pulse traces in a plain loop that does not pass ``val_size``:
the gap test's stand-in (one batch of 32) halves its z (1.3-2.2 against 2.3-2.7), and the
persistence tests meet a model still weak (validation 0.85-0.95 against H = 1.10) whose misfits
are half its own errors (neighbours side with the prediction 45:39, 38:34). The 45 % swatches
through ``archlab train`` seed 1 and the shifted pump file seed 0 are short of power (two
evaluations, persistence p = 0.034; the probe's gain below H z = 2.5 against 2.81).

The fraction of contradicted probe examples estimates the wrong labels from below (random
relabelling at rate r over C classes changes r (C - 1) / C of the labels; a network that has
started memorising fits some of them).
"""

from __future__ import annotations

import bisect
import math
from statistics import NormalDist

import numpy as np

from .detectors import SLOW, Detector, lr_decayed, register_detector
from .label_probe import LABEL_PROBE_EVERY


def movement_between(state, first_step: int, last_step: int) -> float:
    """Median over the samples from ``first_step`` to ``last_step`` of the median update-to-
    weight ratio over the layers that moved or have a gradient (nan: none recorded)."""
    u = state.array("update_ratio")
    if u.size == 0:
        return math.nan
    steps = np.asarray(state.sample_steps[:u.shape[0]])
    keep = (steps >= first_step) & (steps <= last_step)
    if not keep.any():
        return math.nan
    # each sample's median over its finite layers, reduced once per sample (HealthState)
    per = state.row_medians("update_ratio")[:u.shape[0]][keep]
    per = per[np.isfinite(per)]
    return float(np.median(per)) if per.size else math.nan


def mann_whitney_less(a, b) -> float:
    """One-sided p-value of the Mann-Whitney U test that the values ``a`` tend to be smaller
    than the values ``b`` (normal approximation with the tie and continuity corrections; 1.0
    when either sample is empty)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    na, nb = a.size, b.size
    if na == 0 or nb == 0:
        return 1.0
    both = np.concatenate((a, b))
    order = np.argsort(both, kind="mergesort")
    ranks = np.empty(both.size)
    s = both[order]
    # midranks of ties
    edges = np.flatnonzero(np.diff(s)) + 1
    starts = np.concatenate(([0], edges))
    ends = np.concatenate((edges, [s.size]))
    mid = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(mid, ends - starts)
    u = ranks[:na].sum() - na * (na + 1) / 2.0
    n = na + nb
    t = (ends - starts).astype(float)
    var = na * nb / 12.0 * ((n + 1) - (t ** 3 - t).sum() / (n * (n - 1))) if n > 1 else 0.0
    if var <= 0:
        return 1.0
    z = (u - na * nb / 2.0 + 0.5) / math.sqrt(var)
    return 0.5 * math.erfc(-z / math.sqrt(2))


def binom_sf(k: int, n: int, p: float) -> float:
    """Exact P(X >= k) for X ~ Binomial(n, p)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if p <= 0:
        return 0.0
    if p >= 1:
        return 1.0
    lp, lq = math.log(p), math.log1p(-p)
    terms = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq
             for i in range(k, n + 1)]
    m = max(terms)
    return min(1.0, math.exp(m) * sum(math.exp(x - m) for x in terms))


def chi_square_sf(x: float, df: int) -> float:
    """Exact P(X >= x) for X ~ chi-square(df), df a positive integer (the closed forms of the
    regularised upper incomplete gamma function at half-integer and integer order)."""
    if df <= 0 or x <= 0:
        return 1.0
    h = x / 2.0
    if df % 2 == 0:   # e^-h sum_{i < df/2} h^i / i!
        terms = [i * math.log(h) - math.lgamma(i + 1) - h for i in range(df // 2)]
        base = 0.0
    else:             # erfc(sqrt h) + e^-h sum_{i=1}^{(df-1)/2} h^(i - 1/2) / Gamma(i + 1/2)
        terms = [(i - 0.5) * math.log(h) - math.lgamma(i + 0.5) - h for i in range(1, df // 2 + 1)]
        base = math.erfc(math.sqrt(h))
    return min(1.0, base + sum(math.exp(t) for t in terms))


def probe_is_representative(labels, counts, alpha: float) -> tuple[bool, float]:
    """Whether the probe's labels are drawn like the training batches' (Pearson's chi-square
    goodness of fit of the probe's class counts against the class shares of every sampled
    batch, ``counts``; classes with an expected count below 1 pooled into one cell). Data left
    in label order (the probe is the first sampled batches: one or two classes) fails it.
    Returns (passes at level ``alpha``, p-value)."""
    counts = np.asarray(counts, float)
    labels = np.asarray(labels, int)
    if counts.size < 2 or counts.sum() <= 0 or labels.size == 0 or labels.max() >= counts.size:
        return False, 0.0
    observed = np.bincount(labels, minlength=counts.size).astype(float)
    expected = labels.size * counts / counts.sum()
    small = expected < 1
    if small.any():
        observed = np.append(observed[~small], observed[small].sum())
        expected = np.append(expected[~small], expected[small].sum())
    keep = expected > 0
    if (observed[~keep] > 0).any():
        return False, 0.0   # a class the batches never showed
    observed, expected = observed[keep], expected[keep]
    if observed.size < 2:
        return False, 0.0
    stat = float(((observed - expected) ** 2 / expected).sum())
    p = chi_square_sf(stat, observed.size - 1)
    return p >= alpha, p


def _bracketed(probes: list[dict], vals: list[dict]) -> list[tuple[int, int, dict]]:
    """The probe evaluations that lie between two validation passes, the one at most
    LABEL_PROBE_EVERY steps before and the next one after: (index among ``probes``, j, the
    record) with ``vals[j - 1]`` and ``vals[j]`` the two passes (``vals`` in step order, as
    recorded). The gap test and the memorisation reading pair each evaluation this way."""
    steps = [v["step"] for v in vals]
    out = []
    for i, e in enumerate(probes):
        j = bisect.bisect_right(steps, e["step"])   # vals[:j] at or before the probe
        if 0 < j < len(vals) and e["step"] - steps[j - 1] <= LABEL_PROBE_EVERY:
            out.append((i, j, e))
    return out


def neighbour_agreement(labels, near) -> tuple[int, int, float, float]:
    """Whether the labels follow from the inputs at all, read without the model: of the probe
    examples' nearest probe examples in input space (``near``: PROBE_NEIGHBOURS each), how many
    carry the example's own label, against chance (labels independent of the inputs: an
    example and a neighbour agree with probability sum_c pi_c^2, pi the probe's class shares).
    Returns (agreeing pairs, pairs, chance rate, one-sided exact binomial p of agreement beyond
    chance). Each unordered pair counts once (i near j and j near i is one pair). Pairs that
    share an example are still not independent, which makes the binomial's variance somewhat
    too small: it rejects too easily, the safe side for a gate that must NOT reject."""
    y = np.asarray(labels, int)
    n = y.size
    if n < 2:
        return 0, 0, math.nan, 1.0
    share = np.bincount(y) / n
    chance = float((share ** 2).sum())
    pairs = {(min(i, j), max(i, j)) for i, row in enumerate(near[:n]) for j in row
             if j < n and j != i}
    agree = sum(1 for i, j in pairs if y[i] == y[j])
    total = len(pairs)
    return agree, total, chance, binom_sf(agree, total, chance) if total else 1.0


def class_neighbour_agreement(labels, near) -> list[dict]:
    """The neighbours' agreement class by class: for each class c with at least 2 probe
    examples, of the nearest probe examples of its examples (``near``, directed: i's
    neighbours), how many carry c, against chance (labels independent of the inputs: a
    neighbour of a class-c example is of class c with probability (n_c - 1) / (n - 1), drawing
    without replacement). Pooled over the classes (:func:`neighbour_agreement`) the pairs of a
    large class dominate, at a chance of sum_c pi_c^2 that is high when one class holds most
    examples: a 5 % minority whose examples sit among the majority and a majority class whose
    examples sit among themselves beyond its share leave the pooled count at chance (fresh6,
    a 5 % minority, seed 2: pooled p = 0.14, the majority 361 of 363 against 0.94, p = 3e-7).
    One row per class: class, examples, agreeing, neighbours read, chance, one-sided exact
    binomial p of agreement beyond chance. Shared neighbours make the binomial's variance too
    small: it rejects too easily, the safe side for a gate that must NOT reject."""
    y = np.asarray(labels, int)
    n = y.size
    if n < 3:
        return []
    rows = []
    for c in range(int(y.max()) + 1):
        members = np.flatnonzero(y == c)
        if members.size < 2:
            continue
        read = [int(j) for i in members for j in (near[i] if i < len(near) else ())
                if j < n and j != i]
        if not read:
            continue
        agree = sum(1 for j in read if y[j] == c)
        chance = (members.size - 1) / (n - 1)
        rows.append({"class": c, "examples": int(members.size), "agreeing": agree,
                     "neighbours": len(read), "chance": chance,
                     "p": binom_sf(agree, len(read), chance)})
    return rows


def probe_loss_mean(loss, labels, counts, weighted: bool) -> tuple[float, float] | None:
    """The probe's mean loss on its labels and that mean's standard error (s / sqrt(n), s the
    losses' sd). ``weighted``: the mean over the classes weighted by their shares in the
    sampled batches (``counts``), each class's mean from its own probe examples
    (post-stratification: the loss the probe would show were its class mix the batches'), with
    the standard error sqrt(sum_c w_c^2 s_c^2 / n_c); None when a class of the batches has fewer
    than 2 probe examples (its share cannot be read from the probe)."""
    loss = np.asarray(loss, float)
    if not weighted:
        return float(loss.mean()), float(loss.std(ddof=1)) / math.sqrt(loss.size)
    y = np.asarray(labels, int)[:loss.size]
    counts = np.asarray(counts, float)
    mean = var = 0.0
    for c in np.flatnonzero(counts > 0):
        own = loss[y == c]
        if own.size < 2:
            return None
        w = counts[c] / counts.sum()
        mean += w * float(own.mean())
        var += w * w * float(own.var(ddof=1)) / own.size
    return mean, math.sqrt(var)


def probe_mix(state, labels, alpha: float) -> tuple[bool, bool, float, float]:
    """Whether the probe may be judged against validation, and how: (judged, reweighted,
    chi-square p of the probe's class mix against the sampled batches', z of the batches'
    order). The look-alike is data in label order: the probe is the first sampled batches (one
    or two classes), and a model that follows the stretch of classes it is on fits them worse
    than validation for that reason. The probe's mix is tested first (Pearson's chi-square at
    ``alpha``); when it does not fit, the batches' own order test decides
    (:func:`~archlab.diagnose.order_evidence.order_evidence`, the deficit of distinct classes
    per batch against random batches): ordered beyond noise (z >= inv_cdf(1 - alpha)) or not
    readable, not judged; unordered, the mix is chance (a shuffled split fails the
    chi-square at rate alpha) and the probe's losses are reweighted to the batches' class
    shares (:func:`probe_loss_mean`), so its mix cannot bias the comparison. A class the
    batches never showed in the probe: not judged."""
    counts = (state.targets or {}).get("counts") or []
    ok, p = probe_is_representative(labels, counts, alpha)
    if ok:
        return True, False, p, math.nan
    if p == 0.0 and not _probe_classes_seen(labels, counts):
        return False, False, p, math.nan
    from .order_evidence import order_evidence
    order = order_evidence(state)
    z = order["z"] if order else math.nan
    if not (math.isfinite(z) and z < NormalDist().inv_cdf(1 - alpha)):
        return False, False, p, z
    return True, True, p, z


def _probe_classes_seen(labels, counts) -> bool:
    counts = np.asarray(counts, float)
    labels = np.asarray(labels, int)
    return bool(counts.size >= 2 and labels.size and labels.max() < counts.size
                and (counts[np.unique(labels)] > 0).all())


@register_detector
class LabelNoise(Detector):
    name = "label_noise"
    explains = SLOW
    # a network memorising wrong labels raises its validation loss (Arpit et al. 2017): the
    # overfitting that follows is this cause's consequence, and its fix is the labels
    consequences = ("overfitting",)
    severity = "warning"
    rule = ("(a) the held-out gap: on each of the last `gap_evaluations` probe evaluations the "
            "model, in evaluation mode, fits its own training examples (the probe) worse than "
            "the validation examples (the larger validation loss of the pass at most 64 steps "
            "before and the next pass after): z = (mean probe loss "
            "on the training labels - validation loss) / (s sqrt(1/n + 1/val_size)) >= "
            "inv_cdf(1 - alpha/m) (s: the probe losses' sd; m: evaluations paired so far), which "
            "correct labels cannot do beyond noise (training data is fitted at least as well as "
            "held-out data; an unknown val_size taken as the smallest training batch); judged when "
            "the probe's class counts fit the sampled batches' (chi-square p >= alpha) or, where "
            "they do not, the batches' order test finds them random (distinct classes per batch, "
            "z < inv_cdf(1 - alpha): not data in label order) and the probe's losses are "
            "reweighted to the batches' class shares, and the run did not diverge; or (b) "
            "on each of the last `evaluations` evaluations of a fixed probe of training "
            "examples (every 64 steps from step 64), the model fits every class (at least "
            "min_class_fitted of each class's probe examples get their label as the top "
            "prediction) yet contradicts at least min_contradicted of the probe, as confidently "
            "as it fits the rest (median top probability of the contradicted >= "
            "confidence_ratio x that of the fitted) and persistently (at least `persistence` of "
            "them contradicted with the same predicted class on each previous evaluation, and "
            "the contradicted fraction stable: smallest >= `stable` x largest): the "
            "memorisation dynamics of wrong labels (Arpit et al. 2017), not of hard examples, "
            "which the model is unsure about and changes its mind on, nor of a model still "
            "learning, which misfits fewer examples at every evaluation. Ruled out first: a "
            "model that stopped learning (learning rate decayed to ~0, or a median update/"
            "weight ratio between the evaluations below min_update_ratio: nothing it misfits "
            "can change), and, for this ratio reading only, an underfitting one (median "
            "confidence of the fitted examples less than min_confidence of the way from chance "
            "1/C to certainty). Heavy noise "
            "(no class fittable beyond ~1 - r): on the probe's per-example records, every class "
            "fitted beyond guessing (> 1/C), k >= min_contradicted x n examples contradicted with "
            "the same class at every evaluation where independent misfits would give "
            "P(Binomial(n, prod q_j) >= k) < alpha / m (Bonferroni over the m windows checked), "
            "no significant net move from contradicted to fitted (exact sign test, p >= alpha / "
            "m), the contradicted examples' 3 nearest probe examples carrying the predicted class "
            "more often than the given label (exact sign test, p < alpha / m), and the "
            "contradicted not less confident than the fitted at the window's first evaluation "
            "(one-sided Mann-Whitney p >= alpha_confidence; memorisation lowers it later), on "
            "the last `evaluations` evaluations or, where only `test_evaluations` = 2 exist, on "
            "those; or (c) labels the inputs do not predict (shifted or shuffled in both splits): "
            "on the latest probe evaluation the probe fitted better than the smaller validation "
            "loss of the passes around it (the gap's z <= -inv_cdf(1 - alpha/m)), below the "
            "know-nothing loss H (entropy of the class shares; (H - mean probe loss) sqrt(n) / "
            "s >= the same level), while no validation pass so far fell below H beyond noise "
            "((val_loss - H) sqrt(val_size) / s > -level), the passes around it are at most "
            "H + the probe's gain below H (not a shifted split or a blow-up), and the probe "
            "examples' nearest neighbours in input space share their labels no more than chance, "
            "pooled (exact binomial against sum pi_c^2, p >= alpha) and class by class (each "
            "class's examples' neighbours against its own share, p >= alpha / C: a class "
            "imbalance, whose validation split may hold other shares, is not named); the probe "
            "mix judged as in (a)")
    thresholds = {"evaluations": 3, "min_contradicted": 0.1, "min_class_fitted": 0.5,
                  "confidence_ratio": 0.9, "persistence": 0.67, "stable": 0.75,
                  "min_update_ratio": 1e-5, "min_confidence": 0.25,
                  "alpha": 0.01, "alpha_confidence": 0.05, "gap_evaluations": 2,
                  "test_evaluations": 2}
    fixes = ["find the wrong labels: examples the trained model contradicts confidently are "
             "the candidates (confident learning, Northcutt et al. 2021); relabel or drop them",
             "check the label pipeline for part of the data: labels shuffled, offset by a row or "
             "joined on the wrong key relative to their inputs",
             "train robustly to the noise that remains: early stopping at the best validation "
             "epoch, label smoothing, small-loss selection (co-teaching, Han et al. 2018)"]

    def check(self, state):
        gap = self._held_out_gap(state)
        if gap is not None:
            return gap
        # the readings below change only with a new probe evaluation or validation pass (the
        # detectors run on every sample): judged once per such record, as the gap test is
        key = (id(state), len(state.label_probe), len(state.validation))
        memo = self.__dict__.get("_probe_memo")
        if memo is not None and memo[0] == key:
            return memo[1]
        result = self._memorised_not_generalised(state) or self._persistence(state)
        self._probe_memo = (key, result)
        return result

    def _persistence(self, state):
        """The ratio reading and the tests on the last probe evaluations."""
        n = int(self.t["evaluations"])
        # the tests read the last `evaluations` evaluations, or the last
        # `test_evaluations` (= 2, the fewest a persistence test can compare) where fewer exist:
        # a run of 150-250 steps has two or three (every 64 steps from step 64)
        ev = state.label_probe[-n:]
        if len(ev) < int(self.t["test_evaluations"]):
            return None
        if lr_decayed(state):
            return None   # the schedule stopped training: its misfits persist for that reason
        moved = movement_between(state, ev[0]["step"], ev[-1]["step"])
        if math.isfinite(moved) and moved < self.t["min_update_ratio"]:
            return None   # the weights did not move between the evaluations: nothing could change
        if len(ev) < n:
            return self._tests(state, ev, moved)   # the fixed ratios need all `evaluations`
        sure = True
        for e in ev:
            chance = 1.0 / max(int(e.get("classes", 2)), 2)
            cf = float(e["confidence_fitted"])   # a state read back holds nan as 'nan'
            if not (math.isfinite(cf) and (cf - chance) / (1 - chance) >= self.t["min_confidence"]):
                sure = False   # unsure about what it fits: the ratios cannot tell it from underfitting
        # the fitted-confidence floor guards the fixed ratios only: under wrong labels at rate r
        # a calibrated model's confidence is at most about (1 - r - 1/C) / (1 - 1/C) of the way
        # from chance (0.44 at r = 0.5, C = 10), early in training far less; the tests read a
        # model near chance through persistence beyond chance (the binomial) and every class
        # fitted beyond guessing instead
        return (self._ratios(state, ev, moved) if sure else None) or self._tests(state, ev, moved)

    def _held_out_gap(self, state):
        """Training labels worse than the held-out ones: the model, in evaluation mode, fits its
        own training examples (the probe) worse than the validation set it never trained on.

        The null: training and validation examples come from one distribution and carry labels
        of one quality. A model trained on the training split then fits it at least as well as
        held-out data in expectation (the generalisation gap is one-sided): E[probe loss] <=
        E[validation loss] at the same weights. Each probe evaluation is compared with the
        larger validation loss of the pass before it (at most LABEL_PROBE_EVERY steps) and the
        next pass after it: for a model still learning the pass before is the worse one, for
        a model getting worse the pass after, so either way the null holds. The test: z =
        (mean probe loss - validation loss) / (s sqrt(1/n + 1/val_size)), s the probe losses'
        standard deviation (the one spread
        estimate both means share under the null; n probe examples, val_size validation ones),
        one-sided against the normal at alpha / m (Bonferroni over the m evaluations paired so
        far), on each of the last ``gap_evaluations`` pairs. Wrong labels in the training split
        only (a corrupted label file for the training data, an annotation pass, a join on the
        wrong key) give about r x (the loss of a contradicted label - that of a fitted one)
        of excess per example.

        Look-alikes ruled out: a probe not drawn like the training batches (data in label
        order: the first sampled batches hold one or two classes; Pearson's chi-square of the
        probe's class counts against every sampled batch's, at ``alpha``); a run that
        diverged. An unknown validation size is taken as the smallest sampled training batch
        (a validation set at least one batch large). Not ruled out (the
        monitor cannot see them): augmentation that makes training inputs harder than
        validation ones, and validation data from an easier distribution than the training
        data; the verdict names both. Label noise in both splits leaves no gap: the
        memorisation reading below covers it."""
        if state.nonfinite:
            return None   # a run that diverged: its losses say nothing about the labels
        # judged once per new probe evaluation or validation pass (the detectors run on every
        # sample): the same records give the same answer
        key = (id(state), len(state.label_probe), len(state.validation))
        memo = self.__dict__.get("_gap_memo")
        if memo is not None and memo[0] == key:
            return memo[1]
        result = self._gap_on(state)
        self._gap_memo = (key, result)
        return result

    def _gap_on(self, state):
        probes = [e for e in state.label_probe if e.get("all_label_loss")]
        vals = [v for v in state.validation if math.isfinite(v.get("val_loss", math.nan))]
        if not probes or not vals:
            return None
        # each probe evaluation between two validation passes: the one at most
        # LABEL_PROBE_EVERY steps before it and the next one after it. Compared with the
        # larger of the two, the null holds for a model that improves (the pass before is
        # worse than the model at the probe) and for one that gets worse (the pass after is)
        pairs = [(i, max(vals[j - 1], vals[j], key=lambda v: v["val_loss"]), e)
                 for i, j, e in _bracketed(probes, vals)]
        k = int(self.t["gap_evaluations"])
        if len(pairs) < k or pairs[-1][0] - pairs[-k][0] != k - 1:
            return None   # the last k pairs: consecutive probe evaluations
        counts = (state.targets or {}).get("counts") or []
        ok, reweighted, p_repr, z_order = probe_mix(state, probes[-1]["labels"], self.t["alpha"])
        if not ok:
            return None   # data in label order (or a probe whose mix cannot be corrected)
        m = len(pairs)
        z_crit = NormalDist().inv_cdf(1 - self.t["alpha"] / m)
        # the validation set's size; when the training code does not give it, at least one
        # training batch (the smallest sampled one): the bound the overfitting rule uses too
        batches = [b for b in (state.targets or {}).get("batch_sizes") or [] if b]
        rows = []
        for _, v, e in pairs[-k:]:
            size = v.get("val_size") or (min(batches) if batches else None)
            loss = np.asarray(e["all_label_loss"], float)
            if not size or loss.size < 2 or not np.isfinite(loss).all():
                return None
            sd = float(loss.std(ddof=1))
            if sd <= 0:
                return None
            got = probe_loss_mean(loss, e["labels"], counts, reweighted)
            if got is None:
                return None
            mean, se = got   # se = sd / sqrt(n) unless reweighted: sd sqrt(1/n + 1/val_size)
            z = (mean - v["val_loss"]) / math.sqrt(se * se + sd * sd / size)
            if z < z_crit:
                return None
            rows.append({"validation_step": v["step"], "probe_step": e["step"],
                         "val_loss": v["val_loss"], "probe_loss": mean,
                         "probe_loss_sd": sd, "probe_examples": int(loss.size),
                         "val_size": int(size), "val_size_given": bool(v.get("val_size")),
                         "z": z})
        last = rows[-1]
        p_one = 0.5 * math.erfc(min(r["z"] for r in rows) / math.sqrt(2))
        e = pairs[-1][2]
        return self.verdict(
            state, f"wrong labels likely in the training data: in evaluation mode the model fits "
            f"{last['probe_examples']} of its own training examples worse than the validation "
            f"examples it never trained on (loss {last['probe_loss']:.3f} on their training "
            f"labels vs validation loss {last['val_loss']:.3f} at step {last['validation_step']}; "
            f"z >= {min(r['z'] for r in rows):.1f} on the last {k} evaluations, p = {p_one:.1e} "
            f"against the Bonferroni level {self.t['alpha'] / m:.1e}), which correct labels "
            f"cannot do beyond noise (training data is fitted at least as well as held-out data); "
            f"it contradicts {len(e['contradicted'])} of {e['n']} of them. Unless the training "
            f"inputs are augmented or the validation data is easier than the training data, the "
            f"training labels are wrong more often than the validation labels",
            evidence={"pairs": rows, "z_critical": z_crit, "alpha_bonferroni": self.t["alpha"] / m,
                      "p_value": p_one, "probe_representative_p": p_repr,
                      "probe_reweighted_to_batch_shares": reweighted, "batch_order_z": z_order,
                      "contradicted_fraction": len(e["contradicted"]) / max(e["n"], 1),
                      "per_class_fitted": e.get("per_class_fitted", {})})

    def _memorised_not_generalised(self, state):
        """Labels the inputs do not predict: the model fits its own training examples (the
        probe, evaluation mode) beyond what it fits on held-out data, while the validation loss
        never falls below the know-nothing level (the entropy of the class shares).

        The null (labels that carry information about the inputs): whatever a model learns
        that lowers its loss on training examples carries over, in part, to held-out ones, so
        the validation loss falls below the know-nothing cross entropy H = -sum_c pi_c ln pi_c
        (pi: the class shares of the sampled batches; ln C for balanced classes) once the
        probe's does. Labels shuffled or shifted against their inputs (in both splits alike,
        where the gap test sees nothing), or inputs with no information about the labels, give
        the other picture: the model memorises training examples one by one (Zhang et al.
        2017: networks fit random labels, slowly), which lowers the probe's loss and leaves
        the validation loss at H or above. The test, on the latest probe evaluation paired as
        in the gap test (with the SMALLER validation loss of the pass at most 64 steps before
        and the next pass after, the conservative side here): z = (mean probe loss -
        validation loss) / (s sqrt(1/n + 1/val_size)) <= -inv_cdf(1 - alpha/m) (the gap test's
        statistic, the other tail), and at every validation pass up to the paired one
        (val_loss - H) / (s / sqrt(val_size)) > -inv_cdf(1 - alpha/m): validation never beat
        the know-nothing level beyond noise (s: the probe losses' sd, the per-example spread
        of the cross entropy). Look-alikes: a tiny training set (``overfitting``) also
        memorises, but its labels carry signal, so the validation loss falls below H at the
        first passes before it rises; a model still learning has no significant gap yet; an
        underfitting or stalled model fits its training examples no better than held-out
        ones. Judged, as the gap test, only on a representative probe and a run that did not
        diverge."""
        if state.nonfinite:
            return None
        probes = [e for e in state.label_probe if e.get("all_label_loss")]
        vals = [v for v in state.validation if math.isfinite(v.get("val_loss", math.nan))]
        if not probes or len(vals) < 2:
            return None
        pairs = [(j, min(vals[j - 1], vals[j], key=lambda v: v["val_loss"]), e)
                 for _, j, e in _bracketed(probes, vals)]
        if not pairs or pairs[-1][2] is not probes[-1]:
            return None   # judged on the latest evaluation only
        counts = np.asarray((state.targets or {}).get("counts") or [], float)
        ok, reweighted, p_repr, z_order = probe_mix(state, probes[-1]["labels"], self.t["alpha"])
        if not ok:
            return None
        share = counts[counts > 0] / counts.sum()
        entropy = float(-(share * np.log(share)).sum())   # the know-nothing cross entropy
        j, v, e = pairs[-1]
        batches = [b for b in (state.targets or {}).get("batch_sizes") or [] if b]
        size = v.get("val_size") or (min(batches) if batches else None)
        loss = np.asarray(e["all_label_loss"], float)
        if not size or loss.size < 2 or not np.isfinite(loss).all():
            return None
        sd = float(loss.std(ddof=1))
        if sd <= 0:
            return None
        got = probe_loss_mean(loss, e["labels"], counts, reweighted)
        if got is None:
            return None
        mean, se = got
        m = len(pairs)
        z_crit = NormalDist().inv_cdf(1 - self.t["alpha"] / m)
        z = (mean - v["val_loss"]) / math.sqrt(se * se + sd * sd / size)
        if z > -z_crit:
            return None   # the probe is not fitted beyond the held-out data
        gain = entropy - mean   # what memorisation gained on the training labels
        if gain / se < z_crit:
            return None   # the probe is not fitted beyond the know-nothing level
        seen = vals[:j + 1]
        # held-out loss far above the know-nothing level: a shifted split, a blow-up. The
        # scale is a symmetry argument, not a bound: a model memorising labels its inputs do
        # not predict is about as confident on held-out inputs as on its training ones, so
        # what that confidence costs on held-out labels (the excess over H) is of the order of
        # what it gained on the memorised ones (H - probe loss). Added after the replay on the
        # seen suites' other faults showed the look-alikes (class imbalance, a validation
        # split scaled differently, learning rates that blow up)
        if max(vals[j - 1]["val_loss"], vals[j]["val_loss"]) > entropy + gain:
            return None
        agree, pairs_n, p_same, p_agree = neighbour_agreement(e["labels"], e.get("neighbours") or [])
        if not pairs_n or p_agree < self.t["alpha"]:
            return None   # neighbours in input space share labels beyond chance: signal
        # and class by class, against each class's own share (Bonferroni over the classes):
        # pooled, a majority class's pairs set the chance level, and a class that holds most
        # of the examples (class imbalance) hides both a minority among the majority and a
        # majority whose examples sit among themselves beyond its share. Imbalanced training
        # labels are the look-alike here: the validation split's class shares may differ from
        # the training batches' (a subsampled training split), so its loss can stay above the
        # entropy H of the training shares while the model learned what the inputs say
        per_class = class_neighbour_agreement(e["labels"], e.get("neighbours") or [])
        if any(r["p"] < self.t["alpha"] / len(per_class) for r in per_class):
            return None   # a class's examples sit among their own class beyond its share
        z_chance = [(w["val_loss"] - entropy) / (sd / math.sqrt(w.get("val_size") or size))
                    for w in seen]
        if min(z_chance) <= -z_crit:
            return None   # validation beat the know-nothing level: the labels carry signal
        best = min(seen, key=lambda w: w["val_loss"])
        return self.verdict(
            state, f"wrong labels likely: the labels do not follow from the inputs. In "
            f"evaluation mode the model fits {loss.size} of its own training examples (loss "
            f"{mean:.3f} on their labels, {len(e['contradicted'])} contradicted) far "
            f"better than validation examples (loss {v['val_loss']:.3f}; z = {z:.1f} against "
            f"-{z_crit:.1f}), while the validation loss never fell below the know-nothing level "
            f"{entropy:.3f} (the entropy of the class shares; best {best['val_loss']:.3f} at step "
            f"{best['step']}): it memorises its training labels one by one and learns nothing "
            f"that carries over. Labels shuffled or shifted against their inputs (an offset by "
            f"one row, a join on the wrong key) do this, in both splits alike; so do inputs that "
            f"carry no information about the labels (a wrong column, constant inputs)",
            evidence={"probe_step": e["step"], "validation_step": v["step"],
                      "probe_loss": mean, "val_loss": v["val_loss"],
                      "z": z, "z_critical": z_crit, "know_nothing_loss": entropy,
                      "val_losses": [w["val_loss"] for w in seen],
                      "z_validation_vs_know_nothing": z_chance, "val_size": int(size),
                      "neighbours_agreeing": agree, "neighbour_pairs": pairs_n,
                      "neighbour_chance": p_same, "p_neighbours_agree": p_agree,
                      "probe_representative_p": p_repr,
                      "probe_reweighted_to_batch_shares": reweighted,
                      "p_neighbours_agree_by_class": {r["class"]: r["p"] for r in per_class},
                      "contradicted_fraction": len(e["contradicted"]) / max(e["n"], 1)})

    def _tests(self, state, ev, moved):
        """Heavy noise (the model cannot fit any class beyond about 1 - r): the tests of the
        module docstring on every probe example's prediction and confidence."""
        if any("all_predicted" not in e or "labels" not in e for e in ev):
            return None
        # the probe grows until it is full; its first examples are the same at every evaluation
        n = min(min(len(e["all_predicted"]), len(e["all_confidence"]), len(e["labels"]))
                for e in ev)
        if n == 0:
            return None
        y = np.asarray(ev[-1]["labels"][:n])
        pred = np.asarray([e["all_predicted"][:n] for e in ev])
        conf = np.asarray([e["all_confidence"][:n] for e in ev], dtype=float)
        classes = max(int(ev[-1].get("classes", 2)), 2)
        chance = 1.0 / classes
        wrong = pred != y
        held = wrong.all(0) & (pred == pred[-1]).all(0)   # contradicted alike every time
        agreed = (~wrong).all(0)                          # fitted every time
        k = int(held.sum())
        if k < self.t["min_contradicted"] * n or not agreed.any():
            return None
        # every class learned beyond guessing: a class the model never predicts right (a
        # majority-class predictor, a class not learned yet) is contradicted for that reason
        per_class = ev[-1].get("per_class_fitted", {})
        if len(per_class) < 2 or min(per_class.values()) <= chance:
            return None
        c_held = float(np.median(conf[-1][held]))
        # tested once per evaluation: Bonferroni over the windows checked so far
        m = max(1, len(state.label_probe) - len(ev) + 1)
        alpha = self.t["alpha"] / m
        # (1) persistence beyond chance: were the misfits of each evaluation independent of
        # the others' (a model guessing, still learning), an example would be contradicted at
        # all of them with probability prod q_j at most (q_j: evaluation j's misfit fraction)
        q = float(np.prod(wrong.mean(1)))
        p_persist = binom_sf(k, n, q)
        if p_persist >= alpha:
            return None
        # (2) not a model still learning: between the first and the last evaluation as many
        # examples become contradicted as become fitted (exact sign test, McNemar)
        down = int((wrong[0] & ~wrong[-1]).sum())
        up = int((~wrong[0] & wrong[-1]).sum())
        p_learning = binom_sf(down, down + up, 0.5) if down + up else 1.0
        if p_learning < alpha:
            return None
        # (3) the neighbours side with the model: a wrong label sits on an ordinary example of
        # the predicted class, whose nearest probe examples (in input space) carry that class's
        # label more often than the given one; where the labels are right but the model cannot
        # read what decides them (a hard region, an input it does not see), the given label is
        # as common among the neighbours as the predicted one. Exact sign test on the
        # neighbours' labels that equal one of the two, pooled over the contradicted examples.
        near = ev[-1].get("neighbours") or []
        side_pred = side_label = 0
        for i in np.flatnonzero(held):
            if i >= len(near):
                continue
            ln = [int(y[j]) for j in near[i] if j < n]
            side_pred += sum(1 for c in ln if c == pred[-1][i])
            side_label += sum(1 for c in ln if c == y[i])
        p_neigh = binom_sf(side_pred, side_pred + side_label, 0.5) if side_pred + side_label else 1.0
        if p_neigh >= alpha:
            return None
        # (4) as confident as the fitted: hard examples sit where the classes overlap and get
        # lower confidence; the test must not find the contradicted less confident. Read at
        # the window's FIRST evaluation: memorisation pulls each wrongly labelled example
        # toward its given label, which lowers the top-class probability of exactly these
        # examples as training goes on (Arpit et al. 2017), so the later evaluations show
        # wrong labels less confident too; a hard example is unsure from the start
        p_less = mann_whitney_less(conf[0][held], conf[0][agreed])
        if p_less < self.t["alpha_confidence"]:
            return None
        frac = k / n
        worst = min(per_class.values())
        steps = [x["step"] for x in ev]
        return self.verdict(
            state, f"wrong labels likely: the model contradicts {k} of {n} probe training "
            f"examples ({frac:.0%}) with the same predicted class at every evaluation (steps "
            f"{steps}; by chance p = {p_persist:.1e}), as confidently as it fits the rest at "
            f"step {steps[0]} (Mann-Whitney p = {p_less:.2f} for 'less confident'; median "
            f"{c_held:.2f} vs {float(np.median(conf[-1][agreed])):.2f} at step {steps[-1]}, "
            f"where memorisation pulls them toward their labels), while it fits every class beyond guessing "
            f"(worst {worst:.0%}) and their nearest probe examples carry the predicted class "
            f"{side_pred} times, the given label {side_label} times (p = {p_neigh:.1e})",
            evidence={"evaluation_steps": steps, "probe_examples": n,
                      "persistently_contradicted": k, "p_persistence": p_persist,
                      "p_still_learning": p_learning, "p_less_confident": p_less,
                      "neighbours_with_prediction": side_pred,
                      "neighbours_with_label": side_label, "p_neighbours": p_neigh,
                      "alpha_bonferroni": alpha,
                      "confidence_contradicted": c_held,
                      "confidence_fitted": float(np.median(conf[-1][agreed])),
                      "per_class_fitted": per_class, "median_update_ratio_between": moved,
                      "wrong_label_estimate": f">= {frac:.0%} of the training labels",
                      "predicted_classes_of_contradicted": np.bincount(
                          pred[-1][held], minlength=classes).tolist()})

    def _ratios(self, state, ev, moved):
        """Moderate noise: the model fits every class; the fixed-ratio reading."""
        for e in ev:
            per_class = e.get("per_class_fitted", {})
            if len(per_class) < 2 or min(per_class.values()) < self.t["min_class_fitted"]:
                return None   # the model has not learned every class: no evidence on labels
            if not e["n"] or len(e["contradicted"]) / e["n"] < self.t["min_contradicted"]:
                return None
            cc, cf = float(e["confidence_contradicted"]), float(e["confidence_fitted"])
            if not (math.isfinite(cc) and math.isfinite(cf) and cc >= self.t["confidence_ratio"] * cf):
                return None   # unsure about what it misfits: hard examples, not wrong labels
        fractions = [len(e["contradicted"]) / e["n"] for e in ev]
        if min(fractions) < self.t["stable"] * max(fractions):
            return None   # fewer misfits at every evaluation: a model still learning
        last = dict(zip(ev[-1]["contradicted"], ev[-1]["predicted"], strict=True))
        kept = []
        for e in ev[:-1]:
            before = dict(zip(e["contradicted"], e["predicted"], strict=True))
            kept.append(sum(1 for i, c in last.items() if before.get(i) == c) / len(last))
        if min(kept) < self.t["persistence"]:
            return None   # the model changes its mind: still learning, not wrong labels
        e = ev[-1]
        frac = len(e["contradicted"]) / e["n"]
        worst = min(e["per_class_fitted"].values())
        return self.verdict(
            state, f"wrong labels likely: the model contradicts {len(e['contradicted'])} of "
            f"{e['n']} probe training examples ({frac:.0%}) with confidence "
            f"{e['confidence_contradicted']:.2f} (fitted ones {e['confidence_fitted']:.2f}), the "
            f"same predicted class on {min(kept):.0%} of them over the evaluations at steps "
            f"{[x['step'] for x in ev]}, while it fits every class (worst {worst:.0%})",
            evidence={"evaluation_steps": [x["step"] for x in ev], "probe_examples": e["n"],
                      "contradicted_fraction": [len(x["contradicted"]) / x["n"] for x in ev],
                      "confidence_contradicted": [x["confidence_contradicted"] for x in ev],
                      "confidence_fitted": [x["confidence_fitted"] for x in ev],
                      "same_prediction": kept, "per_class_fitted": e["per_class_fitted"],
                      "median_update_ratio_between": moved,
                      "wrong_label_estimate": f">= {frac:.0%} of the training labels",
                      "predicted_classes_of_contradicted": np.bincount(
                          e["predicted"], minlength=e["classes"]).tolist()})
