"""What a network computes, judged from its behaviour rather than from its layer types.

* :func:`affine_test`: is the whole network an affine map of its input? A network without a
  non-linearity (linear layers, convolutions, pooling, normalisation in evaluation mode,
  reshapes, concatenations, in any module, written in any way) satisfies
  ``f((a + b) / 2) = (f(a) + f(b)) / 2`` and ``f(3a - 2b) = 3 f(a) - 2 f(b)`` exactly (to
  floating-point rounding); one ReLU, sigmoid, attention softmax or gate breaks both. The
  test runs the network once, in evaluation mode and without gradients, on a few examples of a
  real batch and their combinations, so it needs no knowledge of the layer types at all.
* :func:`output_ranges`: whether the outputs are probabilities (every value in [0, 1]; rows
  summing to 1), whatever op produced them (softmax, sigmoid, a hand-written normalisation).
"""

from __future__ import annotations

import torch
from torch import nn


def _first_tensor(value):
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)) and value:
        return _first_tensor(value[0])
    return None


# examples whose differences are below a tenth of their size are near-copies to the affine test:
# 3a - 2b then moves 2 (a - b) from a, too little to cross a ReLU's kink in most units; real
# examples of one data set differ by about their own size (standardised: sqrt(2) x)
NEAR_COPY = 0.1


