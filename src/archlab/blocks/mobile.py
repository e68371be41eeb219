"""The inverted residual block of MobileNetV2/V3 and EfficientNet's MBConv (with drop path).

Sandler et al. 2018, "MobileNetV2: Inverted Residuals and Linear Bottlenecks": expand the narrow
input with a 1x1 conv, filter with a depthwise kxk conv, project back to a narrow width with a
1x1 conv and NO activation (a ReLU on a narrow layer destroys information: the linear
bottleneck, A12), and add the input when the shapes agree. Howard et al. 2019 (MobileNetV3)
add squeeze-and-excitation after the depthwise conv and choose ReLU or hard-swish per block.

Submodules: ``expand`` (absent when the expanded width equals the input width), ``depthwise``,
``se`` (optional), ``project``; each is a ``Sequential`` of conv, norm, act; ``drop_path``
(stochastic depth, Huang et al. 2016, as EfficientNet uses it) on the residual branch.
"""

from __future__ import annotations

from pydantic import Field, PositiveFloat, PositiveInt
from torch import Tensor, nn

from ..ops import Op, Shape, eltwise_op
from .base import Block, BlockParams, register_block
from .layers import ActSpec, NormSpec, conv_spatial, same_padding
from .plan import Plan
from .resnet import zero_last_scale
from .se import SESpec, make_se, se_ops
from .stochastic import DropPath, drop_path_ops


class InvertedResidualParams(BlockParams):
    """Settings of an inverted residual block."""

    out: PositiveInt | None = Field(None, description="output channels; default: input channels")
    expand: PositiveFloat = Field(6, description="expansion ratio t: expanded width = round(C * t) (Sandler et al.: 6)")
    expanded: PositiveInt | None = Field(
        None, description="expanded width written directly (MobileNetV3's tables); overrides 'expand'")
    kernel: PositiveInt = Field(3, description="depthwise kernel size (MobileNetV3 also uses 5)")
    stride: PositiveInt = Field(1, description="depthwise stride; 2 halves the size")
    dilation: PositiveInt = Field(1, description="depthwise dilation (DeepLabV3 output stride)")
    norm: NormSpec = Field(NormSpec(kind="batch"), description="norm after each conv")
    act: ActSpec = Field(ActSpec(kind="relu6"), description="activation after expand and depthwise (never after project)")
    se: SESpec | None = Field(None, description="squeeze-and-excitation after the depthwise conv")
    zero_init: bool = Field(
        False, description="with a residual add: zero the projection's norm scale so the block "
        "starts as the identity (Goyal et al. 2017)")
    drop_path: float = Field(0.0, ge=0, lt=1, description="stochastic depth on the residual "
                             "branch, training only (EfficientNet: 0 to 0.2 by depth); no effect "
                             "without the residual add")


class InvertedResidualModule(nn.Module):
    """(N, C, *S) -> (N, out, *S/stride): drop_path(project(se(depthwise(expand(x))))) [+ x].

    A stage the block does not have is a plain ``None`` attribute: the forward skips it at no
    cost and TorchScript compiles it."""

    def __init__(self, modules: dict[str, nn.Module], residual: bool) -> None:
        super().__init__()
        for name in ("expand", "se", "drop_path"):
            if name not in modules:
                setattr(self, name, None)
        for name, module in modules.items():
            self.add_module(name, module)
        self.residual = residual

    def forward(self, x: Tensor) -> Tensor:
        out = x
        if self.expand is not None:
            out = self.expand(out)
        out = self.depthwise(out)
        if self.se is not None:
            out = self.se(out)
        out = self.project(out)
        if self.residual:
            if self.drop_path is not None:
                out = self.drop_path(out)
            out += x  # `out` is the projection's fresh output: safe in place, saves a buffer
        return out


def expanded_width(p: InvertedResidualParams, cin: int) -> int:
    return p.expanded if p.expanded is not None else int(round(cin * p.expand))


