"""Normalisations, activations and the shared conv arithmetic used by every block family.

Two registries (house style: one registry per kind):

* ``NORMS``: batch, layer (channel-wise for feature maps), group, instance, none;
* ``ACTIVATIONS``: relu, relu6, leaky_relu, prelu, silu, hardswish, hardsigmoid, gelu,
  gelu_tanh (GPT-2's tanh approximation), sigmoid, tanh, identity (alias none).

In a design both are written as a name (``act: relu``) or a mapping with options
(``act: {kind: leaky_relu, slope: 0.2}``, ``norm: {kind: group, groups: 8}``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn
from torch.nn import functional as F

from ..errors import BlockError, unknown_name
from ..ops import Op, Shape, act_op, norm_op

# ----------------------------------------------------------------------------- specs -------


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"kind": value}
        if value is None or value is False:
            return {"kind": "none"}
        return value


class NormSpec(_Spec):
    """A normalisation: ``batch``, ``layer``, ``group``, ``instance`` or ``none``."""

    kind: str = "batch"
    groups: int = Field(32, gt=0, description="groups for group norm")
    eps: float = Field(1e-5, gt=0, description="added to the variance")
    momentum: float = Field(0.1, ge=0, le=1, description="running-statistics momentum (batch)")
    affine: bool = True
    per_position: bool = Field(
        False, description="layer norm only: normalise over the channels at each position "
        "(transformers, ConvNeXt) instead of over channels and positions together")

    @model_validator(mode="after")
    def _known(self) -> NormSpec:
        if self.kind not in NORMS:
            raise ValueError(unknown_name("norm", self.kind, NORMS))
        if self.per_position and self.kind != "layer":
            raise ValueError(f"per_position applies to norm 'layer' only, got norm '{self.kind}'")
        return self

    @property
    def active(self) -> bool:
        return self.kind != "none"


class ActSpec(_Spec):
    """An activation, by name; ``slope`` for leaky_relu, ``inplace`` where PyTorch offers it."""

    kind: str = "relu"
    slope: float = Field(0.01, description="negative slope of leaky_relu")
    inplace: bool = Field(True, description="in-place where safe: saves one activation copy")

    @model_validator(mode="before")
    @classmethod
    def _alias(cls, value: Any) -> Any:
        value = cls._from_name(value)
        if isinstance(value, dict) and value.get("kind") == "none":
            value = {**value, "kind": "identity"}
        return value

    @model_validator(mode="after")
    def _known(self) -> ActSpec:
        if self.kind not in ACTIVATIONS:
            raise ValueError(unknown_name("activation", self.kind, ACTIVATIONS))
        return self

    @property
    def active(self) -> bool:
        return self.kind != "identity"


Order = Literal["norm_act", "act_norm", "pre"]
"""Where norm and activation sit around a weight layer: ``norm_act`` = weight, norm, act (the
common default, CP/DD); ``act_norm`` = weight, act, norm; ``pre`` = norm, act, weight
(pre-activation ResNets)."""


# ------------------------------------------------------------------------ registries -------


def _batch(spec: NormSpec, c: int, rank: int) -> nn.Module:
    cls = {1: nn.BatchNorm1d, 2: nn.BatchNorm1d, 3: nn.BatchNorm2d, 4: nn.BatchNorm3d}[rank]
    return cls(c, eps=spec.eps, momentum=spec.momentum, affine=spec.affine)


def _group(spec: NormSpec, c: int, rank: int) -> nn.Module:
    if c % spec.groups:
        raise BlockError(
            f"group norm needs channels divisible by groups, got channels={c}, groups={spec.groups}",
            fix=f"use norm: {{kind: group, groups: {math.gcd(c, spec.groups)}}}",
            field="norm",
        )
    return nn.GroupNorm(spec.groups, c, eps=spec.eps, affine=spec.affine)


class ChannelLayerNorm(nn.LayerNorm):
    """Layer norm over the channels of (N, C, *S) at each position: what a transformer applies to
    each step of a (C, L) sequence, and ConvNeXt to each pixel (Ba et al. 2016; Liu et al. 2022)."""

    def forward(self, x):
        out = F.layer_norm(x.movedim(1, -1), self.normalized_shape, self.weight, self.bias, self.eps)
        return out.movedim(-1, 1)


def _layer(spec: NormSpec, c: int, rank: int) -> nn.Module:
    if rank == 1:
        return nn.LayerNorm(c, eps=spec.eps, elementwise_affine=spec.affine)
    if spec.per_position:
        return ChannelLayerNorm(c, eps=spec.eps, elementwise_affine=spec.affine)
    # layer norm of a feature map as in Ba et al.: over (C, H, W) of each sample, which is
    # group norm with one group
    return nn.GroupNorm(1, c, eps=spec.eps, affine=spec.affine)


def _instance(spec: NormSpec, c: int, rank: int) -> nn.Module:
    if rank == 1:
        raise BlockError("instance norm needs spatial or sequence inputs, got a vector",
                         fix="use norm: layer or batch", field="norm")
    cls = {2: nn.InstanceNorm1d, 3: nn.InstanceNorm2d, 4: nn.InstanceNorm3d}[rank]
    return cls(c, eps=spec.eps, affine=spec.affine)


NORMS: dict[str, Callable[[NormSpec, int, int], nn.Module] | None] = {
    "batch": _batch,
    "layer": _layer,
    "group": _group,
    "instance": _instance,
    "none": None,
}

_NORM_OP_KIND = {"batch": "batch_norm", "layer": "group_norm", "group": "group_norm",
                 "instance": "instance_norm"}


def _prelu(spec: ActSpec) -> nn.Module:
    return nn.PReLU()


ACTIVATIONS: dict[str, Callable[[ActSpec], nn.Module] | None] = {
    "relu": lambda s: nn.ReLU(inplace=s.inplace),
    "relu6": lambda s: nn.ReLU6(inplace=s.inplace),
    "leaky_relu": lambda s: nn.LeakyReLU(s.slope, inplace=s.inplace),
    "prelu": _prelu,
    "silu": lambda s: nn.SiLU(inplace=s.inplace),
    "hardswish": lambda s: nn.Hardswish(inplace=s.inplace),
    "hardsigmoid": lambda s: nn.Hardsigmoid(inplace=s.inplace),
    "gelu": lambda s: nn.GELU(),
    "gelu_tanh": lambda s: nn.GELU(approximate="tanh"),  # GPT-2's tanh approximation
    "sigmoid": lambda s: nn.Sigmoid(),
    "tanh": lambda s: nn.Tanh(),
    "identity": None,
}


def make_norm(spec: NormSpec | None, channels: int, rank: int) -> nn.Module | None:
    """The norm module for ``channels`` features of an input of ``rank`` (C,), (C,L), (C,H,W)."""
    if spec is None or not spec.active:
        return None
    return NORMS[spec.kind](spec, channels, rank)


def make_act(spec: ActSpec | None) -> nn.Module | None:
    if spec is None or not spec.active:
        return None
    return ACTIVATIONS[spec.kind](spec)


def norm_params(spec: NormSpec | None, channels: int, rank: int) -> int:
    if spec is None or not spec.active or not spec.affine:
        return 0
    return 2 * channels


def norm_ops(path: str, spec: NormSpec | None, shape: Shape) -> list[Op]:
    if spec is None or not spec.active:
        return []
    if spec.kind == "instance" and len(shape) == 1:
        make_norm(spec, shape[0], 1)  # raises the explanatory error
    if spec.kind == "group" and shape[0] % spec.groups:
        make_norm(spec, shape[0], len(shape))
    per_step = spec.kind == "layer" and (len(shape) == 1 or spec.per_position)
    kind = "layer_norm" if per_step else _NORM_OP_KIND[spec.kind]
    return [norm_op(path, kind, shape, norm_params(spec, shape[0], len(shape)))]


def act_ops(path: str, spec: ActSpec | None, shape: Shape) -> list[Op]:
    if spec is None or not spec.active:
        return []
    return [act_op(path, spec.kind, shape, params=1 if spec.kind == "prelu" else 0)]


# --------------------------------------------------------------------- conv arithmetic -------


def as_tuple(value: int | list[int] | tuple[int, ...], dims: int, field: str) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * dims
    value = tuple(value)
    if len(value) != dims:
        raise BlockError(f"'{field}' needs {dims} values for {dims}D input, got {list(value)}",
                         fix=f"write {field}: {value[0]} or a list of {dims} values", field=field)
    return value


def same_padding(kernel: tuple[int, ...], dilation: tuple[int, ...]) -> tuple[int, ...]:
    """Padding that keeps the size at stride 1 (odd kernels; for even kernels the output
    grows by one, as in PyTorch with padding=k//2)."""
    return tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation, strict=True))


