"""The evidence that training batches are not random draws of the training split (read by
:class:`archlab.diagnose.taxonomy.Unshuffled` and :class:`~archlab.diagnose.taxonomy.ClassImbalance`):
the label mix of the sampled classification batches against that of random batches
(:func:`order_evidence`), and the between-batch share of regression targets' variance
(:func:`value_order_evidence`).
"""

from __future__ import annotations

import math

import numpy as np

from .state import grow_rows


def f_sf(f: float, d1: float, d2: float) -> float:
    """P(F > f) for F ~ F(d1, d2), by the Wilson-Hilferty normal approximation of the scaled
    chi-square d1 F (d2 is the values within the batches, thousands, so F x d1 ~ chi2(d1);
    the approximation's error at p ~ 1e-6 is a few percent of p, immaterial to a threshold
    set in orders of magnitude)."""
    if not f > 0:
        return 1.0
    x = f * d1 * (d2 / (d2 - 2.0)) ** -1 if d2 > 2 else f * d1
    a = 2.0 / (9.0 * d1)
    z = ((x / d1) ** (1.0 / 3.0) - (1.0 - a)) / math.sqrt(a)
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def distinct_classes(p: np.ndarray, b: int) -> tuple[float, float]:
    """(mean, variance) of the number of distinct classes in a batch of ``b`` labels drawn at
    random from the class probabilities ``p``: class c is absent with probability
    a_c = (1 - p_c)^b, so E = sum(1 - a_c) and Var = sum a_c (1 - a_c) + sum over pairs c != c'
    of (1 - p_c - p_c')^b - a_c a_c'. Draws with replacement: a batch drawn without replacement
    from a finite split holds at least as many classes, so the test below is conservative."""
    a = (1.0 - p) ** b
    mean = float(np.sum(1.0 - a))
    var = float(np.sum(a * (1.0 - a)))
    if len(p) <= 2000:   # the pair terms (negative: classes compete for the b draws)
        # (np.clip(x, 0.0, None), np.outer and np.fill_diagonal written as the ufuncs they
        # call: the same values, without three Python wrappers)
        both = np.maximum(1.0 - p[:, None] - p[None, :], 0.0) ** b - a[:, None] * a[None, :]
        both.reshape(-1)[::len(p) + 1] = 0.0
        var += float(both.sum())
    return mean, max(var, 0.0)


def order_evidence(state) -> dict | None:
    """How far the label mix of the sampled batches is from that of random batches.

    Under shuffling, every batch is a random draw from the training labels, whose class shares
    the sampled labels estimate; its number of distinct classes D then has the mean and
    variance of :func:`distinct_classes`. Ordered data (sorted by class, or grouped) fills each
    batch from one stretch of the split, so consecutive examples share their label and batches
    hold fewer classes. Over the n sampled batches: the deficit sum(E_i - D_i), its z score
    against sqrt(sum Var_i) (the sampled batches are independent draws under shuffling), and
    the deficit as a fraction of the most a batch can lack, sum(E_i - 1) (a batch holds at
    least one class): 0 for random batches, 1 for batches of one class each. Works for any
    number of classes >= 2: with 2 balanced classes a random batch of 32 holds one class with
    probability 2^-31, a sorted split on nearly every batch. None without class labels.
    Computed once per sample (unshuffled_data and class_imbalance both read it); the result
    must not be modified."""
    per_sample = getattr(state, "per_sample", None)
    if per_sample is not None:
        return per_sample("order_evidence", lambda: _order_evidence_kept(state))
    return _order_evidence(state)


def _order_evidence_kept(state) -> dict | None:
    """:func:`_order_evidence`, the same value to the last digit, without rebuilding the
    per-batch arrays from the lists on every sample: each sampled batch's distinct classes and
    size are copied once into buffers kept on the state (the lists only grow), with the index
    of its size among the sizes seen; the moments of each size are computed once per call, as
    the direct computation does, and read per batch by that index (one ``take``, not a Python
    loop over the batches). The arrays summed are the direct computation's, element for
    element and in the same order, so every figure is identical."""
    t = state.targets
    if t.get("kind") != "classes":
        return None
    per_batch, sizes = t.get("batch_classes", []), t.get("batch_sizes", [])
    raw = t.get("counts", [])
    n = min(len(per_batch), len(sizes))
    memo = state.__dict__.get("_order_memo")
    # the evidence is a function of the counts and the first n batches alone: the same inputs
    # as the last call (a validation pass, no new sample since) give the same result
    if (memo is not None and memo["of"][0] is per_batch and memo["of"][1] is sizes
            and memo["n"] == n and memo.get("last") is not None and memo["last"][0] == raw):
        return memo["last"][1]
    counts = np.array(raw, dtype=np.float64)
    classes = int((counts > 0).sum())
    if n == 0 or classes < 2:
        return None
    if memo is None or memo["of"][0] is not per_batch or memo["of"][1] is not sizes or memo["n"] > n:
        memo = state.__dict__["_order_memo"] = {
            "of": (per_batch, sizes), "n": 0, "d": np.zeros(max(64, n)),
            "b": np.zeros(max(64, n), dtype=np.int64), "at": np.zeros(max(64, n), dtype=np.intp),
            "sizes": [], "index": {}, "size_counts": {}, "last": None}
    done = memo["n"]
    if done < n:
        for key in ("d", "b", "at"):
            memo[key] = grow_rows(memo[key], done, n)
        new_b = [int(k) for k in sizes[done:n]]
        memo["d"][done:n] = per_batch[done:n]
        memo["b"][done:n] = new_b
        index, tally = memo["index"], memo["size_counts"]
        for k in new_b:
            if k not in index:
                index[k] = len(memo["sizes"])
                memo["sizes"].append(k)
            tally[k] = tally.get(k, 0) + 1
        memo["at"][done:n] = [index[k] for k in new_b]
        memo["n"] = n
    p = counts[counts > 0] / counts.sum()
    d, at = memo["d"][:n], memo["at"][:n]
    moments = [distinct_classes(p, k) for k in memo["sizes"]]
    e = np.array([m[0] for m in moments]).take(at)
    v = np.array([m[1] for m in moments]).take(at)
    deficit = float(np.sum(e - d))
    room = float(np.sum(e - 1.0))
    z = deficit / math.sqrt(max(float(v.sum()), 1e-12))
    out = {"samples": n, "classes_seen": classes, "mean_classes_per_batch": float(d.mean()),
           "expected_if_shuffled": float(e.mean()),
           "batch_size": _median_of_tally(memo["size_counts"], n),
           "deficit_fraction": deficit / room if room > 0 else 0.0, "z": z}
    memo["last"] = (list(raw), out)
    return out


