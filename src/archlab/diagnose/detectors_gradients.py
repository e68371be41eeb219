"""Gradients that never reach the optimizer step: cleared between backward and step, or never
computed.

The fault (Humbatova et al. 2020, *Training / optimiser misuse*; DeepDiagnosis' *unchanged
weights*): ``optimizer.zero_grad()`` placed between ``loss.backward()`` and ``optimizer.step()``,
``backward()`` not called before the step, or a loss that does not depend on the parameters the
optimizer holds. The optimizer then steps on no gradient (PyTorch skips a parameter whose
``.grad`` is None; a zero gradient gives a zero update), the weights never change, and the loss
stays where it started. Only its symptom (``loss_not_decreasing``) used to be reported.

What the monitor sees, read where the optimizer reads it (``before_optimizer_step``, after
backward and any clipping): every parameter that should learn has ``.grad`` None or exactly 0.
That is impossible in a working loop: the output layer's bias alone receives the mean of the
loss gradient over the batch, which is 0 only at an exact minimum of the loss (ruled out by the
loss level) or with a loss that does not depend on the output. A dead ReLU network, a
zero-initialised one or a vanishing gradient still leaves a gradient in the last layer, so they
are not mistaken for it (``vanishing_gradients`` and ``dying_relu`` report those).
"""

from __future__ import annotations

import math

import numpy as np

from .baselines import loss_reference
from .detectors import SLOW, Detector, _fmt, register_detector, stepped_layers

PINNED = 1e-3   # relative spread of a total norm that clipping pinned (see clip_evidence)
# The most the total's spread may be of its parts' for a common rescaling to be inferred (see
# compensation): a tenth in standard deviation, a hundredth in variance. Without a rescaling
# var(sum of the layers' squared norms) = sum of their variances + 2 x their covariances, so a
# total this much steadier than its parts needs the parts to cancel each other as if
# correlated below -0.99 (two layers of equal spread: 1 + rho < 0.01); clip_grad_norm_
# cancels them exactly (the total is its threshold to float rounding, 1e-6 relative, the
# layers moving by the batch's percents), chance does not over a handful of samples.
COMPENSATED = 0.1

# Output ops with a flat piece: their derivative is exactly 0 on part of their input range
# (ReLU below 0, relu6 / hardtanh / clamp outside their bounds, hardsigmoid outside [-3, 3],
# threshold below its cut). A batch whose outputs all sit there sends back no gradient to any
# layer before the op: every parameter's .grad is exactly 0 (autograd fills zeros, not None,
# for parameters the graph reaches), with the loop intact. Sigmoid and tanh are left out: their
# derivative is 0 only where float32 rounds it (|z| past ~17 and ~9), which a watched module's
# output shows (FLOORS) and an op's name does not.
FLAT_OUTPUT_OPS = ("ReluBackward", "HardtanhBackward", "ClampBackward", "ClampMinBackward",
                   "ClampMaxBackward", "HardsigmoidBackward", "ThresholdBackward")
# the values where a watched activation kind (monitor.DEAD_KINDS, SATURATING_KINDS) has
# derivative 0: an output at one of them on every watched example (mean there, spread 0) passes
# no gradient back (a sigmoid at exactly 1.0 in float32 has s (1 - s) = 0)
FLOORS = {"relu": (0.0,), "relu6": (0.0, 6.0), "sigmoid": (0.0, 1.0), "hardsigmoid": (0.0, 1.0),
          "tanh": (-1.0, 1.0), "hardtanh": (-1.0, 1.0)}


def compensation(layers: np.ndarray) -> float:
    """How much the total squared gradient norm moves, over how much its layers' squared norms
    move in quadrature: std(sum_l g_l^2) / sqrt(sum_l var(g_l^2)) over the rows (samples) of
    ``layers`` (samples x layers: the layers' gradient norms).

    Clipping by norm rescales every layer by the common factor c / |g|, so the layers' squared
    norms compensate each other and their sum stays at c^2: the ratio is ~0 (rounding). A
    gradient whose norm is steady in every layer on its own is not rescaled: the total moves as
    much as its parts, ratio ~1 (independent parts) or more (parts moving together). The case
    it tells apart: a term of constant norm that dominates every layer's gradient, an L1
    penalty's lambda sign(w) (norm lambda sqrt(n) in a layer of n non-zero weights, whatever
    the batch), pins the total to a fraction of a percent as clipping does, while the data
    term's small share still moves the layers' shares; its total moves as its parts do. nan
    when the parts do not move at all (a constant gradient: nothing to compare)."""
    sq = layers.astype(np.float64) ** 2
    parts = math.sqrt(float(np.sum(np.var(sq, axis=0))))
    if not parts > 0:
        return math.nan
    return float(np.std(sq.sum(axis=1))) / parts


