"""Squeeze-and-excitation: channel attention that reweights feature maps (A11).

Hu et al. 2018, "Squeeze-and-Excitation Networks": squeeze the feature maps to one number per
channel by global average pooling, excite through a two-layer bottleneck (FC to C/r, act, FC to
C, gate), and multiply each channel by its gate. MobileNetV3 (Howard et al. 2019) uses the same
module with a hard-sigmoid gate and a squeezed width rounded to a multiple of 8.

The two FCs are 1x1 convolutions with bias, as torchvision and timm build them, so parameter
counts match theirs (SE-ResNet-50: 28,088,024 with r=16).

:class:`SESpec` is the setting that other blocks (``basic``, ``bottleneck``,
``inverted_residual``) carry in their ``se`` field; ``se`` is the standalone block.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, model_validator
from torch import Tensor, nn

from ..ops import Op, Shape, conv_op, eltwise_op, pool_op
from .base import Block, BlockParams, register_block
from .layers import CONV_CLASSES, ActSpec, act_ops, make_act, make_divisible

Gate = Literal["sigmoid", "hardsigmoid"]

_ADAPTIVE_AVG = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}


class SESpec(BaseModel):
    """Squeeze-and-excitation inside another block (``se: {ratio: 4, gate: hardsigmoid}``;
    ``se: true`` = the paper's defaults)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ratio: PositiveFloat = Field(16, description="reduction r: squeezed width = base / r (Hu et al.: 16)")
    base: Literal["in", "block"] = Field(
        "block", description="width divided by r: 'block' = the channels SE reweights (SE-ResNet, "
        "MobileNetV3), 'in' = the block's input channels (EfficientNet)")
    gate: Gate = Field("sigmoid", description="gate: sigmoid (Hu et al.) or hardsigmoid (MobileNetV3)")
    act: ActSpec = Field(ActSpec(kind="relu"), description="activation between the two FCs")
    divisor: PositiveInt | None = Field(
        None, description="round the squeezed width to a multiple of this (8 in MobileNetV3); "
        "None = floor, at least 1")

    @model_validator(mode="before")
    @classmethod
    def _from_true(cls, value: Any) -> Any:
        # `se: true` in a design means "SE with the paper's settings"
        return {} if value is True else value


def squeeze_width(spec: SESpec, channels: int, block_input: int | None = None) -> int:
    """Width of the squeezed vector for SE on ``channels`` maps inside a block whose input has
    ``block_input`` channels.

    >>> squeeze_width(SESpec(), 256)                          # SE-ResNet: 256 / 16
    16
    >>> squeeze_width(SESpec(ratio=4, divisor=8), 72)        # MobileNetV3: make_divisible(72/4, 8)
    24
    """
    base = block_input if spec.base == "in" and block_input is not None else channels
    reduced = base / spec.ratio
    if spec.divisor:
        return make_divisible(reduced, spec.divisor)
    return max(1, int(reduced))


class SqueezeExcite(nn.Module):
    """(N, C, *S) -> (N, C, *S): x * gate(fc2(act(fc1(avgpool(x)))))."""

    def __init__(self, channels: int, squeezed: int, dims: int, act: ActSpec, gate: Gate) -> None:
        super().__init__()
        conv = CONV_CLASSES[dims]
        self.pool = _ADAPTIVE_AVG[dims](1)
        self.fc1 = conv(channels, squeezed, 1, bias=True)
        self.act = make_act(act)
        self.fc2 = conv(squeezed, channels, 1, bias=True)
        self.gate = make_act(ActSpec(kind=gate, inplace=False))

    def forward(self, x: Tensor) -> Tensor:
        scale = self.fc1(self.pool(x))
        if self.act is not None:
            scale = self.act(scale)
        return x * self.gate(self.fc2(scale))


def se_ops(spec: SESpec, shape: Shape, block_input: int | None = None) -> list[Op]:
    """Op records of :class:`SqueezeExcite` on ``shape`` = (C, *S); paths relative to it."""
    c, spatial = shape[0], shape[1:]
    sq = squeeze_width(spec, c, block_input)
    ones = (1,) * len(spatial)
    pooled, squeezed = (c, *ones), (sq, *ones)
    window = 1
    for s in spatial:
        window *= s
    return [
        pool_op("pool", f"adaptive_avg_pool{len(spatial)}d", shape, pooled, window),
        conv_op("fc1", pooled, squeezed, ones, bias=True),
        *act_ops("act", spec.act, squeezed),
        conv_op("fc2", squeezed, pooled, ones, bias=True),
        *act_ops("gate", ActSpec(kind=spec.gate, inplace=False), pooled),
        eltwise_op("", "mul", (shape, pooled), shape),
    ]


def make_se(spec: SESpec, shape: Shape, block_input: int | None = None) -> SqueezeExcite:
    return SqueezeExcite(shape[0], squeeze_width(spec, shape[0], block_input), len(shape) - 1,
                         spec.act, spec.gate)


class SEParams(BlockParams):
    """Settings of a standalone squeeze-and-excitation block."""

    ratio: PositiveFloat = Field(16, description="reduction r: squeezed width = C / r (Hu et al.: 16)")
    gate: Gate = Field("sigmoid", description="gate: sigmoid or hardsigmoid (MobileNetV3)")
    act: ActSpec = Field(ActSpec(kind="relu"), description="activation between the two FCs")
    divisor: PositiveInt | None = Field(
        None, description="round the squeezed width to a multiple of this; None = floor, at least 1")

    def spec(self) -> SESpec:
        return SESpec(ratio=self.ratio, gate=self.gate, act=self.act, divisor=self.divisor)


@register_block
class SE(Block):
    """Squeeze-and-excitation: global average pool, FC to C/r, act, FC to C, gate, reweight.

    Shapes: (C, L) -> (C, L); (C, H, W) -> (C, H, W); (C, D, H, W) -> (C, D, H, W).
    Hu et al. 2018, "Squeeze-and-Excitation Networks"; hard-sigmoid gate from Howard et al. 2019
    (MobileNetV3). The FCs are 1x1 convs with bias. Parameters: 2*C*C' + C' + C with
    C' = C/r (rounded to ``divisor`` when set).

    >>> from archlab.blocks import BLOCKS
    >>> BLOCKS['se'].param_count(BLOCKS['se'].Params(), [(64, 8, 8)])
    580
    """

    name = "se"
    family = "attention"
    Params = SEParams
    input_ranks = (2, 3, 4)
    inherits = ()  # the paper fixes ReLU inside SE, whatever the network uses elsewhere
    examples = [
        ({}, [(32, 8, 8)]),
        ({"ratio": 4, "gate": "hardsigmoid", "divisor": 8}, [(72, 6, 6)]),
        ({"ratio": 8, "act": "silu"}, [(16, 20)]),
    ]

    @classmethod
    def output_shape(cls, p, inputs):
        cls.check_inputs(inputs)
        return inputs[0]

    @classmethod
    def ops(cls, p, inputs):
        return se_ops(p.spec(), inputs[0])

    @classmethod
    def build(cls, p, inputs):
        return make_se(p.spec(), inputs[0])
