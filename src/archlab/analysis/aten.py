"""aten operator -> :class:`archlab.ops.Op`: how a traced call becomes a per-op record.

Every rule builds its record with the same constructors the blocks use (``conv_op``,
``linear_op``, ``norm_op``, ...), so a design's analytic records and a traced module's records
agree exactly on parameters, multiply-adds and element-wise operations.

Shapes are per sample: the tracer counts at batch 1 and strips the leading batch dimension of
activations (a flattened ``(L, F)`` linear input keeps ``L``, as the analytic formulas do).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..ops import (
    Op,
    Shape,
    act_op,
    conv_op,
    eltwise_op,
    linear_op,
    matmul_op,
    move_op,
    norm_op,
    numel,
    pool_op,
    reduce_op,
    softmax_op,
)


@dataclass
class Call:
    """One traced aten call, as the rules see it."""

    name: str                       # overload packet name without a trailing '_' ('relu', 'add')
    args: tuple
    kwargs: dict
    out: torch.Tensor               # first tensor output
    tensors: list[torch.Tensor]     # tensor inputs, in argument order
    path: str                       # innermost module path
    module: nn.Module | None        # innermost module
    shape: Callable[[torch.Tensor], Shape]   # per-sample shape of an activation
    is_weight: Callable[[torch.Tensor], bool]  # derived from parameters/buffers only

    def arg(self, i: int, name: str, default: Any = None) -> Any:
        if len(self.args) > i:
            return self.args[i]
        return self.kwargs.get(name, default)


def _conv(c: Call) -> Op:
    """Channels come from the weight, never from the activation's leading axis: the batch axis
    may be folded into it (patches, heads, windows: ``(B*N, C, H, W)``) or a leading axis may
    not be a batch at all (a positional encoding made inside the forward). Leading axes beyond
    ``(C, *spatial)`` multiply the work, as PyTorch's own counter does."""
    x, w, b = c.args[0], c.args[1], c.arg(2, "bias")
    transposed, groups = bool(c.arg(6, "transposed", False)), int(c.arg(8, "groups", 1))
    spatial = w.dim() - 2
    if transposed:
        cin, cout = int(w.shape[0]), int(w.shape[1]) * groups
    else:
        cout, cin = int(w.shape[0]), int(w.shape[1]) * groups
    inp, out = c.shape(x), c.shape(c.out)
    op = conv_op(c.path, (cin, *inp[len(inp) - spatial:]), (cout, *out[len(out) - spatial:]),
                 tuple(w.shape[2:]), groups=groups, bias=b is not None, transposed=transposed)
    fold = numel(out[:len(out) - spatial - 1])
    if fold == 1 and len(inp) == spatial + 1:
        return op
    return Op(op.kind, op.path, (inp,), out, params=op.params,
              multiply_adds=op.multiply_adds * fold, elementwise=op.elementwise * fold,
              weights_read=op.weights_read)


def _addmm(c: Call) -> Op:
    bias, a, b = c.args[0], c.args[1], c.args[2]
    if c.is_weight(b) and not c.is_weight(a):
        return linear_op(c.path, c.shape(a), c.shape(c.out), bias=True)
    op = matmul_op(c.path, c.shape(a), c.shape(b), c.shape(c.out))
    return Op(op.kind, op.path, op.inputs + (c.shape(bias),), op.output,
              multiply_adds=op.multiply_adds, elementwise=numel(op.output))


def _mm(c: Call) -> Op:
    a, b = c.args[0], c.args[1]
    if c.is_weight(b) and not c.is_weight(a):
        return linear_op(c.path, c.shape(a), c.shape(c.out), bias=False)
    return matmul_op(c.path, c.shape(a), c.shape(b), c.shape(c.out))


def _bmm(c: Call) -> Op:
    return matmul_op(c.path, c.shape(c.args[0]), c.shape(c.args[1]), c.shape(c.out))


def _baddbmm(c: Call) -> Op:
    op = matmul_op(c.path, c.shape(c.args[1]), c.shape(c.args[2]), c.shape(c.out))
    return Op(op.kind, op.path, op.inputs, op.output, multiply_adds=op.multiply_adds,
              elementwise=numel(op.output))


def lstm_layer(c: Call) -> Op:
    """One layer and direction of an LSTM (oneDNN's fused layer on the CPU): per row (step x
    sequence) the input product ``4H x I``, the recurrent product ``4H x H``, and the element-wise
    work the design block counts: the two bias additions and 13 per hidden unit in the cell
    (:data:`archlab.blocks.sequence.CELL_ELEMENTWISE`)."""
    from ..blocks.sequence import CELL_ELEMENTWISE  # here: the blocks package is a slow import

    x, w_ih, w_hh, hidden, has_biases = c.args[0], c.args[1], c.args[2], int(c.args[10]), bool(c.args[12])
    inp = c.shape(x)
    rows = numel(inp) // max(1, inp[-1]) if inp else 1
    gates = int(w_ih.shape[0])
    multiply_adds = rows * gates * (int(w_ih.shape[1]) + int(w_hh.shape[1]))
    elementwise = rows * (CELL_ELEMENTWISE["lstm"] * hidden + (2 * gates if has_biases else 0))
    return Op("lstm", c.path, (inp,), c.shape(c.out), multiply_adds=multiply_adds,
              elementwise=elementwise)


