"""Running aten calls on the meta device during a trace: memoised outputs, direct shape rules,
and constants that the module made on the CPU.

* Many of PyTorch's meta kernels are Python decompositions (batch norm and its backward take
  ~2 ms a call), and a network repeats the same op on the same shapes many times. On the meta
  device an op's outputs are determined by its inputs' metadata, so for ops that neither alias
  nor write their inputs, the output metadata is computed once per distinct call and replayed.
  Only calls whose inputs AND outputs are all meta tensors are memoised: a factory call with no
  tensor argument (``torch.arange(n)`` in a forward) makes a real CPU tensor, and replaying it
  as a meta tensor would make one analysis depend on what ran before it in the process.
* A forward may make constants on the CPU (``torch.arange(n)`` without ``device=``): they stay
  real (their values can index, be compared, be printed) until they meet a meta tensor of the
  network, where a real CPU run would have them on one device: there they become meta too.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils._python_dispatch import _disable_current_modes

# (id of func, input metadata) -> (func, output metadata); see the module docstring for what is kept
META_OUTPUTS: dict[tuple, Any] = {}
_FRESH_OUTPUTS: dict[Any, bool] = {}
_SIMPLE = (int, float, bool, str, type(None), torch.dtype, torch.device, torch.memory_format,
           torch.layout)
_MEMO_LIMIT = 65536


def fresh_outputs(func: Any) -> bool:
    """True when ``func`` makes new tensors: no view, no in-place or aliased argument or result."""
    known = _FRESH_OUTPUTS.get(func)
    if known is None:
        schema = getattr(func, "_schema", None)
        known = bool(
            schema is not None and not getattr(func, "is_view", False)
            and all(r.alias_info is None for r in schema.returns)
            and all(a.alias_info is None for a in schema.arguments)
            and not str(func).startswith(("aten._local_scalar", "aten.item")))
        _FRESH_OUTPUTS[func] = known
    return known


def _meta_key(value: Any) -> Any:
    """A hashable key of a call's arguments: each tensor by its metadata (shape, strides, dtype,
    offset). A plain loop (this runs on every memoised call of a trace)."""
    key = []
    for v in value:
        if isinstance(v, torch.Tensor):
            if not v.is_meta:
                raise TypeError("not a meta tensor")
            key.append((v.shape, v.stride(), v.dtype, v.storage_offset()))
        elif isinstance(v, (list, tuple)):
            key.append(_meta_key(v))
        elif isinstance(v, _SIMPLE):
            if isinstance(v, torch.device) and v.type != "meta":
                raise TypeError("a factory call on a real device")
            key.append(v)
        else:
            raise TypeError(f"uncacheable argument {type(v).__name__}")
    return tuple(key)


def _out_spec(out: Any) -> Any:
    if out is None:
        return None
    if isinstance(out, torch.Tensor):
        if out.device.type != "meta":
            raise TypeError("a real tensor is not replayed")
        return (tuple(out.shape), out.stride(), out.dtype)
    if isinstance(out, (list, tuple)):
        return [_out_spec(o) for o in out]
    raise TypeError("not a tensor output")


def _replay(spec: Any) -> Any:
    if spec is None:
        return None
    if isinstance(spec, tuple):
        shape, stride, dtype = spec
        return torch.empty_strided(shape, stride, dtype=dtype, device="meta")
    return tuple(_replay(s) for s in spec)


def _stats_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype


def _batch_norm_meta(x, weight, bias, running_mean, running_var, training, momentum, eps):
    """Output metadata of aten.native_batch_norm (PyTorch's own meta kernel is a Python
    decomposition costing ~2 ms a call): the output like the input, mean and inverse std (C,).
    tests/test_analysis_memory.py holds it equal to PyTorch's kernel."""
    stats = torch.empty((x.shape[1],), dtype=_stats_dtype(x), device="meta")
    return (torch.empty_strided(x.shape, x.stride(), dtype=x.dtype, device="meta"), stats,
            torch.empty((x.shape[1],), dtype=stats.dtype, device="meta"))


