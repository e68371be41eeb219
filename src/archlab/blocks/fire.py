"""The Fire module of SqueezeNet (Iandola et al. 2016, "SqueezeNet: AlexNet-level accuracy with
50x fewer parameters and <0.5MB model size").

A 1x1 "squeeze" layer narrows the channels, then an "expand" layer of 1x1 and 3x3 filters side by
side restores them; the two expand outputs are concatenated. Squeezing first cuts the input
channels seen by the 3x3 filters (strategy 2 of the paper), and mixing 1x1 with 3x3 filters cuts
their number (strategy 1).
"""

from __future__ import annotations

import torch
from pydantic import Field, PositiveInt
from torch import nn

from ..ops import Op
from .base import Block, BlockParams, register_block
from .inception import BranchConcat, concat_ops, concat_shape, conv_unit
from .layers import ActSpec, NormSpec
from .plan import Plan


class FireParams(BlockParams):
    """Widths of the squeeze and expand layers; norm/act after every conv."""

    squeeze: PositiveInt = Field(..., description="1x1 squeeze width (s1x1), < expand1x1+expand3x3")
    expand1x1: PositiveInt = Field(..., description="1x1 expand filters (e1x1)")
    expand3x3: PositiveInt = Field(..., description="3x3 expand filters (e3x3), padding 1")
    norm: NormSpec = Field(NormSpec(kind="none"),
                           description="none in SqueezeNet 1.0 (it predates wide use of BN)")
    act: ActSpec = Field(ActSpec(kind="relu"), description="after the squeeze and each expand")


class _Fire(nn.Module):
    """(N, C, H, W) -> squeeze (N, s, H, W) -> concat of expand1x1, expand3x3 (N, e1 + e3, H, W)."""

    def __init__(self, squeeze: nn.Module, expand: nn.Module) -> None:
        super().__init__()
        self.squeeze = squeeze
        self.expand = expand

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.expand(self.squeeze(x))


@register_block
class Fire(Block):
    """SqueezeNet Fire module: squeeze 1x1 + act, then expand 1x1 and expand 3x3 (+ act each),
    concatenated along channels.

    Shapes: (C, H, W) -> (expand1x1 + expand3x3, H, W).
    Parameters (no norm): C*s + s + s*e1 + e1 + 9*s*e3 + e3 (biases, as no norm follows).
    Multiply-adds: H*W*(C*s + s*e1 + 9*s*e3). Iandola et al. 2016, section 3.2.

    >>> from archlab.blocks import BLOCKS
    >>> fire = BLOCKS['fire']
    >>> p = fire.Params(squeeze=16, expand1x1=64, expand3x3=64)
    >>> fire.output_shape(p, [(96, 55, 55)]), fire.param_count(p, [(96, 55, 55)])
    ((128, 55, 55), 11920)
    """

    name = "fire"
    family = "fire"
    Params = FireParams
    input_ranks = (3,)
    inherits = ("norm", "act")
    width_fields = ("squeeze", "expand1x1", "expand3x3")
    examples = [
        ({"squeeze": 16, "expand1x1": 64, "expand3x3": 64}, [(96, 13, 13)]),
        ({"squeeze": 4, "expand1x1": 6, "expand3x3": 10, "norm": "batch", "act": "leaky_relu"},
         [(12, 7, 5)]),
    ]

    @classmethod
    def parts(cls, p, inp) -> tuple[Plan, dict[str, Plan]]:
        squeeze = conv_unit(Plan(inp), p.squeeze, 1, norm=p.norm, act=p.act)
        mid = squeeze.output
        expand = {
            "expand1x1": conv_unit(Plan(mid), p.expand1x1, 1, norm=p.norm, act=p.act),
            "expand3x3": conv_unit(Plan(mid), p.expand3x3, 3, padding=1, norm=p.norm, act=p.act),
        }
        return squeeze, expand

    @classmethod
    def output_shape(cls, p, inputs):
        cls.check_inputs(inputs)
        _, expand = cls.parts(p, inputs[0])
        return concat_shape(tuple(plan.output for plan in expand.values()))

    @classmethod
    def ops(cls, p, inputs) -> list[Op]:
        squeeze, expand = cls.parts(p, inputs[0])
        ops = squeeze.ops("squeeze")
        ops.extend(op.under("expand") for op in concat_ops(expand))
        return ops

    @classmethod
    def build(cls, p, inputs):
        squeeze, expand = cls.parts(p, inputs[0])
        return _Fire(squeeze.build(), BranchConcat({k: v.build() for k, v in expand.items()}))
