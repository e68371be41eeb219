"""Data flow of any ``torch.nn.Module``, recorded on the meta device, for the design review.

The analysis (issue 4) answers *how much* each op costs; the review also needs *how ops connect*:
which conv feeds which norm, where a skip connection bypasses a stack, which branches a merge
joins. This module records that graph by running the module once under a
:class:`torch.overrides.TorchFunctionMode` with meta tensors:

* every tensor-producing torch function becomes a :class:`FlowNode` with the module path of the
  innermost module running it (the same names as ``named_modules()``), its activation inputs
  (producer node indices, ``-1`` = the network input), shapes without the batch dimension, the
  op's :class:`archlab.ops.Op` record and the geometry the rules need (kernel, stride, groups...);
* views (reshape, flatten, indexing, dropout...) are kept as nodes of kind ``view`` so the data
  flow stays connected, but they carry no cost.

Parameters are swapped for meta tensors with :func:`torch.func.functional_call`, so nothing is
allocated, nothing is computed, and the module is left exactly as it was (training flags are
restored; no hooks remain). Control flow in ``forward`` is fine: this is a run, not a symbolic
trace.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ..errors import UsageError
from ..ops import (
    Op,
    Shape,
    act_op,
    attention_op,
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

NETWORK_INPUT = -1

# Normalised op kinds by family; the rules ask for families, never for raw torch names.
WEIGHT_KINDS = {"conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
                "conv_transpose3d", "linear", "matmul", "bmm", "scaled_dot_product_attention",
                "embedding"}
NORM_KINDS = {"batch_norm", "layer_norm", "group_norm", "instance_norm", "rms_norm"}
ACT_KINDS = {"relu", "relu6", "hardtanh", "leaky_relu", "prelu", "rrelu", "elu", "selu", "celu",
             "silu", "gelu", "mish", "sigmoid", "tanh", "hardswish", "hardsigmoid", "softplus",
             "softmax", "log_softmax", "logsigmoid", "glu"}
MERGE_KINDS = {"add", "sub", "mul", "div", "cat", "stack", "concat", "sum_inputs"}
POOL_KINDS = {"max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d",
              "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
              "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d", "lp_pool2d"}
VIEW_KINDS = {"view", "reshape", "flatten", "unflatten", "permute", "transpose", "contiguous",
              "squeeze", "unsqueeze", "expand", "expand_as", "getitem", "chunk", "split",
              "unbind", "dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout",
              "feature_alpha_dropout", "identity", "clone", "detach", "narrow", "select", "t",
              "movedim", "to", "type_as", "float", "half", "view_as", "reshape_as", "repeat",
              "tensor_split", "split_with_sizes", "flip", "roll"}
# torch calls that produce tensors but carry no data flow worth recording
IGNORED = {"size", "dim", "numel", "get", "__get__", "__len__", "__iter__", "__bool__", "item",
           "tolist", "__format__", "__repr__", "__hash__", "__eq__", "data_ptr", "stride",
           "is_contiguous", "element_size", "__setstate__", "requires_grad_", "register_hook",
           "_has_compatible_shallow_copy_type", "is_floating_point", "is_complex"}

_ALIASES = {"iadd": "add", "radd": "add", "isub": "sub", "rsub": "sub", "imul": "mul",
            "rmul": "mul", "truediv": "div", "itruediv": "div", "rtruediv": "div", "concatenate":
            "cat", "concat": "cat", "matmul": "matmul", "mm": "matmul", "hardtanh": "hardtanh",
            "scaled_dot_product_attention": "scaled_dot_product_attention"}


def normalise_kind(name: str) -> str:
    """'__iadd__' -> 'add', 'relu_' -> 'relu', 'conv2d' -> 'conv2d'."""
    kind = name.strip("_")
    if kind.endswith("_") and kind[:-1]:
        kind = kind[:-1]
    return _ALIASES.get(kind, kind)


@dataclass
class FlowNode:
    """One recorded op in the data flow. Shapes exclude the batch dimension.

    index:    position in execution order (a topological order).
    kind:     normalised op kind ('conv2d', 'batch_norm', 'relu', 'add', 'cat', 'view', ...).
    path:     module path of the innermost module running the op ('' = the top-level forward).
    inputs:   producer indices of the activation inputs; ``NETWORK_INPUT`` = the network input.
    output:   output shape (the first output for ops returning several tensors).
    op:       the op's cost record (``None`` for views, which cost nothing).
    attrs:    geometry for the rules: kernel, stride, padding, dilation, groups, bias,
              transposed, inplace, scale (upsampling), dims (reductions).
    """

    index: int
    kind: str
    path: str
    inputs: tuple[int, ...]
    input_shapes: tuple[Shape, ...]
    output: Shape
    op: Op | None
    attrs: dict = field(default_factory=dict)

    @property
    def family(self) -> str:
        return family_of(self.kind)


def family_of(kind: str) -> str:
    if kind in WEIGHT_KINDS:
        return "weight"
    if kind in NORM_KINDS:
        return "norm"
    if kind in ACT_KINDS:
        return "act"
    if kind in MERGE_KINDS:
        return "merge"
    if kind in POOL_KINDS:
        return "pool"
    if kind == "view":
        return "view"
    return "other"


@dataclass
class Flow:
    """The recorded data flow of one forward pass on one sample."""

    input_shape: Shape
    nodes: list[FlowNode]
    outputs: tuple[int, ...]          # producer indices of the returned tensors
    module_types: dict[str, str]      # module path -> class name (for messages)

    def consumers(self) -> list[list[int]]:
        out: list[list[int]] = [[] for _ in self.nodes]
        for node in self.nodes:
            for i in node.inputs:
                if i >= 0:
                    out[i].append(node.index)
        return out


# ------------------------------------------------------------------------------- recorder ----


class _Recorder(TorchFunctionMode):
    def __init__(self, network_input: torch.Tensor) -> None:
        super().__init__()
        self.nodes: list[FlowNode] = []
        self.producer: dict[int, int] = {id(network_input): NETWORK_INPUT}
        self.keep: list[torch.Tensor] = [network_input]  # keeps ids unique while recording
        self.module_stack: list[str] = [""]
        self.params: set[int] = set()
        self.used: set[int] = set()

    # module stack, maintained by forward hooks --------------------------------------------------
    def enter(self, path: str):
        def pre(module, args):
            self.module_stack.append(path)
        return pre

    def leave(self, module, args, output):
        if len(self.module_stack) > 1:
            self.module_stack.pop()

    # recording --------------------------------------------------------------------------------
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        kind = normalise_kind(name)
        first = args[0] if args else None
        if kind in NORM_KINDS and isinstance(first, torch.Tensor) and first.is_meta:
            # a norm keeps the shape; PyTorch's meta kernels for norms live in torch._decomp,
            # whose first import costs seconds, so the shape is all that is needed here
            out = torch.empty_like(first)
        elif (kind in ("add", "sub", "mul", "div") and isinstance(first, torch.Tensor)
              and first.is_meta and not kwargs.get("out")):
            # likewise for element-wise arithmetic (its meta kernel imports torch._dynamo)
            out = _meta_arith(name, first, args[1] if len(args) > 1 else kwargs.get("other"))
        elif kind == "linear" and isinstance(first, torch.Tensor) and first.is_meta:
            weight = _arg(args, kwargs, 1, "weight")
            out = first.new_empty((*first.shape[:-1], weight.shape[0]))
        elif kind.startswith("adaptive_") and isinstance(first, torch.Tensor) and first.is_meta:
            size = _arg(args, kwargs, 1, "output_size")
            dims = int(kind[-2])
            size = _tuple(size, dims) if not isinstance(size, (list, tuple)) or None not in size \
                else tuple(s if s is not None else first.shape[-dims + a] for a, s in enumerate(size))
            out = first.new_empty((*first.shape[:-dims], *size))
            if "max" in kind and _arg(args, kwargs, 2, "return_indices", False):
                out = (out, out.new_empty(out.shape, dtype=torch.long))
        else:
            out = func(*args, **kwargs)
        if kind in IGNORED:
            return out
        outs = [t for t in _flat(out) if isinstance(t, torch.Tensor)]
        if not outs:
            return out
        tensors = [t for t in _flat(list(args) + list(kwargs.values())) if isinstance(t, torch.Tensor)]
        acts = [t for t in tensors if id(t) in self.producer and id(t) not in self.params]
        inputs = tuple(self.producer[id(t)] for t in acts)
        original = kind
        if kind in VIEW_KINDS or (kind not in WEIGHT_KINDS and kind not in NORM_KINDS
                                  and family_of(kind) == "other" and _is_pure_move(kind)):
            kind = "view"
        # parameters, not buffers: BatchNorm's running statistics are not parameters
        weights = [t for t in tensors if id(t) in self.params and isinstance(t, nn.Parameter)]
        # a weight used again is a recurrence (an unrolled RNN step) or a shared layer, not
        # another layer of depth
        reused = bool(weights) and all(id(w) in self.used for w in weights)
        self.used.update(id(w) for w in weights)
        index = len(self.nodes)
        node = FlowNode(
            index=index,
            kind=kind,
            path=self.module_stack[-1],
            inputs=inputs,
            input_shapes=tuple(_shape(t) for t in acts),
            output=_shape(outs[0]),
            op=None,
            attrs={"op": original, "reused": reused},
        )
        # in place when the output is the very tensor that came in (ReLU(inplace=True), x += y)
        try:
            _describe(node, name, args, kwargs, weights,
                      inplace=bool(acts) and outs[0] is acts[0])
        except (TypeError, ValueError, IndexError, AttributeError):
            # an op called with a signature the formulas do not know: keep it in the data flow
            # with a generic record rather than failing the whole review
            node.op = Op(kind, node.path, node.input_shapes or ((),), node.output,
                         params=sum(w.numel() for w in weights),
                         elementwise=numel(node.output))
        if reused and node.op is not None and node.op.params:
            # shared weights are read again but are parameters only once (PyTorch's count)
            node.op = replace(node.op, params=0)
        self.nodes.append(node)
        for t in outs:
            self.producer[id(t)] = index
            self.keep.append(t)
        return out


def _meta_arith(name: str, first: torch.Tensor, other) -> torch.Tensor:
    """Output of an element-wise add/sub/mul/div on meta tensors: the broadcast shape, the
    promoted dtype; an in-place op returns its own input, as PyTorch does."""
    if name.startswith("__i") or (name.endswith("_") and not name.endswith("__")):
        return first
    if isinstance(other, torch.Tensor):
        shape = torch.broadcast_shapes(first.shape, other.shape)
        dtype = torch.promote_types(first.dtype, other.dtype)
    else:
        shape, dtype = first.shape, first.dtype
    return torch.empty(shape, dtype=dtype, device="meta")


def _is_pure_move(kind: str) -> bool:
    return kind in {"pad", "pixel_shuffle", "pixel_unshuffle", "channel_shuffle", "zeros_like",
                    "ones_like", "new_zeros", "new_ones", "empty_like"}


def _flat(obj):
    if isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _flat(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _flat(item)
    else:
        yield obj


def _shape(t: torch.Tensor) -> Shape:
    return tuple(int(s) for s in t.shape[1:]) if t.dim() > 0 else ()


def _arg(args, kwargs, pos: int, name: str, default=None):
    if name in kwargs:
        return kwargs[name]
    return args[pos] if len(args) > pos else default


def _tuple(value, dims: int) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * dims
    if isinstance(value, str):  # 'same'/'valid' padding: geometry is in the shapes already
        return (0,) * dims
    value = tuple(int(v) for v in value)
    return value if len(value) == dims else (value[0],) * dims


def _describe(node: FlowNode, name: str, args, kwargs, weights: list[torch.Tensor],
              inplace: bool = False) -> None:
    """Fill ``node.op`` (the cost record, with archlab.ops formulas) and ``node.attrs``."""
    kind, path, out = node.kind, node.path, node.output
    inp = node.input_shapes[0] if node.input_shapes else out
    params = sum(w.numel() for w in weights)
    if kind.startswith("conv"):
        weight = _arg(args, kwargs, 1, "weight")
        bias = _arg(args, kwargs, 2, "bias")
        transposed = kind.startswith("conv_transpose")
        dims = weight.dim() - 2
        kernel = tuple(int(k) for k in weight.shape[2:])
        # conv{n}d(input, weight, bias, stride, padding, dilation, groups);
        # conv_transpose{n}d(input, weight, bias, stride, padding, output_padding, groups, dilation)
        groups = int(_arg(args, kwargs, 6, "groups", 1) or 1)
        stride = _tuple(_arg(args, kwargs, 3, "stride", 1), dims)
        padding = _tuple(_arg(args, kwargs, 4, "padding", 0), dims)
        dilation = _tuple(_arg(args, kwargs, 7 if transposed else 5, "dilation", 1), dims)
        node.attrs.update(kernel=kernel, stride=stride, padding=padding, dilation=dilation,
                          groups=groups, bias=bias is not None, transposed=transposed)
        node.op = conv_op(path, inp, out, kernel, groups=groups, bias=bias is not None,
                          transposed=transposed)
    elif kind == "linear":
        bias = _arg(args, kwargs, 2, "bias")
        node.attrs.update(bias=bias is not None)
        node.op = linear_op(path, inp, out, bias=bias is not None)
    elif kind in NORM_KINDS:
        node.op = norm_op(path, kind, inp, params)
    elif kind in ("softmax", "log_softmax"):
        node.op = softmax_op(path, out, kind=kind)
    elif kind in ACT_KINDS:
        node.attrs.update(inplace=inplace)
        node.op = act_op(path, kind, out, params=params)
    elif kind in {"cat", "stack"}:
        node.op = move_op(path, kind, node.input_shapes, out)
    elif kind in MERGE_KINDS:
        node.attrs.update(inplace=inplace)
        shapes = node.input_shapes if len(node.input_shapes) > 1 else (inp,)
        node.op = eltwise_op(path, kind, shapes, out, params=params)
    elif kind in POOL_KINDS:
        dims = len(out) - 1
        if kind.startswith("adaptive"):
            window = max(1, numel(inp[1:]) // max(1, numel(out[1:])))
            node.attrs.update(kernel=tuple(max(1, i // o) for i, o in zip(inp[1:], out[1:], strict=False)),
                              stride=tuple(max(1, i // o) for i, o in zip(inp[1:], out[1:], strict=False)),
                              global_=all(o == 1 for o in out[1:]))
        else:
            kernel = _tuple(_arg(args, kwargs, 1, "kernel_size", 1), dims)
            stride_arg = _arg(args, kwargs, 2, "stride", None)
            stride = _tuple(stride_arg, dims) if stride_arg not in (None, [], ()) else kernel
            window = math.prod(kernel)
            node.attrs.update(kernel=kernel, stride=stride,
                              dilation=_tuple(_arg(args, kwargs, 4, "dilation", 1), dims)
                              if kind.startswith("max") else (1,) * dims)
        node.op = pool_op(path, kind, inp, out, window)
    elif kind == "view":
        node.op = None
    elif kind in {"matmul", "bmm"} and len(node.input_shapes) == 2:
        node.op = matmul_op(path, node.input_shapes[0], node.input_shapes[1], out, kind=kind)
    elif kind == "scaled_dot_product_attention" and len(node.input_shapes) >= 3:
        q, k, v = node.input_shapes[:3]
        node.op = attention_op(path, q, k, v, out)
    elif kind in {"mean", "sum", "amax", "max", "amin", "min", "std", "var", "norm", "logsumexp"}:
        node.attrs.update(dims=_arg(args, kwargs, 1, "dim", None))
        node.op = reduce_op(path, kind, inp, out)
    elif kind in {"interpolate", "upsample", "upsample_nearest", "upsample_bilinear"}:
        scale = tuple(o / i for o, i in zip(out[1:], inp[1:], strict=False)) if len(out) == len(inp) else ()
        node.attrs.update(scale=scale)
        node.op = Op("interpolate", path, (inp,), out, elementwise=numel(out))
    else:
        shapes = node.input_shapes or ((),)
        node.op = Op(kind, path, shapes, out, params=params, elementwise=numel(out),
                     weights_read=params)


# ---------------------------------------------------------------------------------- entry ----


def trace_flow(module: nn.Module, input_shape: Shape) -> Flow:
    """Record the data flow of ``module`` on one meta sample of ``input_shape`` (no batch dim).

    (C, H, W) -> Flow with one node per op. The module is left unchanged.
    """
    from torch.func import functional_call

    input_shape = tuple(int(s) for s in input_shape)
    modes = {name: m.training for name, m in module.named_modules()}
    state = {name: _meta_like(t) for name, t in
             list(module.named_parameters(remove_duplicate=False))
             + list(module.named_buffers(remove_duplicate=False))}
    x = torch.zeros((1, *input_shape), device="meta")
    recorder = _Recorder(x)
    recorder.params = {id(t) for t in state.values()}
    handles = []
    try:
        for name, sub in module.named_modules():
            if name:
                handles.append(sub.register_forward_pre_hook(recorder.enter(name)))
                handles.append(sub.register_forward_hook(recorder.leave))
        module.eval()  # batch 1: BatchNorm must not ask for batch statistics
        with recorder:
            result = functional_call(module, state, (x,), strict=False, tie_weights=True)
    except (RuntimeError, NotImplementedError, TypeError, ValueError) as exc:
        raise UsageError(
            f"could not run the module on a meta tensor of shape {(1, *input_shape)}: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
            fix="check --input (channels x height x width, no batch dimension) against the "
                "module's first layer",
        ) from None
    finally:
        for h in handles:
            h.remove()
        for name, sub in module.named_modules():
            sub.training = modes.get(name, sub.training)
    outputs = tuple(recorder.producer[id(t)] for t in _flat(result)
                    if isinstance(t, torch.Tensor) and id(t) in recorder.producer)
    types = {name: type(m).__name__ for name, m in module.named_modules()}
    return Flow(input_shape, recorder.nodes, outputs, types)


def _meta_like(t: torch.Tensor) -> torch.Tensor:
    meta = torch.empty_like(t, device="meta")
    if isinstance(t, nn.Parameter):
        return nn.Parameter(meta, requires_grad=t.requires_grad)
    return meta
