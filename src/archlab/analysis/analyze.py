"""``archlab.analyze``: one entry point for designs and for any ``torch.nn.Module``.

* A design is counted analytically from its resolved graph (``design.graph.ops()``: no tensors).
  Its memory comes from a meta-device trace of the design built on the meta device.
* A module is traced on the meta device (:mod:`archlab.analysis.trace`).

Both give the same per-op records, so the roll-ups, the output and the design review are the same
code for both.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torch import nn

from ..errors import UsageError
from ..ops import Op, Shape
from .latency import measure_latency
from .memory import Memory, check_optimizer, memory_from_trace, parse_bytes
from .result import Analysis, Row, roll_up
from .trace import Trace, trace_module

_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


def _module_blocks(module: nn.Module, trace: Trace) -> list[Row]:
    """Block-level rows of a hand-written module: its top-level children, except that a
    container child (Sequential/ModuleList, a stage) contributes its own children."""
    rows = []
    for name, child in module.named_children():
        if isinstance(child, _CONTAINERS) and len(child) > 0:
            for sub, grand in child.named_children():
                path = f"{name}.{sub}"
                rows.append(Row(path, type(grand).__name__, name, trace.module_outputs.get(path)))
        else:
            rows.append(Row(name, type(child).__name__, name, trace.module_outputs.get(name)))
    return rows


def _settle_weights_only(module: nn.Module, shape: Shape, counting: Trace, dtype: torch.dtype,
                         device: str) -> list[Op]:
    """Work that reads no network input is weights-only (once per batch, reported apart) only if
    it does not grow with the batch: a tensor recomputed for every sample (a positional encoding
    made from the batch's shape, a constant table expanded over the batch) is not a constant.
    A second counting trace at batch 2 tells them apart, record by record; it runs only when
    there is weights-only work at all."""
    ops = counting.ops
    marked = [i for i, op in enumerate(ops) if op.extra.get("weights_only_multiply_adds")
              or op.extra.get("weights_only_elementwise")]
    if not marked:
        return ops
    # the same record at batch 2: the n-th op of its kind at its module path
    seen: dict[tuple[str, str], int] = {}
    nth = {}
    for i, op in enumerate(ops):
        nth[i] = seen[op.kind, op.path] = seen.get((op.kind, op.path), -1) + 1
    wanted = {(ops[i].kind, ops[i].path, nth[i]) for i in marked}
    # the batch-2 trace stops once it has these records (a positional encoding is made early)
    twice = trace_module(module, shape, 2, dtype=dtype, device=device, wanted=wanted).ops
    seen.clear()
    at_two: dict[tuple[str, str, int], Op] = {}
    for op in twice:
        n = seen[op.kind, op.path] = seen.get((op.kind, op.path), -1) + 1
        at_two[op.kind, op.path, n] = op
    unattributed = dict(counting.unattributed)
    settled = list(ops)
    for i in marked:
        one = ops[i].extra
        two = at_two.get((ops[i].kind, ops[i].path, nth[i]))
        if two is None:
            continue
        macs, elt = one["weights_only_multiply_adds"], one["weights_only_elementwise"]
        grown = (two.extra.get("weights_only_multiply_adds", two.multiply_adds),
                 two.extra.get("weights_only_elementwise", two.elementwise))
        # the multiply-adds decide where there are any (at batch 2 a bias may be a separate add)
        if (grown[0] == 2 * macs > 0) or (macs == 0 and grown[1] == 2 * elt > 0):
            params = sum(unattributed.pop(k, 0) for k in one.get("param_keys", ()))
            settled[i] = replace(ops[i], multiply_adds=macs, elementwise=elt, params=params,
                                 extra={"recomputed_per_sample": True})
    return settled


def _design_blocks(design: Any) -> list[Row]:
    return [Row(n.path, n.block, n.stage or n.path.split(".")[0], tuple(n.output_shape))
            for n in design.graph.nodes]


def _design_ops(design: Any, bytes_per_element: int) -> tuple[list[Op], list[Row]]:
    """Analytic op records and their block rows, filled node by node (every op of a node lies
    under its path, so no prefix search: this is the fast path a search screens designs with)."""
    ops: list[Op] = []
    rows = []
    for n in design.graph.nodes:
        node_ops = [op if op.kind not in INFERENCE_NOOPS else replace(op, elementwise=0)
                    for op in n.ops()]
        ops.extend(node_ops)
        # summed here rather than op by op through Row.add: this loop is the search's hot path
        rows.append(Row(
            n.path, n.block, n.stage or n.path.split(".")[0], tuple(n.output_shape),
            params=sum(op.params for op in node_ops),
            multiply_adds=sum(op.multiply_adds for op in node_ops),
            elementwise=sum(op.elementwise for op in node_ops),
            memory_access_bytes=bytes_per_element * sum(op.memory_access for op in node_ops),
            ops=len(node_ops),
        ))
    return ops, rows


def _meta_model(design: Any) -> nn.Module:
    from ..build import build_graph

    with torch.device("meta"):
        return build_graph(design.graph, design.name)


def _largest_batch(module: nn.Module, shape: Shape, budget: int, optimizer: str, dtype,
                   cuda: bool) -> int:
    """Largest batch whose peak training memory fits (0 if none). Activations grow linearly
    with the batch: two traces give the line, one secant step from near the answer refines it,
    and traces either side of the estimate pin the exact boundary."""
    cache: dict[int, int | None] = {}

    def peak(b: int) -> int | None:
        if b not in cache:
            try:
                t = trace_module(module, shape, b, dtype=dtype, counting=False, backward=True,
                                 device="cuda" if cuda else "cpu")
                cache[b] = memory_from_trace(t, optimizer, cuda).peak_training_bytes
            except UsageError:  # e.g. BatchNorm1d cannot train on a batch of one
                cache[b] = None
        return cache[b]

    def fits(b: int) -> bool:
        p = peak(b)
        return p is not None and p <= budget

    p2, p4 = peak(2), peak(4)
    if p2 is None or p4 is None:
        return _boundary(fits, 1)
    guess = _solve_linear(2, p2, 4, p4, budget)
    if guess > 4 and peak(guess) is not None:  # the line is straighter near the answer
        guess = _solve_linear(4, p4, guess, peak(guess), budget)
    return _boundary(fits, guess)


def _solve_linear(x0: float, y0: float, x1: float, y1: float, target: float) -> int:
    """x where the line through (x0, y0), (x1, y1) reaches target (at least 1)."""
    slope = (y1 - y0) / (x1 - x0) if x1 != x0 else 0
    if slope <= 0:
        return 1
    return max(1, int(x0 + (target - y0) / slope))


def _largest_input(module: nn.Module, shape: Shape, batch: int, budget: int, optimizer: str,
                   dtype, cuda: bool) -> int | None:
    """Largest square spatial size (same channels) whose peak training memory fits. Activation
    memory grows with the pixel count, so two traces give peak = fixed + per_pixel * side^2; the
    estimate is then pinned down by bisection between traces that fit and that do not.
    None for inputs without two spatial axes."""
    if len(shape) != 3:
        return None
    cache: dict[int, int | None] = {}

    def peak(side: int) -> int | None:
        if side not in cache:
            try:
                t = trace_module(module, (shape[0], side, side), batch, dtype=dtype,
                                 counting=False, backward=True, device="cuda" if cuda else "cpu")
                cache[side] = memory_from_trace(t, optimizer, cuda).peak_training_bytes
            except UsageError:  # too small for the network's downsampling
                cache[side] = None
        return cache[side]

    def fits(side: int) -> bool:
        p = peak(side)
        return p is not None and p <= budget

    s0 = max(shape[1], shape[2])
    p0, p1 = peak(s0), peak(2 * s0)
    if p0 is None or p1 is None:
        return None
    # linear in the pixel count side^2; one secant step from the first guess
    guess = int(_solve_linear(s0**2, p0, 4 * s0**2, p1, budget) ** 0.5)
    pg = peak(guess)
    if pg is not None and guess != 2 * s0:
        guess = int(_solve_linear(4 * s0**2, p1, guess**2, pg, budget) ** 0.5)
    return _boundary(fits, guess) or None


def _boundary(fits, guess: int) -> int:
    """The largest n >= 1 with fits(n) (0 if none), for a monotone fits() and a close guess:
    gallop away from the guess by 1, 2, 4, ... then bisect, so a good guess costs two traces."""
    guess = max(1, guess)
    if fits(guess):
        low, step = guess, 1
        while fits(low + step):
            low, step = low + step, step * 2
        high = low + step
    else:
        high, step = guess, 1
        while high - step >= 1 and not fits(high - step):
            high, step = high - step, step * 2
        low = max(0, high - step)  # fits, or 0: a sentinel below every candidate
    while high - low > 1:
        mid = (low + high) // 2
        if fits(mid):
            low = mid
        else:
            high = mid
    return low


def analyze(
    target: Any,
    input_shape: Shape | None = None,
    batch: int = 1,
    optimizer: str = "adam",
    budget: str | int | None = None,
    latency: bool = False,
    device: str = "cpu",
    *,
    memory: bool = True,
    backward_latency: bool = False,
    rounds: int = 15,
    threads: int | None = None,
    dtype: torch.dtype = torch.float32,
    input_dtype: torch.dtype | None = None,
    method: str = "analytic",
    **variables: Any,
) -> Analysis:
    """Analyse a design or any module: counts per op, block and stage; memory; latency.

    target:       a Design, anything ``archlab.load`` accepts (path, zoo name, dict, YAML
                  text), or a ``torch.nn.Module`` (then ``input_shape`` is required).
    input_shape:  per-sample input shape, e.g. (3, 224, 224); a design knows its own.
    batch:        batch size for memory and latency (counts are per sample).
    optimizer:    sgd, sgd-momentum, adam, adamw (optimizer state in training memory).
    budget:       memory budget ('8GiB'): adds the largest batch and largest square input.
    latency:      measure forward latency on ``device`` (backward_latency: forward+backward too).
    memory:       False skips the memory trace (counts only: the fast path for searches).
    dtype:        dtype of weights and activations (bytes per element of memory access).
    input_dtype:  dtype of the input when it differs (torch.long for token ids); default dtype.
    method:       for designs, 'analytic' (block formulas) or 'trace' (trace the built design).

    >>> import archlab
    >>> a = archlab.analyze({"input": [3, 32, 32], "layers": [{"block": "conv", "out": 8}]},
    ...                     memory=False)
    >>> a.totals["multiply_adds"]
    221184
    """
    check_optimizer(optimizer)
    if batch < 1:
        raise UsageError(f"batch must be at least 1, got {batch}", fix="use --batch 1 or more")
    if method not in ("analytic", "trace"):
        raise UsageError(f"method must be 'analytic' or 'trace', got '{method}'")
    budget_bytes = parse_bytes(budget) if budget is not None else None
    bytes_per_element = torch.empty((), dtype=dtype).element_size()
    in_dtype = input_dtype or dtype
    cuda = torch.device(device).type == "cuda"
    notes: list[str] = []

    if isinstance(target, nn.Module):
        if variables:
            raise UsageError(f"variables {sorted(variables)} apply to designs, not to modules",
                             fix="pass the module already configured")
        if input_shape is None:
            raise UsageError("analysing a module needs its input shape",
                             fix="pass input_shape=(3, 224, 224) (or --input 3x224x224)")
        module, name, shape, design = target, type(target).__name__, tuple(input_shape), None
        counting = trace_module(module, shape, 1, dtype=in_dtype, device=device)
        ops: list[Op] = _settle_weights_only(module, shape, counting, in_dtype, device)
        notes += counting.notes
        blocks = _module_blocks(module, counting)
        params = sum(p.numel() for p in module.parameters())
        trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
        source = "module"
    else:
        from ..design import Design, load

        design = target if isinstance(target, Design) and not variables else load(target, **variables)
        name, shape = design.name, tuple(design.graph.input_shape)
        if input_shape is not None and tuple(input_shape) != shape:
            raise UsageError(f"the design's input is {shape}, got input_shape={tuple(input_shape)}",
                             fix="change the design's 'input' (or a variable), not input_shape")
        module = None
        if method == "trace" or memory:
            module = _meta_model(design)
        if method == "trace":
            counting = trace_module(module, shape, 1, dtype=in_dtype, device=device)
            ops = _settle_weights_only(module, shape, counting, in_dtype, device)
            notes += counting.notes
            blocks = _design_blocks(design)
        else:
            ops, blocks = _design_ops(design, bytes_per_element)
        params = sum(op.params for op in ops) if method == "analytic" else \
            sum(p.numel() for p in module.parameters())
        trainable = params
        source = "design"

    mem: Memory | None = None
    saved_by_path = None
    if memory:
        step = trace_module(module, shape, batch, dtype=in_dtype, counting=False, backward=True,
                            device=device)
        mem = memory_from_trace(step, optimizer, cuda)
        notes += [n for n in step.notes if n not in notes]
        saved_by_path = step.saved_by_path()
        if budget_bytes is not None:
            mem.budget_bytes = budget_bytes
            mem.largest_batch = _largest_batch(module, shape, budget_bytes, optimizer, in_dtype, cuda)
            mem.largest_input = _largest_input(module, shape, batch, budget_bytes, optimizer, in_dtype,
                                               cuda)
    elif budget_bytes is not None:
        raise UsageError("a memory budget needs the memory analysis", fix="drop memory=False")

    filled = design is not None and method == "analytic"
    nodes, stages, total = roll_up(ops, blocks, bytes_per_element, saved_by_path, filled)
    totals = {
        "params": params,
        "trainable_params": trainable,
        "frozen_params": params - trainable,
        "params_in_ops": total.params,   # < params when some parameters are never used
        "multiply_adds": total.multiply_adds,
        "flops": total.flops,
        "elementwise": total.elementwise,
        "memory_access_bytes": total.memory_access_bytes,
        "arithmetic_intensity": round(total.arithmetic_intensity, 4),
        "ops": total.ops,
        # work on parameters/constants alone (reparametrised weights): once per batch, not per sample
        "weights_only_multiply_adds": sum(op.extra.get("weights_only_multiply_adds", 0) for op in ops),
        "weights_only_elementwise": sum(op.extra.get("weights_only_elementwise", 0) for op in ops),
        "output_shape": None,
    }
    if design is not None:
        totals["output_shape"] = list(design.graph.output_shape)
    elif counting.module_outputs.get(""):
        totals["output_shape"] = list(counting.module_outputs[""])

    timing = None
    if latency or backward_latency:
        real = module if design is None else _real_model(design)
        stage_of = {row.path: row.stage for row in nodes if row.path != "(root)"}
        timing = measure_latency(real, shape, batch, device=device, backward=backward_latency,
                                 rounds=rounds, threads=threads, stage_of=stage_of,
                                 input_dtype=in_dtype)

    return Analysis(
        name=name,
        source=source,
        input_shape=shape,
        batch=batch,
        dtype=str(dtype).replace("torch.", ""),
        bytes_per_element=bytes_per_element,
        ops=ops,
        nodes=nodes,
        stages=stages,
        totals=totals,
        memory=mem,
        latency=timing,
        notes=notes,
    )


# ops that do nothing at inference: the counts are for the inference form (as traced in eval mode)
INFERENCE_NOOPS = {"dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout"}


def _real_model(design: Any) -> nn.Module:
    from ..build import build

    return build(design)
