"""Inception-v3 modules: parallel branches concatenated, factorised asymmetric kernels, grid
reduction, and the auxiliary classifier head (Szegedy et al. 2016, "Rethinking the Inception
Architecture for Computer Vision").

Every convolution is the paper's "BasicConv2d": conv without bias, batch norm (eps 0.001, the
value of the released TensorFlow model that torchvision keeps), ReLU. The default widths are the
ones of Inception-v3 (torchvision ``inception_v3``), so a design only names the ones it changes.
Every width is a plain integer field, so a design's width multiplier scales all of them.

The module also holds the two helpers the other multi-branch families (fire, shufflenet,
xception) share: :func:`conv_unit` (one conv-norm-act step of a :class:`Plan`) and
:class:`BranchConcat` (named branches on one input, concatenated along channels).
"""

from __future__ import annotations

import torch
from pydantic import Field, PositiveInt
from torch import nn

from ..errors import BlockError
from ..ops import Op, Shape, linear_op, move_op, pool_op
from .base import Block, BlockParams, register_block
from .layers import ActSpec, NormSpec, as_tuple, conv_spatial
from .plan import Plan
from .pool import pool_spatial

# ---------------------------------------------------------------------------- helpers -------


def conv_unit(
    plan: Plan,
    out: int,
    kernel: int | tuple[int, ...],
    *,
    stride: int | tuple[int, ...] = 1,
    padding: int | tuple[int, ...] = 0,
    groups: int = 1,
    norm: NormSpec | None = None,
    act: ActSpec | None = None,
    bias: bool | None = None,
) -> Plan:
    """Append conv (+ norm + act) to ``plan``. ``bias=None``: a bias only when no norm follows
    (A6: batch norm's shift makes a conv bias redundant)."""
    dims = len(plan.output) - 1
    k = as_tuple(kernel, dims, "kernel")
    s = as_tuple(stride, dims, "stride")
    pad = as_tuple(padding, dims, "padding")
    dil = (1,) * dims
    shape = (out, *conv_spatial(plan.output[1:], k, s, pad, dil))
    use_bias = (norm is None or not norm.active) if bias is None else bias
    plan.conv(out, k, s, pad, dil, groups, use_bias, shape)
    return plan.norm(norm).act(act)


def pool_step(plan: Plan, kind: str, kernel: int, stride: int, padding: int = 0) -> Plan:
    """Append a 2D max or average pool (``kind``: 'max' | 'avg'); sizes by the pool family's rule."""
    c, h, w = plan.output
    out = (c, *pool_spatial((h, w), (kernel, kernel), (stride, stride), (padding, padding), False))
    pool = nn.MaxPool2d if kind == "max" else nn.AvgPool2d
    op = pool_op("", f"{kind}_pool2d", plan.output, out, kernel * kernel)
    return plan.add(lambda: pool(kernel, stride, padding), [op], out)


class BranchConcat(nn.Module):
    """Named branches applied to the same input; outputs concatenated along channels.

    (N, C, H, W) -> (N, sum of branch widths, H', W'). Branch order = insertion order.
    """

    def __init__(self, branches: dict[str, nn.Module]) -> None:
        super().__init__()
        for name, module in branches.items():
            self.add_module(name, module)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.children()], 1)


def concat_ops(branches: dict[str, Plan]) -> list[Op]:
    """Ops of named branch plans (paths under the branch names) plus the concatenation."""
    ops: list[Op] = []
    for name, plan in branches.items():
        ops.extend(plan.ops(name))
    outputs = tuple(plan.output for plan in branches.values())
    ops.append(move_op("", "cat", outputs, concat_shape(outputs)))
    return ops


def concat_shape(shapes: tuple[Shape, ...]) -> Shape:
    spatial = {tuple(s[1:]) for s in shapes}
    if len(spatial) != 1:  # a formula bug, not a user error: branch geometry is fixed
        raise BlockError(f"branches disagree on spatial size: {sorted(spatial)}",
                         fix="feed an input large enough for every branch")
    return (sum(s[0] for s in shapes), *shapes[0][1:])


# ----------------------------------------------------------------------- the modules -------

_BN_EPS_0001 = NormSpec(kind="batch", eps=0.001)


class InceptionParams(BlockParams):
    """Norm and activation shared by every Inception module (BasicConv2d)."""

    norm: NormSpec = Field(_BN_EPS_0001, description="after each conv; eps 0.001 as in Inception-v3")
    act: ActSpec = Field(ActSpec(kind="relu"), description="after each norm")


