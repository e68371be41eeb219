"""Trace any ``torch.nn.Module`` on the meta device, at the aten level.

Meta tensors carry shapes and dtypes but no data, so a trace costs no real memory and no real
compute. The module itself is left untouched: its parameters and buffers are replaced by meta
copies only for the duration of the call (``torch.func.functional_call``), and module paths are
followed with *global* forward hooks that are removed afterwards (nothing is registered on the
module, no buffers added, no device moves, training flags restored).

What a trace records:

* ``ops``: per-op records (:class:`archlab.ops.Op`) of the forward pass, when counting;
* every storage the pass allocates, when, by which module, and its last use: the data for the
  liveness simulation in :mod:`archlab.analysis.memory`;
* the storages autograd saves for backward (``saved_tensors_hooks``), deduplicated by storage.

Functional ops, matmuls and custom modules are all seen because the trace sits under every
Python-level call (``TorchDispatchMode``). Scaled dot-product attention and batch norm are
caught one level up (:mod:`archlab.analysis.functions`): attention is one ``attention`` record,
run by the kernel the real device would choose (so memory follows the real backend).

A trace never depends on what ran before it in the process: the meta-kernel memo replays only
meta-in, meta-out calls (:mod:`archlab.analysis.meta_kernels`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn
from torch.nn.modules import module as module_hooks
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from ..errors import UsageError
from ..ops import Op, Shape, attention_op, linear_op
from . import conv_scratch, recurrent
from .aten import MOVE_KINDS, RULES, SKIP, Call, elementwise, is_view, op_name
from .functions import Functions
from .meta_kernels import align_devices, run_meta

# storage categories
INPUT, PARAM, BUFFER, ACTIVATION, GRAD = "input", "param", "buffer", "activation", "grad"
_NAMES: dict[int, tuple] = {}  # id(op) -> (op, name, skipped by counting, in-place)
_CONVOLUTION = torch.ops.aten.convolution.default
_CONVOLUTION_BACKWARD = torch.ops.aten.convolution_backward.default


@dataclass
class Storage:
    """One storage seen during a trace (views share it)."""

    nbytes: int
    category: str
    created: int              # event index; -1 = existed before the trace
    producer: str             # module path of the op that allocated it
    last_use: int             # last event that read or wrote it
    last_forward_use: int     # the same, forward pass only
    saved: bool = False       # saved by autograd for the backward pass


@dataclass
class Trace:
    """What one pass recorded. Event indices: [0, forward_end) forward, the rest backward."""

    batch: int
    ops: list[Op] = field(default_factory=list)
    storages: dict[int, Storage] = field(default_factory=dict)
    forward_end: int = 0
    n_events: int = 0
    output_keys: set[int] = field(default_factory=set)
    grad_keys: set[int] = field(default_factory=set)
    module_outputs: dict[str, Shape] = field(default_factory=dict)
    module_types: dict[str, str] = field(default_factory=dict)
    param_bytes: int = 0
    trainable_param_bytes: int = 0
    buffer_bytes: int = 0
    param_tensors: int = 0          # trainable parameter tensors (optimizer state per tensor)
    # event -> bytes of scratch memory a CPU (oneDNN) convolution allocates besides its result:
    # a reordered copy the size of its output (forward), of the incoming gradient and the saved
    # input (backward); measured with the profiler's memory records
    cpu_workspace: dict[int, int] = field(default_factory=dict)
    largest_param_bytes: int = 0
    attention_backends: dict[str, int] = field(default_factory=dict)  # 'flash (cpu, ...)' -> calls
    notes: list[str] = field(default_factory=list)  # what the figures assume, in words
    unattributed: dict[int, int] = field(default_factory=dict)  # parameter key -> elements

    @property
    def saved_bytes(self) -> int:
        return sum(s.nbytes for s in self.storages.values() if s.saved)

    def saved_by_path(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for s in self.storages.values():
            if s.saved:
                out[s.producer] += s.nbytes
        return dict(out)


def storage_key(t: torch.Tensor) -> int:
    """Identity of a tensor's storage (views of one storage share it)."""
    return t.untyped_storage()._cdata


