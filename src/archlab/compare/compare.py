"""``archlab.compare.compare``: a baseline and its variants, designs and/or runs, figure by
figure; with ``data``, each design is first trained with the same seed, split and options.

>>> from archlab.compare import compare
>>> c = compare(["mnist_cnn", "mnist_cnn?width=8"], review=False)
>>> [round(r["ratio"]["mnist_cnn?width=8"], 2) for r in c.rows() if r["name"] == "params"]
[0.54]
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..errors import UsageError
from .diff import diff_designs
from .figures import design_figures
from .operands import Operand, parse_operands
from .result import PARETO_COSTS, Comparison, Entry
from .runs import run_figures, time_to_reach


def compare(operands: list[Any], *, variables: dict[str, Any] | None = None,
            batch: int | None = None, latency: bool = False, review: bool | None = None,
            latency_rounds: int = 15, data: Any = None, train_options: dict | None = None,
            cost: str = "multiply_adds", out: str | Path = "runs", progress: bool = False) -> Comparison:
    """Compare operands (texts as ``archlab compare`` takes them, or :class:`Operand`);
    the first is the baseline.

    variables:  design variables applied to every design operand (``--set``).
    batch:      also saved activations and peak training memory at this batch (meta trace).
    latency:    also measure forward latency (the analysis' protocol, ``latency_rounds`` rounds).
    review:     count review findings by severity. None (default): for up to REVIEW_AUTO
                designs; the review traces each design on the meta device (~0.25 s for a
                ResNet-50), so a screen of many variants stays on the analytic path.
    data:       train every design operand on this data first (``archlab.train``), with the same
                ``train_options`` (epochs, seed, ...) for all; runs land in ``out``.
    cost:       the cost axis of the Pareto plot (one of PARETO_COSTS).
    """
    if cost not in PARETO_COSTS:
        raise UsageError(f"unknown Pareto cost '{cost}'", fix="use one of " + ", ".join(PARETO_COSTS))
    ops = [o if isinstance(o, Operand) else None for o in operands]
    texts = [o for o in operands if not isinstance(o, Operand)]
    parsed = iter(parse_operands([str(t) for t in texts], variables) if texts else [])
    ops = [o if o is not None else next(parsed) for o in ops]
    notes: list[str] = []
    _check_tasks(ops)
    if data is not None:
        _train_designs(ops, data, dict(train_options or {}), Path(out), progress)
    entries = [Entry(op) for op in ops]
    designs = sum(op.design is not None for op in ops)
    if review is None:
        review = designs <= REVIEW_AUTO
        if not review:
            notes.append(f"the design review was skipped for {designs} designs (it traces each one; "
                         f"automatic for up to {REVIEW_AUTO}): add --review to count findings")
    for e in entries:
        for problem in e.operand.problems:
            notes.append(f"{e.label}: {problem}")
        if e.operand.design is not None:
            e.figures = design_figures(e.operand.design, batch=batch, latency=latency, review=review,
                                       latency_rounds=latency_rounds)
        if e.operand.run is not None:
            e.run = run_figures(e.operand.run)
    base = entries[0]
    for e in entries[1:]:
        if base.operand.design is not None and e.operand.design is not None:
            e.diff = diff_designs(base.operand.design, e.operand.design)
    comparison = Comparison(entries, notes, batch=batch, cost=cost)
    _check_inputs(comparison)
    _check_runs(comparison)
    if base.run is not None:
        target = base.run.final_val
        for e in entries:
            if e.run is not None:
                e.run.reached = time_to_reach(e.run, target)
    if comparison.metric and not comparison.pareto():
        notes.append(f"no operand has both a {comparison.metric} and a {cost} figure: no Pareto plot")
    return comparison


REVIEW_AUTO = 6  # designs reviewed by default; more are a screen, kept on the analytic path


def _check_tasks(ops: list[Operand]) -> None:
    base = ops[0]
    for op in ops[1:]:
        if base.task and op.task and base.task != op.task:
            raise UsageError(
                f"cannot compare a {base.task} design with a {op.task} one: the baseline "
                f"'{base.label}' is {base.task}, '{op.label}' is {op.task}",
                fix="compare designs of one task (their quality metrics differ: accuracy, IoU, mse)")


def _check_inputs(c: Comparison) -> None:
    """Different input shapes: per-sample cost figures describe different inputs, so only the
    figures that do not depend on the input (parameters, findings) get a change column."""
    base = c.baseline.operand.design
    if base is None:
        return
    for e in c.entries[1:]:
        d = e.operand.design
        if d is not None and tuple(d.input_shape) != tuple(base.input_shape):
            c.input_dependent_comparable = False
            c.notes.append(
                f"input shapes differ: the baseline '{c.baseline.label}' takes "
                f"{'x'.join(map(str, base.input_shape))}, '{e.label}' takes "
                f"{'x'.join(map(str, d.input_shape))}; figures that depend on the input "
                "(multiply-adds, memory, latency) are shown without a change against the baseline")


def _check_runs(c: Comparison) -> None:
    runs = [e for e in c.entries if e.run is not None and e.run.data]
    if len(runs) < 2:
        return
    first = runs[0]
    for e in runs[1:]:
        if e.run.data != first.run.data:
            raise UsageError(
                f"runs trained on different data cannot be compared on quality: '{first.label}' "
                f"on {first.run.data}, '{e.label}' on {e.run.data}",
                fix="compare runs of the same data, or give the designs with --data to train "
                    "them all the same way")
        if e.run.seed != first.run.seed and e.run.seed is not None and first.run.seed is not None:
            c.notes.append(f"'{e.label}' was trained with seed {e.run.seed}, '{first.label}' with "
                           f"{first.run.seed}: their splits and initialisations differ")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "-", text.replace("?", "-").replace("&", "-")).strip("-.")[:80]


def _train_designs(ops: list[Operand], data: Any, options: dict, out: Path, progress: bool) -> None:
    """Train each design operand with the same seed, split and options (run operands are taken
    as they are). Runs go to ``out/compare-<time>/<operand>``."""
    from datetime import datetime, timezone

    from ..train.run import train

    options.setdefault("seed", 0)
    if options["seed"] == "random":  # one drawn seed for all: the same split for every operand
        import secrets

        options["seed"] = secrets.randbelow(2**31 - 1)
    options.setdefault("progress", progress)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    folder = out / f"compare-{stamp}"
    for i, op in enumerate(ops):
        if op.run is not None or op.problems:
            continue
        run = train(op.design, data, out=str(folder), name=f"{i}-{_slug(op.label)}", **options)
        op.run = run
