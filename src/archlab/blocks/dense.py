"""Dense layers: ``linear`` (fully connected, optionally with norm and activation) and ``head``
(the classifier head: global average pool, dropout, linear to the classes).

An MLP is written as a sequence of ``linear`` nodes. Neither block inherits the design's default
norm or activation: a network whose convs use BN + ReLU still wants its last linear layer plain
(the logits), so dense layers get a norm or activation only when the node asks for one.
"""

from __future__ import annotations

import math
from collections import OrderedDict

from pydantic import Field, PositiveInt
from torch import nn

from ..ops import Op, linear_op, numel, pool_op
from .base import Block, BlockParams, register_block
from .basic import plan_module, plan_ops
from .layers import ActSpec, NormSpec
from .plan import Plan
from .pool import ADAPTIVE_AVG_POOL


class LinearParams(BlockParams):
    """Settings of a fully connected layer."""

    out: PositiveInt = Field(description="output features")
    bias: bool | None = Field(None, description="None = a bias unless a norm follows (BN makes it redundant)")
    norm: NormSpec = Field(NormSpec(kind="none"), description="norm after the linear (none by default)")
    act: ActSpec = Field(ActSpec(kind="identity"), description="activation after the norm (none by default)")


def linear_plan(p: LinearParams, inp) -> Plan:
    bias = p.bias if p.bias is not None else not p.norm.active
    fin = inp[0]
    out = (p.out,)
    plan = Plan(inp)
    plan.add(lambda: nn.Linear(fin, p.out, bias=bias), [linear_op("", inp, out, bias=bias)], out)
    return plan.norm(p.norm).act(p.act)


@register_block
class Linear(Block):
    """Fully connected layer: y = x W^T + b, optionally followed by a norm and an activation.

    Shapes: (F,) -> (out,). Parameters: F*out (+ out with bias). The multilayer perceptron of
    Rumelhart et al. 1986; a plain linear layer is a single ``nn.Linear`` (state dict
    ``weight``, ``bias``), with norm/act it is ``nn.Sequential`` (``0``, ``1``, ``2``).

    >>> from archlab.blocks import BLOCKS
    >>> BLOCKS['linear'].param_count(BLOCKS['linear'].Params(out=10), [(512,)])
    5130
    """

    name = "linear"
    family = "dense"
    Params = LinearParams
    input_ranks = (1,)
    inherits = ()  # logits and regression outputs must stay linear unless asked otherwise
    examples = [
        ({"out": 10}, [(32,)]),
        ({"out": 16, "bias": False}, [(8,)]),
        ({"out": 12, "norm": "batch", "act": "relu"}, [(20,)]),
        ({"out": 6, "norm": "layer", "act": "gelu"}, [(6,)]),
    ]

    @classmethod
    def output_shape(cls, p, inputs):
        cls.check_inputs(inputs)
        return (p.out,)

    @classmethod
    def ops(cls, p, inputs):
        return plan_ops(linear_plan(p, inputs[0]))

    @classmethod
    def build(cls, p, inputs):
        return plan_module(linear_plan(p, inputs[0]))


class HeadParams(BlockParams):
    """Settings of a classifier head."""

    classes: PositiveInt = Field(description="number of classes (logits)")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout before the linear layer (0 = none)")
    bias: bool = Field(True, description="bias of the final linear layer")


def _head_layers(p: HeadParams, inp):
    """(name, factory, ops, output shape) of each layer of the head, in order."""
    layers = []
    shape = tuple(inp)
    if len(shape) > 1:
        dims = len(shape) - 1
        pooled = (shape[0], *(1,) * dims)
        layers.append(("pool", lambda: ADAPTIVE_AVG_POOL[dims](1),
                       [pool_op("", f"adaptive_avg_pool{dims}d", shape, pooled, math.prod(shape[1:]))],
                       pooled))
        layers.append(("flatten", lambda: nn.Flatten(1),
                       [Op("flatten", "", (pooled,), (shape[0],))], (shape[0],)))
        shape = (shape[0],)
    if p.dropout > 0:
        layers.append(("dropout", lambda: nn.Dropout(p.dropout),
                       [Op("dropout", "", (shape,), shape, elementwise=numel(shape))], shape))
    fin = shape[0]
    layers.append(("fc", lambda: nn.Linear(fin, p.classes, bias=p.bias),
                   [linear_op("", shape, (p.classes,), bias=p.bias)], (p.classes,)))
    return layers


@register_block
class Head(Block):
    """Classifier head: global average pool (for feature maps), optional dropout, linear to logits.

    Shapes: (C, H, W) -> (classes,); (C, L) -> (classes,); (F,) -> (classes,). The head of
    Network in Network (Lin et al. 2014) and ResNet (He et al. 2016): pooling instead of large
    FC layers. Submodules: ``pool``, ``flatten`` (feature maps only), ``dropout`` (when > 0), ``fc``.

    >>> from archlab.blocks import BLOCKS
    >>> BLOCKS['head'].param_count(BLOCKS['head'].Params(classes=1000), [(2048, 7, 7)])
    2049000
    """

    name = "head"
    family = "dense"
    Params = HeadParams
    inherits = ()
    examples = [
        ({"classes": 10}, [(16, 4, 4)]),
        ({"classes": 5, "dropout": 0.2}, [(12,)]),
        ({"classes": 3, "dropout": 0.5, "bias": False}, [(8, 10)]),
    ]

    @classmethod
    def output_shape(cls, p, inputs):
        cls.check_inputs(inputs)
        return (p.classes,)

    @classmethod
    def ops(cls, p, inputs):
        return [op.under(name) for name, _, ops, _ in _head_layers(p, inputs[0]) for op in ops]

    @classmethod
    def build(cls, p, inputs):
        return nn.Sequential(OrderedDict((name, make()) for name, make, _, _ in _head_layers(p, inputs[0])))
