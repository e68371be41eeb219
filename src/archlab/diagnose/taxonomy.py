"""Detectors for faults of the published taxonomies that the original rules did not cover.

The list comes from the taxonomies of real faults, not from archlab's own suite:

* Humbatova et al., "Taxonomy of real faults in deep learning systems" (ICSE 2020): under
  *Model / weights initialisation*: zero or constant initialisation (units never differ); under
  *Training / training data quality and preprocessing*: data not shuffled, imbalanced classes,
  missing normalisation (here: of regression targets); under *Training / hyperparameters*: batch
  size too small (batch normalisation with tiny batches), learning rate schedule;
* AUTOTRAINER's problem types (Zhang et al., ICSE 2021): vanishing/exploding gradients, dying
  ReLU, oscillating loss, slow convergence (here the causes of slow convergence the monitor can
  see: binding gradient clipping, a decayed schedule);
* DeepDiagnosis' conditions (Wardat et al., ICSE 2022): unchanged weights, out-of-range
  outputs, exploding tensors, loss not decreasing.

Each rule states the alternative causes it rules out.
"""

from __future__ import annotations

import math

import numpy as np

from .baselines import entropy, loss_reference
from .detectors import (
    AFTER_SCALE,
    BN_MIN_BATCH,
    SLOW,
    TARGET_VARIANCE_LIMIT,
    Detector,
    _fmt,
    data_onset,
    lr_decayed,
    register_detector,
    small_batch_norm,
)
from .order_evidence import (  # noqa: F401  (re-exported: the rules' public helpers)
    _order_evidence,
    distinct_classes,
    f_sf,
    order_evidence,
    value_order_evidence,
)


def binomial_cdf(k: int, n: int, q: float) -> float:
    """P(X <= k) for X ~ Binomial(n, q), summed exactly in log space (the pmf's ratio from i to
    i + 1 is (n - i) / (i + 1) x q / (1 - q)); 1 at or above the mean, where no shortfall is
    in question. Plain numpy: the monitor imports no statistics package for one tail."""
    if n <= 0 or k >= n or not 0 < q < 1:
        return 1.0
    if k >= n * q:
        return 1.0   # at or above the mean: the tail is above 1/2, no evidence of a shortfall
    i = np.arange(k, dtype=np.float64)
    steps = np.log((n - i) / (i + 1.0)) + math.log(q / (1.0 - q))
    logs = n * math.log1p(-q) + np.concatenate([[0.0], np.cumsum(steps)])
    top = float(logs.max())
    return float(min(1.0, math.exp(top) * float(np.exp(logs - top).sum())))


