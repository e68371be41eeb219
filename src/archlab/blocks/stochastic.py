"""Layer scale and stochastic depth (drop path): two settings of residual branches.

* **Layer scale** (Touvron et al. 2021, CaiT, "Going deeper with image transformers"; Liu et al.
  2022, ConvNeXt): the residual branch is multiplied by a learned per-channel vector ``gamma``
  that starts small (1e-6 in ConvNeXt, 1e-5 to 1e-6 in CaiT), so a deep stack starts close to
  the identity. ``C`` parameters per branch; one multiply per element.
* **Stochastic depth / drop path** (Huang et al. 2016, "Deep networks with stochastic depth";
  used by EfficientNet, DeiT, ConvNeXt): in training, the residual branch of each sample is
  dropped with probability ``rate`` (the sample keeps only its shortcut) and kept branches are
  scaled by ``1 / (1 - rate)``; at inference it does nothing. No parameters, no multiply-adds,
  and nothing at inference, so the counts do not change: the op records carry a zero-cost
  ``drop_path`` record whose ``extra`` says it is there (``training_only``, ``rate``).

A design gives each block its own rate, or a schedule for the whole network with the top-level
key ``drop_path: {rate: 0.1, schedule: linear}`` (the rate grows linearly with depth, as in the
papers; see docs/design-language.md).

:class:`DropPath` draws one Bernoulli variable per sample, as ``torchvision.ops.stochastic_depth``
(mode 'row') and timm's ``DropPath``.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor, nn

from ..ops import Op, Shape, numel
from .base import Block, BlockParams, register_block


class DropPath(nn.Module):
    """(N, *S) -> (N, *S): in training, zero each sample with probability ``rate`` and scale
    the others by 1 / (1 - rate); the identity in eval mode."""

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.rate = float(rate)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        shape = [x.shape[0]] + [1] * (x.dim() - 1)
        noise = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(keep)
        if keep > 0.0:
            noise.div_(keep)
        return x * noise

    def extra_repr(self) -> str:
        return f"rate={self.rate}"


class LayerScale(nn.Module):
    """(N, C, *S) or (N, L, C) -> same: multiply by a learned per-channel ``gamma``.

    ``channel_axis`` is the axis of the per-sample shape that holds the channels: 0 for
    channels-first maps (C, H, W), -1 for tokens (L, D). The parameter is stored in the shape
    that broadcasts, ``(C, 1, 1)`` or ``(D,)``, as torchvision's ConvNeXt and timm store it."""

    def __init__(self, shape: Shape, channel_axis: int, init: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full(scale_shape(shape, channel_axis), float(init)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


def scale_shape(shape: Shape, channel_axis: int) -> tuple[int, ...]:
    """Broadcasting shape of a per-channel scale for per-sample ``shape``."""
    if channel_axis in (-1, len(shape) - 1):
        return (shape[-1],)
    return (shape[0], *([1] * (len(shape) - 1)))


def layer_scale_ops(path: str, shape: Shape, channel_axis: int) -> list[Op]:
    channels = shape[-1] if channel_axis in (-1, len(shape) - 1) else shape[0]
    return [Op("mul", path, (shape,), shape, params=channels, elementwise=numel(shape),
               weights_read=channels)]


def drop_path_ops(path: str, shape: Shape, rate: float) -> list[Op]:
    """A zero-cost record saying drop path is there: it works in training only, so the counts
    (inference form) have no work for it; ``extra`` keeps the rate and its training cost."""
    if rate <= 0:
        return []
    return [Op("drop_path", path, (shape,), shape,
               extra={"rate": rate, "training_only": True, "training_elementwise": numel(shape)})]


def make_drop_path(rate: float) -> nn.Module | None:
    return DropPath(rate) if rate > 0 else None


# ------------------------------------------------------------------------- the blocks -------


class LayerScaleParams(BlockParams):
    """Settings of a layer-scale node."""

    init: float = Field(1e-6, description="starting value of every gamma (ConvNeXt 1e-6; CaiT "
                        "1e-1 to 1e-6 by depth)")
    axis: int = Field(0, description="axis of the per-sample shape holding the channels: 0 for "
                      "(C, H, W) maps and (C, L) sequences, -1 for tokens (L, D)")


@register_block
class LayerScaleBlock(Block):
    """Multiply by a learned per-channel scale (layer scale) before a residual add.

    Shapes: (*S) -> (*S). Touvron et al. 2021 (CaiT); Liu et al. 2022 (ConvNeXt). Usually set
    as ``residual: {layer_scale: 1e-6}`` on the residual node; this block is the same scale as a
    node of its own. Parameters: C.

    >>> from archlab.blocks import BLOCKS
    >>> B = BLOCKS['layer_scale']
    >>> B.param_count(B.Params(), [(96, 56, 56)])
    96
    """

    name = "layer_scale"
    family = "residual"
    Params = LayerScaleParams
    inherits = ()
    examples = [({}, [(6, 4, 4)]), ({"init": 0.1, "axis": -1}, [(5, 8)])]

    @classmethod
    def output_shape(cls, p, inputs):
        cls.check_inputs(inputs)
        from ..errors import BlockError

        if p.axis not in (0, -1, len(inputs[0]) - 1):
            raise BlockError(f"layer_scale 'axis' must be 0 (channels first) or -1 (tokens), "
                             f"got {p.axis}", fix="use axis: 0 or axis: -1", field="axis")
        return tuple(inputs[0])

    @classmethod
    def ops(cls, p, inputs):
        return layer_scale_ops("", tuple(inputs[0]), p.axis)

    @classmethod
    def build(cls, p, inputs):
        return LayerScale(tuple(inputs[0]), p.axis, p.init)


class DropPathParams(BlockParams):
    """Settings of a drop-path node."""

    drop_path: float = Field(0.0, ge=0, lt=1, description="probability of dropping a sample's "
                             "branch in training (Huang et al. 2016)")


@register_block
class DropPathBlock(Block):
    """Stochastic depth: drop the whole input of a sample with probability ``drop_path`` in training.

    Shapes: (*S) -> (*S). Huang et al. 2016. Put it last in a residual branch (a group with
    ``residual: true``), or use the ``drop_path`` setting of the residual node or of the blocks
    that have one. Nothing at inference; no parameters.

    >>> from archlab.blocks import BLOCKS
    >>> B = BLOCKS['drop_path']
    >>> B.multiply_adds(B.Params(drop_path=0.1), [(8, 4, 4)])
    0
    """

    name = "drop_path"
    family = "residual"
    Params = DropPathParams
    inherits = ()
    examples = [({"drop_path": 0.2}, [(6, 4, 4)]), ({}, [(5, 8)])]

    @classmethod
    def output_shape(cls, p, inputs):
        cls.check_inputs(inputs)
        return tuple(inputs[0])

    @classmethod
    def ops(cls, p, inputs):
        return drop_path_ops("", tuple(inputs[0]), p.drop_path)

    @classmethod
    def build(cls, p, inputs):
        return DropPath(p.drop_path)


__all__ = ["DropPath", "LayerScale", "drop_path_ops", "layer_scale_ops",
           "make_drop_path", "scale_shape"]
