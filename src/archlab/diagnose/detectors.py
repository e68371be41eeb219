"""Detectors: small registered rules that turn health measurements into verdicts.

Each detector has a name, a documented rule, named thresholds (overridable per run), and the
fixes the literature suggests. A verdict always carries the measured values beside the
thresholds they were compared with, and names the layers involved, so a reader can judge it.

Two published pitfalls are avoided on purpose (issue 7):

* the input-scale rule reads the mean and standard deviation of the first layer's input, never
  its range, so correctly standardised data (mean 0, std 1, long tails) does not trigger it;
* gradient ratios are formed only when the denominator is a positive finite number: a dead or
  zero-initialised network has zero gradients and is reported as *no gradient*, never as
  exploding through a 0/0.

Sources of the rules and fixes: the seed text *deep-learning-designs* (principles C1, C5, C6),
Karpathy's update-to-weight ratio of about 1e-3 (CS231n notes), Glorot & Bengio 2010 (saturation),
Pascanu et al. 2013 (exploding gradients in RNNs, clipping), He et al. 2015 (PReLU, He init),
Maas et al. 2013 (leaky ReLU).
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import UsageError, unknown_name
from .baselines import all_finite, finite_losses, loss_reference, median, progress, running_baseline
from .state import PARAM_SERIES, HealthState

DETECTORS: dict[str, type[Detector]] = {}


@dataclass
class Verdict:
    """One finding: what, when (step), where (layers), evidence against thresholds, fixes."""

    detector: str
    step: int
    message: str
    layers: list[str] = field(default_factory=list)
    evidence: dict = field(default_factory=dict)
    thresholds: dict = field(default_factory=dict)
    fixes: list[str] = field(default_factory=list)
    severity: str = "error"   # 'error': training is broken; 'warning': training is impaired
    kind: str = "cause"       # 'cause' names why; 'symptom' only what (see SYMPTOMS)
    explained_by: list[str] = field(default_factory=list)   # symptoms: the causes found
    # a cause detector's verdict that an earlier cause explains (Detector.consequences) is
    # reported as a symptom of it: the causes it is a consequence of, root cause last
    consequence_of: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"detector": self.detector, "step": self.step, "severity": self.severity,
                "kind": self.kind, "explained_by": list(self.explained_by),
                "consequence_of": list(self.consequence_of),
                "message": self.message, "layers": list(self.layers),
                "evidence": _plain(self.evidence), "thresholds": dict(self.thresholds),
                "fixes": list(self.fixes)}


# The verdict hierarchy: a SYMPTOM detector reads the loss curve only and says what is wrong
# (the loss does not fall, it swings), never why; a CAUSE detector names why. A symptom raised
# while a cause that can produce it (``Detector.explains``) has been found is attributed to that
# cause (``Verdict.explained_by``): the summary names the cause with the symptom as its
# evidence. A symptom with no such cause stands alone: "found, cause unknown".
#
# Causes produce causes too: a divergence kills ReLUs and leaves gradients of exactly 0 behind,
# unscaled targets make the updates huge. A cause detector's verdict raised at or after the
# onset of another cause that can produce it (``Detector.consequences``; the onset is the step
# of that cause's earliest evidence, ``evidence['onset_step']``) is that cause's consequence:
# reported as a symptom of it (``kind`` 'symptom', ``consequence_of`` and ``explained_by``
# naming the causes up to the root): evidence under the root cause, whose fixes are the way out.
SYMPTOMS = ("loss_not_decreasing", "oscillating_loss")
SLOW = ("loss_not_decreasing",)   # causes that slow or stop learning but cannot make it swing
# what a run that diverged (weights thrown far from their scale, a loss far above knowing
# nothing) leaves behind: dead units, saturated units, layers with no gradient or no update,
# tiny updates once nothing moves, and clipping that binds on the huge gradients
# ... and a validation loss that rises while the training loss falls: weights thrown about by
# an unstable optimiser generalise worse at every epoch, which is no memorisation (overfitting)
AFTER_DIVERGENCE = ("vanishing_gradients", "dying_relu", "saturated_activations", "frozen_layers",
                    "lr_too_low", "clipping_too_tight", "overfitting")
DIVERGENCE = ("nan_inf", "exploding_gradients", "lr_too_high")
# inputs or regression targets far from unit scale make the loss and the gradients as large as
# they are, so every rule about the size of the updates or the loss fires on them, and the
# divergence leaves the same traces behind
AFTER_SCALE = DIVERGENCE + AFTER_DIVERGENCE


def onset(v: Verdict) -> int:
    """The step of a verdict's earliest evidence (``evidence['onset_step']``; else its step)."""
    value = v.evidence.get("onset_step") if isinstance(v.evidence, dict) else None
    return int(value) if isinstance(value, (int, float)) and math.isfinite(value) else int(v.step)


def attribute(events: list[Verdict], explains: dict[str, tuple[str, ...]],
              consequences: dict[str, tuple[str, ...]] | None = None) -> None:
    """Set ``explained_by`` (and, for causes that are consequences, ``consequence_of`` and
    ``kind``) of every verdict in ``events``.

    A cause verdict V is a consequence of a cause verdict C when C's detector lists V's in
    ``consequences`` (default: the registry's ``Detector.consequences``), V was raised at or
    after C's onset, and V's detector allows it for that verdict
    (``Detector.can_be_consequence``: a layer frozen by ``requires_grad=False`` is nobody's
    consequence). Such a V becomes a symptom whose ``explained_by`` lists C and C's own causes.
    A symptom of the loss curve is explained by the causes whose ``explains`` lists it, and by
    their causes in turn. Recomputed from scratch on every call (events only accumulate)."""
    if consequences is None:
        consequences = {v.detector: getattr(DETECTORS.get(v.detector), "consequences", ())
                        for v in events}
    causes = [v for v in events if v.kind == "cause" or v.consequence_of]
    direct: dict[int, list[Verdict]] = {}
    for v in causes:
        kind = DETECTORS.get(v.detector)
        allowed = kind is None or kind.can_be_consequence(v)
        direct[id(v)] = [c for c in causes if c is not v and allowed
                         and v.detector in consequences.get(c.detector, ()) and v.step >= onset(c)]

    def up(v: Verdict, seen: tuple = ()) -> list[str]:
        out: list[str] = []
        for c in direct.get(id(v), []):
            if id(c) in seen:   # a cycle in the declared relation: stop there
                continue
            for name in [c.detector] + up(c, seen + (id(v),)):
                if name not in out:
                    out.append(name)
        return out

    for v in causes:
        v.consequence_of = up(v)
        v.kind = "symptom" if v.consequence_of else "cause"
        v.explained_by = list(v.consequence_of)
    for v in events:
        if v.kind == "symptom" and not v.consequence_of:
            found: list[str] = []
            for c in causes:
                if v.detector in explains.get(c.detector, ()):
                    for name in [c.detector] + c.consequence_of:
                        if name not in found:
                            found.append(name)
            v.explained_by = found


def _plain(value):
    """JSON-safe copy: numpy scalars to floats, non-finite floats to strings ('nan', 'inf')."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return v if math.isfinite(v) else str(v)
    if isinstance(value, np.integer):
        return int(value)
    return value


def register_detector(cls: type[Detector]) -> type[Detector]:
    DETECTORS[cls.name] = cls
    return cls


class Detector:
    """Base class. Subclasses set ``name``, ``rule`` (one sentence), ``thresholds``, ``fixes``
    and implement :meth:`check`, which returns a verdict or None."""

    name = ""
    rule = ""
    thresholds: dict[str, float] = {}
    fixes: list[str] = []
    severity = "error"
    kind = "cause"                          # or "symptom" (see SYMPTOMS)
    explains: tuple[str, ...] = SYMPTOMS    # a cause: the symptoms it can produce
    consequences: tuple[str, ...] = ()      # a cause: the causes it produces (see attribute)

    @classmethod
    def can_be_consequence(cls, verdict: Verdict) -> bool:
        """Whether this verdict may be another cause's consequence (default: yes)."""
        return True

    def __init__(self, **overrides: float) -> None:
        unknown = set(overrides) - set(self.thresholds)
        if unknown:
            bad = sorted(unknown)[0]
            raise UsageError(unknown_name(f"threshold of detector '{self.name}'", bad,
                                          self.thresholds))
        self.t = {**self.thresholds, **overrides}

    def check(self, state: HealthState) -> Verdict | None:
        raise NotImplementedError

    def verdict(self, state: HealthState, message: str, *, layers=(), evidence=None,
                fixes=None) -> Verdict:
        return Verdict(self.name, max(state.step, 0), message, list(layers), evidence or {},
                       dict(self.t), list(fixes if fixes is not None else self.fixes),
                       self.severity, self.kind)


def make_detectors(names=None, thresholds: dict | None = None) -> list[Detector]:
    """Instantiate detectors by name (all when ``names`` is None) with threshold overrides
    ``{detector: {threshold: value}}``."""
    thresholds = thresholds or {}
    for key in thresholds:
        if key not in DETECTORS:
            raise UsageError(unknown_name("detector", key, DETECTORS))
    chosen = list(DETECTORS) if names is None else list(names)
    for n in chosen:
        if n not in DETECTORS:
            raise UsageError(unknown_name("detector", n, DETECTORS))
    return [DETECTORS[n](**thresholds.get(n, {})) for n in chosen]


# ------------------------------------------------------------------------------ helpers ----


def _fmt(x: float) -> str:
    return f"{x:.3g}" if math.isfinite(x) else str(x)