@register_detector
class UnscaledTargets(Detector):
    name = "unscaled_targets"
    consequences = AFTER_SCALE   # the targets' scale makes the loss and the updates as large
    rule = ("regression targets (float, shaped like the output, mean squared error) have a "
            "variance above max_variance or a mean above max_mean_over_std x their std: the "
            "loss and the gradients are as large as the targets, which looks like exploding "
            "gradients but is a preprocessing fault. The mean against the std is judged on "
            "moments that describe the split: declared (archlab train), or read from sampled "
            "batches once the order test can speak (8 samples) and finds them unordered (a "
            "stretch of targets sorted by value has an extreme mean and a small spread); the "
            "variance bound holds whatever the order (a stretch is no more spread than the split)")
    thresholds = {"max_variance": TARGET_VARIANCE_LIMIT, "max_mean_over_std": 10.0}
    fixes = ["standardise the targets with training-split statistics (zero mean, unit "
             "variance) and undo it on the predictions",
             "or initialise the last layer's bias to the target mean"]

    def __init__(self, **overrides: float) -> None:
        super().__init__(**overrides)
        # each sampled batch's (values, sum, sum of squares), as Unshuffled keeps them: the
        # targets' moments are running totals, a batch's share is their change since the
        # previous check (the detectors run after every sample). Kept only from the first check
        # where an offset is in question (the first chunk then pools the batches before it): a
        # run without one pays nothing for it
        self._totals = (0, 0.0, 0.0)
        self._chunks: list[tuple[int, float, float]] = []

    def _batches(self, state) -> None:
        t = state.targets
        now = (int(t.get("n", 0)), float(t.get("sum", 0.0)), float(t.get("sumsq", 0.0)))
        if now[0] > self._totals[0]:
            self._chunks.append(tuple(a - b for a, b in zip(now, self._totals, strict=True)))
            self._totals = now

    def random_draws(self, state) -> dict | None:
        """The order evidence when the sampled batches can stand for the split: at least
        Unshuffled's min_samples batches and no order found (its own test, thresholds and
        all); None while too few batches are seen or when they are ordered."""
        order = Unshuffled()
        if len(self._chunks) < order.t["min_samples"]:
            return None
        ev = value_order_evidence(self._chunks)
        if ev is None or (ev["between_batch_share"] >= order.t["min_deficit"]
                          and ev["p_value"] < order.t["p_value"]):
            return None
        return ev

    def check(self, state):
        ref = loss_reference(state, fallback=False)
        if ref is None or ref.kind != "target_variance":
            return None
        t = state.targets
        mean = t["sum"] / t["n"] if t.get("n") else math.nan
        std = math.sqrt(ref.value)
        big_var = ref.value > self.t["max_variance"]
        offset = math.isfinite(mean) and std > 0 and abs(mean) > self.t["max_mean_over_std"] * std
        order = None
        if offset and not big_var and state.reference.get("target_variance") is None:
            # the moments are the sampled batches': a mean far from 0 against a small spread is
            # the split's only if the batches are random draws from it (the first batches of
            # targets sorted by value hold the extreme values, close together)
            self._batches(state)
            order = self.random_draws(state)
            if order is None:
                return None
        if not (big_var or offset):
            return None
        evidence = {"target_variance": ref.value, "target_mean": mean,
                    "target_absmax": t.get("absmax", math.nan), "source": ref.detail,
                    "onset_step": data_onset(state)}
        if order is not None:
            evidence["batches_unordered"] = {k: order[k] for k in (
                "samples", "between_batch_share", "expected_if_shuffled", "p_value")}
        return self.verdict(state, f"regression targets are not scaled: variance {_fmt(ref.value)}"
                            f" (limit {self.t['max_variance']:g}), mean {_fmt(mean)}",
                            evidence=evidence)


@register_detector
class BatchNormSmallBatch(Detector):
    name = "batchnorm_small_batch"
    # normalising over a handful of examples makes large, noisy gradients and loss swings
    consequences = ("exploding_gradients", "lr_too_high")
    rule = ("a batch-norm layer in training mode normalises over fewer than min_batch examples "
            "(median over the last `samples` samples): its batch statistics are noise and its "
            "running statistics, used at evaluation, do not match training (Ioffe 2017; Wu & "
            "He 2018)")
    thresholds = {"min_batch": BN_MIN_BATCH, "samples": 3}
    fixes = ["use a larger batch (>= 16)", "replace batch norm by group or layer norm, which do "
             "not depend on the batch", "or accumulate gradients and use batch renormalisation"]

    def check(self, state):
        bad = small_batch_norm(state, int(self.t["samples"]), self.t["min_batch"])
        if not bad:
            return None
        return self.verdict(state, f"{len(bad)} batch-norm layers see batches of "
                            f"{_fmt(min(bad.values()))} examples (< {self.t['min_batch']:g})",
                            layers=list(bad), evidence={"batch_size": bad,
                                                        "onset_step": data_onset(state)})