def _median_of_tally(tally: dict[int, int], n: int) -> float:
    """``float(np.median(b))`` of the ``n`` integer sizes counted in ``tally`` ({size: how many}):
    the middle one, or the mean of the two middle ones in float64 (np.median of integers;
    exact below 2**53), read from the sizes in order without sorting the n values."""
    h = n // 2
    want = (h,) if n % 2 else (h - 1, h)
    got, seen = [], 0
    for k in sorted(tally):
        seen += tally[k]
        while len(got) < len(want) and want[len(got)] < seen:
            got.append(k)
        if len(got) == len(want):
            break
    return float(got[0]) if n % 2 else (float(got[0]) + float(got[1])) / 2


def _order_evidence(state) -> dict | None:
    t = state.targets
    if t.get("kind") != "classes":
        return None
    per_batch, sizes = t.get("batch_classes", []), t.get("batch_sizes", [])
    counts = np.array(t.get("counts", []), dtype=np.float64)
    n = min(len(per_batch), len(sizes))
    classes = int((counts > 0).sum())
    if n == 0 or classes < 2:
        return None
    p = counts[counts > 0] / counts.sum()
    d = np.asarray(per_batch[:n], dtype=np.float64)
    b = np.asarray(sizes[:n], dtype=np.int64)
    moments = {int(k): distinct_classes(p, int(k)) for k in np.unique(b)}
    e = np.array([moments[int(k)][0] for k in b])
    v = np.array([moments[int(k)][1] for k in b])
    deficit = float(np.sum(e - d))
    room = float(np.sum(e - 1.0))
    z = deficit / math.sqrt(max(float(v.sum()), 1e-12))
    # the median of the sizes, written out (np.median of integers: the mean of the two middle
    # values in float64, exact below 2**53), sorted once per sample
    s = np.sort(b)
    h = n // 2
    size = float(s[h]) if n % 2 else (float(s[h - 1]) + float(s[h])) / 2
    return {"samples": n, "classes_seen": classes, "mean_classes_per_batch": float(d.mean()),
            "expected_if_shuffled": float(e.mean()), "batch_size": size,
            "deficit_fraction": deficit / room if room > 0 else 0.0, "z": z}


def value_order_evidence(chunks: list[tuple[int, float, float]]) -> dict | None:
    """How much of the variance of regression targets lies between the sampled batches.

    ``chunks``: (values, sum, sum of squares) of the targets of each sampled batch. A one-way
    analysis of variance: under shuffling each batch is a random draw, so its mean varies by
    sigma^2 / n around the overall mean and the between-batch share of the total variance,
    eta^2 = SS_between / SS_total, is about (batches - 1) / values (1 / batch size); batches cut
    from data sorted by target hold neighbouring values, so nearly all the variance lies between
    them (eta^2 near 1). The F statistic (between / within mean squares) gives its significance
    (:func:`f_sf`: the batch means are averages, near normal by the central limit theorem)."""
    c = [x for x in chunks if x[0] > 0]
    k = len(c)
    if k < 2:
        return None
    n = np.array([x[0] for x in c], dtype=np.float64)
    s1 = np.array([x[1] for x in c])
    s2 = np.array([x[2] for x in c])
    total = float(n.sum())
    mean = float(s1.sum() / total)
    means = s1 / n
    between = float(np.sum(n * (means - mean) ** 2))
    within = float(max(np.sum(s2 - n * means ** 2), 0.0))
    if total < 2 * k or within <= 0 or between <= 0:
        return None   # batches of one value (or constant ones): no spread within to compare
    eta2 = between / (between + within)
    p_value = f_sf((between / (k - 1)) / (within / (total - k)), k - 1, total - k)
    return {"samples": k, "values": int(total), "between_batch_share": eta2,
            "expected_if_shuffled": (k - 1) / total, "p_value": p_value,
            "batch_mean_range": [float(means.min()), float(means.max())]}
