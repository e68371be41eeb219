"""Axis operations: select or slice along an axis, permute and transpose axes.

Axes are those of one sample (the batch axis is never counted or touched): for tokens (L, D)
axis 0 is the positions and axis 1 the features; for an image (C, H, W) axis 0 is channels.
Negative axes and indices count from the end, as in Python. Every shape is checked when the
design is resolved; the built modules return views (no copy, no work), as ``x[:, 0]`` does.

* ``select``: take one index along an axis and drop the axis: ViT's class token is
  ``{block: select, axis: 0, index: 0}`` on (197, 768) -> (768,);
* ``slice``: ``start:stop:step`` along an axis, keeping it;
* ``permute``: reorder all axes (``order: [1, 0]``); ``transpose``: swap two axes (default the
  first two: a channels-first sequence (C, L) becomes tokens (L, C) and back).
"""

from __future__ import annotations

import torch
from pydantic import Field, PositiveInt, field_validator
from torch import Tensor, nn

from ..errors import BlockError
from ..ops import move_op
from .base import Block, BlockParams, register_block


def _axis(axis: int, rank: int, inp, field: str = "axis") -> int:
    if not -rank <= axis < rank:
        raise BlockError(f"axis {axis} does not exist in an input of shape {tuple(inp)} (axes "
                         f"0..{rank - 1} or -{rank}..-1; the batch is not counted)",
                         fix=f"use an axis from 0 to {rank - 1}", field=field)
    return axis % rank


# ----------------------------------------------------------------------------- select -------


class SelectParams(BlockParams):
    """Settings of a select."""

    axis: int = Field(0, description="the axis to take from (0 = tokens of (L, D))")
    index: int = Field(0, description="the index taken; negative counts from the end")


class Select(nn.Module):
    """(N, *S) -> (N, *S without axis): ``x.select(axis + 1, index)``, a view."""

    def __init__(self, axis: int, index: int) -> None:
        super().__init__()
        self.dim = axis + 1
        self.index = index

    def forward(self, x: Tensor) -> Tensor:
        return x.select(self.dim, self.index)


def _select(p: SelectParams, inp) -> tuple[int, tuple[int, ...]]:
    axis = _axis(p.axis, len(inp), inp)
    size = inp[axis]
    if not -size <= p.index < size:
        raise BlockError(f"index {p.index} is outside axis {axis} of size {size} (input "
                         f"{tuple(inp)})", fix=f"use an index from 0 to {size - 1} (or -1 for "
                         "the last)", field="index")
    return axis, tuple(inp[:axis]) + tuple(inp[axis + 1:])


@register_block
class SelectBlock(Block):
    """Take one index along an axis and drop that axis (the class token of a ViT).

    Shapes: (L, D) -> (D,) along axis 0; in general the input shape without ``axis``.
    Dosovitskiy et al. 2021 (ViT) classify from the class token, ``x[:, 0]``.

    >>> from archlab.blocks import BLOCKS
    >>> B = BLOCKS['select']
    >>> B.output_shape(B.Params(axis=0, index=0), [(197, 768)])
    (768,)
    """

    name = "select"
    family = "axis"
    Params = SelectParams
    inherits = ()
    examples = [({}, [(5, 6)]), ({"axis": -1, "index": -1}, [(3, 4, 5)])]

    @classmethod
    def output_shape(cls, p, inputs):
        cls.check_inputs(inputs)
        if len(inputs[0]) < 2:
            raise BlockError(f"select drops an axis; a vector {tuple(inputs[0])} has only one",
                             fix="use slice to keep a part of a vector")
        return _select(p, inputs[0])[1]

    @classmethod
    def ops(cls, p, inputs):
        return [move_op("", "select", (tuple(inputs[0]),), cls.output_shape(p, inputs))]

    @classmethod
    def build(cls, p, inputs):
        axis, _ = _select(p, inputs[0])
        return Select(axis, p.index % inputs[0][axis])


# ------------------------------------------------------------------------------ slice -------


class SliceParams(BlockParams):
    """Settings of a slice."""

    axis: int = Field(0, description="the axis to slice")
    start: int = Field(0, description="first index (negative counts from the end)")
    stop: int | None = Field(None, description="index after the last; default: the end")
    step: PositiveInt = Field(1, description="take every step-th index")


class Slicing(nn.Module):
    """(N, *S) -> (N, *S'): ``start:stop:step`` along one axis, a view."""

    def __init__(self, axis: int, start: int, stop: int, step: int) -> None:
        super().__init__()
        self.dim, self.start, self.stop, self.step = axis + 1, start, stop, step

    def forward(self, x: Tensor) -> Tensor:
        return torch.ops.aten.slice(x, self.dim, self.start, self.stop, self.step)


def _slice(p: SliceParams, inp) -> tuple[int, range]:
    axis = _axis(p.axis, len(inp), inp)
    kept = range(inp[axis])[p.start:p.stop:p.step]
    if len(kept) == 0:
        raise BlockError(f"slice {p.start}:{p.stop}:{p.step} of axis {axis} (size {inp[axis]}) "
                         f"is empty (input {tuple(inp)})",
                         fix=f"choose start < stop within 0..{inp[axis]}", field="start")
    return axis, kept


