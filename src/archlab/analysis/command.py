"""``archlab analyze``: the analysis of a design or of a user's own module, as a table, JSON
(schema ``archlab.analysis/1``, docs/analysis.md) or CSV, with an optional cost plot.

    archlab analyze resnet50 --batch 32 --optimizer adam --budget 8GiB
    archlab analyze path/to/model.py:make_model --input 3x224x224 --json

``path/to/model.py:factory`` imports the user's own Python file named on the command line and
calls ``factory()`` to get the module; design files are data and never run code.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from typing import Any

from .. import tables
from ..errors import UsageError
from .memory import OPTIMIZERS, format_bytes
from .result import Analysis

DEPTHS = ("block", "stage", "op")
INPUT_DTYPES = ("bfloat16", "float16", "float32", "int64")


def parse_input(text: str) -> tuple[int, ...]:
    """'3x224x224' -> (3, 224, 224)."""
    try:
        shape = tuple(int(v) for v in text.lower().replace(",", "x").split("x"))
    except ValueError:
        shape = ()
    if not shape or any(v <= 0 for v in shape):
        raise UsageError(f"cannot read --input '{text}': expected positive sizes joined by 'x', "
                         "channels first, no batch", fix="write --input 3x224x224")
    return shape


def load_module(spec: str) -> Any:
    """'path/to/model.py:factory' -> factory() (the user's own file, given on the command line)."""
    file, _, attr = spec.rpartition(":")
    path = Path(file)
    if not path.is_file():
        raise UsageError(f"no Python file '{file}' (from '{spec}')",
                         fix="write path/to/model.py:factory with an existing file")
    module_spec = importlib.util.spec_from_file_location(f"_archlab_user_{path.stem}", path)
    user = importlib.util.module_from_spec(module_spec)
    sys.path.insert(0, str(path.parent.resolve()))
    from ..errors import register_user_file, user_code

    register_user_file(path)
    try:
        with user_code(f"importing {path.name}", str(path)):
            module_spec.loader.exec_module(user)
    finally:
        sys.path.pop(0)
    factory = getattr(user, attr, None)
    if factory is None:
        names = sorted(n for n in vars(user) if not n.startswith("_") and callable(vars(user)[n]))
        raise UsageError(f"'{file}' has no '{attr}'; callables in it: {', '.join(names) or 'none'}",
                         fix=f"write {file}:NAME with one of them")
    import torch

    with user_code(f"calling {attr}() from {path.name}", str(path)):
        model = factory() if not isinstance(factory, torch.nn.Module) else factory
    if not isinstance(model, torch.nn.Module):
        raise UsageError(f"{spec} returned {type(model).__name__}, expected a torch.nn.Module",
                         fix="make the factory return the model")
    return model


def _is_module_spec(text: str) -> bool:
    file, sep, attr = text.rpartition(":")
    return bool(sep) and file.endswith(".py") and bool(attr)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..design.design import parse_assignments
    from .analyze import analyze

    common = dict(batch=args.batch, optimizer=args.optimizer, budget=args.budget,
                  input_dtype=getattr(torch, args.input_dtype) if args.input_dtype else None,
                  latency=args.latency or args.backward, backward_latency=args.backward,
                  device=args.device, memory=not args.no_memory, rounds=args.rounds,
                  threads=args.threads)
    input_shape = parse_input(args.input) if args.input else None
    if args.plot:  # before the work: a plot path that cannot be written is a clear error
        from ..limits import output_file

        if Path(args.plot).suffix.lower() not in (".png", ".svg", ".pdf"):
            raise UsageError(f"--plot writes .png, .svg or .pdf, received '{args.plot}'",
                             source=args.plot, fix="e.g. --plot cost.png")
        output_file(args.plot, "--plot")
    if _is_module_spec(args.design):
        if args.set:
            raise UsageError("--set applies to designs, not to a Python module",
                             fix="configure the model in its factory")
        result = analyze(load_module(args.design), input_shape=input_shape, **common)
    else:
        result = analyze(args.design, input_shape=input_shape, **common, **parse_assignments(args.set))
    if args.plot:
        from .plot import plot_cost

        plot_cost(result, args.plot, args.depth, variables=parse_assignments(args.set))
    if args.json:
        print(result.to_json())
    elif args.csv:
        sys.stdout.write(result.to_csv(args.depth))
    else:
        render(result, args.depth)
        if args.plot:
            print(f"plot written to {args.plot}")
    return 0


def _human(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{n:.0f}"


def render(a: Analysis, depth: str = "block") -> None:
    from rich.table import Table

    console = tables.console()
    table = Table(title=f"{a.name}: input {a.input_shape}, per sample", title_justify="left")
    for name, justify in (("path", "left"), ("block", "left"), ("output", "left"),
                          ("params", "right"), ("multiply-adds", "right"), ("element-wise", "right"),
                          ("memory access", "right"), ("ops/byte", "right"),
                          (f"saved act. (batch {a.batch})", "right")):
        table.add_column(name, justify=justify, overflow="fold")
    for r in a.rows(depth):
        table.add_row(r.path, r.block, "x".join(map(str, r.output_shape)) if r.output_shape else "",
                      f"{r.params:,}", _human(r.multiply_adds), _human(r.elementwise),
                      format_bytes(r.memory_access_bytes), f"{r.arithmetic_intensity:.1f}",
                      format_bytes(r.saved_activation_bytes))
    t = a.totals
    table.add_section()
    table.add_row("total", "", "x".join(map(str, t["output_shape"] or [])), f"{t['params']:,}",
                  _human(t["multiply_adds"]), _human(t["elementwise"]),
                  format_bytes(t["memory_access_bytes"]), f"{t['arithmetic_intensity']:.1f}",
                  format_bytes(a.memory.saved_activation_bytes) if a.memory else "-")
    tables.print_table(table, console, optional=(f"saved act. (batch {a.batch})", "ops/byte",
                                                  "element-wise", "block"))
    console.print(f"parameters: {t['params']:,} ({t['trainable_params']:,} trainable, "
                  f"{t['frozen_params']:,} frozen), as PyTorch counts them (BatchNorm running "
                  f"statistics are buffers)")
    console.print(f"multiply-adds: {_human(t['multiply_adds'])} per sample = {_human(t['flops'])} FLOPs "
                  "(1 multiply-add = 2 FLOPs); element-wise ops counted separately; inference form")
    if t.get("weights_only_multiply_adds") or t.get("weights_only_elementwise"):
        console.print(f"weights-only work (on parameters and constants alone, done once per batch, "
                      f"not in the per-sample figures): {_human(t['weights_only_multiply_adds'])} "
                      f"multiply-adds, {_human(t['weights_only_elementwise'])} element-wise; "
                      "PyTorch's FLOP counter at batch 1 includes it")
    if a.memory:
        m = a.memory
        console.print(f"memory at batch {m.batch}, {m.optimizer}: peak training "
                      f"{format_bytes(m.peak_training_bytes)}, peak inference "
                      f"{format_bytes(m.peak_inference_bytes)}")
        parts = ", ".join(f"{k.replace('_', ' ')} {format_bytes(v)}"
                          for k, v in m.peak_training_breakdown.items())
        console.print(f"  at the training peak: {parts}", style="dim")
        if m.attention_backends:
            console.print("  attention memory as the kernel the device runs: " + ", ".join(
                f"{k} x{v}" for k, v in m.attention_backends.items()), style="dim")
        if m.budget_bytes is not None:
            side = f"{m.largest_input}x{m.largest_input}" if m.largest_input else "n/a"
            console.print(f"budget {format_bytes(m.budget_bytes)}: largest batch {m.largest_batch}, "
                          f"largest square input {side} at batch {m.batch}")
    for note in a.notes:
        console.print(f"note: {note}")
    if a.latency:
        lat = a.latency
        text = (f"latency on {lat.device} ({lat.environment.get('threads')} threads, batch {lat.batch}): "
                f"forward {lat.forward.median_s * 1e3:.2f} ms (IQR {lat.forward.iqr_s * 1e3:.2f} ms), "
                f"{lat.throughput_per_s:.1f} samples/s")
        if lat.forward_backward:
            text += f"; forward+backward {lat.forward_backward.median_s * 1e3:.2f} ms"
        console.print(text)
        if lat.stages:
            total = sum(lat.stages.values()) or 1.0
            console.print("  per stage: " + ", ".join(
                f"{k} {v * 1e3:.2f} ms ({100 * v / total:.0f}%)" for k, v in lat.stages.items()),
                style="dim")
        console.print(f"  {lat.environment.get('cpu')}, torch {lat.environment.get('torch')}",
                      style="dim")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "analyze",
        help="parameters, multiply-adds, memory access, memory and latency per block",
        description="Analyse a design (analytically) or a Python module (traced on the meta "
                    "device): counts per op, block and stage, memory for a batch and optimizer, "
                    "what fits a budget, measured latency. JSON schema: docs/analysis.md.",
    )
    p.add_argument("design", metavar="DESIGN",
                   help="a design file, a zoo name, or path/to/model.py:factory (your own module)")
    p.add_argument("--set", dest="set", action="append", default=[], metavar="NAME=VALUE",
                   help="override a design variable (repeatable)")
    p.add_argument("--input", metavar="CxHxW", help="input shape of a module, e.g. 3x224x224")
    p.add_argument("--input-dtype", choices=INPUT_DTYPES,
                   help="dtype of a module's input (int64 for token ids; default float32)")
    p.add_argument("--batch", type=int, default=1, help="batch size for memory and latency (default 1)")
    p.add_argument("--optimizer", default="adam", choices=sorted(OPTIMIZERS),
                   help="optimizer whose state counts in training memory (default adam)")
    p.add_argument("--budget", metavar="SIZE", help="memory budget, e.g. 8GiB: largest batch and input")
    p.add_argument("--latency", action="store_true", help="measure forward latency")
    p.add_argument("--backward", action="store_true", help="measure forward+backward latency too")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="device for latency")
    p.add_argument("--threads", type=int, help="CPU threads while timing (default: PyTorch's)")
    p.add_argument("--rounds", type=int, default=15, help="timed rounds (median and IQR)")
    p.add_argument("--no-memory", action="store_true", help="counts only (skip the memory trace)")
    p.add_argument("--depth", choices=DEPTHS, default="block", help="rows: block, stage or op")
    p.add_argument("--plot", metavar="FILE", help="write a cost plot (.png/.svg/.pdf)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="JSON (schema archlab.analysis/1)")
    fmt.add_argument("--csv", action="store_true", help="CSV, one row per --depth item")
    p.set_defaults(run=run)
