"""Regularisation too strong (Humbatova et al. 2020, *Training / hyperparameters: suboptimal
regularisation*; *Model / layer properties: wrong dropout rate*).

A regulariser trades fit for generalisation. It is too strong when it costs the fit itself: the
model cannot get its *training* loss down because the regulariser, not the data, decides where
the weights go. Three visible forms, each read from what the quantities mean:

* **a weight penalty that dominates the updates** (the optimizer's ``weight_decay``, read from
  ``state.optimizer_settings``). Decoupled decay (AdamW) and SGD's L2 term move every weight by
  ``lr x wd`` of itself per step (SGD's momentum amplifies it by 1/(1-m)), a quantity known
  exactly; the measured update-to-weight ratio is the whole movement, so their quotient is the
  share of each step spent on the penalty. Adam's coupled L2 adds ``wd x w`` to the gradient
  before normalising it: its pull against the data is ``wd |w| / |g|`` (the recorded gradient
  is the loss's alone: the optimizer adds the term inside ``step()``). When the penalty's pull is
  at least ``pull`` of the data's while the training loss stays above ``still_high`` of the
  know-nothing level and has stopped falling, the penalty holds the weights where they are (a
  standard recipe, SGD at 0.1 with momentum 0.9 and decay 5e-4, pulls 5e-4 a step against
  updates of ~1e-3 early in training, while its loss still falls);
* **weights shrinking far below their initial scale** (any penalty, an L2 term written into
  the loss included, which no setting shows): the network's weight norm fell below ``shrink``
  x both the norm PyTorch's default initialisation gives its shapes and its own first norm,
  while the training loss stays above ``still_high`` of the know-nothing level and has stopped
  falling. Learning moves
  weights away from a random start; collapsing toward 0 while nothing is learned is a pull
  toward 0;
* **a train-mode penalty** (dropout, or any noise that acts only in training mode): the loss
  the model has in training mode at the end of an epoch stays above the loss the same model has
  in evaluation mode on the validation split on each of the last ``epochs`` validation passes
  after the first (whose training losses lag a model still learning fast), and on their mean
  by more than ``z`` standard errors and by more than ``penalty_share`` of what the evaluated
  model has learned (the know-nothing level minus its validation loss, at least ``learned`` of
  that level: a model that learned nothing has no share to give back), while the training
  loss stays above ``still_high`` of the know-nothing level. A healthy network's validation loss
  is at or above its training loss (the generalisation gap); a model that does better evaluated
  than trained on the same distribution is being held back by what training mode adds. Wrong
  labels in the training split alone also raise the training loss: when the label probe shows
  them (``label_noise``) this rule stays silent, and so it does while the batches come from one
  stretch of sorted data (``unshuffled_data``: no sample of the validation split's
  distribution) and while batch norm normalises over a handful of examples (its training-mode
  statistics are noise). The mean gap's standard error keeps the validation estimate's whole:
  the training batches are new each epoch, the validation examples the same every pass.

* **a drop rate above 1/2** (the module's own setting, read when the monitor attaches):
  inverted dropout multiplies a unit by m / (1 - p), m ~ Bernoulli(1 - p), a noise whose
  variance is p / (1 - p) x the unit's square: above its signal once p > 1/2 (0.5, the usual
  ceiling for hidden layers, is where they are equal). Such a rate is named with its measured
  cost: the training loss held above ``still_high`` and no longer falling, or, at any loss
  level, the train-mode test of the form above on its gap alone (the rate says where the gap
  comes from, so no share of what was learned is asked).

* **an L2 term in the loss that nobody reported** (a plain loop adding lambda x sum |W|^2):
  the first loss sits far above the know-nothing level, and either above what the model's
  outputs can cost (when one watched linear or convolution layer makes them), or it is
  accounted for by the term its gradients imply: the term adds 2 lambda W to each penalised
  weight's gradient, so the smallest |g| / (2 |W|) over the weight layers at the first sample
  (weights as read at attach) estimates lambda, and lambda x sum |W|^2 must explain the first
  loss up to a data term of at most ``excess`` x the know-nothing level (an output that is a
  sum of layers, a wide-and-deep model, has no output bound but has its gradients); with a
  weight layer since pulled below ``shrink`` x its default-init and first norms.

None of the others is claimed for a run that diverged (``detectors.divergence_onset``: a dead
network's weights are moved by the decay alone, and its training losses far exceed the
evaluated model's) or whose inputs or targets are far from unit scale (they make the training
losses spike): their own detectors name those causes.

The dead units, small gradients and small updates that a collapse toward 0 leaves behind are
reported as this cause's consequences (``Detector.consequences``).
"""

from __future__ import annotations

import math

import numpy as np

from .baselines import loss_reference
from .detectors import (
    INIT_SMALL,
    SLOW,
    Detector,
    _fmt,
    _median_rows,
    data_onset,
    divergence_onset,
    loss_still_falling,
    momentum_of,
    register_detector,
    scale_problems,
    small_batch_norm,
    validation_noise,
)

# the autograd ops that a linear or convolution layer's output carries (trailing digits cut):
# the model's output is then that watched layer's, whose mean and spread the monitor records
AFFINE_OUTPUT_OPS = ("AddmmBackward", "MmBackward", "ConvolutionBackward", "ViewBackward",
                     "UnsafeViewBackward", "MkldnnConvolutionBackward")