class _Tracer:
    """The state shared by the dispatch mode, the function mode and the module hooks."""

    def __init__(self, root: nn.Module, batch: int, counting: bool) -> None:
        self.trace = Trace(batch=batch)
        self.counting = counting
        self.paths = {id(m): name for name, m in root.named_modules()}
        self.stack: list[tuple[nn.Module, str | None]] = []
        self.phase_backward = False
        self.suppress = 0
        self.keep: list[torch.Tensor] = []        # keeps storages alive so keys stay unique
        self.data_keys: set[int] = set()          # storages that depend on the network input
        self.origin: dict[int, frozenset[int]] = {}  # input-independent storage -> its parameters
        self.param_sizes: dict[int, int] = {}     # parameter storage -> elements, until attributed
        self.last_linear: tuple[int, int] | None = None  # (index in ops, output key)
        self.last_path = ""                        # module of the latest aten call
        self.device = "cpu"                        # the real device modelled ('cpu', 'cuda')
        # records still wanted, as (kind, path, n-th of that kind and path): the trace stops at
        # the first record after the last of them (None: trace the whole forward)
        self.wanted: set[tuple[str, str, int]] | None = None
        self.seen: dict[tuple[str, str], int] = {}

    def backward_scratch(self, args: tuple, ins: list[torch.Tensor]) -> int:
        """Scratch of a CPU convolution backward: reordered copies of the incoming gradient and
        of the saved input, or, where oneDNN falls back to im2col, what it measures
        (:mod:`archlab.analysis.conv_scratch`)."""
        grad, x, w = ins[:3]
        rule = grad.untyped_storage().nbytes() + x.untyped_storage().nbytes()
        if self.device != "cpu" or len(args) < 11 or args[7]:
            return rule
        stride, padding, dilation, groups, mask = args[4], args[5], args[6], args[9], args[10]
        if not conv_scratch.falls_back(tuple(x.shape), tuple(w.shape), tuple(dilation)):
            return rule
        return conv_scratch.measured_backward_scratch(tuple(x.shape), tuple(w.shape), stride, padding,
                                                      dilation, groups, mask)

    def note(self, text: str) -> None:
        if text not in self.trace.notes:
            self.trace.notes.append(text)

    # ---- module paths ----------------------------------------------------------------------
    # the stack holds (own path or None, innermost named path, its module): the current path is
    # its top, read on every aten call without a search
    def path(self) -> tuple[str, nn.Module | None]:
        if self.stack:
            _, path, mod = self.stack[-1]
            return path, mod
        return "", None

    def pre_hook(self, mod: nn.Module, args: Any) -> None:
        own = self.paths.get(id(mod))
        if own is not None:
            self.stack.append((own, own, mod))
        elif self.stack:
            _, path, named = self.stack[-1]
            self.stack.append((None, path, named))
        else:
            self.stack.append((None, "", None))

    def post_hook(self, mod: nn.Module, args: Any, output: Any) -> None:
        if not self.stack:
            return
        path = self.stack.pop()[0]
        if self.counting and path is not None and isinstance(output, torch.Tensor):
            self.trace.module_outputs.setdefault(path, self.shape(output))
            self.trace.module_types.setdefault(path, type(mod).__name__)

    # ---- storages --------------------------------------------------------------------------
    def register(self, t: torch.Tensor, category: str) -> int:
        key = storage_key(t)
        if key not in self.trace.storages:
            producer = "(input)" if category == INPUT else ""
            self.trace.storages[key] = Storage(t.untyped_storage().nbytes(), category, -1, producer,
                                               -1, -1)
            self.keep.append(t)
        if category == INPUT:
            self.data_keys.add(key)
        return key

    def shape(self, t: torch.Tensor) -> Shape:
        """Per-sample shape: the leading batch dimension of an activation is dropped."""
        shape = tuple(t.shape)
        if shape and shape[0] == self.trace.batch and storage_key(t) in self.data_keys:
            return shape[1:]
        return shape

    def is_weight(self, t: torch.Tensor) -> bool:
        """Independent of the input: a parameter, a buffer, a constant, or made from them."""
        return storage_key(t) not in self.data_keys

    # ---- one aten call ---------------------------------------------------------------------
    def on_call(self, func: Any, args: tuple, kwargs: dict, out: Any, flat: list) -> None:
        """Bookkeeping of one aten call: the counting pass follows which storages come from the
        network input (and which parameters a weight is made of) and records the op; the memory
        pass follows each storage's allocation and last use. Each does only its own part: this
        runs on every call of a trace."""
        index = self.trace.n_events
        self.trace.n_events += 1
        if self.stack:
            _, path, module = self.stack[-1]
        else:
            path, module = "", None
        self.last_path = path
        outs = _tensors(out, [])
        if self.counting:
            self._count_call(func, args, kwargs, outs, flat, path, module)
        else:
            self._memory_call(func, args, index, outs, flat, path)

    def _count_call(self, func, args, kwargs, outs, ins, path, module) -> None:
        in_keys = [t.untyped_storage()._cdata for t in ins]
        data_keys = self.data_keys
        from_data = False
        for key in in_keys:
            if key in data_keys:
                from_data = True
                break
        for t in outs:
            key = t.untyped_storage()._cdata
            self.keep.append(t)  # alive to the end: a storage key is never reused in a trace
            if from_data:
                data_keys.add(key)
            else:  # a reparametrised weight: remember which parameters it is made of
                origin = self.origin
                sources = [origin[k] for k in in_keys if k in origin]
                if sources:
                    origin[key] = frozenset().union(*sources, origin.get(key, frozenset()))
        if not self.phase_backward and not self.suppress and outs:
            self.count(func, args, kwargs, outs[0], ins, in_keys, path, module, not from_data)

    def _memory_call(self, func, args, index, outs, ins, path) -> None:
        storages = self.trace.storages
        forward = not self.phase_backward
        for t in ins:
            s = storages.get(t.untyped_storage()._cdata)
            if s is not None:
                s.last_use = index
                if forward:
                    s.last_forward_use = index
        if func is _CONVOLUTION and outs:
            self.trace.cpu_workspace[index] = outs[0].untyped_storage().nbytes()
        elif func is _CONVOLUTION_BACKWARD and len(ins) >= 3:
            self.trace.cpu_workspace[index] = self.backward_scratch(args, ins)
        elif func is recurrent.MKLDNN_RNN_LAYER_BACKWARD and self.device == "cpu":
            self.trace.cpu_workspace[index] = recurrent.backward_scratch(args)
        for t in outs:
            storage = t.untyped_storage()
            key = storage._cdata
            s = storages.get(key)
            if s is None:
                storages[key] = Storage(storage.nbytes(), ACTIVATION if forward else GRAD, index,
                                        path, index, index if forward else -1)
                self.keep.append(t)
            else:
                s.last_use = index
                if forward:
                    s.last_forward_use = index

    def count(self, func, args, kwargs, out, ins, in_keys, path, module, weights_only) -> None:
        known = _NAMES.get(id(func))
        if known is None or known[0] is not func:
            name = op_name(func)
            raw = getattr(getattr(func, "_overloadpacket", None), "__name__", "")
            known = _NAMES[id(func)] = (func, name, name in SKIP or is_view(func, name),
                                        raw.endswith("_"))
        _, name, skipped, in_place = known
        if skipped:
            return  # views move no data; factories and bookkeeping do no work
        if weights_only and (in_place or not ins):
            return  # updates of running statistics, fresh constants
        call = Call(name, args, kwargs, out, ins, path, module, self.shape, self.is_weight)
        rule = RULES.get(name)
        op = rule(call) if rule is not None else elementwise(call)
        if weights_only and op.kind in MOVE_KINDS:
            return  # reshaping a parameter (instance norm repeats its affine weights) is not work
        if weights_only:
            # work on parameters and constants alone (a reparametrised weight) is done once per
            # batch, not per sample: kept as a record, its count reported apart
            # (analyze() moves it into the per-sample counts when it grows with the batch: a
            # tensor recomputed for every sample is not a constant)
            sources = frozenset().union(*(self.origin.get(k, ()) for k in set(in_keys)))
            op = replace(op, multiply_adds=0, elementwise=0,
                         extra={"weights_only_multiply_adds": op.multiply_adds,
                                "weights_only_elementwise": op.elementwise,
                                "param_keys": sources})
        if self.fold_bias(name, call, op, in_keys):
            return
        # parameters belong to the first op that reads them with an activation
        params = 0
        if not weights_only:
            for key in set(in_keys):
                for source in self.origin.get(key, ()):
                    params += self.param_sizes.pop(source, 0)
        op = Op(op.kind, op.path, op.inputs, op.output, params, op.multiply_adds, op.elementwise,
                op.weights_read, op.extra)  # not dataclasses.replace: ten times slower
        if op.kind == "linear" and name == "mm":
            self.last_linear = (len(self.trace.ops), storage_key(out))
        else:
            self.last_linear = None
        self.append(op)

    def append(self, op: Op) -> None:
        if self.wanted is not None:
            if not self.wanted:
                raise _Enough  # every wanted record is in (and the one before it complete)
            n = self.seen[op.kind, op.path] = self.seen.get((op.kind, op.path), -1) + 1
            self.wanted.discard((op.kind, op.path, n))
        self.trace.ops.append(op)

    def fold_bias(self, name: str, call: Call, op: Op, in_keys: list[int]) -> bool:
        """``matmul(x, W.t()).add_(b)`` (nn.Linear on inputs of rank > 3) is one linear op."""
        if name != "add" or self.last_linear is None or len(call.tensors) != 2:
            return False
        index, out_key = self.last_linear
        bias = [t for t in call.tensors if self.is_weight(t) and t.dim() == 1]
        if not bias or out_key not in in_keys:
            return False
        prev = self.trace.ops[index]
        merged = linear_op(prev.path, prev.inputs[0], prev.output, bias=True)
        extra = sum(self.param_sizes.pop(k, 0) for k in self.origin.get(storage_key(bias[0]), ()))
        self.trace.ops[index] = replace(merged, params=prev.params + extra)
        self.last_linear = None
        return True

    def attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor) -> None:
        path, _ = self.path()
        self.append(attention_op(path, self.shape(q), self.shape(k), self.shape(v), self.shape(out)))
        self.last_linear = None