def clip_evidence(state, samples: int = 5, window: int = 10, ratio: float = 10.0,
                  most: float = 0.8) -> dict | None:
    """Evidence that clipping by norm rescales (nearly) every update, read from the gradients.

    ``torch.nn.utils.clip_grad_norm_(params, c)`` multiplies every gradient by
    c / (|g| + 1e-6) when the total norm |g| exceeds c, so the total norm it leaves is c, to
    1e-6 / |g| relative, while each layer's norm keeps moving with the batch. On at least
    ``most`` of the last ``window`` samples whose gradients were read (at least ``samples``):

    * a declared threshold c read *before* clipping (Lightning's hook order): the total norm
      is above ``ratio`` x c: clipping divides the update by more than ``ratio``;
    * a declared threshold read *after* clipping (a plain loop calls the recorder after
      ``clip_grad_norm_``): the total norm equals c (to PINNED relative): clipping binds on
      each of them;
    * no declared threshold: the total norm equals one value, its largest over the window (to
      PINNED relative; the samples below it are steps where clipping did not bind), while the
      layers' shares of it move (by more than 1e-3) and no layer's non-zero norm repeats to
      float precision (a constant gradient, as a dead network whose gradients are never zeroed
      leaves, pins every layer too: that is not clipping), and the layers' squared norms
      compensate each other: the total's spread is below COMPENSATED x theirs in quadrature
      (:func:`compensation`; a term of constant norm in every layer, an L1 penalty's gradient
      dominating the data term's, pins the total as much as its parts and is not clipping).

    Batch gradients vary by tens of percent from batch to batch, so a total norm that repeats
    to 0.1 % on most samples is a rescaling, not chance. None when none of these holds."""
    read = state.grad_read
    g_all = state.array("grad_norm")
    rows = []   # the last `window` samples read before a step that have a gradient, newest
    i = g_all.shape[0] - 1   # first: walked back from the end, not over the whole run
    while i >= 0 and len(rows) < window:
        if (i >= len(read) or read[i]) and np.any(~np.isnan(g_all[i])):
            rows.append(i)
        i -= 1
    rows.reverse()
    if len(rows) < samples:
        return None
    g = g_all[rows]
    total = np.sqrt(np.nansum(g ** 2, axis=1))
    if not np.all(np.isfinite(total)) or not total.max() > 0:
        return None
    steps = [state.sample_steps[i] for i in rows] if len(state.sample_steps) >= g_all.shape[0] else []
    clip = state.clip.get("value") if state.clip else None
    base = {"samples": len(rows), "steps": steps, "total_norm": total.tolist()}
    if clip:
        c = float(clip)
        over = total / c
        if np.mean(over > ratio) >= most:
            return {**base, "clip_value": c, "median_norm_over_clip": float(np.median(over)),
                    "how": f"declared threshold; the total norm before clipping is a median "
                           f"{_fmt(float(np.median(over)))} x it"}
        at = np.abs(total - c) <= PINNED * c
        if np.mean(at) >= most:
            return {**base, "clip_value": c, "fraction_at_clip": float(np.mean(at)),
                    "how": f"declared threshold; the total norm read after clipping equals it on "
                           f"{int(at.sum())} of {len(rows)} samples: clipping binds on each"}
        return None
    top = float(total.max())
    pinned = np.abs(total - top) <= PINNED * top
    if np.mean(pinned) < most:
        return None
    live = g[pinned][:, ~np.any(np.isnan(g[pinned]), axis=0)]
    if live.shape[1] < 2:
        return None   # one layer: its share is always 1, rescaling cannot be told from a constant
    hi, lo = live.max(axis=0), live.min(axis=0)
    if np.any((hi > 0) & (hi - lo <= 1e-6 * hi)):
        return None   # a layer's gradient repeats: nothing rescales it (a constant gradient)
    shares = live / total[pinned][:, None]
    if not np.any(shares.max(axis=0) - shares.min(axis=0) > 1e-3):
        return None
    comp = compensation(live)
    if not comp < COMPENSATED:
        return None   # the total moves as its parts do: nothing rescales them (see compensation)
    return {**base, "clip_value": top, "fraction_at_clip": float(np.mean(pinned)),
            "total_over_parts_spread": comp,
            "how": f"no declared threshold; the total gradient norm equals {_fmt(top)} (to "
                   f"{PINNED:g}) on {int(pinned.sum())} of {len(rows)} samples while the layers' "
                   f"norms move and compensate each other (the total's spread is {_fmt(comp)} x "
                   "theirs): the loop clips by norm before the monitor reads the gradients"}



