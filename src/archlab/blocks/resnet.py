"""ResNet blocks: ``basic`` (two 3x3 convs) and ``bottleneck`` (1x1 reduce, 3x3, 1x1 expand).

He et al. 2016, "Deep Residual Learning for Image Recognition", in torchvision's layout: the
submodules are named ``conv1, bn1, conv2, bn2, conv3, bn3, downsample.0, downsample.1`` so a
torchvision ResNet state dict loads into a design built from these blocks (activations have no
weights; they are named ``act1``, ``act2``, ``act3`` and ``act`` after the add, since the design
may choose another activation than ReLU).

Options beyond the original:

* ``groups`` / ``width_per_group``: ResNeXt's grouped 3x3 (Xie et al. 2017), wide ResNets
  (Zagoruyko & Komodakis 2016);
* ``stride_on: 1x1``: the stride on the first 1x1 conv, as in the original paper (torchvision
  and "ResNet v1.5" put it on the 3x3, which is more accurate);
* ``shortcut: avgpool``: ResNet-D's projection, average pool then a stride-1 1x1 conv
  (He et al. 2019, "Bag of Tricks"), so the shortcut does not drop 3/4 of its input;
* ``order: pre``: the pre-activation ResNet (He et al. 2016, "Identity Mappings"): norm and act
  before each conv, nothing after the add, and a projection on the pre-activated input;
* ``se``: squeeze-and-excitation on the residual branch before the add (Hu et al. 2018).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field, PositiveInt
from torch import Tensor, nn

from ..errors import BlockError
from ..ops import Op, Shape, conv_op, eltwise_op, pool_op
from .base import Block, BlockParams, register_block
from .layers import (
    CONV_CLASSES,
    ActSpec,
    NormSpec,
    Order,
    act_ops,
    check_divisible,
    conv_spatial,
    make_act,
    make_norm,
    norm_ops,
)
from .pool import AVG_POOL, pool_spatial
from .se import SESpec, make_se, se_ops


@dataclass
class Layers:
    """Named layers of a block: each entry makes one submodule and lists its ops, so the built
    module and the op records come from one description (like :class:`Plan`, but with names)."""

    shape: Shape
    entries: list[tuple[str, Callable[[], nn.Module], list[Op]]] = field(default_factory=list)
    extra_ops: list[Op] = field(default_factory=list)   # ops of the block itself (path '')

    def add(self, name: str, make: Callable[[], nn.Module], ops: list[Op], shape: Shape) -> None:
        if ops:
            self.entries.append((name, make, [op.under(name) for op in ops]))
        self.shape = shape

    def conv(self, name: str, cout: int, kernel: int, stride: int, groups: int, bias: bool) -> None:
        inp = self.shape
        dims = len(inp) - 1
        k, s, pad = (kernel,) * dims, (stride,) * dims, (kernel // 2,) * dims
        out = (cout, *conv_spatial(inp[1:], k, s, pad, (1,) * dims))
        self.add(name, lambda: CONV_CLASSES[dims](inp[0], cout, k, s, pad, groups=groups, bias=bias),
                 [conv_op("", inp, out, k, groups=groups, bias=bias)], out)

    def norm(self, name: str, spec: NormSpec) -> None:
        shape = self.shape
        self.add(name, lambda: make_norm(spec, shape[0], len(shape)), norm_ops("", spec, shape), shape)

    def act(self, name: str, spec: ActSpec) -> None:
        self.add(name, lambda: make_act(spec), act_ops("", spec, self.shape), self.shape)

    def ops(self) -> list[Op]:
        return [op for _, _, ops in self.entries for op in ops] + self.extra_ops

    def modules(self) -> dict[str, nn.Module]:
        return {name: make() for name, make, _ in self.entries}


class ResidualParams(BlockParams):
    """Settings of a ResNet basic block."""

    out: PositiveInt | None = Field(None, description="output channels; default: input channels")
    stride: PositiveInt = Field(1, description="stride of the block; 2 halves the size")
    shortcut: Literal["conv", "avgpool"] = Field(
        "conv", description="projection used when the shape changes: conv = 1x1 conv with stride + "
        "norm; avgpool = avg pool then 1x1 conv + norm (ResNet-D)")
    norm: NormSpec = Field(NormSpec(kind="batch"), description="normalisation after each conv")
    act: ActSpec = Field(ActSpec(kind="relu"), description="activation (also after the add)")
    order: Order = Field("norm_act", description="norm_act | act_norm | pre (pre-activation ResNet)")
    se: SESpec | None = Field(None, description="squeeze-and-excitation on the branch before the add")
    zero_init: bool = Field(
        False, description="start as the identity: zero the branch's last norm scale (last conv "
        "with order: pre); Goyal et al. 2017")


class BottleneckParams(ResidualParams):
    """Settings of a ResNet bottleneck block."""

    expansion: PositiveInt = Field(4, description="out / planes: the 1x1 convs reduce by this (He et al.: 4)")
    groups: PositiveInt = Field(1, description="groups of the 3x3 conv (ResNeXt cardinality)")
    width_per_group: PositiveInt = Field(64, description="mid width = out/expansion * width_per_group/64 * groups")
    stride_on: Literal["3x3", "1x1"] = Field(
        "3x3", description="which conv strides: 3x3 (torchvision, v1.5) or the first 1x1 (He et al. 2016)")
    group_width: PositiveInt | None = Field(
        None, description="RegNet's rule (Radosavovic et al. 2020): channels per group of the 3x3; "
        "mid width = round(out * bottleneck_ratio), groups = mid / group_width (then expansion, "
        "groups and width_per_group are not used)")
    bottleneck_ratio: float = Field(
        1.0, gt=0, description="with group_width: mid width / out (RegNet's b; RegNetX/Y use 1)")


_LAYER_NAMES = ("bn1", "act1", "conv1", "bn2", "act2", "conv2", "bn3", "act3", "conv3", "se",
                "downsample", "act")


class ResidualBlock(nn.Module):
    """(N, C, *S) -> (N, out, *S/stride): act(branch(x) + shortcut(x)), torchvision's names.

    The forward is written out for the three orders (norm_act, act_norm, pre) and two or three
    convs; a layer the block does not have is a plain ``None`` attribute, so the forward skips
    it at no cost and TorchScript compiles it (``torch.jit.script``), as torchvision's blocks
    do with ``downsample = None``. With ``order: pre`` the projection reads the pre-activated
    input (He et al. 2016b).
    """

    def __init__(self, modules: dict[str, nn.Module], order: str) -> None:
        super().__init__()
        for name in _LAYER_NAMES:
            if name not in modules:
                setattr(self, name, None)
        for name, module in modules.items():
            self.add_module(name, module)
        self.preactivation = order == "pre"
        self.act_first = order == "act_norm"

    def forward(self, x: Tensor) -> Tensor:
        pre = x
        if self.preactivation:
            if self.bn1 is not None:
                pre = self.bn1(pre)
            if self.act1 is not None:
                pre = self.act1(pre)
        out = self.conv1(pre)
        # between conv1 and conv2
        if self.preactivation:
            if self.bn2 is not None:
                out = self.bn2(out)
            if self.act2 is not None:
                out = self.act2(out)
        elif self.act_first:
            if self.act1 is not None:
                out = self.act1(out)
            if self.bn1 is not None:
                out = self.bn1(out)
        else:
            if self.bn1 is not None:
                out = self.bn1(out)
            if self.act1 is not None:
                out = self.act1(out)
        out = self.conv2(out)
        # after conv2 (and conv3 in a bottleneck)
        if self.preactivation:
            if self.conv3 is not None:
                if self.bn3 is not None:
                    out = self.bn3(out)
                if self.act3 is not None:
                    out = self.act3(out)
        elif self.act_first:
            if self.act2 is not None:
                out = self.act2(out)
            if self.bn2 is not None:
                out = self.bn2(out)
        else:
            if self.bn2 is not None:
                out = self.bn2(out)
            if self.act2 is not None:
                out = self.act2(out)
        if self.conv3 is not None:
            out = self.conv3(out)
            if not self.preactivation and self.bn3 is not None:
                out = self.bn3(out)  # the last conv has a norm and no activation
        if self.se is not None:
            out = self.se(out)
        shortcut = x
        if self.downsample is not None:
            shortcut = self.downsample(pre if self.preactivation else x)
        # in place, as torchvision: `out` is the fresh output of the last conv/norm/SE, whose
        # backward does not need it, so this saves one activation-sized buffer
        out += shortcut
        if self.act is not None:
            out = self.act(out)
        return out


def residual_layers(p, inp: Shape, bottleneck: bool) -> tuple[Layers, list[str], list[str]]:
    """The layers of a basic or bottleneck block, and which of them are pre-activation."""
    cin = inp[0]
    cout = p.out or cin
    pre = p.order == "pre"
    bias = not p.norm.active  # a norm right after a conv makes its bias redundant (A6)
    if bottleneck and p.group_width is not None:
        mid, groups = regnet_width(cout, p.bottleneck_ratio, p.group_width)
        convs = [("conv1", mid, 1, p.stride if p.stride_on == "1x1" else 1, 1),
                 ("conv2", mid, 3, p.stride if p.stride_on == "3x3" else 1, groups),
                 ("conv3", cout, 1, 1, 1)]
    elif bottleneck:
        check_divisible(cout, p.expansion, "bottleneck output channels 'out'", "expansion",
                        f"out = {p.expansion} x planes", "out", value_key="out",
                        by_key="expansion")
        mid = int(cout // p.expansion * (p.width_per_group / 64.0)) * p.groups
        if mid < 1:
            raise BlockError(
                f"bottleneck inner width out/expansion * width_per_group/64 * groups = "
                f"{cout}/{p.expansion} * {p.width_per_group}/64 * {p.groups} rounds to 0",
                fix="raise out or width_per_group", field="width_per_group")
        convs = [("conv1", mid, 1, p.stride if p.stride_on == "1x1" else 1, 1),
                 ("conv2", mid, 3, p.stride if p.stride_on == "3x3" else 1, p.groups),
                 ("conv3", cout, 1, 1, 1)]
    else:
        convs = [("conv1", cout, 3, p.stride, 1), ("conv2", cout, 3, 1, 1)]

    lay = Layers(inp)
    n_pre = 0
    for i, (name, width, kernel, stride, groups) in enumerate(convs, start=1):
        last = i == len(convs)
        if pre:
            lay.norm(f"bn{i}", p.norm)
            # without a norm, act1 would modify the block input in place, which the identity
            # shortcut still needs
            lay.act(f"act{i}", p.act if i > 1 else p.act.model_copy(update={"inplace": False}))
            if i == 1:
                n_pre = len(lay.entries)
        lay.conv(name, width, kernel, stride, groups, bias)
        if not pre:
            if p.order == "act_norm" and not last:
                lay.act(f"act{i}", p.act)
            lay.norm(f"bn{i}", p.norm)
            if p.order == "norm_act" and not last:
                lay.act(f"act{i}", p.act)
    out_shape = lay.shape
    if p.se is not None:
        lay.add("se", lambda: make_se(p.se, out_shape, cin), se_ops(p.se, out_shape, cin), out_shape)
    names = [name for name, _, _ in lay.entries]
    pre_names, branch_names = names[:n_pre], names[n_pre:]

    if p.stride != 1 or cin != cout:
        # the projection sees the pre-activated input in a pre-activation block (He et al. 2016b)
        proj = _projection(p, inp, cout, pre, bias)
        lay.add("downsample", proj.build, proj.ops(), out_shape)
    lay.extra_ops.append(eltwise_op("", "add", (out_shape, out_shape), out_shape))
    if not pre:
        lay.act("act", p.act)
    return lay, pre_names, branch_names


def regnet_width(out: int, ratio: float, group_width: int) -> tuple[int, int]:
    """(mid width, groups) of RegNet's bottleneck: mid = round(out * ratio), groups =
    mid / group_width, which must divide (the error names the nearest widths that work).

    >>> regnet_width(168, 1.0, 8)          # RegNetX-1.6GF stage 2
    (168, 21)
    """
    mid = int(round(out * ratio))
    if mid < 1:
        raise BlockError(f"bottleneck mid width round(out * bottleneck_ratio) = round({out} * "
                         f"{ratio}) rounds to 0", fix="raise out or bottleneck_ratio",
                         field="bottleneck_ratio")
    if group_width > mid:
        raise BlockError(f"group_width {group_width} is wider than the mid width {mid} "
                         f"(out {out} x bottleneck_ratio {ratio})",
                         fix=f"use group_width: {mid} (one group) or less", field="group_width")
    check_divisible(mid, group_width, "bottleneck mid width round(out * bottleneck_ratio)",
                    "group_width", f"mid = round({out} * {ratio})", "group_width",
                    value_key="out" if ratio == 1.0 else None, by_key="group_width")
    return mid, mid // group_width


@dataclass
class _Projection:
    steps: list[tuple[Callable[[], nn.Module], list[Op]]]

    def build(self) -> nn.Sequential:
        return nn.Sequential(*[make() for make, _ in self.steps])

    def ops(self) -> list[Op]:
        return [op.under(str(i)) for i, (_, ops) in enumerate(self.steps) for op in ops]


def _projection(p, inp: Shape, cout: int, pre: bool, bias: bool) -> _Projection:
    dims = len(inp) - 1
    s = p.stride
    ones = (1,) * dims
    steps: list[tuple[Callable[[], nn.Module], list[Op]]] = []
    shape = inp
    conv_stride = s
    if p.shortcut == "avgpool":
        conv_stride = 1
        if s > 1:
            pooled = (inp[0], *pool_spatial(inp[1:], (s,) * dims, (s,) * dims, (0,) * dims, True))
            steps.append((lambda: AVG_POOL[dims](s, s, ceil_mode=True, count_include_pad=False),
                          [pool_op("", f"avg_pool{dims}d", inp, pooled, s ** dims)]))
            shape = pooled
        else:
            # keeps the layout downsample.0/.1/.2 whatever the stride (timm's ResNet-D does too)
            steps.append((nn.Identity, []))
    out = (cout, *conv_spatial(shape[1:], ones, (conv_stride,) * dims, (0,) * dims, ones))
    conv_in = shape[0]
    steps.append((lambda: CONV_CLASSES[dims](conv_in, cout, 1, conv_stride, bias=bias),
                  [conv_op("", shape, out, ones, bias=bias)]))
    if not pre:
        ops = norm_ops("", p.norm, out)
        if ops:
            steps.append((lambda: make_norm(p.norm, cout, len(out)), ops))
    return _Projection(steps)


class _ResNetBlock(Block):
    family = "residual"
    width_fields = ("out",)
    input_ranks = (2, 3, 4)
    inherits = ("norm", "act", "order")
    bottleneck = False

    @classmethod
    def output_shape(cls, p, inputs):
        cls.check_inputs(inputs)
        return residual_layers(p, inputs[0], cls.bottleneck)[0].shape

    @classmethod
    def ops(cls, p, inputs):
        return residual_layers(p, inputs[0], cls.bottleneck)[0].ops()

    @classmethod
    def build(cls, p, inputs):
        lay, pre_names, branch_names = residual_layers(p, inputs[0], cls.bottleneck)
        modules = lay.modules()
        if p.zero_init:
            zero_last_scale([modules[name] for name in branch_names if name != "se"])
        return ResidualBlock(modules, p.order)


def zero_last_scale(branch: list[nn.Module]) -> None:
    """Zero the scale of the branch's last layer with weights, so that the residual block starts
    as its shortcut (Goyal et al. 2017): deep networks then train like shallow ones at first."""
    for module in reversed(branch):
        weight = getattr(module, "weight", None)
        if isinstance(weight, nn.Parameter) and not isinstance(module, nn.PReLU):
            nn.init.zeros_(weight)
            return


@register_block
class Basic(_ResNetBlock):
    """ResNet basic block: two 3x3 conv-norm layers, identity or projection shortcut, act after the add.

    Shapes: (C, H, W) -> (out, ceil(H/stride), ceil(W/stride)); likewise (C, L) and (C, D, H, W).
    He et al. 2016 (ResNet-18/34); pre-activation variant He et al. 2016 ("Identity Mappings");
    SE variant Hu et al. 2018. Parameters (C -> C, BN): 2*9*C*C + 4*C.

    >>> from archlab.blocks import BLOCKS
    >>> B = BLOCKS['basic']
    >>> B.output_shape(B.Params(out=128, stride=2), [(64, 56, 56)])
    (128, 28, 28)
    >>> B.param_count(B.Params(), [(64, 56, 56)])
    73984
    """

    name = "basic"
    Params = ResidualParams
    examples = [
        ({}, [(8, 6, 6)]),
        ({"out": 16, "stride": 2}, [(8, 7, 7)]),
        ({"out": 16, "stride": 2, "shortcut": "avgpool"}, [(8, 7, 7)]),
        ({"out": 12, "order": "pre"}, [(8, 6, 6)]),
        ({"out": 8, "stride": 2, "order": "act_norm", "act": "silu", "norm": {"kind": "group", "groups": 4}},
         [(8, 8, 8)]),
        ({"out": 16, "se": {"ratio": 4}}, [(16, 5, 5)]),
        ({"out": 6, "stride": 2, "norm": "none"}, [(4, 11)]),
        ({"order": "pre", "norm": "none"}, [(4, 5, 5)]),
        ({"out": 8, "zero_init": True}, [(8, 4, 4)]),
    ]


@register_block
class Bottleneck(_ResNetBlock):
    """ResNet bottleneck: 1x1 reduce, 3x3 (grouped for ResNeXt), 1x1 expand, add, act.

    Shapes: (C, H, W) -> (out, ceil(H/stride), ceil(W/stride)); likewise (C, L) and (C, D, H, W).
    ``out`` is the block's output width; the inner width is
    ``out/expansion * width_per_group/64 * groups`` (torchvision), or RegNet's rule with