@register_detector
class Unshuffled(Detector):
    name = "unshuffled_data"
    # batches of one class push the output layer (and the units feeding it) to that class in
    # turn: a large gradient in one direction at every change of class (loss swings, gradient
    # bursts that look like a divergence), the output saturated or its ReLUs pushed below zero
    # (dead units, which pass no gradient back), and label counts skewed by whichever stretch of
    # the split the sampled steps fell in; targets sorted by value do the same to the output's
    # level. The training loss at an epoch's end is the loss on the last stretch of the split,
    # not on the data, so a train/validation comparison made there (over_regularisation's
    # train-mode penalty) measures the order
    consequences = ("saturated_activations", "dying_relu", "lr_too_high", "exploding_gradients",
                    "vanishing_gradients", "class_imbalance", "over_regularisation", "overfitting")
    rule = ("classes: the sampled training batches hold fewer distinct classes than random "
            "batches drawn from the label shares seen would (their mean and variance are known in "
            "closed form): over at least min_samples samples, the deficit is more than z standard "
            "deviations and more than min_deficit of the most the batches could lack (every "
            "batch one class = 1, random batches = 0); any number of classes >= 2. Regression "
            "targets: more than min_deficit of their variance lies between the sampled batches "
            "(analysis of variance; random batches leave about 1 / batch size there), with an F "
            "test's p below p_value")
    thresholds = {"z": 5.0, "min_deficit": 0.5, "min_samples": 8, "p_value": 1e-6}
    fixes = ["shuffle the training data every epoch (DataLoader(shuffle=True))",
             "if the order is deliberate (curriculum), mix classes within each batch"]

    def __init__(self, **overrides: float) -> None:
        super().__init__(**overrides)
        # regression: the targets' moments are recorded as running totals, so each sampled
        # batch's share is their change since the previous check (the monitor runs the
        # detectors after every sample); kept here, it is not in a saved state
        self._totals = (0, 0.0, 0.0)
        self._chunks: list[tuple[int, float, float]] = []

    def _values(self, state):
        t = state.targets
        now = (int(t.get("n", 0)), float(t.get("sum", 0.0)), float(t.get("sumsq", 0.0)))
        if now[0] > self._totals[0]:
            self._chunks.append(tuple(a - b for a, b in zip(now, self._totals, strict=True)))
            self._totals = now
        if len(self._chunks) < self.t["min_samples"]:
            return None
        ev = value_order_evidence(self._chunks)
        if ev is None or ev["between_batch_share"] < self.t["min_deficit"] or \
                ev["p_value"] >= self.t["p_value"]:
            return None
        lo, hi = ev["batch_mean_range"]
        return self.verdict(state, f"training batches are ordered by target, not shuffled: "
                            f"{ev['between_batch_share']:.0%} of the targets' variance lies "
                            f"between the {ev['samples']} sampled batches (random batches: about "
                            f"{ev['expected_if_shuffled']:.0%}); batch means range {_fmt(lo)} to "
                            f"{_fmt(hi)}", evidence={**ev, "onset_step": data_onset(state)},
                            fixes=[self.fixes[0], "if the order is deliberate (a curriculum), "
                                   "draw each batch from the whole range of the targets"])

    def check(self, state):
        if state.targets.get("kind") == "values":
            return self._values(state)
        ev = order_evidence(state)
        if ev is None or ev["samples"] < self.t["min_samples"]:
            return None
        if ev["z"] < self.t["z"] or ev["deficit_fraction"] < self.t["min_deficit"]:
            return None
        return self.verdict(state, f"training batches are ordered, not shuffled: the "
                            f"{ev['samples']} sampled batches of {ev['batch_size']:g} hold "
                            f"{ev['mean_classes_per_batch']:.2f} distinct classes on average; "
                            f"random batches would hold {ev['expected_if_shuffled']:.2f} of the "
                            f"{ev['classes_seen']} seen ({ev['deficit_fraction']:.0%} of the "
                            f"possible deficit, z = {_fmt(ev['z'])})",
                            evidence={**ev, "onset_step": data_onset(state)})


