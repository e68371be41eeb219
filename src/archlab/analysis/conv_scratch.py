"""Scratch memory a CPU convolution allocates inside its call, besides its results.

oneDNN (PyTorch's CPU convolution) reorders its operands into blocked layouts: a copy the size of
the output in the forward pass, of the incoming gradient and of the saved input in the backward
pass (measured with the profiler's memory records; docs/analysis.md). That is the rule.

A dilated convolution whose dilated kernel reaches across the whole input (``(k - 1) * d`` at
least the input size: DeepLabv3's ASPP at rates 24 and 36 on a 28 x 28 map) does not fit
oneDNN's direct kernels: its backward falls back to an im2col GEMM whose column buffer is
``C_in * k_h * k_w * H_out * W_out`` per sample, several times the input (deeplabv3_resnet50:
peak training memory 11% above the rule). Its size depends on oneDNN's internal choices, so it
is not guessed: the backward of that one convolution configuration is run for real on the CPU at
batch 1 and 2 under the profiler, and the scratch is the line through the two (it grows with
the batch). Measured once per configuration in a process; the figure depends only on the
configuration, never on what ran before.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import torch


def falls_back(input_shape: tuple[int, ...], weight_shape: tuple[int, ...],
               dilation: tuple[int, ...]) -> bool:
    """A dilated kernel that spans the input (oneDNN's direct kernels do not take it)."""
    spatial = input_shape[2:]
    kernel = weight_shape[2:]
    return any(d > 1 and (k - 1) * d >= n for n, k, d in zip(spatial, kernel, dilation, strict=False))


def _scratch_once(input_shape, weight_shape, stride, padding, dilation, groups, output_mask) -> int:
    from torch.profiler import ProfilerActivity, profile

    x = torch.randn(input_shape, requires_grad=bool(output_mask[0]))
    w = torch.randn(weight_shape, requires_grad=bool(output_mask[1]))
    y = torch.nn.functional.conv2d(x, w, None, stride, padding, dilation, groups) \
        if len(input_shape) == 4 else torch.convolution(x, w, None, stride, padding, dilation,
                                                        False, [0] * len(stride), groups)
    grad = torch.ones_like(y)
    wanted = [t for t, m in ((x, output_mask[0]), (w, output_mask[1])) if m]
    torch.autograd.grad(y, wanted, grad, retain_graph=True)  # warm-up: first-call allocations
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        results = torch.autograd.grad(y, wanted, grad, retain_graph=True)
    live = peak = 0
    for _, nbytes in sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                            if e.name() == "[memory]"):
        live += nbytes
        peak = max(peak, live)
    kept = sum(r.untyped_storage().nbytes() for r in results)
    return max(0, peak - kept)


@lru_cache(maxsize=256)
def _scratch_line(per_sample_input, weight_shape, stride, padding, dilation, groups,
                  output_mask) -> tuple[float, float]:
    one = _scratch_once((1, *per_sample_input), weight_shape, stride, padding, dilation, groups,
                        output_mask)
    two = _scratch_once((2, *per_sample_input), weight_shape, stride, padding, dilation, groups,
                        output_mask)
    return float(2 * one - two), float(two - one)  # (fixed, per sample)


def measured_backward_scratch(input_shape, weight_shape, stride, padding, dilation, groups,
                              output_mask) -> int:
    """Scratch bytes of this convolution's backward at ``input_shape[0]`` samples. Measured in a
    thread of its own: the trace's thread is inside a dispatch mode, below autograd."""
    key = (tuple(input_shape[1:]), tuple(weight_shape), tuple(stride), tuple(padding),
           tuple(dilation), int(groups), tuple(bool(m) for m in output_mask))
    with ThreadPoolExecutor(1) as pool:
        fixed, per_sample = pool.submit(_scratch_line, *key).result()
    return max(0, int(round(fixed + per_sample * input_shape[0])))
