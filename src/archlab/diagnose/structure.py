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


def affine_test(module: nn.Module, inputs: tuple, pairs: int = 4, tol: float = 1e-4) -> dict | None:
    """Evidence on whether ``module`` (called as ``module(*inputs)``) is affine in its first
    argument; None when the test cannot tell (non-float or unbatched input, other tensor
    arguments, fewer than 2 examples, an output that does not depend on the input, an error).

    Returns ``{"affine": bool, "midpoint_error", "extrapolation_error", "examples"}``; errors are
    relative to the largest deviation of an output from its mean over the probe batch."""
    if not inputs or not isinstance(inputs[0], torch.Tensor) or len(inputs) > 1:
        return None
    x = inputs[0].detach()
    if not x.is_floating_point() or x.dim() < 2 or x.shape[0] < 2 or not torch.isfinite(x).all():
        return None
    k = min(pairs, x.shape[0] // 2)
    a, b = x[:k], x[k:2 * k]
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
    return {"affine": mid < tol and ext < tol, "midpoint_error": mid,
            "extrapolation_error": ext, "examples": 2 * k}


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