def _median_rows(a: np.ndarray) -> np.ndarray:
    """Per-layer median over samples, ignoring nan (all-nan columns stay nan). Written out
    because np.nanmedian goes through masked arrays on small inputs: 10x slower, every sample."""
    if a.size == 0:
        return np.zeros(a.shape[1:])
    if a.shape[0] == 1:
        return a[0].copy()
    if a.ndim == 2 and a.dtype == np.float64 and not np.isnan(a).any():
        # no nan (most samples): every column has all the rows, so lo and hi below are the
        # same two rows for all; two rows need no sort (a + b is b + a exactly)
        k = a.shape[0]
        if k == 2:
            return 0.5 * (a[0] + a[1])
        ordered = np.sort(a, axis=0)
        return 0.5 * (ordered[(k - 1) // 2] + ordered[k // 2])
    ordered = np.sort(a, axis=0)               # nan sorts last
    valid = (~np.isnan(a)).sum(axis=0)
    out = np.full(a.shape[1], math.nan)
    ok = valid > 0
    cols = np.arange(a.shape[1])[ok]
    lo, hi = (valid[ok] - 1) // 2, valid[ok] // 2
    out[ok] = 0.5 * (ordered[lo, cols] + ordered[hi, cols])
    return out


def relative_to_reference(change: float) -> str:
    """``change`` (the loss's relative change from the know-nothing reference, negative when the
    loss is below it) in words: "only 4.0% below" or "120.0% above"."""
    return f"only {abs(change):.1%} below" if change <= 0 else f"{change:.1%} above"


def loss_drop(state: HealthState, min_steps: int) -> tuple[float, float, float] | None:
    """(reference, recent, relative change) after ``min_steps`` finite losses: the recent loss
    (mean of the last tenth of the run, at least 10 steps) against the know-nothing reference of
    :func:`~archlab.diagnose.baselines.loss_reference` (label entropy, chance level, target
    variance; the median of the first losses only when none is known). The change is negative
    for a drop: -0.45 means the loss is 45 % below the reference. None before ``min_steps``."""
    losses = state.loss_array()
    if len(losses) < min_steps or not all_finite(state):
        return None
    p = progress(state)
    if p is None:
        return None
    now, frac, ref = p
    return ref.value, now, frac - 1.0


def _reference_evidence(state: HealthState) -> dict:
    ref = loss_reference(state)
    return {"reference": ref.to_dict()} if ref else {}


# ---------------------------------------------------------------------------- detectors ----


@register_detector
class NonFinite(Detector):
    name = "nan_inf"
    consequences = AFTER_DIVERGENCE
    rule = "the loss, an activation or a gradient is NaN or Inf; reports where it first appeared"
    thresholds: dict[str, float] = {}
    fixes = ["add an epsilon inside log, sqrt and divisions (log(x + 1e-8), x / (n + 1e-8))",
             "lower the learning rate", "clip gradients (gradient_clip_val=1.0)",
             "check the input data for NaN/Inf"]

    def check(self, state):
        nf = state.nonfinite
        if not nf:
            return None
        fixes = list(self.fixes)
        cause = nf.get("cause", "")
        if cause == "forward" and not nf.get("builtin", True):
            fixes = [f"'{nf['layer']}' ({nf.get('type', '?')}) makes NaN/Inf from finite inputs "
                     "and weights: add an epsilon to its log/sqrt/division and test it with "
                     "`archlab gradcheck`"] + fixes[1:]
        elif cause in ("weights", "forward"):
            fixes = ["lower the learning rate", "clip gradients (gradient_clip_val=1.0)",
                     "add normalisation (batch/layer norm)"] + fixes[:1]
        elif cause == "input":
            fixes = ["the input batch holds NaN/Inf: clean or impute the data (`archlab check "
                     "--data` lists the rows)"]
        elif cause == "targets":
            fixes = ["the targets hold NaN/Inf: drop or impute those rows (`archlab check --data` "
                     "lists them)"]
        where = f"in '{nf['layer']}'" if nf.get("layer") else ""
        v = self.verdict(state, f"non-finite values first at step {nf['step']} {where}: "
                         f"{nf.get('detail', '')}".strip(), layers=[nf["layer"]] if nf.get("layer")
                         else [], evidence=dict(nf), fixes=fixes)
        v.step = int(nf["step"])
        start = divergence_onset(state)
        v.evidence["onset_step"] = min(v.step, start) if start is not None else v.step
        return v


def inputs_out_of_scale(state: HealthState, max_mean: float = 5.0, max_std: float = 5.0) -> bool:
    """Whether the first layer's input is out of scale (|mean| > max_mean or std > max_std) on
    the latest sample and on the first: the data's scale is there from the first batch, while
    an input that leaves unit scale later is a trained layer's output (an embedding's)."""
    if not state.input_stats:
        return False
    return all(abs(mean) > max_mean or std > max_std
               for mean, std in (state.input_stats[-1], state.input_stats[0]))


def scale_problems(state: HealthState) -> dict:
    """Visible alternatives to a training fault: inputs or regression targets far from unit
    scale make gradients large (or small) by themselves. {'input_scale': ..., 'target_scale':
    ...} for those present (their own detectors report them)."""
    out = {}
    if inputs_out_of_scale(state):   # as unscaled_inputs judges it, at its default thresholds
        mean, std = state.input_stats[-1]
        out["input_scale"] = {"input_mean": mean, "input_std": std}
    ref = loss_reference(state, fallback=False)
    if ref is not None and ref.kind == "target_variance" and ref.value > TARGET_VARIANCE_LIMIT:
        out["target_scale"] = {"target_variance": ref.value}
    return out


TARGET_VARIANCE_LIMIT = 100.0   # regression targets with std > 10 are not standardised
BN_MIN_BATCH = 8                # batch norm over fewer examples: its statistics are noise


def small_batch_norm(state: HealthState, samples: int = 3, min_batch: float = BN_MIN_BATCH) -> dict:
    """{batch-norm layer: median batch size} for the layers that normalised over fewer than
    ``min_batch`` examples on each of the last ``samples`` samples (empty when none)."""
    rows = state.norm_batch[-samples:]
    if len(rows) < samples or not all(rows):
        return {}
    bad = {}
    for layer in sorted(set().union(*[r.keys() for r in rows])):
        sizes = [r[layer] for r in rows if layer in r]
        if sizes and median(sizes) < min_batch:
            bad[layer] = median(sizes)
    return bad


@register_detector
class Exploding(Detector):
    name = "exploding_gradients"
    consequences = AFTER_DIVERGENCE
    rule = ("the loss blows up (non-finite after the weights diverged, or its recent maximum is "
            "> loss_factor x both the know-nothing reference and the running baseline of the "
            "preceding steps), or the total gradient norm of the layers the optimizer steps (a "
            "layer outside it keeps the running sum of its gradients, and never moves) grows by "
            "growth_factor over its early median, or exceeds grad_norm_limit while the inputs "
            "and targets are scaled (large "
            "inputs or targets make large gradients by themselves, and so does batch norm over "
            "fewer than 8 examples: their detectors report them)")
    thresholds = {"loss_factor": 10.0, "grad_norm_limit": 1e3, "growth_factor": 1e3}
    fixes = ["clip gradients (gradient_clip_val=1.0; Pascanu et al. 2013)", "lower the learning rate",
             "add normalisation (batch norm for CNNs, layer norm for RNNs)",
             "for recurrent nets: LSTM/GRU or orthogonal recurrent weights"]

    def verdict(self, state, message, **kw):
        v = super().verdict(state, message, **kw)
        alternatives = scale_problems(state)
        if "target_scale" in alternatives:   # the divergence starts in the targets' scale
            v.fixes = ["standardise the regression targets (their variance is "
                       f"{_fmt(alternatives['target_scale']['target_variance'])})"] + v.fixes
        if "input_scale" in alternatives:
            v.fixes = ["standardise the inputs with training-split statistics"] + v.fixes
        v.evidence.setdefault("scale_problems", alternatives)
        start = divergence_onset(state)
        v.evidence.setdefault("onset_step", min(v.step, start) if start is not None else v.step)
        return v

    def check(self, state):
        losses = state.loss_array()
        nf = state.nonfinite
        if nf and nf.get("cause") in ("weights", "loss") or (
                nf and nf.get("cause") in ("forward", "gradient") and nf.get("builtin", True)):
            return self.verdict(state, f"loss blew up: non-finite at step {nf['step']} "
                                f"({nf.get('detail', '')})", layers=[nf["layer"]] if nf.get("layer")
                                else [], evidence={"nonfinite_step": nf["step"],
                                                   **_reference_evidence(state)})
        ref = loss_reference(state)
        v = self._large_init(state, losses, ref)
        if v is not None:
            return v
        count, tail = finite_losses(state, 5)   # no filtering of the whole history per sample
        # the level is max(reference, baseline) >= the reference: a peak at most loss_factor x
        # the reference (most samples) cannot exceed loss_factor x the level, and the running
        # baseline (a median of 50 losses) is not needed
        peak = float(tail.max()) if count >= 10 and tail.size else math.nan
        if (count >= 10 and ref is not None and ref.value > 0 and self.t["loss_factor"] > 0
                and not peak > self.t["loss_factor"] * ref.value):
            base = math.nan
        else:
            base = running_baseline(losses)
        if count >= 10 and ref is not None and ref.value > 0 and math.isfinite(base) and base > 0:
            level = max(ref.value, base)
            if peak > self.t["loss_factor"] * level:
                return self.verdict(state, f"loss blew up: {_fmt(peak)} > {self.t['loss_factor']:g}"
                                    f" x max(reference {_fmt(ref.value)}, recent median "
                                    f"{_fmt(base)})", evidence={"recent_max_loss": peak,
                                                                "running_baseline": base,
                                                                "reference": ref.to_dict()})
        g = state.array("grad_norm")
        if g.shape[0] == 0:
            return None
        # only the layers the optimizer steps: a layer outside it (or frozen) is never moved,
        # and nothing clears its .grad either (optimizer.zero_grad() clears the optimizer's own
        # parameters), so its gradient is the running sum of every batch's and grows ~t while
        # the weights stay where they are: no divergence (frozen_layers names the membership)
        stepped = stepped_layers(state)
        if not stepped:
            return None
        if len(stepped) < g.shape[1]:
            g = g.copy()
            g[:, [j for j in range(g.shape[1]) if j not in stepped]] = math.nan
            totals = np.sqrt(np.nansum(g ** 2, axis=1))
        else:
            totals = total_grad_norms(state)   # each sample's total norm, reduced once
        early = median(totals[:3])
        latest = float(totals[-1])
        if g.shape[0] > 3 and early > 1e-12 and latest > self.t["growth_factor"] * early:
            return self.verdict(state, f"total gradient norm grew {_fmt(latest / early)}x "
                                f"(from {_fmt(early)} to {_fmt(latest)})",
                                layers=self._top_layers(state, g[-1]),
                                evidence={"early_grad_norm": early, "total_grad_norm": latest})
        if math.isfinite(latest) and latest <= self.t["grad_norm_limit"]:
            return None
        alternatives = scale_problems(state)
        small = small_batch_norm(state)
        if small:   # normalising over a handful of examples makes large gradients by itself
            alternatives["batchnorm_small_batch"] = small
        top = self._top_layers(state, g[-1])
        if not alternatives:
            return self.verdict(state, f"total gradient norm {_fmt(latest)} > limit "
                                f"{self.t['grad_norm_limit']:g} with scaled inputs and targets",
                                layers=top, evidence={
                                    "total_grad_norm": latest,
                                    "ruled_out": "input and target scale, batch-norm batch size"
                                    + ("" if len(stepped) == g.shape[1] else ", the gradients "
                                       "left in layers the optimizer never steps (not counted)"),
                                    "largest_layers": {n: g[-1][state.param_layers.index(n)]
                                                       for n in top}})
        return None

    def _large_init(self, state, losses, ref):
        """Weights initialised far above their standard scale (rule): at least two layers
        start above INIT_LARGE x their default-init norm and the first losses are above
        loss_factor x the know-nothing reference, with inputs and targets scaled."""
        r = init_ratios(state)
        large = {p: x for p, x in r.items() if x > INIT_LARGE}
        if len(large) < 2 or ref is None or not ref.value > 0 or losses.size < 3:
            return None
        first = median(losses[:3])
        if not (math.isfinite(first) and first > self.t["loss_factor"] * ref.value):
            return None
        if scale_problems(state):
            return None   # unscaled inputs or targets make a huge first loss by themselves
        w = state.array("weight_norm")[0]
        g = state.array("grad_norm")[0]
        own = initial_weight_norms(state)
        norms = {p: float(own.get(p, w[state.param_layers.index(p)])) for p in large}
        v = self.verdict(
            state, f"initialisation far above the default scale: {len(large)} of {len(r)} layers "
            f"start above {INIT_LARGE:g} x the norm PyTorch's default gives their shapes ("
            + ", ".join(f"'{p}' {_fmt(norms[p])} vs {_fmt(state.init_scale[p])}"
                        for p in list(large)[:4])
            + f"), and the first losses (median {_fmt(first)}) are {_fmt(first / ref.value)} x the "
            f"know-nothing level {_fmt(ref.value)}: the outputs, and the gradients they send back, "
            "are as large as the weights' product", layers=list(large),
            evidence={"initial_norm": norms, "norm_over_default": r,
                      "first_losses_median": first, "reference": ref.to_dict(),
                      "initial_grad_norm": {p: float(g[state.param_layers.index(p)]) for p in large},
                      "cause": "initialisation",
                      "onset_step": int(state.sample_steps[0]) if state.sample_steps else 0},
            fixes=["initialise the weights at their standard scale: remove the scaling of the "
                   "initial weights and keep PyTorch's default, or use He (ReLU) / Glorot (tanh, "
                   "sigmoid) initialisation", "or add normalisation (batch/layer norm) after the "
                   "layers, which undoes their scale"] + self.fixes[:1])
        return v

    @staticmethod
    def _top_layers(state, row) -> list[str]:
        order = np.argsort(-np.nan_to_num(row, nan=-1.0, posinf=1e308))
        return [state.param_layers[i] for i in order[:3] if not math.isnan(row[i])]


# the largest slope of the logistic sigmoid, s(x)(1 - s(x)) at x = 0: each sigmoid layer passes
# back at most this fraction of the gradient it receives
SIGMOID_SLOPE = 0.25
# a layer below a quarter of the norm PyTorch's default initialisation gives its shapes is
# outside the standard initialisations (Glorot and He are 1.4-2.4x the default, none is below it)
INIT_SMALL = 0.25
# ... and a layer above four times it (the mirror image) is outside them too: He's normal
# initialisation, the largest standard one, is sqrt(6) = 2.45 x the default
INIT_LARGE = 4.0


def total_grad_norms(state: HealthState) -> np.ndarray:
    """Each sample's total gradient norm, nan ignored: ``np.sqrt(np.nansum(g ** 2, axis=1))``
    of ``state.array("grad_norm")`` (the nansum written as a sum of the squares with nan set to
    0: the same values in the same order), each row reduced once."""
    g = state.array("grad_norm")
    key = (state.series["grad_norm"], g.shape[1])
    memo = state.__dict__.get("_total_norm_memo")
    if memo is None or memo[0][0] is not key[0] or memo[0][1] != key[1] or memo[1].shape[0] > g.shape[0]:
        memo = (key, np.zeros(0))
    done = memo[1]
    if done.shape[0] < g.shape[0]:
        sq = g[done.shape[0]:] ** 2
        more = np.sqrt(np.add.reduce(np.where(np.isnan(sq), 0.0, sq), axis=1))
        done = np.concatenate([done, more]) if done.shape[0] else more
        done.flags.writeable = False
        memo = (key, done)
    state.__dict__["_total_norm_memo"] = memo
    return done


def init_scales(state: HealthState) -> np.ndarray:
    """``np.array([state.init_scale.get(p, nan) for p in state.param_layers])`` (float64),
    built once per layers and scales (read-only: several rules read it on every sample)."""
    key = (tuple(state.param_layers), tuple(state.init_scale.items()))
    got = state.__dict__.get("_init_scale_memo")
    if got is None or got[0] != key:
        a = np.array([state.init_scale.get(p, math.nan) for p in state.param_layers],
                     dtype=np.float64)
        a.flags.writeable = False
        got = state.__dict__["_init_scale_memo"] = (key, a)
    return got[1]


def initial_weight_norms(state: HealthState) -> dict[str, float]:
    """{layer: norm of its weights alone (biases left out) at attach}, when the monitor recorded
    it (``state.init_weight_norm``); empty otherwise. The default-init norm it is compared
    with (structure.init_scale) counts the weights only, so the ratio must too: a layer's
    recorded ``weight_norm`` holds its bias, and a bias left at PyTorch's default
    (uniform +-1/sqrt(fan_in), norm sqrt(out / (3 fan_in))) is 1/sqrt(fan_in) of the default
    weight norm: beside weights scaled by 0.01 it dominates a layer of small fan-in (3 inputs:
    the bias is 0.58 x the default weight norm, 58x the weights), and the ratio reads 0.58."""
    got = getattr(state, "init_weight_norm", None)
    return got if isinstance(got, dict) else {}


def init_ratios(state: HealthState, row: int = 0) -> dict[str, float]:
    """{layer: weight norm / default-initialisation norm} on sample ``row`` (the first: how the
    network was initialised), for the layers with a default scale and non-zero weights. For the
    first row the weights' own norm at attach is used where the monitor recorded it
    (:func:`initial_weight_norms`: biases left out, as in the default-init norm). A row
    once recorded never changes: remembered per row, layers and scales (returned as a copy)."""
    w = state.array("weight_norm")
    if w.shape[0] <= row:
        return {}
    series = state.series["weight_norm"]
    own = initial_weight_norms(state) if row == 0 else {}
    key = (tuple(state.param_layers), w.shape[1], tuple(state.init_scale.items()),
           tuple(own.items()))
    memo = state.__dict__.setdefault("_init_ratio_memo", {})
    got = memo.get(row)
    if got is not None and got[2] is series and got[0] == key:
        return dict(got[1])
    out = {}
    for i, p in enumerate(state.param_layers):
        s = state.init_scale.get(p, math.nan)
        norm = own.get(p, w[row, i] if i < w.shape[1] else math.nan)
        if i < w.shape[1] and math.isfinite(s) and s > 0 and norm > 0:
            out[p] = float(norm / s)
    memo[row] = (key, out, series)
    return dict(out)


def loss_gave_no_gradient(g: np.ndarray) -> np.ndarray:
    """Per sample (rows of per-layer gradient norms): every layer that has a gradient got exactly
    0. The output layer's bias gradient is the sum of the loss's gradient at the output, so a
    network that passes nothing back still shows it; all zero means the loss itself gave no
    gradient: a hinge loss whose every margin is met, a loss masked to nothing. Such steps say
    nothing about how gradients flow through the layers."""
    if g.size == 0:
        return np.zeros(g.shape[0], bool)
    present = ~np.isnan(g)
    return present.any(axis=1) & np.all(np.where(present, g == 0, True), axis=1)


@register_detector
class Vanishing(Detector):
    name = "vanishing_gradients"
    explains = SLOW
    rule = ("a layer gets no gradient at all (norm exactly 0) while it should learn, or the "
            "earliest layers' relative gradient |g| / max(|w|, default-init norm) is below ratio x "
            "the largest layer's (medians over the samples of the last min_steps optimiser steps, "
            "at least `samples` of them, leaving out samples on which the loss itself gave no "
            "gradient: every layer exactly 0, e.g. a hinge loss past its margin; a gradient small "
            "for fewer steps is a transient of the initialisation that the first updates undo; "
            "and not once the recent loss is below floor x the know-nothing reference: a fitted "
            "model has nothing left to learn); or, at the first sample, the network was initialised far below the "
            "default scale: at least two layers below 0.25 x their default-init norm, so that "
            "even the best-placed layer's gradient, which scales with the product of the other "
            "layers' scales, is below init_ratio of a default initialisation's, and the output's "
            "standard deviation is below init_ratio x the input's (the signal does vanish: no "
            "normalisation or skip path restores it)")
    # min_steps 20: the dense start samples every step, so 20 samples; a depth-driven vanishing
    # lasts as long as the depth, i.e. the whole run
    # floor: as gradients_cleared's min_loss, the level of an (almost) exact fit
    thresholds = {"ratio": 1e-3, "samples": 3, "init_ratio": 1e-2, "min_steps": 20, "floor": 0.01}
    fixes = ["add skip connections (residual blocks)", "add normalisation (batch norm)",
             "replace sigmoid/tanh by ReLU-family activations", "use He/Glorot initialisation",
             "scale the inputs"]

    def check(self, state):
        v = self._small_init(state)
        if v is not None:
            return v
        n = int(self.t["samples"])
        rows = state.array("grad_norm")
        keep = ~_no_gradient_rows(state)   # loss_gave_no_gradient(rows), each row once
        idx = np.flatnonzero(keep)[-n:]
        if idx.size == 0:
            return None
        g = _median_rows(rows[idx])   # (the weights' medians are read over the window below)
        if g.size == 0:
            return None
        frozen = _frozen_mask(state)
        live = ~np.isnan(g) & ~frozen
        if not live.any():
            return None
        zero = [state.param_layers[i] for i in np.flatnonzero(live & (g == 0))]
        if zero:
            return self.verdict(
                state, f"{len(zero)} of {int(live.sum())} layers receive no gradient at all "
                f"(norm 0): {', '.join(zero[:5])}", layers=zero,
                evidence={"zero_gradient_layers": zero, "grad_norm": {
                    p: g[i] for i, p in enumerate(state.param_layers) if live[i]}},
                fixes=["check the initialisation: all-zero or constant weights give no gradient "
                       "(use He/Glorot init)", "check for dead ReLUs upstream (leaky ReLU/PReLU)",
                       "check that no detach()/no_grad cuts the graph"] + self.fixes[:2])
        # a loss at its floor (below floor x the know-nothing level: the training data is fitted)
        # leaves every gradient small: there is nothing left to learn, whatever the depth
        p = progress(state)
        if p is not None and p[1] < self.t["floor"]:
            return None
        # the relative gradients over a window of at least min_steps optimiser steps: a gradient
        # small for a few steps after initialisation and then restored by the first updates (a
        # symmetry they break: a mean over normalised features starts exactly insensitive to
        # everything before the normalisation) is a transient, not a vanishing through depth
        # (a state without step numbers, built by hand, is judged on its last `samples` rows)
        kept_idx = np.flatnonzero(keep)
        if len(state.sample_steps) == rows.shape[0]:
            steps = _steps_array(state)[kept_idx]
            if steps[-1] - steps[0] + 1 < self.t["min_steps"]:
                return None
            first_in = int(np.flatnonzero(steps[-1] - steps + 1 >= self.t["min_steps"])[-1])
            idx = kept_idx[min(first_in, max(0, kept_idx.size - n)):]
        weights = state.array("weight_norm")
        if weights.shape[0] != rows.shape[0]:   # the relative gradient needs the weight norms
            return None                        # of the same samples (a state built by hand)
        g = _median_rows(rows[idx])
        w = _median_rows(weights[idx])
        live = ~np.isnan(g) & ~frozen
        if not live.any():
            return None
        scale = init_scales(state)
        ref = np.where(np.isfinite(scale), np.fmax(w, scale), w) if scale.size == w.size else w
        rel = np.where(live & (ref > 0), g / np.where(ref > 0, ref, 1.0), math.nan)
        if np.all(np.isnan(rel)):
            return None
        best = float(np.nanmax(rel))
        if best <= 0 or not math.isfinite(best):
            return None
        low = [i for i in np.flatnonzero(~np.isnan(rel)) if rel[i] < self.t["ratio"] * best]
        first = int(np.flatnonzero(~np.isnan(rel))[0])
        if first not in low:
            return self._through_sigmoid(state, rel, first, best)
        names = [state.param_layers[i] for i in low]
        small = {p: r for p, r in init_ratios(state).items() if r < INIT_SMALL and p in names}
        fixes = None
        if small:
            fixes = [f"initialise with PyTorch's default, He or Glorot: {len(small)} of these layers "
                     f"started below {INIT_SMALL:g} x the default-init norm"] + self.fixes
        return self.verdict(
            state, f"relative gradient of '{state.param_layers[first]}' is {_fmt(rel[first])}, "
            f"{_fmt(rel[first] / best)} of the largest ({_fmt(best)}); {len(names)} layers "
            f"below {self.t['ratio']:g}x", layers=names,
            evidence={"relative_grad": {state.param_layers[i]: rel[i] for i in
                                        np.flatnonzero(~np.isnan(rel))},
                      "initial_norm_over_default": small}, fixes=fixes)

    def _through_sigmoid(self, state, rel, first, best):
        """Gradients shrunk by sigmoid hidden layers while the run does not learn (rule): each
        sigmoid multiplies the gradient passing back by its derivative, at most 1/4."""
        top = int(np.nanargmax(rel))
        order = {n: i for i, n in enumerate(state.act_layers)}
        a, b = state.param_layers[first], state.param_layers[top]
        if a not in order or b not in order:
            return None
        between = [n for n in state.act_layers[order[a] + 1:order[b]]
                   if state.act_kinds.get(n) == "sigmoid"]
        if not between:
            return None
        bound = SIGMOID_SLOPE ** len(between)
        if not rel[first] < bound * best:
            return None
        stall = stalled_while_moving(state)
        if stall is None:
            return None   # the run learns, or nothing moves much: not the activations
        d, med, _ = stall
        return self.verdict(
            state, f"gradients shrink through {len(between)} sigmoid hidden layers: the relative "
            f"gradient of '{a}' is {_fmt(rel[first])}, {_fmt(rel[first] / best)} of '{b}''s "
            f"({_fmt(best)}), below {SIGMOID_SLOPE:g}^{len(between)} = {_fmt(bound)} (a sigmoid's "
            f"slope is at most {SIGMOID_SLOPE:g}), and the loss is {relative_to_reference(d[2])} "
            f"the know-nothing level after {state.step + 1} steps",
            layers=[a] + between,
            evidence={"sigmoid_layers": between, "relative_grad": {
                state.param_layers[i]: rel[i] for i in np.flatnonzero(~np.isnan(rel))},
                "bound": bound, "median_update_ratio": med, "change": d[2],
                "cause": "sigmoid hidden activations", **_reference_evidence(state)},
            fixes=["replace the sigmoid hidden activations by ReLU-family ones (or tanh, whose "
                   "slope reaches 1 and whose outputs are centred; LeCun et al. 1998, Glorot & "
                   "Bengio 2010)", "or use Adam, which rescales each layer's step, and "
                   "Glorot initialisation"] + self.fixes[1:2])

    def _small_init(self, state):
        if len(state.sample_steps) != 1:
            return None   # judged once, on the first sample: how the network was initialised
        r = init_ratios(state)
        small = {p: v for p, v in r.items() if v < INIT_SMALL}
        if len(small) < 2:
            return None
        logs = np.log(np.array(list(r.values())))
        best = float(np.exp(logs.sum() - logs.min()))   # the best-placed layer's factor
        if not best < self.t["init_ratio"]:
            return None
        a = state.array("act_std")
        out = state.param_layers[-1]
        if out not in state.act_layers or not state.input_stats or a.shape[0] == 0:
            return None
        out_std = float(a[0, state.act_layers.index(out)])
        in_std = float(state.input_stats[0][1])
        if not (in_std > 0 and math.isfinite(out_std) and out_std < self.t["init_ratio"] * in_std):
            return None
        w = state.array("weight_norm")[0]
        own = initial_weight_norms(state)
        norms = {p: (float(own.get(p, w[state.param_layers.index(p)])), state.init_scale[p])
                 for p in small}
        return self.verdict(
            state, f"initialisation far below the default scale: {len(small)} of {len(r)} layers "
            f"start below {INIT_SMALL:g} x the norm PyTorch's default gives their shapes ("
            + ", ".join(f"'{p}' {_fmt(v[0])} vs {_fmt(v[1])}" for p, v in list(norms.items())[:4])
            + f"); every layer's gradient is at most {_fmt(best)} of a default initialisation's "
            f"and the output's std is {_fmt(out_std / in_std)} x the input's: signal and "
            "gradients vanish", layers=list(small),
            evidence={"initial_norm": {p: v[0] for p, v in norms.items()},
                      "default_init_norm": {p: v[1] for p, v in norms.items()},
                      "norm_over_default": r, "best_layer_gradient_factor": best,
                      "output_std_over_input_std": out_std / in_std, "cause": "initialisation"},
            fixes=["initialise the weights at their standard scale: remove the small "
                   "nn.init.normal_(std=...) and keep PyTorch's default, or use He (ReLU) / Glorot "
                   "(tanh, sigmoid) initialisation", "or add normalisation (batch/layer norm) "
                   "after the layers, which undoes their scale"])


def _no_gradient_rows(state: HealthState) -> np.ndarray:
    """:func:`loss_gave_no_gradient` of ``state.array("grad_norm")``, each row judged once (it
    is a function of the row alone)."""
    g = state.array("grad_norm")
    series = state.series["grad_norm"]
    memo = state.__dict__.get("_no_gradient_memo")
    if memo is None or memo[0] is not series or memo[1] != g.shape[1] or memo[2].shape[0] > g.shape[0]:
        memo = (series, g.shape[1], np.zeros(0, bool))
    done = memo[2]
    if done.shape[0] < g.shape[0]:
        more = loss_gave_no_gradient(g[done.shape[0]:])
        done = np.concatenate([done, more]) if done.shape[0] else more
        done.flags.writeable = False
        memo = (series, g.shape[1], done)
    state.__dict__["_no_gradient_memo"] = memo
    return done


def _frozen_mask(state: HealthState) -> np.ndarray:
    """``np.array([state.frozen.get(p, False) for p in state.param_layers])``, built once per
    layers and frozen flags."""
    key = (tuple(state.param_layers), tuple(state.frozen.items()))
    got = state.__dict__.get("_frozen_memo")
    if got is None or got[0] != key:
        a = np.array([state.frozen.get(p, False) for p in state.param_layers])
        a.flags.writeable = False
        got = state.__dict__["_frozen_memo"] = (key, a)
    return got[1]


def stepped_layers(state: HealthState) -> list[int]:
    """The indices of the layers the optimizer steps: not frozen, and in the optimizer (all
    of them when its parameters are not known)."""
    return [j for j, p in enumerate(state.param_layers) if not state.frozen.get(p, False)
            and state.optimizer_params.get(p, True)]


def _steps_array(state: HealthState) -> np.ndarray:
    """``np.asarray(state.sample_steps)``, extended by the new samples only."""
    steps = state.sample_steps
    got = state.__dict__.get("_steps_memo")
    if got is None or got[0] is not steps or got[1].shape[0] > len(steps):
        got = (steps, np.asarray(steps[:0]))
    a = got[1]
    if a.shape[0] < len(steps):
        a = np.asarray(steps) if a.shape[0] == 0 else np.concatenate([a, np.asarray(steps[a.shape[0]:])])
        a.flags.writeable = False
        got = (steps, a)
    state.__dict__["_steps_memo"] = got
    return a


def examples_per_sample(state: HealthState) -> tuple[float, str]:
    """(examples whose activations one sample watches, how that is known): the first
    ``ACT_EXAMPLES`` of the batch (:mod:`archlab.diagnose.sampling`), fewer when the batch is
    smaller. The batch size is read from the targets seen on sampled steps (class ids per batch,
    or target values per output); unknown, a sample is taken to watch ``ACT_EXAMPLES``."""
    from .sampling import ACT_EXAMPLES

    batch = batch_size(state)
    if math.isfinite(batch) and batch > 0:
        return float(min(ACT_EXAMPLES, batch)), f"batches of {batch:g}"
    return float(ACT_EXAMPLES), "batch size unknown"


def loss_still_falling(state: HealthState, window: int | None = None) -> dict | None:
    """Whether the loss still falls: the mean of the last ``window`` losses (default max(20, a
    quarter of the run so far)) against the mean of the ``window`` before, in standard errors of
    the difference (batch noise from successive differences / sqrt 2, as validation_noise reads
    it). A quarter, not a fixed count: a slowly learning run gains less than one standard error
    in 20 steps and several in a quarter of its steps. {'recent', 'before', 'z', 'falling'};
    None with fewer than 2 x window finite losses."""
    losses = state.loss_array()
    w = window or max(20, len(losses) // 4)
    if len(losses) < 2 * w:
        return None
    part = losses[-2 * w:]
    if not np.all(np.isfinite(part)):
        return None
    before, recent = float(part[:w].mean()), float(part[w:].mean())
    spread = float(np.std(np.diff(part), ddof=1) / math.sqrt(2))
    se = spread * math.sqrt(2.0 / w)
    z = (before - recent) / se if se > 0 else (math.inf if before > recent else 0.0)
    return {"recent": recent, "before": before, "z": z, "falling": bool(z > 2)}


# dead units matter while the loss is less than DEAD_MIN_DROP below the know-nothing level (as
# lr_too_low's min_drop: nothing is learned), or stopped falling above DEAD_STILL_HIGH x it (as
# lr_schedule_decayed's still_high: less than half of what can be learned is)
DEAD_MIN_DROP, DEAD_STILL_HIGH = 0.1, 0.5


def dead_units_matter(state: HealthState, min_drop: float = DEAD_MIN_DROP,
                      still_high: float = DEAD_STILL_HIGH, whole: bool = False) -> dict | None:
    """Evidence that dead ReLU units cost the run (None when they do not visibly): the loss is
    less than ``min_drop`` below the know-nothing reference (nothing is learned), or it has
    stopped falling while above ``still_high`` x the reference (a plateau of a network that fits
    its data is no fault). The first clause is read only once the trend can be (2 x its window
    of losses: every run starts at the know-nothing level), or at once when ``whole``: a layer
    with no unit active passes no signal. With neither a reference nor enough losses the dead
    share alone decides (returned as {'unknown': True})."""
    ref = loss_reference(state)
    p = progress(state)
    trend = loss_still_falling(state)
    out: dict = {}
    if p is not None:
        out.update({"recent_loss": p[0], "loss_over_reference": p[1],
                    "reference": p[2].to_dict()})
        if trend is None and not whole:
            # every run starts at the know-nothing level: before the trend can be read (2 x its
            # window of losses) a loss still there says nothing about units that are only
            # partly dead (a layer with a unit active still passes a signal)
            return None
        if p[1] > 1 - min_drop:
            return out | {"why": "the loss is not below the know-nothing level"}
    if trend is not None:
        out["trend"] = trend
        if not trend["falling"] and (p is None or p[1] > still_high):
            return out | {"why": "the loss has stopped falling, above still_high x the reference"}
        return None
    if ref is None or p is None:
        return {"unknown": True, "why": "no loss reference or trend yet"}
    return None


@register_detector
class DyingRelu(Detector):
    name = "dying_relu"
    explains = SLOW
    rule = ("in a ReLU layer more than dead_fraction of the units were never active (output > 0) "
            "on any example of the window of sampled batches, on every sample of a run of "
            "consecutive samples that together watched at least min_examples examples and span "
            "at least min_steps optimiser steps (windows sized in examples and steps, not in "
            "batches: 4 batches of 4 examples say nothing about a unit that fires on 5 % of "
            "the inputs), and the dead units matter: the recent loss is less than 10 % below "
            "the know-nothing reference (read once the trend below can be, as every run starts "
            "there, or at once for a layer with no unit active), or it has stopped falling (the mean of the last window "
            "of losses is not 2 standard errors below the mean of the window before; window = "
            "max(20, a quarter of the run so far)) above 0.5 x the reference. A network that keeps learning with half its units "
            "dead has capacity to spare")
    # min_examples 300: a unit never active on 300 examples is active on fewer than 1 % of them
    # at 95 % confidence (the rule of three, 3/n; Hanley & Lippman-Hand 1983), whatever the
    # batch size; min_steps 10: the first updates often revive units that start inactive;
    thresholds = {"dead_fraction": 0.5, "min_examples": 300, "min_steps": 10}
    fixes = ["use leaky ReLU or PReLU (Maas et al. 2013; He et al. 2015)",
             "lower the learning rate", "initialise biases at 0 (not negative) with He init",
             "add batch norm before the activation"]

    def check(self, state):
        d = state.array("dead_fraction")
        if d.shape[0] == 0:
            return None
        if not np.any(np.nan_to_num(d[-1], nan=0.0) > self.t["dead_fraction"]):
            return None   # no layer over the bar on this sample (the test below, on its last row)
        over = np.nan_to_num(d, nan=0.0) > self.t["dead_fraction"]
        bad = [i for i in np.flatnonzero(over[-1])]
        if not bad:
            return None
        per, how = examples_per_sample(state)
        need = max(1, math.ceil(self.t["min_examples"] / per))
        steps = state.sample_steps
        kept = []
        for i in bad:
            run = over[:, i][::-1]
            n = int(np.argmin(run)) if not run.all() else run.size   # consecutive samples, newest back
            first = steps[len(steps) - n] if n else steps[-1]
            if n >= need and steps[-1] - first + 1 >= self.t["min_steps"]:
                kept.append(i)
        if not kept:
            return None
        matters = dead_units_matter(state, whole=any(d[-1, i] >= 1.0 for i in kept))
        if matters is None:
            return None   # the loss keeps falling: the units still alive carry the learning
        row = d[-1]
        names = [state.act_layers[i] for i in kept]
        worst = max(kept, key=lambda i: row[i])
        return self.verdict(state, f"{len(names)} ReLU layers with most units dead; worst "
                            f"'{state.act_layers[worst]}' {row[worst]:.0%} dead "
                            f"(> {self.t['dead_fraction']:.0%}) on every sample of the last "
                            f"{need}, >= {self.t['min_examples']:g} examples watched ({_fmt(per)} per "
                            f"sample, {how})", layers=names,
                            evidence={"dead_fraction": {state.act_layers[i]: row[i] for i in kept},
                                      "dead_fraction_at_first_sample": {
                                          state.act_layers[i]: float(d[0, i]) for i in kept},
                                      "examples_per_sample": per, "samples": need,
                                      "loss": matters})


@register_detector
class Saturated(Detector):
    name = "saturated_activations"
    explains = SLOW
    rule = ("in a sigmoid/tanh layer more than `fraction` of the outputs lie in the flat tails "
            "(sigmoid < 0.01 or > 0.99, |tanh| > 0.99), mean over the last `samples` samples")
    thresholds = {"fraction": 0.5, "samples": 3}
    fixes = ["scale the inputs (zero mean, unit variance)", "use Glorot/Xavier initialisation "
             "(Glorot & Bengio 2010)", "add normalisation before the activation",
             "use ReLU-family activations in hidden layers", "lower the learning rate"]

    def check(self, state):
        s = state.array("saturation", int(self.t["samples"]))
        if s.shape[0] == 0:
            return None
        seen = ~np.isnan(s)
        if not seen.any():
            return None   # no sigmoid/tanh layer: every mean below is nan
        top = float(s[seen].max())
        if self.t["fraction"] > 0 and top < self.t["fraction"] * (1 - 1e-9):
            return None   # a mean of values below the bar (to rounding) stays below it
        count = seen.sum(axis=0)
        mean = np.where(count > 0, np.nansum(s, axis=0) / np.maximum(count, 1), math.nan)
        bad = [i for i in range(mean.size) if not math.isnan(mean[i]) and mean[i] > self.t["fraction"]]
        if not bad:
            return None
        names = [state.act_layers[i] for i in bad]
        return self.verdict(state, f"{len(names)} sigmoid/tanh layers saturated: " + ", ".join(
            f"'{state.act_layers[i]}' {mean[i]:.0%}" for i in bad[:4]), layers=names,
            evidence={"saturated_fraction": {state.act_layers[i]: mean[i] for i in bad}})


@register_detector
class LossFlat(Detector):
    name = "loss_not_decreasing"
    kind = "symptom"
    explains = ()
    rule = ("after min_steps steps, the recent loss (mean of the last tenth of the run) is less "
            "than min_drop below the know-nothing reference: the label entropy of the training "
            "split (-ln(1/C) for C balanced classes) for cross entropy, the target variance for "
            "mean squared error (see archlab.diagnose.baselines)")
    # 100 steps: recurrent nets often sit on a plateau for the first ~60 steps and then learn
    thresholds = {"min_steps": 100, "min_drop": 0.05}
    fixes = ["check that the labels match the inputs (a shuffled or misaligned label column "
             "carries no signal)", "overfit a tiny batch first (`archlab check`)",
             "check that the output layer matches the loss (logits for cross entropy)",
             "scale the inputs", "raise the learning rate"]
    severity = "warning"

    def check(self, state):
        d = loss_drop(state, int(self.t["min_steps"]))
        if d is None or -d[2] >= self.t["min_drop"]:
            return None
        ref, now, change = d
        r = loss_reference(state)
        return self.verdict(state, f"loss {_fmt(now)} after {len(state.losses)} steps is "
                            f"{change:+.1%} from the know-nothing level {_fmt(ref)} "
                            f"({r.detail}); needs a drop of >= {self.t['min_drop']:.0%}",
                            evidence={"recent_loss": now, "change": change, "reference": r.to_dict()})


@register_detector
class Oscillating(Detector):
    name = "oscillating_loss"
    kind = "symptom"
    explains = ()
    rule = ("over the last `chunks` chunks of `chunk` steps, the chunk-mean loss rose at least "
            "`rises` times, each rise larger than z standard deviations of the chunk-mean "
            "differences the SAME losses give in random order (the batch noise alone, whatever "
            "its distribution: a fixed-seed permutation, so the verdict is a function of the "
            "losses) and larger than `rise` x the running baseline (the window's median loss), "
            "without net progress (the median of the window's second half not `progress` below "
            "that of its first half). The loss's own noise and level, not the know-nothing "
            "reference, set the scale, so swings of a low loss count too")
    thresholds = {"chunk": 10, "chunks": 8, "rises": 2, "z": 3.0, "rise": 0.1, "progress": 0.2}
    fixes = ["lower the learning rate", "clip gradients", "use a learning-rate schedule with "
             "warm-up", "use a larger batch"]
    severity = "warning"

    def check(self, state):
        losses = state.loss_array()
        c, k = int(self.t["chunk"]), int(self.t["chunks"])
        if len(losses) < c * k or not np.all(np.isfinite(losses[-c * k:])):
            return None
        window = losses[-c * k:]
        half = len(window) // 2
        first, last = median(window[:half]), median(window[half:])
        if last < (1 - self.t["progress"]) * first:
            return None   # the loss still falls (halves: a swing's phase cancels)
        if not might_oscillate(window, c, self.t["rise"], self.t["rises"]):
            return None   # too few rises even against the smaller of the two bars
        ev = oscillation(window, c, self.t["z"], self.t["rise"])
        if len(ev["rises"]) < self.t["rises"]:
            return None   # too few rises
        fixes, why = None, ""
        mom = momentum_of(state)
        if mom is not None and mom["amplification"] > LrHigh.thresholds["max_amplification"]:
            ev = {**ev, "momentum": mom}   # heavy-ball momentum this high swings by itself
            why = (f"; SGD momentum {mom['momentum']:g} multiplies the step by "
                   f"{_fmt(mom['amplification'])} (effective step {_fmt(mom['effective_lr'])})")
            fixes = [f"lower the momentum to 0.9: at {mom['momentum']:g} the velocity carries "
                     f"~{_fmt(mom['amplification'])} steps of old gradients"] + self.fixes
        return self.verdict(state, f"loss oscillates: {len(ev['rises'])} rises of up to "
                            f"{_fmt(max(ev['rises']))} (each > {_fmt(ev['needed'])}: {self.t['z']:g} "
                            f"standard deviations of the same losses in random order and "
                            f"{self.t['rise']:.0%} of the running baseline {_fmt(ev['baseline'])}) "
                            f"in the last {c * k} steps, without net progress" + why, evidence=ev,
                            fixes=fixes)


PERMUTATIONS = 32   # random orders of the window that give the null spread of chunk means


def oscillation(window: np.ndarray, chunk: int, z: float, rise: float) -> dict:
    """The rises of the chunk means of ``window`` that exceed both ``z`` standard deviations of
    the chunk-mean differences of the same values in random order, and ``rise`` x the window's
    median: {'chunk_means', 'rises', 'needed', 'baseline', 'null_sd'}. Under batch noise alone
    (exchangeable losses) a chunk-mean difference has that spread whatever the noise's
    distribution (skewed, spiky, two-valued losses of small batches); a trend only widens it."""
    k = len(window) // chunk
    w = np.asarray(window[-k * chunk:], dtype=np.float64)
    means = w.reshape(k, chunk).mean(axis=1)
    rng = np.random.default_rng(0)   # fixed: the same losses always give the same verdict
    null = rng.permuted(np.broadcast_to(w, (PERMUTATIONS, w.size)), axis=1)
    null_sd = float(np.diff(null.reshape(PERMUTATIONS, k, chunk).mean(axis=2), axis=1).std())
    baseline = median(w)
    needed = max(z * null_sd, rise * abs(baseline))
    rises = [float(b - a) for a, b in zip(means[:-1], means[1:], strict=False) if b - a > needed]
    return {"chunk_means": means.tolist(), "rises": rises, "needed": needed, "baseline": baseline,
            "null_sd": null_sd}


def might_oscillate(window: np.ndarray, chunk: int, rise: float, rises: float) -> bool:
    """Whether :func:`oscillation` can find ``rises`` rises in ``window``: its bar is
    max(z x the null spread, ``rise`` x |median|), so a rise of the chunk means (the same
    expressions as there) must first exceed ``rise`` x |median|. False spares the 32 random
    orders of the window when too few do (most samples of most runs); the verdict is the same."""
    k = len(window) // chunk
    w = np.asarray(window[-k * chunk:], dtype=np.float64)
    means = w.reshape(k, chunk).mean(axis=1)
    bar = rise * abs(median(w))
    return int(np.count_nonzero(np.diff(means) > bar)) >= rises if k > 1 else rises <= 0


def effective_update_ratios(state: HealthState, samples: int | None = None) -> np.ndarray:
    """Update-to-weight ratios ``(samples, layers)`` judged against the scale the weights should
    have: |dw| / max(|w|, s) with s the norm a default initialisation of the layer's shapes
    gives (:func:`~archlab.diagnose.structure.init_scale`; |w| alone where there is none).

    Karpathy's healthy ~1e-3 is a ratio to weights at their working scale. As |w| -> 0 the raw
    ratio |dw|/|w| grows without bound whatever the learning rate: a zero-initialised layer, or
    one drawn from N(0, 0.01^2) (a tenth of the default norm), moves by 100 % of itself per step
    at a healthy learning rate. PyTorch's default (std 1/sqrt(3 fan_in)) is the smallest of the
    standard initialisations (Glorot and He are 1.4-2.4x larger, N(0, 0.02) of transformers about
    the same at width 768), so weights below it are judged against it: an update of 1 % of the
    default scale is 1 % whether the weights are at that scale or far below it."""
    u = state.array("update_ratio", samples)
    w = state.array("weight_norm", samples)
    if u.size == 0 or u.shape != w.shape:
        return u
    scale = init_scales(state)
    if scale.size != w.shape[1]:
        return u
    ref = np.where(np.isfinite(scale), np.fmax(w, scale), w)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ref > 0, u * w / np.where(ref > 0, ref, 1.0), math.nan)


def _update_ratio(state: HealthState, samples: int) -> tuple[float, dict]:
    """Median effective update/weight ratio (:func:`effective_update_ratios`) over the layers
    that learn: a layer without a gradient, frozen, outside the optimizer, or whose parameters
    never changed in the window does not move whatever the learning rate, says nothing about
    it, and must not drag the median to 0. Remembered per sample (several rules ask)."""
    key = (samples, len(state.param_layers), len(state.init_scale), len(state.optimizer_params),
           *((len(state.series[k]), id(state.series[k])) for k in PARAM_SERIES))
    # one entry per window (the rules ask for 2 and 3 samples: one entry alone was evicted
    # and computed again by every other rule); an entry of an older sample is never hit again
    caches = state.__dict__.get("_update_ratio_cache")
    if not isinstance(caches, dict):
        caches = state.__dict__["_update_ratio_cache"] = {}
    cached = caches.get(samples)
    if cached is not None and cached[0] == key:
        return cached[1][0], dict(cached[1][1])
    value = _update_ratio_of(state, samples)
    caches[samples] = (key, value)
    return value[0], dict(value[1])


def _effective_tail(state: HealthState, samples: int) -> np.ndarray:
    """``effective_update_ratios(state, samples)``, each sample's row computed once (the same
    elementwise expressions on the new rows only; the rows of a sample never change)."""
    u, w = state.array("update_ratio"), state.array("weight_norm")
    scale = init_scales(state)
    if not samples or u.size == 0 or u.shape != w.shape or scale.size != w.shape[1]:
        return effective_update_ratios(state, samples)
    key = (state.series["update_ratio"], state.series["weight_norm"],
           state.__dict__["_init_scale_memo"][0])
    memo = state.__dict__.get("_effective_memo")
    if (memo is None or memo[0][0] is not key[0] or memo[0][1] is not key[1] or memo[0][2] != key[2]
            or memo[1].shape != (memo[1].shape[0], u.shape[1]) or memo[1].shape[0] > u.shape[0]):
        memo = (key, np.zeros((0, u.shape[1])))
    done = memo[1]
    if done.shape[0] < u.shape[0]:
        uk, wk = u[done.shape[0]:], w[done.shape[0]:]
        ref = np.where(np.isfinite(scale), np.fmax(wk, scale), wk)
        with np.errstate(invalid="ignore", divide="ignore"):
            more = np.where(ref > 0, uk * wk / np.where(ref > 0, ref, 1.0), math.nan)
        done = np.concatenate([done, more]) if done.shape[0] else more
        done.flags.writeable = False
        memo = (key, done)
    state.__dict__["_effective_memo"] = memo
    return done[-samples:]


def _update_ratio_of(state: HealthState, samples: int) -> tuple[float, dict]:
    u = _median_rows(_effective_tail(state, samples))
    g = _median_rows(state.array("grad_norm", samples))
    ua = state.array("update_ratio", samples)
    # nan counts as 0 (as np.nan_to_num(ua, nan=0.0) == 0 reads it)
    never = np.all((ua == 0) | np.isnan(ua), axis=0) if ua.shape[0] else np.zeros(u.size, bool)
    layers = state.param_layers
    n = min(len(layers), u.size, g.size, never.size)
    # the layers that learn, in layer order: the loop's tests on all the layers at once
    # (a layer is out when its ratio is nan, it has no positive gradient, it is frozen, it is
    # outside the optimizer or it never changed in the window)
    keep = ~np.isnan(u[:n]) & (g[:n] > 0) & ~never[:n]
    frozen, opt = state.frozen, state.optimizer_params
    per = {layers[i]: u[i] for i in np.flatnonzero(keep).tolist()
           if not frozen.get(layers[i]) and not (opt and not opt.get(layers[i], True))}
    vals = [v for v in per.values() if math.isfinite(v)]
    return (median(vals) if vals else math.nan), per


# A loss above DIVERGED x the know-nothing level: the model does three times worse than
# predicting the label frequencies (or the target mean) - its weights have been thrown away
# from anything learned; lr_too_low uses the same level to rule out a diverged run
DIVERGED = 3.0
# a whole network whose weights move by more than this fraction of their scale in one step
# (300x the healthy ~1e-3, lr_too_high's own limit) is being thrown off its scale
UPDATE_LIMIT = 0.3


# a divergence lasts: the loss counts as diverged at a step when the median of it and the
# DIVERGED_SPAN - 1 losses after it is above DIVERGED x the reference (a majority of the span,
# 3 of 5); one batch that spikes (dropout 0.8 on a small batch, a batch of outliers) and is
# followed by ordinary losses is batch noise, not weights thrown away
DIVERGED_SPAN = 5


def diverged_loss_step(losses: np.ndarray, level: float, span: int = DIVERGED_SPAN) -> int | None:
    """The first step whose loss is non-finite, or above ``level`` with the median of it and
    the ``span - 1`` losses after it above ``level`` too (non-finite losses count as above);
    a step with fewer than ``span - 1`` losses after it is not judged yet. None when none is."""
    with np.errstate(invalid="ignore"):
        high = ~(losses <= level)                  # nan and +inf count as above
    bad = np.flatnonzero(high)
    if not bad.size:
        return None
    need = span // 2 + 1                           # a majority above: the median is above
    counts = np.concatenate(([0], np.cumsum(high)))
    end = bad + span
    judged = end <= len(losses)
    above = np.zeros(bad.size, dtype=bool)
    above[judged] = counts[end[judged]] - counts[bad[judged]] >= need
    hit = np.flatnonzero(above | ~np.isfinite(losses[bad]))
    return int(bad[hit[0]]) if hit.size else None


def divergence_onset(state: HealthState) -> int | None:
    """The first step with evidence that the run diverged (None when there is none): a
    non-finite loss or gradient, a loss above DIVERGED x the know-nothing reference on a
    majority of DIVERGED_SPAN steps from it (:func:`diverged_loss_step`), or a sample
    where the whole network's weights moved by more than UPDATE_LIMIT of their scale
    (sum of squared layer updates over sum of squared max(|w|, default-init norm)). The
    divergence rules put it in their evidence (``onset_step``): what appears after it (dead
    units, zero gradients) is its consequence (:func:`attribute`)."""
    found = []
    if state.nonfinite and "step" in state.nonfinite:
        found.append(int(state.nonfinite["step"]))
    losses = state.loss_array()
    ref = loss_reference(state)
    if losses.size and ref is not None and ref.value > 0:
        first = diverged_loss_step(losses, DIVERGED * ref.value)
        if first is not None:
            found.append(first)
    u, w = state.array("update_ratio"), state.array("weight_norm")
    if u.size and u.shape == w.shape:
        scale = init_scales(state)
        if scale.size == w.shape[1]:
            ref_w = np.where(np.isfinite(scale), np.fmax(w, scale), w)
            moved = np.nansum((u * w) ** 2, axis=1)
            size = np.nansum(np.where(np.isnan(u), math.nan, ref_w) ** 2, axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                total = np.sqrt(moved / size)
            hit = np.flatnonzero(np.nan_to_num(total, nan=0.0, posinf=1e300) > UPDATE_LIMIT)
            if hit.size:
                found.append(int(state.sample_steps[int(hit[0])]))
    return min(found) if found else None


def data_onset(state: HealthState) -> int:
    """A property of the data (its scale, its order) acts from the first step that is seen."""
    return int(state.sample_steps[0]) if state.sample_steps else max(state.step, 0)


def clipping_binding(state: HealthState, samples: int = 5, ratio: float = 10.0) -> dict | None:
    """Evidence that gradient clipping scales (nearly) every update down: the total gradient
    norm before clipping is > ``ratio`` x the declared threshold on most recent samples, or
    (threshold unknown: the loop clipped before the monitor read the gradients) the total norm
    is pinned at one value on ``samples`` samples in a row while the layers' squared norms
    compensate each other (``detectors_gradients.compensation``: an L1 penalty's constant-norm
    gradient pins the total too, without compensation)."""
    g = state.array("grad_norm", samples)
    if g.shape[0] < min(samples, 3):
        return None
    total = np.sqrt(np.nansum(g ** 2, axis=1))
    clip = state.clip.get("value") if state.clip else None
    if clip:
        over = total / float(clip)
        if np.mean(over > ratio) >= 0.8:
            return {"clip_value": float(clip), "median_norm_over_clip": median(over),
                    "how": "declared threshold"}
        return None
    # without a declared threshold: the total norm pinned at one value (to 1e-4) while the
    # layers' shares of it still change, by more than 10x that tolerance (clipping rescales the
    # whole vector; the gradient's direction moves from batch to batch). A gradient that is
    # itself (nearly) constant - a dead network whose gradients are never zeroed, or zero - pins
    # the shares too: that is not clipping. Nor is a layer whose non-zero norm repeats to float
    # precision (1e-6): clipping multiplies every layer by the same factor c / |g|, which moves
    # with each batch, so a repeating layer is one whose gradient nothing rescales
    layers = g[:, ~np.any(np.isnan(g), axis=0)] if g.size else g
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = layers / total[:, None] if layers.size else layers
    hi, lo = (layers.max(axis=0), layers.min(axis=0)) if layers.size else (layers, layers)
    repeats = bool(np.any((hi > 0) & (hi - lo <= 1e-6 * hi)))
    shares_move = bool(shares.size) and bool(np.all(np.isfinite(shares))) and not repeats and bool(
        np.any(shares.max(axis=0) - shares.min(axis=0) > 1e-3))
    if not (g.shape[0] >= samples and total.max() > 0 and shares_move
            and (total.max() - total.min()) <= 1e-4 * total.max()):
        return None
    # and the layers' squared norms compensate each other, as only a common rescaling makes
    # them: an L1 penalty's gradient lambda sign(w), of constant norm lambda sqrt(n) in every
    # layer, pins the total to the same tolerance while the data term's small share moves the
    # shares, but its total moves as much as its parts (the test and its level, COMPENSATED:
    # detectors_gradients.compensation, the one clipping_too_tight applies)
    from .detectors_gradients import COMPENSATED, compensation

    comp = compensation(layers)
    if not comp < COMPENSATED:
        return None
    return {"clip_value": median(total), "total_over_parts_spread": comp,
            "how": "total gradient norm pinned at one "
            f"value on {samples} samples in a row (clipped before it was read) while the "
            "layers' squared norms compensate each other"}


def lr_decayed(state: HealthState, ratio: float = 1e-3, min_steps: int = 20,
               min_fraction: float = 0.1) -> dict | None:
    """Evidence that the learning rate sits below ``ratio`` x its first value, for at least
    ``min_steps`` steps and ``min_fraction`` of the run (a schedule that ends at 0 in its last
    steps is fine; one that reaches 0 early stops training). Needs the optimizer."""
    if not state.lr or not (state.initial_lr > 0):
        return None
    if not state.lr[-1] < ratio * state.initial_lr:
        return None   # (low[-1] below, read without the array: most samples of most runs)
    lr = np.array(state.lr, dtype=np.float64)
    steps = np.array(state.sample_steps[:len(lr)])
    low = lr < ratio * state.initial_lr
    if not low[-1]:
        return None
    since = int(steps[np.flatnonzero(~low)[-1] + 1]) if (~low).any() else 0
    span = state.step - since
    if span < min_steps or span < min_fraction * (state.step + 1):
        return None
    return {"initial_lr": state.initial_lr, "current_lr": float(lr[-1]), "below_since_step": since}


def momentum_of(state: HealthState) -> dict | None:
    """The optimizer's heavy-ball momentum when the monitor recorded its settings
    (``state.optimizer_settings``: {'type', 'momentum', 'nesterov', 'dampening', 'betas'} of its
    param_groups), as {'momentum', 'amplification', 'effective_lr'}: SGD with momentum m takes,
    along a steady gradient, steps of lr / (1 - m) (the geometric sum of the velocity), and
    remembers gradients for about 1 / (1 - m) steps. None for optimizers without heavy-ball
    momentum (Adam's beta1 averages the gradient, it does not amplify it) or when unknown."""
    opt = getattr(state, "optimizer_settings", None) or {}
    m = opt.get("momentum")
    if not isinstance(m, (int, float)) or not 0 < m < 1 or str(opt.get("type", "")).lower() not in (
            "sgd", ""):
        return None
    damp = opt.get("dampening") or 0.0
    amp = (1 - damp) / (1 - m)
    lr = state.lr[-1] if state.lr else math.nan
    return {"momentum": float(m), "amplification": float(amp),
            "effective_lr": float(lr * amp) if math.isfinite(lr) else math.nan}


@register_detector
class LrHigh(Detector):
    name = "lr_too_high"
    consequences = AFTER_DIVERGENCE
    rule = ("the median effective update-to-weight ratio |dw| / max(|w|, default-init norm) over "
            "the layers that learn exceeds max_update_ratio (about 1e-3 is healthy; weights far "
            "below their initialisation scale are judged against that scale: the raw ratio grows "
            "without bound as |w| -> 0), or the recent loss rises above rise_factor x both the "
            "know-nothing reference and the median of the first 10 losses, or (when the "
            "optimizer's settings are known) SGD's heavy-ball momentum amplifies the step by "
            "1/(1-m) > max_amplification while the weights grow weight_growth x their first norm "
            "or the loss rises rise_factor x above its best chunk mean; or the gradients are summed "
            "over the steps instead of cleared (no zero_grad: each step applies lr x the sum of "
            "all past gradients): over the reads of the first 32 steps the gradient norm of the "
            "median layer that learns rose on more reads than a one-sided sign test allows at 1e-3 "
            "without a trend (a batch gradient's norm rises about half the time, a running sum's "
            "at nearly every read) and at least doubled, with an output not made by a sigmoid or "
            "softmax that the loss does not undo (a gradient back through a squash is damped by "
            "its Jacobian and grows by itself as the outputs leave its flat part; BCE on a "
            "sigmoid sends back p - y). With momentum the learning rate is "
            "reported as the effective step lr/(1-m)")
    # max_amplification 100: momentum 0.99; the usual 0.9 amplifies 10x and averages over ~10
    # steps, 0.999 over ~1000: longer than most runs, so the velocity never settles
    thresholds = {"max_update_ratio": UPDATE_LIMIT, "rise_factor": 1.5, "samples": 2,
                  "max_amplification": 100.0, "weight_growth": 3.0}
    fixes = ["lower the learning rate (x0.1)", "use a learning-rate warm-up",
             "clip gradients", "use Adam with default settings (lr 1e-3)"]

    def verdict(self, state, message, **kw):
        v = super().verdict(state, message, **kw)
        mom = momentum_of(state)
        if mom is not None:
            v.evidence.setdefault("momentum", mom)
            v.message += (f" (SGD momentum {mom['momentum']:g}: effective step lr/(1-m) = "
                          f"{_fmt(mom['effective_lr'])})")
        start = divergence_onset(state)
        v.evidence.setdefault("onset_step", min(v.step, start) if start is not None else v.step)
        return v

    def check(self, state):
        med, per = _update_ratio(state, int(self.t["samples"]))
        mom = momentum_of(state)
        if math.isfinite(med) and med > self.t["max_update_ratio"]:
            top = sorted(per, key=lambda p: -per[p])[:3]
            fixes = None
            if mom is not None and mom["amplification"] > self.t["max_amplification"]:
                fixes = [f"lower the momentum (to 0.9): {mom['momentum']:g} multiplies the step by "
                         f"{_fmt(mom['amplification'])}"] + self.fixes
            return self.verdict(state, f"median update/weight ratio {_fmt(med)} > "
                                f"{self.t['max_update_ratio']:g} (healthy ~1e-3)", layers=top,
                                evidence={"median_update_ratio": med, "update_ratio": per},
                                fixes=fixes)
        losses = state.loss_array()
        ref = loss_reference(state)
        if len(losses) >= 30 and all_finite(state) and ref is not None and ref.value > 0:
            start, now = median(losses[:10]), float(losses[-10:].mean())
            level = max(start, ref.value)
            if now > self.t["rise_factor"] * level:
                return self.verdict(state, f"loss rose to {_fmt(now)}, above {self.t['rise_factor']:g}"
                                    f" x max(first losses {_fmt(start)}, reference {_fmt(ref.value)})",
                                    evidence={"start_loss": start, "recent_loss": now,
                                              "reference": ref.to_dict(), "median_update_ratio": med})
        if mom is not None and mom["amplification"] > self.t["max_amplification"]:
            v = self._momentum(state, mom, losses)
            if v is not None:
                return v
        acc = summed_gradients(state)
        if acc is not None:
            return self.verdict(
                state, f"the gradients are summed over the steps, not cleared: the gradient norm "
                f"of the median layer that learns rose on {acc['rises']:g} of {acc['reads'] - 1} reads in "
                f"the first {acc['window_steps']} steps (a batch gradient's rises half the time; "
                f"{acc['rises_needed']} rejects that at {acc['alpha']:g}) to "
                f"{_fmt(acc['growth'])}x its first: each step applies lr x the sum of all past "
                f"gradients, an effective learning rate that grows with the steps",
                layers=acc["layers"][:3], evidence={"summed_gradients": acc},
                fixes=["call optimizer.zero_grad() once per step, before loss.backward() (in "
                       "Lightning, do not override optimizer_zero_grad with a no-op)",
                       "if accumulation is meant, clear the gradients after each optimizer step "
                       "and divide the loss by the accumulated batches"])
        return None

    def _momentum(self, state, mom, losses):
        """Extreme momentum with evidence of instability: the weights run away (their total norm
        weight_growth x its first value) or the loss climbs back from its best (the recent mean
        above rise_factor x the lowest 10-step chunk mean)."""
        w = state.array("weight_norm")
        grown = math.nan
        if w.shape[0] >= 2:
            first, last = float(np.sqrt(np.nansum(w[0] ** 2))), float(np.sqrt(np.nansum(w[-1] ** 2)))
            grown = last / first if first > 0 else math.nan
        rise = math.nan
        if len(losses) >= 30 and all_finite(state):
            k = len(losses) // 10
            chunks = losses[:k * 10].reshape(k, 10).mean(axis=1)
            best = float(chunks.min())
            rise = float(losses[-10:].mean()) / best if best > 0 else math.nan
        if not (grown > self.t["weight_growth"] or rise > self.t["rise_factor"]):
            return None
        return self.verdict(
            state, f"SGD momentum {mom['momentum']:g} multiplies each step by 1/(1-m) = "
            f"{_fmt(mom['amplification'])} (> {self.t['max_amplification']:g}) and the run is "
            f"unstable: weights grew {_fmt(grown)}x, recent loss {_fmt(rise)}x its best",
            evidence={"weight_growth": grown, "loss_over_best": rise},
            fixes=[f"lower the momentum to 0.9 (or 0.95): at {mom['momentum']:g} the velocity "
                   f"averages ~{_fmt(mom['amplification'])} steps and the effective step is "
                   f"lr/(1-m) = {_fmt(mom['effective_lr'])}",
                   "or lower the learning rate by the same factor"])


# optimizers that divide the gradient by sqrt(v) + eps (Adam's family, RMSprop, Adagrad)
EPS_DIVIDED = ("adam", "adamw", "nadam", "radam", "adamax", "rmsprop", "adagrad", "sparseadam")
DEFAULT_EPS = 1e-8


def adam_eps_bound(state: HealthState, samples: int = 3) -> dict | None:
    """How much an eps-divided optimizer's eps shrinks its steps, when its settings are known:
    each parameter moves by about lr x m / (sqrt(v) + eps), m and sqrt(v) of the gradient's
    size, so the step is lr x rms / (rms + eps) for a gradient of RMS ``rms`` per parameter (the
    total gradient norm over sqrt(parameters in the optimizer), median over the last
    ``samples`` samples). {'type', 'eps', 'lr', 'grad_rms', 'factor', 'effective_lr'}, or None
    when the optimizer, eps, parameter count or gradients are unknown, or the default eps would
    itself shrink the step (rms below 9 x 1e-8: the gradients vanish, eps is not the cause)."""
    opt = getattr(state, "optimizer_settings", None) or {}
    eps = opt.get("eps")
    if str(opt.get("type", "")).lower() not in EPS_DIVIDED or not isinstance(eps, (int, float)) \
            or not eps > 0:
        return None
    n = sum(g.get("params", 0) or 0 for g in opt.get("groups", []))
    g = state.array("grad_norm", samples)
    if not n > 0 or g.shape[0] == 0 or not state.lr:
        return None
    total = np.sqrt(np.nansum(g ** 2, axis=1))
    rms = median(total) / math.sqrt(n)
    lr = float(state.lr[-1])
    if not (math.isfinite(rms) and rms > 0 and math.isfinite(lr)):
        return None
    if rms / (rms + DEFAULT_EPS) < 0.9:
        return None
    factor = rms / (rms + float(eps))
    return {"type": opt.get("type"), "eps": float(eps), "lr": lr, "grad_rms": rms,
            "factor": factor, "effective_lr": lr * factor}


def skipped_steps(state: HealthState, share: float = 0.5, samples: int = 3) -> dict | None:
    """Evidence that the optimizer steps on a fraction of the batches only (``opt.step()``
    under an ``if`` meant for logging): on more than ``share`` of the samples whose gradients
    were read (at least ``samples`` of them) every layer that should learn (requires_grad, in
    the optimizer) had a non-zero gradient and none moved (update exactly 0), while on another
    sample they did move. A step of lr x g on a non-zero gradient always moves a weight, so a
    zero update there is a step not taken; the gradients of the skipped batches are cleared
    unused, and stepping on a fraction f of the batches scales the learning rate by f. None
    when it does not hold."""
    g_all, u_all = state.array("grad_norm"), state.array("update_ratio")
    if g_all.shape[0] == 0 or u_all.shape != g_all.shape or not state.param_layers:
        return None
    learn = stepped_layers(state)
    if not learn or len(state.grad_read) < g_all.shape[0]:
        return None
    # the counts over the samples so far, extended by the new samples only (a sample's row
    # never changes; a change of the layers that learn starts them again)
    key = (state.series["grad_norm"], state.series["update_ratio"], tuple(learn))
    memo = state.__dict__.get("_skipped_memo")
    if (memo is None or memo[0][0] is not key[0] or memo[0][1] is not key[1]
            or memo[0][2] != key[2] or memo[1] > g_all.shape[0]):
        memo = [key, 0, 0, 0, 0, []]   # key, rows seen, fed, still, moved, stepped steps
    seen = memo[1]
    if seen < g_all.shape[0]:
        read = np.array(state.grad_read[seen:g_all.shape[0]], dtype=bool)
        g, u = g_all[seen:][read][:, learn], u_all[seen:][read][:, learn]
        fed = np.all(g > 0, axis=1) & np.all(np.isfinite(u), axis=1)   # a gradient in every layer
        still = fed & np.all(u == 0, axis=1)
        moved = fed & np.all(u > 0, axis=1)
        steps = np.asarray(state.sample_steps[seen:g_all.shape[0]])[read]
        memo[1:5] = [g_all.shape[0], memo[2] + int(fed.sum()), memo[3] + int(still.sum()),
                     memo[4] + int(moved.sum())]
        memo[5] = (memo[5] + steps[moved].tolist())[-8:]
    state.__dict__["_skipped_memo"] = memo
    n_fed, n_still, n_moved = memo[2], memo[3], memo[4]
    if n_fed < 2 * samples or n_still < samples or n_still <= share * n_fed or not n_moved:
        return None
    return {"samples": n_fed, "samples_without_update": n_still,
            "stepped_share": n_moved / n_fed, "stepped_at": list(memo[5])}


# gradients summed over the steps (zero_grad never called): the early window read, the level of
# the sign test on its rises and the growth that makes them a trend (see summed_gradients)
SUMMED_WINDOW = 32      # steps: the monitor reads every step to 16 and every 2nd to 32
SUMMED_MIN_DIFFS = 10   # consecutive reads needed before the test is asked
SUMMED_ALPHA = 1e-3     # one-sided sign test: P(>= k rises of n | no trend) below this
SUMMED_GROWTH = 2.0     # the norm's peak in the window over its first read: a doubling


def _rises_needed(n: int, alpha: float) -> int:
    """The fewest rises k of n consecutive differences with P(Binomial(n, 1/2) >= k) < alpha:
    under batch noise without a trend a read is above the one before about half the time."""
    tail = 0
    for k in range(n, -1, -1):
        tail += math.comb(n, k)
        if tail / 2.0 ** n >= alpha:
            return k + 1
    return n + 1


def summed_gradients(state: HealthState, window: int = SUMMED_WINDOW,
                     alpha: float = SUMMED_ALPHA, growth: float = SUMMED_GROWTH) -> dict | None:
    """Evidence that the gradients are summed over the steps instead of cleared (no
    ``zero_grad``): over the reads of the first ``window`` steps, the gradient norm of the median
    layer that learns (in the optimizer, not frozen, moved on a read sample) rose from one read
    to the next more often than a one-sided sign test allows at level ``alpha`` without a trend,
    and the total norm's peak is ``growth`` x its first read. A batch gradient carries its
    batch's noise: read after read its norm rises about half the time, even on a trend. A running sum
    G_t = g_0 + ... + g_t changes by one batch gradient, ~1/t of itself, and early batch
    gradients point the same way, so its norm rises at nearly every read and grows ~t. Layers
    outside the optimizer (only the head given to it) also keep their gradients, but nothing
    steps them: they are not asked. Judged once, on the first read after the window (its
    reads never change; one look, so no correction for repeated tests).
    None when it does not hold."""
    memo = state.__dict__.get("_summed_memo")
    if memo is not None and memo[0] is state.sample_steps:
        return memo[1]
    steps = state.sample_steps
    if not steps or steps[-1] <= window:
        return None   # judged once, when a read beyond the window shows it complete
    n = int(np.searchsorted(np.asarray(steps), window, side="right"))
    g_all, u_all = state.array("grad_norm"), state.array("update_ratio")
    out = None
    # a gradient that comes back through a squashing output op (sigmoid, softmax) is damped by
    # its Jacobian (p(1 - p) <= 1/4; ~1/k for a softmax over k values near uniform) and grows by
    # itself, read after read, as training moves the outputs off the squash's flat part: a
    # steady rise is then no evidence of a sum (probabilities_as_logits names that output).
    # Not when the loss undoes the squash: BCE on a sigmoid's probabilities sends back p - y,
    # undamped (so does a loss of unknown kind on value targets, read as such)
    loss = state.reference.get("loss")
    undone = loss == "bce" or (loss is None and state.targets.get("kind") != "classes")
    squashed = not undone and any(o in SQUASHING_OPS for o in state.output_op[:n])
    if (n >= SUMMED_MIN_DIFFS + 1 and g_all.shape[0] >= n and u_all.shape == g_all.shape
            and len(state.grad_read) >= n and all(state.grad_read[:n]) and not squashed):
        g, u = g_all[:n], u_all[:n]
        learn = [j for j, p in enumerate(state.param_layers) if not state.frozen.get(p, False)
                 and state.optimizer_params.get(p, True) and np.any(u[:, j] > 0)]
        if learn:
            gl = np.nan_to_num(g[:, learn], nan=0.0)
            total = np.sqrt(np.sum(gl ** 2, axis=1))
            if np.all(np.isfinite(total)) and total[0] > 0:
                # every layer's sum grows: the median layer's rises (the largest layer, which
                # dominates the total, may swing back when new gradients oppose the sum)
                per = np.count_nonzero(np.diff(gl, axis=0) > 0, axis=0)
                rises = float(np.median(per))
                need = _rises_needed(n - 1, alpha)
                peak = float(total.max() / total[0])
                if rises >= need and peak >= growth:
                    out = {"reads": n, "rises": rises, "rises_needed": need, "alpha": alpha,
                           "growth": peak, "window_steps": int(steps[n - 1]),
                           "grad_norms": total.tolist(), "layer_rises": per.tolist(),
                           "layers": [state.param_layers[j] for j in learn]}
    state.__dict__["_summed_memo"] = (state.sample_steps, out)
    return out


def constant_rate_fall(state: HealthState, z: float = 2.0, slowdown: float = 2.0) -> dict | None:
    """The loss falls at an undiminished rate: the run so far cut into three equal windows,
    the window means fall from the first to the second and from the second to the third by
    more than z standard errors each (batch noise from successive differences / sqrt 2, as
    loss_still_falling reads it), and neither fall is more than ``slowdown`` x the other.
    A step too small for the curvature moves the loss by about lr |g|^2 a step, at a rate the
    step sets, and the loss falls in a straight line; a step large enough falls fast, then
    decelerates toward its floor (the rate halves well within the run); a plateau being left
    has no first fall. {'means', 'falls', 'standard_error'}; None when not so or with fewer
    than 60 finite losses."""
    losses = state.loss_array()
    w = len(losses) // 3
    if w < 20:
        return None
    part = losses[-3 * w:]
    # the three window sums in one reduction (a NaN or Inf anywhere leaves its sum non-finite)
    sums = np.add.reduceat(part, [0, w, 2 * w])
    if not np.all(np.isfinite(sums)):
        return None
    means = [float(x) / w for x in sums]
    f1, f2 = means[0] - means[1], means[1] - means[2]
    if not (f1 > 0 and f2 > 0 and f1 <= slowdown * f2 and f2 <= slowdown * f1):
        return None   # (before the noise, which costs more to read)
    spread = float(np.std(np.diff(part), ddof=1) / math.sqrt(2))
    se = spread * math.sqrt(2.0 / w)
    if not (se > 0 and f1 > z * se and f2 > z * se):
        return None
    return {"means": means, "falls": [f1, f2], "standard_error": se, "window": w}


def validation_follows(state: HealthState, share: float = 0.5) -> dict | None:
    """Whether what the training loss lost carries to held-out examples: between the first and
    the latest validation pass, the validation loss fell by at least ``share`` of the training
    loss's fall (the training rows of the same passes). A step too small slows what a network
    learns, not what carries over: far from its floor, what it learns first generalises (Arpit
    et al. 2017) and the validation loss falls with the training loss; a training loss that
    falls while the validation loss does not is memorisation (``share`` as overfitting's
    memorisation form: more than half of it does not carry). {'train_fall', 'val_fall',
    'follows'}; None with fewer than two passes or a training loss that did not fall."""
    v = state.validation
    if len(v) < 2:
        return None
    dt = float(v[0]["train_loss"]) - float(v[-1]["train_loss"])
    dv = float(v[0]["val_loss"]) - float(v[-1]["val_loss"])
    if not (math.isfinite(dt) and math.isfinite(dv) and dt > 0):
        return None
    return {"train_fall": dt, "val_fall": dv, "follows": dv >= share * dt}


@register_detector
class LrLow(Detector):
    name = "lr_too_low"
    explains = SLOW
    rule = ("after min_steps steps the median update-to-weight ratio of the layers that learn is "
            "below min_update_ratio and the loss is less than min_drop below the know-nothing "
            "reference, and no visible alternative explains the small updates: binding gradient "
            "clipping, a learning rate decayed to ~0 (their detectors report those), a run that "
            "diverged (a loss above `diverged` x the reference), layers without gradient, or, "
            "for a step of lr x g (not eps-divided), a gradient that vanishes through depth "
            "(vanishing_gradients' rule: most layers then move little whatever the rate); or, "
            "for Adam-family optimizers whose eps is known, eps dwarfs the gradient's RMS per "
            "parameter (total gradient norm / sqrt(parameters), median over the last `samples` "
            "samples): the step lr x m / (sqrt(v) + eps) is then about lr x rms / eps, an "
            "effective learning rate below max_eps_factor x lr (while the default eps 1e-8 would "
            "leave it at least 0.9 x lr: the gradients themselves do not vanish); or, with the "
            "updates above min_update_ratio, SGD or an Adam-family optimizer (a step of lr x g, "
            "or of about lr per weight, whose update ratio must then be below the healthy 10 x "
            "min_update_ratio; no clipping declared), every "
            "layer learning (none frozen or outside the optimizer) and an output not squashed by "
            "a sigmoid or softmax, the loss falls at an undiminished rate (the run "
            "cut in three windows: both falls of the window means beyond z standard errors of "
            "the batch noise, neither more than slowdown x the other) and, with two validation "
            "passes, the validation loss fell by at least half the training loss's fall (a "
            "training loss falling alone is memorisation of labels the inputs do not predict), "
            "with the same stall and alternatives: a step too small for the curvature moves the loss by about lr |g|^2 "
            "a step, in a straight line, where a large enough one falls fast and then slows "
            "toward its floor; or the optimizer steps on a fraction of the batches only: on "
            "more than skip_share of the samples whose gradients were read (at least `samples`) "
            "every layer that should learn had a non-zero gradient and none moved, while on "
            "another they did (a step of lr x g on a non-zero gradient always moves a weight; "
            "stepping on a fraction f of the batches scales the learning rate by f), with the "
            "same stall and alternatives")
    # max_eps_factor 0.1: eps ten times the gradient's RMS divides every step by eleven;
    # min_update_ratio 1e-4: ten times below the healthy ~1e-3 a step (Karpathy's rule of thumb;
    # Adam moves each weight by about lr a step, so at lr 1e-5 the ratio is ~1e-4 for weights of
    # rms ~0.1), and it counts only together with a loss that has not moved 10 % in 100 steps
    # z, slowdown: the constant-rate form (constant_rate_fall): each window's fall beyond 2
    # standard errors, and the rate not halved (nor doubled) between the windows
    # skip_share 0.5: steps skipped on more than half the sampled batches at least halve the
    # learning rate; a loop that steps on every batch skips none (a zero update on a non-zero
    # gradient is a step not taken), so the level only keeps an occasional skipped step (AMP's
    # scaler skipping an overflow) out
    thresholds = {"min_update_ratio": 1e-4, "min_drop": 0.1, "min_steps": 100, "samples": 3,
                  "diverged": 3.0, "max_eps_factor": 0.1, "z": 2.0, "slowdown": 2.0,
                  "skip_share": 0.5}
    fixes = ["raise the learning rate (x10) or run a learning-rate range test",
             "use Adam with default settings (lr 1e-3)"]
    severity = "warning"

    def check(self, state):
        d = loss_drop(state, int(self.t["min_steps"]))
        if d is None or -d[2] >= self.t["min_drop"]:
            return None
        med, per = _update_ratio(state, int(self.t["samples"]))
        eps = adam_eps_bound(state, int(self.t["samples"]))
        if eps is not None and eps["factor"] > self.t["max_eps_factor"]:
            eps = None
        small = math.isfinite(med) and med < self.t["min_update_ratio"]
        kind = str(state.optimizer_settings.get("type", "")).lower()
        rate = skipped = None
        if not small and eps is None and not np.any(state.array("update_ratio", 1) > 0):
            # (asked on a sample without any update, as most samples of such a loop are: a
            # loop that steps on every batch spends one read here)
            skipped = skipped_steps(state, self.t["skip_share"], int(self.t["samples"]))
        if not small and eps is None and skipped is None:
            # the updates look healthy, but the loss falls in a straight line far from its
            # floor: the step sets the pace (an SGD step at a rate meant for Adam, or Adam at a
            # rate 100x too low). For SGD, whose step is lr x g, and for eps-divided steps (Adam's
            # lr x m / sqrt(v), about lr per weight: the loss moves by about lr |g|_1 a step, a
            # straight line too, which the update-ratio rule misses when the weights' scale puts
            # the ratio just above its limit), when the optimizer is known, and only with every
            # layer learning: a network training its head alone on fixed features also falls
            # slowly and steadily, and frozen_layers names that; nor with clipping declared
            # (a clipped step is lr x clip x g / |g|, whatever lr |g|^2 says); nor when the
            # output is squashed by a sigmoid or softmax (probabilities before the loss flatten
            # its gradient: probabilities_as_logits names that)
            if (kind not in ("sgd",) + EPS_DIVIDED or any(state.frozen.values())
                    or not all(state.optimizer_params.values()) or state.clip
                    or any(o in SQUASHING_OPS for o in state.output_op[-3:])):
                return None
            if kind != "sgd" and not (math.isfinite(med) and med < 10 * self.t["min_update_ratio"]):
                # an eps-divided step is the update itself (about lr per weight): at the healthy
                # ~1e-3 of the weights a step or above it is not too small, whatever the curve
                return None
            rate = constant_rate_fall(state, self.t["z"], self.t["slowdown"])
            if rate is None:
                return None
            carried = validation_follows(state)
            if carried is not None and not carried["follows"]:
                # the training loss falls steadily and the evaluated model gains nothing on
                # held-out examples: it memorises labels one by one (labels its inputs do not
                # predict: label_noise), which is no step too small
                return None
        if clipping_binding(state) or lr_decayed(state):
            return None
        # small updates after a divergence, or from layers without gradient, are not a small
        # learning rate: the run blew up (dead units) or the gradient does not arrive
        ref = loss_reference(state)
        losses = state.loss_array()
        if ref is not None and ref.value > 0 and float(np.max(losses)) > self.t["diverged"] * ref.value:
            return None
        g = state.array("grad_norm", int(self.t["samples"]))
        if g.size and np.any(np.nan_to_num(g, nan=1.0) == 0):
            return None
        if (small and eps is None and skipped is None and rate is None and kind not in EPS_DIVIDED
                and Vanishing().check(state) is not None):
            # a step of lr x g (SGD's) is as small as the gradient: when the gradient vanishes
            # through depth (the earliest layers' relative gradient below 1e-3 of the largest),
            # most layers move little whatever the rate, and the median update is small
            # because of it (vanishing_gradients names that; an eps-divided step, Adam's, is
            # about lr whatever the gradient's size, and is still judged here)
            return None
        lr = state.lr[-1] if state.lr else math.nan
        mom = momentum_of(state)
        said = f" (lr {_fmt(lr)})" if math.isfinite(lr) else ""
        if mom is not None and math.isfinite(lr):
            said = (f" (lr {_fmt(lr)}, SGD momentum {mom['momentum']:g}: effective step "
                    f"lr/(1-m) = {_fmt(mom['effective_lr'])})")
        if eps is not None:
            return self.verdict(
                state, f"{eps['type']}'s eps {eps['eps']:g} dwarfs the gradient's RMS "
                f"{_fmt(eps['grad_rms'])}: each step is lr x m / (sqrt(v) + eps), about lr x rms / "
                f"eps, an effective learning rate of {_fmt(eps['effective_lr'])} ({_fmt(eps['factor'])} "
                f"x lr {_fmt(eps['lr'])}, < {self.t['max_eps_factor']:g}), and the loss is "
                f"{relative_to_reference(d[2])} the know-nothing level",
                layers=list(per), evidence={
                    "adam_eps": eps, "median_update_ratio": med, "change": d[2],
                    "ruled_out": ["gradient clipping", "decayed schedule", "divergence",
                                  "layers without gradient"], **_reference_evidence(state)},
                fixes=[f"set eps back to 1e-8 (PyTorch's default; it only guards the division): at "
                       f"{eps['eps']:g} the optimizer is SGD with lr / eps"] + self.fixes[:1])
        if skipped is not None:
            f = skipped["stepped_share"]
            return self.verdict(
                state, f"the optimizer steps on a fraction of the batches only: on "
                f"{skipped['samples_without_update']} of {skipped['samples']} sampled steps every "
                f"layer had a gradient and none moved (an lr x g step always moves a weight), so "
                f"stepping on ~{f:.0%} of the batches makes the effective learning rate ~{f:.2g} x "
                f"lr{said}, and the loss is {relative_to_reference(d[2])} the know-nothing level",
                layers=list(per), evidence={
                    "form": "skipped optimizer steps", "skipped_steps": skipped,
                    "change": d[2], "lr": lr, "ruled_out": [
                        "gradient clipping", "decayed schedule", "divergence",
                        "layers without gradient"], **_reference_evidence(state)},
                fixes=["call optimizer.step() on every batch (check its indentation: it belongs "
                       "beside loss.backward(), not under a logging `if`)",
                       "to accumulate gradients over k batches, zero them only after each step"]
                + self.fixes[:1])
        if rate is not None:
            m = rate["means"]
            return self.verdict(
                state, f"the loss falls at an undiminished rate far from its floor: window means "
                f"{_fmt(m[0])} -> {_fmt(m[1])} -> {_fmt(m[2])} over {3 * rate['window']} steps "
                f"(falls of {_fmt(rate['falls'][0] / rate['standard_error'])} and "
                f"{_fmt(rate['falls'][1] / rate['standard_error'])} standard errors, neither "
                f"{self.t['slowdown']:g}x the other), still {relative_to_reference(d[2])} the "
                f"know-nothing level: each step moves the loss by about "
                f"{'lr |g|^2' if kind == 'sgd' else 'lr x |g|_1 (each weight by about lr)'}, and the step, "
                f"not the problem, sets the pace" + said, layers=list(per), evidence={
                    "form": "constant-rate fall", "constant_rate": rate,
                    "median_update_ratio": med, "change": d[2], "lr": lr, "momentum": mom,
                    "validation": carried,
                    "ruled_out": ["gradient clipping", "decayed schedule", "divergence",
                                  "layers without gradient"]
                    + (["memorisation (the validation loss fell with the training loss)"]
                       if carried is not None else []), **_reference_evidence(state)})
        return self.verdict(state, f"median update/weight ratio {_fmt(med)} < "
                            f"{self.t['min_update_ratio']:g} and the loss is {relative_to_reference(d[2])} "
                            f"the know-nothing level" + said,
                            layers=list(per), evidence={
                                "median_update_ratio": med, "change": d[2], "lr": lr,
                                "momentum": mom,
                                "ruled_out": ["gradient clipping", "decayed schedule"],
                                **_reference_evidence(state)})


NOISE_STEPS = 20   # at least this many training steps give the batch-loss spread


def batch_size(state: HealthState) -> float:
    """The training batch size read from the targets seen on sampled steps (class ids per
    batch, or target values per output); nan when unknown."""
    t = state.targets
    if t.get("batch_sizes"):
        return median(t["batch_sizes"])
    if t.get("kind") == "values" and t.get("n") and t.get("matches_output") and state.sample_steps:
        return t["n"] / (len(state.sample_steps) * max(state.output_width, 1))
    return math.nan


def validation_noise(state: HealthState, at_validation_level: bool = True) -> tuple[float, str]:
    """(standard error of a validation loss, how it was obtained). A validation pass averages
    the loss over its n examples; its standard error is sd / sqrt(n), sd the spread of the loss
    over single validation examples. Training losses are batch means over B examples, whose
    spread is sd_train / sqrt(B), so sd_train = spread x sqrt(B). A non-negative loss spreads in
    proportion to its level (a few confident mistakes carry a mean cross entropy), so single
    validation examples spread by sd_train x (validation loss / training loss) when the
    validation loss is the larger: the spread of a memorised training set (losses near 0) says
    nothing about the examples the model gets wrong. With the validation set's size known (a
    validation row's ``val_size``), SE = sd_val / sqrt(n), the standard error of a mean over n
    examples; without it, sd_val / sqrt(B), an upper bound of the SE for every validation set
    of at least one batch (n >= B). The spread is read from the steps of the last two epochs
    (at least NOISE_STEPS) as std(successive differences) / sqrt(2): batch noise is independent
    from step to step, the loss's own fall is not, so the trend of a memorising network does
    not count as noise. ``at_validation_level=False`` leaves out the level factor: the noise of
    a change between two passes over the same examples, which the model's per-example changes
    make, not the spread of the examples' losses themselves."""
    v = state.validation
    losses = state.loss_array()
    end = v[-1]["step"] + 1 if v else len(losses)
    lo = v[-3]["step"] + 1 if len(v) >= 3 else 0
    part = losses[max(0, min(lo, end - NOISE_STEPS)):end]
    part = part[np.isfinite(part)]
    if part.size < 3:
        return math.nan, "too few training steps"
    spread = float(np.std(np.diff(part), ddof=1) / math.sqrt(2))
    level = float(np.mean(part[-max(3, part.size // 4):]))
    val = float(v[-1]["val_loss"]) if v else math.nan
    scale, why = 1.0, ""
    if at_validation_level and math.isfinite(val) and level > 0 and val > level:
        scale = val / level
        why = f" x {_fmt(scale)} (validation loss {_fmt(val)} / training loss {_fmt(level)})"
    n = (v[-1].get("val_size") or v[-1].get("examples")) if v else None
    batch = batch_size(state)
    if isinstance(n, (int, float)) and n > 0 and math.isfinite(batch) and batch > 0:
        return spread * scale * math.sqrt(batch / n), (
            f"spread of the batch losses {_fmt(spread)}{why} x sqrt({batch:g} / {n:g} validation "
            "examples)")
    return spread * scale, (f"spread of {part.size} batch losses (successive differences / sqrt "
                            f"2){why}: an upper bound of the standard error for a validation set "
                            "of at least one batch")


VAL_NOISE_EPOCHS = 10   # the validation losses whose epoch-to-epoch noise is read


def validation_series_noise(val: np.ndarray, epochs: int = VAL_NOISE_EPOCHS) -> float:
    """The noise of one epoch's validation loss read from the validation series itself: the
    standard deviation of its second differences over the last ``epochs`` epochs / sqrt(6).
    For a smooth trend plus independent noise of sd s, a second difference cancels the trend to
    first order and has variance (1 + 4 + 1) s^2 = 6 s^2. This is the noise a change of the
    validation loss between epochs must be compared with: the weights' own wandering from epoch
    to epoch (SGD noise) moves the validation loss on the same examples, which the training
    batches' spread (validation_noise) does not see. nan with fewer than 5 epochs."""
    part = np.asarray(val[-epochs:], dtype=np.float64)
    if part.size < 5 or not np.all(np.isfinite(part)):
        return math.nan
    return float(np.std(np.diff(part, 2), ddof=1) / math.sqrt(6.0))


@register_detector
class Overfitting(Detector):
    name = "overfitting"
    explains = ()   # a low training loss: neither symptom can hold
    rule = ("the training loss is low (below train_low x the know-nothing reference) and kept "
            "falling (in each of the last min_epochs epochs, by > train_fall overall) while the "
            "validation loss rose in each of the last two epochs, by more than rise (relative), "
            "more than abs_rise x the know-nothing reference and more than z standard errors of "
            "a validation loss above its best epoch, the training loss is more than z standard "
            "errors of the validation estimate below the validation loss, and the "
            "train/validation gap grew in the last epochs, with a stable optimiser (median "
            "update/weight ratio below max_update_ratio). The standard errors come from the "
            "spread of the training batch losses and the validation set's size (validation_noise: "
            "sd of one example's loss / sqrt(val_size); the batch spread, an upper bound, when "
            "the size is unknown); for the gap, one example's spread is scaled by validation "
            "loss / training loss, as a non-negative loss spreads in proportion to its level). "
            "What else makes a train/validation gap is ruled out: the validation loss must first "
            "have fallen (its best epoch is not the first, and it is more than z standard errors "
            "below the first epoch's: a network learns what generalises before it memorises, "
            "Arpit et al. 2017; a validation loss that rises from the first epoch while the "
            "training loss falls says the two splits differ, or that the run is unstable), and "
            "the rise must exceed z x the validation loss's own epoch-to-epoch noise (second "
            "differences of the last 10 validation losses / sqrt 6: the weights' wandering "
            "between epochs, which the training batches do not show) and last: the pass before "
            "the last is above the best by more than z standard errors too (one pass far above "
            "its neighbours is the weights of one moment, which the next pass undoes). A validation rise after a "
            "divergence, or with a found data fault (class imbalance, unshuffled data, wrong "
            "labels), is reported as that cause's consequence. The rise is a test repeated over "
            "epochs: its best epoch is the lowest of m noisy validation losses and the rule looks "
            "at every pass, so it is judged at the Bonferroni-corrected level z_m = the one-sided "
            "normal quantile of 1 - alpha / m (alpha 0.05, m the validation passes so far: 2.50 "
            "at 8 passes, 2.88 at 25) against the batch-based and the epoch-to-epoch noise; and, "
            "with val_size known, the rise must be more than a few examples' sampling: a rise "
            "of d on n examples moves n d / reference examples' worth of the know-nothing loss "
            "(ln C for C classes), and a rise carried by k examples has a t statistic of about "
            "sqrt(k) (one example's change of d n / k among n - k unchanged ones), so it must "
            "move more than z_k^2 examples' worth, k the passes after the best epoch (the "
            "examples are the same on every pass, so choosing the lowest epoch adds no sampling "
            "comparison; the looks are the passes tested since; 6.0 at 7): a memorising model that "
            "grows more confident on the one or two validation examples it gets wrong raises "
            "the loss of a small validation set while its score holds")
    # abs_rise: a network that memorises its data may move the validation loss from 0.01 to
    # 0.02, a 100 % rise of no consequence; the rise is measured against the know-nothing
    # level, not against a validation loss that depends on when the first epoch ended.
    # z = 2: two standard errors, a two-sided 95 % level
    # alpha: the family-wise one-sided level of the rise test over the m passes looked at
    # (Bonferroni: z_m = inv_cdf(1 - alpha / m)); z = 2 stays the level of the single
    # comparisons (the first fall, the gap)
    thresholds = {"rise": 0.1, "abs_rise": 0.02, "train_fall": 0.05, "min_epochs": 3,
                  "train_low": 0.5, "max_update_ratio": 0.1, "z": 2.0,   # 100x the healthy ~1e-3
                  "alpha": 0.05, "share": 0.5}

    @staticmethod
    def rise_z(m: int, alpha: float) -> float:
        """The Bonferroni-corrected one-sided z for a rise above the lowest of ``m`` validation
        losses, tested at each of ``m`` passes: P(any of m noise-only comparisons > z) <= alpha."""
        from statistics import NormalDist

        return NormalDist().inv_cdf(1.0 - alpha / max(1, int(m)))
    fixes = ["add regularisation: weight decay (L2) or dropout", "stop early at the best epoch",
             "collect more data or augment it", "use a smaller model"]
    severity = "warning"

    def check(self, state):
        got = self._rise(state)
        return got if got is not None else self._memorised(state)

    def _memorised(self, state):
        """Form (b), memorisation without a validation rise (rule): on a small training set the
        validation loss flattens while the training loss keeps falling, and may never turn
        up within the run. Over the second half of the passes (at least 2 x min_epochs), the
        training loss fell significantly and the validation loss fell by less than `share` of
        it (more than half of what the model learns there does not carry to new examples; a
        validation loss that rose is the rise form's),
        the gap ends more than z standard errors of a validation set that size and grew, on
        each of the last min_epochs passes (each with its own window), and the model can
        memorise its split (parameters >= training examples a pass)."""
        v = state.validation
        m = len(v)
        if m < 2 * self.t["min_epochs"]:
            return None
        # judged once per validation pass (its quantities are the passes' and the losses up to
        # the last pass), on the first sample after it: the cost is per epoch, not per sample
        if state.__dict__.get("_memorised_judged") == m:
            return None
        state.__dict__["_memorised_judged"] = m
        n_val = v[-1].get("val_size")
        if not (isinstance(n_val, (int, float)) and n_val > 0):
            return None   # the noise of a validation set of unknown size cannot be judged
        val = np.array([r["val_loss"] for r in v])
        train = np.array([r["train_loss"] for r in v])
        if not (np.all(np.isfinite(val)) and np.all(np.isfinite(train))):
            return None
        share = self.t["share"]
        gap = val - train
        b = int(np.argmin(val))
        # the window of each of the last min_epochs passes: the second half of the passes up to
        # it (a trend that lasts, not one pass's jump)
        n = int(self.t["min_epochs"])
        ends = list(range(m - n, m))
        falls = [(e, (e + 1) // 2, float(train[(e + 1) // 2] - train[e]),
                  float(val[(e + 1) // 2] - val[e])) for e in ends]
        if not (b > 0 and all(dt > 0 and share * dt > dv and gap[e] > gap[h] and gap[e] > 0
                              for e, h, dt, dv in falls)):
            return None   # (the shape first: the noise and the reference cost more to read)
        h, d_train, d_val = falls[-1][1], falls[-1][2], falls[-1][3]
        ref = loss_reference(state)
        if ref is None or not ref.value > 0 or not train[-1] < self.t["train_low"] * ref.value:
            return None
        med, _ = _update_ratio(state, 3)
        if math.isfinite(med) and med > self.t["max_update_ratio"]:
            return None
        # capacity: parameters the optimizer updates against the examples one pass holds
        params = sum(int(g.get("params", 0)) for g in state.optimizer_settings.get("groups", []))
        steps = v[-1]["step"] - v[-2]["step"]
        batch = batch_size(state)
        if not (params > 0 and steps > 0 and math.isfinite(batch) and batch > 0):
            return None
        examples = steps * batch
        if params < examples:
            return None
        se, how = validation_noise(state, at_validation_level=False)
        se_gap, how_gap = validation_noise(state)
        if not (math.isfinite(se) and math.isfinite(se_gap)):
            return None
        # the epoch-to-epoch noise of either curve (an unstable run's training loss swings
        # between passes: its falls over the window are that noise, not memorisation)
        wander = max((x for x in (validation_series_noise(val), validation_series_noise(train))
                      if math.isfinite(x)), default=math.nan)
        if math.isfinite(wander) and wander > se:
            se, how = wander, ("the epoch-to-epoch noise of the validation or training losses "
                               "(second differences of the last passes / sqrt 6)")
        z = self.t["z"]
        if not val[0] - val[b] > z * se:
            return None   # it never learned what generalises: the splits differ
        # no lowest epoch is picked here (the window is the second half, whatever the losses):
        # the repeated looks are met by asking the condition on each of the last min_epochs
        # passes; a validation loss that rose beyond z standard errors is the rise form's to
        # judge (with its corrections for the best of m epochs), not this one's
        if not all(dt > z * se and share * dt - dv > z * se and dv > -z * se
                   and gap[e] > z * se_gap and gap[e] - gap[hh] > z * se for e, hh, dt, dv in falls):
            return None
        return self.verdict(
            state, f"the model memorises its training set: over passes {v[h]['epoch']}-"
            f"{v[-1]['epoch']} the training loss fell {_fmt(train[h])} -> {_fmt(train[-1])} while "
            f"the validation loss moved {_fmt(val[h])} -> {_fmt(val[-1])} (less than {share:g} of "
            f"the training fall carries to new examples); gap {_fmt(gap[-1])} ({_fmt(gap[-1] / se_gap)} "
            f"standard errors for {int(n_val)} validation examples), {params} parameters for "
            f"{examples:g} training examples a pass (reference {_fmt(ref.value)})", evidence={
                "form": "memorisation", "val_loss": val.tolist(), "train_loss": train.tolist(),
                "gap": gap.tolist(), "window_start_epoch": v[h]["epoch"],
                "train_fall": d_train, "val_fall": d_val, "share": share,
                "standard_error": se, "standard_error_from": how,
                "gap_standard_error": se_gap, "gap_standard_error_from": how_gap,
                "parameters": params, "training_examples_per_pass": examples,
                "reference": ref.to_dict()})

    def _rise(self, state):
        v = state.validation
        if len(v) < self.t["min_epochs"]:
            return None
        val = np.array([r["val_loss"] for r in v])
        train = np.array([r["train_loss"] for r in v])
        if not (np.all(np.isfinite(val)) and np.all(np.isfinite(train))):
            return None
        ref = loss_reference(state)
        if ref is None or not train[-1] < self.t["train_low"] * ref.value:
            return None   # training loss not low: an unstable or stuck run, not overfitting
        n = int(self.t["min_epochs"])
        if np.any(np.diff(train[-n:]) > 0):
            return None   # the training loss did not keep falling: unstable, not overfitting
        med, _ = _update_ratio(state, 3)
        if math.isfinite(med) and med > self.t["max_update_ratio"]:
            return None   # updates far above ~1e-3: an unstable optimiser, not overfitting
        if np.any(np.diff(val[-3:]) <= 0):
            return None   # a validation loss that also falls between epochs is noise, not a trend
        b = int(np.argmin(val))
        gap = val - train
        se, how = validation_noise(state, at_validation_level=False)   # a change on one set
        se_gap, how_gap = validation_noise(state)   # the validation estimate against training
        if not (math.isfinite(se) and math.isfinite(se_gap)):
            return None
        z = self.t["z"]
        # the validation loss first fell: the model learned what generalises before it memorised
        # (a rise from the first epoch on is a distribution shift between the splits, or an
        # unstable run, not overfitting)
        if b == 0 or not val[0] - val[b] > z * se:
            return None
        wander = validation_series_noise(val)
        if math.isfinite(wander) and wander > se:
            se, how = wander, (f"the validation losses' own epoch-to-epoch noise (second "
                               f"differences of the last {min(len(val), VAL_NOISE_EPOCHS)} / "
                               f"sqrt 6), above the batch-based {_fmt(se)} ({how})")
        z_rise = self.rise_z(len(v), self.t["alpha"])
        n_val = v[-1].get("val_size")
        # the examples' worth of know-nothing loss the rise moves (rule): nan when the size is
        # unknown, and then not judged
        carried = ((val[-1] - val[b]) * n_val / ref.value
                   if isinstance(n_val, (int, float)) and n_val > 0 and ref.value > 0 else math.nan)
        # the validation examples are the same on every pass, so picking the lowest epoch adds
        # no sampling comparison: the looks are the passes after the best epoch (rule)
        z_count = self.rise_z(len(v) - 1 - b, self.t["alpha"])
        if math.isfinite(carried) and not carried > z_count ** 2:
            return None   # a rise a few examples carry: their sampling, not the model's
        # the rise lasts: the pass before the last is above the best by more than z standard
        # errors too. Memorisation raises the validation loss pass after pass; one pass far
        # above its neighbours is the weights of one moment (a batch-norm statistic, an unlucky
        # last step before the pass), which the next pass undoes (fresh7's plain-loop 1-d
        # ResNet twin: 0.104, 0.122, 0.412, then 0.090)
        if (b < len(v) - 2 and val[-2] - val[b] > z * se
                and val[-1] > (1 + self.t["rise"]) * val[b]
                and val[-1] - val[b] > max(self.t["abs_rise"] * ref.value, z_rise * se)
                and gap[-1] > z * se_gap
                and train[-1] < (1 - self.t["train_fall"]) * train[b] and gap[-1] > gap[-2] > gap[b]):
            return self.verdict(state, f"validation loss {_fmt(val[b])} -> {_fmt(val[-1])} since "
                                f"epoch {v[b]['epoch']} (a rise of {_fmt((val[-1] - val[b]) / se)} "
                                f"standard errors, > {_fmt(z_rise)} for {len(v)} passes looked at) while training loss {_fmt(train[b])} -> "
                                f"{_fmt(train[-1])} (reference {_fmt(ref.value)})", evidence={
                                    "best_epoch": v[b]["epoch"], "val_loss": val.tolist(),
                                    "train_loss": train.tolist(), "gap": gap.tolist(),
                                    "standard_error": se, "standard_error_from": how,
                                    "rise_z": z_rise, "passes_looked_at": len(v),
                                    "examples_carrying_rise": carried, "count_z": z_count,
                                    "gap_standard_error": se_gap, "gap_standard_error_from": how_gap,
                                    "reference": ref.to_dict()})
        return None


@register_detector
class Unscaled(Detector):
    name = "unscaled_inputs"
    consequences = AFTER_SCALE
    rule = ("the first layer's input has |mean| > max_mean or std > max_std (standardised data "
            "has mean 0, std 1; the range is deliberately not used), on the latest sample and on "
            "the first: the scale of the data is there from the first batch. An input at unit "
            "scale on the first sample that leaves it later is not the data's: it is the output "
            "of a layer training moved (the monitor measures the first floating-point input of "
            "a layer with weights, which behind an embedding of integer token ids is the "
            "embedding's output; Adam at lr 1 grows it by ~1 a step)")
    thresholds = {"max_mean": 5.0, "max_std": 5.0}
    fixes = ["standardise the inputs with training-split statistics (zero mean, unit variance)",
             "or divide raw pixels by 255"]

    def check(self, state):
        if not state.input_stats:
            return None
        mean, std = state.input_stats[-1]
        # the data do not change during training: a scale fault shows on the first sample too
        # (rule); one that appears later is a trained layer's output (an embedding's), whose
        # growth the divergence detectors explain
        if inputs_out_of_scale(state, self.t["max_mean"], self.t["max_std"]):
            first = state.param_layers[0] if state.param_layers else ""
            one_piece = bool(state.affine.get("affine_on_data"))
            return self.verdict(state, f"inputs to '{first}' are not scaled: mean {_fmt(mean)}, "
                                f"std {_fmt(std)}" + (
                                    "; the network is affine on them (every unit stays in one "
                                    "linear piece), though not on standardised inputs"
                                    if one_piece else ""), layers=[first] if first else [],
                                evidence={"input_mean": mean, "input_std": std,
                                          "affine_on_data": one_piece,
                                          "onset_step": data_onset(state)})
        return None


@register_detector
class Frozen(Detector):
    name = "frozen_layers"
    explains = SLOW

    @classmethod
    def can_be_consequence(cls, verdict):
        """Only layers that have a gradient and do not move can be another fault's trace; a
        layer with requires_grad=False or outside the optimizer is a configuration fact."""
        ev = verdict.evidence
        return (not ev.get("requires_grad_false") and not ev.get("not_in_optimizer")
                and not ev.get("frozen_on_purpose") and not ev.get("no_gradient"))
    rule = ("a layer with parameters never changes: requires_grad is off, it is not in the "
            "optimizer (read from the optimizer when the monitor has it), it has a non-zero "
            "gradient but no update while other layers do move, or, with requires_grad on and "
            "in the optimizer, it has no gradient at all (.grad None) on every sample whose "
            "gradients were read since the first, at least `samples` of them, and never moved, "
            "while other layers do move (backward never reaches it: its forward ran under "
            "torch.no_grad() or on a detached tensor); when no layer moves, the "
            "learning rate is the cause (lr_schedule_decayed), not membership. Layers frozen on "
            "purpose (expected_frozen, archlab train's --freeze over --init-from weights) are "
            "named only when the freeze keeps the run from learning: after loss_not_decreasing's min_steps the loss is less "
            "than its min_drop below the know-nothing reference (the symptom's own test) while "
            "the layers that do train move at a healthy rate (median update/weight ratio at "
            "least lr_too_low's min_update_ratio), no clipping binds and the learning rate has "
            "not decayed: the trainable part learns, and what it can reach through the frozen "
            "layers does not fit the data (frozen at their initial weights, or at weights that do "
            "not suit the task)")
    thresholds = {"samples": 2}
    fixes = ["set requires_grad=True on these layers", "pass all parameters to the optimizer",
             "if the freeze is deliberate, list the layers in HealthMonitor(expected_frozen=...)",
             "archlab train: drop --freeze, or load trained weights for those layers with "
             "--init-from RUN"]

    expected: tuple[str, ...] = ()   # layer paths frozen on purpose (set by the monitor)

    def check(self, state):
        # a path, its sub-layers, or a glob such as archlab train's --freeze 'conv*'
        expected = (lambda p: any(p == e or p.startswith(e + ".") or fnmatch.fnmatchcase(p, e)  # noqa: E731
                                  for e in self.expected)) if self.expected else (lambda p: False)
        anything = bool(self.expected)   # (no call of `expected` per layer when none is)
        frozen = [p for p in state.param_layers if state.frozen.get(p) and not (anything and expected(p))]
        outside = [p for p in state.param_layers if state.optimizer_params
                   and not state.optimizer_params.get(p, True) and p not in frozen
                   and not (anything and expected(p))]
        n = int(self.t["samples"])
        u, g = state.array("update_ratio", n), state.array("grad_norm", n)
        stuck, moving = [], 0
        if u.shape[0] >= n and not np.all(np.isnan(u)):
            still = np.all(u == 0, axis=0) & np.all(g > 0, axis=0)
            moves = np.any(u > 0, axis=0)
            for i, p in enumerate(state.param_layers):
                if p in frozen or p in outside or (anything and expected(p)):
                    continue
                if still[i]:
                    stuck.append(p)
                elif moves[i]:
                    moving += 1
        unreached = self._no_gradient(state, frozen, outside, expected, n, g) if moving else []
        if not moving or lr_decayed(state):
            stuck = []   # nothing moves: a learning-rate problem, not membership
        if not frozen and not stuck and not outside and not unreached:
            return self._frozen_on_purpose(state, expected)
        parts = []
        if frozen:
            parts.append(f"requires_grad=False: {', '.join(frozen[:5])}")
        if outside:
            parts.append(f"not in the optimizer: {', '.join(outside[:5])}")
        if stuck:
            parts.append(f"gradient but no update while {moving} layers move (not in the optimizer, "
                         f"or a parameter group with lr 0): {', '.join(stuck[:5])}")
        if unreached:
            parts.append(f"no gradient (.grad None) on any of the {len(state.sample_steps)} "
                         f"samples, with requires_grad on and in the optimizer, while {moving} "
                         f"layers move: backward never reaches {', '.join(unreached[:5])}")
        fixes = (["set requires_grad=True on these layers"] if frozen else []) + \
            (["pass all parameters to the optimizer (model.parameters())"] if outside or stuck else []) + \
            (["compute these layers outside torch.no_grad() and without .detach() / .data in "
              "forward, so that backward reaches them"] if unreached else []) + [self.fixes[2]]
        layers = frozen + outside + stuck + unreached
        return self.verdict(state, f"{len(layers)} layers never change; "
                            + "; ".join(parts), layers=layers,
                            evidence={"requires_grad_false": frozen, "not_in_optimizer": outside,
                                      "not_updated": stuck, "no_gradient": unreached,
                                      "layers_moving": moving}, fixes=fixes)

    @staticmethod
    def _no_gradient(state, frozen, outside, expected, samples, recent):
        """Layers with requires_grad on and in the optimizer that had no gradient (a nan norm:
        .grad None) on every sample whose gradients were read, at least ``samples`` of them,
        and whose update ratio was 0 (or unknown) on every sample: backward never reached them.
        A gradient that arrives on some steps only (a branch taken now and then) is not this."""
        if recent.size and state.grad_read and state.grad_read[-1] and not np.isnan(recent[-1]).any():
            return []   # every layer had a gradient on the latest read sample (most samples)
        g_all = state.array("grad_norm")
        read = np.array([bool(r) for r in state.grad_read[:g_all.shape[0]]], dtype=bool)
        if g_all.shape[0] == 0 or read.size != g_all.shape[0] or int(read.sum()) < samples:
            return []
        g = g_all[read]
        u = state.array("update_ratio")
        if u.shape != g_all.shape:
            return []
        none = np.all(np.isnan(g), axis=0) & np.all((u == 0) | np.isnan(u), axis=0)
        return [p for i, p in enumerate(state.param_layers) if i < none.size and none[i]
                and p not in frozen and p not in outside and not expected(p)
                and state.optimizer_params.get(p, True)]

    def _frozen_on_purpose(self, state, expected):
        """The layers frozen on purpose, when the freeze keeps the run from learning (rule)."""
        if not self.expected:
            return None
        held = [p for p in state.param_layers if expected(p) and (
            state.frozen.get(p) or (state.optimizer_params and not state.optimizer_params.get(p, True)))]
        if not held:
            return None
        stall = stalled_while_moving(state)
        if stall is None:
            return None   # the run learns (the freeze is what was meant), or nothing moves much
        d, med, per = stall
        return self.verdict(
            state, f"{len(held)} layers frozen on purpose ({', '.join(held[:5])}) keep the run "
            f"from learning: the loss is {relative_to_reference(d[2])} the know-nothing level after "
            f"{state.step + 1} steps while the {len(per)} trainable layers move at a median "
            f"update/weight ratio of {_fmt(med)}", layers=held,
            evidence={"frozen_on_purpose": held, "trainable_layers": list(per),
                      "median_update_ratio": med, "change": d[2],
                      "ruled_out": ["a learning rate too low for the trainable layers",
                                    "gradient clipping", "decayed schedule"],
                      **_reference_evidence(state)},
            fixes=["unfreeze these layers (drop them from --freeze / expected_frozen): frozen at "
                   "their initial random weights they are fixed random features",
                   "if they are meant to stay fixed, load trained weights into them first "
                   "(--init-from a checkpoint of the same design) and check that they suit this task"])


@register_detector
class Linear(Detector):
    name = "missing_nonlinearity"
    explains = SLOW
    rule = ("the whole network is an affine map of its input: f((a+b)/2) = (f(a)+f(b))/2 and "
            "f(3a-2b) = 3f(a)-2f(b) to rounding on real examples, in evaluation mode (whatever "
            "layers it uses: linear, convolution, pooling, normalisation, reshapes), and also on "
            "the same examples standardised (each input element to zero mean and unit spread "
            "over the probe) and paired with their negations: a network affine only on the data "
            "as fed (inputs far from unit scale keep every unit in one linear piece) is not "
            "affine, and unscaled_inputs names that cause; a probe whose examples are near-copies "
            "(RMS difference below 0.1 x their RMS size: they stay in one linear piece of a ReLU "
            "network) is refused and tried again on a later batch")
    thresholds: dict[str, float] = {}
    fixes = ["add an activation (ReLU) between the layers", "a stack of linear layers, "
             "convolutions and poolings equals one linear map: depth adds nothing without "
             "non-linearities"]

    def check(self, state):
        if state.linear_chain and state.linear_chain[-1]:
            chain = state.linear_chain[-1]
            return self.verdict(state, f"the network is affine in its input: no non-linearity "
                                f"between its {len(chain)} weight layers {' -> '.join(chain[:6])}",
                                layers=chain, evidence={"chain": chain, **state.affine})
        return None


LOGIT_LOSSES = ("cross_entropy", "bce_with_logits", "nll")
# the ops whose outputs are probabilities whatever their input (autograd node names, as read by
# structure.output_op from the model's output)
SQUASHING_OPS = ("SigmoidBackward", "SoftmaxBackward", "HardsigmoidBackward")


@register_detector
class ProbabilitiesAsLogits(Detector):
    name = "probabilities_as_logits"
    explains = SLOW
    rule = ("the loss expects logits (cross entropy with class-id targets, or a declared logit "
            "loss: cross_entropy, bce_with_logits, nll) but on the last `samples` samples the "
            "model's outputs are probabilities, judged by what made them, in any module: the op "
            "that produced the output is a sigmoid or softmax; or its rows lie in [0, 1] and sum "
            "to 1; or, after min_steps, every value lies in [0, 1] AND stays there when the input "
            "is scaled up 10x and 100x, pressed against 0 and 1 (structure.bounded_probe). Values "
            "in [0, 1] alone are not evidence: small logits lie there by chance")
    thresholds = {"samples": 3, "min_steps": 30}
    fixes = ["remove the final softmax/sigmoid: cross entropy (and BCEWithLogits) apply "
             "log-softmax (log-sigmoid) themselves",
             "or end with log_softmax and use NLL loss"]

    def check(self, state):
        n = int(self.t["samples"])
        rows, unit = state.output_is_probability[-n:], state.output_in_unit_range[-n:]
        if len(unit) < n:
            return None
        loss = state.reference.get("loss")
        if loss is not None and loss not in LOGIT_LOSSES:
            return None   # BCE, MSE, ...: probabilities are what the loss expects
        class_ids = state.targets.get("kind") == "classes" and state.output_width >= 2
        logit_loss = class_ids or loss in LOGIT_LOSSES
        ops = state.output_op[-n:]
        expects = "cross entropy on class ids" if class_ids else str(loss)
        if logit_loss and len(ops) == n and all(o in SQUASHING_OPS for o in ops):
            op = ops[-1].replace("Backward", "").lower()
            return self.verdict(state, f"the model's output is made by a {op} (probabilities) but "
                                f"the loss expects logits: {expects}",
                                evidence={"output_op": ops[-1], "loss": loss,
                                          "class_id_targets": class_ids},
                                fixes=[f"remove the final {op}: the loss applies its own"]
                                + self.fixes[1:])
        if all(rows) and (logit_loss or not state.targets):
            return self.verdict(state, "the model outputs probabilities (rows in [0, 1] summing "
                                "to 1) but the loss expects logits",
                                evidence={"output_rows_sum_to_one": True, "loss": loss,
                                          "output_op": ops[-1] if ops else ""})
        probe = state.bounded_output
        if all(unit) and state.step >= self.t["min_steps"] and logit_loss and probe.get("bounded"):
            return self.verdict(state, "every output lies in [0, 1] and stays there, saturated, "
                                f"when the input is scaled up {probe['scales']} (a squashing op "
                                f"at the end) but the loss expects logits: {expects}",
                                evidence={"outputs_in_unit_range": True, "loss": loss,
                                          "class_id_targets": class_ids, "probe": probe},
                                fixes=["remove the final sigmoid/softmax: the loss applies its own"]
                                + self.fixes[1:])
        return None


# register the detectors of the other modules (taxonomy-derived; regularisation too strong)
from . import detectors_regularisation, taxonomy  # noqa: E402,F401


def stalled_while_moving(state: HealthState):
    """(loss drop, median update ratio, per-layer ratios) when the loss fails loss_not_decreasing's
    own test while the trainable layers move at a healthy rate (median update/weight ratio at
    least lr_too_low's min_update_ratio), no clip binds and the learning rate has not decayed:
    a run held back by its structure (sigmoid layers, a freeze), not by its optimiser; else None."""
    flat = LossFlat.thresholds
    d = loss_drop(state, int(flat["min_steps"]))
    if d is None or -d[2] >= flat["min_drop"]:
        return None
    low = LrLow.thresholds
    med, per = _update_ratio(state, int(low["samples"]))
    if not (math.isfinite(med) and med >= low["min_update_ratio"]):
        return None
    if clipping_binding(state) or lr_decayed(state):
        return None
    return d, med, per