class _Enough(BaseException):
    """Raised by a trace that has every record it was asked for. A BaseException, so that a
    module's own ``except Exception`` does not catch it."""


def _tensors(value: Any, into: list) -> list:
    """The tensors in an aten call's arguments or results (tensors, lists and tuples of them):
    a plain loop, several times faster than pytree on the trace's hot path."""
    if isinstance(value, torch.Tensor):
        into.append(value)
    elif isinstance(value, list | tuple):
        for v in value:
            if isinstance(v, torch.Tensor):
                into.append(v)
            elif isinstance(v, list | tuple):
                _tensors(v, into)
    return into


class _Dispatch(TorchDispatchMode):
    def __init__(self, tracer: _Tracer) -> None:
        super().__init__()
        self.tracer = tracer

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # PyTorch wraps modes in torch._dynamo.disable by default, which imports dynamo on the
        # first call (seconds) and adds overhead to every op; this mode never runs compiled code
        return False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        flat: list = []
        real = False  # a CPU constant (more than a scalar) among the arguments
        for value in args:
            if isinstance(value, torch.Tensor):
                flat.append(value)
                real = real or (not value.is_meta and value.dim() > 0)
            elif isinstance(value, list | tuple):
                _tensors(value, flat)
                real = True  # checked by align_devices
        if kwargs:
            _tensors(tuple(kwargs.values()), flat)
            real = True
        if real:
            args, kwargs, moved = align_devices(flat, args, kwargs)
            if moved:
                flat = _tensors((args, tuple(kwargs.values())), [])
        out = run_meta(func, args, kwargs)
        if func is recurrent.MKLDNN_RNN_LAYER:
            out = recurrent.with_workspace(args, out)
        self.tracer.on_call(func, args, kwargs, out, flat)
        return out