def _weights(*tensors: Any) -> int:
    return sum(t.numel() for t in tensors if isinstance(t, torch.Tensor))


def _batch_norm(c: Call) -> Op:
    x, w, b = c.args[0], c.arg(1, "weight"), c.arg(2, "bias")
    kind = "batch_norm"
    if isinstance(c.module, nn.modules.instancenorm._InstanceNorm):
        # F.instance_norm runs batch norm on a (1, N*C, ...) view; name it after the module
        kind = "instance_norm"
    return norm_op(c.path, kind, c.shape(x), _weights(w, b))


def _group_norm(c: Call) -> Op:
    return norm_op(c.path, "group_norm", c.shape(c.args[0]), _weights(c.arg(1, "weight"), c.arg(2, "bias")))


def _layer_norm(c: Call) -> Op:
    return norm_op(c.path, "layer_norm", c.shape(c.args[0]), _weights(c.arg(2, "weight"), c.arg(3, "bias")))


def _activation(kind: str) -> Callable[[Call], Op]:
    return lambda c: act_op(c.path, kind, c.shape(c.out))


def _hardtanh(c: Call) -> Op:
    low, high = c.arg(1, "min_val", -1.0), c.arg(2, "max_val", 1.0)
    # nn.ReLU6 is hardtanh(0, 6) at the aten level; call it by the name designs use
    return act_op(c.path, "relu6" if (low, high) == (0.0, 6.0) else "hardtanh", c.shape(c.out))


def _prelu(c: Call) -> Op:
    return act_op(c.path, "prelu", c.shape(c.out), params=c.args[1].numel())


def _pool(kind: str, dims: int) -> Callable[[Call], Op]:
    def rule(c: Call) -> Op:
        kernel = c.arg(1, "kernel_size")
        kernel = [kernel] if isinstance(kernel, int) else list(kernel)
        window = math.prod(kernel) if len(kernel) == dims else kernel[0] ** dims
        return pool_op(c.path, kind, c.shape(c.args[0]), c.shape(c.out), window)

    return rule


