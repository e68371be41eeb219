"""Merges: blocks that join two or more branches into one tensor (A4).

* ``concat``: stack along channels, keeping all information, optionally followed by a 1x1
  conv-norm-act that maps the stack to a smaller width (the first recommendation of the model
  design cheat sheet; Inception, Szegedy et al. 2015; DenseNet, Huang et al. 2017);
* ``sum``: element-wise sum (ResNet shortcuts, FPN top-down paths, Lin et al. 2017);
* ``weighted``: one trainable, non-negative, normalised weight per branch (EfficientDet's fast
  normalised fusion, Tan et al. 2020).

Errors name the inputs as ``input #i``; the design resolver replaces that token with the node
names, so a message reads "... from 'a' and ... from 'b'".
"""

from __future__ import annotations

import torch
from pydantic import Field, PositiveInt
from torch import Tensor, nn

from ..errors import BlockError
from ..ops import Op, Shape, eltwise_op, linear_op, move_op, numel
from .base import Block, BlockParams, register_block
from .basic import plan_module, plan_ops
from .layers import ActSpec, NormSpec, Order
from .plan import Plan

MAX_INPUTS = 8  # the merge modules take x0..x7: a fixed signature TorchScript can compile


def _need_two(name: str, inputs: list[Shape]) -> None:
    if len(inputs) < 2:
        raise BlockError(f"merge '{name}' needs at least 2 inputs, got {len(inputs)}",
                         fix="list two or more nodes in 'from'")
    if len(inputs) > MAX_INPUTS:
        raise BlockError(f"merge '{name}' takes at most {MAX_INPUTS} inputs, got {len(inputs)}",
                         fix="merge in two steps: a merge of the first inputs, then a merge of "
                             "that with the rest")


def gather(x0: Tensor, x1: Tensor, x2: Tensor | None, x3: Tensor | None,
           x4: Tensor | None, x5: Tensor | None, x6: Tensor | None,
           x7: Tensor | None) -> list[Tensor]:
    """The inputs given, in order (the merge modules' forward takes up to eight)."""
    out = [x0, x1]
    if x2 is not None:
        out.append(x2)
    if x3 is not None:
        out.append(x3)
    if x4 is not None:
        out.append(x4)
    if x5 is not None:
        out.append(x5)
    if x6 is not None:
        out.append(x6)
    if x7 is not None:
        out.append(x7)
    return out


def check_equal_shapes(name: str, inputs: list[Shape]) -> Shape:
    """All inputs must have one shape (sum, weighted); the error names the first that differs."""
    _need_two(name, inputs)
    first = tuple(inputs[0])
    for i, shape in enumerate(inputs[1:], start=1):
        if tuple(shape) != first:
            fix = f"use merge: concat, or give input #{i} a projection"
            if len(shape) == len(first) and shape[1:] == first[1:]:
                fix = f"use merge: concat, or give input #{i} a projection (a 1x1 conv to {first[0]} channels)"
            raise BlockError(
                f"merge '{name}' needs equal shapes, got {first} from input #0 and {tuple(shape)} "
                f"from input #{i}", fix=fix)
    return first


class ConcatParams(BlockParams):
    """Settings of a concatenation (along channels unless an axis is given)."""

    axis: int = Field(0, ge=0, description="axis of each sample to join along: 0 = channels of "
                      "(C, H, W) and (C, L), the tokens of (L, D); 1 = the steps of (C, L), the "
                      "features of (L, D)")
    out: PositiveInt | None = Field(None, description="if set: a 1x1 conv-norm-act projects the stack to this width")
    norm: NormSpec = Field(NormSpec(kind="batch"), description="norm of the projection (only with out)")
    act: ActSpec = Field(ActSpec(kind="relu"), description="activation of the projection (only with out)")
    order: Order = Field("norm_act", description="norm_act | act_norm | pre (only with out)")


class Concatenate(nn.Module):
    """(N, C_i, *S) for each input -> (N, sum C_i, *S) (or along another axis), then the
    optional projection."""

    def __init__(self, project: nn.Module | None = None, axis: int = 0) -> None:
        super().__init__()
        self.project = project
        self.dim = axis + 1

    def forward(self, x0: Tensor, x1: Tensor, x2: Tensor | None = None,
                x3: Tensor | None = None, x4: Tensor | None = None,
                x5: Tensor | None = None, x6: Tensor | None = None,
                x7: Tensor | None = None) -> Tensor:
        out = torch.cat(gather(x0, x1, x2, x3, x4, x5, x6, x7), self.dim)
        if self.project is not None:
            out = self.project(out)
        return out


