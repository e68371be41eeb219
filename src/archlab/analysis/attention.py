"""Which kernel scaled dot-product attention runs on the real device, and running that kernel on
meta tensors, so that the memory trace saves what the real run saves.

On the meta device ``F.scaled_dot_product_attention`` always takes the math path: it saves the
L x L attention probabilities for backward. A real CPU or GPU run usually takes a fused kernel
(flash attention on the CPU) that saves only q, k, v, the output and one log-sum-exp per row:
for ViT-B/16 the math path saves 31% more. So the trace asks which backend the real device
would choose and runs that backend's own aten kernel, which PyTorch gives meta kernels:

* CPU: PyTorch's own choice (``torch._fused_sdp_choice``) on small CPU stand-ins with the same
  sizes (batch 1), strides, dtypes, mask, dropout and causality: the same checks decide it.
* CUDA: PyTorch's own choice when a GPU is present; without one a stated model of its rules
  (flash for 16-bit inputs without a mask and head size <= 256, memory-efficient attention for
  head sizes divisible by 8 otherwise, else math); the output says it was modelled.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import _disable_current_modes

MATH, FLASH, EFFICIENT = "math", "flash", "efficient"
_CHOICE = {0: MATH, 1: FLASH, 2: EFFICIENT}  # torch.nn.attention.SDPBackend values
_PARAMS = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")


def bind(args: tuple, kwargs: dict) -> dict[str, Any]:
    """The call's arguments by name (F.scaled_dot_product_attention's signature)."""
    bound = dict(zip(_PARAMS, args, strict=False))
    bound.update(kwargs)
    bound.setdefault("attn_mask", None)
    bound.setdefault("dropout_p", 0.0)
    bound.setdefault("is_causal", False)
    bound.setdefault("scale", None)
    bound.setdefault("enable_gqa", False)
    return bound


def _stand_in(t: torch.Tensor | None, device: str) -> torch.Tensor | None:
    """A real tensor with ``t``'s strides and dtype, batch cut to 1 (the choice checks sizes,
    strides and dtypes, never values)."""
    if t is None:
        return None
    shape = list(t.shape)
    if len(shape) == 4 and shape[0] > 1:
        shape[0] = 1
    stand = torch.empty_strided(shape, t.stride(), dtype=t.dtype, device=device)
    # the choice checks gradients too (a learned mask keeps a CPU run off flash attention)
    return stand.requires_grad_(t.requires_grad and torch.is_grad_enabled() and t.is_floating_point())


def choose(call: dict[str, Any], device: str) -> tuple[str, str]:
    """(backend, how it was decided) for the real ``device`` ('cpu' or 'cuda')."""
    q, k, v, mask = call["query"], call["key"], call["value"], call["attn_mask"]
    if not all(isinstance(t, torch.Tensor) for t in (q, k, v)):
        return MATH, "not tensors"
    if device == "cuda" and not torch.cuda.is_available():
        return _cuda_model(q, k, v, mask, call), "modelled (no GPU here)"
    with _disable_current_modes():
        stand = [_stand_in(t, device) for t in (q, k, v, mask)]
        try:
            kind = torch._fused_sdp_choice(*stand[:3], stand[3], call["dropout_p"], call["is_causal"],
                                           scale=call["scale"], enable_gqa=call["enable_gqa"])
        except (RuntimeError, TypeError):
            return MATH, "PyTorch's choice failed"
    return _CHOICE.get(int(kind), MATH), "PyTorch's own choice"


def _cuda_model(q, k, v, mask, call) -> str:
    head = q.shape[-1]
    if q.dim() != 4 or call["enable_gqa"] and q.shape[1] != k.shape[1]:
        return MATH
    if q.dtype in (torch.float16, torch.bfloat16) and mask is None and head <= 256 and head % 8 == 0:
        return FLASH
    if head % 8 == 0 and q.dtype in (torch.float16, torch.bfloat16, torch.float32):
        return EFFICIENT
    return MATH


def _float_mask(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """A boolean mask becomes an additive one (0 / -inf), as PyTorch does before a fused kernel."""
    if mask is None or mask.dtype != torch.bool:
        return mask
    return torch.zeros_like(mask, dtype=dtype).masked_fill_(mask.logical_not(), -math.inf)


def run(backend: str, device: str, call: dict[str, Any]) -> torch.Tensor:
    """Attention with ``backend``'s own kernel (on meta tensors: its meta kernel)."""
    q, k, v = call["query"], call["key"], call["value"]
    aten = torch.ops.aten
    if backend == FLASH and device == "cpu":
        return aten._scaled_dot_product_flash_attention_for_cpu(
            q, k, v, call["dropout_p"], call["is_causal"],
            attn_mask=_float_mask(call["attn_mask"], q.dtype), scale=call["scale"])[0]
    if backend == FLASH:
        return aten._scaled_dot_product_flash_attention(
            q, k, v, call["dropout_p"], call["is_causal"], False, scale=call["scale"])[0]
    if backend == EFFICIENT:
        grad = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))
        return aten._scaled_dot_product_efficient_attention(
            q, k, v, _float_mask(call["attn_mask"], q.dtype), grad, call["dropout_p"],
            call["is_causal"], scale=call["scale"])[0]
    kwargs = {"attn_mask": call["attn_mask"], "dropout_p": call["dropout_p"],
              "is_causal": call["is_causal"], "scale": call["scale"]}
    if call["enable_gqa"]:
        kwargs["enable_gqa"] = True
    return F.scaled_dot_product_attention(q, k, v, **kwargs)
