"""Basic layers as standalone blocks: norm, act, identity, dropout, flatten, reshape.

Most networks carry their norm and activation inside conv blocks; these standalone forms exist
for the places where a design needs one on its own (a norm after a merge, an activation after a
residual add, dropout before a classifier, a reshape from a latent vector to a feature map).
"""

from __future__ import annotations

import math

from pydantic import Field, field_validator
from torch import Tensor, nn

from ..errors import BlockError
from ..ops import Op, Shape, move_op, numel
from .base import Block, BlockParams, register_block
from .layers import ActSpec, NormSpec, act_ops, make_act, make_norm, norm_ops
from .plan import Plan


def plan_module(plan: Plan) -> nn.Module:
    """A plan's module; a one-step plan gives that step's module itself (no Sequential wrapper),
    so a lone layer keeps the plain state-dict names (``fc.weight``, not ``fc.0.weight``)."""
    if len(plan.steps) == 1:
        return plan.steps[0].make()
    if not plan.steps:
        return nn.Identity()
    return plan.build()


def plan_ops(plan: Plan) -> list[Op]:
    """The op records of :func:`plan_module` (paths agree with its ``named_modules()``)."""
    if len(plan.steps) == 1:
        return list(plan.steps[0].ops)
    return plan.ops()


class NormParams(BlockParams):
    """Settings of a standalone normalisation."""

    norm: NormSpec = Field(NormSpec(kind="batch"), description="batch, layer, group, instance or none")


@register_block
class Norm(Block):
    """A normalisation layer on its own.

    Shapes: (F,) -> (F,); (C, L) -> (C, L); (C, H, W) -> (C, H, W); (C, D, H, W) -> same.
    Batch norm (Ioffe & Szegedy 2015), layer norm (Ba et al. 2016; channel-wise over (C, H, W)
    for feature maps), group norm (Wu & He 2018), instance norm (Ulyanov et al. 2016).

    >>> from archlab.blocks import BLOCKS
    >>> BLOCKS['norm'].param_count(BLOCKS['norm'].Params(norm='group'), [(64, 8, 8)])
    128
    """

    name = "norm"
    family = "basic"
    Params = NormParams
    inherits = ("norm",)
    examples = [
        ({}, [(8, 6, 6)]),
        ({"norm": "layer"}, [(16,)]),
        ({"norm": {"kind": "group", "groups": 4}}, [(8, 5, 5)]),
        ({"norm": {"kind": "layer", "per_position": True}}, [(8, 10)]),
        ({"norm": {"kind": "layer", "per_position": True}}, [(4, 5, 5)]),
        ({"norm": "instance"}, [(4, 10)]),
        ({"norm": {"kind": "batch", "affine": False}}, [(4, 3, 3, 3)]),
        ({"norm": "none"}, [(4, 3)]),
    ]

    @classmethod
    def output_shape(cls, p, inputs):
        cls.check_inputs(inputs)
        norm_ops("", p.norm, inputs[0])  # raises the explanatory error for impossible norms
        return inputs[0]

    @classmethod
    def ops(cls, p, inputs):
        return norm_ops("", p.norm, inputs[0])

    @classmethod
    def build(cls, p, inputs):
        shape = inputs[0]
        return make_norm(p.norm, shape[0], len(shape)) or nn.Identity()


class ActParams(BlockParams):
    """Settings of a standalone activation."""

    act: ActSpec = Field(ActSpec(kind="relu"), description="activation name or {kind, slope, inplace}")


