"""Channel split, channel shuffle and the ShuffleNetV2 unit (Ma et al. 2018, "ShuffleNet V2:
Practical Guidelines for Efficient CNN Architecture Design").

``channel_split`` and ``channel_shuffle`` are plain nodes, so a design can compose new cells
from them (split, branch, ``merge: concat``, shuffle). ``shuffle_unit`` is the paper's building
block in one node, the way the paper and torchvision write it:

* stride 1 (figure 3c): split the channels in two halves; one half passes unchanged (G1: equal
  widths, G4: no element-wise add), the other goes through 1x1-BN-ReLU, 3x3 depthwise-BN,
  1x1-BN-ReLU; concatenate; shuffle the two groups so information crosses halves;
* stride 2 (figure 3d): no split; branch 1 = 3x3 depthwise stride 2-BN, 1x1-BN-ReLU; branch 2 =
  1x1-BN-ReLU, 3x3 depthwise stride 2-BN, 1x1-BN-ReLU; concatenate (channels double); shuffle.
"""

from __future__ import annotations

import torch
from pydantic import Field, PositiveInt, field_validator
from torch import nn

from ..errors import BlockError
from ..ops import Op, Shape, move_op
from .base import Block, BlockParams, register_block
from .inception import concat_shape, conv_unit
from .layers import ActSpec, NormSpec
from .plan import Plan

# ------------------------------------------------------------------------ channel split -----


class ChannelSplitParams(BlockParams):
    """Which part of a channel split this node outputs."""

    sizes: tuple[PositiveInt, ...] | None = Field(
        None, description="channels per part; default: two equal halves")
    part: int = Field(0, ge=0, description="index of the part this node outputs (0-based)")