def affine_test(module: nn.Module, inputs: tuple, pairs: int = 4, tol: float = 1e-4) -> dict | None:
    """Evidence on whether ``module`` (called as ``module(*inputs)``) is affine in its first
    argument; None when the test cannot tell (non-float or unbatched input, other tensor
    arguments, fewer than 2 examples, examples that are near-copies of each other (their RMS
    difference below NEAR_COPY x their RMS size), an output that does not depend on the input,
    an error).

    Returns ``{"affine": bool, "midpoint_error", "extrapolation_error", "examples"}``; errors are
    relative to the largest deviation of an output from its mean over the probe batch. A network
    that is affine on the examples as given but not on the same examples standardised (each
    input element to zero mean and unit spread over the probe, paired with their negations) is
    not affine: its inputs sit in one linear piece of its non-linearities, and the result says
    so (``"affine_on_data": True`` with the standardised probe's errors)."""
    if not inputs or not isinstance(inputs[0], torch.Tensor) or len(inputs) > 1:
        return None
    x = inputs[0].detach()
    if not x.is_floating_point() or x.dim() < 2 or x.shape[0] < 2 or not torch.isfinite(x).all():
        return None
    k = min(pairs, x.shape[0] // 2)
    a, b = x[:k], x[k:2 * k]
    # near-copies (generated images early in training, a batch of one repeated example): the
    # probe's points, 3a - 2b included, stay inside one linear piece of a ReLU network, which
    # then passes as affine. The examples must differ by at least NEAR_COPY of their own size
    size = float(x[:2 * k].double().pow(2).mean().sqrt())
    apart = float((a - b).double().pow(2).mean().sqrt())
    if not size > 0 or apart < NEAR_COPY * size:
        return None
    first = _affine_errors(module, a, b)
    if first is None:
        return None
    mid, ext = first
    out = {"affine": mid < tol and ext < tol, "midpoint_error": mid,
           "extrapolation_error": ext, "examples": 2 * k}
    if not out["affine"]:
        return out
    # affine on the data as fed. A function that is affine is affine everywhere; a ReLU network
    # is affine on any set of inputs that keeps every unit on one side of its kink, which is
    # what inputs far from unit scale do (an offset of 40, a column in the tens of thousands:
    # w.x dwarfs every bias, so each unit is on, or off, for all of them). The same examples,
    # standardised per input element over the probe and paired with their negations (z, -z:
    # w.z changes sign between them, so the kinks near the origin are crossed), tell the two
    # apart: still affine there, the function is affine (no non-linearity on any path); not
    # affine, only the data sits in one linear piece (a consequence of the input's scale)
    xs = x[:2 * k].double()
    sd = xs.std(0, keepdim=True)
    z = ((xs - xs.mean(0, keepdim=True)) / torch.where(sd > 0, sd, torch.ones_like(sd))).to(x.dtype)
    zk = z[:k]
    if float(zk.double().pow(2).mean()) > 0:
        second = _affine_errors(module, zk, -zk)
        if second is not None and not (second[0] < tol and second[1] < tol):
            out.update({"affine": False, "affine_on_data": True,
                        "standardised_midpoint_error": second[0],
                        "standardised_extrapolation_error": second[1]})
    return out


def _affine_errors(module: nn.Module, a: torch.Tensor, b: torch.Tensor) -> tuple[float, float] | None:
    """(midpoint error, extrapolation error) of ``module`` on the examples ``a`` and ``b``,
    relative to the spread of its outputs; None when it cannot tell (an error, non-finite or
    input-independent output)."""
    k = a.shape[0]
    probe = torch.cat([a, b, 0.5 * (a + b), 3 * a - 2 * b])
    modes = {m: m.training for m in module.modules()}
    try:
        module.eval()
        with torch.no_grad():
            out = _first_tensor(module(probe))
    except Exception:   # the test is best effort: never break training
        return None
    finally:
        for m, was in modes.items():
            m.training = was
    if out is None or not out.is_floating_point() or out.shape[0] != 4 * k:
        return None
    out = out.double().reshape(4 * k, -1)
    fa, fb, fm, fe = out[:k], out[k:2 * k], out[2 * k:3 * k], out[3 * k:]
    if not torch.isfinite(out).all():
        return None
    # errors relative to how much the output varies with the input, not to its size: a network
    # with a large constant offset and a small input-dependent part (deep sigmoid stacks) must
    # not look affine because its offset dwarfs its non-linearity
    spread = float((out - out.mean(0, keepdim=True)).abs().max())
    if spread <= 1e-6 * float(out.abs().max()) or spread == 0:
        return None   # the output does not depend on the input (dead or zero network)
    mid = float((fm - 0.5 * (fa + fb)).abs().max()) / spread
    ext = float((fe - (3 * fa - 2 * fb)).abs().max()) / spread
    return mid, ext


def output_ranges(y: torch.Tensor) -> tuple[bool, bool]:
    """(rows are probability vectors, every value lies in [0, 1] and they are not all equal)
    for an output of shape (N, F, ...)."""
    if y is None or not y.is_floating_point() or y.dim() < 1 or y.numel() < 2:
        return False, False
    yd = y.detach()
    lo, hi = float(yd.min()), float(yd.max())
    unit = lo >= 0 and hi <= 1 and hi - lo > 1e-4
    rows = (unit and yd.dim() == 2 and yd.shape[1] >= 2
            and float((yd.sum(1) - 1).abs().max()) < 1e-3)
    return rows, unit


def init_scale(params: list[torch.Tensor], is_norm: bool = False) -> float:
    """The norm PyTorch's default initialisation gives a layer's parameters, from their shapes
    alone: a weight of shape (out, in, ...) drawn with std 1/sqrt(3 fan_in) (the default
    kaiming_uniform(a=sqrt(5)) of linear and convolution layers) has norm sqrt(out / 3); the
    scale of a normalisation layer (``is_norm``) starts at 1, norm sqrt(numel); biases count 0
    (they may start at 0). nan when the layer has neither (no scale to compare with)."""
    sq = sum(p.shape[0] / 3 for p in params if p.dim() >= 2)
    if not sq and is_norm and params:
        sq = float(params[0].numel())
    return float(sq) ** 0.5 if sq else float("nan")


def identical_units(params: list[torch.Tensor]) -> bool:
    """Whether every unit of a layer starts the same: each weight of shape (out, ...) with
    out >= 2 has identical rows and each bias identical entries (a zero or constant
    initialisation). Such units compute the same output, receive the same gradient, and stay
    identical: symmetry is never broken (Goodfellow et al., Deep Learning, 2016, sec. 8.4)."""
    weights = [p for p in params if p.dim() >= 2]
    if not weights or any(w.shape[0] < 2 for w in weights):
        return False
    with torch.no_grad():
        for p in params:
            d = p.detach()
            flat = d.reshape(d.shape[0], -1) if d.dim() >= 2 else d.reshape(-1, 1)
            if flat.shape[0] >= 2 and not torch.equal(flat, flat[:1].expand_as(flat)):
                return False
    return True


def output_op(y: torch.Tensor | None) -> str:
    """The op that produced ``y``: its autograd node's name without the version digits
    ('SigmoidBackward', 'AddmmBackward'); '' without a graph (no_grad, a leaf)."""
    fn = getattr(y, "grad_fn", None)
    return type(fn).__name__.rstrip("0123456789") if fn is not None else ""


def bounded_probe(module: nn.Module, inputs: tuple, scales=(10.0, 100.0), examples: int = 16,
                  saturated: float = 0.5) -> dict | None:
    """Does the output stay in [0, 1] because an op bounds it, or only by chance? The network is
    run (evaluation mode, no gradients) on its input scaled by ``scales``: logits grow with the
    input and leave [0, 1] (``{"bounded": False}``); the outputs of a sigmoid or softmax, however
    written, stay inside and are pressed against the bounds (``{"bounded": True}`` when at least
    ``saturated`` of them lie within 0.01 of 0 or 1 at the largest scale). None when the probe
    cannot tell: non-float or unbatched input, other tensor arguments, an output that neither
    leaves [0, 1] nor saturates (e.g. a network that normalises its input away), an error."""
    if not inputs or len(inputs) > 1 or not isinstance(inputs[0], torch.Tensor):
        return None
    x = inputs[0].detach()[:examples]
    if not x.is_floating_point() or x.dim() < 2 or not torch.isfinite(x).all():
        return None
    modes = {m: m.training for m in module.modules()}
    outs = []
    try:
        module.eval()
        with torch.no_grad():
            for s in scales:
                outs.append(_first_tensor(module(x * s)))
    except Exception:   # best effort: never break training
        return None
    finally:
        for m, was in modes.items():
            m.training = was
    if any(o is None or not o.is_floating_point() or not torch.isfinite(o).all() for o in outs):
        return None
    lo, hi = min(float(o.min()) for o in outs), max(float(o.max()) for o in outs)
    if lo < 0 or hi > 1:
        return {"bounded": False, "scales": list(scales), "range": [lo, hi]}
    last = outs[-1].double()
    pressed = float(((last < 0.01) | (last > 0.99)).double().mean())
    if pressed >= saturated:
        return {"bounded": True, "scales": list(scales), "range": [lo, hi], "saturated": pressed}
    return None