@register_block
class SliceBlock(Block):
    """Keep ``start:stop:step`` along an axis (the first tokens, every other step).

    Shapes: (L, D) -> (len(range(L)[start:stop:step]), D) along axis 0. Python's slice rules,
    as in ``x[:, start:stop:step]``; e.g. the distillation and class tokens of DeiT
    (Touvron et al. 2021) are ``slice: {start: 0, stop: 2}``.

    >>> from archlab.blocks import BLOCKS
    >>> B = BLOCKS['slice']
    >>> B.output_shape(B.Params(start=1), [(197, 768)])
    (196, 768)
    """

    name = "slice"
    family = "axis"
    Params = SliceParams
    inherits = ()
    examples = [({"start": 1}, [(5, 6)]), ({"axis": 1, "start": -4, "step": 2}, [(3, 9, 2)])]

    @classmethod
    def output_shape(cls, p, inputs):
        cls.check_inputs(inputs)
        axis, kept = _slice(p, inputs[0])
        out = list(inputs[0])
        out[axis] = len(kept)
        return tuple(out)

    @classmethod
    def ops(cls, p, inputs):
        return [move_op("", "slice", (tuple(inputs[0]),), cls.output_shape(p, inputs))]

    @classmethod
    def build(cls, p, inputs):
        axis, kept = _slice(p, inputs[0])
        return Slicing(axis, kept.start, kept.stop, kept.step)


# ------------------------------------------------------------------ permute, transpose -------


class PermuteParams(BlockParams):
    """Settings of a permute."""

    order: tuple[int, ...] = Field(description="the new order of the axes, e.g. [1, 2, 0] "
                                   "turns (C, H, W) into (H, W, C)")

    @field_validator("order")
    @classmethod
    def _is_permutation(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if sorted(v) != list(range(len(v))):
            raise ValueError(f"must list each axis 0..{len(v) - 1} once, got {list(v)}")
        return v


class Permute(nn.Module):
    """(N, *S) -> (N, *S[order]), a view."""

    def __init__(self, order: tuple[int, ...]) -> None:
        super().__init__()
        self.dims = [0] + [d + 1 for d in order]  # never empty: TorchScript infers List[int]

    def forward(self, x: Tensor) -> Tensor:
        return x.permute(self.dims)


@register_block
class PermuteBlock(Block):
    """Reorder the axes of each sample.

    Shapes: (*S) -> tuple(S[i] for i in order), e.g. (C, H, W) -> (H, W, C) with order
    [1, 2, 0] (channels-last, as ConvNeXt's block applies its linear layers; Liu et al. 2022).

    >>> from archlab.blocks import BLOCKS
    >>> B = BLOCKS['permute']
    >>> B.output_shape(B.Params(order=[1, 2, 0]), [(96, 56, 56)])
    (56, 56, 96)
    """

    name = "permute"
    family = "axis"
    Params = PermuteParams
    inherits = ()
    examples = [({"order": [1, 2, 0]}, [(3, 4, 5)]), ({"order": [1, 0]}, [(6, 2)])]

    @classmethod
    def output_shape(cls, p, inputs):
        cls.check_inputs(inputs)
        inp = tuple(inputs[0])
        if len(p.order) != len(inp):
            raise BlockError(f"permute order {list(p.order)} has {len(p.order)} axes, the input "
                             f"{inp} has {len(inp)}",
                             fix=f"list all {len(inp)} axes, e.g. order: "
                                 f"{list(range(len(inp)))[::-1]}", field="order")
        return tuple(inp[i] for i in p.order)

    @classmethod
    def ops(cls, p, inputs):
        return [move_op("", "permute", (tuple(inputs[0]),), cls.output_shape(p, inputs))]

    @classmethod
    def build(cls, p, inputs):
        cls.output_shape(p, inputs)
        return Permute(p.order)


class TransposeParams(BlockParams):
    """Settings of a transpose."""

    axes: tuple[int, int] = Field((0, 1), description="the two axes to swap (default the first "
                                  "two: (C, L) <-> (L, C))")


class Transposing(nn.Module):
    """(N, *S) -> (N, *S with two axes swapped), a view."""

    def __init__(self, a: int, b: int) -> None:
        super().__init__()
        self.a, self.b = a + 1, b + 1

    def forward(self, x: Tensor) -> Tensor:
        return x.transpose(self.a, self.b)


@register_block
class TransposeBlock(Block):
    """Swap two axes of each sample: channels-first sequences (C, L) to tokens (L, C) and back.

    Shapes: (C, L) -> (L, C) by default; any two axes with ``axes: [a, b]``. Vaswani et al.
    2017 write sequences as (L, D); 1D convolutions read (C, L).

    >>> from archlab.blocks import BLOCKS
    >>> B = BLOCKS['transpose']
    >>> B.output_shape(B.Params(), [(64, 100)])
    (100, 64)
    """

    name = "transpose"
    family = "axis"
    Params = TransposeParams
    inherits = ()
    examples = [({}, [(4, 7)]), ({"axes": [-1, 0]}, [(2, 3, 5)])]

    @classmethod
    def _axes(cls, p, inp) -> tuple[int, int]:
        return (_axis(p.axes[0], len(inp), inp, "axes"), _axis(p.axes[1], len(inp), inp, "axes"))

    @classmethod
    def output_shape(cls, p, inputs):
        cls.check_inputs(inputs)
        inp = list(inputs[0])
        if len(inp) < 2:
            raise BlockError(f"transpose needs two axes, got a vector {tuple(inp)}",
                             fix="add a 'reshape' first")
        a, b = cls._axes(p, inp)
        inp[a], inp[b] = inp[b], inp[a]
        return tuple(inp)

    @classmethod
    def ops(cls, p, inputs):
        return [move_op("", "transpose", (tuple(inputs[0]),), cls.output_shape(p, inputs))]

    @classmethod
    def build(cls, p, inputs):
        cls.output_shape(p, inputs)
        a, b = cls._axes(p, inputs[0])
        return Transposing(a, b)