def dead_output(state, rows: list[int], learn: list[int]) -> dict:
    """What, in the model itself, explains a gradient of exactly 0 on every learning layer on
    the samples ``rows``: the gradient passed through an activation with derivative 0 after the
    last of them, and every output of the batch sat there. Read two ways:

    * a watched activation after every learning layer (forward order, the monitor's activation
      layers) whose output on the sample is one of its FLOORS on every watched example (mean
      at it, spread 0): a ReLU dead on the whole batch, a sigmoid pinned at 1.0;
    * the op that made the model's output has a flat piece (FLAT_OUTPUT_OPS) and no watched
      activation after the learning layers shows a live output on that sample (a functional
      ``F.relu`` on the output is not a module the monitor watches).

    A watched activation after the learning layers whose output is not pinned on a sample
    refutes it there (the live outputs pass their gradient back). {'steps', 'how'} when every
    row is explained, empty otherwise."""
    order = {name: i for i, name in enumerate(state.act_layers)}
    last = max((order.get(state.param_layers[j], -1) for j in learn), default=-1)
    after = [k for k, name in enumerate(state.act_layers)
             if k > last >= 0 and state.act_kinds.get(name) in FLOORS]
    mean, sd = state.array("act_mean"), state.array("act_std")
    how = []
    for i in rows:
        dead, live = None, False
        for k in after:
            if i >= mean.shape[0] or k >= mean.shape[1] or not math.isfinite(mean[i, k]):
                continue
            name = state.act_layers[k]
            if sd[i, k] == 0 and float(mean[i, k]) in FLOORS[state.act_kinds[name]]:
                dead = dead or name
            else:
                live = True
        op = str(state.output_op[i]) if i < len(state.output_op) else ""
        if dead:
            how.append(f"the output of {dead} ({state.act_kinds[dead]}) sits at "
                       f"{_fmt(float(mean[i, order[dead]]))}, where its derivative is 0, on "
                       "every example it watched")
        elif op in FLAT_OUTPUT_OPS and not live:
            how.append(f"the output is made by {op}, which has a flat piece")
        else:
            return {}
    return {"steps": [state.sample_steps[i] for i in rows], "how": how[-1]}


def no_gradient_at_step(state, samples: int = 3, min_loss: float = 0.01) -> dict:
    """Evidence that the optimizer stepped on no gradient: on each of the last ``samples``
    samples whose gradients were read before an optimizer step, every layer that should learn
    (not frozen, in the optimizer when it is known) had no gradient (None) or a zero one, while
    the recent loss and each of those samples' own batch loss are finite and above ``min_loss``
    x the know-nothing reference (at an exact minimum the gradients are 0 legitimately: a
    batch whose logits are so large that every softmax is 1.0 at its label), and the zeros
    are not the model's own: a gradient that is exactly 0 (not None) everywhere on a sample
    whose outputs all sat on a flat piece of the output's activation (:func:`dead_output`: a ReLU after a regression's
    output layer, dead on the whole batch) is a dead output, not the loop. Empty when it does
    not hold."""
    rows = [i for i, read in enumerate(state.grad_read) if read][-samples:]
    if len(rows) < samples or not state.param_layers:
        return {}
    learn = stepped_layers(state)
    if not learn:
        return {}   # nothing should learn: frozen_layers reports it
    g = state.array("grad_norm")
    if g.shape[0] <= rows[-1]:
        return {}
    sub = g[rows][:, learn]
    if not np.all(np.nan_to_num(sub, nan=0.0) == 0):
        return {}
    losses = state.loss_array()
    recent = losses[-10:]
    if recent.size == 0 or not np.all(np.isfinite(recent)):
        return {}   # a non-finite loss: nan_inf reports it
    level = float(np.mean(recent))
    ref = loss_reference(state)
    if ref is not None and ref.value > 0 and level < min_loss * ref.value:
        return {}
    # the loss of each of these steps' own batches: a batch at an exact minimum of its loss has
    # zero gradients legitimately. Cross entropy on logits so large that every example's
    # softmax rounds to 1.0 at its label is exactly 0 with every gradient exactly 0 (an lr
    # blow-up leaves such logits: most batches cost thousands, some exactly nothing), while
    # the recent mean stays high: each sample is judged by its own batch's loss
    own = [float(losses[s]) if 0 <= s < losses.size else math.nan
           for s in (state.sample_steps[i] for i in rows)]
    floor = min_loss * ref.value if ref is not None and ref.value > 0 else 0.0
    if not all(math.isfinite(v) and v > floor for v in own):
        return {}
    if not np.any(np.isnan(sub)) and dead_output(state, rows, learn):
        return {}   # exactly 0 everywhere behind a dead output: dying_relu's case, not the loop's
    none = [state.param_layers[j] for j in learn if np.all(np.isnan(g[rows, j]))]
    zero = [state.param_layers[j] for j in learn if state.param_layers[j] not in none]
    u = state.array("update_ratio")[rows][:, learn]
    seen = [state.backward_seen[i] if i < len(state.backward_seen) else None for i in rows]
    return {"steps": [state.sample_steps[i] for i in rows], "layers": [state.param_layers[j] for j in learn],
            "grad_none": none, "grad_zero": zero, "backward_reached_loss": seen,
            "max_update_ratio": float(np.nanmax(u)) if np.any(~np.isnan(u)) else math.nan,
            "recent_loss": level, "step_losses": own,
            "reference": ref.to_dict() if ref else None}


