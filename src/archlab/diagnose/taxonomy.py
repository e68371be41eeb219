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
    clipping_binding,
    data_onset,
    lr_decayed,
    register_detector,
    small_batch_norm,
)


@register_detector
class UnscaledTargets(Detector):
    name = "unscaled_targets"
    consequences = AFTER_SCALE   # the targets' scale makes the loss and the updates as large
    rule = ("regression targets (float, shaped like the output, mean squared error) have a "
            "variance above max_variance or a mean above max_mean_over_std x their std: the "
            "loss and the gradients are as large as the targets, which looks like exploding "
            "gradients but is a preprocessing fault")
    thresholds = {"max_variance": TARGET_VARIANCE_LIMIT, "max_mean_over_std": 10.0}
    fixes = ["standardise the targets with training-split statistics (zero mean, unit "
             "variance) and undo it on the predictions",
             "or initialise the last layer's bias to the target mean"]

    def check(self, state):
        ref = loss_reference(state, fallback=False)
        if ref is None or ref.kind != "target_variance":
            return None
        t = state.targets
        mean = t["sum"] / t["n"] if t.get("n") else math.nan
        std = math.sqrt(ref.value)
        big_var = ref.value > self.t["max_variance"]
        offset = math.isfinite(mean) and std > 0 and abs(mean) > self.t["max_mean_over_std"] * std
        if not (big_var or offset):
            return None
        return self.verdict(state, f"regression targets are not scaled: variance {_fmt(ref.value)}"
                            f" (limit {self.t['max_variance']:g}), mean {_fmt(mean)}",
                            evidence={"target_variance": ref.value, "target_mean": mean,
                                      "target_absmax": t.get("absmax", math.nan),
                                      "source": ref.detail, "onset_step": data_onset(state)})


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
    # turn: saturated or dead units, and a loss that jumps at every change of class
    consequences = ("saturated_activations", "dying_relu", "lr_too_high", "exploding_gradients",
                    "class_imbalance")
    rule = ("training batches hold far fewer classes than random batches would: the median "
            "number of distinct classes per sampled batch is below ratio x the number expected "
            "for batches drawn at random from the classes seen so far (at least min_classes), "
            "over at least min_samples samples")
    thresholds = {"ratio": 0.5, "min_classes": 3, "min_samples": 8}
    fixes = ["shuffle the training data every epoch (DataLoader(shuffle=True))",
             "if the order is deliberate (curriculum), mix classes within each batch"]

    def check(self, state):
        t = state.targets
        if t.get("kind") != "classes":
            return None
        per_batch, sizes = t.get("batch_classes", []), t.get("batch_sizes", [])
        counts = np.array(t.get("counts", []), dtype=np.float64)
        classes = int((counts > 0).sum())
        if len(per_batch) < self.t["min_samples"] or classes < self.t["min_classes"]:
            return None
        p = counts[counts > 0] / counts.sum()
        b = float(np.median(sizes))
        expected = float(np.sum(1 - (1 - p) ** b))   # E[distinct classes] in a random batch
        seen = float(np.median(per_batch))
        if seen >= self.t["ratio"] * expected:
            return None
        return self.verdict(state, f"batches hold a median {seen:g} distinct classes; random "
                            f"batches of {b:g} would hold {expected:.1f} of the {classes} seen",
                            evidence={"median_classes_per_batch": seen,
                                      "expected_if_shuffled": expected, "classes_seen": classes,
                                      "onset_step": data_onset(state)})


@register_detector
class ClassImbalance(Detector):
    name = "class_imbalance"
    explains = SLOW
    rule = ("the labels seen on sampled steps are imbalanced: after min_labels labels, their "
            "entropy is below ratio x ln(C) for the C outputs of the model (unless the "
            "unshuffled-data rule explains the counts)")
    thresholds = {"ratio": 0.7, "min_labels": 1000}
    fixes = ["rebalance: weight the loss by inverse class frequency or oversample rare classes",
             "report per-class metrics (balanced accuracy), not accuracy alone",
             "check the label column: a class missing from training cannot be learned"]
    severity = "warning"

    def check(self, state):
        t = state.targets
        if t.get("kind") != "classes" or state.output_width < 2 or Unshuffled().check(state):
            return None
        counts = list(t.get("counts", [])) + [0] * max(0, state.output_width - len(t.get("counts", [])))
        total = sum(counts)
        if total < self.t["min_labels"] or len(counts) > state.output_width:
            return None
        h, hmax = entropy(counts), math.log(state.output_width)
        if h >= self.t["ratio"] * hmax:
            return None
        share = max(counts) / total
        return self.verdict(state, f"labels are imbalanced: entropy {h:.3f} < {self.t['ratio']:g} x "
                            f"ln({state.output_width}) = {hmax:.3f}; the largest class holds "
                            f"{share:.0%}", evidence={"label_counts": counts, "entropy": h,
                                                      "max_entropy": hmax})


@register_detector
class ClippingTooTight(Detector):
    name = "clipping_too_tight"
    explains = SLOW
    rule = ("gradient clipping scales (nearly) every update down and the loss, after min_steps, "
            "is less than min_drop below the know-nothing reference. Clipping must be seen to "
            "happen: a declared threshold that the total norm before clipping exceeds ratio x on "
            "most recent samples, or (the loop clipped before the monitor read the gradients) the "
            "total norm pinned at one value on 5 samples in a row while the layers' shares of it "
            "change and no layer's norm repeats (clipping rescales every layer by a factor that "
            "moves with each batch; a constant gradient, as a dead network whose gradients are "
            "never zeroed leaves, is not clipping)")
    thresholds = {"ratio": 10.0, "min_steps": 50, "min_drop": 0.1}
    fixes = ["raise the clipping threshold (gradient_clip_val) to about the typical total "
             "gradient norm, or clip only to cut spikes", "or raise the learning rate to "
             "compensate"]
    severity = "warning"

    def check(self, state):
        from .detectors import loss_drop, relative_to_reference

        d = loss_drop(state, int(self.t["min_steps"]))
        if d is None or -d[2] >= self.t["min_drop"]:
            return None
        clip = clipping_binding(state, ratio=self.t["ratio"])
        if clip is None:
            return None
        return self.verdict(state, f"gradients are clipped to {_fmt(clip['clip_value'])} on every "
                            f"sample ({clip['how']}) and the loss is {relative_to_reference(d[2])} the "
                            "know-nothing level", evidence={**clip, "change": d[2]})


@register_detector
class LrScheduleDecayed(Detector):
    name = "lr_schedule_decayed"
    explains = SLOW
    rule = ("the optimizer's learning rate has been below ratio x its first value for at least "
            "min_steps steps and min_fraction of the run, while the loss is above "
            "still_high x the know-nothing reference: the schedule stopped training early")
    thresholds = {"ratio": 1e-3, "min_steps": 20, "min_fraction": 0.1, "still_high": 0.5}
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
        if ref is None or not (now > self.t["still_high"] * ref.value):
            return None
        return self.verdict(state, f"learning rate {_fmt(ev['current_lr'])} is below "
                            f"{self.t['ratio']:g} x its first value {_fmt(ev['initial_lr'])} since "
                            f"step {ev['below_since_step']}, with the loss still {_fmt(now)} "
                            f"(reference {_fmt(ref.value)})",
                            evidence={**ev, "recent_loss": now, "reference": ref.to_dict()})


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