def _batch_norm_backward_meta(grad, x, weight, running_mean, running_var, save_mean, save_invstd,
                              train, eps, mask):
    """Output metadata of aten.native_batch_norm_backward: the input gradient like the input,
    weight and bias gradients (C,) where the mask asks for them."""
    channels = (x.shape[1],)
    dtype = weight.dtype if weight is not None else x.dtype
    grads = [torch.empty(channels, dtype=dtype, device="meta") if m else None for m in mask[1:]]
    return (torch.empty_strided(x.shape, x.stride(), dtype=x.dtype, device="meta"), *grads)


def _mean_meta(x, dim=None, keepdim=False, dtype=None):
    """Output metadata of aten.mean.dim on a contiguous input (global average pooling lowers to
    it; PyTorch's meta kernel is a Python reference whose first call imports torch._dynamo):
    the reduced shape, contiguous. Other layouts take PyTorch's kernel."""
    if not x.is_contiguous() or (dtype is None and not x.dtype.is_floating_point):
        return None
    dims = range(x.dim()) if not dim else [d % max(1, x.dim()) for d in dim]
    shape = [1 if i in dims else n for i, n in enumerate(x.shape)] if keepdim else \
        [n for i, n in enumerate(x.shape) if i not in dims]
    return torch.empty(shape, dtype=dtype or x.dtype, device="meta")


def _addmm_meta(bias, a, b, *, beta=1, alpha=1):
    """Output metadata of aten.addmm (nn.Linear on 2-D inputs; PyTorch's meta kernel is a Python
    decomposition): (rows of a, columns of b), contiguous."""
    if a.dim() != 2 or b.dim() != 2 or a.dtype != b.dtype or a.shape[1] != b.shape[0]:
        return None
    return torch.empty((a.shape[0], b.shape[1]), dtype=a.dtype, device="meta")


def _standard(t: Any) -> bool:
    return isinstance(t, torch.Tensor) and t.is_meta and t.stride() == _contiguous(t.shape)


def _conv_meta(x, weight, bias, stride, padding, dilation, transposed, output_padding, groups):
    """Output metadata of aten.convolution for inputs and weights with plain contiguous strides
    (every convolution of a network built without channels-last): contiguous, the usual sizes.
    PyTorch's meta kernel is Python and its first call imports sympy (about a second on a loaded
    machine); tests/test_analysis_speed_rules.py holds this rule equal to it. Anything else
    (channels last, sizes that do not fit: PyTorch's error) takes PyTorch's kernel."""
    spatial = x.dim() - 2
    if (x.dim() not in (3, 4, 5) or weight.dim() != x.dim() or x.dtype != weight.dtype
            or not (_standard(x) and _standard(weight))
            or not all(len(v) == spatial for v in (stride, padding, dilation, output_padding))):
        return None
    if transposed:
        if x.shape[1] != weight.shape[0]:
            return None
        channels = weight.shape[1] * groups
        sizes = [(n - 1) * s - 2 * p + d * (k - 1) + o + 1 for n, k, s, p, d, o in
                 zip(x.shape[2:], weight.shape[2:], stride, padding, dilation, output_padding, strict=True)]
    else:
        if x.shape[1] != weight.shape[1] * groups:
            return None
        channels = weight.shape[0]
        sizes = [(n + 2 * p - d * (k - 1) - 1) // s + 1 for n, k, s, p, d in
                 zip(x.shape[2:], weight.shape[2:], stride, padding, dilation, strict=True)]
    if any(n <= 0 for n in sizes):
        return None
    return torch.empty((x.shape[0], channels, *sizes), dtype=x.dtype, device="meta")