DECOUPLED = ("adamw",)                                  # decay applied to the weights directly
NORMALISED = ("adam", "nadam", "radam", "adamax", "rmsprop", "adagrad", "adadelta")


def decay_of(state) -> dict | None:
    """The optimizer's weight decay as {'type', 'weight_decay', 'form'}: 'decoupled' (AdamW),
    'sgd' (L2 added to the gradient, not normalised: the same movement as decoupled decay) or
    'coupled' (L2 added to the gradient of an optimizer that normalises it: Adam, RMSprop);
    None without settings or without decay."""
    opt = getattr(state, "optimizer_settings", None) or {}
    wd = opt.get("weight_decay")
    if not isinstance(wd, (int, float)) or not wd > 0:
        return None
    kind = str(opt.get("type", "")).lower()
    if kind in DECOUPLED or opt.get("decoupled_weight_decay"):
        form = "decoupled"
    elif kind == "sgd":
        form = "sgd"
    elif kind in NORMALISED:
        form = "coupled"
    else:
        return None   # an optimizer whose use of weight_decay is not known
    return {"type": opt.get("type"), "weight_decay": float(wd), "form": form}


def train_end_loss(state, row: int) -> tuple[float, float, int]:
    """(median, standard error, steps) of the training losses of the last quarter (at least 5
    steps) of the epoch that validation row ``row`` closes: the training-mode loss of the model
    that was then evaluated (an epoch's mean lags a model still learning). The median: a
    train-mode penalty raises every batch's loss, a spike only a few; its standard error is
    1.25 x a mean's, sd / sqrt(steps) (the large-sample ratio sqrt(pi / 2) for normal noise)."""
    v = state.validation
    losses = state.loss_array()
    end = v[row]["step"] + 1
    start = v[row - 1]["step"] + 1 if row > 0 else 0
    m = max(5, (end - start) // 4)
    part = losses[max(start, end - m):end]
    part = part[np.isfinite(part)]
    if part.size < 3:
        return math.nan, math.nan, int(part.size)
    return (float(np.median(part)), 1.25 * float(part.std(ddof=1) / math.sqrt(part.size)),
            int(part.size))


@register_detector
class OverRegularised(Detector):
    name = "over_regularisation"
    explains = SLOW
    # a collapse toward 0 leaves dead units, tiny gradients, tiny updates and units in one
    # flat piece behind
    consequences = ("dying_relu", "vanishing_gradients", "lr_too_low", "saturated_activations",
                    "frozen_layers")
    rule = ("regularisation costs the fit itself, while the recent training loss stays above "
            "still_high x the know-nothing reference, the run did not diverge and the inputs and "
            "targets are scaled (after min_steps steps; for (a) and (b) it has "
            "also stopped falling: the mean of the last max(20, a quarter of the run so far) losses not 2 "
            "standard errors below the window before): (a) the optimizer's "
            "weight decay pulls at least `pull` as hard as the data: lr x wd (x 1/(1-momentum) for "
            "SGD) over the measured update/weight ratio for AdamW's decoupled decay and SGD's L2, "
            "wd |w| / |g| for the coupled L2 of Adam-family optimizers (medians over the weight "
            "layers and the last `samples` samples); or (b) the network's weight norm fell below "
            "shrink x both its default-init norm and its first norm (any penalty, an L2 term in "
            "the loss included); or (c) on each of the last `epochs` validation passes the "
            "training-mode loss at the end of the epoch (the median of its last quarter) exceeds "
            "the evaluation-mode validation "
            "loss, on their mean by more than z standard errors and by more than penalty_share x "
            "(reference - validation loss), on passes whose validation loss is at least learned x "
            "the reference below it (the first pass, the warm-up, left out): dropout or another "
            "train-mode penalty, judged only when the model has a module that adds noise in "
            "training mode (dropout, drop-path, recurrent or attention dropout: found when the "
            "monitor attaches) and silent while label_noise, "
            "unshuffled_data or batchnorm_small_batch holds; or (d) a module drops with rate "
            "p > max_rate = 1/2 (inverted dropout multiplies a unit by Bernoulli(1 - p) / (1 - p): "
            "noise of variance p / (1 - p) x the unit's square, above its signal past 1/2) and "
            "what it costs is measured: the training loss stays above still_high x the reference "
            "and has stopped falling, or, at any loss level, the test of (c) on the train-mode "
            "gap alone (more than z standard errors on each of the last `epochs` passes; the "
            "penalty share is not asked, the rate says where the gap comes from); or, at any "
            "loss level, a known penalty (reported with the loss: HealthState.record_penalty, "
            "a LightningModule's health_penalty, archlab's L1; or SGD's or Adam's coupled L2 "
            "weight decay, wd/2 |w|^2 of the weight layers not feeding a batch norm) while the "
            "data term (the loss less the reported penalty) holds at least learned x the "
            "reference: (e) its elasticity sum(degree x penalty) / data term >= elasticity, with "
            "the data term no longer falling and the penalised weights' norm no longer growing "
            "over the last max(20, a quarter of the run) steps (at the balance d/ds [D(s w) + s^k P(w)] = 0 growing the weights by "
            "e lowers the data term by k P e), or (f) it pulled a weight layer below shrink x "
            "both its default-init norm and its first norm; or (g) a penalty in the loss that "
            "nobody reported: the first sampled loss exceeds excess x the most the model's "
            "outputs can cost (MSE: (sd o + sd y)^2 + (mean o - mean y)^2; cross entropy: ln C "
            "+ 2 sqrt(C) sd of the logits; the output made by a watched linear or convolution "
            "layer), or it exceeds excess x the reference and the L2 term its gradients imply "
            "accounts for it (an L2 term lambda |W|^2 adds 2 lambda W to the gradient: lambda^ = "
            "the smallest |g| / (2 |W|) over the weight layers at the first sample; lambda^ x "
            "sum |W|^2 at most (1 + implied_tol) x the first loss, leaving at most excess x the "
            "reference for the data term), a weight layer fell below shrink x its default-init "
            "and first norms, and the loss stays above still_high x the reference")
    thresholds = {"still_high": 0.5, "min_steps": 50, "pull": 0.5, "samples": 3,
                  "shrink": INIT_SMALL, "epochs": 3, "penalty_share": 1 / 3, "z": 2.0,
                  "learned": 0.1, "max_rate": 0.5, "elasticity": 1.0, "excess": 2.0,
                  "implied_tol": 0.1}
    fixes = ["lower the weight decay 10-100x (typical: 1e-4 to 5e-4 for SGD and Adam's L2, "
             "0.01 to 0.1 for AdamW), or lower the dropout rate (0.1-0.5)",
             "remove the hand-written L2 term from the loss, or scale it down",
             "regularise only once the model fits its training data: a model that cannot fit "
             "needs less regularisation, not more"]
    severity = "warning"

    def check(self, state):
        ref = loss_reference(state)
        losses = state.loss_array()
        if ref is None or not ref.value > 0 or len(losses) < self.t["min_steps"]:
            return None
        recent = losses[-max(10, len(losses) // 10):]
        if not np.all(np.isfinite(recent)):
            return None
        now = float(recent.mean())
        high = now > self.t["still_high"] * ref.value
        if not high and not self._high_rates(state) and not self._penalty_known(state):
            return None   # the model fits its training data: the regulariser does not stop it
        base = {"recent_loss": now, "reference": ref.to_dict(),
                "loss_over_reference": now / ref.value, "onset_step": data_onset(state)}
        if high and not state.nonfinite and not scale_problems(state):
            # (g) before the divergence test: a term in the loss that the outputs cannot make
            # lifts the loss above the divergence level with nothing diverging
            v = self._hidden_term(state, base, ref)
            if v is not None:
                return v
        if divergence_onset(state) is not None or scale_problems(state):
            # a run that diverged leaves weights that only the decay moves (no gradient gets
            # through a dead network) and training losses far above the evaluated model's;
            # inputs or targets far from unit scale make the training losses spike: their
            # detectors name those causes
            return None
        base = {"recent_loss": now, "reference": ref.to_dict(),
                "loss_over_reference": now / ref.value, "onset_step": data_onset(state)}
        if not high:   # (d), its measured cost: the train-mode gap alone, at any loss level;
            # (e), the penalty's measured share, at any loss level
            return (self._train_mode(state, base, ref.value, rates=self._high_rates(state))
                    or self._elastic(state, base, ref.value)
                    or self._collapse(state, base, ref.value))
        # a penalty on the weights that is too strong holds the loss where it is: while the loss
        # still falls the model is still fitting (a standard recipe, SGD 0.1 with momentum 0.9
        # and decay 5e-4, pulls 5e-4 a step against updates of ~1e-3 early in training)
        trend = loss_still_falling(state)
        if trend is not None and not trend["falling"]:
            v = self._decay(state, {**base, "trend": trend}) or self._shrink(
                state, {**base, "trend": trend})
            if v is not None:
                return v
            rates = self._high_rates(state)
            if rates:   # (d) with the loss held near the know-nothing level
                return self._rate_verdict(state, {**base, "trend": trend}, rates)
        return (self._elastic(state, base, ref.value) or self._collapse(state, base, ref.value)
                or self._train_mode(state, base, ref.value)
                or self._train_mode(state, base, ref.value, rates=self._high_rates(state)))

    # ------------------------------------------------- (e) the penalty's share -----------
    def _penalty_known(self, state) -> bool:
        """A penalty whose size is known: reported by the training code (state.penalty), or an
        L2 weight decay added to the gradient (SGD's, or the coupled L2 of Adam-family
        optimizers: the gradient of wd/2 x |w|^2)."""
        d = decay_of(state)
        return bool((state.penalty or {}).get("steps")) or (
            d is not None and d["form"] in ("sgd", "coupled"))

    def _decayed_layers(self, state) -> list[int]:
        """The weight layers whose norm the data loss depends on: learning, in the optimizer,
        not a batch norm and not feeding one (a layer whose output a batch norm normalises is
        scale-invariant: its norm costs no fit, and decay on it raises its effective learning
        rate instead)."""
        bn = set()
        for row in state.norm_batch:
            bn.update(row)
        names = state.param_layers
        out = []
        for i, p in enumerate(names):
            if not math.isfinite(state.init_scale.get(p, math.nan)) or state.frozen.get(p):
                continue
            if state.optimizer_params and not state.optimizer_params.get(p, True):
                continue
            if p in bn or (i + 1 < len(names) and names[i + 1] in bn):
                continue
            out.append(i)
        return out

    def _collapse(self, state, base, ref):
        """(f) A known penalty (reported with the loss, or the optimizer's weight decay of any
        form) has pulled a weight layer below `shrink` x both its default-initialisation norm
        and its own first norm, while the data term still holds at least `learned` of the
        know-nothing level. The balance of (e) cannot hold on such a layer: a layer whose
        output a batch norm normalises gives the data no say over its norm (the penalty
        shrinks it until batch norm's eps, or the effective learning rate 1/|w|^2, binds), and
        a layer pulled toward 0 passes less and less of its input on."""
        dec = decay_of(state)
        reported = bool((state.penalty or {}).get("steps"))
        if dec is None and not reported:
            return None
        losses = state.loss_array()
        n = len(losses)
        w = max(20, n // 4)
        if n < w or not np.all(np.isfinite(losses[-w:])):
            return None
        data = float(losses[-w:].mean())   # the data term (state.loss_array)
        if not data > self.t["learned"] * ref:
            return None
        hit = self._collapsed(state)
        s = self.t["shrink"]
        if not hit:
            return None
        what = (state.penalty.get("what") or "the reported penalty") if reported else ""
        if dec is not None:
            what = " and ".join(x for x in (what, f"{dec['type']} weight decay "
                                            f"{dec['weight_decay']:g}") if x)
        name, h = min(hit.items(), key=lambda kv: kv[1]["last"] / kv[1]["default_init"])
        return self.verdict(
            state, f"regularisation too strong: {what} pulled {len(hit)} weight layer(s) toward 0 "
            f"(worst {name}: norm {_fmt(h['first'])} -> {_fmt(h['last'])}, "
            f"{_fmt(h['last'] / h['default_init'])} x its default-init norm {_fmt(h['default_init'])}, "
            f"< {s:g}), while the data term stays at {_fmt(data / ref)} x the know-nothing level "
            f"(>= {self.t['learned']:g})", layers=list(hit),
            evidence={**base, "collapsed": hit, "data_term": data, "weight_decay": dec,
                      "penalty_reported": state.penalty.get("what") if reported else None},
            fixes=["lower the penalty's weight (the L1/L2 coefficient or the weight decay) by "
                   "10-100x"] + self.fixes[2:])

    def _output_bound(self, state, ref, row: int) -> float:
        """The most the data term can be on sample ``row``, from the model's outputs (the last
        watched layer: its mean and standard deviation over the batch): for MSE, mean (o - y)^2
        = var(o - y) + (mean o - mean y)^2 <= (sd o + sd y)^2 + (mean o - mean y)^2; for cross
        entropy over C outputs, logsumexp(z) - z_y <= ln C + max_j z_j - z_y <= ln C + 2 |z -
        mean z|, whose mean is <= ln C + 2 sqrt(C) sd (Jensen). nan when unknown."""
        if not state.act_layers or state.act_layers[-1] not in state.param_layers:
            return math.nan   # the last watched layer must be the weight layer that makes the output
        if not state.output_op or str(state.output_op[0]) not in AFFINE_OUTPUT_OPS:
            return math.nan   # something after it (a scale, a reshape of unknown kind) made it
        j = len(state.act_layers) - 1
        am, sd = state.array("act_mean"), state.array("act_std")
        if row >= am.shape[0] or j >= am.shape[1]:
            return math.nan
        m, s = float(am[row, j]), float(sd[row, j])
        if not (math.isfinite(m) and math.isfinite(s)):
            return math.nan
        t = state.targets
        if ref.kind == "target_variance" and t.get("kind") == "values" and t.get("n", 0) > 1:
            my = t["sum"] / t["n"]
            sy = math.sqrt(max(t["sumsq"] / t["n"] - my ** 2, 0.0))
            return (s + sy) ** 2 + (m - my) ** 2
        c = state.output_width
        if ref.kind in ("label_entropy", "chance") and c >= 2:
            return math.log(c) + 2 * math.sqrt(c) * s
        return math.nan

    def _implied_l2(self, state, ref) -> dict | None:
        """The L2 term in the loss that the first sample's gradients imply. A term lambda x
        sum |W|^2 adds 2 lambda W to each penalised weight's gradient, so on each such layer
        |g| / (2 |W|) is at least about lambda (the data term's gradient adds to it: roughly
        in quadrature); the smallest of these ratios over the weight layers that learn is the
        estimate lambda^ (at the first sample the weights are the ones read at attach, biases
        left out: state.init_weight_norm). The term it implies, lambda^ x sum |W|^2, must then
        account for the first loss: no more than it (to `implied_tol`) and leaving at most
        `excess` x the know-nothing reference for the data term, a start that a default
        initialisation's outputs make. None when it does not, or the gradients of the first
        sample are not known."""
        if not state.sample_steps:
            return None
        g = state.array("grad_norm")
        losses = state.loss_array()
        step0 = state.sample_steps[0]
        if g.shape[0] == 0 or step0 >= len(losses) or not math.isfinite(losses[step0]):
            return None
        if state.grad_read and not state.grad_read[0]:
            return None
        bn = set()
        for row in state.norm_batch:
            bn.update(row)
        per = {}
        for j, p in enumerate(state.param_layers):
            w = state.init_weight_norm.get(p, math.nan)
            if (j >= g.shape[1] or not (math.isfinite(w) and w > 0) or state.frozen.get(p)
                    or p in bn):
                continue
            if state.optimizer_params and not state.optimizer_params.get(p, True):
                continue
            if math.isfinite(g[0, j]) and g[0, j] > 0:
                per[p] = float(g[0, j]) / (2 * w)
        if len(per) < 2:
            return None   # one layer: its data gradient cannot be told from a penalty's
        lam = min(per.values())
        squares = sum(state.init_weight_norm[p] ** 2 for p in per)
        implied = lam * squares
        first = float(losses[step0])
        rest = first - implied
        if not (implied <= (1 + self.t["implied_tol"]) * first
                and rest <= self.t["excess"] * ref.value):
            return None
        return {"lambda": lam, "ratio_per_layer": per, "squared_weights": squares,
                "implied_penalty": implied, "first_loss": first, "rest": rest,
                "step": int(step0)}

    def _hidden_term(self, state, base, ref):
        """(g) A penalty written into the loss and not reported (an L2 term in a plain loop,
        in the validation loss too): the first sampled loss exceeds `excess` x the know-nothing
        level and either exceeds `excess` x the most the model's outputs can cost
        (_output_bound), or is accounted for by the L2 term its gradients imply
        (_implied_l2: an output that no watched layer makes alone, a wide-and-deep sum), a
        weight layer has since fallen below `shrink` x both its default-init and its first
        norm, and the loss stays above still_high x the know-nothing level. The part of the
        loss that the outputs cannot make is a term on something else, and it fell as the
        weights shrank: a penalty on them, which holds the loss at the know-nothing level."""
        if (state.penalty or {}).get("steps") or not state.sample_steps:
            return None
        losses = state.loss_array()
        if base["loss_over_reference"] < self.t["still_high"]:
            return None
        step0 = state.sample_steps[0]
        if step0 >= len(losses) or not math.isfinite(losses[step0]):
            return None
        bound = self._output_bound(state, ref, 0)
        implied = None
        if not (bound > 0 and losses[step0] > self.t["excess"] * bound):
            if not losses[step0] > self.t["excess"] * ref.value:
                return None   # the loss starts where a data term can: nothing beside it to see
            implied = self._implied_l2(state, ref)
            if implied is None:
                return None
        hit = self._collapsed(state)
        if not hit:
            return None
        name, h = min(hit.items(), key=lambda kv: kv[1]["last"] / kv[1]["default_init"])
        shrunk = (f"pulled {len(hit)} weight layer(s) toward 0 (worst {name}: norm "
                  f"{_fmt(h['first'])} -> {_fmt(h['last'])}, "
                  f"{_fmt(h['last'] / h['default_init'])} x its default-init norm), while the "
                  f"loss stays at {_fmt(base['loss_over_reference'])} x the know-nothing level")
        if implied is None:
            return self.verdict(
                state, f"regularisation too strong: the loss holds a term the outputs do not make "
                f"(first loss {_fmt(float(losses[step0]))}, > {self.t['excess']:g} x the "
                f"{_fmt(bound)} the model's outputs can cost at most), a penalty in the loss that "
                + shrunk, layers=list(hit),
                evidence={**base, "first_loss": float(losses[step0]), "output_bound": bound,
                          "collapsed": hit},
                fixes=["remove the hand-written L2/L1 term from the loss, or scale it down 10-100x "
                       "(and report it: record_penalty, or health_penalty on a LightningModule)"]
                + self.fixes[2:])
        lam = implied["lambda"]
        return self.verdict(
            state, f"regularisation too strong: an L2 term in the loss that nobody reported; the "
            f"first sample's gradients carry 2 lambda W with lambda ~ {_fmt(lam)} (the smallest "
            f"|g| / (2 |W|) over {len(implied['ratio_per_layer'])} weight layers), and "
            f"lambda x sum |W|^2 = {_fmt(implied['implied_penalty'])} accounts for the first loss "
            f"{_fmt(implied['first_loss'])} ({_fmt(implied['first_loss'] / ref.value)} x the "
            f"know-nothing level {_fmt(ref.value)}; the rest, {_fmt(implied['rest'])}, is the "
            f"data term's start); a penalty that " + shrunk, layers=list(hit),
            evidence={**base, "first_loss": implied["first_loss"], "implied_l2": implied,
                      "collapsed": hit},
            fixes=[f"remove the hand-written L2 term from the loss, or scale it down 10-100x: its "
                   f"coefficient, read from the gradients, is about {_fmt(lam)} (the weight decay "
                   f"{_fmt(2 * lam)}; 1e-4 to 5e-4 is usual), and report it (record_penalty, or "
                   "health_penalty on a LightningModule)"] + self.fixes[2:])

    def _collapsed(self, state) -> dict:
        """The weight layers (learning, in the optimizer, not batch norm) whose last norm is
        below `shrink` x both their default-init norm and their first norm."""
        wn = state.array("weight_norm")
        if wn.shape[0] < 2:
            return {}
        bn = set()
        for row in state.norm_batch:
            bn.update(row)
        s = self.t["shrink"]
        hit = {}
        for i, p in enumerate(state.param_layers):
            scale = state.init_scale.get(p, math.nan)
            if not math.isfinite(scale) or state.frozen.get(p) or p in bn or i >= wn.shape[1]:
                continue
            if state.optimizer_params and not state.optimizer_params.get(p, True):
                continue
            first, last = float(wn[0, i]), float(wn[-1, i])
            if scale > 0 and first > 0 and last < s * scale and last < s * first:
                hit[p] = {"first": first, "last": last, "default_init": scale}
        return hit

    def _scale_trend(self, state, since: int) -> dict | None:
        """The norm of the penalised weight layers (see _decayed_layers) on the last sample
        before step ``since`` and on the last sample: {'before', 'last', 'layers'}; None
        without a sample on each side."""
        cols = self._decayed_layers(state)
        steps = state.sample_steps
        wn = state.array("weight_norm")
        if not cols or wn.shape[0] < 2 or wn.shape[0] != len(steps):
            return None
        j = int(np.searchsorted(np.asarray(steps), since)) - 1
        if j < 0 or j >= wn.shape[0] - 1:
            return None
        def norm(r):
            return float(np.sqrt(np.nansum(wn[r, cols] ** 2)))

        return {"before": norm(j), "before_step": int(steps[j]), "last": norm(-1),
                "layers": [state.param_layers[i] for i in cols]}

    def _elastic(self, state, base, ref):
        """(e) The penalty's share. Where the data term D and a penalty P of degree k (P(s w) =
        s^k P(w): 1 for L1, 2 for L2) balance, d/ds [D(s w) + s^k P(w)] = 0 at s = 1: growing
        every weight by a fraction e would lower D by k P e to first order. The ratio k P / D
        is the data term's elasticity to the weights' scale: >= `elasticity` (1: the data
        term would fall by at least the fraction the weights grew) where the balance holds (D
        has stopped falling, loss_still_falling's test, and the penalised weights' norm has
        stopped growing, over the last max(20, a quarter of the run) steps) and D still holds at least `learned` of the know-nothing level, the
        penalty, not the data, decides where the weights stop. A healthy regulariser leaves a small ratio: its
        pull is small beside what the data still asks."""
        losses = state.loss_array()
        n = len(losses)
        w = max(20, n // 4)
        if n < 2 * w or not np.all(np.isfinite(losses[-2 * w:])):
            return None
        terms = []
        pen = state.penalty or {}
        if pen.get("steps"):   # the loss array is already the data term (state.loss_array)
            steps = np.asarray(pen["steps"], dtype=np.int64)
            vals = np.asarray([float(v) for v in pen["values"]])
            keep = (steps >= n - w) & (steps < n) & np.isfinite(vals)
            if keep.sum() >= min(10, w):
                terms.append({"what": pen.get("what") or "the reported penalty",
                              "degree": float(pen.get("degree", 2)),
                              "value": float(vals[keep].mean())})
        dec = decay_of(state)
        if dec is not None and dec["form"] in ("sgd", "coupled"):
            cols = self._decayed_layers(state)
            wn = _median_rows(state.array("weight_norm", int(self.t["samples"])))
            sq = [float(wn[i]) ** 2 for i in cols if i < wn.size and math.isfinite(wn[i])]
            if sq:
                terms.append({"what": f"{dec['type']}'s L2 weight decay {dec['weight_decay']:g} "
                              "(wd/2 x |w|^2 of the weight layers it pulls)",
                              "degree": 2.0, "value": 0.5 * dec["weight_decay"] * sum(sq)})
        if not terms:
            return None
        trend = loss_still_falling(state, w)
        data = float(losses[-w:].mean())
        if trend is None or trend["falling"]:
            # still fitting: not at the balance the ratio reads (a wide layer's random start
            # shrinks under a usual decay long before the data and the penalty balance)
            return None
        # the balance is along the weights' scale too: where it holds, the penalised weights'
        # norm has stopped growing (still growing: the data outweighs the penalty there)
        scale = self._scale_trend(state, n - w)
        if scale is None or scale["last"] > scale["before"]:
            return None
        if not data > self.t["learned"] * ref:
            return None    # the model fits its training data: little left for a penalty to cost
        pull = sum(t["degree"] * t["value"] for t in terms)
        ratio = pull / data
        if not ratio >= self.t["elasticity"]:
            return None
        total = sum(t["value"] for t in terms)
        what = " and ".join(f"{t['what']} = {_fmt(t['value'])}" for t in terms)
        return self.verdict(
            state, f"regularisation too strong: {what}, {total / (total + data):.0%} of the "
            f"objective, against a data term of {_fmt(data)} ({_fmt(data / ref)} x the know-nothing "
            f"level) that has stopped falling, while the penalised weights' norm has stopped "
            f"growing ({_fmt(scale['before'])} "
            f"at step {scale['before_step']} -> {_fmt(scale['last'])}): the data term's elasticity "
            "to the weights' scale, "
            f"sum(degree x penalty) / data = {_fmt(ratio)} (>= {self.t['elasticity']:g}: growing "
            "the weights 1 % would lower the data term by more than 1 %, the penalty holds them "
            "back)", layers=scale["layers"], evidence={**base, "penalties": terms, "data_term": data, "trend": trend,
                              "penalised_norm": scale,
                              "elasticity": ratio, "penalty_share": total / (total + data)},
            fixes=["lower the penalty's weight (the L1/L2 coefficient or the weight decay) by "
                   "10-100x"] + self.fixes[2:])

    # ------------------------------------------------------- (d) a drop rate above 1/2 ----
    def _high_rates(self, state) -> dict:
        """The modules whose training-mode drop rate p exceeds max_rate (1/2): inverted dropout
        multiplies a unit by m / (1 - p), m ~ Bernoulli(1 - p), a noise of variance p / (1 - p)
        x the unit's square, more than its signal once p > 1/2."""
        noise = getattr(state, "train_mode_noise", None) or {}
        return {k: float(r) for k, r in noise.items() if float(r) > self.t["max_rate"]}

    def _rate_verdict(self, state, base, rates):
        p = max(rates.values())
        return self.verdict(
            state, f"regularisation too strong: dropout rate {p:g} (> {self.t['max_rate']:g}: the "
            f"training-mode noise of each unit, variance p / (1 - p) = {_fmt(p / (1 - p))} x its "
            f"signal, exceeds the signal) in {', '.join(list(rates)[:5])}, while the training loss "
            f"stays at {_fmt(base['loss_over_reference'])} x the know-nothing level and has stopped "
            "falling", layers=list(rates), evidence={**base, "drop_rates": rates},
            fixes=["lower the dropout rate (0.1-0.5; 0.5 is the usual ceiling for hidden "
                   "layers)"] + self.fixes[2:])

    # ---------------------------------------------------------------- (a) weight decay ----
    def _decay(self, state, base):
        d = decay_of(state)
        if d is None or not state.lr:
            return None
        n = int(self.t["samples"])
        u = _median_rows(state.array("update_ratio", n))
        w = _median_rows(state.array("weight_norm", n))
        g = _median_rows(state.array("grad_norm", n))
        lr = float(state.lr[-1])
        if not (math.isfinite(lr) and lr > 0) or u.size == 0:
            return None
        amp = 1.0
        if d["form"] == "sgd":
            mom = momentum_of(state)
            amp = mom["amplification"] if mom else 1.0
        per = {}
        for i, p in enumerate(state.param_layers):
            scale = state.init_scale.get(p, math.nan)
            if not math.isfinite(scale) or state.frozen.get(p) or i >= u.size:
                continue   # weight layers that learn (norm scales and biases are often not decayed)
            if state.optimizer_params and not state.optimizer_params.get(p, True):
                continue
            if d["form"] == "coupled":
                if g[i] > 0 and w[i] > 0:
                    per[p] = d["weight_decay"] * w[i] / g[i]
            elif u[i] > 0:
                per[p] = lr * d["weight_decay"] * amp / u[i]
        vals = [v for v in per.values() if math.isfinite(v)]
        if not vals:
            return None
        pull = float(np.median(vals))
        if pull < self.t["pull"]:
            return None
        if d["form"] == "coupled":
            how = (f"{d['type']}'s L2 weight decay {d['weight_decay']:g} adds wd x w to the gradient: "
                   f"wd |w| / |g| = {_fmt(pull)} (median over the weight layers)")
        else:
            step = lr * d["weight_decay"] * amp
            how = (f"{d['type']} weight decay {d['weight_decay']:g} at lr {_fmt(lr)} shrinks every "
                   f"weight by {_fmt(step)} of itself per step"
                   + (f" (x{_fmt(amp)} by momentum)" if amp > 1 else "")
                   + f", {_fmt(pull)} x the measured update/weight ratio (median over the weight "
                   "layers)")
        return self.verdict(
            state, f"regularisation too strong: {how}, >= {self.t['pull']:g}, while the training "
            f"loss stays at {_fmt(base['loss_over_reference'])} x the know-nothing level: the "
            "penalty, not the data, decides where the weights go", layers=list(per),
            evidence={**base, "weight_decay": d, "lr": lr, "pull": pull, "pull_per_layer": per},
            fixes=[f"lower the weight decay from {d['weight_decay']:g} by 10-100x (typical: 1e-4 to "
                   "5e-4 for SGD and Adam's L2, 0.01 to 0.1 for AdamW)"] + self.fixes[2:])

    # ------------------------------------------------------------------- (b) shrinking ----
    def _shrink(self, state, base):
        w = state.array("weight_norm")
        if w.shape[0] < 2:
            return None
        cols = [i for i, p in enumerate(state.param_layers)
                if math.isfinite(state.init_scale.get(p, math.nan)) and not state.frozen.get(p)]
        if not cols:
            return None
        scale = math.sqrt(sum(state.init_scale[state.param_layers[i]] ** 2 for i in cols))
        first = float(np.sqrt(np.nansum(w[0, cols] ** 2)))
        last = float(np.sqrt(np.nansum(w[-1, cols] ** 2)))
        s = self.t["shrink"]
        if not (scale > 0 and first > 0 and last < s * scale and last < s * first):
            return None
        return self.verdict(
            state, f"regularisation too strong: the weights collapsed toward 0, norm {_fmt(first)} "
            f"-> {_fmt(last)} ({_fmt(last / scale)} x the {_fmt(scale)} a default initialisation "
            f"gives these layers, < {s:g}), while the training loss stays at "
            f"{_fmt(base['loss_over_reference'])} x the know-nothing level: a penalty on the "
            "weights (weight decay, or an L2 term in the loss) outweighs the data",
            layers=[state.param_layers[i] for i in cols],
            evidence={**base, "first_weight_norm": first, "weight_norm": last,
                      "default_init_norm": scale, "weight_decay": decay_of(state)},
            fixes=["lower the weight decay, or the weight of the L2 term added to the loss, by "
                   "10-100x"] + self.fixes[2:])

    # ------------------------------------------------------------------ (c) train mode ----
    def _train_mode(self, state, base, ref, rates=None):
        """(c); with ``rates`` (the modules dropping more than max_rate, (d)) the significant
        train-mode gap alone is the cost: the penalty share and the loss level are not asked."""
        if rates is not None and not rates:
            return None
        k = int(self.t["epochs"])
        v = state.validation
        if len(v) < k:
            return None
        noise = getattr(state, "train_mode_noise", None)
        if noise is not None and not noise:
            # no module of the model adds noise in training mode: a training loss above the
            # validation loss comes from somewhere else (training labels noisier than the
            # validation labels, a split that differs, a model still moving within the epoch)
            return None
        if small_batch_norm(state):
            return None   # batch norm over a handful of examples: its detector reports it
        from .detectors import DETECTORS
        for other in ("label_noise", "unshuffled_data"):
            # wrong training labels raise the training loss; batches drawn from one stretch of
            # sorted data are no sample of the distribution the validation split is: their
            # detectors name those causes
            kind = DETECTORS.get(other)
            if kind is not None and kind().check(state) is not None:
                return None
        se_val, how = validation_noise(state)
        if not math.isfinite(se_val):
            return None
        if len(v) < k + 1:
            return None   # the first pass ends the warm-up: its training losses lag the model most
        rows = []
        for r in range(len(v) - k, len(v)):
            train, se_train, m = train_end_loss(state, r)
            val = float(v[r]["val_loss"])
            if not (math.isfinite(train) and math.isfinite(val) and val < (1 - self.t["learned"]) * ref):
                return None   # the evaluated model learned (almost) nothing: no share to give back
            gap, se = train - val, math.hypot(se_train, se_val)
            if not gap > 0:
                return None   # the evaluated model does worse somewhere: no persistent penalty
            rows.append({"epoch": v[r]["epoch"], "train_mode_loss": train, "val_loss": val,
                         "gap": gap, "standard_error": se, "train_standard_error": se_train,
                         "share_of_learned": gap / (ref - val), "train_steps": m})
        # pooled over the passes: the mean gap against its standard error, the mean share. The
        # training batches are new each epoch, so their noise averages over the passes; the
        # validation examples are the same every pass, so their sampling noise does not (a
        # validation split that happens to be easier stays easier)
        gap = float(np.mean([r["gap"] for r in rows]))
        se = math.sqrt(se_val ** 2 + sum(r["train_standard_error"] ** 2 for r in rows)
                       / len(rows) ** 2)
        share = float(np.mean([r["share_of_learned"] for r in rows]))
        if not (gap > self.t["z"] * se and (rates or share > self.t["penalty_share"])):
            return None
        last = rows[-1]
        if rates:
            p = max(rates.values())
            return self.verdict(
                state, f"regularisation too strong: dropout rate {p:g} (> {self.t['max_rate']:g}: "
                f"each unit's training-mode noise, variance p / (1 - p) = {_fmt(p / (1 - p))} x its "
                f"signal, exceeds the signal) in {', '.join(list(rates)[:5])}, and on each of the "
                f"last {k} validation passes the training-mode loss exceeds the evaluation-mode "
                f"validation loss ({_fmt(last['train_mode_loss'])} vs {_fmt(last['val_loss'])} at "
                f"epoch {last['epoch']}; mean gap {_fmt(gap)}, {_fmt(gap / se)} standard errors)",
                layers=list(rates), evidence={**base, "drop_rates": rates, "passes": rows,
                                              "mean_gap": gap, "standard_error": se,
                                              "mean_share_of_learned": share,
                                              "standard_error_from": how},
                fixes=["lower the dropout rate (0.1-0.5; 0.5 is the usual ceiling for hidden "
                       "layers)"] + self.fixes[2:])
        return self.verdict(
            state, f"regularisation too strong in training mode (dropout or noise that acts only "
            f"while training): on each of the last {k} validation passes the model's training-mode "
            f"loss exceeds its evaluation-mode validation loss ({_fmt(last['train_mode_loss'])} vs "
            f"{_fmt(last['val_loss'])} at epoch {last['epoch']}; mean gap {_fmt(gap)}, "
            f"{_fmt(gap / se)} standard errors), giving back {share:.0%} of what the evaluated "
            f"model learned (> {self.t['penalty_share']:.0%}), while the training loss stays at "
            f"{_fmt(base['loss_over_reference'])} x the know-nothing level",
            evidence={**base, "passes": rows, "mean_gap": gap, "standard_error": se,
                      "mean_share_of_learned": share, "standard_error_from": how},
            fixes=["lower the dropout rate (0.1-0.5; 0.5 is the usual ceiling for hidden layers), "
                   "or weaken the training-only noise or augmentation",
                   "check that model.train()/model.eval() are set as intended"] + self.fixes[2:])