def rare_class_test(counts, classes: int, share: float) -> dict:
    """The rarest of ``classes`` classes against ``share`` x the largest one (an imbalance ratio
    above 1 / share; the largest class holds at least 1/C, so this also covers a rarest class
    below share / C). Given the n = k_rare + k_large labels of the two, k_rare is binomial with
    the rarest's share of the pair, at least q0 = share / (1 + share) when the ratio is at most
    1 / share (the conditional test of two Poisson rates): the p-value is the exact binomial
    tail P(X <= k_rare | n, q0) (:func:`binomial_cdf`). A class never seen has k 0."""
    c = np.array(list(counts) + [0] * max(0, classes - len(counts)), dtype=np.float64)
    total = float(c.sum())
    rare, large = int(np.argmin(c)), int(np.argmax(c))
    k, top = int(c[rare]), int(c[large])
    q0 = share / (1.0 + share)
    return {"rarest_class": rare, "rarest_count": k, "largest_class": large,
            "largest_count": top, "labels": int(total),
            "imbalance_ratio": top / k if k else math.inf,
            "rarest_share_over_balanced": k * classes / total if total else math.nan,
            "p_value": binomial_cdf(k, k + top, q0) if top else 1.0,
            "classes_below": [int(i) for i in np.flatnonzero(c < share * top)]}


@register_detector
class ClassImbalance(Detector):
    name = "class_imbalance"
    explains = SLOW
    # a training split whose class shares differ from the validation split's (prior shift)
    # makes the validation loss rise while the training loss falls, as the model grows
    # confident in the majority classes: no memorisation, this cause's consequence
    consequences = ("overfitting",)
    rule = ("the labels seen on sampled steps are imbalanced over the C outputs of the model: the "
            "rarest class holds less than min_share of the largest class's count (an imbalance "
            "ratio above 1 / min_share; a binomial test on the labels of the two: seeing so few "
            "of the rarest, were the ratio 1 / min_share, has probability below alpha / C), or, "
            "after min_labels labels, the label entropy is below ratio x ln(C); judged once the "
            "order test can speak (8 sampled batches, two classes seen) and finds the batches "
            "unordered")
    thresholds = {"min_share": 0.2, "alpha": 1e-4, "ratio": 0.7, "min_labels": 1000}
    fixes = ["rebalance: weight the loss by inverse class frequency or oversample rare classes",
             "report per-class metrics (balanced accuracy), not accuracy alone",
             "check the label column: a class missing from training cannot be learned"]
    severity = "warning"

    def check(self, state):
        t = state.targets
        C = state.output_width
        if t.get("kind") != "classes" or C < 2:
            return None
        # the counts describe the split only when the sampled batches are independent draws
        # from it: the order test must have been able to speak (min_samples batches, two
        # classes seen) and found no order (a sorted split's first batches are one class)
        order = Unshuffled()
        seen = order_evidence(state)
        if seen is None or seen["samples"] < order.t["min_samples"] or order.check(state):
            return None
        counts = list(t.get("counts", [])) + [0] * max(0, C - len(t.get("counts", [])))
        total = sum(counts)
        if not total or len(counts) > C:
            return None
        h, hmax = entropy(counts), math.log(C)
        rare = rare_class_test(counts, C, self.t["min_share"])
        share = max(counts) / total
        evidence = {"label_counts": counts, "entropy": h, "max_entropy": hmax, **rare}
        if rare["p_value"] < self.t["alpha"] / C:
            below = rare["classes_below"]
            return self.verdict(state, f"labels are imbalanced: {len(below)} of {C} classes hold "
                                f"less than {self.t['min_share']:g} x the largest class; the "
                                f"rarest, class {rare['rarest_class']}, has {rare['rarest_count']} "
                                f"of {total} labels ({rare['rarest_share_over_balanced']:.2f} x "
                                f"its balanced share 1/{C}), the largest, class "
                                f"{rare['largest_class']}, {rare['largest_count']} ({share:.0%}); "
                                f"binomial p = {_fmt(rare['p_value'])}", evidence=evidence)
        if total >= self.t["min_labels"] and h < self.t["ratio"] * hmax:
            return self.verdict(state, f"labels are imbalanced: entropy {h:.3f} < "
                                f"{self.t['ratio']:g} x ln({C}) = {hmax:.3f}; the largest class "
                                f"holds {share:.0%}", evidence=evidence)
        return None


