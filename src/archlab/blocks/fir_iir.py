"""Separable FIR-IIR filter (A10), after Asama, Isikdogan et al. 2020, "MagIC: a machine learning
imaging core using separable FIR-IIR filters" (arXiv:2001.00630).

The block is a 3-way separable convolution whose vertical part is a recurrence instead of a
window: a horizontal FIR (1xk depthwise conv), a vertical IIR (per channel, down the rows,
``h[r] = x[r] + a * h[r-1]`` with ``h[-1] = 0``), then a pointwise 1x1 conv with its norm and
activation. Rows are consumed top to bottom, so hardware that receives an image line by line never
buffers a line for the vertical filter; the IIR's receptive field is the whole column above.

Stability: the coefficient is ``a = 0.999 * tanh(raw)`` with a trainable ``raw`` per channel, so
``|a| < 1`` holds for every value the optimiser can reach (the 0.999 keeps ``|a|`` away from 1
even where ``tanh`` rounds to 1.0 in float32).

Fast and exact: training never loops over rows. :func:`iir_rows` evaluates the recurrence with a
two-level blocked scan made of matrix products. Rows are cut into chunks of ``T``; inside a chunk
``h = L x`` with the lower-triangular Toeplitz matrix ``L[r, s] = a^(r-s)``; the chunk-end states
obey the same recurrence with ``a^T`` and are solved by a second, ``B x B`` Toeplitz product
(``B`` = number of chunks); each chunk then adds ``a^(t+1)`` times the previous chunk's end state.
Only non-negative powers of ``a`` appear, all of magnitude <= 1, built by cumulative products:
nothing grows with the column length (the closed form ``a^r * cumsum(a^-s x[s])`` would overflow
for long columns and is not used). :func:`iir_rows_loop` is the reference row loop, kept for tests.

Counting convention: the recurrence's intrinsic cost is ``C*H*W`` multiply-adds (one per element).
The block's op records count what the implementation executes, so they equal PyTorch's
``FlopCounterMode`` on the built module: ``C*W*(B*T*T + B*B)`` multiply-adds for the two batched
matrix products (``C*W*H*H`` when the column fits one chunk), with ``T = min(chunk, H)``,
``B = ceil(H/T)``; the intrinsic figure is kept in the op's ``extra['recurrence_multiply_adds']``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt, field_validator
from torch import nn

from ..errors import BlockError
from ..ops import Op, Shape
from .base import Block, BlockParams, register_block
from .conv import CONV_KINDS, _bias, _pre
from .layers import ActSpec, NormSpec, Order, conv_spatial
from .plan import Plan

MAX_COEFFICIENT = 0.999
"""Bound on |a|: strictly inside the unit circle, so the filter's gain 1/(1-|a|) stays <= 1000."""


# ------------------------------------------------------------------- the recurrence -------


