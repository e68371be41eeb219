"""Sequence blocks: LSTM and GRU layers (optionally layer-normalised), a transformer encoder layer,
and a positional encoding. Sequences are channels-first, (C, L), like 1D convolutions, so conv,
pool and recurrent nodes mix freely.

Recurrent layers (Hochreiter & Schmidhuber 1997, LSTM; Cho et al. 2014, GRU) are written as
explicit matrix products, which PyTorch's FLOP counter sees exactly (it does not look inside
``nn.LSTM``): the input projection of all steps is one batched product, then one recurrent
product per step. Per direction and sample, with G gates (LSTM 4, GRU 3), input width C, hidden
width H and L steps: ``L*G*H*(C + H)`` multiply-adds, the same work ``nn.LSTM``/``nn.GRU`` do.
Parameters have ``nn.LSTM``/``nn.GRU``'s names, shapes and count (``weight_ih_l0``,
``weight_hh_l0``, ``bias_ih_l0``, ``bias_hh_l0``, ``*_reverse``), so weights load either way.

Layer normalisation (Ba, Kiros & Hinton 2016; principle C8: layer norm for RNNs) follows the
paper's LN-LSTM: ``gates = LN(W_h h) + LN(W_x x)``, ``h = o * tanh(LN(c))``; each LN has a gain
and a shift, and the shifts replace the two bias vectors. The GRU variant normalises its input
and recurrent projections the same way (no cell state).
"""

from __future__ import annotations

import math
from typing import Literal  # noqa: UP035  TorchScript reads Optional

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt
from torch import nn

from ..ops import Op, Shape, eltwise_op, linear_op, move_op, norm_op
from .attention import MultiHeadSelfAttention, attention_ops
from .base import Block, BlockParams, register_block
from .layers import ActSpec, act_ops, check_divisible, make_act

GATES = {"lstm": 4, "gru": 3}
# element-wise operations per hidden unit and step (gate activations, products, sums),
# counted so they are never silently dropped: LSTM 4 gate activations + 4 sums of the two
# projections + c = f*c + i*g (3) + tanh(c) + o*tanh(c); GRU 3 sums + 3 activations + r*(.)
# + n + z*(h - n) (3)
CELL_ELEMENTWISE = {"lstm": 13, "gru": 10}


_RECURRENT_NAMES = [f"{kind}{s}" for s in ("", "_reverse")
                    for kind in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
                                 "ln_ih_l0", "ln_hh_l0", "ln_cell_l0")]


