"""PyTorch's own measurements that the analysis tests compare against, written once."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from archlab.analysis.trace import storage_key


def flop_counter_macs(model: nn.Module, shape: tuple[int, ...]) -> int:
    """Multiply-adds of one example by PyTorch's FLOP counter (FLOPs // 2), run on meta copies
    of the weights so that nothing real is computed."""
    state = {k: torch.empty_like(v, device="meta") for k, v in
             [*model.named_parameters(), *model.named_buffers()]}
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        torch.func.functional_call(model.eval(), state, (torch.empty(1, *shape, device="meta"),))
    return counter.get_total_flops() // 2


def autograd_saved_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """What autograd saves in a real CPU training forward, deduplicated by storage, parameters
    and buffers excluded (they are weights, not activations)."""
    weights = {storage_key(t) for t in [*model.parameters(), *model.buffers()]}
    saved: dict[int, int] = {}

    def pack(t):
        key = storage_key(t)
        if key not in weights:
            saved[key] = t.untyped_storage().nbytes()
        return t

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x)
    del out
    return sum(saved.values())