@contextmanager
def _module_hooks(tracer: _Tracer) -> Iterator[None]:
    """Global forward hooks, removed on exit: nothing is left on any module."""
    pre = module_hooks.register_module_forward_pre_hook(tracer.pre_hook)
    try:
        post = module_hooks.register_module_forward_hook(tracer.post_hook, always_call=True)
    except TypeError:  # older PyTorch without always_call
        post = module_hooks.register_module_forward_hook(tracer.post_hook)
    try:
        yield
    finally:
        pre.remove()
        post.remove()


@contextmanager
def _mode(module: nn.Module, training: bool) -> Iterator[None]:
    """Set train/eval for the trace and restore every submodule's own flag afterwards."""
    flags = [(m, m.training) for m in module.modules()]
    module.train(training)
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag


def _meta_like(t: torch.Tensor) -> torch.Tensor:
    """``torch.empty_like(t, device='meta')``; for a contiguous meta tensor (a design built on the
    meta device) without PyTorch's Python kernel for it, whose first call imports sympy."""
    if t.is_meta and t.is_contiguous():
        return torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device="meta")
    return torch.empty_like(t, device="meta")


def _meta_state(module: nn.Module, tracer: _Tracer) -> dict[str, torch.Tensor]:
    """Meta copies of the parameters and buffers, registered with the tracer."""
    state: dict[str, torch.Tensor] = {}
    trace = tracer.trace
    largest = 0
    for name, p in module.named_parameters():
        meta = nn.Parameter(_meta_like(p), requires_grad=p.requires_grad)
        state[name] = meta
        key = tracer.register(meta, PARAM)
        tracer.param_sizes[key] = p.numel()
        tracer.origin[key] = frozenset((key,))
        size = p.numel() * p.element_size()
        trace.param_bytes += size
        if p.requires_grad:
            trace.trainable_param_bytes += size
            trace.param_tensors += 1
            largest = max(largest, size)
    for name, b in module.named_buffers():
        meta = _meta_like(b)
        state[name] = meta
        tracer.register(meta, BUFFER)
        trace.buffer_bytes += b.numel() * b.element_size()
    trace.largest_param_bytes = largest
    return state