@register_detector
class GradientsCleared(Detector):
    name = "gradients_cleared"
    explains = SLOW
    rule = ("on each of the last `samples` samples whose gradients were read before an optimizer "
            "step, no layer that should learn (requires_grad, in the optimizer when known) had a "
            "gradient: .grad None or exactly 0 on every parameter, while the loss is finite and "
            "above min_loss x the know-nothing reference, both the mean of the last 10 steps "
            "and each of these samples' own batch loss (an exact minimum has zero gradients: "
            "cross entropy on logits so large that every softmax rounds to 1.0 at its label "
            "costs exactly 0). "
            "A working loop always leaves a gradient in the output layer's bias, however dead or "
            "vanishing the rest, so the gradients were cleared between backward() and step() "
            "or never computed; unless an activation after the output layer explains the zeros: "
            "every gradient exactly 0 on samples whose outputs all sat where its derivative is 0 "
            "(a watched activation after the last learning layer pinned there on every example "
            "it watched: a ReLU at 0, a sigmoid at 1.0; or an output made by a ReLU, clamp, "
            "hardtanh, hardsigmoid or threshold with no watched live output after the learning "
            "layers): a dead output, not the loop")
    thresholds = {"samples": 3, "min_loss": 0.01}
    fixes = ["call optimizer.zero_grad() before loss.backward() (or right after "
             "optimizer.step()), never between backward() and step()",
             "call loss.backward() on every step before optimizer.step()",
             "compute the loss from the model's outputs without .detach(), .item(), .data or "
             "torch.no_grad(), so that backward reaches the parameters"]

    def check(self, state):
        ev = no_gradient_at_step(state, int(self.t["samples"]), self.t["min_loss"])
        if not ev:
            return None
        seen = ev["backward_reached_loss"]
        n = len(ev["layers"])
        if all(s is True for s in seen):
            why = ("backward() reached the loss on each of these steps, yet at the optimizer step "
                   "no parameter held a gradient: they were cleared in between "
                   "(zero_grad() between backward() and step())")
            fixes = list(self.fixes)
        elif all(s is False for s in seen):
            why = ("backward() did not reach the recorded loss before the optimizer step: "
                   "backward() is not called, or called on another tensor")
            fixes = [self.fixes[1], self.fixes[2], self.fixes[0]]
        else:
            why = "the gradients were cleared between backward() and step(), or never computed"
            fixes = list(self.fixes)
        kind = ("None" if not ev["grad_zero"] else "exactly 0" if not ev["grad_none"]
                else "None or exactly 0")
        ref = ev["reference"]
        loss = f"; the loss stays at {_fmt(ev['recent_loss'])}" + (
            f" (know-nothing level {_fmt(ref['value'])})" if ref else "")
        return self.verdict(
            state, f"no gradient at the optimizer step: .grad is {kind} on all {n} layers that "
            f"should learn, on the samples at steps {ev['steps']}; {why}{loss}",
            layers=ev["layers"], evidence=ev, fixes=fixes)
