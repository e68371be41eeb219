"""``archlab report``: one self-contained HTML file for a design, a run or a comparison."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help="write one self-contained HTML report of a design, a run or a comparison",
        description="One HTML file (styles, script and images inlined; opens offline): the "
                    "architecture diagram, per-node table, stage costs, review findings; for a run "
                    "its learning curves, per-class metrics, confusion matrix, worst-predicted "
                    "test examples, health timeline and gradient heatmap; for several operands "
                    "(or a saved `archlab compare --json` file) the comparison with its Pareto "
                    "plot. Operands as for `archlab compare`.")
    p.add_argument("operands", nargs="+", metavar="DESIGN|RUN|COMPARISON")
    p.add_argument("-o", "--output", required=True, metavar="HTML", help="the file to write")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="a design variable for every design operand (repeatable)")
    p.add_argument("--batch", type=int, help="also memory figures at this batch")
    p.add_argument("--latency", action="store_true", help="also measure latency")
    p.add_argument("--no-examples", action="store_true",
                   help="runs: skip the worst-predicted examples (they need the data and a forward pass)")
    p.set_defaults(run=run_report)


def run_report(args: argparse.Namespace) -> int:
    import os

    from ..design import parse_assignments
    from . import report

    path = report(args.operands, args.output, variables=parse_assignments(args.set),
                  batch=args.batch, latency=args.latency, examples=not args.no_examples)
    print(f"wrote {path} ({os.path.getsize(path) / 1024:.0f} KiB, self-contained)")
    return 0
