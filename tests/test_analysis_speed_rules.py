"""The traced analysis's speed mechanisms give exactly what PyTorch's own kernels give.

* Checked shape rules (analysis/meta_kernels.py) against PyTorch's meta kernels, call by call,
  and a rule that would be wrong (a comparison returns bool) is refused by its check.
* Memos and rules change nothing: a whole analysis with them equals one with every rule and memo
  turned off (PyTorch's kernels for every call), on a model of many repeated identical blocks,
  against FlopCounterMode and what autograd saves in a real CPU run.
* Nothing depends on what ran before in the process: two models analysed in either order give
  the same results.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from archlab.analysis import analyze, meta_kernels
from oracles import autograd_saved_bytes, flop_counter_macs

aten = torch.ops.aten


def _spec(out):
    if isinstance(out, torch.Tensor):
        return tuple(out.shape), out.stride(), out.dtype
    return [None if t is None else _spec(t) for t in out]


def _meta(*shape, fmt=None, dtype=torch.float32):
    t = torch.empty(shape, device="meta", dtype=dtype)
    return t.contiguous(memory_format=fmt) if fmt is not None else t


def _permuted(n, c, h, w):
    """(n, h, w, c) view of a contiguous (n, c, h, w) tensor: timm's channels-last layer norm."""
    return _meta(n, c, h, w).permute(0, 2, 3, 1)


CALLS = {
    "hardswish": (aten.hardswish.default, lambda: (_meta(2, 8, 5, 5),)),
    "gelu tanh": (aten.gelu.default, lambda: (_meta(3, 7, 16),), {"approximate": "tanh"}),
    "add with alpha": (aten.add.Tensor, lambda: (_meta(4, 6), _meta(4, 6)), {"alpha": 2}),
    "squeeze-excite mul": (aten.mul.Tensor, lambda: (_meta(2, 16, 7, 7), _meta(2, 16, 1, 1))),
    "bias add": (aten.add.Tensor, lambda: (_meta(5, 9, 12), _meta(12))),
    "mutual broadcast": (aten.div.Tensor, lambda: (_meta(1, 32, 32, 1), _meta(32))),
    "outer broadcast": (aten.mul.Tensor, lambda: (_meta(4, 1), _meta(1, 5))),
    "scalar tensor": (aten.mul.Tensor, lambda: (_meta(3, 4), _meta())),
    "channels last": (aten.add.Tensor, lambda: (_meta(2, 8, 5, 5, fmt=torch.channels_last),) * 2),
    "permuted": (aten.sigmoid.default, lambda: (_permuted(2, 8, 5, 6),)),
    "slices at batch 1": (aten.add.Tensor, lambda: (_meta(1, 12, 5, 5)[:, :4], _meta(1, 8, 5, 5)[:, 4:])),
    "threshold backward": (aten.threshold_backward.default, lambda: (_meta(2, 8, 4), _meta(2, 8, 4), 0.0)),
    "hardswish backward": (aten.hardswish_backward.default, lambda: (_meta(2, 8, 4), _meta(2, 8, 4))),
    "half": (aten.silu.default, lambda: (_meta(2, 8, 4, dtype=torch.float16),)),
    "comparison": (aten.gt.Scalar, lambda: (_meta(3, 5), 0.5)),
    "integer true division": (aten.div.Tensor, lambda: (_meta(3, 5, dtype=torch.int64),) * 2),
    "mean backward": (aten.div.Scalar, lambda: (_meta(2, 16, 1, 1).expand(2, 16, 7, 7), 49)),
    "expanded row": (aten.mul.Tensor, lambda: (_meta(5).expand(4, 5), 2.0)),
    "expanded column": (aten.neg.default, lambda: (_meta(4, 1).expand(4, 5),)),
    "cat": (aten.cat.default, lambda: ([_meta(1, 4, 6, 6), _meta(1, 12, 6, 6)], 1)),
    "cat last axis": (aten.cat.default, lambda: ([_meta(3, 5), _meta(3, 2), _meta(3, 1)], -1)),
}


def _rule_for(func):
    return meta_kernels.CHECKED_RULES.get(func) or meta_kernels._pointwise_rule


@pytest.mark.parametrize("name", CALLS)
def test_checked_rules_predict_what_pytorch_meta_kernels_return(name):
    func, make, *rest = CALLS[name]
    kwargs = rest[0] if rest else {}
    args = make()
    found = _rule_for(func)(*args, **kwargs)
    assert found is not None, f"the rule should apply to {name}"
    theirs = func(*args, **kwargs)
    if len(found) == 3:  # dtype from the one-element CPU probe, layout from the rule
        ours = found[1](found[2](func))
    else:
        ours = found[1]()
    assert _spec(ours) == _spec(theirs)