@register_block
class Act(Block):
    """An activation function on its own (element-wise, shape unchanged).

    Shapes: (*S) -> (*S). ReLU (Nair & Hinton 2010), leaky ReLU (Maas et al. 2013),
    PReLU (He et al. 2015), SiLU (Elfwing et al. 2018), hard-swish (Howard et al. 2019),
    GELU (Hendrycks & Gimpel 2016).

    >>> from archlab.blocks import BLOCKS
    >>> BLOCKS['act'].output_shape(BLOCKS['act'].Params(act='gelu'), [(8, 4, 4)])
    (8, 4, 4)
    """

    name = "act"
    family = "basic"
    Params = ActParams
    inherits = ("act",)
    examples = [
        ({}, [(4, 5, 5)]),
        ({"act": {"kind": "leaky_relu", "slope": 0.2}}, [(6,)]),
        ({"act": "prelu"}, [(3, 7)]),
        ({"act": "hardswish"}, [(4, 3, 3)]),
        ({"act": "identity"}, [(4,)]),
    ]

    @classmethod
    def output_shape(cls, p, inputs):
        cls.check_inputs(inputs)
        return inputs[0]

    @classmethod
    def ops(cls, p, inputs):
        return act_ops("", p.act, inputs[0])

    @classmethod
    def build(cls, p, inputs):
        # never in place: the input may also feed another node (a skip), which must see it unchanged
        return make_act(p.act.model_copy(update={"inplace": False})) or nn.Identity()


class EmptyParams(BlockParams):
    """This block has no settings."""


@register_block
class Identity(Block):
    """Passes its input through unchanged: a named placeholder, or a branch that is only a skip.

    Shapes: (*S) -> (*S). The identity shortcut of residual networks (He et al. 2016).

    >>> from archlab.blocks import BLOCKS
    >>> BLOCKS['identity'].output_shape(BLOCKS['identity'].Params(), [(3, 32, 32)])
    (3, 32, 32)
    """

    name = "identity"
    family = "basic"
    Params = EmptyParams
    inherits = ()
    examples = [({}, [(3, 4, 4)]), ({}, [(5,)])]

    @classmethod
    def output_shape(cls, p, inputs):
        cls.check_inputs(inputs)
        return inputs[0]

    @classmethod
    def ops(cls, p, inputs):
        return []

    @classmethod
    def build(cls, p, inputs):
        return nn.Identity()


class DropoutParams(BlockParams):
    """Settings of dropout."""

    p: float = Field(0.5, ge=0, lt=1, description="probability of zeroing a unit (Srivastava et al.: 0.5)")
    spatial: bool = Field(False, description="drop whole channels (Dropout1d/2d/3d, Tompson et al. 2015)")


_SPATIAL_DROPOUT = {2: nn.Dropout1d, 3: nn.Dropout2d, 4: nn.Dropout3d}


@register_block
class Dropout(Block):
    """Dropout: zero units at random while training, scale the rest by 1/(1-p); identity at eval.

    Shapes: (*S) -> (*S). Srivastava et al. 2014; ``spatial: true`` zeroes whole channels
    (Tompson et al. 2015, SpatialDropout), which suits conv feature maps whose neighbours are
    correlated.

    >>> from archlab.blocks import BLOCKS
    >>> BLOCKS['dropout'].build(BLOCKS['dropout'].Params(p=0.2, spatial=True), [(8, 4, 4)])
    Dropout2d(p=0.2, inplace=False)
    """

    name = "dropout"
    family = "basic"
    Params = DropoutParams
    inherits = ()
    examples = [
        ({}, [(16,)]),
        ({"p": 0.1, "spatial": True}, [(8, 4, 4)]),
        ({"p": 0.2, "spatial": True}, [(8, 12)]),
    ]

    @classmethod
    def output_shape(cls, p, inputs):
        cls.check_inputs(inputs)
        if p.spatial and len(inputs[0]) not in _SPATIAL_DROPOUT:
            raise BlockError(
                f"spatial dropout drops whole channels of a feature map, got a vector {tuple(inputs[0])}",
                fix="use spatial: false for vectors", field="spatial")
        return inputs[0]

    @classmethod
    def ops(cls, p, inputs):
        cls.output_shape(p, inputs)
        # one mask multiply per element while training; nothing at inference
        return [Op("dropout", "", (inputs[0],), inputs[0], elementwise=numel(inputs[0]))]

    @classmethod
    def build(cls, p, inputs):
        cls.output_shape(p, inputs)
        if p.spatial:
            return _SPATIAL_DROPOUT[len(inputs[0])](p.p)
        return nn.Dropout(p.p)


