"""Sample grids as PNG files (Pillow): generated images, reconstructions, interpolations."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch


def to_unit(x: torch.Tensor, value_range: tuple[float, float]) -> torch.Tensor:
    """Images in ``value_range`` (e.g. (-1, 1) for tanh generators) -> [0, 1], clipped."""
    lo, hi = value_range
    return ((x.detach().float().cpu() - lo) / (hi - lo)).clamp(0, 1)


def save_grid(images: torch.Tensor, path: str | Path, *, rows: int | None = None, pad: int = 2,
              scale: int = 2) -> Path:
    """(N, C, H, W) images in [0, 1] -> one PNG grid (``rows`` rows, square by default).

    One or three channels are drawn as grey or RGB; other channel counts show the first one.
    """
    from PIL import Image

    x = images.detach().float().cpu().clamp(0, 1)
    if x.dim() == 3:
        x = x.unsqueeze(1)
    n, c, h, w = x.shape
    if c not in (1, 3):
        x, c = x[:, :1], 1
    rows = rows or max(1, int(math.sqrt(n)))
    cols = math.ceil(n / rows)
    canvas = torch.ones((c, rows * (h + pad) + pad, cols * (w + pad) + pad)) * 0.5
    for i in range(n):
        r, k = divmod(i, cols)
        top, left = pad + r * (h + pad), pad + k * (w + pad)
        canvas[:, top:top + h, left:left + w] = x[i]
    arr = (canvas.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    img = Image.fromarray(arr[..., 0] if c == 1 else arr, mode="L" if c == 1 else "RGB")
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    img.save(tmp, format="PNG")
    tmp.replace(path)
    return path