def inverted_residual_stages(p: InvertedResidualParams, inp: Shape):
    """[(name, make, ops)] of the block's stages, its output shape, and whether it adds x."""
    cin = inp[0]
    cout = p.out or cin
    hidden = expanded_width(p, cin)
    dims = len(inp) - 1
    ones = (1,) * dims
    bias = not p.norm.active  # BN after every conv makes the biases redundant (A6)
    stages: list[tuple[str, object, list[Op]]] = []
    shape = inp
    if hidden != cin:
        plan = Plan(shape).conv(hidden, ones, ones, (0,) * dims, ones, 1, bias, (hidden, *shape[1:]))
        plan.norm(p.norm).act(p.act)
        stages.append(("expand", plan.build, plan.ops()))
        shape = plan.output
    kernel, stride, dilation = (p.kernel,) * dims, (p.stride,) * dims, (p.dilation,) * dims
    padding = same_padding(kernel, dilation)
    mid = (hidden, *conv_spatial(shape[1:], kernel, stride, padding, dilation))
    plan = Plan(shape).conv(hidden, kernel, stride, padding, dilation, hidden, bias, mid)
    plan.norm(p.norm).act(p.act)
    stages.append(("depthwise", plan.build, plan.ops()))
    if p.se is not None:
        stages.append(("se", lambda: make_se(p.se, mid, cin), se_ops(p.se, mid, cin)))
    out = (cout, *mid[1:])
    # linear bottleneck: norm but no activation after the projection
    plan = Plan(mid).conv(cout, ones, ones, (0,) * dims, ones, 1, bias, out).norm(p.norm)
    stages.append(("project", plan.build, plan.ops()))
    residual = p.stride == 1 and cin == cout
    if residual and p.drop_path > 0:
        stages.append(("drop_path", lambda: DropPath(p.drop_path),
                       drop_path_ops("", out, p.drop_path)))
    return stages, out, residual


@register_block
class InvertedResidual(Block):
    """Inverted residual with linear bottleneck: 1x1 expand, kxk depthwise, [SE], 1x1 linear project.

    Shapes: (C, H, W) -> (out, ceil(H/stride), ceil(W/stride)), expanded width ``round(C * expand)``
    (or ``expanded``) inside; likewise (C, L) and (C, D, H, W). The input is added when
    stride == 1 and out == C. Sandler et al. 2018 (MobileNetV2, act relu6); Howard et al. 2019
    (MobileNetV3: ``se: {ratio: 4, gate: hardsigmoid, divisor: 8}``, act hardswish or relu).

    >>> from archlab.blocks import BLOCKS
    >>> B = BLOCKS['inverted_residual']
    >>> B.output_shape(B.Params(out=24, stride=2), [(16, 112, 112)])
    (24, 56, 56)
    >>> B.param_count(B.Params(out=16, expand=1), [(32, 112, 112)])   # MobileNetV2's first block
    896
    """

    name = "inverted_residual"
    family = "mobile"
    Params = InvertedResidualParams
    width_fields = ("out", "expanded")
    input_ranks = (2, 3, 4)
    inherits = ("norm", "act")
    examples = [
        ({}, [(8, 6, 6)]),
        ({"out": 12, "expand": 1, "stride": 2}, [(8, 7, 7)]),
        ({"out": 8, "expanded": 20, "kernel": 5, "act": "hardswish",
          "se": {"ratio": 4, "gate": "hardsigmoid", "divisor": 8}}, [(8, 6, 6)]),
        ({"out": 16, "expand": 4, "se": {"ratio": 4, "base": "in", "act": "silu"}, "act": "silu"}, [(8, 5, 5)]),
        ({"out": 8, "expand": 3, "dilation": 2}, [(8, 9, 9)]),
        ({"out": 6, "expand": 2, "stride": 2, "norm": "none"}, [(4, 11)]),
        ({"expand": 2, "zero_init": True}, [(4, 5, 5)]),
        ({"expand": 2, "drop_path": 0.2}, [(4, 5, 5)]),
    ]

    @classmethod
    def output_shape(cls, p, inputs):
        cls.check_inputs(inputs)
        return inverted_residual_stages(p, inputs[0])[1]

    @classmethod
    def ops(cls, p, inputs):
        stages, out, residual = inverted_residual_stages(p, inputs[0])
        ops = [op.under(name) for name, _, stage_ops in stages for op in stage_ops]
        if residual:
            ops.append(eltwise_op("", "add", (out, inputs[0]), out))
        return ops

    @classmethod
    def build(cls, p, inputs):
        stages, _, residual = inverted_residual_stages(p, inputs[0])
        modules = {name: make() for name, make, _ in stages}
        if p.zero_init and residual:
            zero_last_scale(list(modules["project"]))
        return InvertedResidualModule(modules, residual)
