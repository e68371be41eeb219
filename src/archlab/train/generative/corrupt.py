"""Input corruptions for denoising autoencoders and the built-in image-to-image tasks.

``--corrupt KIND=AMOUNT`` (one of them):

========= ====================================================================================
mask=P    each pixel is set to 0 with probability P (masking noise, Vincent et al. 2008)
noise=S   additive Gaussian noise of standard deviation S, in units of the image range [0, 1]
blur=S    Gaussian blur of standard deviation S pixels (a 4S+1 kernel, reflect padding)
erase=F   a square of side F x the image side, at a random place, is set to 0 (inpainting)
========= ====================================================================================

Corruptions work on images scaled to [0, 1] (N, C, H, W) and draw their randomness from a given
``torch.Generator``: a denoising run's corruption is seeded (a fresh draw per epoch from
(seed, epoch), the test split's from the seed alone), so a rerun sees exactly the same inputs.
The target is always the clean image: corruption is applied to the inputs only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ...errors import UsageError

KINDS = {"mask": (0.0, 1.0), "noise": (0.0, 10.0), "blur": (0.0, 10.0), "erase": (0.0, 1.0)}


@dataclass(frozen=True)
class Corruption:
    kind: str
    amount: float

    @classmethod
    def parse(cls, text: str) -> Corruption:
        """``'mask=0.5'`` -> Corruption('mask', 0.5), with errors that name the valid forms."""
        kind, sep, value = text.partition("=")
        kind = kind.strip()
        if kind not in KINDS or not sep:
            raise UsageError(f"--corrupt expects KIND=AMOUNT with KIND one of {', '.join(KINDS)}; "
                             f"received '{text}'", fix="e.g. --corrupt mask=0.5 or --corrupt noise=0.3")
        try:
            amount = float(value)
        except ValueError:
            raise UsageError(f"--corrupt {kind}= takes a number; received '{value}'",
                             fix=f"e.g. --corrupt {kind}=0.3") from None
        lo, hi = KINDS[kind]
        if not (lo < amount <= hi) or (kind in ("mask", "erase") and amount >= 1.0):
            raise UsageError(f"--corrupt {kind}={amount}: expected a value in ({lo}, {hi})",
                             fix=f"e.g. --corrupt {kind}=0.3")
        return cls(kind, amount)

    def __str__(self) -> str:
        return f"{self.kind}={self.amount:g}"

    def apply(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """(N, C, H, W) images in [0, 1] -> corrupted copies (the input is not changed)."""
        if self.kind == "mask":
            keep = torch.rand(x.shape, generator=generator, device="cpu").to(x.device) >= self.amount
            return x * keep
        if self.kind == "noise":
            return x + self.amount * torch.randn(x.shape, generator=generator, device="cpu").to(x.device)
        if self.kind == "blur":
            return gaussian_blur(x, self.amount)
        return _erase(x, self.amount, generator)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, C, H, W) images, sigma in pixels."""
    radius = max(1, math.ceil(2 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    pad = min(radius, x.shape[-1] - 1, x.shape[-2] - 1)
    out = F.pad(x, (pad, pad, pad, pad), mode="reflect") if pad == radius else F.pad(
        x, (radius, radius, radius, radius), mode="replicate")
    out = F.conv2d(out, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(out, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def _erase(x: torch.Tensor, fraction: float, generator: torch.Generator) -> torch.Tensor:
    n, _, h, w = x.shape
    side_h, side_w = max(1, round(fraction * h)), max(1, round(fraction * w))
    top = torch.randint(0, h - side_h + 1, (n,), generator=generator)
    left = torch.randint(0, w - side_w + 1, (n,), generator=generator)
    rows = torch.arange(h).view(1, h, 1)
    cols = torch.arange(w).view(1, 1, w)
    hole = ((rows >= top.view(n, 1, 1)) & (rows < (top + side_h).view(n, 1, 1))
            & (cols >= left.view(n, 1, 1)) & (cols < (left + side_w).view(n, 1, 1)))
    return x * (~hole).unsqueeze(1).to(x.device)
