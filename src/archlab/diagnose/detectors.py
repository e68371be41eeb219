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
from .baselines import loss_reference, progress, running_baseline
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

    def to_dict(self) -> dict:
        return {"detector": self.detector, "step": self.step, "severity": self.severity,
                "kind": self.kind, "explained_by": list(self.explained_by),
                "message": self.message, "layers": list(self.layers),
                "evidence": _plain(self.evidence), "thresholds": dict(self.thresholds),
                "fixes": list(self.fixes)}


# The verdict hierarchy: a SYMPTOM detector reads the loss curve only and says what is wrong
# (the loss does not fall, it swings), never why; a CAUSE detector names why. A symptom raised
# while a cause that can produce it (``Detector.explains``) has been found is attributed to that
# cause (``Verdict.explained_by``): the summary names the cause with the symptom as its
# evidence. A symptom with no such cause stands alone: "found, cause unknown".
SYMPTOMS = ("loss_not_decreasing", "oscillating_loss")
SLOW = ("loss_not_decreasing",)   # causes that slow or stop learning but cannot make it swing


def attribute(events: list[Verdict], explains: dict[str, tuple[str, ...]]) -> None:
    """Set ``explained_by`` of every symptom verdict in ``events``: the cause verdicts among
    ``events`` whose detector ``explains`` (detector name -> symptoms) that symptom."""
    causes = [v.detector for v in events if v.kind == "cause"]
    for v in events:
        if v.kind == "symptom":
            v.explained_by = [c for c in causes if v.detector in explains.get(c, ())]


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
    if len(losses) < min_steps or not np.all(np.isfinite(losses)):
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
        return v


def scale_problems(state: HealthState) -> dict:
    """Visible alternatives to a training fault: inputs or regression targets far from unit
    scale make gradients large (or small) by themselves. {'input_scale': ..., 'target_scale':
    ...} for those present (their own detectors report them)."""
    out = {}
    if state.input_stats:
        mean, std = state.input_stats[-1]
        if abs(mean) > 5 or std > 5:
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
        if sizes and float(np.median(sizes)) < min_batch:
            bad[layer] = float(np.median(sizes))
    return bad


@register_detector
class Exploding(Detector):
    name = "exploding_gradients"
    rule = ("the loss blows up (non-finite after the weights diverged, or its recent maximum is "
            "> loss_factor x both the know-nothing reference and the running baseline of the "
            "preceding steps), or the total gradient norm grows by growth_factor over its early "
            "median, or exceeds grad_norm_limit while the inputs and targets are scaled (large "
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
        return v

    def check(self, state):
        losses = state.loss_array()
        finite = losses[np.isfinite(losses)]
        nf = state.nonfinite
        if nf and nf.get("cause") in ("weights", "loss") or (
                nf and nf.get("cause") in ("forward", "gradient") and nf.get("builtin", True)):
            return self.verdict(state, f"loss blew up: non-finite at step {nf['step']} "
                                f"({nf.get('detail', '')})", layers=[nf["layer"]] if nf.get("layer")
                                else [], evidence={"nonfinite_step": nf["step"],
                                                   **_reference_evidence(state)})
        ref = loss_reference(state)
        base = running_baseline(losses)
        if finite.size >= 10 and ref is not None and ref.value > 0 and math.isfinite(base) and base > 0:
            peak = float(finite[-5:].max())
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
        early = float(np.median(np.sqrt(np.nansum(g[:3] ** 2, axis=1))))
        latest = float(np.sqrt(np.nansum(g[-1] ** 2)))
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
                                    "ruled_out": "input and target scale, batch-norm batch size",
                                    "largest_layers": {n: g[-1][state.param_layers.index(n)]
                                                       for n in top}})
        return None

    @staticmethod
    def _top_layers(state, row) -> list[str]:
        order = np.argsort(-np.nan_to_num(row, nan=-1.0, posinf=1e308))
        return [state.param_layers[i] for i in order[:3] if not math.isnan(row[i])]