def test_a_rule_that_disagrees_is_refused_and_pytorch_decides():
    """A rule that predicted the wrong layout (here for a layer norm) is refused by its first call's check
    against PyTorch's kernel: every later call of that signature takes the kernel."""
    meta_kernels.clear_memos()
    x, w = _meta(2, 9, 16), _meta(16)

    def wrong(*args, **kwargs):
        return ("a signature",), lambda: tuple(torch.empty(3, 3, device="meta") for _ in range(3))

    func = aten.native_layer_norm.default
    first = meta_kernels._checked(func, wrong, (x, [16], w, w, 1e-5), {})
    assert _spec(first) == _spec(func(x, [16], w, w, 1e-5))  # the kernel's own result
    assert meta_kernels._checked(func, wrong, (_meta(5, 7, 16), [16], w, w, 1e-5), {}) is None
    assert list(meta_kernels.RULES_CHECKED.values()) == [False]


def test_element_wise_dtype_comes_from_pytorch():
    """A comparison keeps its input's shape and returns bool; integer true division returns float:
    the rule takes the dtype from PyTorch's CPU kernel."""
    meta_kernels.clear_memos()
    assert meta_kernels.run_meta(aten.gt.Scalar, (_meta(7, 2), 0.5), {}).dtype == torch.bool
    ints = _meta(3, 4, dtype=torch.int64)
    assert meta_kernels.run_meta(aten.div.Tensor, (ints, ints), {}).dtype == torch.float32


def test_ambiguous_layouts_are_left_to_pytorch():
    """A 1x1 map is both contiguous and channels last: PyTorch's layout choice needs more than
    sizes, so no rule predicts it."""
    x = _meta(2, 16, 1, 1)
    assert meta_kernels._pointwise_rule(x, x) is None
    assert meta_kernels._cat_rule([x, x], 1) is None


class Block(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(c)
        self.act = nn.Hardswish(inplace=True)
        self.se = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, c, 1), nn.Hardsigmoid())
        self.norm = nn.LayerNorm(c)

    def forward(self, x):
        y = self.act(self.bn(self.conv(x)))
        y = y * self.se(y)
        y = self.norm(y.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return torch.cat([x + y, y.sigmoid()], 1)[:, : x.shape[1]]


class Repeated(nn.Module):
    """Many identical blocks: the memos replay most calls."""

    def __init__(self, c: int = 8, depth: int = 12) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.blocks = nn.Sequential(*[Block(c) for _ in range(depth)])
        self.head = nn.Linear(c, 5)

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)).mean((2, 3)))


def _result(a) -> dict:
    ops = [(op.kind, op.path, op.inputs, op.output, op.params, op.multiply_adds, op.elementwise)
           for op in a.ops]
    return {"totals": a.totals, "ops": ops, "memory": a.memory.to_dict() if a.memory else None,
            "notes": a.notes}


def _without_rules_or_memos(monkeypatch) -> None:
    """Every call takes PyTorch's own kernel: the oracle the speed-ups must equal."""
    monkeypatch.setattr(meta_kernels, "CHECKED_RULES", {})
    monkeypatch.setattr(meta_kernels, "SHAPE_RULES", {})
    monkeypatch.setattr(meta_kernels, "_out_of_place_pointwise", lambda func: False)
    monkeypatch.setattr(meta_kernels, "in_place_pointwise", lambda func: False)
    monkeypatch.setattr(meta_kernels, "_MEMO_LIMIT", 0)
    meta_kernels.clear_memos()


def test_repeated_blocks_equal_pytorch_kernels_flop_counter_and_autograd(monkeypatch):
    torch.manual_seed(0)
    model, shape = Repeated(), (3, 12, 12)
    meta_kernels.clear_memos()
    fast = _result(analyze(model, shape, batch=2))
    assert any(meta_kernels.RULES_CHECKED.values()) and meta_kernels.META_OUTPUTS  # were used
    with monkeypatch.context() as m:
        _without_rules_or_memos(m)
        slow = _result(analyze(model, shape, batch=2))
    meta_kernels.clear_memos()  # the rules again, for the tests after this one
    assert fast == slow

    assert fast["totals"]["multiply_adds"] == flop_counter_macs(model, shape)
    assert fast["totals"]["params"] == sum(p.numel() for p in model.parameters())
    assert fast["memory"]["saved_activation_bytes"] == autograd_saved_bytes(model, torch.randn(2, *shape))