def iir_rows_loop(x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Reference: (N, C, H, W), (C,) -> (N, C, H, W), ``h[r] = x[r] + a * h[r-1]``, row by row."""
    state = torch.zeros_like(x[:, :, 0])
    rows = []
    for r in range(x.shape[2]):
        state = x[:, :, r] + a[None, :, None] * state
        rows.append(state)
    return torch.stack(rows, dim=2)


def _powers(a: torch.Tensor, count: int) -> torch.Tensor:
    """(C,) -> (C, count): a^0, a^1, ..., a^(count-1) by cumulative products (no pow of a
    negative base, no negative exponents, so every entry has magnitude <= 1)."""
    ones = torch.ones_like(a)[:, None]
    if count == 1:
        return ones
    return torch.cat([ones, torch.cumprod(a[:, None].expand(-1, count - 1), dim=1)], dim=1)


def _lower_toeplitz(powers: torch.Tensor) -> torch.Tensor:
    """(C, n) powers -> (C, n, n) with [c, r, s] = powers[c, r - s] for r >= s, else 0."""
    n = powers.shape[1]
    index = torch.arange(n, device=powers.device)
    lag = index[:, None] - index[None, :]
    matrix = powers[:, lag.clamp(min=0)]
    return matrix * (lag >= 0).to(powers.dtype)


def iir_chunks(rows: int, chunk: int) -> tuple[int, int]:
    """(rows per chunk T, number of chunks B) for a column of ``rows`` rows."""
    size = min(chunk, rows)
    return size, -(-rows // size)


def iir_rows(x: torch.Tensor, a: torch.Tensor, chunk: int = 32) -> torch.Tensor:
    """(N, C, H, W), (C,) -> (N, C, H, W): the recurrence ``h[r] = x[r] + a h[r-1]`` down the
    rows, evaluated exactly by a two-level blocked scan of batched matrix products."""
    n, c, rows, cols = x.shape
    size, blocks = iir_chunks(rows, chunk)
    padded = size * blocks
    if padded != rows:
        # zero rows appended at the bottom: the recurrence is causal, so they never reach the
        # real rows, and they are cut off at the end
        x = F.pad(x, (0, 0, 0, padded - rows))
    powers = _powers(a, size + 1)                                     # a^0 .. a^T
    within = _lower_toeplitz(powers[:, :size])                        # (C, T, T)
    # one (T x T) @ (T x W) product per sample, channel and chunk, in the input's own layout
    # (no transposed copies of the activations)
    local = torch.matmul(within[:, None], x.reshape(n, c, blocks, size, cols))  # (N, C, B, T, W)
    if blocks > 1:
        between = _lower_toeplitz(_powers(powers[:, size], blocks))  # (a^T)^(i-j): (C, B, B)
        states = torch.matmul(between, local[:, :, :, size - 1])      # chunk ends: (N, C, B, W)
        # chunk b starts from chunk b-1's end state, decayed by a^(t+1); chunk 0 from zero
        carried = F.pad(states[:, :, :-1], (0, 0, 1, 0))
        local = local + powers[:, None, 1:, None] * carried[:, :, :, None]
    out = local.reshape(n, c, padded, cols)
    return out[:, :, :rows] if padded != rows else out


def iir_multiply_adds(channels: int, rows: int, cols: int, chunk: int) -> int:
    """Multiply-adds per sample that :func:`iir_rows` executes (both matrix products)."""
    size, blocks = iir_chunks(rows, chunk)
    between = blocks * blocks if blocks > 1 else 0
    return channels * cols * (blocks * size * size + between)


class VerticalIIR(nn.Module):
    """First-order IIR filter down the rows, one coefficient per channel.

    (N, C, H, W) -> (N, C, H, W), ``h[r] = x[r] + a_c * h[r-1]``, ``a = 0.999 tanh(raw)``.
    """

    def __init__(self, channels: int, chunk: int = 32, init: float = 0.5) -> None:
        super().__init__()
        self.chunk = chunk
        self.max_coefficient = MAX_COEFFICIENT  # an attribute: TorchScript reads no globals
        raw = math.atanh(init / MAX_COEFFICIENT)
        self.raw_coefficient = nn.Parameter(torch.full((channels,), raw))

    @property
    def coefficient(self) -> torch.Tensor:
        """The per-channel feedback coefficient a, always strictly inside (-1, 1)."""
        return self.max_coefficient * torch.tanh(self.raw_coefficient)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return iir_rows(x, self.coefficient, self.chunk)

    def extra_repr(self) -> str:
        return f"channels={self.raw_coefficient.numel()}, chunk={self.chunk}"


def iir_op(path: str, shape: Shape, chunk: int) -> Op:
    c, h, w = shape
    size, blocks = iir_chunks(h, chunk)
    return Op(
        "iir_rows",
        path,
        (shape,),
        shape,
        params=c,
        multiply_adds=iir_multiply_adds(c, h, w, chunk),
        # the carry between chunks: one multiply and one add per element of the padded map
        elementwise=2 * c * size * blocks * w if blocks > 1 else 0,
        weights_read=c,
        extra={"recurrence_multiply_adds": c * h * w},
    )


# ------------------------------------------------------------------------- the block -------


class FirIirParams(BlockParams):
    """Settings of the separable FIR-IIR filter block."""

    out: PositiveInt | None = Field(None, description="output channels of the pointwise 1x1; "
                                    "default: input channels")
    kernel: PositiveInt = Field(5, description="width of the horizontal FIR (odd: centred)")
    init: float = Field(0.5, gt=-MAX_COEFFICIENT, lt=MAX_COEFFICIENT,
                        description="initial IIR coefficient a; 0.5 halves the weight per row")
    chunk: PositiveInt = Field(32, description="rows per chunk of the parallel scan: each column "
                               "costs H*chunk multiply-adds; 32 keeps the products BLAS-sized")
    bias: bool | None = Field(None, description="pointwise bias; None = only when no norm follows")
    norm: NormSpec = Field(NormSpec(kind="batch"), description="normalisation after the pointwise")
    act: ActSpec = Field(ActSpec(kind="relu"), description="activation")
    order: Order = Field("norm_act", description="norm_act | act_norm | pre")

    @field_validator("kernel")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError(f"must be odd so the filter stays centred (use {v + 1})")
        return v


def fir_iir_plan(p, inp: Shape, kernel: int, chunk: int, init: float) -> Plan:
    if len(inp) != 3:
        raise BlockError(
            f"the FIR-IIR filter needs an image (C, H, W), got shape {tuple(inp)}",
            fix="use a conv block for sequences and volumes",
        )
    c = inp[0]
    cout = p.out or c
    plan = Plan(inp)
    _pre(plan, p)
    fir_shape = (c, *conv_spatial(inp[1:], (1, kernel), (1, 1), (0, kernel // 2), (1, 1)))
    plan.conv(c, (1, kernel), (1, 1), (0, kernel // 2), (1, 1), c, False, fir_shape)
    plan.add(lambda: VerticalIIR(c, chunk, init), [iir_op("", fir_shape, chunk)], fir_shape)
    plan.conv(cout, (1, 1), (1, 1), (0, 0), (1, 1), 1, _bias(p, p.order == "norm_act"),
              (cout, *fir_shape[1:]))
    if p.order != "pre":
        plan.norm_act(p.norm, p.act, p.order)
    return plan


@register_block
class FirIir(Block):
    """Separable FIR-IIR filter: horizontal FIR, vertical IIR recurrence, pointwise 1x1.

    Shapes: (C, H, W) -> (out, H, W). Layout: ``0`` = depthwise 1xk conv (FIR), ``1`` = vertical
    IIR ``h[r] = x[r] + a h[r-1]`` per channel (|a| < 1, trainable), ``2`` = pointwise 1x1, then
    norm and activation (design defaults). Asama, Isikdogan et al. 2020, "MagIC: a machine
    learning imaging core using separable FIR-IIR filters"; principle A10. Also available as the conv kind
    ``fir_iir`` (``kernel`` = FIR width).

    >>> from archlab.blocks import BLOCKS
    >>> p = BLOCKS['fir_iir'].Params(out=16, kernel=5)
    >>> BLOCKS['fir_iir'].output_shape(p, [(6, 64, 64)])
    (16, 64, 64)
    """

    name = "fir_iir"
    family = "conv"
    Params = FirIirParams
    width_fields = ("out",)
    input_ranks = (3,)
    examples = [
        ({"out": 16, "kernel": 5}, [(6, 20, 12)]),
        ({"kernel": 3, "chunk": 8, "norm": "none", "act": "none"}, [(4, 30, 7)]),
        ({"out": 8, "kernel": 7, "chunk": 4, "order": "pre", "init": -0.3}, [(8, 16, 9)]),
    ]

    @classmethod
    def output_shape(cls, p, inputs):
        cls.check_inputs(inputs)
        return fir_iir_plan(p, inputs[0], p.kernel, p.chunk, p.init).output

    @classmethod
    def ops(cls, p, inputs) -> list[Op]:
        return fir_iir_plan(p, inputs[0], p.kernel, p.chunk, p.init).ops()

    @classmethod
    def build(cls, p, inputs):
        return fir_iir_plan(p, inputs[0], p.kernel, p.chunk, p.init).build()


def _fir_iir_kind(p, inp: Shape) -> Plan:
    """Conv kind ``fir_iir``: the FIR-IIR filter with a conv block's settings (the kernel's
    width is the FIR width; the vertical extent is the recurrence's)."""
    kernel = p.kernel if isinstance(p.kernel, int) else p.kernel[-1]
    stride = p.stride if isinstance(p.stride, int) else max(p.stride)
    if stride != 1 or p.groups != 1 or p.dilation not in (1, (1, 1)):
        raise BlockError(
            "conv kind 'fir_iir' supports stride 1, groups 1 and dilation 1 only, got "
            f"stride={p.stride}, groups={p.groups}, dilation={p.dilation}",
            fix="downsample with a separate node (pool or space_to_depth) after it",
            field="kind",
        )
    if kernel % 2 == 0:
        raise BlockError(f"conv kind 'fir_iir' needs an odd kernel, got {kernel}",
                         fix=f"use kernel: {kernel + 1}", field="kernel")
    return fir_iir_plan(p, inp, kernel, FirIirParams.model_fields["chunk"].default,
                        FirIirParams.model_fields["init"].default)


CONV_KINDS["fir_iir"] = _fir_iir_kind