@register_detector
class Vanishing(Detector):
    name = "vanishing_gradients"
    explains = SLOW
    rule = ("a layer gets no gradient at all (norm exactly 0) while it should learn, or the "
            "earliest layers' relative gradient |g|/|w| is below ratio x the largest layer's "
            "(medians over the last `samples` samples)")
    thresholds = {"ratio": 1e-3, "samples": 3}
    fixes = ["add skip connections (residual blocks)", "add normalisation (batch norm)",
             "replace sigmoid/tanh by ReLU-family activations", "use He/Glorot initialisation",
             "scale the inputs"]

    def check(self, state):
        n = int(self.t["samples"])
        g = _median_rows(state.array("grad_norm", n))
        w = _median_rows(state.array("weight_norm", n))
        if g.size == 0:
            return None
        frozen = np.array([state.frozen.get(p, False) for p in state.param_layers])
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
        rel = np.where(live & (w > 0), g / np.where(w > 0, w, 1.0), math.nan)
        if np.all(np.isnan(rel)):
            return None
        best = float(np.nanmax(rel))
        if best <= 0 or not math.isfinite(best):
            return None
        low = [i for i in np.flatnonzero(~np.isnan(rel)) if rel[i] < self.t["ratio"] * best]
        first = int(np.flatnonzero(~np.isnan(rel))[0])
        if first not in low:
            return None
        names = [state.param_layers[i] for i in low]
        return self.verdict(
            state, f"relative gradient of '{state.param_layers[first]}' is {_fmt(rel[first])}, "
            f"{_fmt(rel[first] / best)} of the largest ({_fmt(best)}); {len(names)} layers "
            f"below {self.t['ratio']:g}x", layers=names,
            evidence={"relative_grad": {state.param_layers[i]: rel[i] for i in
                                        np.flatnonzero(~np.isnan(rel))}})


@register_detector
class DyingRelu(Detector):
    name = "dying_relu"
    explains = SLOW
    rule = ("in a ReLU layer more than dead_fraction of the units were never active (output > 0) "
            "on any example of the sampled batches of the window")
    thresholds = {"dead_fraction": 0.5}
    fixes = ["use leaky ReLU or PReLU (Maas et al. 2013; He et al. 2015)",
             "lower the learning rate", "initialise biases at 0 (not negative) with He init",
             "add batch norm before the activation"]

    def check(self, state):
        d = state.array("dead_fraction", 1)
        if d.shape[0] == 0:
            return None
        row = d[-1]
        bad = [i for i in range(row.size) if not math.isnan(row[i]) and row[i] > self.t["dead_fraction"]]
        if not bad:
            return None
        names = [state.act_layers[i] for i in bad]
        worst = max(bad, key=lambda i: row[i])
        return self.verdict(state, f"{len(names)} ReLU layers with most units dead; worst "
                            f"'{state.act_layers[worst]}' {row[worst]:.0%} dead "
                            f"(> {self.t['dead_fraction']:.0%})", layers=names,
                            evidence={"dead_fraction": {state.act_layers[i]: row[i] for i in bad}})


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
        count = (~np.isnan(s)).sum(axis=0)
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
        ev = oscillation(window, c, self.t["z"], self.t["rise"])
        half = len(window) // 2
        first, last = float(np.median(window[:half])), float(np.median(window[half:]))
        if len(ev["rises"]) < self.t["rises"] or last < (1 - self.t["progress"]) * first:
            return None   # too few rises, or the loss still falls (halves: a swing's phase cancels)
        return self.verdict(state, f"loss oscillates: {len(ev['rises'])} rises of up to "
                            f"{_fmt(max(ev['rises']))} (each > {_fmt(ev['needed'])}: {self.t['z']:g} "
                            f"standard deviations of the same losses in random order and "
                            f"{self.t['rise']:.0%} of the running baseline {_fmt(ev['baseline'])}) "
                            f"in the last {c * k} steps, without net progress", evidence=ev)


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
    baseline = float(np.median(w))
    needed = max(z * null_sd, rise * abs(baseline))
    rises = [float(b - a) for a, b in zip(means[:-1], means[1:], strict=False) if b - a > needed]
    return {"chunk_means": means.tolist(), "rises": rises, "needed": needed, "baseline": baseline,
            "null_sd": null_sd}


WEIGHT_FLOOR = 0.1   # x the default-initialisation norm: below it, |dw|/|w| means nothing


