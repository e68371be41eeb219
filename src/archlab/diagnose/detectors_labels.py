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

The fraction of contradicted probe examples estimates the wrong labels from below (random
relabelling at rate r over C classes changes r (C - 1) / C of the labels; a network that has
started memorising fits some of them).
"""

from __future__ import annotations

import math

import numpy as np

from .detectors import SLOW, Detector, lr_decayed, register_detector


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


@register_detector
class LabelNoise(Detector):
    name = "label_noise"
    explains = SLOW
    # a network memorising wrong labels raises its validation loss (Arpit et al. 2017): the
    # overfitting that follows is this cause's consequence, and its fix is the labels
    consequences = ("overfitting",)
    severity = "warning"
    rule = ("on each of the last `evaluations` evaluations of a fixed probe of training "
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
            "can change), and an underfitting one (median confidence of the fitted examples "
            "less than min_confidence of the way from chance 1/C to certainty)")
    thresholds = {"evaluations": 3, "min_contradicted": 0.1, "min_class_fitted": 0.5,
                  "confidence_ratio": 0.9, "persistence": 0.67, "stable": 0.75,
                  "min_update_ratio": 1e-5, "min_confidence": 0.25}
    fixes = ["find the wrong labels: examples the trained model contradicts confidently are "
             "the candidates (confident learning, Northcutt et al. 2021); relabel or drop them",
             "check the label pipeline for part of the data: labels shuffled, offset by a row or "
             "joined on the wrong key relative to their inputs",
             "train robustly to the noise that remains: early stopping at the best validation "
             "epoch, label smoothing, small-loss selection (co-teaching, Han et al. 2018)"]

    def check(self, state):
        n = int(self.t["evaluations"])
        ev = state.label_probe[-n:]
        if len(ev) < n:
            return None
        if lr_decayed(state):
            return None   # the schedule stopped training: its misfits persist for that reason
        moved = movement_between(state, ev[0]["step"], ev[-1]["step"])
        if math.isfinite(moved) and moved < self.t["min_update_ratio"]:
            return None   # the weights did not move between the evaluations: nothing could change
        for e in ev:
            chance = 1.0 / max(int(e.get("classes", 2)), 2)
            cf = e["confidence_fitted"]
            if not (math.isfinite(cf) and (cf - chance) / (1 - chance) >= self.t["min_confidence"]):
                return None   # unsure about what it fits: underfitting, not wrong labels
            per_class = e.get("per_class_fitted", {})
            if len(per_class) < 2 or min(per_class.values()) < self.t["min_class_fitted"]:
                return None   # the model has not learned every class: no evidence on labels
            if not e["n"] or len(e["contradicted"]) / e["n"] < self.t["min_contradicted"]:
                return None
            cc, cf = e["confidence_contradicted"], e["confidence_fitted"]
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