def _conv_backward_meta(grad, x, weight, bias_sizes, stride, padding, dilation, transposed,
                        output_padding, groups, mask):
    """Output metadata of aten.convolution_backward for plain contiguous inputs and weights:
    contiguous gradients of the input, the weight and the bias (where the mask asks)."""
    if not (_standard(x) and _standard(weight)) or (mask[2] and bias_sizes is None):
        return None
    return (torch.empty(x.shape, dtype=grad.dtype, device="meta") if mask[0] else None,
            torch.empty(weight.shape, dtype=grad.dtype, device="meta") if mask[1] else None,
            torch.empty(tuple(bias_sizes), dtype=grad.dtype, device="meta") if mask[2] else None)


def _pool_sizes(x, kernel, stride, padding, dilation, ceil_mode) -> list[int] | None:
    """Output sizes of a 2-D max pool (PyTorch's pooling_output_shape), None where the arguments
    are not the plain form."""
    def pair(v, default=None):
        v = list(v) if isinstance(v, list | tuple) else [v]
        if not v and default is not None:
            return default
        return v * 2 if len(v) == 1 else v

    kernel = pair(kernel)
    stride, padding, dilation = pair(stride, kernel), pair(padding), pair(dilation)
    if not all(len(v) == 2 and all(isinstance(n, int) for n in v)
               for v in (kernel, stride, padding, dilation)):
        return None
    sizes = []
    for n, k, s, p, d in zip(x.shape[-2:], kernel, stride, padding, dilation, strict=True):
        if s <= 0 or k <= 0 or p > k // 2:
            return None
        out = (n + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
        if ceil_mode and (out - 1) * s >= n + p:
            out -= 1
        if out <= 0:
            return None
        sizes.append(out)
    return sizes


def _max_pool_meta(x, kernel, stride=(), padding=0, dilation=1, ceil_mode=False):
    """Output metadata of aten.max_pool2d_with_indices for a plain contiguous input: the pooled
    output (contiguous) and its int64 indices."""
    if x.dim() not in (3, 4) or not _standard(x):
        return None
    sizes = _pool_sizes(x, kernel, stride, padding, dilation, ceil_mode)
    if sizes is None:
        return None
    shape = (*x.shape[:-2], *sizes)
    return (torch.empty(shape, dtype=x.dtype, device="meta"),
            torch.empty(shape, dtype=torch.int64, device="meta"))


def _max_pool_backward_meta(grad, x, kernel, stride, padding, dilation, ceil_mode, indices):
    """aten.max_pool2d_with_indices_backward for a plain contiguous input: a gradient like it."""
    if x.dim() not in (3, 4) or not _standard(x):
        return None
    return torch.empty(x.shape, dtype=x.dtype, device="meta")


def _sum_meta(x, dim=None, keepdim=False, dtype=None):
    """aten.sum.dim_IntList on a floating input (a bias gradient in the backward pass, often of
    an expanded or permuted gradient): the reduced shape, contiguous whatever the input's layout,
    as PyTorch's reduction kernels make it."""
    if dtype is not None or not x.dtype.is_floating_point or x.dim() == 0:
        return None
    dims = range(x.dim()) if not dim else {d % x.dim() for d in dim}
    shape = [1 if i in dims else n for i, n in enumerate(x.shape)] if keepdim else \
        [n for i, n in enumerate(x.shape) if i not in dims]
    return torch.empty(shape, dtype=x.dtype, device="meta")


def _sum_all_meta(x, dtype=None):
    if dtype is not None or not x.dtype.is_floating_point:
        return None
    return torch.empty((), dtype=x.dtype, device="meta")


def _like_meta(x, dtype=None, layout=None, device=None, pin_memory=None, memory_format=None):
    """aten.empty_like / zeros_like / ones_like of a plain contiguous meta tensor (autograd seeds
    the backward pass with ones_like(loss)): values do not exist on meta, only the metadata."""
    if (not _standard(x) or layout not in (None, torch.strided) or pin_memory
            or (device is not None and torch.device(device).type != "meta")
            or memory_format not in (None, torch.preserve_format, torch.contiguous_format)):
        return None
    return torch.empty(x.shape, dtype=dtype or x.dtype, device="meta")


def _mm_meta(a, b):
    """aten.mm (nn.Linear's weight gradient in the backward pass): (rows of a, columns of b),
    contiguous whatever the operands' layouts, as PyTorch's meta kernel makes it."""
    if a.dim() != 2 or b.dim() != 2 or a.dtype != b.dtype or a.shape[1] != b.shape[0]:
        return None
    return torch.empty((a.shape[0], b.shape[1]), dtype=a.dtype, device="meta")


def _bmm_meta(a, b):
    if a.dim() != 3 or b.dim() != 3 or a.dtype != b.dtype or a.shape[0] != b.shape[0] \
            or a.shape[2] != b.shape[1]:
        return None
    return torch.empty((a.shape[0], a.shape[1], b.shape[2]), dtype=a.dtype, device="meta")


SHAPE_RULES = {
    torch.ops.aten.mm.default: _mm_meta,
    torch.ops.aten.bmm.default: _bmm_meta,
    torch.ops.aten.empty_like.default: _like_meta,
    torch.ops.aten.zeros_like.default: _like_meta,
    torch.ops.aten.ones_like.default: _like_meta,
    torch.ops.aten.sum.dim_IntList: _sum_meta,
    torch.ops.aten.sum.default: _sum_all_meta,
    torch.ops.aten.max_pool2d_with_indices.default: _max_pool_meta,
    torch.ops.aten.max_pool2d_with_indices_backward.default: _max_pool_backward_meta,
    torch.ops.aten.convolution.default: _conv_meta,
    torch.ops.aten.convolution_backward.default: _conv_backward_meta,
    torch.ops.aten.addmm.default: _addmm_meta,
    torch.ops.aten.native_batch_norm.default: _batch_norm_meta,
    torch.ops.aten.native_batch_norm_backward.default: _batch_norm_backward_meta,
    torch.ops.aten.mean.dim: _mean_meta,
}


def _to_meta(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.device.type != "meta" and value.dim() > 0:
        return torch.empty_strided(value.shape, value.stride(), dtype=value.dtype, device="meta")
    if isinstance(value, list):
        return [_to_meta(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_to_meta(v) for v in value)
    return value


def align_devices(flat: list, args: tuple, kwargs: dict) -> tuple[tuple, dict, bool]:
    """A CPU constant (more than a scalar) meeting a meta tensor becomes meta: on a real device
    both would be on it. ``flat`` is the flattened argument list. Returns (args, kwargs, moved)."""
    real = meta = False
    for t in flat:
        if isinstance(t, torch.Tensor):
            if t.device.type == "meta":
                meta = True
            elif t.dim() > 0:
                real = True
    if not (real and meta):
        return args, kwargs, False
    return _to_meta(args), {k: _to_meta(v) for k, v in kwargs.items()}, True


_IN_PLACE: dict[Any, bool] = {}
_ALSO_IN_PLACE = {"aten.copy_.default", "aten.fill_.Scalar", "aten.fill_.Tensor", "aten.zero_.default",
                  "aten.masked_fill_.Scalar", "aten.masked_fill_.Tensor"}
# element-wise ops that PyTorch does not tag ``pointwise`` (hardswish is MobileNetV3's
# activation; its Python meta kernel costs about a millisecond a call)
_UNTAGGED_POINTWISE = {"hardswish", "hardswish_backward", "hardsigmoid_backward",
                       "leaky_relu_backward", "hardtanh_backward", "elu_backward",
                       "softplus_backward", "mish_backward"}


def _pointwise(func: Any) -> bool:
    packet = getattr(func, "_overloadpacket", None)
    name = getattr(packet, "__name__", "")
    return torch.Tag.pointwise in getattr(func, "tags", ()) or name.rstrip("_") in _UNTAGGED_POINTWISE


def in_place_pointwise(func: Any) -> bool:
    """An element-wise op that writes its first argument and returns it (``relu_``, ``add_``,
    ``copy_``): on meta tensors its result is that argument, unchanged in shape, strides and
    dtype, so PyTorch's Python reference kernel (milliseconds a call) need not run."""
    known = _IN_PLACE.get(func)
    if known is None:
        schema = getattr(func, "_schema", None)
        known = bool(
            schema is not None and schema.arguments and schema.returns and len(schema.returns) == 1
            and schema.arguments[0].alias_info is not None and schema.arguments[0].alias_info.is_write
            and schema.returns[0].alias_info is not None
            and set(schema.returns[0].alias_info.before_set) == set(schema.arguments[0].alias_info.before_set)
            and not any(a.kwarg_only and a.name == "out" for a in schema.arguments)
            and (_pointwise(func) or str(func) in _ALSO_IN_PLACE))
        _IN_PLACE[func] = known
    return known


def _in_place_result(args: tuple, kwargs: dict) -> Any:
    """``args[0]`` when every tensor argument is meta and broadcasts to it, else None."""
    target = args[0]
    if not isinstance(target, torch.Tensor) or not target.is_meta:
        return None
    for value in (*args[1:], *kwargs.values()):
        if isinstance(value, torch.Tensor):
            if not value.is_meta and value.dim() > 0:
                return None
            if value.dim() > target.dim() or any(
                    o not in (1, t) for o, t in zip(reversed(value.shape), reversed(target.shape), strict=False)):
                return None
    return target


# ---- checked shape rules -------------------------------------------------------------------
# Many of PyTorch's meta kernels are Python (element-wise ops, cat, layer norm: 0.1-4 ms a call,
# where an empty tensor costs a microsecond). A checked rule predicts the output metadata of a
# call from its inputs' metadata and names the call's *signature*: what, besides sizes, decides
# the output (op, dtypes, which inputs broadcast, flags). The first call of each signature checks
# the rule (against PyTorch's meta kernel, or for an element-wise op's dtype a one-element CPU
# run); the rule is used for that signature only if it agreed. So a wrong rule costs only speed,
# and no result depends on what ran before. The layouts the element-wise rule claims are held to
# PyTorch's meta kernels by tests/test_analysis_speed_rules.py.
RULES_CHECKED: dict[tuple, Any] = {}
_OUT_OF_PLACE: dict[Any, bool] = {}
_NOT_RULED = {"dtype", "out", "memory_format", "layout", "device", "pin_memory"}


def _out_of_place_pointwise(func: Any) -> bool:
    known = _OUT_OF_PLACE.get(func)
    if known is None:
        schema = getattr(func, "_schema", None)
        known = bool(schema is not None and len(schema.returns) == 1 and fresh_outputs(func)
                     and str(schema.returns[0].type) == "Tensor" and _pointwise(func)
                     and not any(a.name in _NOT_RULED for a in schema.arguments))
        _OUT_OF_PLACE[func] = known
    return known


def _ambiguous(t: torch.Tensor) -> bool:
    """A 4-D tensor both contiguous and channels-last contiguous (a 1x1 map, one channel): which
    layout PyTorch gives its results depends on more than sizes."""
    return t.dim() == 4 and t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last)


def _strict_layout(t: torch.Tensor) -> tuple[int, ...] | None:
    """The order of ``t``'s strides (rank of each axis, 0 = outermost) when ``t`` is dense with no
    two axes of equal stride (a permuted contiguous tensor); None otherwise. Element-wise results
    of such tensors keep their strides."""
    stride = t.stride()
    order = sorted(range(t.dim()), key=lambda i: -stride[i])
    step = 1
    for i in reversed(order):
        if stride[i] != step:
            return None
        step *= t.shape[i]
    if len(set(stride)) != len(stride):
        return None
    ranks = [0] * t.dim()
    for rank, i in enumerate(order):
        ranks[i] = rank
    return tuple(ranks)


def _like(t: torch.Tensor) -> Any:
    """A meta tensor with ``t``'s sizes, strides and dtype, made without a kernel."""
    return lambda: torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device="meta")


def _same_strided(tensors: list) -> tuple | None:
    """(layout, full) when every tensor that is not 0-d has the same shape and strides, of a
    strict layout (a permuted contiguous tensor, e.g. channels last): the result keeps them."""
    full = None
    for t in tensors:
        if t.dim() == 0:
            continue
        if full is None:
            full = t
        elif t.shape != full.shape or t.stride() != full.stride():
            return None
    if full is None or _ambiguous(full):
        return None
    layout = _strict_layout(full)
    return None if layout is None else (layout, full)


def _expanded(t: torch.Tensor) -> bool:
    """``t`` is a contiguous tensor expanded along some axes (stride 0): ``grad.expand(...) / n``
    in the backward of a mean. An element-wise op on it alone gives a contiguous result."""
    step = 1
    stride = t.stride()
    for i in reversed(range(t.dim())):
        if stride[i] == 0 or t.shape[i] == 1:
            continue
        if stride[i] != step:
            return False
        step *= t.shape[i]
    return 0 in stride


def _broadcast(tensors: list) -> tuple[int, ...] | None:
    """The broadcast shape of the tensors (None if they do not broadcast)."""
    ndim = max(t.dim() for t in tensors)
    shape = [1] * ndim
    for t in tensors:
        offset = ndim - t.dim()
        for i, n in enumerate(t.shape):
            if n != 1:
                if shape[offset + i] not in (1, n):
                    return None
                shape[offset + i] = n
    return tuple(shape)


def _tiny(value: Any) -> Any:
    """A one-element CPU tensor of ``value``'s dtype and rank class (0-d or not): what decides an
    element-wise op's result dtype."""
    if isinstance(value, torch.Tensor):
        return torch.ones(() if value.dim() == 0 else (1,) * value.dim(), dtype=value.dtype)
    return value


def _pointwise_rule(*args: Any, **kwargs: Any) -> tuple | None:
    """Element-wise op on meta tensors of one dtype. Contiguous tensors that broadcast together,
    or a single expanded contiguous tensor: the result is contiguous, and its dtype is what the op gives on
    one-element CPU tensors of the same dtypes (no Python meta kernel runs; the first call of
    such a kernel imports sympy and torch._dynamo, seconds). All of one shape and strides in a
    strict layout (channels last, permuted): the result keeps them, checked against PyTorch's
    meta kernel."""
    dtype = full = None
    tensors = []
    parts: list[Any] = []
    contiguous = True
    for v in (*args, *kwargs.values()):
        if isinstance(v, torch.Tensor):
            if not v.is_meta or (dtype is not None and v.dtype != dtype):
                return None
            contiguous = contiguous and v.is_contiguous()
            dtype = v.dtype
            tensors.append(v)
            parts.append(len(tensors) - 1 if v.dim() else "0-d")
            if full is None or v.dim() > full.dim() or v.dim() == full.dim() and v.numel() > full.numel():
                full = v
        elif isinstance(v, (bool, int, float, str)) or v is None:
            parts.append(type(v))
        else:
            return None
    if full is None or full.dim() == 0:
        return None

    def probe(func: Any) -> torch.dtype:
        return func(*[_tiny(a) for a in args], **{k: _tiny(v) for k, v in kwargs.items()}).dtype

    if not contiguous:
        if sum(t.dim() > 0 for t in tensors) == 1 and _expanded(full):
            shape = full.shape
            return ((tuple(parts), "expanded", tuple(kwargs)),
                    lambda out: torch.empty(shape, dtype=out, device="meta"), probe)
        found = _same_strided(tensors)
        if found is None:
            return None
        layout, full = found
        return (dtype, tuple(parts), layout, tuple(kwargs)), _like(full)
    shape = _broadcast(tensors)
    if shape is None or (len(shape) == 4 and _ambiguous(torch.empty(shape, device="meta"))):
        return None
    patterns = [None if t.shape == shape else tuple(n == 1 for n in t.shape) for t in tensors]
    signature = (dtype, tuple(parts), tuple(patterns), tuple(kwargs))
    return signature, lambda out: torch.empty(shape, dtype=out, device="meta"), probe


def _cat_rule(tensors: Any, dim: int = 0) -> tuple | None:
    """cat of contiguous meta tensors of one dtype and rank: contiguous, sizes summed on dim."""
    if not isinstance(tensors, (list, tuple)) or not tensors:
        return None
    first = tensors[0]
    if not isinstance(first, torch.Tensor) or first.dim() == 0:
        return None
    ndim, dtype = first.dim(), first.dtype
    dim = dim % ndim
    shape = list(first.shape)
    total = 0
    for t in tensors:
        if (not isinstance(t, torch.Tensor) or not t.is_meta or t.dtype != dtype or t.dim() != ndim
                or not t.is_contiguous() or t.numel() == 0 or _ambiguous(t)):
            return None
        for i in range(ndim):
            if i != dim and t.shape[i] != shape[i]:
                return None
        total += t.shape[dim]
    shape[dim] = total
    return (dtype, ndim, dim, len(tensors)), lambda: torch.empty(shape, dtype=dtype, device="meta")


def _layer_norm_meta(x, normalized_shape, weight, bias, eps):
    """aten.native_layer_norm: a contiguous output whatever the input's layout (PyTorch's kernel
    makes it contiguous first), mean and 1/std with the normalised axes kept as 1."""
    if any(w is not None and not isinstance(w, torch.Tensor) for w in (weight, bias)):
        return None
    axis = x.dim() - len(normalized_shape)
    if axis < 0 or tuple(x.shape[axis:]) != tuple(normalized_shape):
        return None
    stats = (*x.shape[:axis], *([1] * len(normalized_shape)))
    dtype = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    return (torch.empty(x.shape, dtype=x.dtype, device="meta"), torch.empty(stats, dtype=dtype, device="meta"),
            torch.empty(stats, dtype=dtype, device="meta"))


def _layer_norm_backward_meta(grad, x, normalized_shape, mean, rstd, weight, bias, mask):
    """aten.native_layer_norm_backward with a contiguous incoming gradient: a contiguous input
    gradient (whatever the input's layout), gradients like the weight and the bias."""
    if not grad.is_contiguous() or grad.shape != x.shape:
        return None

    def like(t: Any, wanted: bool) -> Any:
        return torch.empty(t.shape, dtype=t.dtype, device="meta") if wanted and t is not None else None

    return (torch.empty(x.shape, dtype=x.dtype, device="meta") if mask[0] else None,
            like(weight, mask[1]), like(bias, mask[2]))


def _softmax_backward_meta(grad, output, dim, input_dtype):
    """aten._softmax_backward_data: contiguous, of the input's dtype, whatever the layouts."""
    if grad.shape != output.shape:
        return None
    return torch.empty(grad.shape, dtype=input_dtype, device="meta")


def _stack_meta(tensors, dim=0):
    """aten.stack of contiguous tensors of one shape and dtype: contiguous."""
    if not isinstance(tensors, (list, tuple)) or not tensors:
        return None
    first = tensors[0]
    for t in tensors:
        if (not isinstance(t, torch.Tensor) or not t.is_meta or t.shape != first.shape
                or t.dtype != first.dtype or not t.is_contiguous()):
            return None
    dim = dim % (first.dim() + 1)
    shape = (*first.shape[:dim], len(tensors), *first.shape[dim:])
    return torch.empty(shape, dtype=first.dtype, device="meta")


def _vector_norm_meta(x, ord=2, dim=None, keepdim=False, *, dtype=None):
    """aten.linalg_vector_norm of a floating input: a reduction, contiguous whatever the layout."""
    if dtype is not None or not x.dtype.is_floating_point or x.dim() == 0:
        return None
    return _sum_meta(x, dim, keepdim)


SHAPE_RULES.update({
    torch.ops.aten.native_layer_norm.default: _layer_norm_meta,
    torch.ops.aten.native_layer_norm_backward.default: _layer_norm_backward_meta,
    torch.ops.aten._softmax_backward_data.default: _softmax_backward_meta,
    torch.ops.aten.stack.default: _stack_meta,
    torch.ops.aten.linalg_vector_norm.default: _vector_norm_meta,
})


def _contiguous(shape: Any) -> tuple[int, ...]:
    strides, step = [], 1
    for n in reversed(shape):
        strides.append(step)
        step *= max(n, 1)
    return tuple(reversed(strides))


CHECKED_RULES = {torch.ops.aten.cat.default: _cat_rule}


def _checked(func: Any, rule: Any, args: tuple, kwargs: dict) -> Any:
    """The rule's prediction where it has agreed with PyTorch on this signature, else None (run
    the kernel). A rule that names a *probe* is checked by it: the op on one-element CPU tensors
    gives the result dtype, kept per signature (the op's dtype rule needs only dtypes). Any other
    rule is checked on the signature's first call against PyTorch's meta kernel itself."""
    try:
        found = rule(*args, **kwargs)
    except TypeError:  # an argument form the rule does not take
        return None
    if found is None:
        return None
    key = (func, found[0])
    verdict = RULES_CHECKED.get(key)
    if len(found) == 3:
        if verdict is None:
            try:
                with _disable_current_modes():
                    verdict = found[2](func)
            except (RuntimeError, TypeError, ValueError, NotImplementedError):
                verdict = False
            RULES_CHECKED[key] = verdict
        return found[1](verdict) if verdict is not False else None
    predict = found[1]
    if verdict is None:
        out = func(*args, **kwargs)
        try:
            RULES_CHECKED[key] = _out_spec(out) == _out_spec(predict())
        except TypeError:
            RULES_CHECKED[key] = False
        return out
    return predict() if verdict else None


def clear_memos() -> None:
    """Forget every per-network memo (benchmarks time a network's first analysis with this)."""
    from . import recurrent

    META_OUTPUTS.clear()
    RULES_CHECKED.clear()
    _PLANS.clear()
    recurrent.clear()


# id(op) -> (op, in-place element-wise?, shape rule, checked rule, fresh outputs?): one lookup
# per call instead of five (an OpOverload's hash is a Python method); ops live for the process
_PLANS: dict[int, tuple] = {}


def _plan(func: Any) -> tuple:
    plan = _PLANS.get(id(func))
    if plan is None or plan[0] is not func:
        checked = CHECKED_RULES.get(func)
        if checked is None and _out_of_place_pointwise(func):
            checked = _pointwise_rule
        plan = (func, in_place_pointwise(func), SHAPE_RULES.get(func), checked, fresh_outputs(func))
        _PLANS[id(func)] = plan
    return plan


def run_meta(func: Any, args: tuple, kwargs: dict) -> Any:
    """``func(*args, **kwargs)``, from a shape rule or the memo where that is exact."""
    _, in_place, rule, checked, fresh = _plan(func)
    if in_place:
        result = _in_place_result(args, kwargs)
        if result is not None:
            return result
    if rule is not None and all(not isinstance(a, torch.Tensor) or a.is_meta for a in args):
        out = rule(*args, **kwargs)
        if out is not None:
            return out
    if checked is not None:
        out = _checked(func, checked, args, kwargs)
        if out is not None:
            return out
    if not fresh:
        return func(*args, **kwargs)
    try:
        key = (id(func), _meta_key(args), _meta_key(sorted(kwargs.items())) if kwargs else ())
    except TypeError:
        return func(*args, **kwargs)
    hit = META_OUTPUTS.get(key)
    if hit is not None and hit[0] is func:
        return _replay(hit[1])
    out = func(*args, **kwargs)
    try:
        spec = _out_spec(out)
    except TypeError:
        return out
    if len(META_OUTPUTS) < _MEMO_LIMIT:
        META_OUTPUTS[key] = (func, spec)
    return out
