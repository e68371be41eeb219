"""3-way separable convolution (A10): a vertical kx1, a horizontal 1xk and a channel-mixing
component, in a configurable order.

A kxk convolution over C channels factorises into three cheaper pieces: a per-channel (depthwise)
vertical ``k x 1`` filter, a per-channel horizontal ``1 x k`` filter, and a ``1 x 1`` pointwise
conv that mixes the channels (the "depth" component in Isikdogan et al.'s wording, 2020 text HD).
Hardware that receives images line by line pays for the vertical part in buffered lines, which is
why the order is configurable and why the FIR-IIR block (``fir_iir``) replaces the vertical
filter with a recurrence. Registered as the conv kind ``separable3``::

    - conv: {out: 32, kernel: 5, kind: separable3, order3: [horizontal, vertical, pointwise]}

Cost per output pixel for C in, C' out: ``2*k*C + C*C'`` multiply-adds instead of ``k*k*C*C'``
(for 3x3 kernels the saving over a 2-way separable conv is small; design review rule B8).
"""

from __future__ import annotations

from ..errors import BlockError
from ..ops import Shape
from .conv import CONV_KINDS, _bias, _pre, resolved_geometry
from .layers import conv_spatial
from .plan import Plan

COMPONENTS = ("vertical", "horizontal", "pointwise")
"""The three components; ``depthwise`` is accepted as another name for ``pointwise`` (the
component along the depth axis), since the 2020 text calls it that."""


def normalised_order(order3) -> tuple[str, ...]:
    """The component order with the ``depthwise`` alias resolved; raises when it is not a
    permutation of vertical, horizontal and pointwise."""
    names = tuple("pointwise" if c == "depthwise" else c for c in order3)
    if sorted(names) != sorted(COMPONENTS):
        raise BlockError(
            f"order3 must name each of vertical, horizontal and pointwise once, got {list(order3)}",
            fix="write order3: [vertical, horizontal, pointwise] (any order of the three)",
            field="order3",
        )
    return names


def separable3_plan(p, inp: Shape) -> Plan:
    """(C, H, W) -> (out, H', W'): the three components in ``p.order3``; ``inner`` says what
    follows each component except the last (as for ``separable``)."""
    if len(inp) != 3:
        raise BlockError(
            f"conv kind 'separable3' needs an image (C, H, W), got shape {tuple(inp)}",
            fix="use kind: separable for sequences and volumes",
            field="kind",
        )
    if p.groups != 1:
        raise BlockError(
            f"conv kind 'separable3' sets its own groups, got groups={p.groups}",
            fix="remove 'groups' (the vertical and horizontal parts are depthwise already)",
            field="groups",
        )
    order = normalised_order(p.order3)
    cout = p.out or inp[0]
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = resolved_geometry(p, inp)
    plan = Plan(inp)
    _pre(plan, p)
    for i, component in enumerate(order):
        last = i == len(order) - 1
        shape = plan.output
        c = shape[0]
        if component == "vertical":
            geometry = ((kh, 1), (sh, 1), (ph, 0), (dh, 1))
            channels, groups = c, c
        elif component == "horizontal":
            geometry = ((1, kw), (1, sw), (0, pw), (1, dw))
            channels, groups = c, c
        else:
            geometry = ((1, 1), (1, 1), (0, 0), (1, 1))
            channels, groups = cout, 1
        kernel, stride, padding, dilation = geometry
        out_shape = (channels, *conv_spatial(shape[1:], kernel, stride, padding, dilation))
        bias = _bias(p, p.order == "norm_act") if last else (p.inner == "none" and p.bias is True)
        plan.conv(channels, kernel, stride, padding, dilation, groups, bias, out_shape)
        if p.order == "pre":
            continue
        if last:
            plan.norm_act(p.norm, p.act, p.order)
        elif p.inner == "norm_act":
            plan.norm_act(p.norm, p.act, p.order)
        elif p.inner == "norm":
            plan.norm(p.norm)
    return plan


CONV_KINDS["separable3"] = separable3_plan