def split_bounds(p: ChannelSplitParams, inp: Shape) -> tuple[int, int]:
    """(first channel, channel count) of the selected part."""
    channels = inp[0]
    if p.sizes is None:
        if channels % 2:
            raise BlockError(
                f"channel_split into halves needs an even channel count, got {channels} channels",
                fix=f"give the sizes, e.g. sizes: [{channels // 2}, {channels - channels // 2}]",
                field="sizes")
        sizes: tuple[int, ...] = (channels // 2, channels // 2)
    else:
        sizes = p.sizes
        if sum(sizes) != channels:
            raise BlockError(
                f"channel_split sizes must add up to the input channels ({channels}), "
                f"got sizes={list(sizes)} (sum {sum(sizes)})",
                fix="make the sizes add up to the input channels", field="sizes")
    if p.part >= len(sizes):
        raise BlockError(
            f"channel_split has {len(sizes)} parts (0..{len(sizes) - 1}), got part={p.part}",
            fix=f"use part: 0..{len(sizes) - 1}", field="part")
    return sum(sizes[: p.part]), sizes[p.part]


class ChannelSlice(nn.Module):
    """(N, C, ...) -> (N, length, ...): channels [start, start + length), a view (no copy)."""

    def __init__(self, start: int, length: int) -> None:
        super().__init__()
        self.start = start
        self.length = length

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.narrow(1, self.start, self.length)

    def extra_repr(self) -> str:
        return f"start={self.start}, length={self.length}"


@register_block
class ChannelSplit(Block):
    """Channel split: output one part of the input's channels (ShuffleNetV2, Ma et al. 2018).

    Shapes: (C, *S) -> (sizes[part], *S); with the default halves (C, H, W) -> (C/2, H, W).
    Two nodes with ``part: 0`` and ``part: 1`` on the same input give both halves. The slice is
    a view: no arithmetic, no copy, so the node lists no ops (its consumers read the channels).

    >>> from archlab.blocks import BLOCKS
    >>> split = BLOCKS['channel_split']
    >>> split.output_shape(split.Params(part=1), [(116, 28, 28)])
    (58, 28, 28)
    """

    name = "channel_split"
    family = "shufflenet"
    Params = ChannelSplitParams
    input_ranks = (2, 3, 4)
    inherits = ()
    examples = [
        ({"part": 1}, [(16, 5, 5)]),
        ({"sizes": [3, 5, 2], "part": 1}, [(10, 7)]),
    ]

    @classmethod
    def output_shape(cls, p, inputs):
        cls.check_inputs(inputs)
        _, length = split_bounds(p, inputs[0])
        return (length, *inputs[0][1:])

    @classmethod
    def ops(cls, p, inputs) -> list[Op]:
        # a view of the input: nothing is read, computed or written until a consumer reads it
        cls.output_shape(p, inputs)
        return []

    @classmethod
    def build(cls, p, inputs):
        return ChannelSlice(*split_bounds(p, inputs[0]))


# ---------------------------------------------------------------------- channel shuffle -----


class ChannelShuffleParams(BlockParams):
    groups: PositiveInt = Field(2, description="channel groups to interleave; 2 in ShuffleNetV2")


def shuffle_channels(x: torch.Tensor, groups: int) -> torch.Tensor:
    """(N, g*k, ...) -> (N, k*g, ...): channel i*k + j moves to j*g + i (a transpose of the
    g x k channel grid), so every group of the next grouped op sees channels of every group."""
    return x.unflatten(1, (groups, -1)).transpose(1, 2).flatten(1, 2)


class ChannelShuffle(nn.Module):
    """(N, C, ...) -> (N, C, ...), channels interleaved across ``groups``."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return shuffle_channels(x, self.groups)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"


def check_shuffle(channels: int, groups: int) -> None:
    if channels % groups:
        raise BlockError(
            f"channel_shuffle needs channels divisible by groups, got channels={channels}, "
            f"groups={groups}",
            fix="use groups that divide the channel count", field="groups")


@register_block
class ChannelShuffleBlock(Block):
    """Channel shuffle (Zhang et al. 2018, ShuffleNet; Ma et al. 2018, ShuffleNetV2): reshape the
    channels to (groups, C/groups), transpose, flatten, so information flows across groups.

    Shapes: (C, *S) -> (C, *S). Pure data movement: no parameters, no arithmetic, but it reads
    and writes every element once (a real cost, guideline G4).

    >>> import torch
    >>> from archlab.blocks.shufflenet import shuffle_channels
    >>> shuffle_channels(torch.arange(6.).view(1, 6, 1), 2).flatten().tolist()
    [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]
    """

    name = "channel_shuffle"
    family = "shufflenet"
    Params = ChannelShuffleParams
    input_ranks = (2, 3, 4)
    inherits = ()
    examples = [
        ({}, [(16, 5, 5)]),
        ({"groups": 3}, [(12, 7)]),
    ]

    @classmethod
    def output_shape(cls, p, inputs):
        cls.check_inputs(inputs)
        check_shuffle(inputs[0][0], p.groups)
        return tuple(inputs[0])

    @classmethod
    def ops(cls, p, inputs) -> list[Op]:
        shape = cls.output_shape(p, inputs)
        return [move_op("", "channel_shuffle", (shape,), shape)]

    @classmethod
    def build(cls, p, inputs):
        return ChannelShuffle(p.groups)


# ------------------------------------------------------------------------- shuffle unit -----


class ShuffleUnitParams(BlockParams):
    """A ShuffleNetV2 unit."""

    out: PositiveInt | None = Field(
        None, description="output channels, even; default: C at stride 1, 2C at stride 2")
    stride: int = Field(1, description="1 = split unit (out must equal C), 2 = downsampling unit")
    kernel: PositiveInt = Field(3, description="depthwise kernel size (odd); 3 in the paper")
    norm: NormSpec = Field(NormSpec(kind="batch"), description="after every conv")
    act: ActSpec = Field(ActSpec(kind="relu"), description="after the 1x1 convs only")

    @field_validator("stride")
    @classmethod
    def _stride(cls, v: int) -> int:
        if v not in (1, 2):
            raise ValueError(f"shuffle_unit stride must be 1 or 2, got {v}")
        return v


def _branch(p, inp: Shape, mid: int, out: int, lead_1x1: bool) -> Plan:
    """[1x1-BN-act,] kxk depthwise (stride) - BN, 1x1-BN-act. The depthwise conv has no act
    (ShuffleNetV2 keeps it linear, as MobileNetV2 does)."""
    plan = Plan(inp)
    if lead_1x1:
        conv_unit(plan, mid, 1, norm=p.norm, act=p.act)
    c = plan.output[0]
    conv_unit(plan, c, p.kernel, stride=p.stride, padding=p.kernel // 2, groups=c, norm=p.norm)
    return conv_unit(plan, out, 1, norm=p.norm, act=p.act)


def unit_parts(p, inp: Shape) -> dict[str, Plan | None]:
    channels = inp[0]
    out = p.out or (channels if p.stride == 1 else 2 * channels)
    if out % 2:
        raise BlockError(f"shuffle_unit needs an even 'out' (two halves), got out={out}",
                         fix=f"use out: {out + 1}", field="out")
    if p.kernel % 2 == 0:
        raise BlockError(f"shuffle_unit needs an odd depthwise kernel, got kernel={p.kernel}",
                         fix="use kernel: 3 or 5", field="kernel")
    half = out // 2
    if p.stride == 1:
        if out != channels:
            raise BlockError(
                f"a stride-1 shuffle_unit passes half its input through, so out must equal the "
                f"input channels ({channels}), got out={out}",
                fix=f"use out: {channels}, or stride: 2 to change the width", field="out")
        return {"branch1": None, "branch2": _branch(p, (half, *inp[1:]), half, half, True)}
    return {"branch1": _branch(p, inp, channels, half, False),
            "branch2": _branch(p, inp, half, half, True)}


class ShuffleUnit(nn.Module):
    """ShuffleNetV2 unit; ``branch1`` is None for the stride-1 (split) unit."""

    def __init__(self, branch1: nn.Module | None, branch2: nn.Module) -> None:
        super().__init__()
        self.branch1 = branch1
        self.branch2 = branch2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.branch1 is None:
            kept, processed = x.chunk(2, dim=1)
            out = torch.cat([kept, self.branch2(processed)], 1)
        else:
            out = torch.cat([self.branch1(x), self.branch2(x)], 1)
        return shuffle_channels(out, 2)


@register_block
class ShuffleUnitBlock(Block):
    """ShuffleNetV2 unit (Ma et al. 2018, figure 3c/3d): split (stride 1) or two branches
    (stride 2), concatenate, channel shuffle with 2 groups.

    Shapes: stride 1: (C, H, W) -> (C, H, W); stride 2: (C, H, W) -> (out, H', W') with
    H' = (H - 1)//2 + 1. With b = out/2 and k the depthwise kernel:
    parameters (BN affine) stride 1: 2*b*b + k*k*b + 6*b;
    stride 2: k*k*C + C*b + C*b + k*k*b + b*b + 2*C + 8*b.

    >>> from archlab.blocks import BLOCKS
    >>> unit = BLOCKS['shuffle_unit']
    >>> unit.output_shape(unit.Params(out=116, stride=2), [(24, 56, 56)])
    (116, 28, 28)
    """

    name = "shuffle_unit"
    family = "shufflenet"
    Params = ShuffleUnitParams
    input_ranks = (3,)
    inherits = ("norm", "act")
    width_fields = ("out",)
    examples = [
        ({}, [(16, 6, 6)]),
        ({"out": 20, "stride": 2}, [(8, 7, 6)]),
        ({"stride": 2, "kernel": 5, "act": "hardswish"}, [(6, 9, 9)]),
    ]

    @classmethod
    def output_shape(cls, p, inputs):
        cls.check_inputs(inputs)
        parts = unit_parts(p, inputs[0])
        if parts["branch1"] is None:
            return tuple(inputs[0])
        return concat_shape((parts["branch1"].output, parts["branch2"].output))

    @classmethod
    def ops(cls, p, inputs) -> list[Op]:
        inp = inputs[0]
        parts = unit_parts(p, inp)
        out = cls.output_shape(p, inputs)
        b2 = parts["branch2"]
        if parts["branch1"] is None:
            # the split is a view (no op); the kept half is read once, by the concatenation
            half = (inp[0] // 2, *inp[1:])
            ops = [*b2.ops("branch2"), move_op("", "cat", (half, b2.output), out)]
        else:
            b1 = parts["branch1"]
            ops = [*b1.ops("branch1"), *b2.ops("branch2"),
                   move_op("", "cat", (b1.output, b2.output), out)]
        ops.append(move_op("", "channel_shuffle", (out,), out))
        return ops

    @classmethod
    def build(cls, p, inputs):
        parts = unit_parts(p, inputs[0])
        b1 = parts["branch1"]
        return ShuffleUnit(b1.build() if b1 is not None else None, parts["branch2"].build())
