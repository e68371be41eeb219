"""The Xception block (Chollet 2017, "Xception: Deep Learning with Depthwise Separable
Convolutions").

A residual unit of ``reps`` times [ReLU, depthwise-separable 3x3 conv, BN], ending in a 3x3
max-pool of stride 2 in the downsampling blocks, with a 1x1 strided conv + BN shortcut when the
shape changes (A5, A7). The same block makes the three flows of figure 5:

* entry flow: ``stride: 2``, reps 2, widths 128, 256, 728 (the first block without the leading
  ReLU, ``start_with_relu: false``, because a ReLU + BN stem comes right before it);
* middle flow: 8 identity blocks, reps 3, width 728;
* exit flow: ``stride: 2``, reps 2, 728 -> 1024 with ``grow_first: false`` (widen on the last
  separable conv, not the first).

The separable convs have no bias and no norm between depthwise and pointwise: the paper reports
that an intermediate non-linearity hurts (section 4.7), and BN after the pair makes a bias
redundant. These are the conventions of the common PyTorch port (Cadene's pretrainedmodels, timm
``legacy_xception``), whose Xception has 22,855,952 parameters.
"""

from __future__ import annotations

import torch
from pydantic import Field, PositiveInt, field_validator
from torch import nn

from ..ops import Op, eltwise_op
from .base import Block, BlockParams, register_block
from .inception import conv_unit, pool_step
from .layers import ActSpec, NormSpec
from .plan import Plan


class XceptionBlockParams(BlockParams):
    """An Xception residual block."""

    out: PositiveInt | None = Field(None, description="output channels; default: input channels")
    reps: PositiveInt = Field(2, description="separable convs: 2 in entry/exit flow, 3 in middle")
    stride: int = Field(1, description="2 = end with a 3x3 max-pool of stride 2")
    grow_first: bool = Field(True, description="widen on the first separable conv (else the last)")
    start_with_relu: bool = Field(True, description="begin with a ReLU (false right after a stem)")
    kernel: PositiveInt = Field(3, description="depthwise kernel size (odd)")
    norm: NormSpec = Field(NormSpec(kind="batch"), description="after each separable conv")
    act: ActSpec = Field(ActSpec(kind="relu"), description="before each separable conv")

    @field_validator("stride")
    @classmethod
    def _stride(cls, v: int) -> int:
        if v not in (1, 2):
            raise ValueError(f"xception_block stride must be 1 or 2, got {v}")
        return v

    @field_validator("kernel")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError(f"xception_block kernel must be odd to keep the size, got {v}")
        return v


def body_plan(p, inp) -> Plan:
    channels = inp[0]
    out = p.out or channels
    plan = Plan(inp)
    for i in range(p.reps):
        if p.grow_first:
            width = out
        else:
            width = channels if i < p.reps - 1 else out
        if i > 0 or p.start_with_relu:
            # the first ReLU must not work in place: the shortcut still reads the block input
            act = p.act.model_copy(update={"inplace": False}) if i == 0 else p.act
            plan.act(act)
        c = plan.output[0]
        conv_unit(plan, c, p.kernel, padding=p.kernel // 2, groups=c, bias=False)
        conv_unit(plan, width, 1, norm=p.norm)
    if p.stride == 2:
        pool_step(plan, "max", 3, 2, 1)
    return plan


def shortcut_plan(p, inp) -> Plan | None:
    out = p.out or inp[0]
    if out == inp[0] and p.stride == 1:
        return None
    return conv_unit(Plan(inp), out, 1, stride=p.stride, norm=p.norm)


class XceptionUnit(nn.Module):
    """body(x) + shortcut(x); the shortcut is the identity when ``shortcut`` is None."""

    def __init__(self, body: nn.Module, shortcut: nn.Module | None) -> None:
        super().__init__()
        self.body = body
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x if self.shortcut is None else self.shortcut(x)
        return self.body(x) + skip


@register_block
class XceptionBlock(Block):
    """Xception residual block: reps x [ReLU, separable 3x3 (depthwise, pointwise), BN], then a
    3x3/2 max-pool when ``stride: 2``; plus the input (or its 1x1/stride conv + BN when the
    shape changes). Chollet 2017, figure 5.

    Shapes: (C, H, W) -> (out, H', W'), H' = H (stride 1) or (H - 1)//2 + 1 (stride 2).
    Parameters per rep (c in, w out, k kernel): k*k*c + c*w + 2*w; shortcut C*out + 2*out.

    >>> from archlab.blocks import BLOCKS
    >>> xb = BLOCKS['xception_block']
    >>> p = xb.Params(out=128, stride=2, start_with_relu=False)
    >>> xb.output_shape(p, [(64, 147, 147)]), xb.param_count(p, [(64, 147, 147)])
    ((128, 74, 74), 35264)
    """

    name = "xception_block"
    family = "xception"
    Params = XceptionBlockParams
    input_ranks = (3,)
    inherits = ("norm", "act")
    width_fields = ("out",)
    examples = [
        ({"out": 32, "stride": 2, "start_with_relu": False}, [(16, 9, 9)]),
        ({"reps": 3}, [(24, 6, 6)]),
        ({"out": 20, "stride": 2, "grow_first": False}, [(12, 8, 7)]),
        ({"out": 10, "reps": 1, "kernel": 5, "act": "leaky_relu"}, [(6, 7, 7)]),
    ]

    @classmethod
    def output_shape(cls, p, inputs):
        cls.check_inputs(inputs)
        return body_plan(p, inputs[0]).output

    @classmethod
    def ops(cls, p, inputs) -> list[Op]:
        inp = inputs[0]
        body = body_plan(p, inp)
        short = shortcut_plan(p, inp)
        skip = inp if short is None else short.output
        ops = body.ops("body")
        if short is not None:
            ops.extend(short.ops("shortcut"))
        ops.append(eltwise_op("", "add", (body.output, skip), body.output))
        return ops

    @classmethod
    def build(cls, p, inputs):
        short = shortcut_plan(p, inputs[0])
        return XceptionUnit(body_plan(p, inputs[0]).build(),
                            short.build() if short is not None else None)