def _update_ratio(state: HealthState, samples: int) -> tuple[float, dict]:
    """Median update/weight ratio over the layers that learn: a layer without a gradient, frozen,
    outside the optimizer, or whose parameters never changed in the window does not move
    whatever the learning rate, says nothing about it, and must not drag the median to 0.
    A layer whose weights are near zero is left out too: |dw|/|w| is huge as |w| -> 0 whatever
    the learning rate (a zero-initialised or collapsed layer). Near zero means a weight norm
    below WEIGHT_FLOOR x the norm a default initialisation of its shapes would give
    (:func:`~archlab.diagnose.structure.init_scale`): an order of magnitude below the scale
    any initialiser starts from. Remembered per sample (several rules ask)."""
    key = (samples, len(state.param_layers), len(state.init_scale), len(state.optimizer_params),
           *((len(state.series[k]), id(state.series[k])) for k in PARAM_SERIES))
    cached = state.__dict__.get("_update_ratio_cache")
    if cached is not None and cached[0] == key:
        return cached[1][0], dict(cached[1][1])
    value = _update_ratio_of(state, samples)
    state.__dict__["_update_ratio_cache"] = (key, value)
    return value[0], dict(value[1])


def _update_ratio_of(state: HealthState, samples: int) -> tuple[float, dict]:
    u = _median_rows(state.array("update_ratio", samples))
    g = _median_rows(state.array("grad_norm", samples))
    w = _median_rows(state.array("weight_norm", samples))
    ua = state.array("update_ratio", samples)
    never = np.all(np.nan_to_num(ua, nan=0.0) == 0, axis=0) if ua.shape[0] else np.zeros(u.size, bool)
    per = {}
    for i, p in enumerate(state.param_layers):
        if math.isnan(u[i]) or i >= g.size or not g[i] > 0 or state.frozen.get(p):
            continue
        if w[i] < WEIGHT_FLOOR * state.init_scale.get(p, math.nan):
            continue
        if state.optimizer_params and not state.optimizer_params.get(p, True):
            continue
        if never[i]:
            continue
        per[p] = u[i]
    vals = [v for v in per.values() if math.isfinite(v)]
    return (float(np.median(vals)) if vals else math.nan), per


def clipping_binding(state: HealthState, samples: int = 5, ratio: float = 10.0) -> dict | None:
    """Evidence that gradient clipping scales (nearly) every update down: the total gradient
    norm before clipping is > ``ratio`` x the declared threshold on most recent samples, or
    (threshold unknown: the loop clipped before the monitor read the gradients) the total norm
    is pinned at one value on ``samples`` samples in a row."""
    g = state.array("grad_norm", samples)
    if g.shape[0] < min(samples, 3):
        return None
    total = np.sqrt(np.nansum(g ** 2, axis=1))
    clip = state.clip.get("value") if state.clip else None
    if clip:
        over = total / float(clip)
        if np.mean(over > ratio) >= 0.8:
            return {"clip_value": float(clip), "median_norm_over_clip": float(np.median(over)),
                    "how": "declared threshold"}
        return None
    if g.shape[0] >= samples and total.max() > 0 and (total.max() - total.min()) <= 1e-4 * total.max():
        return {"clip_value": float(np.median(total)), "how": "total gradient norm pinned at one "
                f"value on {samples} samples in a row (clipped before it was read)"}
    return None


def lr_decayed(state: HealthState, ratio: float = 1e-3, min_steps: int = 20,
               min_fraction: float = 0.1) -> dict | None:
    """Evidence that the learning rate sits below ``ratio`` x its first value, for at least
    ``min_steps`` steps and ``min_fraction`` of the run (a schedule that ends at 0 in its last
    steps is fine; one that reaches 0 early stops training). Needs the optimizer."""
    if not state.lr or not (state.initial_lr > 0):
        return None
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


@register_detector
class LrHigh(Detector):
    name = "lr_too_high"
    rule = ("the median update-to-weight ratio |dw|/|w| over the layers that learn exceeds "
            "max_update_ratio (about 1e-3 is healthy), or the recent loss rises above "
            "rise_factor x both the know-nothing reference and the median of the first 10 losses")
    thresholds = {"max_update_ratio": 0.3, "rise_factor": 1.5, "samples": 2}
    fixes = ["lower the learning rate (x0.1)", "use a learning-rate warm-up",
             "clip gradients", "use Adam with default settings (lr 1e-3)"]

    def check(self, state):
        med, per = _update_ratio(state, int(self.t["samples"]))
        if math.isfinite(med) and med > self.t["max_update_ratio"]:
            top = sorted(per, key=lambda p: -per[p])[:3]
            return self.verdict(state, f"median update/weight ratio {_fmt(med)} > "
                                f"{self.t['max_update_ratio']:g} (healthy ~1e-3)", layers=top,
                                evidence={"median_update_ratio": med, "update_ratio": per})
        losses = state.loss_array()
        ref = loss_reference(state)
        if len(losses) >= 30 and np.all(np.isfinite(losses)) and ref is not None and ref.value > 0:
            start, now = float(np.median(losses[:10])), float(losses[-10:].mean())
            level = max(start, ref.value)
            if now > self.t["rise_factor"] * level:
                return self.verdict(state, f"loss rose to {_fmt(now)}, above {self.t['rise_factor']:g}"
                                    f" x max(first losses {_fmt(start)}, reference {_fmt(ref.value)})",
                                    evidence={"start_loss": start, "recent_loss": now,
                                              "reference": ref.to_dict(), "median_update_ratio": med})
        return None


