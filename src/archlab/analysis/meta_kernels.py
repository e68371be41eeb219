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

# (func, input metadata) -> output metadata; see the module docstring for what is kept
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
    if isinstance(value, torch.Tensor):
        if value.device.type != "meta":
            raise TypeError("not a meta tensor")
        return ("T", tuple(value.shape), value.stride(), value.dtype, value.storage_offset())
    if isinstance(value, (list, tuple)):
        return tuple(_meta_key(v) for v in value)
    if isinstance(value, _SIMPLE):
        if isinstance(value, torch.device) and value.type != "meta":
            raise TypeError("a factory call on a real device")
        return value
    raise TypeError(f"uncacheable argument {type(value).__name__}")


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
            torch.empty_like(stats))


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


SHAPE_RULES = {
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
            and (torch.Tag.pointwise in getattr(func, "tags", ()) or str(func) in _ALSO_IN_PLACE))
        _IN_PLACE[func] = known
    return known


def _in_place_result(args: tuple, kwargs: dict) -> Any:
    """``args[0]`` when every tensor argument is meta and broadcasts to it, else None."""
    target = args[0]
    if not isinstance(target, torch.Tensor) or target.device.type != "meta":
        return None
    for value in (*args[1:], *kwargs.values()):
        if isinstance(value, torch.Tensor):
            if value.device.type != "meta" and value.dim() > 0:
                return None
            if value.dim() > target.dim() or any(
                    o not in (1, t) for o, t in zip(reversed(value.shape), reversed(target.shape), strict=False)):
                return None
    return target


def run_meta(func: Any, args: tuple, kwargs: dict) -> Any:
    """``func(*args, **kwargs)``, from a shape rule or the memo where that is exact."""
    if in_place_pointwise(func):
        result = _in_place_result(args, kwargs)
        if result is not None:
            return result
    rule = SHAPE_RULES.get(func)
    if rule is not None and all(
            not isinstance(a, torch.Tensor) or a.device.type == "meta" for a in args):
        out = rule(*args, **kwargs)
        if out is not None:
            return out
    if not fresh_outputs(func):
        return func(*args, **kwargs)
    try:
        key = (func, _meta_key(args), _meta_key(tuple(sorted(kwargs.items()))))
    except TypeError:
        return func(*args, **kwargs)
    spec = META_OUTPUTS.get(key)
    if spec is not None:
        return _replay(spec)
    out = func(*args, **kwargs)
    try:
        spec = _out_spec(out)
    except TypeError:
        return out
    if len(META_OUTPUTS) < _MEMO_LIMIT:
        META_OUTPUTS[key] = spec
    return out