class _InceptionBlock(Block):
    """Shared plumbing: subclasses define ``branches(p, inp) -> dict[name, Plan]``."""

    family = "inception"
    input_ranks = (3,)
    inherits = ("norm", "act")

    @classmethod
    def branches(cls, p, inp: Shape) -> dict[str, Plan]:
        raise NotImplementedError

    @classmethod
    def output_shape(cls, p, inputs):
        cls.check_inputs(inputs)
        return concat_shape(tuple(b.output for b in cls.branches(p, inputs[0]).values()))

    @classmethod
    def ops(cls, p, inputs) -> list[Op]:
        return concat_ops(cls.branches(p, inputs[0]))

    @classmethod
    def build(cls, p, inputs) -> nn.Module:
        return BranchConcat({name: plan.build() for name, plan in cls.branches(p, inputs[0]).items()})


def _unit(plan: Plan, p, out: int, kernel, stride=1, padding=0) -> Plan:
    return conv_unit(plan, out, kernel, stride=stride, padding=padding, norm=p.norm, act=p.act)


class InceptionAParams(InceptionParams):
    branch1x1: PositiveInt = Field(64, description="1x1 branch width")
    branch5x5_reduce: PositiveInt = Field(48, description="1x1 before the 5x5")
    branch5x5: PositiveInt = Field(64, description="5x5 branch width")
    branch3x3dbl_reduce: PositiveInt = Field(64, description="1x1 before the two 3x3s")
    branch3x3dbl: PositiveInt = Field(96, description="width of the two stacked 3x3s")
    pool_features: PositiveInt = Field(32, description="1x1 after the 3x3 average pool")


@register_block
class InceptionA(_InceptionBlock):
    """Inception-v3 module A (35x35 grid): 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool-1x1, concatenated.

    Shapes: (C, H, W) -> (branch1x1 + branch5x5 + branch3x3dbl + pool_features, H, W);
    (192, 35, 35) -> (256, 35, 35) with the defaults. Szegedy et al. 2016, figure 5.

    >>> from archlab.blocks import BLOCKS
    >>> b = BLOCKS['inception_a']
    >>> b.output_shape(b.Params(pool_features=64), [(256, 35, 35)])
    (288, 35, 35)
    """

    name = "inception_a"
    Params = InceptionAParams
    width_fields = ("branch1x1", "branch5x5_reduce", "branch5x5", "branch3x3dbl_reduce",
                    "branch3x3dbl", "pool_features")
    examples = [
        ({}, [(192, 9, 9)]),
        ({"branch1x1": 8, "branch5x5_reduce": 4, "branch5x5": 8, "branch3x3dbl_reduce": 4,
          "branch3x3dbl": 6, "pool_features": 2, "act": "silu"}, [(16, 7, 5)]),
    ]

    @classmethod
    def branches(cls, p, inp):
        return {
            "branch1x1": _unit(Plan(inp), p, p.branch1x1, 1),
            "branch5x5": _unit(_unit(Plan(inp), p, p.branch5x5_reduce, 1), p, p.branch5x5, 5,
                               padding=2),
            "branch3x3dbl": _unit(_unit(_unit(Plan(inp), p, p.branch3x3dbl_reduce, 1), p,
                                        p.branch3x3dbl, 3, padding=1), p, p.branch3x3dbl, 3,
                                  padding=1),
            "branch_pool": _unit(pool_step(Plan(inp), "avg", 3, 1, 1), p, p.pool_features, 1),
        }


class InceptionBParams(InceptionParams):
    branch3x3: PositiveInt = Field(384, description="stride-2 3x3 branch width")
    branch3x3dbl_reduce: PositiveInt = Field(64, description="1x1 before the two 3x3s")
    branch3x3dbl: PositiveInt = Field(96, description="width of the two stacked 3x3s")


