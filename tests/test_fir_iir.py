"""The FIR-IIR filter block and the 3-way separable conv kind (principle A10).

Oracles: the reference row loop (the recurrence written literally), numeric gradients
(``torch.autograd.gradcheck`` in float64), PyTorch's FLOP counter and parameter count, and for
``separable3`` a single dense conv with the equivalent rank-1 kernels.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import archlab
from archlab.blocks import BLOCKS
from archlab.blocks.fir_iir import (
    MAX_COEFFICIENT,
    VerticalIIR,
    iir_chunks,
    iir_multiply_adds,
    iir_rows,
    iir_rows_loop,
)
from archlab.errors import BlockError, DesignError

FIR_IIR = BLOCKS["fir_iir"]
CONV = BLOCKS["conv"]


def measured_multiply_adds(module: torch.nn.Module, x: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter:
        module(x)
    return counter.get_total_flops() // 2 // x.shape[0]


# ----------------------------------------------------------------- the recurrence -------


@pytest.mark.parametrize(
    "rows, chunk",
    [(1, 32), (5, 32), (32, 32), (33, 32), (30, 8), (64, 8), (97, 16), (7, 1)],
)
def test_parallel_scan_equals_row_loop_float32(rows, chunk):
    torch.manual_seed(rows * 100 + chunk)
    x = torch.randn(2, 4, rows, 5)
    a = torch.tensor([0.5, -0.9, 0.99, 0.0])
    got = iir_rows(x, a, chunk)
    want = iir_rows_loop(x, a)
    assert got.shape == x.shape
    assert torch.allclose(got, want, atol=1e-5, rtol=0)


def test_recurrence_by_hand():
    # a = 0.5 on the column 1, 0, 0, 2: 1, 0.5, 0.25, 2.125
    x = torch.tensor([1.0, 0.0, 0.0, 2.0]).reshape(1, 1, 4, 1)
    a = torch.tensor([0.5])
    expected = torch.tensor([1.0, 0.5, 0.25, 2.125]).reshape(1, 1, 4, 1)
    assert torch.equal(iir_rows_loop(x, a), expected)
    assert torch.allclose(iir_rows(x, a, chunk=2), expected, atol=0)


def test_long_columns_stay_exact_near_the_stability_bound():
    # |a| = 0.999: the gain reaches ~1000x; powers a^r are built by cumulative products, never
    # by a^-r, so nothing overflows and the relative error stays at float32 rounding
    torch.manual_seed(0)
    x = torch.randn(1, 2, 2000, 3)
    a = torch.tensor([MAX_COEFFICIENT, -MAX_COEFFICIENT])
    want = iir_rows_loop(x.double(), a.double())
    got = iir_rows(x, a, 32).double()
    assert torch.isfinite(got).all()
    assert ((got - want).abs().max() / want.abs().max()) < 1e-5


@pytest.mark.parametrize("rows, chunk", [(6, 32), (11, 4), (9, 3)])
def test_gradcheck_float64_input_and_coefficient(rows, chunk):
    torch.manual_seed(rows)
    x = torch.randn(2, 3, rows, 2, dtype=torch.float64, requires_grad=True)
    raw = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64, requires_grad=True)

    def filtered(x, raw):
        return iir_rows(x, MAX_COEFFICIENT * torch.tanh(raw), chunk)

    assert torch.autograd.gradcheck(filtered, (x, raw), eps=1e-6, atol=1e-6)


def test_gradcheck_the_module_parameter():
    torch.manual_seed(1)
    iir = VerticalIIR(2, chunk=3, init=-0.4).double()
    x = torch.randn(1, 2, 8, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(iir, (x,), eps=1e-6, atol=1e-6)
    # the parameter's gradient equals the one through the row loop
    iir(x).square().sum().backward()
    scan_grad = iir.raw_coefficient.grad.clone()
    iir.raw_coefficient.grad = None
    iir_rows_loop(x, iir.coefficient).square().sum().backward()
    assert torch.allclose(scan_grad, iir.raw_coefficient.grad, atol=1e-10)


def test_coefficient_stays_stable_under_training():
    # the loss rewards a large gain, so plain SGD with a big step drives a towards 1:
    # the parameterisation keeps |a| < 1 and the output finite at every step
    torch.manual_seed(0)
    iir = VerticalIIR(3, chunk=8, init=0.9)
    optimiser = torch.optim.SGD(iir.parameters(), lr=50.0)
    x = torch.rand(2, 3, 40, 4)
    for _ in range(25):
        optimiser.zero_grad()
        out = iir(x)
        assert torch.isfinite(out).all()
        (-out.mean()).backward()
        optimiser.step()
        assert iir.coefficient.abs().max().item() < 1.0
    assert iir.coefficient.min().item() > 0.99  # it did move towards the bound


def test_init_sets_the_coefficient():
    iir = VerticalIIR(4, init=-0.25)
    assert torch.allclose(iir.coefficient, torch.full((4,), -0.25))


# ---------------------------------------------------------------------- the block -------


def test_block_equals_fir_then_row_loop_then_pointwise():
    torch.manual_seed(0)
    p = FIR_IIR.Params(out=5, kernel=3, chunk=4, norm="none", act="none", init=0.7)
    net = FIR_IIR.build(p, [(3, 13, 6)])
    x = torch.randn(2, 3, 13, 6)
    fir, iir, pointwise = net[0], net[1], net[2]
    assert fir.kernel_size == (1, 3) and fir.groups == 3
    want = pointwise(iir_rows_loop(fir(x), iir.coefficient))
    assert torch.allclose(net(x), want, atol=1e-5)


def test_first_row_sees_no_future_rows():
    # causality: rows below r never change the output at row r (no line is buffered)
    torch.manual_seed(0)
    net = FIR_IIR.build(FIR_IIR.Params(norm="none", act="none"), [(2, 10, 5)])
    x = torch.randn(1, 2, 10, 5)
    y = x.clone()
    y[:, :, 6:] += 10.0
    assert torch.equal(net(x)[:, :, :6], net(y)[:, :, :6])


@pytest.mark.parametrize("shape, chunk", [((3, 8, 4), 32), ((3, 40, 4), 8), ((2, 33, 5), 32)])
def test_counts_agree_with_pytorch(shape, chunk):
    p = FIR_IIR.Params(out=4, kernel=5, chunk=chunk)
    net = FIR_IIR.build(p, [shape])
    x = torch.randn(2, *shape)
    assert FIR_IIR.param_count(p, [shape]) == sum(t.numel() for t in net.parameters())
    assert FIR_IIR.multiply_adds(p, [shape]) == measured_multiply_adds(net, x)
    assert tuple(net(x).shape[1:]) == FIR_IIR.output_shape(p, [shape])
    iir = next(op for op in FIR_IIR.ops(p, [shape]) if op.kind == "iir_rows")
    c, h, w = shape
    assert iir.extra["recurrence_multiply_adds"] == c * h * w
    assert iir.path == "1" and iir.params == c


def test_iir_cost_formula():
    # one chunk: the full lower-triangular H x H product; several: B*T*T + B*B per column
    assert iir_chunks(20, 32) == (20, 1)
    assert iir_multiply_adds(2, 20, 3, 32) == 2 * 3 * 20 * 20
    assert iir_chunks(100, 32) == (32, 4)
    assert iir_multiply_adds(2, 100, 3, 32) == 2 * 3 * (4 * 32 * 32 + 4 * 4)


def test_conv_kind_fir_iir_is_the_same_filter():
    p_kind = CONV.Params(kind="fir_iir", kernel=5, out=6)
    p_block = FIR_IIR.Params(kernel=5, out=6)
    shape = [(4, 12, 7)]
    assert CONV.ops(p_kind, shape) == FIR_IIR.ops(p_block, shape)


def test_errors_say_what_and_how_to_fix():
    with pytest.raises(DesignError) as err:
        archlab.load("input: [3, 8, 8]\nlayers:\n  - {name: fir, block: fir_iir, kernel: 4}\n")
    assert str(err.value).startswith(
        "<text>:3 layers[0] (fir): 'kernel' of block 'fir_iir': must be odd so the filter stays "
        "centred (use 5), got 4; ")
    assert "width of the horizontal FIR (odd: centred)" in str(err.value)  # the field's help
    with pytest.raises(BlockError, match=r"block 'fir_iir' expects an image \(C, H, W\) input, "
                                         r"got shape \(3, 20\)"):
        FIR_IIR.output_shape(FIR_IIR.Params(), [(3, 20)])
    with pytest.raises(ValueError, match="less than 0.999"):
        FIR_IIR.Params(init=1.0)
    with pytest.raises(BlockError) as err:
        CONV.output_shape(CONV.Params(kind="fir_iir", stride=2), [(3, 8, 8)])
    assert str(err.value) == (
        "conv kind 'fir_iir' supports stride 1, groups 1 and dilation 1 only, got stride=2, "
        "groups=1, dilation=1; downsample with a separate node (pool or space_to_depth) after it")


# ------------------------------------------------------------- 3-way separable conv -------


def _rank1_kernels(net, order):
    """The dense kernel equivalent to the three bare components (no norm/act in between)."""
    convs = [m for m in net if isinstance(m, torch.nn.Conv2d)]
    parts = dict(zip(order, convs, strict=True))
    vertical = parts["vertical"].weight[:, 0, :, 0]            # (C, k)
    horizontal = parts["horizontal"].weight[:, 0, 0, :]        # (C, k)
    pointwise = parts["pointwise"].weight[:, :, 0, 0]          # (C', C)
    spatial = vertical[:, :, None] * horizontal[:, None, :]    # (C, k, k) per channel
    return pointwise[:, :, None, None] * spatial[None]          # (C', C, k, k)


@pytest.mark.parametrize("order", [["vertical", "horizontal", "pointwise"],
                                   ["horizontal", "vertical", "depthwise"]])
def test_separable3_equals_the_equivalent_dense_conv(order):
    torch.manual_seed(0)
    p = CONV.Params(kind="separable3", out=6, kernel=5, order3=order, inner="none",
                    norm="none", act="none", bias=False)
    net = CONV.build(p, [(4, 9, 11)])
    x = torch.randn(2, 4, 9, 11)
    names = ["pointwise" if c == "depthwise" else c for c in order]
    want = F.conv2d(x, _rank1_kernels(net, names), padding=2)
    assert torch.allclose(net(x), want, atol=1e-5)


def test_separable3_cost_is_two_k_c_plus_c_c_prime_per_pixel():
    p = CONV.Params(kind="separable3", out=16, kernel=7, norm="none", act="none", inner="none",
                    bias=False)
    c, h, w = 8, 10, 12
    assert CONV.multiply_adds(p, [(c, h, w)]) == h * w * (2 * 7 * c + c * 16)
    assert CONV.param_count(p, [(c, h, w)]) == 2 * 7 * c + c * 16


def test_separable3_stride_and_order():
    p = CONV.Params(kind="separable3", out=8, kernel=3, stride=2,
                    order3=["pointwise", "horizontal", "vertical"])
    net = CONV.build(p, [(4, 10, 7)])
    kinds = [(m.kernel_size, m.stride, m.groups) for m in net if isinstance(m, torch.nn.Conv2d)]
    assert kinds == [((1, 1), (1, 1), 1), ((1, 3), (1, 2), 8), ((3, 1), (2, 1), 8)]
    assert tuple(net(torch.randn(1, 4, 10, 7)).shape[1:]) == CONV.output_shape(p, [(4, 10, 7)])


def test_separable3_errors():
    with pytest.raises(BlockError) as err:
        CONV.output_shape(CONV.Params(kind="separable3", order3=["vertical", "vertical",
                                                                 "pointwise"]), [(3, 8, 8)])
    assert str(err.value) == (
        "order3 must name each of vertical, horizontal and pointwise once, got ['vertical', "
        "'vertical', 'pointwise']; write order3: [vertical, horizontal, pointwise] (any order "
        "of the three)")
    with pytest.raises(BlockError, match=r"conv kind 'separable3' needs an image \(C, H, W\), "
                                         r"got shape \(3, 20\); use kind: separable"):
        CONV.output_shape(CONV.Params(kind="separable3"), [(3, 20)])
    with pytest.raises(ValueError, match="order3"):
        CONV.Params(kind="separable3", order3=["diagonal", "vertical", "pointwise"])


@pytest.mark.parametrize("params, shape", [
    ({"block": "fir_iir", "out": 8, "kernel": 5, "chunk": 8}, (4, 30, 9)),
    ({"block": "fir_iir", "chunk": 32}, (3, 20, 6)),
    ({"block": "conv", "kind": "separable3", "out": 6, "kernel": 5}, (4, 9, 9)),
])
def test_analytic_counts_equal_the_aten_trace(params, shape):
    # the op records and a meta-device trace of the built module agree (inference form),
    # element-wise work of the chunk carry included
    from archlab.analysis import analyze

    design = archlab.load({"input": list(shape), "layers": [params]})
    analytic = analyze(design, memory=False)
    traced = analyze(design, memory=False, method="trace")
    for key in ("params", "multiply_adds", "elementwise"):
        assert analytic.totals[key] == traced.totals[key], key