@register_block
class Flatten(Block):
    """Flatten all non-batch axes into one feature vector.

    Shapes: (C, H, W) -> (C*H*W,); (C, L) -> (C*L,). As before the FC layers of LeNet-5
    (LeCun et al. 1998), AlexNet (Krizhevsky et al. 2012) and VGG (Simonyan & Zisserman 2015).

    >>> from archlab.blocks import BLOCKS
    >>> BLOCKS['flatten'].output_shape(BLOCKS['flatten'].Params(), [(512, 7, 7)])
    (25088,)
    """

    name = "flatten"
    family = "basic"
    Params = EmptyParams
    inherits = ()
    examples = [({}, [(4, 3, 3)]), ({}, [(6,)])]

    @classmethod
    def output_shape(cls, p, inputs):
        cls.check_inputs(inputs)
        return (numel(inputs[0]),)

    @classmethod
    def ops(cls, p, inputs):
        return [move_op("", "flatten", (inputs[0],), cls.output_shape(p, inputs))]

    @classmethod
    def build(cls, p, inputs):
        return nn.Flatten(1)


class ReshapeParams(BlockParams):
    """Settings of a reshape."""

    shape: tuple[int, ...] = Field(description="target shape without the batch axis; one entry may be -1")

    @field_validator("shape")
    @classmethod
    def _sizes(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v:
            raise ValueError("needs at least one axis, got []")
        if sum(1 for x in v if x == -1) > 1 or any(x == 0 or x < -1 for x in v):
            raise ValueError(f"sizes must be positive with at most one -1, got {list(v)}")
        return v


class Reshaping(nn.Module):
    """(N, *S) -> (N, *shape), with the per-sample shape fixed when the model is built."""

    def __init__(self, shape: Shape) -> None:
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: Tensor) -> Tensor:
        return x.reshape((-1, *self.shape))

    def extra_repr(self) -> str:
        return f"shape={self.shape}"


@register_block
class Reshape(Block):
    """Reshape each sample to a new shape with the same number of elements.

    Shapes: (*S) -> shape, numel(S) == numel(shape); e.g. (100,) -> (100, 1, 1), the latent
    vector becoming a 1x1 feature map in the DCGAN generator (Radford et al. 2016).

    >>> from archlab.blocks import BLOCKS
    >>> BLOCKS['reshape'].output_shape(BLOCKS['reshape'].Params(shape=[16, -1, 4]), [(256,)])
    (16, 4, 4)
    """

    name = "reshape"
    family = "basic"
    Params = ReshapeParams
    inherits = ()
    examples = [({"shape": [8, 1, 1]}, [(8,)]), ({"shape": [4, -1]}, [(2, 4, 4)])]

    @classmethod
    def output_shape(cls, p, inputs):
        cls.check_inputs(inputs)
        inp = inputs[0]
        total = numel(inp)
        known = math.prod(x for x in p.shape if x != -1)
        if -1 in p.shape:
            if total % known:
                raise BlockError(
                    f"reshape cannot fill -1 in {list(p.shape)}: {total} elements of input "
                    f"{tuple(inp)} are not a multiple of {known}",
                    fix=f"choose sizes whose product divides {total}", field="shape")
            return tuple(total // known if x == -1 else x for x in p.shape)
        if known != total:
            raise BlockError(
                f"reshape needs the same number of elements, got {total} from input {tuple(inp)} "
                f"and {known} for shape {list(p.shape)}",
                fix="make the product of 'shape' equal the input's, or use -1 for one axis",
                field="shape")
        return tuple(p.shape)

    @classmethod
    def ops(cls, p, inputs):
        return [move_op("", "reshape", (inputs[0],), cls.output_shape(p, inputs))]

    @classmethod
    def build(cls, p, inputs):
        return Reshaping(cls.output_shape(p, inputs))
