"""Convolutions: standard, grouped, depthwise, depthwise-separable, dilated, transposed; 1D/2D/3D.

The rank of the input decides the dimension: (C, L) -> Conv1d, (C, H, W) -> Conv2d,
(C, D, H, W) -> Conv3d. Every conv block carries its own norm and activation (conv-norm-act),
following the design's defaults unless it overrides them (``norm: none, act: none`` for a bare
convolution).

Conv kinds live in the ``CONV_KINDS`` registry, so new factorisations (3-way separable, FIR-IIR)
plug in without touching the blocks that use them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from pydantic import Field, PositiveInt, field_validator

from ..errors import BlockError, unknown_name
from ..ops import Op, Shape
from .base import Block, BlockParams, register_block
from .layers import (
    ActSpec,
    NormSpec,
    Order,
    as_tuple,
    check_divisible,
    conv_spatial,
    same_padding,
    transposed_spatial,
)
from .plan import Plan

IntOrSeq = int | tuple[int, ...]
Padding = Literal["same", "valid"] | int | tuple[int, ...]


class ConvParams(BlockParams):
    """Settings of a convolution with its norm and activation."""

    out: PositiveInt | None = Field(None, description="output channels; default: input channels")
    kernel: IntOrSeq = Field(3, description="kernel size, one int or one per spatial axis")
    stride: IntOrSeq = Field(1, description="stride; 2 downsamples by two")
    padding: Padding = Field("same", description="'same' = dilation*(k-1)//2, 'valid' = 0, or ints")
    dilation: IntOrSeq = Field(1, description="dilation; >1 widens the receptive field")
    groups: PositiveInt = Field(1, description="channel groups; in and out must divide by it")
    kind: str = Field("standard", description="conv kind: " + "standard, grouped, depthwise, separable")
    bias: bool | None = Field(None, description="None = a bias only when no norm follows (A6)")
    norm: NormSpec = Field(NormSpec(kind="batch"), description="normalisation after the conv")
    act: ActSpec = Field(ActSpec(kind="relu"), description="activation")
    order: Order = Field("norm_act", description="norm_act | act_norm | pre")
    inner: Literal["norm_act", "norm", "none"] = Field(
        "norm_act", description="separable only: what follows the depthwise part")
    order3: tuple[Literal["vertical", "horizontal", "pointwise", "depthwise"], ...] = Field(
        ("vertical", "horizontal", "pointwise"),
        description="separable3 only: order of the vertical kx1, horizontal 1xk and pointwise parts")

    @field_validator("kind")
    @classmethod
    def _kind(cls, v: str) -> str:
        if v not in CONV_KINDS:
            raise ValueError(unknown_name("conv kind", v, CONV_KINDS))
        return v

    @field_validator("kernel", "stride", "dilation")
    @classmethod
    def _positive(cls, v: IntOrSeq) -> IntOrSeq:
        vals = (v,) if isinstance(v, int) else v
        if any(x <= 0 for x in vals):
            raise ValueError(f"must be positive, got {v}")
        return v


def resolved_geometry(p, inp: Shape, stride_override=None):
    """Kernel, stride, padding, dilation as tuples for the input's spatial rank."""
    dims = len(inp) - 1
    kernel = as_tuple(p.kernel, dims, "kernel")
    stride = as_tuple(p.stride if stride_override is None else stride_override, dims, "stride")
    dilation = as_tuple(p.dilation, dims, "dilation")
    if p.padding == "same":
        padding = same_padding(kernel, dilation)
    elif p.padding == "valid":
        padding = (0,) * dims
    else:
        padding = as_tuple(p.padding, dims, "padding")
    return kernel, stride, padding, dilation


def _bias(p, norm_follows: bool) -> bool:
    if p.bias is not None:
        return p.bias
    return not (norm_follows and p.norm.active)


def _pre(plan: Plan, p) -> None:
    if p.order == "pre":
        # with no norm in front, an in-place activation would overwrite the block's input,
        # which a skip connection may still read
        act = p.act if p.norm.active else p.act.model_copy(update={"inplace": False})
        plan.norm(p.norm).act(act)


def _post(plan: Plan, p) -> None:
    if p.order != "pre":
        plan.norm_act(p.norm, p.act, p.order)