@register_block
class InceptionB(_InceptionBlock):
    """Inception-v3 grid reduction 35 -> 17: 3x3/2 | 1x1-3x3-3x3/2 | maxpool 3x3/2, concatenated.

    Shapes: (C, H, W) -> (branch3x3 + branch3x3dbl + C, (H-3)//2+1, (W-3)//2+1);
    (288, 35, 35) -> (768, 17, 17). Reducing the grid with parallel strided conv and pool avoids
    both a representational bottleneck and the cost of a conv at full size
    (Szegedy et al. 2016, section 5 and figure 10).
    """

    name = "inception_b"
    Params = InceptionBParams
    width_fields = ("branch3x3", "branch3x3dbl_reduce", "branch3x3dbl")
    examples = [
        ({}, [(288, 9, 9)]),
        ({"branch3x3": 12, "branch3x3dbl_reduce": 4, "branch3x3dbl": 6}, [(8, 8, 7)]),
    ]

    @classmethod
    def branches(cls, p, inp):
        return {
            "branch3x3": _unit(Plan(inp), p, p.branch3x3, 3, stride=2),
            "branch3x3dbl": _unit(_unit(_unit(Plan(inp), p, p.branch3x3dbl_reduce, 1), p,
                                        p.branch3x3dbl, 3, padding=1), p, p.branch3x3dbl, 3,
                                  stride=2),
            "branch_pool": pool_step(Plan(inp), "max", 3, 2),
        }


class InceptionCParams(InceptionParams):
    channels_7x7: PositiveInt = Field(128, description="inner width of the factorised 7x7 branches")
    branch1x1: PositiveInt = Field(192, description="1x1 branch width")
    branch7x7: PositiveInt = Field(192, description="output of the 1x7, 7x1 branch")
    branch7x7dbl: PositiveInt = Field(192, description="output of the doubled 7x1, 1x7 branch")
    pool_features: PositiveInt = Field(192, description="1x1 after the 3x3 average pool")


@register_block
class InceptionC(_InceptionBlock):
    """Inception-v3 module C (17x17 grid) with 7x7 convolutions factorised into 1x7 then 7x1.

    Branches: 1x1 | 1x1-1x7-7x1 | 1x1-7x1-1x7-7x1-1x7 | avgpool-1x1, concatenated.
    Shapes: (C, H, W) -> (branch1x1 + branch7x7 + branch7x7dbl + pool_features, H, W);
    (768, 17, 17) -> (768, 17, 17). An nx1 after a 1xn covers an nxn receptive field with
    2n instead of n^2 weights per channel pair (Szegedy et al. 2016, section 3.2, figure 6).
    """

    name = "inception_c"
    Params = InceptionCParams
    width_fields = ("channels_7x7", "branch1x1", "branch7x7", "branch7x7dbl", "pool_features")
    examples = [
        ({"channels_7x7": 160}, [(768, 7, 7)]),
        ({"channels_7x7": 4, "branch1x1": 6, "branch7x7": 5, "branch7x7dbl": 3,
          "pool_features": 2}, [(8, 9, 6)]),
    ]

    @classmethod
    def branches(cls, p, inp):
        c7 = p.channels_7x7
        b7 = _unit(Plan(inp), p, c7, 1)
        _unit(b7, p, c7, (1, 7), padding=(0, 3))
        _unit(b7, p, p.branch7x7, (7, 1), padding=(3, 0))
        dbl = _unit(Plan(inp), p, c7, 1)
        _unit(dbl, p, c7, (7, 1), padding=(3, 0))
        _unit(dbl, p, c7, (1, 7), padding=(0, 3))
        _unit(dbl, p, c7, (7, 1), padding=(3, 0))
        _unit(dbl, p, p.branch7x7dbl, (1, 7), padding=(0, 3))
        return {
            "branch1x1": _unit(Plan(inp), p, p.branch1x1, 1),
            "branch7x7": b7,
            "branch7x7dbl": dbl,
            "branch_pool": _unit(pool_step(Plan(inp), "avg", 3, 1, 1), p, p.pool_features, 1),
        }


class InceptionDParams(InceptionParams):
    branch3x3_reduce: PositiveInt = Field(192, description="1x1 before the stride-2 3x3")
    branch3x3: PositiveInt = Field(320, description="stride-2 3x3 width")
    branch7x7x3: PositiveInt = Field(192, description="width of the 1x1-1x7-7x1-3x3/2 branch")