@register_detector
class ClippingTooTight(Detector):
    name = "clipping_too_tight"
    explains = SLOW
    # updates scaled down on every step are small whatever the learning rate: the small update
    # ratios lr_too_low reads are this cause's trace, and raising the learning rate is no fix
    consequences = ("lr_too_low",)
    rule = ("gradient clipping by norm scales (nearly) every update down and the loss, after "
            "min_steps, is less than min_drop below the know-nothing reference. Clipping must be "
            "seen to happen, on at least 80 % of the last 10 samples (at least 5): a declared "
            "threshold that the total norm read before clipping exceeds ratio x, or that the "
            "total norm read after clipping equals (to 0.1 %); or, undeclared, the total norm "
            "pinned at one value (to 0.1 %) while the layers' shares of it move and no layer's "
            "norm repeats (clip_grad_norm_ leaves a total norm of exactly its threshold and "
            "rescales every layer by a factor that moves with each batch; a constant gradient, "
            "as a dead network whose gradients are never zeroed leaves, is not clipping)")
    thresholds = {"ratio": 10.0, "min_steps": 50, "min_drop": 0.1}
    fixes = ["raise the clipping threshold (gradient_clip_val, clip_grad_norm_'s max_norm) to "
             "about the typical total gradient norm, or clip only to cut spikes",
             "or raise the learning rate to compensate"]
    severity = "warning"

    def check(self, state):
        from .detectors import loss_drop, relative_to_reference
        from .detectors_gradients import clip_evidence

        d = loss_drop(state, int(self.t["min_steps"]))
        if d is None or -d[2] >= self.t["min_drop"]:
            return None
        clip = clip_evidence(state, ratio=self.t["ratio"])
        if clip is None:
            return None
        return self.verdict(state, f"gradients are clipped to {_fmt(clip['clip_value'])} on "
                            f"(nearly) every sample ({clip['how']}) and the loss is "
                            f"{relative_to_reference(d[2])} the know-nothing level",
                            evidence={**clip, "change": d[2], "onset_step": data_onset(state)})


@register_detector
class LrScheduleDecayed(Detector):
    name = "lr_schedule_decayed"
    explains = SLOW
    # a learning rate at ~0 moves nothing: the updates are tiny (lr_too_low's reading) and the
    # training loss stays where the schedule left it, high, which over_regularisation reads as
    # a penalty costing the fit; both act from the step the rate fell below the threshold
    consequences = ("lr_too_low", "over_regularisation")
    rule = ("the optimizer's learning rate has been below ratio x its first value for at least "
            "min_steps steps and min_fraction of the run, while the loss is above "
            "still_high x the know-nothing reference: the schedule stopped training early; or, "
            "at any loss level, below it for at least `early` of the run so far (the rate fell "
            "in the run's first half) while the model was learning when it froze: the mean "
            "loss of the second half of the steps before the rate fell below ratio x its first "
            "value more than z standard errors below the first half's (batch noise from "
            "successive differences / sqrt 2). No schedule that anneals at the end of training "
            "freezes half of it: a cosine is below 1e-3 x its start over its last 2 %, a linear "
            "decay over its last 0.1 %, the step decays of He et al. 2016 (x0.1 at 50 % and "
            "75 %) never; a schedule meant per epoch and stepped per batch gets there in tens "
            "of steps")
    thresholds = {"ratio": 1e-3, "min_steps": 20, "min_fraction": 0.1, "still_high": 0.5,
                  "early": 0.5, "z": 2.0}
    fixes = ["make the schedule decay over the whole run (cosine over max_steps, or step decay "
             "with fewer or smaller steps)", "check the schedule's step unit (per step vs per "
             "epoch)"]

    def check(self, state):
        ev = lr_decayed(state, self.t["ratio"], int(self.t["min_steps"]), self.t["min_fraction"])
        if ev is None:
            return None
        ref = loss_reference(state)
        losses = state.loss_array()
        now = float(np.mean(losses[-10:])) if len(losses) else math.nan
        since = ev["below_since_step"]
        if ref is not None and now > self.t["still_high"] * ref.value:
            return self.verdict(state, f"learning rate {_fmt(ev['current_lr'])} is below "
                                f"{self.t['ratio']:g} x its first value {_fmt(ev['initial_lr'])} "
                                f"since step {since}, with the loss still {_fmt(now)} "
                                f"(reference {_fmt(ref.value)})",
                                evidence={**ev, "recent_loss": now, "reference": ref.to_dict(),
                                          "onset_step": since})
        # at any loss level: frozen for half the run so far, while it was learning
        if state.step - since < self.t["early"] * (state.step + 1):
            return None
        fall = falling_before(losses, since)
        if fall is None or not fall["z"] > self.t["z"]:
            return None   # nothing was being learned when the rate fell: still_high's case
        return self.verdict(
            state, f"learning rate {_fmt(ev['current_lr'])} is below {self.t['ratio']:g} x its "
            f"first value {_fmt(ev['initial_lr'])} since step {since}, "
            f"{(state.step - since) / (state.step + 1):.0%} of the run so far, while the model "
            f"was learning: the loss fell {_fmt(fall['before'])} -> {_fmt(fall['recent'])} "
            f"between the halves of the {2 * fall['window']} steps before "
            f"({_fmt(fall['z'])} standard errors). The schedule froze it in the first half of "
            f"the run, its loss held at {_fmt(now)}"
            + (f" (know-nothing level {_fmt(ref.value)})" if ref is not None else ""),
            evidence={**ev, "recent_loss": now, "reference": ref.to_dict() if ref else None,
                      "fall_before": fall, "onset_step": since})


