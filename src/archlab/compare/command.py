"""``archlab compare`` and ``archlab runs``. Thin: parse, call :func:`archlab.compare.compare`,
render (a rich table, ``--json`` with schema ``archlab.compare/1``, ``--csv``, ``--report``)."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare", help="compare a baseline with variants: designs before training, runs after",
        description="Compare a baseline (the first operand) with variants, figure by figure, with "
                    "each variant's change against the baseline (x and %%) and a structural diff. "
                    "Operands: zoo names, design files, DESIGN?name=value&name=value for a variant, "
                    "run folders. With --data, every design is trained first with the same seed, "
                    "split and options. See docs/compare.md.")
    p.add_argument("operands", nargs="+", metavar="OPERAND",
                   help="baseline first: resnet18 'resnet18?width=32' nets/deeper.yaml runs/NAME")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="a design variable for every design operand (repeatable)")
    p.add_argument("--batch", type=int, help="also saved activations and peak training memory at "
                   "this batch (a meta-device trace per operand)")
    p.add_argument("--latency", action="store_true", help="also measure forward latency (slow)")
    p.add_argument("--rounds", type=int, default=15, help="latency rounds (default 15)")
    review = p.add_mutually_exclusive_group()
    review.add_argument("--review", dest="review", action="store_const", const=True, default=None,
                        help="count review findings for every design (default: up to 6 designs)")
    review.add_argument("--no-review", dest="review", action="store_const", const=False,
                        help="skip the design review")
    p.add_argument("--cost", default="multiply_adds",
                   help="cost axis of the Pareto plot: multiply_adds | params | latency_ms | "
                        "peak_training_bytes | memory_access_bytes")
    p.add_argument("--data", help="train every design operand on this data first (digits, mnist5k, ...)")
    p.add_argument("--epochs", type=int, help="training epochs (with --data)")
    p.add_argument("--seed", type=int, default=0, help="one seed for every operand (with --data)")
    p.add_argument("--lr", type=float, help="learning rate (with --data)")
    p.add_argument("--batch-size", type=int, dest="train_batch", help="training batch (with --data)")
    p.add_argument("--augment", help="augmentation, as archlab train (with --data)")
    p.add_argument("--out", default="runs", help="where the trained runs go (default runs/)")
    p.add_argument("--report", metavar="HTML", help="also write the comparison as one HTML report")
    p.add_argument("--no-progress", action="store_true", help="no progress bars while training")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="machine-readable (archlab.compare/1)")
    fmt.add_argument("--csv", action="store_true", help="one row per figure and operand")
    p.set_defaults(run=run_compare)

    r = sub.add_parser("runs", help="list run folders (design, data, seed, best metric, date, commit)",
                       description="List the run folders under FOLDER (default runs/): what "
                                   "`archlab compare` and `archlab report` take.")
    r.add_argument("folder", nargs="?", default="runs", metavar="FOLDER")
    r.add_argument("--json", action="store_true", help="machine-readable (archlab.runs/1)")
    r.set_defaults(run=run_runs)


def run_compare(args: argparse.Namespace) -> int:
    from ..design import parse_assignments
    from .compare import compare
    from .figures import human

    options = {}
    for key, name in (("epochs", "epochs"), ("lr", "lr"), ("train_batch", "batch"), ("augment", "augment")):
        if getattr(args, key) is not None:
            options[name] = getattr(args, key)
    options["seed"] = args.seed
    quiet = args.json or args.csv or args.no_progress
    c = compare(args.operands, variables=parse_assignments(args.set), batch=args.batch,
                latency=args.latency, review=args.review, latency_rounds=args.rounds,
                data=args.data, train_options=options, cost=args.cost, out=args.out,
                progress=not quiet)
    if args.report:
        from ..report import comparison_page, write_html

        write_html(comparison_page(c), args.report)
    if args.json:
        print(c.to_json())
        return 0
    if args.csv:
        sys.stdout.write(c.to_csv())
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(110, Console().width))
    t = Table(title=f"baseline: {c.baseline.label}", title_justify="left")
    t.add_column("figure")
    for e in c.entries:
        t.add_column(e.label, justify="right", overflow="fold")
    for row in c.rows():
        cells = []
        for e in c.entries:
            text = human(row["values"][e.label], row["unit"])
            ratio, pct = row["ratio"][e.label], row["percent"][e.label]
            if e is not c.baseline and ratio is not None:
                good = row["better"] and abs(pct) > 0.05 and ((pct < 0) == (row["better"] == "lower"))
                bad = row["better"] and abs(pct) > 0.05 and not good
                colour = "green" if good else "red" if bad else "dim"
                text += f"\n[{colour}]{ratio:.3g}x {pct:+.1f}%[/{colour}]"
            cells.append(text)
        t.add_row(row["label"], *cells)
    console.print(t)
    for e in c.entries[1:]:
        if e.diff is not None:
            d = e.diff
            var = ", ".join(f"{k} {a} -> {b}" for k, (a, b) in d.variables.items())
            console.print(f"[bold]{e.label}[/bold] against the baseline: {d.summary()}"
                          + (f" (variables: {var})" if var else ""))
            for stage, changes in d.by_stage().items():
                kinds = {}
                for ch in changes:
                    kinds[ch.kind] = kinds.get(ch.kind, 0) + 1
                console.print(f"  {stage}: " + ", ".join(f"{v} {k}" for k, v in kinds.items()),
                              style="dim")
    points = c.pareto()
    if points:
        front = ", ".join(p.label for p in sorted(points, key=lambda p: p.cost) if p.front)
        console.print(f"Pareto front ({c.metric} against {c.cost}): {front}")
    for note in c.notes:
        console.print(f"note: {note}", style="yellow")
    console.print("counts per sample; parameters as PyTorch counts them; FLOPs = 2 x multiply-adds",
                  style="dim")
    if args.report:
        console.print(f"report: {args.report}")
    return 0


def run_runs(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..errors import UsageError
    from .runs import list_runs

    if not Path(args.folder).exists():
        raise UsageError(f"no such folder '{args.folder}'", fix="train first (archlab train ...) "
                         "or give the folder your runs are in")
    rows = list_runs(args.folder)
    if args.json:
        print(json.dumps({"schema": "archlab.runs/1", "folder": args.folder, "runs": rows}, indent=2,
                         default=str))
        return 0
    from rich.table import Table

    t = Table(title=f"runs in {args.folder} (give FOLDER/RUN to compare or report)", title_justify="left")
    for col in ("run", "design", "data", "seed", "epochs", "best val", "test", "date", "commit"):
        t.add_column(col, justify="right" if col in ("seed", "epochs", "best val", "test") else "left",
                     overflow="fold")
    for r in rows:
        def f(v):
            return "-" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)
        t.add_row(r["name"], f(r["design"]), f(r["data"]), f(r["seed"]), f(r["epochs"]),
                  f(r["best"]) + (f" {r['metric']}" if r["metric"] and r["best"] is not None else ""),
                  f(r["test"]), f(r["date"]), f(r["commit"]))
        for problem in r["problems"]:
            t.add_row(f"[yellow]  {problem}", "", "", "", "", "", "", "", "")
    from .. import tables

    tables.print_table(t)
    if not rows:
        print(f"no run folders in {args.folder}")
    return 0