def test_results_do_not_depend_on_what_ran_before():
    """Two models that share op signatures, analysed in either order from empty memos."""
    from archlab.analysis.reference import SmallConvNet

    torch.manual_seed(0)
    first, second = (Repeated(8, 3), (3, 10, 10)), (SmallConvNet(), (3, 32, 32))
    lstm = (nn.LSTM(6, 8, batch_first=True), (5, 6))
    runs = []
    for order in ([first, second, lstm], [lstm, second, first]):
        meta_kernels.clear_memos()
        runs.append({type(m).__name__: _result(analyze(m, s, batch=2)) for m, s in order})
    assert runs[0] == runs[1]


SHAPE_CALLS = {
    "conv": (aten.convolution.default, lambda: (_meta(2, 8, 9, 9), _meta(16, 8, 3, 3), None, [2, 2], [1, 1],
                                                [1, 1], False, [0, 0], 1)),
    "conv 1x1 on a 1x1 map": (aten.convolution.default, lambda: (_meta(1, 8, 1, 1), _meta(4, 8, 1, 1), _meta(4),
                                                                 [1, 1], [0, 0], [1, 1], False, [0, 0], 1)),
    "depthwise dilated": (aten.convolution.default, lambda: (_meta(1, 6, 12, 12), _meta(6, 1, 3, 3), None, [1, 1],
                                                             [2, 2], [2, 2], False, [0, 0], 6)),
    "conv1d": (aten.convolution.default, lambda: (_meta(2, 4, 17), _meta(6, 4, 5), None, [3], [0], [1], False,
                                                  [0], 1)),
    "conv3d": (aten.convolution.default, lambda: (_meta(1, 2, 5, 6, 7), _meta(3, 2, 3, 3, 3), None, [1, 1, 1],
                                                  [1, 1, 1], [1, 1, 1], False, [0, 0, 0], 1)),
    "transposed": (aten.convolution.default, lambda: (_meta(1, 8, 5, 5), _meta(8, 2, 4, 4), None, [2, 2], [1, 1],
                                                      [1, 1], True, [1, 1], 2)),
    "conv backward": (aten.convolution_backward.default,
                      lambda: (_meta(2, 16, 5, 5), _meta(2, 8, 9, 9), _meta(16, 8, 3, 3), [16], [2, 2], [1, 1],
                               [1, 1], False, [0, 0], 1, [True, True, True])),
    "conv backward no input grad": (aten.convolution_backward.default,
                                    lambda: (_meta(1, 4, 1, 1), _meta(1, 8, 1, 1), _meta(4, 8, 1, 1), None,
                                             [1, 1], [0, 0], [1, 1], False, [0, 0], 1, [False, True, False])),
    "max pool": (aten.max_pool2d_with_indices.default, lambda: (_meta(1, 4, 112, 112), [3, 3], [2, 2], [1, 1])),
    "max pool ceil": (aten.max_pool2d_with_indices.default,
                      lambda: (_meta(2, 3, 13, 10), [3], [2], [0], [1], True)),
    "max pool backward": (aten.max_pool2d_with_indices_backward.default,
                          lambda: (_meta(1, 4, 56, 56), _meta(1, 4, 112, 112), [3, 3], [2, 2], [1, 1], [1, 1],
                                   False, _meta(1, 4, 56, 56, dtype=torch.int64))),
    "sum of an expanded gradient": (aten.sum.dim_IntList, lambda: (_meta().expand(1, 1000), [0], True)),
    "sum of a permuted tensor": (aten.sum.dim_IntList, lambda: (_permuted(2, 5, 3, 4), [1, 2])),
    "sum all": (aten.sum.default, lambda: (_meta(3, 4),)),
    "ones like": (aten.ones_like.default, lambda: (_meta(),)),
    "zeros like": (aten.zeros_like.default, lambda: (_meta(2, 3),)),
    "mm of a transposed gradient": (aten.mm.default, lambda: (_meta(5, 10).t(), _meta(5, 7))),
    "layer norm": (aten.native_layer_norm.default, lambda: (_meta(2, 9, 16), [16], _meta(16), _meta(16), 1e-5)),
    "layer norm permuted": (aten.native_layer_norm.default,
                            lambda: (_permuted(1, 24, 6, 6), [24], _meta(24), _meta(24), 1e-6)),
    "layer norm no affine": (aten.native_layer_norm.default, lambda: (_meta(4, 3, 10), [3, 10], None, None, 1e-5)),
    "layer norm backward": (aten.native_layer_norm_backward.default,
                            lambda: (_meta(2, 6, 6, 24), _permuted(2, 24, 6, 6), [24], _meta(2, 6, 6, 1),
                                     _meta(2, 6, 6, 1), _meta(24), _meta(24), [True, True, True])),
    "layer norm on a 1x1 map": (aten.native_layer_norm.default,
                                lambda: (_meta(1, 1, 1, 168), [168], _meta(168), _meta(168), 1e-6)),
    "layer norm backward of a 1x1 map": (aten.native_layer_norm_backward.default,
                                         lambda: (_meta(1, 1, 1, 168), _meta(1, 1, 1, 168), [168],
                                                  _meta(1, 1, 1, 1), _meta(1, 1, 1, 1), _meta(168),
                                                  None, [True, True, False])),
    "softmax backward": (aten._softmax_backward_data.default,
                         lambda: (_meta(1, 4, 9, 9), _meta(1, 4, 9, 9), -1, torch.float32)),
    "softmax backward permuted": (aten._softmax_backward_data.default,
                                  lambda: (_meta(2, 3, 5).permute(0, 2, 1), _meta(2, 3, 5).permute(0, 2, 1), 1,
                                           torch.float32)),
    "stack": (aten.stack.default, lambda: ([_meta(3, 2)] * 3, 2)),
    "vector norm of a permuted tensor": (aten.linalg_vector_norm.default,
                                         lambda: (_meta(1, 4, 12, 16).permute(0, 1, 3, 2), 2.0, [-1], True)),
    "vector norm of all": (aten.linalg_vector_norm.default, lambda: (_meta(7), 2.0)),
    "bmm": (aten.bmm.default, lambda: (_meta(3, 4, 5), _meta(3, 5, 2).transpose(1, 2).contiguous().transpose(1, 2))),
}


