"""Pooling: max and average pooling (downsampling without weights), adaptive and global pooling.

The rank of the input decides the dimension, as for convolutions: (C, L) -> 1D, (C, H, W) -> 2D,
(C, D, H, W) -> 3D. Pooling has no parameters and no multiply-adds; its comparisons and sums are
counted as element-wise work (one per window element per output).
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, field_validator
from torch import Tensor, nn

from ..errors import BlockError
from ..ops import Op, Shape, pool_op
from .base import Block, BlockParams, register_block
from .layers import as_tuple

IntOrSeq = int | tuple[int, ...]

MAX_POOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}
AVG_POOL = {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}
ADAPTIVE_AVG_POOL = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}


def _positive(v: IntOrSeq | None) -> IntOrSeq | None:
    vals = () if v is None else (v,) if isinstance(v, int) else v
    if any(x <= 0 for x in vals):
        raise ValueError(f"must be positive, got {v}")
    return v


def pool_spatial(
    spatial: tuple[int, ...],
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    padding: tuple[int, ...],
    ceil_mode: bool,
) -> tuple[int, ...]:
    """Output size of max/avg pooling, PyTorch's rule included: with ``ceil_mode`` a last window
    that would start inside the right padding is dropped.

    >>> pool_spatial((112, 112), (3, 3), (2, 2), (1, 1), False)   # ResNet stem max pool
    (56, 56)
    >>> pool_spatial((7,), (2,), (2,), (0,), True)
    (4,)
    """
    out = []
    for size, k, s, p in zip(spatial, kernel, stride, padding, strict=True):
        if 2 * p > k:
            raise BlockError(
                f"pool padding (={p}) must be at most half the kernel (={k})",
                fix=f"use padding: {k // 2} or less", field="padding")
        if size + 2 * p < k:
            raise BlockError(
                f"pool kernel {k} is larger than the padded feature map {size}+2*{p}={size + 2 * p}",
                fix="use a smaller kernel, or downsample less before this node", field="kernel")
        span = size + 2 * p - k
        n = (-(-span // s) if ceil_mode else span // s) + 1
        if ceil_mode and (n - 1) * s >= size + p:
            n -= 1
        out.append(n)
    return tuple(out)


class PoolParams(BlockParams):
    """Settings of max pooling."""

    kernel: IntOrSeq = Field(2, description="window size, one int or one per spatial axis")
    stride: IntOrSeq | None = Field(None, description="step; default: the kernel (non-overlapping)")
    padding: IntOrSeq = Field(0, description="implicit padding on both sides, at most kernel/2")
    ceil_mode: bool = Field(False, description="round the output size up instead of down")

    check_positive = field_validator("kernel", "stride")(_positive)


class AvgPoolParams(PoolParams):
    """Settings of average pooling."""

    count_include_pad: bool = Field(True, description="average over padding zeros too (PyTorch default)")


def _geometry(p, inp: Shape):
    dims = len(inp) - 1
    kernel = as_tuple(p.kernel, dims, "kernel")
    stride = as_tuple(p.kernel if p.stride is None else p.stride, dims, "stride")
    padding = as_tuple(p.padding, dims, "padding")
    if any(x < 0 for x in padding):
        raise BlockError(f"pool padding must be >= 0, got {p.padding}", fix="use padding: 0",
                         field="padding")
    out = (inp[0], *pool_spatial(inp[1:], kernel, stride, padding, p.ceil_mode))
    return kernel, stride, padding, out


class _WindowPool(Block):
    family = "pool"
    input_ranks = (2, 3, 4)
    inherits = ()
    op_kind = ""

    @classmethod
    def output_shape(cls, p, inputs):
        cls.check_inputs(inputs)
        return _geometry(p, inputs[0])[-1]

    @classmethod
    def ops(cls, p, inputs):
        kernel, _, _, out = _geometry(p, inputs[0])
        kind = f"{cls.op_kind}{len(kernel)}d"
        return [pool_op("", kind, inputs[0], out, math.prod(kernel))]


@register_block
class MaxPool(_WindowPool):
    """Max pooling: the largest value in each window.

    Shapes: (C, L) -> (C, L'); (C, H, W) -> (C, H', W'); (C, D, H, W) -> (C, D', H', W') with
    ``H' = floor((H + 2p - k)/s) + 1`` (``ceil`` with ``ceil_mode``). Downsampling as in
    LeCun et al. 1998 and Krizhevsky et al. 2012; the ResNet stem uses kernel 3, stride 2,
    padding 1 (He et al. 2016).

    >>> from archlab.blocks import BLOCKS
    >>> p = BLOCKS['maxpool'].Params(kernel=3, stride=2, padding=1)
    >>> BLOCKS['maxpool'].output_shape(p, [(64, 112, 112)])
    (64, 56, 56)
    """

    name = "maxpool"
    Params = PoolParams
    op_kind = "max_pool"
    examples = [
        ({}, [(8, 16, 16)]),
        ({"kernel": 3, "stride": 2, "padding": 1}, [(4, 15, 15)]),
        ({"kernel": 3, "stride": 2, "ceil_mode": True}, [(4, 10)]),
        ({"kernel": [1, 2, 2]}, [(2, 4, 8, 8)]),
    ]

    @classmethod
    def build(cls, p, inputs):
        kernel, stride, padding, _ = _geometry(p, inputs[0])
        return MAX_POOL[len(kernel)](kernel, stride, padding, ceil_mode=p.ceil_mode)


@register_block
class AvgPool(_WindowPool):
    """Average pooling: the mean of each window.

    Shapes: (C, L) -> (C, L'); (C, H, W) -> (C, H', W'); (C, D, H, W) -> (C, D', H', W') with
    ``H' = floor((H + 2p - k)/s) + 1`` (``ceil`` with ``ceil_mode``). LeCun et al. 1998
    (LeNet-5 subsampling); ResNet-D's shortcut (He et al. 2019, "Bag of Tricks").

    >>> from archlab.blocks import BLOCKS
    >>> BLOCKS['avgpool'].output_shape(BLOCKS['avgpool'].Params(), [(16, 32, 32)])
    (16, 16, 16)
    """

    name = "avgpool"
    Params = AvgPoolParams
    op_kind = "avg_pool"
    examples = [
        ({}, [(8, 16, 16)]),
        ({"kernel": 3, "stride": 1, "padding": 1, "count_include_pad": False}, [(4, 9, 9)]),
        ({"kernel": 2, "ceil_mode": True}, [(4, 7, 7)]),
        ({"kernel": 4, "stride": 2}, [(3, 20)]),
    ]

    @classmethod
    def build(cls, p, inputs):
        kernel, stride, padding, _ = _geometry(p, inputs[0])
        return AVG_POOL[len(kernel)](kernel, stride, padding, ceil_mode=p.ceil_mode,
                                     count_include_pad=p.count_include_pad)


class AdaptiveParams(BlockParams):
    """Settings of adaptive average pooling."""

    size: IntOrSeq = Field(1, description="output spatial size, one int or one per spatial axis")

    check_positive = field_validator("size")(_positive)


def _adaptive_reads(size: int, out: int) -> int:
    # PyTorch's adaptive windows: [floor(i*size/out), ceil((i+1)*size/out)); they may overlap
    return sum(-(-(i + 1) * size // out) - (i * size // out) for i in range(out))


@register_block
class AdaptiveAvgPool(Block):
    """Adaptive average pooling to a fixed output size, whatever the input size.

    Shapes: (C, L) -> (C, size); (C, H, W) -> (C, *size); (C, D, H, W) -> (C, *size).
    Used by torchvision's classifiers (VGG: 7x7 before the FC layers, Simonyan & Zisserman 2015)
    and by spatial pyramid pooling (He et al. 2014).

    >>> from archlab.blocks import BLOCKS
    >>> BLOCKS['adaptive_avgpool'].output_shape(BLOCKS['adaptive_avgpool'].Params(size=7),
    ...                                         [(512, 14, 14)])
    (512, 7, 7)
    """

    name = "adaptive_avgpool"
    family = "pool"
    Params = AdaptiveParams
    input_ranks = (2, 3, 4)
    inherits = ()
    examples = [
        ({"size": 2}, [(4, 9, 9)]),
        ({"size": [3, 1]}, [(4, 7, 5)]),
        ({}, [(8, 10)]),
    ]

    @classmethod
    def output_shape(cls, p, inputs):
        cls.check_inputs(inputs)
        inp = inputs[0]
        return (inp[0], *as_tuple(p.size, len(inp) - 1, "size"))

    @classmethod
    def ops(cls, p, inputs):
        inp = inputs[0]
        out = cls.output_shape(p, inputs)
        # exact element reads: the windows are separable, so sum per axis and multiply
        reads = inp[0] * math.prod(_adaptive_reads(i, o) for i, o in zip(inp[1:], out[1:], strict=True))
        return [Op(f"adaptive_avg_pool{len(inp) - 1}d", "", (inp,), out, elementwise=reads)]

    @classmethod
    def build(cls, p, inputs):
        out = cls.output_shape(p, inputs)
        return ADAPTIVE_AVG_POOL[len(out) - 1](out[1:])


class GlobalPoolParams(BlockParams):
    """Settings of global pooling."""

    kind: Literal["avg", "max"] = Field("avg", description="average (Lin et al. 2014) or max")
    keepdim: bool = Field(False, description="false: (C,) vector; true: (C, 1, 1) feature map")


class GlobalPooling(nn.Module):
    """(N, C, *S) -> (N, C) or (N, C, 1, ...): mean or max over all spatial axes."""

    def __init__(self, kind: str, dims: int, keepdim: bool) -> None:
        super().__init__()
        self.kind = kind
        self.axes = tuple(range(2, 2 + dims))
        self.keepdim = keepdim

    def forward(self, x: Tensor) -> Tensor:
        if self.kind == "max":
            return x.amax(self.axes, keepdim=self.keepdim)
        return x.mean(self.axes, keepdim=self.keepdim)

    def extra_repr(self) -> str:
        return f"kind={self.kind}, axes={self.axes}, keepdim={self.keepdim}"


@register_block
class GlobalPool(Block):
    """Global average (or max) pooling over all spatial positions.

    Shapes: (C, H, W) -> (C,), or (C, 1, 1) with ``keepdim``; likewise (C, L) and (C, D, H, W).
    Global average pooling replaces large FC layers in Network in Network (Lin et al. 2014) and
    ResNet (He et al. 2016).

    >>> from archlab.blocks import BLOCKS
    >>> BLOCKS['global_pool'].output_shape(BLOCKS['global_pool'].Params(), [(2048, 7, 7)])
    (2048,)
    """

    name = "global_pool"
    family = "pool"
    Params = GlobalPoolParams
    input_ranks = (2, 3, 4)
    inherits = ()
    examples = [
        ({}, [(16, 7, 7)]),
        ({"kind": "max", "keepdim": True}, [(8, 5, 5)]),
        ({"kind": "avg"}, [(8, 12)]),
    ]

    @classmethod
    def output_shape(cls, p, inputs):
        cls.check_inputs(inputs)
        inp = inputs[0]
        return (inp[0], *(1,) * (len(inp) - 1)) if p.keepdim else (inp[0],)

    @classmethod
    def ops(cls, p, inputs):
        inp = inputs[0]
        out = cls.output_shape(p, inputs)
        kind = "amax" if p.kind == "max" else "mean"
        return [pool_op("", kind, inp, out, math.prod(inp[1:]))]

    @classmethod
    def build(cls, p, inputs):
        return GlobalPooling(p.kind, len(inputs[0]) - 1, p.keepdim)
