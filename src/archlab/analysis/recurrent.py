"""LSTMs as a real CPU runs them: one oneDNN kernel per layer and direction, not one aten call
per step.

On the meta device PyTorch unrolls ``nn.LSTM`` step by step (about fifteen aten calls a step,
forward and backward: sequencer2d_s's LSTMs make 17,000 records and most of its analysis time).
A real CPU run of a float32 LSTM without projections takes oneDNN's fused layer instead
(``aten.mkldnn_rnn_layer``, PyTorch's ``use_mkldnn``). The trace calls the aten ops that CPU
path calls, in its order (``mkldnn_rnn`` in PyTorch's ``native/mkldnn/RNN.cpp``): the
time-major contiguous input, one ``mkldnn_rnn_layer`` per layer and direction, the directions
concatenated, dropout between layers, the final states stacked. So

* the counts are one ``lstm`` record per layer and direction, from the LSTM's formula
  (:func:`archlab.analysis.aten.lstm_layer`): the same multiply-adds as the unrolled products;
* autograd saves, and the backward allocates, what the CPU run saves and allocates;
* the workspace oneDNN keeps for the backward pass, which PyTorch's meta kernel leaves empty,
  is measured: that one layer configuration runs once for real on the CPU and its workspace's
  size is kept (it depends on the configuration only, never on what ran before); so is the
  scratch its backward allocates besides its results (the profiler's memory records), which
  the memory model counts as alive during that call, as it does a convolution's.

Anything else (a GPU modelled, bfloat16, projections, packed sequences, GRU and plain RNN, which
the CPU also runs step by step) keeps PyTorch's own path.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import torch
from torch.utils._python_dispatch import _disable_current_modes

LSTM_MODE = 2  # oneDNN's rnn kind for an LSTM (ideep::rnn_kind::LSTM)
MKLDNN_RNN_LAYER = torch.ops.aten.mkldnn_rnn_layer.default
MKLDNN_RNN_LAYER_BACKWARD = torch.ops.aten.mkldnn_rnn_layer_backward.default


def takes_cpu_kernel(args: tuple, kwargs: dict, device: str) -> bool:
    """A call ``torch.lstm(input, (h0, c0), params, has_biases, num_layers, dropout, train,
    bidirectional, batch_first)`` that a real CPU would run with oneDNN."""
    if kwargs or len(args) != 9 or device != "cpu":
        return False
    x, hx, params = args[0], args[1], args[2]
    if not (isinstance(x, torch.Tensor) and isinstance(hx, list | tuple) and len(hx) == 2
            and isinstance(params, list | tuple)):
        return False  # the packed-sequence form passes batch sizes second
    if not (torch.backends.mkldnn.is_available() and torch._C._get_mkldnn_enabled()):
        return False
    h0, c0 = hx
    return (x.dtype == torch.float32 and x.numel() > 0 and h0.dim() == 3 and c0.dim() == 3
            and h0.shape[2] == c0.shape[2]  # different sizes: projections, which oneDNN lacks
            and all(isinstance(p, torch.Tensor) and p.dtype == torch.float32 for p in params))


def lstm(x: torch.Tensor, hx: Any, params: Any, has_biases: bool, num_layers: int,
         dropout: float, train: bool, bidirectional: bool, batch_first: bool) -> tuple:
    """``torch.lstm`` by the CPU's oneDNN path: (output, h_n, c_n)."""
    steps = (x.transpose(0, 1) if batch_first else x).contiguous()
    h0, c0 = hx[0].contiguous(), hx[1].contiguous()
    hidden = h0.shape[2]
    per_layer = 4 if has_biases else 2
    directions = 2 if bidirectional else 1
    layer_input = steps
    final_h, final_c = [], []
    for layer in range(num_layers):
        outputs = []
        for direction in range(directions):
            index = layer * directions + direction
            w = params[index * per_layer:(index + 1) * per_layer]
            b_ih = w[2] if has_biases else torch.zeros(w[0].shape, dtype=w[0].dtype, device=w[0].device)
            b_hh = w[3] if has_biases else torch.zeros(w[1].shape, dtype=w[1].dtype, device=w[1].device)
            out, h, c, _ = MKLDNN_RNN_LAYER(layer_input, w[0], w[1], b_ih, b_hh, h0[index], c0[index],
                                            direction > 0, [], LSTM_MODE, hidden, num_layers,
                                            has_biases, bidirectional, batch_first, train)
            outputs.append(out)
            final_h.append(h)
            final_c.append(c)
        layer_input = outputs[0] if directions == 1 else torch.cat(outputs, -1)
        if dropout != 0 and train and layer < num_layers - 1:
            layer_input = torch.dropout(layer_input, dropout, True)
    output = layer_input.transpose(0, 1) if batch_first else layer_input
    return output, torch.stack(final_h, 0), torch.stack(final_c, 0)


