"""A layer plan: one description of a sequential block from which both its ``nn.Module`` and
its op records are derived, so the formulas and the built module cannot drift apart.

A plan is a list of :class:`Step`. Each step makes one module and lists the ops it performs.
``Plan.build()`` returns ``nn.Sequential`` of the modules (submodules named '0', '1', ...), and
``Plan.ops()`` returns the ops with matching paths.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from ..ops import Op, Shape, conv_op
from .layers import (
    CONV_CLASSES,
    CONV_T_CLASSES,
    ActSpec,
    NormSpec,
    act_ops,
    make_act,
    make_norm,
    norm_ops,
)


@dataclass
class Step:
    make: Callable[[], nn.Module]
    ops: list[Op]           # paths relative to the step's module ('' = the module itself)
    output: Shape


@dataclass
class Plan:
    input: Shape
    steps: list[Step] = field(default_factory=list)

    @property
    def output(self) -> Shape:
        return self.steps[-1].output if self.steps else self.input

    def add(self, make: Callable[[], nn.Module], ops: list[Op], output: Shape) -> Plan:
        self.steps.append(Step(make, ops, output))
        return self

    def build(self) -> nn.Sequential:
        return nn.Sequential(*[s.make() for s in self.steps])

    def ops(self, prefix: str = "") -> list[Op]:
        out: list[Op] = []
        for i, step in enumerate(self.steps):
            name = f"{prefix}.{i}" if prefix else str(i)
            out.extend(op.under(name) for op in step.ops)
        return out

    # ---- common steps -------------------------------------------------------------------
    def conv(
        self,
        out_channels: int,
        kernel: tuple[int, ...],
        stride: tuple[int, ...],
        padding: tuple[int, ...],
        dilation: tuple[int, ...],
        groups: int,
        bias: bool,
        out_shape: Shape,
    ) -> Plan:
        cin = self.output[0]
        dims = len(kernel)
        op = conv_op("", self.output, out_shape, kernel, groups=groups, bias=bias)
        return self.add(
            lambda: CONV_CLASSES[dims](cin, out_channels, kernel, stride, padding, dilation,
                                       groups, bias),
            [op],
            out_shape,
        )

    def conv_transpose(
        self,
        out_channels: int,
        kernel: tuple[int, ...],
        stride: tuple[int, ...],
        padding: tuple[int, ...],
        output_padding: tuple[int, ...],
        dilation: tuple[int, ...],
        groups: int,
        bias: bool,
        out_shape: Shape,
    ) -> Plan:
        cin = self.output[0]
        dims = len(kernel)
        op = conv_op("", self.output, out_shape, kernel, groups=groups, bias=bias, transposed=True)
        return self.add(
            lambda: CONV_T_CLASSES[dims](cin, out_channels, kernel, stride, padding, output_padding,
                                         groups, bias, dilation),
            [op],
            out_shape,
        )

    def norm(self, spec: NormSpec | None) -> Plan:
        shape = self.output
        ops = norm_ops("", spec, shape)
        if ops:
            self.add(lambda: make_norm(spec, shape[0], len(shape)), ops, shape)
        return self

    def act(self, spec: ActSpec | None) -> Plan:
        shape = self.output
        ops = act_ops("", spec, shape)
        if ops:
            self.add(lambda: make_act(spec), ops, shape)
        return self

    def norm_act(self, norm: NormSpec | None, act: ActSpec | None, order: str) -> Plan:
        """Norm and activation after a weight layer, in the design's order."""
        if order == "act_norm":
            return self.act(act).norm(norm)
        return self.norm(norm).act(act)