def conv_out_size(size: int, k: int, s: int, p: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def conv_spatial(
    spatial: tuple[int, ...],
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    padding: tuple[int, ...],
    dilation: tuple[int, ...],
) -> tuple[int, ...]:
    out = []
    for size, k, s, p, d in zip(spatial, kernel, stride, padding, dilation, strict=True):
        span = d * (k - 1) + 1
        if size + 2 * p < span:
            raise BlockError(
                f"kernel {k} (dilation {d}, span {span}) is larger than the padded feature map "
                f"{size}+2*{p}={size + 2 * p}",
                fix="use a smaller kernel, more padding, or downsample less before this node",
                field="kernel",
            )
        out.append(conv_out_size(size, k, s, p, d))
    return tuple(out)


def transposed_spatial(
    spatial: tuple[int, ...],
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    padding: tuple[int, ...],
    output_padding: tuple[int, ...],
    dilation: tuple[int, ...],
) -> tuple[int, ...]:
    return tuple(
        (size - 1) * s - 2 * p + d * (k - 1) + op + 1
        for size, k, s, p, op, d in zip(spatial, kernel, stride, padding, output_padding, dilation, strict=True)
    )


CONV_CLASSES: dict[int, type[nn.Module]] = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
CONV_T_CLASSES: dict[int, type[nn.Module]] = {
    1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}


def check_divisible(value: int, by: int, what: str, by_what: str, fix: str | None, field: str,
                    value_key: str | None = None, by_key: str | None = None) -> None:
    """Raise when ``value % by``; with ``value_key``/``by_key`` (the design keys that set them)
    the fix names the nearest values that work: divisors of ``value`` nearest ``by`` and
    multiples of ``by`` nearest ``value``."""
    if by <= 0 or value % by:
        if value_key or by_key:
            fix = divisibility_fix(value, by, value_key, by_key, fix)
        raise BlockError(f"{what} (={value}) must be divisible by {by_what} (={by})", fix=fix,
                         field=field)


def nearest_divisors(value: int, near: int, count: int = 2) -> list[int]:
    """Divisors of ``value`` closest to ``near`` (ties: the smaller first).

    >>> nearest_divisors(768, 10)
    [8, 12]
    """
    divisors = {d for i in range(1, math.isqrt(value) + 1) if value % i == 0
                for d in (i, value // i)}
    divisors.discard(near)
    return sorted(sorted(divisors), key=lambda d: abs(d - near))[:count]


def nearest_multiples(value: int, by: int) -> list[int]:
    """The multiples of ``by`` just below and above ``value`` (positive ones only).

    >>> nearest_multiples(100, 12)
    [96, 108]
    """
    below, above = value // by * by, -(-value // by) * by
    return sorted({m for m in (below, above) if m > 0 and m != value})


def divisibility_fix(value: int, by: int, value_key: str | None, by_key: str | None,
                     lead: str | None = None) -> str:
    """'use heads: 8 or 12 (divisors of 768 nearest 10), or out: 760 or 770 (multiples of 10)'."""
    parts = []
    if by_key:
        near = nearest_divisors(value, by)
        parts.append(f"{by_key}: {' or '.join(map(str, near))} (divisors of {value} nearest {by})")
    if value_key and by > 0:
        mult = nearest_multiples(value, by)
        parts.append(f"{value_key}: {' or '.join(map(str, mult))} (multiples of {by} nearest {value})")
    text = "use " + ", or ".join(parts)
    return f"{lead}; {text}" if lead else text


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a width to a multiple of ``divisor``, never going down by more than 10%
    (MobileNet's rule, so that a width multiplier does not remove too many channels)."""
    min_value = divisor if min_value is None else min_value
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new