def with_workspace(args: tuple, out: tuple) -> tuple:
    """The meta kernel's results of ``mkldnn_rnn_layer`` with the workspace a CPU run allocates
    (the meta kernel's is empty). With gradients off the CPU runs oneDNN's inference kernel,
    which keeps none."""
    if not torch.is_grad_enabled():
        return out
    x, w_ih, w_hh = args[0], args[1], args[2]
    hx, cx = args[5], args[6]
    reverse, mode, hidden, num_layers, has_biases, bidirectional, batch_first, train = (
        args[7], args[9], args[10], args[11], args[12], args[13], args[14], args[15])
    size = workspace_bytes(tuple(x.shape), tuple(w_ih.shape), tuple(w_hh.shape), tuple(hx.shape),
                           tuple(cx.shape), bool(reverse), int(mode), int(hidden), int(num_layers),
                           bool(has_biases), bool(bidirectional), bool(batch_first), bool(train))
    workspace = torch.empty((size,), dtype=torch.uint8, device="meta")
    return (*out[:3], workspace)


@lru_cache(maxsize=256)
def _measure(x_shape, ih_shape, hh_shape, hx_shape, cx_shape, reverse, mode, hidden, num_layers,
             has_biases, bidirectional, batch_first, train) -> int:
    x = torch.zeros(x_shape)
    w_ih, w_hh = torch.zeros(ih_shape), torch.zeros(hh_shape)
    b_ih = torch.zeros(ih_shape[:1] if has_biases else ih_shape)
    b_hh = torch.zeros(hh_shape[:1] if has_biases else hh_shape)
    with torch.enable_grad():  # the training kernel, the one that keeps a workspace
        out = MKLDNN_RNN_LAYER(x, w_ih, w_hh, b_ih, b_hh, torch.zeros(hx_shape), torch.zeros(cx_shape),
                               reverse, [], mode, hidden, num_layers, has_biases, bidirectional,
                               batch_first, train)
    return 0 if out[3] is None else out[3].untyped_storage().nbytes()


def workspace_bytes(*config: Any) -> int:
    """Bytes of oneDNN's workspace for one LSTM layer configuration, measured by running it once
    on the CPU (outside the trace's modes)."""
    with _disable_current_modes():
        return _measure(*config)


def _profiled_peak(run: Any) -> tuple[int, Any]:
    """(peak bytes allocated during ``run()`` by the profiler's memory records, its result)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = run()
    live = peak = 0
    for _, nbytes in sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                            if e.name() == "[memory]"):
        live += nbytes
        peak = max(peak, live)
    return peak, result


@lru_cache(maxsize=256)
def _measure_backward(x_shape, ih_shape, hh_shape, hx_shape, reverse, mode, hidden, num_layers,
                      has_biases, bidirectional, batch_first) -> int:
    x = torch.randn(x_shape)
    w_ih, w_hh = torch.randn(ih_shape), torch.randn(hh_shape)
    b_ih = torch.zeros(ih_shape[:1] if has_biases else ih_shape)
    b_hh = torch.zeros(hh_shape[:1] if has_biases else hh_shape)
    hx, cx = torch.zeros(hx_shape), torch.zeros(hx_shape)
    with torch.enable_grad():
        out, hy, cy, workspace = MKLDNN_RNN_LAYER(x, w_ih, w_hh, b_ih, b_hh, hx, cx, reverse, [], mode,
                                                  hidden, num_layers, has_biases, bidirectional,
                                                  batch_first, True)
    grads = (torch.ones_like(out), torch.ones_like(hy), torch.ones_like(cy))

    def backward() -> tuple:
        return MKLDNN_RNN_LAYER_BACKWARD(x, w_ih, w_hh, b_ih, b_hh, hx, cx, out, hy, cy, *grads,
                                         reverse, mode, hidden, num_layers, has_biases, True,
                                         bidirectional, [], batch_first, workspace)

    backward()  # warm-up: first-call allocations (oneDNN's primitive cache)
    peak, results = _profiled_peak(backward)
    kept = sum(r.untyped_storage().nbytes() for r in results if r is not None)
    return max(0, peak - kept)


def backward_scratch(args: tuple) -> int:
    """Bytes a CPU ``mkldnn_rnn_layer_backward`` allocates besides its results (oneDNN's reordered
    weights and scratch), measured once per configuration like the workspace."""
    x, w_ih, w_hh, hx = args[0], args[1], args[2], args[5]
    config = (tuple(x.shape), tuple(w_ih.shape), tuple(w_hh.shape), tuple(hx.shape), bool(args[13]),
              int(args[14]), int(args[15]), int(args[16]), bool(args[17]), bool(args[19]),
              bool(args[21]))
    with _disable_current_modes():
        return _measure_backward(*config)


def clear() -> None:
    _measure.cache_clear()
    _measure_backward.cache_clear()