def concat_shape(inputs: list[Shape], axis: int = 0) -> Shape:
    _need_two("concat", inputs)
    first = tuple(inputs[0])
    if axis >= len(first):
        raise BlockError(f"merge 'concat' axis {axis} does not exist in input #0 of shape {first} "
                         f"(axes 0..{len(first) - 1}, batch not counted)",
                         fix="use axis: 0 for channels (C, ...) or the index of the axis to join",
                         field="axis")
    for i, shape in enumerate(inputs[1:], start=1):
        shape = tuple(shape)
        if len(shape) != len(first):
            raise BlockError(
                f"merge 'concat' needs inputs of one rank, got {first} from input #0 and {shape} "
                f"from input #{i}", fix="flatten or reshape one of them first")
        differ = [k for k in range(len(first)) if k != axis and shape[k] != first[k]]
        if differ:
            where = "channels (axis 0)" if axis == 0 else f"axis {axis}"
            fix = (f"to join along axis {differ[0]} instead, write merge: {{kind: concat, axis: "
                   f"{differ[0]}}}" if len(differ) == 1 else None)
            resample = (f"resample input #{i} to the size of input #0 (pool, strided conv, "
                        "upsample), or flatten both")
            raise BlockError(
                f"merge 'concat' joins along {where} unless an axis is given; it needs equal "
                f"sizes on all other axes, got {first} from input #0 and {shape} from input #{i}",
                fix=f"{fix}; or {resample}" if fix else resample)
    joined = sum(s[axis] for s in inputs)
    return (*first[:axis], joined, *first[axis + 1:])


def projection_plan(p: ConcatParams, stacked: Shape) -> Plan:
    """1x1 conv-norm-act from the stacked channels to ``out`` (a linear layer for vectors)."""
    dims = len(stacked) - 1
    out = (p.out, *stacked[1:])
    bias = not (p.order == "norm_act" and p.norm.active)
    plan = Plan(stacked)
    if p.order == "pre":
        plan.norm(p.norm).act(p.act)
    if dims == 0:
        cin = stacked[0]
        plan.add(lambda: nn.Linear(cin, p.out, bias=bias), [linear_op("", stacked, out, bias)], out)
    else:
        ones = (1,) * dims
        plan.conv(p.out, ones, ones, (0,) * dims, ones, 1, bias, out)
    if p.order != "pre":
        plan.norm_act(p.norm, p.act, p.order)
    return plan


@register_block
class Concat(Block):
    """Concatenate inputs along channels; with ``out``, a 1x1 conv-norm-act maps them to that width.

    Shapes: (C1, H, W), (C2, H, W), ... -> (C1 + C2 + ..., H, W), or (out, H, W) with ``out``;
    vectors (F1,), (F2,) -> (F1 + F2,). Inception (Szegedy et al. 2015), U-Net skips
    (Ronneberger et al. 2015), DenseNet (Huang et al. 2017).

    >>> from archlab.blocks import BLOCKS
    >>> BLOCKS['concat'].output_shape(BLOCKS['concat'].Params(), [(64, 32, 32), (32, 32, 32)])
    (96, 32, 32)
    """

    name = "concat"
    family = "merge"
    Params = ConcatParams
    n_inputs = None
    width_fields = ("out",)
    inherits = ("norm", "act", "order")
    examples = [
        ({}, [(4, 6, 6), (3, 6, 6)]),
        ({"out": 8}, [(4, 6, 6), (6, 6, 6), (2, 6, 6)]),
        ({}, [(5,), (7,)]),
        ({"out": 4, "norm": "batch", "act": "gelu"}, [(5,), (3,)]),
        ({"out": 6, "order": "pre", "norm": "group"}, [(32, 9), (32, 9)]),
        ({"axis": 1}, [(6, 1), (6, 4)]),
    ]

    @classmethod
    def _stacked(cls, p, inputs) -> Shape:
        stacked = concat_shape(inputs, p.axis)
        if p.out is not None and p.axis != 0:
            raise BlockError("the projection 'out' of a concat maps channels; it needs axis: 0",
                             fix="remove 'out' and add a node after the concat", field="out")
        return stacked

    @classmethod
    def output_shape(cls, p, inputs):
        cls.check_inputs(inputs)
        stacked = cls._stacked(p, inputs)
        return stacked if p.out is None else projection_plan(p, stacked).output

    @classmethod
    def ops(cls, p, inputs):
        stacked = cls._stacked(p, inputs)
        ops = [move_op("", "cat", tuple(tuple(s) for s in inputs), stacked)]
        if p.out is not None:
            ops += [op.under("project") for op in plan_ops(projection_plan(p, stacked))]
        return ops

    @classmethod
    def build(cls, p, inputs):
        stacked = cls._stacked(p, inputs)
        return Concatenate(None if p.out is None else plan_module(projection_plan(p, stacked)),
                           p.axis)


class NoParams(BlockParams):
    """This merge has no settings."""