@register_detector
class LrLow(Detector):
    name = "lr_too_low"
    explains = SLOW
    rule = ("after min_steps steps the median update-to-weight ratio of the layers that learn is "
            "below min_update_ratio and the loss is less than min_drop below the know-nothing "
            "reference, and no visible alternative explains the small updates: binding gradient "
            "clipping, a learning rate decayed to ~0 (their detectors report those), a run that "
            "diverged (a loss above `diverged` x the reference) or layers without gradient")
    thresholds = {"min_update_ratio": 1e-5, "min_drop": 0.1, "min_steps": 100, "samples": 3,
                  "diverged": 3.0}
    fixes = ["raise the learning rate (x10) or run a learning-rate range test",
             "use Adam with default settings (lr 1e-3)"]
    severity = "warning"

    def check(self, state):
        d = loss_drop(state, int(self.t["min_steps"]))
        if d is None or -d[2] >= self.t["min_drop"]:
            return None
        med, per = _update_ratio(state, int(self.t["samples"]))
        if not (math.isfinite(med) and med < self.t["min_update_ratio"]):
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
        lr = state.lr[-1] if state.lr else math.nan
        return self.verdict(state, f"median update/weight ratio {_fmt(med)} < "
                            f"{self.t['min_update_ratio']:g} and the loss is {relative_to_reference(d[2])} "
                            f"the know-nothing level" + (f" (lr {_fmt(lr)})" if math.isfinite(lr) else ""),
                            layers=list(per), evidence={
                                "median_update_ratio": med, "change": d[2], "lr": lr,
                                "ruled_out": ["gradient clipping", "decayed schedule"],
                                **_reference_evidence(state)})


@register_detector
class Overfitting(Detector):
    name = "overfitting"
    explains = ()   # a low training loss: neither symptom can hold
    rule = ("the training loss is low (below train_low x the know-nothing reference) and kept "
            "falling (in each of the last min_epochs epochs, by > train_fall overall) while the "
            "validation loss rose in each of the last two epochs, by more than rise (relative) "
            "and more than abs_rise x the know-nothing reference above its best epoch, and the "
            "train/validation gap grew in the last epochs, with a stable optimiser (median "
            "update/weight ratio below max_update_ratio)")
    # abs_rise: a network that memorises its data may move the validation loss from 0.01 to
    # 0.02, a 100 % rise of no consequence; the rise is measured against the know-nothing
    # level, not against a validation loss that depends on when the first epoch ended
    thresholds = {"rise": 0.1, "abs_rise": 0.02, "train_fall": 0.05, "min_epochs": 3,
                  "train_low": 0.5, "max_update_ratio": 0.1}   # 100x the healthy ~1e-3
    fixes = ["add regularisation: weight decay (L2) or dropout", "stop early at the best epoch",
             "collect more data or augment it", "use a smaller model"]
    severity = "warning"

    def check(self, state):
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
        if (b < len(v) - 1 and val[-1] > (1 + self.t["rise"]) * val[b]
                and val[-1] - val[b] > self.t["abs_rise"] * ref.value
                and train[-1] < (1 - self.t["train_fall"]) * train[b] and gap[-1] > gap[-2] > gap[b]):
            return self.verdict(state, f"validation loss {_fmt(val[b])} -> {_fmt(val[-1])} since "
                                f"epoch {v[b]['epoch']} while training loss {_fmt(train[b])} -> "
                                f"{_fmt(train[-1])} (reference {_fmt(ref.value)})", evidence={
                                    "best_epoch": v[b]["epoch"], "val_loss": val.tolist(),
                                    "train_loss": train.tolist(), "gap": gap.tolist(),
                                    "reference": ref.to_dict()})
        return None


