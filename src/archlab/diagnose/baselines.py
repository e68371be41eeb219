"""Principled references for loss rules: what a loss *should* be compared with.

The first observed loss is a poor reference: dropout and regularisers inflate it, unshuffled
data whose first batches hold one class lowers it, and after a warm-up it hides later spikes.
Loss rules here compare with two references instead:

* the **level of knowing nothing** (:func:`loss_reference`): for cross entropy, the entropy of
  the training split's labels (``-ln(1/C)`` for ``C`` balanced classes), the loss of predicting
  the class frequencies; for mean squared error, the variance of the targets, the loss of
  predicting their mean. It is given by the training code
  (:meth:`HealthRecorder.set_reference <archlab.diagnose.monitor.HealthRecorder.set_reference>`,
  which ``archlab train`` calls with the training split's statistics) or estimated from the
  targets the monitor sees on sampled steps (integer class ids: their label entropy over the
  output width; float targets shaped like the output: their variance);
* a **running baseline** (:func:`running_baseline`): the median loss of a window of recent
  steps, for rules about change (a spike, a rise) rather than level.

Both are plain functions of a :class:`~archlab.diagnose.state.HealthState`, so any detector
(including those of other modules, e.g. generative models) can use them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .state import HealthState


@dataclass(frozen=True)
class LossReference:
    """The loss of a model that has learned nothing about the inputs."""

    kind: str        # 'label_entropy', 'chance', 'target_variance' or 'first_losses'
    value: float
    detail: str      # how it was obtained, in words (goes into verdicts' evidence)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "value": self.value, "detail": self.detail}


def entropy(counts) -> float:
    """Shannon entropy (nats) of a histogram of label counts."""
    c = np.asarray(counts, dtype=np.float64)
    c = c[c > 0]
    if c.sum() <= 0:
        return math.nan
    p = c / c.sum()
    return float(-(p * np.log(p)).sum())


def loss_reference(state: HealthState, *, fallback: bool = True) -> LossReference | None:
    """The know-nothing loss: declared (``state.reference``), else estimated from the targets
    seen on sampled steps, else (``fallback``) the median of the first ``max(10, n/10)`` losses
    (the old rule, marked as such). None when nothing is known yet. Remembered until the
    losses, the samples, the declaration or the targets seen change (every detector asks)."""
    t = state.targets
    # (the declaration compared as a dict with a copy kept of it: its values are numbers and
    # names, so equal dicts are the same declaration; a nan never equals itself and only
    # computes again)
    key = (fallback, len(state.losses), len(state.sample_steps), state.output_width,
           id(t), t.get("n"), sum(t.get("counts", ())))
    caches = state.__dict__.setdefault("_reference_cache", {})
    cached = caches.get(fallback)
    if cached is not None and cached[0] == key and cached[2] == state.reference:
        return cached[1]
    value = _loss_reference(state, fallback)
    caches[fallback] = (key, value, dict(state.reference))
    return value


def _loss_reference(state: HealthState, fallback: bool) -> LossReference | None:
    ref = state.reference
    if ref.get("label_entropy") is not None:
        return LossReference("label_entropy", float(ref["label_entropy"]),
                             "entropy of the training split's labels (declared)")
    if ref.get("classes"):
        c = int(ref["classes"])
        return LossReference("chance", math.log(c), f"-ln(1/{c}) for {c} classes (declared)")
    if ref.get("target_variance") is not None:
        return LossReference("target_variance", float(ref["target_variance"]),
                             "variance of the training targets (declared): MSE of predicting "
                             "their mean")
    t = state.targets
    if t.get("kind") == "classes" and t.get("counts") and state.output_width >= 2:
        counts = list(t["counts"]) + [0] * max(0, state.output_width - len(t["counts"]))
        h = entropy(counts)
        if math.isfinite(h) and h > 0:
            return LossReference("label_entropy", h, f"entropy of {int(sum(counts))} labels seen on "
                                 f"sampled steps, {state.output_width} outputs")
    if t.get("kind") == "values" and t.get("n", 0) > 1 and t.get("matches_output"):
        n, s, ss = t["n"], t["sum"], t["sumsq"]
        var = max(ss / n - (s / n) ** 2, 0.0)
        return LossReference("target_variance", var, f"variance of {int(n)} target values seen "
                             "on sampled steps: MSE of predicting their mean")
    if not fallback:
        return None
    losses = state.loss_array()
    finite = losses[np.isfinite(losses)]
    if finite.size < 10:
        return None
    m = max(10, finite.size // 10)
    return LossReference("first_losses", float(np.median(finite[:m])),
                         f"median of the first {m} losses (no label or target statistics known)")


def running_baseline(losses: np.ndarray, window: int = 50, skip: int = 5) -> float:
    """Median of the ``window`` losses before the last ``skip`` (nan when too few)."""
    end = len(losses) - skip
    if end < max(5, window // 5):
        return math.nan
    part = losses[max(0, end - window):end]
    part = part[np.isfinite(part)]
    return median(part) if part.size else math.nan


def median(values) -> float:
    """``float(np.median(values))`` of a 1-d array or list, written out: a sort and one or two
    reads (the mean of the two middle values, in the values' own float type, as np.median
    takes it), nan when any value is nan or there is none. The same value as np.median without
    its dispatch, partition and nan checks (~15 us a call; the rules ask several times a
    sample)."""
    a = np.asarray(values)
    if a.dtype.kind != "f":
        a = a.astype(np.float64)
    n = a.size
    if n == 0:
        return math.nan
    if n == 1:
        return float(a.reshape(-1)[0])
    s = np.sort(a, axis=None)      # nan sorts last
    if s[-1] != s[-1]:
        return math.nan
    h = n // 2
    return float(s[h]) if n % 2 else float((s[h - 1] + s[h]) / 2)


def _penalties(state: HealthState) -> int:
    """How many penalties the training code has reported (HealthState.record_penalty): the
    losses' data terms change when one arrives, so memos of them start again."""
    pen = getattr(state, "penalty", None) or {}
    return len(pen.get("steps", ()))


