"""Resampling without (or before) weights: space-to-depth, depth-to-space, interpolation.

* ``space_to_depth`` downsamples losslessly by moving each r x r patch into channels
  (used as a stem in TResNet, Ridnik et al. 2021, and YOLOv5's Focus layer);
* ``depth_to_space`` is its inverse, the sub-pixel convolution's pixel shuffle (Shi et al. 2016);
* ``upsample`` is nearest or (bi/tri)linear interpolation, optionally followed by a
  conv-norm-act, the "resize then convolve" alternative to transposed convolutions that avoids
  checkerboard artefacts (Odena et al. 2016).
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, PositiveFloat, PositiveInt
from torch import nn

from ..errors import BlockError
from ..ops import Op, Shape, move_op
from .base import Block, BlockParams, register_block
from .basic import plan_module, plan_ops
from .layers import ActSpec, NormSpec, Order, conv_spatial, same_padding
from .plan import Plan


class FactorParams(BlockParams):
    """Settings of a lossless space/depth rearrangement."""

    factor: PositiveInt = Field(2, description="r: each r x r spatial patch becomes r*r channels")


@register_block
class SpaceToDepth(Block):
    """Space-to-depth (pixel unshuffle): a lossless 2x (or r x) downsampling.

    Shapes: (C, H, W) -> (C*r*r, H/r, W/r); H and W must be multiples of r. Shi et al. 2016
    (inverse of the pixel shuffle); a stem in TResNet (Ridnik et al. 2021).

    >>> from archlab.blocks import BLOCKS
    >>> BLOCKS['space_to_depth'].output_shape(BLOCKS['space_to_depth'].Params(), [(3, 224, 224)])
    (12, 112, 112)
    """

    name = "space_to_depth"
    family = "resample"
    Params = FactorParams
    input_ranks = (3,)
    inherits = ()
    examples = [({}, [(3, 8, 8)]), ({"factor": 4}, [(2, 8, 12)])]

    @classmethod
    def output_shape(cls, p, inputs):
        cls.check_inputs(inputs)
        c, h, w = inputs[0]
        r = p.factor
        if h % r or w % r:
            raise BlockError(
                f"space_to_depth needs height and width divisible by factor (={r}), "
                f"got {h}x{w} from input shape {tuple(inputs[0])}",
                fix=f"pad or crop to a multiple of {r}, or downsample with a stride-{r} conv instead",
                field="factor")
        return (c * r * r, h // r, w // r)

    @classmethod
    def ops(cls, p, inputs):
        return [move_op("", "pixel_unshuffle", (inputs[0],), cls.output_shape(p, inputs))]

    @classmethod
    def build(cls, p, inputs):
        return nn.PixelUnshuffle(p.factor)


@register_block
class DepthToSpace(Block):
    """Depth-to-space (pixel shuffle): r*r channels become an r x r spatial patch.

    Shapes: (C, H, W) -> (C/(r*r), H*r, W*r); C must be a multiple of r*r. Shi et al. 2016,
    "Real-Time Single Image and Video Super-Resolution Using an Efficient Sub-Pixel CNN".

    >>> from archlab.blocks import BLOCKS
    >>> BLOCKS['depth_to_space'].output_shape(BLOCKS['depth_to_space'].Params(), [(64, 16, 16)])
    (16, 32, 32)
    """

    name = "depth_to_space"
    family = "resample"
    Params = FactorParams
    input_ranks = (3,)
    inherits = ()
    examples = [({}, [(8, 4, 4)]), ({"factor": 3}, [(18, 5, 4)])]

    @classmethod
    def output_shape(cls, p, inputs):
        cls.check_inputs(inputs)
        c, h, w = inputs[0]
        r2 = p.factor * p.factor
        if c % r2:
            raise BlockError(
                f"depth_to_space needs channels divisible by factor^2 (={r2}), got {c} channels",
                fix=f"put a conv with out: {max(r2, c // r2 * r2)} (a multiple of {r2}) before it",
                field="factor")
        return (c // r2, h * p.factor, w * p.factor)

    @classmethod
    def ops(cls, p, inputs):
        return [move_op("", "pixel_shuffle", (inputs[0],), cls.output_shape(p, inputs))]

    @classmethod
    def build(cls, p, inputs):
        return nn.PixelShuffle(p.factor)


class UpsampleParams(BlockParams):
    """Settings of interpolation upsampling, optionally followed by a conv-norm-act."""

    scale: PositiveInt | PositiveFloat = Field(2, description="size multiplier; output = floor(size * scale)")
    mode: Literal["nearest", "bilinear"] = Field(
        "nearest", description="nearest, or bilinear (linear for (C, L), trilinear for (C, D, H, W))")
    out: PositiveInt | None = Field(None, description="if set: a conv to this many channels follows")
    kernel: PositiveInt = Field(3, description="kernel of the following conv ('same' padding)")
    norm: NormSpec = Field(NormSpec(kind="batch"), description="norm after the conv (only with out)")
    act: ActSpec = Field(ActSpec(kind="relu"), description="activation after the conv (only with out)")
    order: Order = Field("norm_act", description="norm_act | act_norm | pre (only with out)")


_LINEAR_MODE = {1: "linear", 2: "bilinear", 3: "trilinear"}


def _interp_mode(p, dims: int) -> str:
    return "nearest" if p.mode == "nearest" else _LINEAR_MODE[dims]


def upsample_plan(p, inp: Shape) -> Plan:
    dims = len(inp) - 1
    spatial = tuple(int(math.floor(s * float(p.scale))) for s in inp[1:])
    if any(s <= 0 for s in spatial):
        raise BlockError(f"upsample scale {p.scale} gives an empty feature map {spatial} from {inp[1:]}",
                         fix="use scale >= 1 (downsample with a pool or strided conv)", field="scale")
    mode = _interp_mode(p, dims)
    up = (inp[0], *spatial)
    # nearest copies; linear modes blend 2 neighbours per axis: 2**dims multiply-adds per output,
    # counted as element-wise work (PyTorch's flop counter does not count interpolation)
    work = 0 if mode == "nearest" else math.prod(up) * 2 ** dims
    align = None if mode == "nearest" else False
    plan = Plan(inp)
    plan.add(lambda: nn.Upsample(scale_factor=float(p.scale), mode=mode, align_corners=align),
             [Op(f"upsample_{mode}{dims}d", "", (inp,), up, elementwise=work)], up)
    if p.out is None:
        return plan
    kernel = (p.kernel,) * dims
    ones = (1,) * dims
    padding = same_padding(kernel, ones)
    out_shape = (p.out, *conv_spatial(spatial, kernel, ones, padding, ones))
    if p.order == "pre":
        plan.norm(p.norm).act(p.act)
    plan.conv(p.out, kernel, ones, padding, ones, 1, not (p.order == "norm_act" and p.norm.active),
              out_shape)
    if p.order != "pre":
        plan.norm_act(p.norm, p.act, p.order)
    return plan


@register_block
class Upsample(Block):
    """Nearest or bilinear upsampling, optionally followed by a conv-norm-act ("resize-convolution").

    Shapes: (C, H, W) -> (C, H*s, W*s), or (out, H*s, W*s) with ``out``; likewise (C, L) and
    (C, D, H, W). Odena et al. 2016, "Deconvolution and Checkerboard Artifacts": resize then
    convolve instead of a transposed conv; nearest upsampling + conv in U-Net variants
    (Ronneberger et al. 2015 use up-convolutions).

    >>> from archlab.blocks import BLOCKS
    >>> p = BLOCKS['upsample'].Params(scale=2, mode='bilinear', out=32)
    >>> BLOCKS['upsample'].output_shape(p, [(64, 16, 16)])
    (32, 32, 32)
    """

    name = "upsample"
    family = "resample"
    Params = UpsampleParams
    width_fields = ("out",)
    input_ranks = (2, 3, 4)
    inherits = ("norm", "act", "order")
    examples = [
        ({}, [(4, 5, 5)]),
        ({"scale": 2, "mode": "bilinear"}, [(4, 6, 6)]),
        ({"scale": 2, "out": 8}, [(4, 6, 6)]),
        ({"scale": 3, "mode": "bilinear", "out": 6, "kernel": 1, "norm": "none", "act": "silu"}, [(4, 5)]),
        ({"scale": 1.5, "out": 4, "order": "pre"}, [(4, 6, 6)]),
        ({"mode": "bilinear"}, [(2, 3, 4, 4)]),
    ]

    @classmethod
    def output_shape(cls, p, inputs):
        cls.check_inputs(inputs)
        return upsample_plan(p, inputs[0]).output

    @classmethod
    def ops(cls, p, inputs):
        return plan_ops(upsample_plan(p, inputs[0]))

    @classmethod
    def build(cls, p, inputs):
        return plan_module(upsample_plan(p, inputs[0]))