def _standard(p, inp: Shape, groups: int | None = None) -> Plan:
    cin = inp[0]
    cout = p.out or cin
    groups = p.groups if groups is None else groups
    check_divisible(cin, groups, "input channels", "groups", None, "groups", by_key="groups")
    check_divisible(cout, groups, "output channels 'out'", "groups", None, "out",
                    value_key="out", by_key="groups")
    kernel, stride, padding, dilation = resolved_geometry(p, inp)
    out_shape = (cout, *conv_spatial(inp[1:], kernel, stride, padding, dilation))
    plan = Plan(inp)
    _pre(plan, p)
    plan.conv(cout, kernel, stride, padding, dilation, groups,
              _bias(p, p.order == "norm_act"), out_shape)
    _post(plan, p)
    return plan


def _depthwise(p, inp: Shape) -> Plan:
    cin = inp[0]
    cout = p.out or cin
    check_divisible(cout, cin, "depthwise output channels 'out'", "input channels",
                    f"use out: {cin} (or a multiple of it)", "out", value_key="out")
    return _standard(p, inp, groups=cin)


def _separable(p, inp: Shape) -> Plan:
    """Depthwise kxk (with the stride) then pointwise 1x1 (A7: MobileNet, Xception)."""
    cin = inp[0]
    cout = p.out or cin
    kernel, stride, padding, dilation = resolved_geometry(p, inp)
    mid = (cin, *conv_spatial(inp[1:], kernel, stride, padding, dilation))
    ones = (1,) * len(kernel)
    plan = Plan(inp)
    _pre(plan, p)
    plan.conv(cin, kernel, stride, padding, dilation, cin, p.inner == "none" and p.bias is True, mid)
    if p.order != "pre":
        if p.inner == "norm_act":
            plan.norm_act(p.norm, p.act, p.order)
        elif p.inner == "norm":
            plan.norm(p.norm)
    plan.conv(cout, ones, ones, (0,) * len(kernel), ones, 1, _bias(p, p.order == "norm_act"),
              (cout, *mid[1:]))
    _post(plan, p)
    return plan


CONV_KINDS: dict[str, Callable[..., Plan]] = {
    "standard": _standard,
    "grouped": _standard,      # same as standard; 'groups' says how many
    "depthwise": _depthwise,
    "separable": _separable,
}
"""Conv kinds by name: each maps (params, input shape) to a Plan. Register new factorisations
here (issue 3 adds 'separable3' and 'fir_iir')."""


def conv_plan(p, inp: Shape) -> Plan:
    if p.kind == "grouped" and p.groups == 1:
        raise BlockError("conv kind 'grouped' needs groups > 1, got groups=1",
                         fix="set groups: 2 (or more), or use kind: standard", field="groups")
    return CONV_KINDS[p.kind](p, inp)


@register_block
class Conv(Block):
    """Convolution with its normalisation and activation (conv-norm-act).

    Shapes: (C, L) -> (out, L'); (C, H, W) -> (out, H', W'); (C, D, H, W) -> (out, D', H', W'),
    with ``H' = floor((H + 2p - d(k-1) - 1)/s) + 1``.
    Kinds: ``standard``/``grouped`` (groups), ``depthwise`` (groups = C; Howard et al. 2017,
    MobileNets), ``separable`` (depthwise kxk then pointwise 1x1; Chollet 2017, Xception),
    ``dilated`` is ``standard`` with ``dilation`` > 1 (Yu & Koltun 2016).
    Norm/act placement after Ioffe & Szegedy 2015 (BN) and He et al. 2016 (pre-activation).

    >>> from archlab.blocks import BLOCKS
    >>> p = BLOCKS['conv'].Params(out=64, kernel=3, stride=2)
    >>> BLOCKS['conv'].output_shape(p, [(3, 224, 224)])
    (64, 112, 112)
    """

    name = "conv"
    family = "conv"
    Params = ConvParams
    width_fields = ("out",)
    input_ranks = (2, 3, 4)
    examples = [
        ({"out": 64, "kernel": 7, "stride": 2}, [(3, 32, 32)]),
        ({"out": 16, "kernel": 3, "groups": 4, "kind": "grouped"}, [(8, 10, 10)]),
        ({"kind": "depthwise", "stride": 2}, [(8, 9, 9)]),
        ({"out": 24, "kind": "separable", "inner": "none"}, [(8, 8, 8)]),
        ({"out": 8, "kernel": 3, "dilation": 2, "norm": {"kind": "group", "groups": 4}, "act": "gelu"},
         [(8, 12, 12)]),
        ({"out": 8, "kernel": 5, "order": "pre", "act": "leaky_relu"}, [(4, 20)]),
        ({"out": 4, "order": "pre", "norm": "none"}, [(4, 6, 6)]),
        ({"out": 4, "kernel": 3, "norm": "instance", "act": "silu"}, [(2, 6, 6, 6)]),
        # issue 3 kinds (registered by blocks/separable3.py and blocks/fir_iir.py)
        ({"out": 12, "kernel": 5, "kind": "separable3"}, [(6, 11, 9)]),
        ({"out": 8, "kernel": 3, "stride": 2, "kind": "separable3", "inner": "none",
          "order3": ["pointwise", "horizontal", "vertical"]}, [(4, 10, 7)]),
        ({"kernel": 5, "kind": "fir_iir", "norm": "none"}, [(3, 9, 8)]),
    ]

    @classmethod
    def output_shape(cls, p, inputs):
        cls.check_inputs(inputs)
        return conv_plan(p, inputs[0]).output

    @classmethod
    def ops(cls, p, inputs) -> list[Op]:
        return conv_plan(p, inputs[0]).ops()

    @classmethod
    def build(cls, p, inputs):
        return conv_plan(p, inputs[0]).build()