class RecurrentLayer(nn.Module):
    """(N, C, L) -> (N, D*H, L) with ``output='sequence'`` or (N, D*H) with ``output='last'``
    (D = 2 when bidirectional). ``cell`` is 'lstm' or 'gru'.

    A weight or layer norm the layer does not have is a plain ``None`` attribute, so the
    forward (written out for both directions) compiles with TorchScript."""

    def __init__(self, cell: str, input_size: int, hidden: int, bidirectional: bool = False,
                 layer_norm: bool = False, output: str = "sequence") -> None:
        super().__init__()
        self.is_lstm = cell == "lstm"
        self.hidden = hidden
        self.layer_norm = layer_norm
        self.last = output == "last"
        self.bidirectional = bidirectional
        gates = GATES[cell] * hidden
        # nn.LSTM's initialisation: uniform in +-1/sqrt(H)
        bound = 1.0 / math.sqrt(hidden)
        made: set[str] = set()
        for s in ["", "_reverse"] if bidirectional else [""]:
            self.register_parameter(f"weight_ih_l0{s}", _uniform((gates, input_size), bound))
            self.register_parameter(f"weight_hh_l0{s}", _uniform((gates, hidden), bound))
            made |= {f"weight_ih_l0{s}", f"weight_hh_l0{s}"}
            if layer_norm:
                self.add_module(f"ln_ih_l0{s}", nn.LayerNorm(gates))
                self.add_module(f"ln_hh_l0{s}", nn.LayerNorm(gates))
                made |= {f"ln_ih_l0{s}", f"ln_hh_l0{s}"}
                if cell == "lstm":
                    self.add_module(f"ln_cell_l0{s}", nn.LayerNorm(hidden))
                    made.add(f"ln_cell_l0{s}")
            else:
                self.register_parameter(f"bias_ih_l0{s}", _uniform((gates,), bound))
                self.register_parameter(f"bias_hh_l0{s}", _uniform((gates,), bound))
                made |= {f"bias_ih_l0{s}", f"bias_hh_l0{s}"}
        for name in _RECURRENT_NAMES:
            if name not in made:
                setattr(self, name, None)

    def _norm(self, x: torch.Tensor, which: int, reverse: bool) -> torch.Tensor:
        """Layer norm ``which`` (0 input projection, 1 recurrent projection, 2 cell)."""
        if reverse:
            if which == 0 and self.ln_ih_l0_reverse is not None:
                return self.ln_ih_l0_reverse(x)
            if which == 1 and self.ln_hh_l0_reverse is not None:
                return self.ln_hh_l0_reverse(x)
            if which == 2 and self.ln_cell_l0_reverse is not None:
                return self.ln_cell_l0_reverse(x)
        else:
            if which == 0 and self.ln_ih_l0 is not None:
                return self.ln_ih_l0(x)
            if which == 1 and self.ln_hh_l0 is not None:
                return self.ln_hh_l0(x)
            if which == 2 and self.ln_cell_l0 is not None:
                return self.ln_cell_l0(x)
        return x

    def _direction(self, x: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor,
                   bias_ih: torch.Tensor | None, bias_hh: torch.Tensor | None,
                   reverse: bool) -> torch.Tensor:
        """(N, L, C) -> (N, L, H) for one direction, steps in the order given."""
        n, length, _ = x.shape
        # all steps' input projections in one product: the parallel part of the work
        projected = F.linear(x, w_ih, bias_ih)
        if self.layer_norm:
            projected = self._norm(projected, 0, reverse)
        h = x.new_zeros(n, self.hidden)
        c = x.new_zeros(n, self.hidden)
        outputs = []
        for t in range(length):
            recurrent = F.linear(h, w_hh, bias_hh)
            if self.layer_norm:
                recurrent = self._norm(recurrent, 1, reverse)
            if self.is_lstm:
                i, f, g, o = (projected[:, t] + recurrent).chunk(4, dim=1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                cell = self._norm(c, 2, reverse) if self.layer_norm else c
                h = torch.sigmoid(o) * torch.tanh(cell)
            else:
                xr, xz, xn = projected[:, t].chunk(3, dim=1)
                hr, hz, hn = recurrent.chunk(3, dim=1)
                r = torch.sigmoid(xr + hr)
                z = torch.sigmoid(xz + hz)
                candidate = torch.tanh(xn + r * hn)
                h = candidate + z * (h - candidate)
            outputs.append(h)
        return torch.stack(outputs, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        steps = x.transpose(1, 2)                              # (N, L, C)
        forward = self._direction(steps, self.weight_ih_l0, self.weight_hh_l0, self.bias_ih_l0,
                                  self.bias_hh_l0, False)
        out = forward
        last = forward[:, -1]
        w_ih, w_hh = self.weight_ih_l0_reverse, self.weight_hh_l0_reverse
        if w_ih is not None and w_hh is not None:
            backward = self._direction(steps.flip(1), w_ih, w_hh, self.bias_ih_l0_reverse,
                                       self.bias_hh_l0_reverse, True).flip(1)
            out = torch.cat([forward, backward], dim=2)
            # the backward direction ends at step 0 (nn.LSTM's h_n)
            last = torch.cat([forward[:, -1], backward[:, 0]], dim=1)
        return last if self.last else out.transpose(1, 2)


def _uniform(shape: tuple[int, ...], bound: float) -> nn.Parameter:
    return nn.Parameter(torch.empty(shape).uniform_(-bound, bound))


class RecurrentParams(BlockParams):
    """Settings of an LSTM or GRU layer."""

    hidden: PositiveInt = Field(..., description="hidden units per direction")
    bidirectional: bool = Field(False, description="also run the sequence backwards; "
                                "the output has 2*hidden channels")
    layer_norm: bool = Field(False, description="layer-normalise the gates (and the LSTM cell), "
                             "Ba et al. 2016: steadier training of recurrent nets (C8)")
    output: Literal["sequence", "last"] = Field(
        "sequence", description="'sequence' = every step (C', L); 'last' = final state (C',)")


class _Recurrent(Block):
    family = "sequence"
    Params = RecurrentParams
    width_fields = ("hidden",)
    input_ranks = (2,)
    inherits = ()
    cell = "lstm"

    @classmethod
    def output_shape(cls, p, inputs):
        cls.check_inputs(inputs)
        width = p.hidden * (2 if p.bidirectional else 1)
        return (width, inputs[0][1]) if p.output == "sequence" else (width,)

    @classmethod
    def ops(cls, p, inputs) -> list[Op]:
        c, length = inputs[0]
        h, gates = p.hidden, GATES[cls.cell] * p.hidden
        out = cls.output_shape(p, inputs)
        ops = [move_op("", "transpose", (inputs[0],), (length, c))]
        for s in ["", "_reverse"] if p.bidirectional else [""]:
            bias = not p.layer_norm
            projection = linear_op("", (length, c), (length, gates), bias=bias)
            ops.append(projection)
            if p.layer_norm:
                ops.append(norm_op(f"ln_ih_l0{s}", "layer_norm", (length, gates), 2 * gates))
            # one (H -> G*H) product per step, including step 0 on the zero state, as nn.LSTM
            step = linear_op("", (h,), (gates,), bias=bias)
            ops.append(Op("linear", "", ((length, h),), (length, gates),
                          params=step.params, multiply_adds=length * step.multiply_adds,
                          elementwise=length * step.elementwise, weights_read=step.params,
                          extra={"steps": length}))
            if p.layer_norm:
                ops.append(norm_op(f"ln_hh_l0{s}", "layer_norm", (length, gates), 2 * gates))
                if cls.cell == "lstm":
                    ops.append(norm_op(f"ln_cell_l0{s}", "layer_norm", (length, h), 2 * h))
            ops.append(Op(f"{cls.cell}_cell", "", ((length, gates),), (length, h),
                          elementwise=CELL_ELEMENTWISE[cls.cell] * length * h))
        if p.bidirectional:
            ops.append(move_op("", "cat", ((length, h), (length, h)), (length, 2 * h)))
        ops.append(move_op("", "transpose", ((length, out[0]),), out))
        return ops

    @classmethod
    def build(cls, p, inputs):
        return RecurrentLayer(cls.cell, inputs[0][0], p.hidden, p.bidirectional, p.layer_norm,
                              p.output)


@register_block
class LSTM(_Recurrent):
    """LSTM layer over a channels-first sequence, optionally bidirectional and layer-normalised.

    Shapes: (C, L) -> (D*hidden, L), or (D*hidden,) with ``output: last`` (D = 2 if
    bidirectional). Hochreiter & Schmidhuber 1997; LN-LSTM after Ba et al. 2016. Parameters per
    direction: ``4H(C + H) + 8H`` (as ``nn.LSTM``); with layer norm ``4H(C + H) + 18H``.

    >>> from archlab.blocks import BLOCKS
    >>> p = BLOCKS['lstm'].Params(hidden=32, bidirectional=True)
    >>> BLOCKS['lstm'].output_shape(p, [(16, 50)])
    (64, 50)
    """

    name = "lstm"
    cell = "lstm"
    examples = [
        ({"hidden": 8}, [(5, 7)]),
        ({"hidden": 6, "bidirectional": True, "output": "last"}, [(4, 9)]),
        ({"hidden": 5, "layer_norm": True, "bidirectional": True}, [(3, 6)]),
    ]


@register_block
class GRU(_Recurrent):
    """GRU layer over a channels-first sequence, optionally bidirectional and layer-normalised.

    Shapes: (C, L) -> (D*hidden, L), or (D*hidden,) with ``output: last``. Cho et al. 2014, with
    ``nn.GRU``'s gate order (r, z, n) and reset gate applied after the recurrent product.
    Parameters per direction: ``3H(C + H) + 6H`` (as ``nn.GRU``); with layer norm
    ``3H(C + H) + 12H``.

    >>> from archlab.blocks import BLOCKS
    >>> p = BLOCKS['gru'].Params(hidden=32, output='last')
    >>> BLOCKS['gru'].output_shape(p, [(16, 50)])
    (32,)
    """

    name = "gru"
    cell = "gru"
    examples = [
        ({"hidden": 8}, [(5, 7)]),
        ({"hidden": 4, "bidirectional": True, "layer_norm": True, "output": "last"}, [(6, 5)]),
    ]


# -------------------------------------------------------------- transformer encoder -------


class TransformerEncoderLayer(nn.Module):
    """(N, C, L) -> (N, C, L): self-attention and a feed-forward net, each with a residual
    connection and a layer norm, after (``post``) or before (``pre``) the sub-layer.

    Submodule names follow ``nn.TransformerEncoderLayer`` (self_attn, linear1, linear2, norm1,
    norm2), so its weights load into this layer and back."""

    def __init__(self, channels: int, heads: int, ffn: int, dropout: float, act: ActSpec,
                 norm_position: str, eps: float) -> None:
        super().__init__()
        self.norm_first = norm_position == "pre"
        self.self_attn = MultiHeadSelfAttention(channels, heads, dropout=dropout)
        self.linear1 = nn.Linear(channels, ffn)
        self.activation = make_act(act) or nn.Identity()
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(ffn, channels)
        self.norm1 = nn.LayerNorm(channels, eps=eps)
        self.norm2 = nn.LayerNorm(channels, eps=eps)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def _feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout2(self.linear2(self.dropout(self.activation(self.linear1(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(1, 2)                                  # (N, L, C)
        if self.norm_first:
            x = x + self.dropout1(self.self_attn(self.norm1(x)))
            x = x + self._feed_forward(self.norm2(x))
        else:
            x = self.norm1(x + self.dropout1(self.self_attn(x)))
            x = self.norm2(x + self._feed_forward(x))
        return x.transpose(1, 2)


class TransformerParams(BlockParams):
    """Settings of a transformer encoder layer."""

    heads: PositiveInt = Field(4, description="attention heads; must divide the channels")
    ffn_ratio: float = Field(4.0, gt=0, description="feed-forward width / channels (Vaswani: 4)")
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout on attention weights and "
                           "sub-layer outputs (Vaswani et al.: 0.1)")
    act: ActSpec = Field(ActSpec(kind="relu"), description="feed-forward activation (relu; "
                         "gelu in BERT-style encoders)")
    norm_position: Literal["post", "pre"] = Field(
        "post", description="post = norm after each residual add (Vaswani); pre = before each "
        "sub-layer (Xiong et al. 2020: trains without warm-up)")
    eps: float = Field(1e-5, gt=0, description="layer-norm epsilon")


@register_block
class TransformerEncoder(Block):
    """Transformer encoder layer over a channels-first sequence.

    Shapes: (C, L) -> (C, L). Multi-head self-attention then a position-wise feed-forward net
    (C -> ffn_ratio*C -> C), each wrapped in a residual connection and a layer norm (Vaswani et
    al. 2017). Parameters ``4C^2 + 4C`` (attention) ``+ 2*C*F + F + C`` (feed-forward)
    ``+ 4C`` (norms), as ``nn.TransformerEncoderLayer``; multiply-adds per sample
    ``4*L*C^2 + 2*L^2*C + 2*L*C*F``.

    >>> from archlab.blocks import BLOCKS
    >>> p = BLOCKS['transformer_encoder'].Params(heads=8)
    >>> BLOCKS['transformer_encoder'].output_shape(p, [(64, 100)])
    (64, 100)
    """

    name = "transformer_encoder"
    family = "sequence"
    Params = TransformerParams
    input_ranks = (2,)
    inherits = ()
    examples = [
        ({"heads": 4}, [(16, 7)]),
        ({"heads": 2, "ffn_ratio": 2, "norm_position": "pre", "act": "gelu", "dropout": 0.0},
         [(8, 5)]),
    ]

    @classmethod
    def _ffn(cls, p, inputs) -> int:
        cls.check_inputs(inputs)
        c = inputs[0][0]
        check_divisible(c, p.heads, "channels", "heads", None, "heads", by_key="heads")
        return max(1, round(p.ffn_ratio * c))

    @classmethod
    def output_shape(cls, p, inputs):
        cls._ffn(p, inputs)
        return tuple(inputs[0])

    @classmethod
    def ops(cls, p, inputs) -> list[Op]:
        ffn = cls._ffn(p, inputs)
        c, length = inputs[0]
        tokens = (length, c)
        hidden = (length, ffn)
        norm1 = norm_op("norm1", "layer_norm", tokens, 2 * c)
        norm2 = norm_op("norm2", "layer_norm", tokens, 2 * c)
        add = eltwise_op("", "add", (tokens, tokens), tokens)
        attention = attention_ops("self_attn", length, c, p.heads, c)
        feed_forward = [linear_op("linear1", tokens, hidden), *act_ops("activation", p.act, hidden),
                        linear_op("linear2", hidden, tokens)]
        ops = [move_op("", "transpose", (inputs[0],), tokens)]
        if p.norm_position == "pre":
            ops += [norm1, *attention, add, norm2, *feed_forward, add]
        else:
            ops += [*attention, add, norm1, *feed_forward, add, norm2]
        ops.append(move_op("", "transpose", (tokens,), inputs[0]))
        return ops

    @classmethod
    def build(cls, p, inputs):
        ffn = cls._ffn(p, inputs)
        return TransformerEncoderLayer(inputs[0][0], p.heads, ffn, p.dropout, p.act,
                                       p.norm_position, p.eps)


# ---------------------------------------------------------------- positional encoding -------


class PositionalEncoding(nn.Module):
    """(N, C, L) -> (N, C, L): adds a position table, learned or sinusoidal (a buffer)."""

    def __init__(self, channels: int, length: int, kind: str) -> None:
        super().__init__()
        if kind == "learned":
            self.table = nn.Parameter(torch.zeros(channels, length))
            nn.init.normal_(self.table, std=0.02)
        else:
            self.register_buffer("table", sinusoid_table(channels, length), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.table


def sinusoid_table(channels: int, length: int) -> torch.Tensor:
    """(C, L) table of Vaswani et al.: channel 2i holds sin(pos / 10000^(2i/C)), 2i+1 the cos."""
    position = torch.arange(length, dtype=torch.float32)[None, :]
    frequency = torch.exp(-math.log(10000.0) * torch.arange(0, channels, 2) / channels)[:, None]
    table = torch.zeros(channels, length)
    table[0::2] = torch.sin(frequency * position)
    table[1::2] = torch.cos(frequency * position)[: channels // 2]
    return table


class PositionalParams(BlockParams):
    """Settings of the positional encoding."""

    kind: Literal["sinusoidal", "learned"] = Field(
        "sinusoidal", description="sinusoidal = fixed table (no parameters, Vaswani et al.); "
        "learned = a trainable (C, L) table (BERT, ViT)")


@register_block
class Positional(Block):
    """Adds position information to a sequence, so attention can tell the steps apart.

    Shapes: (C, L) -> (C, L). Self-attention is blind to order; Vaswani et al. 2017 add a fixed
    sinusoidal table, BERT/ViT a learned one (C*L parameters).

    >>> from archlab.blocks import BLOCKS
    >>> p = BLOCKS['positional_encoding'].Params(kind='learned')
    >>> BLOCKS['positional_encoding'].param_count(p, [(32, 50)])
    1600
    """

    name = "positional_encoding"
    family = "sequence"
    Params = PositionalParams
    input_ranks = (2,)
    inherits = ()
    examples = [({"kind": "sinusoidal"}, [(6, 9)]), ({"kind": "learned"}, [(4, 5)])]

    @classmethod
    def output_shape(cls, p, inputs):
        cls.check_inputs(inputs)
        return tuple(inputs[0])

    @classmethod
    def ops(cls, p, inputs):
        shape: Shape = tuple(inputs[0])
        params = shape[0] * shape[1] if p.kind == "learned" else 0
        return [eltwise_op("", "add", (shape, shape), shape, params=params)]

    @classmethod
    def build(cls, p, inputs):
        c, length = inputs[0]
        return PositionalEncoding(c, length, p.kind)