def _outputs(value: Any) -> list[torch.Tensor]:
    return [t for t in tree_flatten(value)[0] if isinstance(t, torch.Tensor)]


def trace_module(
    module: nn.Module,
    input_shape: Shape | tuple[Shape, ...],
    batch: int = 1,
    *,
    dtype: torch.dtype = torch.float32,
    counting: bool = True,
    backward: bool = False,
    device: str = "cpu",
    wanted: set[tuple[str, str, int]] | None = None,
) -> Trace:
    """Run ``module`` once on meta inputs of ``(batch, *input_shape)``.

    counting:  record per-op records (use batch 1; the module runs in eval mode, so BatchNorm is
               in its inference form and dropout is off).
    backward:  run in train mode with autograd, record what autograd saves, then run backward.
    device:    the real device whose kernels are modelled ('cpu' or 'cuda'): attention runs the
               backend that device would choose.
    wanted:    counting only: the records needed, as (kind, path, n-th record of that kind at
               that path); the trace stops once it has them all (its ops are then a prefix).
    """
    shapes = input_shape if input_shape and isinstance(input_shape[0], tuple | list) else (input_shape,)
    tracer = _Tracer(module, batch, counting)
    if wanted is not None and counting and not backward:
        tracer.wanted = set(wanted)
    tracer.device = "cuda" if device.startswith("cuda") else "cpu"
    state = _meta_state(module, tracer)
    inputs = []
    for shape in shapes:
        x = torch.empty((batch, *shape), device="meta", dtype=dtype)
        tracer.register(x, INPUT)
        inputs.append(x)

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = tracer.trace.storages.get(storage_key(t))
        if s is not None and s.category in (INPUT, ACTIVATION):
            s.saved = True
        return t

    with ExitStack() as stack:
        stack.enter_context(_mode(module, training=backward))
        stack.enter_context(torch.enable_grad() if backward else torch.no_grad())
        stack.enter_context(_module_hooks(tracer))
        stack.enter_context(Functions(tracer, tracer.device))
        stack.enter_context(_Dispatch(tracer))
        if backward:
            stack.enter_context(torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t))
        try:
            out = torch.func.functional_call(module, state, tuple(inputs))
        except _Enough:
            tracer.keep.clear()
            return tracer.trace
        except (RuntimeError, ValueError, TypeError, IndexError, NotImplementedError) as exc:
            raise _trace_error(module, shapes, batch, backward, tracer.last_path, exc) from None
        outs = _outputs(out)
        tracer.trace.output_keys = {storage_key(t) for t in outs}
        tracer.trace.forward_end = tracer.trace.n_events
        if backward:
            losses = [t.float().sum() for t in outs if t.requires_grad]
            if losses:
                tracer.phase_backward = True
                torch.autograd.backward(losses)
                for p in state.values():
                    if isinstance(p, nn.Parameter) and p.grad is not None:
                        tracer.trace.grad_keys.add(storage_key(p.grad))
    tracer.keep.clear()
    tracer.trace.unattributed = dict(tracer.param_sizes)
    return tracer.trace


def _trace_error(module: nn.Module, shapes: tuple, batch: int, backward: bool, path: str,
                 exc: Exception) -> UsageError:
    """The module's own error, with where it happened, in which pass, and the fix that fits."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    lowered = text.lower()
    if "device" in lowered:
        fix = ("the forward mixes devices: make tensors with device=x.device (or from a "
               "parameter's device) rather than a fixed device")
    elif isinstance(exc, NotImplementedError) or any(
            w in lowered for w in ("meta", "data-dependent", "item()", "data dependent")):
        fix = ("the forward reads tensor values (.item(), nonzero, an 'if' on a tensor), which "
               "meta tensors do not have: analyse a module whose control flow depends on shapes")
    else:
        sizes = " and ".join(str((batch, *s)) for s in shapes)
        fix = (f"check that the module runs on an input of {sizes} (input_shape is per sample: "
               "channels first, no batch)")
    phase = ("the memory pass (training mode with autograd" if backward else
             "the counting pass (eval mode, no grad") + f", batch {batch})"
    return UsageError(f"tracing {type(module).__name__} on the meta device failed in {phase}: "
                      f"{type(exc).__name__}: {text}", path=path or "(root)", fix=fix)