@pytest.mark.parametrize("name", SHAPE_CALLS)
def test_shape_rules_equal_pytorch_meta_kernels(name):
    """Rules that run without a check (so that no Python meta kernel runs in the first analysis of
    a plain CNN: its first call imports sympy and torch._dynamo, seconds), against PyTorch."""
    func, make = SHAPE_CALLS[name]
    args = make()
    ours = meta_kernels.SHAPE_RULES[func](*args)
    assert ours is not None, f"the rule should apply to {name}"
    assert _spec(ours) == _spec(func(*args))


def test_rules_leave_channels_last_to_pytorch():
    x = _meta(1, 8, 5, 5, fmt=torch.channels_last)
    w = _meta(4, 8, 3, 3)
    assert meta_kernels.SHAPE_RULES[aten.convolution.default](x, w, None, [1, 1], [1, 1], [1, 1], False,
                                                               [0, 0], 1) is None
    assert meta_kernels.SHAPE_RULES[aten.max_pool2d_with_indices.default](x, [2, 2]) is None


class EarlyPositions(nn.Module):
    """A positional encoding made early for every sample, one made once per batch and repeated
    (both weights-only at batch 1), then ordinary layers: the batch-2 trace that tells the two
    apart may stop after the encodings."""

    def __init__(self) -> None:
        super().__init__()
        self.per_sample = nn.Conv2d(2, 6, 1)
        self.once = nn.Conv2d(2, 6, 1)
        self.body = nn.Sequential(*[nn.Conv2d(6, 6, 3, padding=1) for _ in range(4)])

    def forward(self, x):
        b, _, h, w = x.shape
        grid = torch.stack(torch.meshgrid(torch.arange(h, dtype=torch.float32),
                                          torch.arange(w, dtype=torch.float32), indexing="ij"))
        x = x + self.per_sample(grid.expand(b, 2, h, w).to(x.device))
        x = x + self.once(grid[None].to(x.device)).repeat(b, 1, 1, 1)
        return self.body(x)


def test_the_batch_two_trace_stops_early_with_the_same_result(monkeypatch):
    import sys

    analyze_module = sys.modules["archlab.analysis.analyze"]
    net, shape = EarlyPositions(), (6, 8, 8)
    calls = []
    full_trace = analyze_module.trace_module

    def spy(*args, **kwargs):
        t = full_trace(*args, **kwargs)
        calls.append((kwargs.get("wanted"), len(t.ops)))
        return t

    monkeypatch.setattr(analyze_module, "trace_module", spy)
    early = _result(analyze(net, shape, memory=False))
    (_, counted), (wanted, stopped) = calls
    assert wanted and stopped < counted  # it did stop early
    monkeypatch.setattr(analyze_module, "trace_module",
                        lambda *a, **k: full_trace(*a, **{**k, "wanted": None}))
    assert _result(analyze(net, shape, memory=False)) == early
    conv = 2 * 6 * 64
    assert early["totals"]["weights_only_multiply_adds"] == conv  # the one made once per batch
    state = {k: torch.empty_like(v, device="meta") for k, v in net.named_parameters()}
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        torch.func.functional_call(net, state, (torch.empty(1, *shape, device="meta"),))
    assert early["totals"]["multiply_adds"] + conv == counter.get_total_flops() // 2