class ConvTransposeParams(BlockParams):
    """Settings of a transposed convolution (learned upsampling) with norm and activation."""

    out: PositiveInt | None = Field(None, description="output channels; default: input channels")
    kernel: IntOrSeq = Field(4, description="kernel size")
    stride: IntOrSeq = Field(2, description="upsampling factor")
    padding: IntOrSeq | Literal["auto"] = Field(
        "auto", description="'auto' = (kernel - stride + 1)//2 so the size scales by the stride")
    output_padding: IntOrSeq = Field(0, description="extra rows/cols on one side of the output")
    dilation: IntOrSeq = 1
    groups: PositiveInt = 1
    bias: bool | None = Field(None, description="None = a bias only when no norm follows")
    norm: NormSpec = NormSpec(kind="batch")
    act: ActSpec = ActSpec(kind="relu")
    order: Order = "norm_act"


def conv_transpose_plan(p, inp: Shape) -> Plan:
    dims = len(inp) - 1
    cin = inp[0]
    cout = p.out or cin
    kernel = as_tuple(p.kernel, dims, "kernel")
    stride = as_tuple(p.stride, dims, "stride")
    dilation = as_tuple(p.dilation, dims, "dilation")
    outpad = as_tuple(p.output_padding, dims, "output_padding")
    if p.padding == "auto":
        padding = tuple(max(0, (k - s + 1) // 2) for k, s in zip(kernel, stride, strict=True))
    else:
        padding = as_tuple(p.padding, dims, "padding")
    check_divisible(cin, p.groups, "input channels", "groups", None, "groups", by_key="groups")
    check_divisible(cout, p.groups, "output channels 'out'", "groups", None, "out",
                    value_key="out", by_key="groups")
    spatial = transposed_spatial(inp[1:], kernel, stride, padding, outpad, dilation)
    if any(s <= 0 for s in spatial):
        raise BlockError(f"transposed conv gives a non-positive size {spatial} from {inp[1:]}",
                         fix="reduce padding", field="padding")
    plan = Plan(inp)
    _pre(plan, p)
    plan.conv_transpose(cout, kernel, stride, padding, outpad, dilation, p.groups,
                        _bias(p, p.order == "norm_act"), (cout, *spatial))
    _post(plan, p)
    return plan


@register_block
class ConvTranspose(Block):
    """Transposed convolution (learned upsampling) with norm and activation.

    Shapes: (C, H, W) -> (out, (H-1)s - 2p + d(k-1) + op + 1, ...); with the defaults
    (k=4, s=2, padding auto) the size doubles. Used by DCGAN (Radford et al. 2016) and U-Net
    (Ronneberger et al. 2015).

    >>> from archlab.blocks import BLOCKS
    >>> p = BLOCKS['conv_transpose'].Params(out=32)
    >>> BLOCKS['conv_transpose'].output_shape(p, [(64, 16, 16)])
    (32, 32, 32)
    """

    name = "conv_transpose"
    family = "upsample"
    Params = ConvTransposeParams
    width_fields = ("out",)
    input_ranks = (2, 3, 4)
    examples = [
        ({"out": 32}, [(64, 8, 8)]),
        ({"out": 8, "kernel": 4, "stride": 1, "padding": 0, "act": "tanh", "norm": "none"}, [(16, 1, 1)]),
        ({"out": 4, "kernel": 2, "stride": 2, "padding": 0}, [(8, 10)]),
    ]

    @classmethod
    def output_shape(cls, p, inputs):
        cls.check_inputs(inputs)
        return conv_transpose_plan(p, inputs[0]).output

    @classmethod
    def ops(cls, p, inputs):
        return conv_transpose_plan(p, inputs[0]).ops()

    @classmethod
    def build(cls, p, inputs):
        return conv_transpose_plan(p, inputs[0]).build()