@register_block
class InceptionD(_InceptionBlock):
    """Inception-v3 grid reduction 17 -> 8: 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | maxpool 3x3/2.

    Shapes: (C, H, W) -> (branch3x3 + branch7x7x3 + C, (H-3)//2+1, (W-3)//2+1);
    (768, 17, 17) -> (1280, 8, 8). Szegedy et al. 2016, section 5.
    """

    name = "inception_d"
    Params = InceptionDParams
    width_fields = ("branch3x3_reduce", "branch3x3", "branch7x7x3")
    examples = [
        ({}, [(768, 9, 9)]),
        ({"branch3x3_reduce": 4, "branch3x3": 6, "branch7x7x3": 5}, [(8, 11, 8)]),
    ]

    @classmethod
    def branches(cls, p, inp):
        b3 = _unit(_unit(Plan(inp), p, p.branch3x3_reduce, 1), p, p.branch3x3, 3, stride=2)
        b7 = _unit(Plan(inp), p, p.branch7x7x3, 1)
        _unit(b7, p, p.branch7x7x3, (1, 7), padding=(0, 3))
        _unit(b7, p, p.branch7x7x3, (7, 1), padding=(3, 0))
        _unit(b7, p, p.branch7x7x3, 3, stride=2)
        return {"branch3x3": b3, "branch7x7x3": b7, "branch_pool": pool_step(Plan(inp), "max", 3, 2)}


class InceptionEParams(InceptionParams):
    branch1x1: PositiveInt = Field(320, description="1x1 branch width")
    branch3x3: PositiveInt = Field(384, description="width of the 1x1 and of EACH of 1x3, 3x1")
    branch3x3dbl_reduce: PositiveInt = Field(448, description="1x1 before the 3x3")
    branch3x3dbl: PositiveInt = Field(384, description="width of the 3x3 and of EACH of 1x3, 3x1")
    pool_features: PositiveInt = Field(192, description="1x1 after the 3x3 average pool")


class _SplitHeads(nn.Module):
    """A stem followed by two parallel heads whose outputs are concatenated (Inception-v3's
    expanded filter bank). (N, C, H, W) -> (N, a + b, H, W)."""

    def __init__(self, stem: nn.Module, head_a: nn.Module, head_b: nn.Module) -> None:
        super().__init__()
        self.stem = stem
        self.head_a = head_a
        self.head_b = head_b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.stem(x)
        return torch.cat([self.head_a(y), self.head_b(y)], 1)


@register_block
class InceptionE(Block):
    """Inception-v3 module E (8x8 grid) with expanded filter banks: a 3x3 is replaced by a 1x3
    and a 3x1 in PARALLEL, both outputs kept, to give coarse grids high-dimensional features.

    Branches: 1x1 | 1x1 -> (1x3 | 3x1) | 1x1-3x3 -> (1x3 | 3x1) | avgpool-1x1, concatenated.
    Shapes: (C, H, W) -> (branch1x1 + 2*branch3x3 + 2*branch3x3dbl + pool_features, H, W);
    (1280, 8, 8) -> (2048, 8, 8). Szegedy et al. 2016, section 3.2 and figure 7.
    """

    name = "inception_e"
    family = "inception"
    Params = InceptionEParams
    input_ranks = (3,)
    inherits = ("norm", "act")
    width_fields = ("branch1x1", "branch3x3", "branch3x3dbl_reduce", "branch3x3dbl",
                    "pool_features")
    examples = [
        ({}, [(1280, 4, 4)]),
        ({"branch1x1": 4, "branch3x3": 3, "branch3x3dbl_reduce": 6, "branch3x3dbl": 5,
          "pool_features": 2}, [(8, 6, 7)]),
    ]

    @classmethod
    def parts(cls, p, inp) -> dict[str, Plan | tuple[Plan, Plan, Plan]]:
        def heads(stem: Plan, width: int) -> tuple[Plan, Plan, Plan]:
            a = _unit(Plan(stem.output), p, width, (1, 3), padding=(0, 1))
            b = _unit(Plan(stem.output), p, width, (3, 1), padding=(1, 0))
            return stem, a, b

        stem3 = _unit(Plan(inp), p, p.branch3x3, 1)
        stem_dbl = _unit(_unit(Plan(inp), p, p.branch3x3dbl_reduce, 1), p, p.branch3x3dbl, 3,
                         padding=1)
        return {
            "branch1x1": _unit(Plan(inp), p, p.branch1x1, 1),
            "branch3x3": heads(stem3, p.branch3x3),
            "branch3x3dbl": heads(stem_dbl, p.branch3x3dbl),
            "branch_pool": _unit(pool_step(Plan(inp), "avg", 3, 1, 1), p, p.pool_features, 1),
        }

    @staticmethod
    def _out(part) -> Shape:
        if isinstance(part, Plan):
            return part.output
        _, a, b = part
        return concat_shape((a.output, b.output))

    @classmethod
    def output_shape(cls, p, inputs):
        cls.check_inputs(inputs)
        return concat_shape(tuple(cls._out(x) for x in cls.parts(p, inputs[0]).values()))

    @classmethod
    def ops(cls, p, inputs) -> list[Op]:
        ops: list[Op] = []
        outs = []
        for name, part in cls.parts(p, inputs[0]).items():
            if isinstance(part, Plan):
                ops.extend(part.ops(name))
            else:
                stem, a, b = part
                ops.extend(stem.ops(f"{name}.stem"))
                ops.extend(a.ops(f"{name}.head_a"))
                ops.extend(b.ops(f"{name}.head_b"))
                ops.append(move_op(name, "cat", (a.output, b.output), cls._out(part)))
            outs.append(cls._out(part))
        ops.append(move_op("", "cat", tuple(outs), concat_shape(tuple(outs))))
        return ops

    @classmethod
    def build(cls, p, inputs):
        modules = {}
        for name, part in cls.parts(p, inputs[0]).items():
            if isinstance(part, Plan):
                modules[name] = part.build()
            else:
                modules[name] = _SplitHeads(*(x.build() for x in part))
        return BranchConcat(modules)