def all_finite(state: HealthState) -> bool:
    """``np.all(np.isfinite(state.loss_array()))``, from the kept count (:func:`finite_losses`)."""
    return finite_losses(state, 0)[0] == len(state.losses)


def finite_losses(state: HealthState, last: int = 5) -> tuple[int, np.ndarray]:
    """(how many of the losses so far are finite, the last ``last`` finite ones): the same as
    ``finite = losses[np.isfinite(losses)]; finite.size, finite[-last:]``, without filtering
    the whole history on every sample: the count of non-finite losses is kept and extended by
    the new losses only, and the last finite ones are the tail itself when it is all finite."""
    losses = state.loss_array()
    n = len(losses)
    pen = _penalties(state)   # a penalty reported late changes its step's data term: start again
    memo = state.__dict__.get("_finite_memo")
    if memo is None or memo[0] is not state.losses or memo[1] > n or memo[3] != pen:
        memo = [state.losses, 0, 0, pen]
    seen, bad = memo[1], memo[2]
    if seen < n:
        bad += int(n - seen - np.count_nonzero(np.isfinite(losses[seen:])))
        memo[1], memo[2] = n, bad
    state.__dict__["_finite_memo"] = memo
    tail = losses[-last:] if last else losses[:0]
    if bad and last and not np.all(np.isfinite(tail)):
        tail = losses[np.isfinite(losses)][-last:]
    return n - bad, tail


def recent_loss(losses: np.ndarray, window: int = 10) -> float:
    """Mean of the last ``window`` losses (nan when any is non-finite or none exist)."""
    if len(losses) == 0:
        return math.nan
    part = losses[-window:]
    return float(part.mean()) if np.all(np.isfinite(part)) else math.nan


def progress(state: HealthState, window: int | None = None) -> tuple[float, float, LossReference] | None:
    """(recent loss, its fraction of the reference, the reference): 1.0 = no better than knowing
    nothing, 0.0 = perfect. ``window`` defaults to a tenth of the run (at least 10 steps)."""
    ref = loss_reference(state)
    if ref is None or not ref.value > 0:
        return None
    # several rules ask on every sample: computed once per state of the run and reference
    return state.per_sample(("progress", window, ref, _penalties(state)),
                            lambda: _progress(state, window, ref))


def _progress(state: HealthState, window: int | None, ref: LossReference):
    losses = state.loss_array()
    w = window or max(10, len(losses) // 10)
    now = recent_loss(losses, w)
    if not math.isfinite(now):
        return None
    return now, now / ref.value, ref