@register_detector
class Unscaled(Detector):
    name = "unscaled_inputs"
    rule = ("the first layer's input has |mean| > max_mean or std > max_std (standardised data "
            "has mean 0, std 1; the range is deliberately not used)")
    thresholds = {"max_mean": 5.0, "max_std": 5.0}
    fixes = ["standardise the inputs with training-split statistics (zero mean, unit variance)",
             "or divide raw pixels by 255"]

    def check(self, state):
        if not state.input_stats:
            return None
        mean, std = state.input_stats[-1]
        if abs(mean) > self.t["max_mean"] or std > self.t["max_std"]:
            first = state.param_layers[0] if state.param_layers else ""
            return self.verdict(state, f"inputs to '{first}' are not scaled: mean {_fmt(mean)}, "
                                f"std {_fmt(std)}", layers=[first] if first else [],
                                evidence={"input_mean": mean, "input_std": std})
        return None


@register_detector
class Frozen(Detector):
    name = "frozen_layers"
    explains = SLOW
    rule = ("a layer with parameters never changes: requires_grad is off, it is not in the "
            "optimizer (read from the optimizer when the monitor has it), or it has a non-zero "
            "gradient but no update while other layers do move; when no layer moves, the "
            "learning rate is the cause (lr_schedule_decayed), not membership")
    thresholds = {"samples": 2}
    fixes = ["set requires_grad=True on these layers", "pass all parameters to the optimizer",
             "if the freeze is deliberate, list the layers in HealthMonitor(expected_frozen=...)"]

    expected: tuple[str, ...] = ()   # layer paths frozen on purpose (set by the monitor)

    def check(self, state):
        # a path, its sub-layers, or a glob such as archlab train's --freeze 'conv*'
        expected = lambda p: any(p == e or p.startswith(e + ".") or fnmatch.fnmatchcase(p, e)  # noqa: E731
                                 for e in self.expected)
        frozen = [p for p in state.param_layers if state.frozen.get(p) and not expected(p)]
        outside = [p for p in state.param_layers if state.optimizer_params
                   and not state.optimizer_params.get(p, True) and p not in frozen and not expected(p)]
        n = int(self.t["samples"])
        u, g = state.array("update_ratio", n), state.array("grad_norm", n)
        stuck, moving = [], 0
        if u.shape[0] >= n and not np.all(np.isnan(u)):
            still = np.all(u == 0, axis=0) & np.all(g > 0, axis=0)
            moves = np.any(u > 0, axis=0)
            for i, p in enumerate(state.param_layers):
                if p in frozen or p in outside or expected(p):
                    continue
                if still[i]:
                    stuck.append(p)
                elif moves[i]:
                    moving += 1
        if not moving or lr_decayed(state):
            stuck = []   # nothing moves: a learning-rate problem, not membership
        if not frozen and not stuck and not outside:
            return None
        parts = []
        if frozen:
            parts.append(f"requires_grad=False: {', '.join(frozen[:5])}")
        if outside:
            parts.append(f"not in the optimizer: {', '.join(outside[:5])}")
        if stuck:
            parts.append(f"gradient but no update while {moving} layers move (not in the optimizer, "
                         f"or a parameter group with lr 0): {', '.join(stuck[:5])}")
        fixes = (["set requires_grad=True on these layers"] if frozen else []) + \
            (["pass all parameters to the optimizer (model.parameters())"] if outside or stuck else []) + \
            [self.fixes[2]]
        return self.verdict(state, f"{len(frozen) + len(stuck) + len(outside)} layers never change; "
                            + "; ".join(parts), layers=frozen + outside + stuck,
                            evidence={"requires_grad_false": frozen, "not_in_optimizer": outside,
                                      "not_updated": stuck, "layers_moving": moving}, fixes=fixes)


@register_detector
class Linear(Detector):
    name = "missing_nonlinearity"
    explains = SLOW
    rule = ("the whole network is an affine map of its input: f((a+b)/2) = (f(a)+f(b))/2 and "
            "f(3a-2b) = 3f(a)-2f(b) to rounding on real examples, in evaluation mode (whatever "
            "layers it uses: linear, convolution, pooling, normalisation, reshapes)")
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


from . import taxonomy  # noqa: E402,F401  registers the taxonomy-derived detectors