``group_width`` and ``bottleneck_ratio``: mid = round(out * ratio), groups = mid / group_width
(Radosavovic et al. 2020). He et al. 2016 (ResNet-50/101/152),
    ResNeXt (Xie et al. 2017), ResNet-D shortcut (He et al. 2019), SE-ResNet (Hu et al. 2018).

    >>> from archlab.blocks import BLOCKS
    >>> B = BLOCKS['bottleneck']
    >>> B.param_count(B.Params(out=256), [(64, 56, 56)])    # torchvision layer1.0
    75008
    """

    name = "bottleneck"
    Params = BottleneckParams
    bottleneck = True
    examples = [
        ({"out": 32}, [(8, 6, 6)]),
        ({"out": 32, "stride": 2, "stride_on": "1x1"}, [(16, 7, 7)]),
        ({"out": 64, "stride": 2, "groups": 4, "width_per_group": 16, "shortcut": "avgpool"}, [(16, 8, 8)]),
        ({"out": 16, "order": "pre"}, [(16, 5, 5)]),
        ({"out": 16, "stride": 2, "order": "pre"}, [(8, 6, 6)]),
        ({"out": 32, "se": True}, [(32, 4, 4)]),
        ({"out": 16, "shortcut": "avgpool", "act": "prelu"}, [(8, 3, 3, 3)]),
        ({"out": 16, "zero_init": True, "order": "pre"}, [(16, 4, 4)]),
        ({"out": 24, "stride": 2, "group_width": 8, "se": {"ratio": 4, "base": "in"}}, [(16, 6, 6)]),
        ({"out": 16, "group_width": 4, "bottleneck_ratio": 0.5}, [(16, 4, 4)]),
    ]