class Sum(nn.Module):
    """(N, *S) for each input -> (N, *S): their element-wise sum."""

    def forward(self, x0: Tensor, x1: Tensor, x2: Tensor | None = None,
                x3: Tensor | None = None, x4: Tensor | None = None,
                x5: Tensor | None = None, x6: Tensor | None = None,
                x7: Tensor | None = None) -> Tensor:
        out = x0 + x1
        if x2 is not None:
            for x in gather(x0, x1, x2, x3, x4, x5, x6, x7)[2:]:
                out += x  # `out` is our own fresh tensor, never an input: in place is safe
        return out


@register_block
class SumMerge(Block):
    """Element-wise sum of inputs of equal shape.

    Shapes: two or more inputs of (*S) -> (*S). Residual shortcuts (He et al. 2016), FPN's top-down merge
    (Lin et al. 2017). Summing many branches can perform poorly (B9); prefer ``weighted`` or
    ``concat`` then.

    >>> from archlab.blocks import BLOCKS
    >>> BLOCKS['sum'].output_shape(BLOCKS['sum'].Params(), [(64, 32, 32), (128, 16, 16)])
    Traceback (most recent call last):
    ...
    archlab.errors.BlockError: merge 'sum' needs equal shapes, got (64, 32, 32) from input #0 and (128, 16, 16) from input #1; use merge: concat, or give input #1 a projection
    """

    name = "sum"
    family = "merge"
    Params = NoParams
    n_inputs = None
    inherits = ()
    examples = [({}, [(4, 5, 5), (4, 5, 5)]), ({}, [(6,), (6,), (6,)])]

    @classmethod
    def output_shape(cls, p, inputs):
        cls.check_inputs(inputs)
        return check_equal_shapes("sum", inputs)

    @classmethod
    def ops(cls, p, inputs):
        out = check_equal_shapes("sum", inputs)
        return [eltwise_op("", "add", tuple(tuple(s) for s in inputs), out)]

    @classmethod
    def build(cls, p, inputs):
        check_equal_shapes("sum", inputs)
        return Sum()


class WeightedParams(BlockParams):
    """Settings of the weighted (fast normalised) fusion."""

    eps: float = Field(1e-4, gt=0, description="added to the weight sum against division by zero (Tan et al.: 1e-4)")


class WeightedSum(nn.Module):
    """(N, *S) for each of n inputs -> (N, *S): sum(w_i x_i) / (sum(w) + eps), w = relu(weight)."""

    def __init__(self, n_inputs: int, eps: float) -> None:
        super().__init__()
        # equal start: the fusion begins as a plain average and learns which branch matters
        self.weight = nn.Parameter(torch.ones(n_inputs))
        self.eps = eps

    def forward(self, x0: Tensor, x1: Tensor, x2: Tensor | None = None,
                x3: Tensor | None = None, x4: Tensor | None = None,
                x5: Tensor | None = None, x6: Tensor | None = None,
                x7: Tensor | None = None) -> Tensor:
        inputs = gather(x0, x1, x2, x3, x4, x5, x6, x7)
        w = torch.relu(self.weight)
        w = w / (w.sum() + self.eps)
        out = inputs[0] * w[0]
        for i in range(1, len(inputs)):
            out = out + inputs[i] * w[i]
        return out

    def extra_repr(self) -> str:
        return f"n_inputs={self.weight.numel()}, eps={self.eps}"


@register_block
class Weighted(Block):
    """Weighted sum with one trainable, non-negative, normalised weight per input.

    Shapes: two or more inputs of (*S) -> (*S). ``out = sum(w_i * x_i) / (sum(w) + eps)``, ``w = relu(w_raw)``,
    weights start at 1. EfficientDet's fast normalised fusion (Tan et al. 2020, BiFPN).
    Parameters: one per input.

    >>> from archlab.blocks import BLOCKS
    >>> BLOCKS['weighted'].param_count(BLOCKS['weighted'].Params(), [(8, 4, 4)] * 3)
    3
    """

    name = "weighted"
    family = "merge"
    Params = WeightedParams
    n_inputs = None
    inherits = ()
    examples = [({}, [(4, 5, 5), (4, 5, 5)]), ({"eps": 1e-3}, [(3, 6), (3, 6), (3, 6)])]

    @classmethod
    def output_shape(cls, p, inputs):
        cls.check_inputs(inputs)
        return check_equal_shapes("weighted", inputs)

    @classmethod
    def ops(cls, p, inputs):
        out = check_equal_shapes("weighted", inputs)
        n = len(inputs)
        return [
            # normalising the n weights: relu, sum, divide
            Op("normalize_weights", "", ((n,),), (n,), params=n, elementwise=3 * n, weights_read=n),
            # one multiply per input and one add per extra input, per element
            Op("weighted_sum", "", tuple(tuple(s) for s in inputs), out,
               elementwise=numel(out) * (2 * n - 1)),
        ]

    @classmethod
    def build(cls, p, inputs):
        check_equal_shapes("weighted", inputs)
        return WeightedSum(len(inputs), p.eps)
