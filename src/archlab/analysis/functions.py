"""The tracer's Python-level view (``TorchFunctionMode``): calls handled before they lower to
aten ops.

* Scaled dot-product attention: one ``attention`` record whichever kernel runs it, and the
  kernel the real device would choose runs it (:mod:`archlab.analysis.attention`), so autograd
  saves on meta what it saves for real.
* ``nn.LSTM`` runs the aten ops a real CPU runs for it, one oneDNN layer kernel per layer and
  direction, instead of PyTorch's step-by-step meta path (:mod:`archlab.analysis.recurrent`).
* Batch and instance norm in training mode refuse one value per channel (batch 1 after a
  global pool: ``Expected more than 1 value per channel``). The memory trace runs at the
  analysed batch, 1 by default, so it calls the same aten op without that check: the memory is
  what the step needs at a batch that can train, scaled to this batch, and a note says that this
  batch itself cannot train.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from . import attention, recurrent

_BATCH_NORM = inspect.signature(F.batch_norm)
_INSTANCE_NORM = inspect.signature(F.instance_norm)


def _one_value_per_channel(x: torch.Tensor, reduce_batch: bool) -> bool:
    size = x.shape
    values = 1
    for i, n in enumerate(size):
        if i != 1 and (reduce_batch or i != 0):
            values *= n
    return values == 1


class Functions(TorchFunctionMode):
    """Attention records and backends, and batch-norm calls without the batch-size check."""

    def __init__(self, tracer: Any, device: str = "cpu") -> None:
        super().__init__()
        self.tracer = tracer
        self.device = device

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            return self.attention(args, kwargs)
        if func is F.batch_norm:
            return self.batch_norm(args, kwargs)
        if func is F.instance_norm:
            return self.instance_norm(args, kwargs)
        if func is F.multi_head_attention_forward:
            return self.multi_head_attention(args, kwargs)
        if func is torch.lstm and recurrent.takes_cpu_kernel(args, kwargs, self.device):
            return recurrent.lstm(*args)
        return func(*args, **kwargs)

    def multi_head_attention(self, args: tuple, kwargs: dict) -> Any:
        """nn.MultiheadAttention's functional form calls scaled dot-product attention from inside
        a torch function, where this mode is popped and cannot see it: for the duration of the
        call only, its module-level name points at this tracer's attention (restored after)."""
        original = F.scaled_dot_product_attention

        def traced(*a: Any, **k: Any) -> torch.Tensor:
            return self.attention(a, k)

        F.scaled_dot_product_attention = traced
        try:
            return F.multi_head_attention_forward(*args, **kwargs)
        finally:
            F.scaled_dot_product_attention = original

    def attention(self, args: tuple, kwargs: dict) -> torch.Tensor:
        call = attention.bind(args, kwargs)
        tracer = self.tracer
        backend, how = attention.choose(call, self.device)
        key = f"{backend} ({self.device}, {how})"
        tracer.trace.attention_backends[key] = tracer.trace.attention_backends.get(key, 0) + 1
        tracer.suppress += 1
        try:
            out = attention.run(backend, self.device, call)
        finally:
            tracer.suppress -= 1
        if tracer.counting and not tracer.phase_backward:
            tracer.attention(call["query"], call["key"], call["value"], out)
        return out

    def batch_norm(self, args: tuple, kwargs: dict) -> torch.Tensor:
        a = _BATCH_NORM.bind(*args, **kwargs)
        a.apply_defaults()
        p = a.arguments
        x = p["input"]
        if p["training"] and _one_value_per_channel(x, reduce_batch=True):
            self.tracer.note(
                f"batch norm at '{self.tracer.path()[0] or '(root)'}' sees one value per channel "
                f"(input {tuple(x.shape)}): this batch cannot train for real (PyTorch refuses it); "
                "its memory is modelled as if it could. Train with a batch of 2 or more")
        return torch.batch_norm(x, p["weight"], p["bias"], p["running_mean"], p["running_var"],
                                p["training"], p["momentum"], p["eps"], torch.backends.cudnn.enabled)

    def instance_norm(self, args: tuple, kwargs: dict) -> torch.Tensor:
        a = _INSTANCE_NORM.bind(*args, **kwargs)
        a.apply_defaults()
        p = a.arguments
        x = p["input"]
        if p["use_input_stats"] and _one_value_per_channel(x, reduce_batch=False):
            self.tracer.note(
                f"instance norm at '{self.tracer.path()[0] or '(root)'}' sees one value per "
                f"channel (input {tuple(x.shape)}): PyTorch refuses it in training; modelled as "
                "if it ran")
        return torch.instance_norm(x, p["weight"], p["bias"], p["running_mean"], p["running_var"],
                                   p["use_input_stats"], p["momentum"], p["eps"],
                                   torch.backends.cudnn.enabled)
