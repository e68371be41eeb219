"""Multi-head self-attention over spatial positions or sequence steps (A11).

Scaled dot-product attention (Vaswani et al. 2017, "Attention is all you need") applied to the
positions of a feature map or the steps of a sequence, as in the non-local block (Wang et al.
2018, "Non-local neural networks"): every position attends to every other, and with ``residual``
the block adds its output to its input (``z = W_z y + x``), so it can be dropped into a
pretrained network.

The attention is written as two explicit batched matrix products (``Q K^T`` and ``A V``) rather
than ``F.scaled_dot_product_attention``: PyTorch's FLOP counter does not count the fused CPU
kernel, and the op records must agree with it. Per sample with L positions, C channels, inner
width D: projections ``L*C*3D + L*D*C`` and attention ``2*L*L*D`` multiply-adds.

The projection parameters are laid out as ``torch.nn.MultiheadAttention`` lays them out
(``in_proj_weight``, ``in_proj_bias``, ``out_proj``), so weights move between the two.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt
from torch import nn

from ..ops import Op, eltwise_op, linear_op, matmul_op, move_op, numel, softmax_op
from .base import Block, BlockParams, register_block
from .layers import check_divisible


class MultiHeadSelfAttention(nn.Module):
    """(N, L, C) -> (N, L, C): multi-head scaled dot-product self-attention.

    ``inner`` is the width of the queries, keys and values (all heads together; default C);
    ``dropout`` drops attention weights during training. ``causal_length`` > 0 makes it causal
    (a decoder): position i attends to positions <= i only, for sequences of that length; the
    mask is a non-persistent buffer (not in the state dict), built once.
    """

    def __init__(self, channels: int, heads: int, inner: int | None = None,
                 dropout: float = 0.0, bias: bool = True, causal_length: int = 0) -> None:
        super().__init__()
        inner = inner or channels
        self.heads = heads
        self.head_width = inner // heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * inner, channels))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * inner)) if bias else None
        self.out_proj = nn.Linear(inner, channels, bias=bias)
        self.attention_dropout = nn.Dropout(dropout)
        self.causal = causal_length > 0
        # True above the diagonal (the future), made on the CPU (a meta-device comparison
        # imports torch._dynamo, seconds) and moved to where the weights are
        steps = torch.arange(causal_length, device="cpu")
        mask = (steps[None, :] > steps[:, None]).to(self.in_proj_weight.device)
        self.register_buffer("causal_mask", mask, persistent=False)
        # the initialisation of nn.MultiheadAttention: Xavier-uniform in, zero biases
        nn.init.xavier_uniform_(self.in_proj_weight)
        if bias:
            nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, length, _ = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        qkv = qkv.reshape(n, length, 3, self.heads, self.head_width).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]                      # (N, heads, L, d)
        scores = torch.matmul(q * (1.0 / math.sqrt(self.head_width)), k.transpose(-2, -1))
        if self.causal:
            scores = scores.masked_fill(self.causal_mask, float("-inf"))
        weights = self.attention_dropout(torch.softmax(scores, dim=-1))
        y = torch.matmul(weights, v).transpose(1, 2).reshape(n, length, -1)
        return self.out_proj(y)


def attention_ops(path: str, length: int, channels: int, heads: int, inner: int,
                  bias: bool = True, causal: bool = False) -> list[Op]:
    """Op records of :class:`MultiHeadSelfAttention` at ``path`` on (L, C) tokens, per sample."""
    prefix = f"{path}." if path else ""
    tokens = (length, channels)
    d = inner // heads
    per_head = (heads, length, d)
    scores = (heads, length, length)
    # the causal mask: one select per score (masked_fill), the mask itself a constant buffer
    mask = [Op("masked_fill", path, (scores, (length, length)), scores,
               elementwise=numel(scores))] if causal else []
    return [
        linear_op(path, tokens, (length, 3 * inner), bias=bias),
        Op("mul", path, (per_head,), per_head, elementwise=numel(per_head)),  # 1/sqrt(d) scale
        matmul_op(path, per_head, (heads, d, length), scores),                 # Q K^T
        *mask,
        softmax_op(path, scores),
        matmul_op(path, scores, per_head, per_head),                           # A V
        linear_op(f"{prefix}out_proj", (length, inner), tokens, bias=bias),
    ]


# ------------------------------------------------------------------------- the block -------


class SelfAttentionParams(BlockParams):
    """Settings of the self-attention block."""

    heads: PositiveInt = Field(1, description="attention heads; the non-local block uses 1")
    inner: PositiveInt | None = Field(
        None, description="width of queries/keys/values; default: input channels "
        "(Wang et al. use half the channels)")
    residual: bool = Field(True, description="add the input to the output (non-local block)")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the attention weights")
    bias: bool = Field(True, description="biases in the projections")
    causal: bool = Field(False, description="causal mask: step i attends to steps <= i only "
                         "(a decoder, GPT; Radford et al. 2018)")


class SpatialSelfAttention(nn.Module):
    """(N, C, *positions) -> (N, C, *positions): self-attention over all positions."""

    def __init__(self, channels: int, heads: int, inner: int, residual: bool, dropout: float,
                 bias: bool, causal_length: int = 0) -> None:
        super().__init__()
        self.residual = residual
        self.attention = MultiHeadSelfAttention(channels, heads, inner, dropout, bias,
                                                causal_length)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.flatten(2).transpose(1, 2)                  # (N, L, C)
        y = self.attention(tokens).transpose(1, 2).reshape(x.shape)
        return x + y if self.residual else y


@register_block
class SelfAttention(Block):
    """Multi-head self-attention over spatial positions or sequence steps.

    Shapes: (C, L) -> (C, L); (C, H, W) -> (C, H, W) (L = H*W positions attend to each other).
    Vaswani et al. 2017 (scaled dot-product, multi-head); Wang et al. 2018 (non-local block,
    residual). Multiply-adds per sample: ``4*L*C*D`` for the projections plus ``2*L*L*D`` for
    ``Q K^T`` and ``A V`` (D = inner width): quadratic in the number of positions, so place it
    where the feature map is small.

    >>> from archlab.blocks import BLOCKS
    >>> p = BLOCKS['self_attention'].Params(heads=4)
    >>> BLOCKS['self_attention'].output_shape(p, [(64, 14, 14)])
    (64, 14, 14)
    """

    name = "self_attention"
    family = "attention"
    Params = SelfAttentionParams
    input_ranks = (2, 3, 4)
    inherits = ()
    examples = [
        ({"heads": 4}, [(16, 6, 5)]),
        ({"heads": 2, "inner": 8, "residual": False, "bias": False}, [(12, 10)]),
        ({"heads": 1, "inner": 4}, [(8, 3, 3)]),
        ({"heads": 2, "causal": True}, [(8, 6)]),
    ]

    @classmethod
    def _inner(cls, p, inputs) -> int:
        cls.check_inputs(inputs)
        c = inputs[0][0]
        inner = p.inner or c
        check_divisible(inner, p.heads, "attention width 'inner'", "heads", None, "heads",
                        value_key="inner", by_key="heads")
        return inner

    @classmethod
    def output_shape(cls, p, inputs):
        cls._inner(p, inputs)
        return tuple(inputs[0])

    @classmethod
    def ops(cls, p, inputs):
        inner = cls._inner(p, inputs)
        shape = tuple(inputs[0])
        c, length = shape[0], numel(shape[1:])
        ops = [move_op("", "transpose", (shape,), (length, c))]
        ops += attention_ops("attention", length, c, p.heads, inner, p.bias, p.causal)
        if p.residual:
            ops.append(eltwise_op("", "add", (shape, shape), shape))
        return ops

    @classmethod
    def build(cls, p, inputs):
        inner = cls._inner(p, inputs)
        length = numel(inputs[0][1:]) if p.causal else 0
        return SpatialSelfAttention(inputs[0][0], p.heads, inner, p.residual, p.dropout, p.bias,
                                    length)