class InceptionAuxParams(InceptionParams):
    classes: PositiveInt = Field(1000, description="output logits")
    reduce: PositiveInt = Field(128, description="1x1 conv width after the 5x5/3 average pool")
    hidden: PositiveInt = Field(768, description="width of the 5x5 conv that follows")
    pool: PositiveInt = Field(5, description="average-pool window (stride 3): 17x17 -> 5x5")


class _AuxHead(nn.Module):
    def __init__(self, features: nn.Module, fc: nn.Module) -> None:
        super().__init__()
        self.features = features
        self.fc = fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.features(x), 1))


@register_block
class InceptionAux(Block):
    """Inception-v3 auxiliary classifier: avgpool 5x5/3, 1x1 conv, 5x5 conv, global average,
    linear to the class logits. A side output on the 17x17 grid whose loss regularises training
    (Szegedy et al. 2016, section 4; first used in GoogLeNet, Szegedy et al. 2015).

    Shapes: (C, H, W) -> (classes,); (768, 17, 17) -> (1000,).
    """

    name = "inception_aux"
    family = "inception"
    Params = InceptionAuxParams
    input_ranks = (3,)
    inherits = ("norm", "act")
    width_fields = ("reduce", "hidden")
    examples = [
        ({"classes": 10}, [(768, 17, 17)]),
        ({"classes": 5, "reduce": 4, "hidden": 6, "pool": 3}, [(8, 17, 16)]),
    ]

    @classmethod
    def plan(cls, p, inp: Shape) -> Plan:
        smallest = p.pool + 12  # the pooled map must still hold the 5x5 conv: (g - pool)//3 + 1 >= 5
        if min(inp[1:]) < smallest:
            raise BlockError(
                f"inception_aux needs a feature map of at least {smallest}x{smallest} (average "
                f"pool {p.pool}/3, then a 5x5 conv), got {inp[1]}x{inp[2]}",
                fix="read it from a larger grid (Inception-v3's 17x17 at a 299x299 input) or "
                    "use a smaller 'pool'", field="pool")
        plan = pool_step(Plan(inp), "avg", p.pool, 3)
        _unit(plan, p, p.reduce, 1)
        _unit(plan, p, p.hidden, 5)
        shape = plan.output
        out = (shape[0], 1, 1)
        op = pool_op("", "adaptive_avg_pool2d", shape, out, shape[1] * shape[2])
        return plan.add(lambda: nn.AdaptiveAvgPool2d(1), [op], out)

    @classmethod
    def output_shape(cls, p, inputs):
        cls.check_inputs(inputs)
        cls.plan(p, inputs[0])
        return (p.classes,)

    @classmethod
    def ops(cls, p, inputs) -> list[Op]:
        plan = cls.plan(p, inputs[0])
        return [*plan.ops("features"), linear_op("fc", (p.hidden,), (p.classes,))]

    @classmethod
    def build(cls, p, inputs):
        return _AuxHead(cls.plan(p, inputs[0]).build(), nn.Linear(p.hidden, p.classes))


__all__ = ["BranchConcat", "concat_ops", "concat_shape", "conv_unit", "pool_step"]
