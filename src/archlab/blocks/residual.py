"""The residual connection (A5): ``out = act(main + shortcut(skip))`` around any block or group.

A design writes ``residual: true`` (or a mapping of options) on a block node, a stage or a group;
the resolver then adds a ``shortcut_add`` node at ``<path>.residual`` that reads the wrapped
part's output and its input. When the two shapes differ, the shortcut gets a projection
automatically: a strided 1x1 conv with norm (He et al. 2016, option B) or an average pool followed
by a 1x1 conv (He et al. 2019, "Bag of Tricks", ResNet-D), so information is not thrown away by
a strided 1x1.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from torch import Tensor, nn

from ..errors import BlockError
from ..ops import Op, Shape, eltwise_op, pool_op
from .base import Block, BlockParams, register_block
from .layers import ActSpec, NormSpec, act_ops, make_act
from .plan import Plan
from .stochastic import DropPath, LayerScale, drop_path_ops, layer_scale_ops


class ResidualParams(BlockParams):
    """Settings of a residual connection."""

    projection: Literal["auto", "conv", "avgpool", "none"] = Field(
        "auto", description="shortcut when shapes differ: auto = conv for channel changes, "
                            "conv = strided 1x1 conv + norm, avgpool = avg pool then 1x1 conv + "
                            "norm, none = shapes must match")
    norm: NormSpec = Field(NormSpec(kind="batch"), description="norm of the projection")
    act: ActSpec = Field(ActSpec(kind="identity"), description="activation after the add "
                         "(ResNet: relu; pre-activation and MobileNet: none)")
    layer_scale: float | None = Field(
        None, gt=0, description="start value of a learned per-channel scale on the wrapped "
        "branch before the add (CaiT, ConvNeXt: 1e-6); None = off")
    scale_axis: int = Field(0, description="axis of the channels the layer scale scales: 0 for "
                            "(C, H, W) and (C, L), -1 for tokens (L, D)")
    drop_path: float = Field(0.0, ge=0, lt=1, description="stochastic depth: drop the branch of "
                             "a sample with this probability in training (Huang et al. 2016)")


def _stride(skip: Shape, main: Shape) -> tuple[int, ...]:
    """Stride that maps the skip's spatial size onto the main path's (checked by the caller)."""
    return tuple(max(1, -(-s // m)) for s, m in zip(skip[1:], main[1:], strict=True))


def projection_plan(p: ResidualParams, skip: Shape, main: Shape) -> Plan | None:
    """None when the shortcut is the identity; else the plan of the projection."""
    if len(skip) != len(main):
        raise BlockError(f"a residual needs the same rank on both sides, got {tuple(skip)} "
                         f"into the block and {tuple(main)} out of it",
                         fix="remove 'residual' or reshape inside the block")
    if skip == main and p.projection in ("auto", "none"):
        return None
    if p.projection == "none":
        raise BlockError(f"residual with projection: none needs equal shapes, got {tuple(skip)} "
                         f"into the block and {tuple(main)} out of it",
                         fix="use projection: auto (a 1x1 conv is added) or keep the shape")
    if len(main) == 1:
        raise BlockError("a projected residual needs channels (C, ...) on both sides, got vectors",
                         fix="use equal widths for a residual between linear layers")
    stride = _stride(skip, main)
    dims = len(main) - 1
    ones = (1,) * dims
    plan = Plan(skip)
    if p.projection == "avgpool" and any(s > 1 for s in stride):
        pooled = (skip[0], *[-(-a // s) for a, s in zip(skip[1:], stride, strict=True)])
        window = 1
        for s in stride:
            window *= s
        pool_cls = {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}[dims]
        plan.add(lambda k=stride: pool_cls(k, k, ceil_mode=True, count_include_pad=False),
                 [pool_op("", f"avg_pool{dims}d", skip, pooled, window)], pooled)
        stride = ones
    out_shape = (main[0], *[-(-a // s) for a, s in zip(plan.output[1:], stride, strict=True)])
    if out_shape != main:
        raise BlockError(f"the residual's shortcut gives {out_shape}, the block gives {tuple(main)}",
                         fix="make the wrapped part keep or halve the size exactly")
    plan.conv(main[0], ones, stride, (0,) * dims, ones, 1, not p.norm.active, main)
    plan.norm(p.norm)
    return plan


class ShortcutAdd(nn.Module):
    """``act(drop_path(layer_scale(main)) + proj(skip))``; parts not needed are absent
    (``nn.Identity``: no weights, and one straight forward that TorchScript compiles)."""

    def __init__(self, proj: nn.Module | None, act: nn.Module | None,
                 layer_scale: nn.Module | None = None, drop_path: nn.Module | None = None) -> None:
        super().__init__()
        self.proj = proj if proj is not None else nn.Identity()
        self.act = act if act is not None else nn.Identity()
        self.layer_scale = layer_scale if layer_scale is not None else nn.Identity()
        self.drop_path = drop_path if drop_path is not None else nn.Identity()

    def forward(self, main: Tensor, skip: Tensor) -> Tensor:
        return self.act(self.drop_path(self.layer_scale(main)) + self.proj(skip))


@register_block
class ShortcutAddBlock(Block):
    """Residual add: (main, skip) -> act(main + projection(skip)); shape of ``main``.

    Inputs: the wrapped part's output (C', H', W') and its input (C, H, W). He et al. 2016,
    "Deep Residual Learning for Image Recognition" (projection shortcuts, option B); the
    average-pool shortcut is ResNet-D (He et al. 2019, "Bag of Tricks").
    Written in a design as ``residual: true`` on a node, a stage or a group.
    """

    name = "shortcut_add"
    family = "residual"
    Params = ResidualParams
    n_inputs = 2
    inherits = ("norm",)
    examples = [
        ({}, [(8, 6, 6), (8, 6, 6)]),
        ({"act": "relu"}, [(16, 4, 4), (8, 8, 8)]),
        ({"projection": "avgpool"}, [(16, 4, 4), (8, 8, 8)]),
        ({"projection": "conv", "norm": "none"}, [(8, 10), (8, 10)]),
        ({"layer_scale": 0.1, "drop_path": 0.2}, [(8, 5, 5), (8, 5, 5)]),
        ({"layer_scale": 1e-6, "scale_axis": -1}, [(5, 6), (5, 6)]),
    ]

    @classmethod
    def output_shape(cls, p, inputs):
        cls.check_inputs(inputs)
        projection_plan(p, inputs[1], inputs[0])
        return tuple(inputs[0])

    @classmethod
    def ops(cls, p, inputs) -> list[Op]:
        main, skip = inputs
        plan = projection_plan(p, skip, main)
        ops = plan.ops("proj") if plan else []
        if p.layer_scale:
            ops += layer_scale_ops("layer_scale", main, p.scale_axis)
        ops += drop_path_ops("drop_path", main, p.drop_path)
        ops.append(eltwise_op("", "add", (main, main), main))
        ops.extend(op.under("act") for op in act_ops("", p.act, main))
        return ops

    @classmethod
    def build(cls, p, inputs):
        main, skip = inputs
        plan = projection_plan(p, skip, main)
        scale = LayerScale(main, p.scale_axis, p.layer_scale) if p.layer_scale else None
        drop = DropPath(p.drop_path) if p.drop_path > 0 else None
        return ShortcutAdd(plan.build() if plan else None, make_act(p.act), scale, drop)