def _adaptive(kind: str) -> Callable[[Call], Op]:
    def rule(c: Call) -> Op:
        inp, out = c.shape(c.args[0]), c.shape(c.out)
        window = max(1, numel(inp[1:]) // max(1, numel(out[1:])))
        return pool_op(c.path, kind, inp, out, window)

    return rule


_ADAPTIVE_MEAN = {nn.AdaptiveAvgPool1d: "adaptive_avg_pool1d", nn.AdaptiveAvgPool2d: "adaptive_avg_pool2d",
                  nn.AdaptiveAvgPool3d: "adaptive_avg_pool3d"}


def _mean(c: Call) -> Op:
    inp, out = c.shape(c.args[0]), c.shape(c.out)
    kind = _ADAPTIVE_MEAN.get(type(c.module))
    if kind is not None:
        # adaptive_avg_pool(x, 1) lowers to a mean over the spatial axes; name it as designs do
        return pool_op(c.path, kind, inp, out, max(1, numel(inp) // max(1, numel(out))))
    return reduce_op(c.path, "mean", inp, out)


def _reduce(kind: str) -> Callable[[Call], Op]:
    return lambda c: reduce_op(c.path, kind, c.shape(c.args[0]), c.shape(c.out))


def _move(kind: str) -> Callable[[Call], Op]:
    return lambda c: move_op(c.path, kind, tuple(c.shape(t) for t in c.tensors), c.shape(c.out))


def _cat(c: Call) -> Op:
    tensors = [t for t in c.args[0] if isinstance(t, torch.Tensor)]
    return move_op(c.path, "cat", tuple(c.shape(t) for t in tensors), c.shape(c.out))


def elementwise(c: Call) -> Op:
    """Fallback for every other op: one operation per output element per input beyond the first
    (add/mul/where...), one per output element for unary ops. Never zero, never dropped."""
    return eltwise_op(c.path, c.name, tuple(c.shape(t) for t in c.tensors) or ((),), c.shape(c.out))


RULES: dict[str, Callable[[Call], Op]] = {
    "convolution": _conv,
    "_convolution": _conv,
    "addmm": _addmm,
    "mm": _mm,
    "bmm": _bmm,
    "baddbmm": _baddbmm,
    "native_batch_norm": _batch_norm,
    "_native_batch_norm_legit": _batch_norm,
    "_native_batch_norm_legit_no_training": _batch_norm,
    "native_group_norm": _group_norm,
    "native_layer_norm": _layer_norm,
    "hardtanh": _hardtanh,
    "_prelu_kernel": _prelu,
    "max_pool1d_with_indices": _pool("max_pool1d", 1),
    "max_pool2d_with_indices": _pool("max_pool2d", 2),
    "max_pool3d_with_indices": _pool("max_pool3d", 3),
    "max_pool1d": _pool("max_pool1d", 1),
    "max_pool2d": _pool("max_pool2d", 2),
    "max_pool3d": _pool("max_pool3d", 3),
    "avg_pool1d": _pool("avg_pool1d", 1),
    "avg_pool2d": _pool("avg_pool2d", 2),
    "avg_pool3d": _pool("avg_pool3d", 3),
    "_adaptive_avg_pool1d": _adaptive("adaptive_avg_pool1d"),
    "_adaptive_avg_pool2d": _adaptive("adaptive_avg_pool2d"),
    "_adaptive_avg_pool3d": _adaptive("adaptive_avg_pool3d"),
    "adaptive_max_pool1d": _adaptive("adaptive_max_pool1d"),
    "adaptive_max_pool2d": _adaptive("adaptive_max_pool2d"),
    "adaptive_max_pool3d": _adaptive("adaptive_max_pool3d"),
    "mean": _mean,
    "sum": _reduce("sum"),
    "amax": _reduce("amax"),
    "amin": _reduce("amin"),
    "var": _reduce("var"),
    "std": _reduce("std"),
    "var_mean": _reduce("var_mean"),
    "logsumexp": _reduce("logsumexp"),
    "cat": _cat,
    "stack": _cat,
    "clone": _move("copy"),
    "_to_copy": _move("copy"),
    "copy": _move("copy"),
    "constant_pad_nd": _move("pad"),
    "pixel_shuffle": _move("pixel_shuffle"),
    "pixel_unshuffle": _move("pixel_unshuffle"),
    "channel_shuffle": _move("channel_shuffle"),
    "native_channel_shuffle": _move("channel_shuffle"),
    "repeat": _move("repeat"),
    "index_select": _move("index_select"),
    "index": _move("index"),
    "gather": _move("gather"),
    "take": _move("take"),
    "flip": _move("flip"),
    "roll": _move("roll"),
    "embedding": _move("embedding"),
    "_softmax": lambda c: softmax_op(c.path, c.shape(c.out)),
    "_safe_softmax": lambda c: softmax_op(c.path, c.shape(c.out)),
    "_log_softmax": lambda c: softmax_op(c.path, c.shape(c.out), "log_softmax"),
    "native_dropout": _activation("dropout"),
    "mkldnn_rnn_layer": lstm_layer,
    "log_sigmoid_forward": _activation("logsigmoid"),
}
for _name in ("relu", "leaky_relu", "silu", "gelu", "sigmoid", "tanh", "hardswish", "hardsigmoid",
              "elu", "selu", "celu", "mish", "softplus", "rrelu_with_noise"):
    RULES[_name] = _activation(_name)

# Calls that create nothing to count: views and aliases (no data moves), fresh tensors from
# factories, and bookkeeping. Their allocations still count for memory.
SKIP = {
    "detach", "alias", "lift_fresh", "lift_fresh_copy", "_unsafe_view", "empty", "empty_like",
    "empty_strided", "zeros", "zeros_like", "ones", "ones_like", "full", "full_like", "arange",
    "scalar_tensor", "new_empty", "new_zeros", "new_ones", "new_full", "new_empty_strided",
    "fill", "zero", "resize", "set", "_local_scalar_dense", "rand", "randn", "rand_like",
    "randn_like", "bernoulli", "normal", "uniform", "_assert_async", "sym_size", "sym_stride",
    "_to_dense", "is_same_size",
    # views whose schema does not say so (no alias annotation): they move no data either
    "unsafe_split", "unsafe_split_with_sizes", "unsafe_chunk", "as_strided", "_reshape_alias",
}


_VIEWS: dict[Any, bool] = {}


def is_view(func: Any, name: str) -> bool:
    """A call that only makes a view (as_strided, split, unsafe_split, ...): no data moves, no
    work. Views of a tensor alias its storage; the schema marks most of them."""
    known = _VIEWS.get(func)
    if known is None:
        schema = getattr(func, "_schema", None)
        known = _VIEWS[func] = bool(
            name in SKIP or getattr(func, "is_view", False)
            or schema is not None and schema.returns and all(
                r.alias_info is not None and not r.alias_info.is_write for r in schema.returns))
    return known

# Pure data movement of weights (repeat/copy of a parameter) is bookkeeping, not work.
MOVE_KINDS = {"copy", "repeat", "pad", "index_select", "index", "gather", "take", "cat", "flip", "roll"}


def op_name(func: Any) -> str:
    name = func._overloadpacket.__name__ if hasattr(func, "_overloadpacket") else str(func)
    return name[:-1] if name.endswith("_") and not name.endswith("__") else name