def falling_before(losses: np.ndarray, end: int) -> dict | None:
    """Whether the loss fell over the steps before ``end``: the mean of the last w = end // 2
    losses before it against the mean of the w before those, in standard errors of the
    difference (batch noise as std(successive differences) / sqrt 2, as
    detectors.loss_still_falling reads it). {'before', 'recent', 'z', 'window'}; None with
    fewer than 10 finite losses."""
    w = int(end) // 2
    if w < 5 or end > len(losses):
        return None
    part = np.asarray(losses[end - 2 * w:end], dtype=np.float64)
    if not np.all(np.isfinite(part)):
        return None
    before, recent = float(part[:w].mean()), float(part[w:].mean())
    spread = float(np.std(np.diff(part), ddof=1) / math.sqrt(2))
    se = spread * math.sqrt(2.0 / w)
    z = (before - recent) / se if se > 0 else (math.inf if before > recent else 0.0)
    return {"before": before, "recent": recent, "z": z, "window": w}


@register_detector
class SymmetricInit(Detector):
    name = "symmetric_init"
    explains = SLOW
    # identical units: a zero layer passes no gradient back and feeds zeros (dead units) on
    consequences = ("vanishing_gradients", "dying_relu", "saturated_activations", "lr_too_high",
                    "frozen_layers")
    rule = ("weight layers whose units all started identical (every row of the weight equal, and "
            "equal biases: a zero or constant initialisation) are still identical after 10 steps "
            "of training: each unit receives the same gradient as its neighbours, so the layer "
            "acts as one unit whatever its width (Goodfellow et al. 2016, sec. 8.4); a layer "
            "zero-initialised on purpose (ReZero, a zero head) becomes different at once")
    thresholds: dict[str, float] = {}
    fixes = ["initialise the weights randomly (He/Kaiming for ReLU, Glorot/Xavier for tanh): "
             "remove the nn.init.zeros_/constant_ calls, or keep PyTorch's default",
             "if a layer must start at zero (a residual branch, a head), keep the other layers "
             "random so that its units receive different gradients"]

    def check(self, state):
        still = state.symmetry.get("still")
        if not still:
            return None
        n = sum(1 for p in state.param_layers if math.isfinite(state.init_scale.get(p, math.nan)))
        return self.verdict(state, f"{len(still)} of {n} weight layers still have identical units "
                            f"at step {state.symmetry['step']} (zero or constant initialisation): "
                            + ", ".join(still[:5]), layers=still,
                            evidence={"identical_at_start": state.symmetry["initial"],
                                      "still_identical": still, "step": state.symmetry["step"],
                                      "onset_step": data_onset(state)})
