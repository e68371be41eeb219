"""Tokens: learned tensors, patch embedding, token embedding and a tied output projection.

A **token sequence** is ``(L, D)`` per sample: L positions, D features each, the layout that
``nn.Linear``, ``nn.LayerNorm`` and attention read directly (transformers, ViT, GPT). A
channels-first signal sequence ``(C, L)`` becomes tokens with ``{block: transpose}``.

* ``learned``: a learned tensor as a node (a class token, a learned positional embedding),
  joined with the node's input: added (broadcast), multiplied, or concatenated along an axis
  (prepended or appended). It is stored with a leading axis of 1, as torchvision and timm
  store ``class_token`` and ``pos_embedding``.
* ``patch_embed``: a convolution with stride = kernel = patch (Dosovitskiy et al. 2021, ViT),
  then the patches as tokens: (C, H, W) -> (H/p * W/p, D).
* ``embedding``: integer token ids (L,) -> (L, D) by table lookup (the ids may come as a float
  tensor holding integers: they are cast, so meta-device analysis works as for images).
* ``unembed``: the output projection onto a vocabulary that *reuses* an ``embedding`` node's
  table (tied input/output embeddings, Press & Wolf 2017; GPT-2): ``logits = h @ E^T``. The
  design writes ``{block: unembed, tie: wte}``; the resolver gives the node the table as a
  second input (``wte.weight``), and the built forward passes ``self.wte.weight`` to it, so the
  parameters are counted and stored once.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt, field_validator
from torch import Tensor, nn

from ..errors import BlockError
from ..ops import Op, Shape, conv_op, eltwise_op, linear_op, move_op, numel
from .base import Block, BlockParams, register_block
from .layers import conv_spatial

# ---------------------------------------------------------------------------- learned -------


class LearnedParams(BlockParams):
    """Settings of a learned tensor."""

    shape: tuple[int, ...] = Field(description="the tensor's shape per sample, e.g. [1, 768] "
                                   "(a class token) or [197, 768] (positions x width)")
    combine: Literal["add", "multiply", "concat"] = Field(
        "add", description="how it joins the input: add (positional embedding), multiply, or "
        "concat along 'axis' (a class token)")
    axis: int = Field(0, ge=0, description="concat only: the axis to join along (0 = tokens of "
                      "(L, D))")
    position: Literal["first", "last"] = Field("first", description="concat only: before the "
                                               "input (ViT's class token) or after it")
    init: Literal["zeros", "normal", "ones"] = Field(
        "normal", description="initial values: zeros (ViT's class token), normal with 'std' "
        "(positional embeddings), ones")
    std: float = Field(0.02, gt=0, description="standard deviation of init: normal")

    @field_validator("shape")
    @classmethod
    def _positive(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v or any(x <= 0 for x in v):
            raise ValueError(f"sizes must be positive, got {list(v)}")
        return v


class LearnedTensor(nn.Module):
    """(N, *S) -> combine(x, value): a learned ``value`` of shape (1, *shape)."""

    def __init__(self, shape: Shape, combine: str, axis: int, first: bool, init: str,
                 std: float) -> None:
        super().__init__()
        self.value = nn.Parameter(torch.zeros(1, *shape))
        # (a meta tensor holds no values: PyTorch's meta normal_ imports torch._dynamo, seconds)
        if init == "normal" and not self.value.is_meta:
            nn.init.normal_(self.value, std=std)
        elif init == "ones":
            nn.init.ones_(self.value)
        self.combine = combine
        self.dim = axis + 1
        self.first = first
        self.sizes = [-1] * len(shape)  # never empty: TorchScript infers List[int]

    def forward(self, x: Tensor) -> Tensor:
        if self.combine == "add":
            return x + self.value
        if self.combine == "multiply":
            return x * self.value
        value = self.value.expand([x.shape[0]] + self.sizes)
        if self.first:
            return torch.cat([value, x], self.dim)
        return torch.cat([x, value], self.dim)


def _learned_shape(p: LearnedParams, inp: Shape) -> Shape:
    shape = tuple(p.shape)
    if len(shape) != len(inp):
        raise BlockError(f"learned tensor of shape {list(shape)} has rank {len(shape)}, its input "
                         f"{tuple(inp)} rank {len(inp)}",
                         fix=f"give 'shape' {len(inp)} sizes (per sample, no batch)", field="shape")
    if p.combine == "concat":
        if p.axis >= len(inp):
            raise BlockError(f"axis {p.axis} does not exist in the input {tuple(inp)}",
                             fix=f"use an axis from 0 to {len(inp) - 1}", field="axis")
        differ = [k for k in range(len(inp)) if k != p.axis and shape[k] != inp[k]]
        if differ:
            want = list(inp)
            want[p.axis] = shape[p.axis]
            raise BlockError(f"a learned tensor concatenated along axis {p.axis} needs the "
                             f"input's sizes on the other axes, got {list(shape)} for input "
                             f"{tuple(inp)}", fix=f"use shape: {want}", field="shape")
        return (*inp[:p.axis], inp[p.axis] + shape[p.axis], *inp[p.axis + 1:])
    for k, (a, b) in enumerate(zip(shape, inp, strict=True)):
        if a not in (1, b):
            raise BlockError(f"a learned tensor of shape {list(shape)} does not broadcast to its "
                             f"input {tuple(inp)} (axis {k}: {a} vs {b})",
                             fix=f"use shape: {list(inp)} (or 1 on the axes to broadcast)",
                             field="shape")
    return tuple(inp)


@register_block
class Learned(Block):
    """A learned tensor as a node, added to, multiplied with or concatenated with its input.

    Shapes: (*S) -> (*S) for add/multiply; concat along ``axis``: (L, D) -> (L + shape[0], D).
    A class token is ``{block: learned, shape: [1, 768], combine: concat, init: zeros}`` and a
    learned positional embedding ``{block: learned, shape: [197, 768]}`` (Dosovitskiy et al.
    2021, ViT; Devlin et al. 2019, BERT). Parameters: prod(shape).

    >>> from archlab.blocks import BLOCKS
    >>> B = BLOCKS['learned']
    >>> B.output_shape(B.Params(shape=[1, 768], combine='concat'), [(196, 768)])
    (197, 768)
    """

    name = "learned"
    family = "tokens"
    Params = LearnedParams
    inherits = ()
    examples = [
        ({"shape": [1, 6], "combine": "concat", "init": "zeros"}, [(4, 6)]),
        ({"shape": [5, 6]}, [(5, 6)]),
        ({"shape": [3, 1, 1], "combine": "multiply", "init": "ones"}, [(3, 4, 4)]),
        ({"shape": [2, 3], "combine": "concat", "axis": 1, "position": "last"}, [(2, 5)]),
    ]

    @classmethod
    def output_shape(cls, p, inputs):
        cls.check_inputs(inputs)
        return _learned_shape(p, tuple(inputs[0]))

    @classmethod
    def ops(cls, p, inputs):
        inp = tuple(inputs[0])
        out = _learned_shape(p, inp)
        params = numel(tuple(p.shape))
        if p.combine == "concat":
            parts = (tuple(p.shape), inp) if p.position == "first" else (inp, tuple(p.shape))
            return [Op("cat", "", parts, out, params=params, weights_read=params)]
        kind = "add" if p.combine == "add" else "mul"
        return [eltwise_op("", kind, (inp, tuple(p.shape)), out, params=params)]

    @classmethod
    def build(cls, p, inputs):
        _learned_shape(p, tuple(inputs[0]))
        return LearnedTensor(tuple(p.shape), p.combine, p.axis, p.position == "first", p.init,
                             p.std)


# ------------------------------------------------------------------------ patch embed -------


class PatchEmbedParams(BlockParams):
    """Settings of a patch embedding."""

    out: PositiveInt = Field(description="token width D (ViT-B: 768)")
    patch: PositiveInt = Field(16, description="patch size p: kernel = stride = p (ViT-B/16: 16)")
    bias: bool = Field(True, description="bias of the projection")


class PatchEmbedding(nn.Module):
    """(N, C, H, W) -> (N, H/p * W/p, D): a conv with stride = kernel = p, then tokens."""

    def __init__(self, cin: int, out: int, patch: int, dims: int, bias: bool) -> None:
        super().__init__()
        conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dims]
        self.proj = conv(cin, out, patch, patch, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


def _patch_grid(p: PatchEmbedParams, inp: Shape) -> tuple[int, ...]:
    spatial = inp[1:]
    bad = [s for s in spatial if s % p.patch]
    if bad:
        from .layers import nearest_divisors, nearest_multiples

        size = bad[0]
        raise BlockError(
            f"patch size {p.patch} must divide the input size, got {tuple(spatial)}",
            fix=f"use patch: {' or '.join(map(str, nearest_divisors(size, p.patch)))} (divisors of "
                f"{size} nearest {p.patch}), or an input size of "
                f"{' or '.join(map(str, nearest_multiples(size, p.patch)))}", field="patch")
    dims = len(spatial)
    return conv_spatial(spatial, (p.patch,) * dims, (p.patch,) * dims, (0,) * dims, (1,) * dims)


@register_block
class PatchEmbed(Block):
    """Patch embedding: split the image into p x p patches, project each to D features, as tokens.

    Shapes: (C, H, W) -> (H/p * W/p, D); also (C, L) -> (L/p, D). Dosovitskiy et al. 2021
    ("An image is worth 16x16 words", ViT): a conv with kernel = stride = p. Parameters
    ``D*C*p*p + D``; multiply-adds ``L*D*C*p*p``.

    >>> from archlab.blocks import BLOCKS
    >>> B = BLOCKS['patch_embed']
    >>> B.output_shape(B.Params(out=768, patch=16), [(3, 224, 224)])
    (196, 768)
    """

    name = "patch_embed"
    family = "tokens"
    Params = PatchEmbedParams
    width_fields = ("out",)
    input_ranks = (2, 3, 4)
    inherits = ()
    examples = [({"out": 8, "patch": 4}, [(3, 8, 12)]), ({"out": 6, "patch": 2, "bias": False},
                                                        [(2, 10)])]

    @classmethod
    def output_shape(cls, p, inputs):
        cls.check_inputs(inputs)
        grid = _patch_grid(p, inputs[0])
        return (numel(grid), p.out)

    @classmethod
    def ops(cls, p, inputs):
        inp = tuple(inputs[0])
        grid = _patch_grid(p, inp)
        dims = len(grid)
        conv = conv_op("proj", inp, (p.out, *grid), (p.patch,) * dims, bias=p.bias)
        return [conv, move_op("", "transpose", ((p.out, numel(grid)),), (numel(grid), p.out))]

    @classmethod
    def build(cls, p, inputs):
        inp = tuple(inputs[0])
        _patch_grid(p, inp)
        return PatchEmbedding(inp[0], p.out, p.patch, len(inp) - 1, p.bias)


# ------------------------------------------------------------------------- embedding -------


class EmbeddingParams(BlockParams):
    """Settings of a token embedding."""

    vocab: PositiveInt = Field(description="number of distinct token ids (GPT-2: 50257)")
    out: PositiveInt = Field(description="embedding width D (GPT-2 small: 768)")
    std: float = Field(0.02, gt=0, description="standard deviation of the initial table")


class TokenEmbedding(nn.Module):
    """(N, L) integer ids -> (N, L, D): rows of ``weight`` (vocab, D), as ``nn.Embedding``."""

    def __init__(self, vocab: int, out: int, std: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(vocab, out))
        if not self.weight.is_meta:  # meta normal_ imports torch._dynamo (seconds)
            nn.init.normal_(self.weight, std=std)

    def forward(self, ids: Tensor) -> Tensor:
        if ids.is_floating_point():
            ids = ids.long()   # ids held in a float tensor (meta-device analysis, tests)
        return F.embedding(ids, self.weight)


@register_block
class Embedding(Block):
    """Token embedding: integer ids to learned vectors, the input layer of a language model.

    Shapes: (L,) -> (L, D). Bengio et al. 2003; Vaswani et al. 2017. Parameters ``vocab*D``;
    no multiply-adds (a table lookup). An ``unembed`` node can reuse the table (``tie``).

    >>> from archlab.blocks import BLOCKS
    >>> B = BLOCKS['embedding']
    >>> B.param_count(B.Params(vocab=50257, out=768), [(1024,)])
    38597376
    """

    name = "embedding"
    family = "tokens"
    Params = EmbeddingParams
    input_ranks = (1,)
    inherits = ()
    input_dtype = "long"
    examples = [({"vocab": 11, "out": 6}, [(7,)])]

    @classmethod
    def output_shape(cls, p, inputs):
        cls.check_inputs(inputs)
        return (inputs[0][0], p.out)

    @classmethod
    def ops(cls, p, inputs):
        length = inputs[0][0]
        params = p.vocab * p.out
        return [Op("embedding", "", ((length,),), (length, p.out), params=params,
                   weights_read=length * p.out)]

    @classmethod
    def build(cls, p, inputs):
        return TokenEmbedding(p.vocab, p.out, p.std)

    @staticmethod
    def tied_weight(p) -> tuple[str, Shape]:
        """The attribute a tied ``unembed`` reads, and its shape."""
        return "weight", (p.vocab, p.out)


# --------------------------------------------------------------------------- unembed -------


class UnembedParams(BlockParams):
    """Settings of a tied output projection."""

    tie: str = Field(description="name of the embedding node whose table this reuses")


class TiedLinear(nn.Module):
    """(N, L, D), table (V, D) -> (N, L, V): ``x @ table^T``; it owns no parameters."""

    def forward(self, x: Tensor, table: Tensor) -> Tensor:
        return F.linear(x, table)


@register_block
class Unembed(Block):
    """Output projection onto the vocabulary with an embedding node's table (tied embeddings).

    Shapes: (L, D) and the table (V, D) -> (L, V). Press & Wolf 2017 ("Using the output
    embedding to improve language models"); GPT-2 (Radford et al. 2019). In a design:
    ``{block: unembed, tie: wte}``; the table is the node's second input, so its parameters
    are counted once, at the embedding. Multiply-adds ``L*D*V``.

    >>> from archlab.blocks import BLOCKS
    >>> B = BLOCKS['unembed']
    >>> B.output_shape(B.Params(tie='wte'), [(1024, 768), (50257, 768)])
    (1024, 50257)
    """

    name = "unembed"
    family = "tokens"
    Params = UnembedParams
    n_inputs = 2
    inherits = ()
    node_refs = ("tie",)
    weight_inputs = (1,)
    examples = [({"tie": "embed"}, [(5, 6), (9, 6)])]

    @classmethod
    def output_shape(cls, p, inputs):
        cls.check_inputs(inputs)
        x, table = tuple(inputs[0]), tuple(inputs[1])
        if len(table) != 2 or not x or x[-1] != table[1]:
            raise BlockError(f"unembed needs features of width {table[-1]} (the table "
                             f"{table} of '{p.tie}'), got input {x}",
                             fix=f"give the node before it {table[-1]} features, or tie another "
                                 "embedding", field="tie")
        return (*x[:-1], table[0])

    @classmethod
    def ops(cls, p, inputs):
        out = cls.output_shape(p, inputs)
        op = linear_op("", tuple(inputs[0]), out, bias=False)
        # the table's parameters belong to the embedding node: counted there, once
        return [Op("linear", "", (tuple(inputs[0]),), out, params=0,
                   multiply_adds=op.multiply_adds, weights_read=numel(tuple(inputs[1])))]

    @classmethod
    def build(cls, p, inputs):
        cls.output_shape(p, inputs)
        return TiedLinear()


# ------------------------------------------------------------------------ layer norm -------


class LayerNormParams(BlockParams):
    """Settings of a layer norm over the last axis."""

    eps: float = Field(1e-5, gt=0, description="added to the variance (ViT 1e-6, GPT-2 1e-5)")
    affine: bool = Field(True, description="learned gain and shift")


@register_block
class LayerNormBlock(Block):
    """Layer norm over the last axis: the features of each token (L, D), or of a vector.

    Shapes: (*S, D) -> (*S, D). Ba et al. 2016, as ``nn.LayerNorm(D)``: the final norm of a
    pre-norm transformer (ViT, GPT-2). For channels-first maps and sequences use ``norm`` with
    ``{kind: layer, per_position: true}``. Parameters: 2D.

    >>> from archlab.blocks import BLOCKS
    >>> B = BLOCKS['layer_norm']
    >>> B.param_count(B.Params(), [(197, 768)])
    1536
    """

    name = "layer_norm"
    family = "tokens"
    Params = LayerNormParams
    inherits = ()
    examples = [({}, [(5, 6)]), ({"eps": 1e-6, "affine": False}, [(7,)])]

    @classmethod
    def output_shape(cls, p, inputs):
        cls.check_inputs(inputs)
        return tuple(inputs[0])

    @classmethod
    def ops(cls, p, inputs):
        shape = tuple(inputs[0])
        from ..ops import norm_op

        return [norm_op("", "layer_norm", shape, 2 * shape[-1] if p.affine else 0)]

    @classmethod
    def build(cls, p, inputs):
        return nn.LayerNorm(inputs[0][-1], eps=p.eps, elementwise_affine=p.affine)
