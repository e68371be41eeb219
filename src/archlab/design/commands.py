"""Sub-commands of the design language: ``show``, ``validate``, ``build``, ``zoo``.

JSON output of ``show --json`` (schema ``archlab.show/1``)::

    {
      "schema": "archlab.show/1",
      "name": str, "source": str, "input": [int], "outputs": [[int]],
      "variables": {name: value},
      "total_params": int,            # as PyTorch counts them (BN running stats are buffers)
      "total_multiply_adds": int,     # conv/linear/matmul/attention, batch 1; FLOPs = 2x
      "nodes": [{"path": str, "block": str, "inputs": [str], "output": [int],
                 "params": int, "multiply_adds": int, "line": int|null}]
    }
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .. import tables, zoo
from ..errors import ArchlabError
from .design import Design, load, parse_assignments


def add_design_arguments(parser: argparse.ArgumentParser) -> None:
    """DESIGN and --set, shared by every command that takes a design."""
    parser.add_argument("design", metavar="DESIGN",
                        help="a design file (.yaml) or a zoo name (see `archlab zoo`)")
    parser.add_argument("--set", dest="set", action="append", default=[], metavar="NAME=VALUE",
                        help="override a design variable (repeatable), e.g. --set width=48")


def load_from_args(args: argparse.Namespace) -> Design:
    return load(args.design, **parse_assignments(args.set))


def _human(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(int(n))


def show_data(design: Design) -> dict[str, Any]:
    g = design.graph
    return {
        "schema": "archlab.show/1",
        "name": design.name,
        "source": design.source,
        "input": list(g.input_shape),
        "outputs": [list(s) for s in g.output_shapes],
        "variables": design.variables,
        "total_params": g.param_count,
        "total_multiply_adds": g.multiply_adds,
        "nodes": [
            {"path": n.path, "block": n.block, "inputs": n.inputs, "output": list(n.output_shape),
             "params": n.param_count, "multiply_adds": n.multiply_adds, "line": n.line}
            for n in g.nodes
        ],
    }


def run_show(args: argparse.Namespace) -> int:
    design = load_from_args(args)
    if args.graph:
        return write_graph(design, args.graph, args.graph_format)
    if args.yaml:
        sys.stdout.write(design.to_yaml())
        return 0
    data = show_data(design)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    from rich.table import Table

    table = Table(title=f"{design.name}  (input {tuple(design.input_shape)})", title_justify="left")
    table.add_column("node path", overflow="fold")
    table.add_column("block")
    table.add_column("from", overflow="fold")  # the node's inputs, as Keras's functional summary
    table.add_column("output shape")
    table.add_column("params", justify="right")
    table.add_column("multiply-adds", justify="right")
    for row in data["nodes"]:
        table.add_row(row["path"], row["block"], ", ".join(row["inputs"]), str(tuple(row["output"])),
                      f"{row['params']:,}", _human(row["multiply_adds"]))
    table.add_section()
    table.add_row("total", "", "", ", ".join(str(tuple(s)) for s in data["outputs"]),
                  f"{data['total_params']:,}", _human(data["total_multiply_adds"]))
    console = tables.console()
    tables.print_table(table, console, optional=("from", "block"))
    console.print("parameters as PyTorch counts them (BatchNorm running statistics are buffers); "
                  "multiply-adds for one sample (FLOPs = 2 x multiply-adds)", style="dim")
    return 0


GRAPH_FORMATS = {".svg": "svg", ".dot": "dot", ".gv": "dot", ".mmd": "mermaid", ".mermaid": "mermaid"}


def write_graph(design: Design, target: str, fmt: str | None) -> int:
    """``show --graph FILE``: the architecture diagram as SVG (the report's), DOT or Mermaid;
    the format follows the suffix unless --graph-format says; '-' writes text to stdout."""
    from pathlib import Path

    from ..errors import UsageError
    from ..report.diagram import to_dot, to_mermaid, to_svg

    suffix = Path(target).suffix.lower()
    fmt = fmt or GRAPH_FORMATS.get(suffix) or ("mermaid" if target == "-" else None)
    if fmt is None:
        raise UsageError(f"cannot tell the diagram format of '{target}': expected a .svg, .dot, "
                         f".gv, .mmd or .mermaid file", fix="add --graph-format svg|dot|mermaid")
    text = {"svg": to_svg, "dot": to_dot, "mermaid": to_mermaid}[fmt](design)
    if target == "-":
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return 0
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text if text.endswith("\n") else text + "\n")
    print(f"wrote {path} ({fmt}, {len(design.graph.nodes)} nodes)")
    return 0


def run_validate(args: argparse.Namespace) -> int:
    try:
        design = load_from_args(args)
    except ArchlabError as exc:
        if not args.json:
            raise
        # programs get the error as JSON on stdout (and the exit status 2), not prose on stderr
        print(json.dumps({"schema": "archlab.validate/1", "valid": False, "error": exc.to_dict()},
                         indent=2))
        return exc.exit_code
    g = design.graph
    if args.json:
        print(json.dumps({"schema": "archlab.validate/1", "valid": True, "name": design.name,
                          "nodes": len(g), "total_params": g.param_count,
                          "outputs": [list(s) for s in g.output_shapes]}))
    else:
        print(f"{design.source}: valid: {design.name}, {len(g)} nodes, {g.param_count:,} "
              f"parameters, output {', '.join(str(s) for s in g.output_shapes)}")
    return 0


def run_build(args: argparse.Namespace) -> int:
    import torch

    from ..build import build, save
    from ..limits import output_folder

    design = load_from_args(args)
    output_folder(args.output, "-o/--output", create=False)  # before building: a clear error
    torch.manual_seed(args.seed)
    model = build(design)
    output_folder(args.output, "-o/--output")
    folder = save(model, design, args.output)
    if args.json:
        print(json.dumps({"schema": "archlab.build/1", "folder": str(folder), "name": design.name,
                          "total_params": design.graph.param_count,
                          "files": ["weights.safetensors", "design.yaml", "model.json"]}))
    else:
        print(f"built {design.name}: {design.graph.param_count:,} parameters -> {folder}/"
              "{weights.safetensors, design.yaml, model.json}")
    return 0


def run_zoo(args: argparse.Namespace) -> int:
    rows = []
    for name in zoo.names():
        try:
            d = load(name)
            rows.append({"name": name, "input": list(d.input_shape), "params": d.graph.param_count,
                         "published_params": zoo.PUBLISHED.get(name),
                         "description": d.description.splitlines()[0] if d.description else ""})
        except ArchlabError as exc:  # a broken zoo file must not hide the others
            rows.append({"name": name, "error": str(exc)})
    if args.json:
        print(json.dumps({"schema": "archlab.zoo/1", "designs": rows}, indent=2))
        return 0
    from rich.table import Table

    table = Table(title="archlab zoo", title_justify="left")
    for col in ("name", "input", "params", "published", "what it is"):
        table.add_column(col, justify="right" if col in ("params", "published") else "left")
    for r in rows:
        if "error" in r:
            table.add_row(r["name"], "", "", "", f"[red]{r['error']}")
            continue
        pub = r["published_params"]
        table.add_row(r["name"], str(tuple(r["input"])), f"{r['params']:,}",
                      f"{pub:,}" if pub else "-", r["description"])
    tables.print_table(table, optional=("published", "input"))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("show", help="show a design as a table of nodes, shapes and parameters",
                       description="Show a design: node paths, blocks, output shapes, parameters "
                       "and multiply-adds, with totals.")
    add_design_arguments(p)
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="machine-readable output (archlab.show/1)")
    fmt.add_argument("--yaml", action="store_true", help="print the resolved design as YAML")
    fmt.add_argument("--graph", metavar="FILE", help="write the architecture diagram: .svg, .dot "
                     "(Graphviz) or .mmd (Mermaid); '-' prints Mermaid text")
    p.add_argument("--graph-format", choices=["svg", "dot", "mermaid"],
                   help="diagram format when the suffix does not say")
    p.set_defaults(run=run_show)

    p = sub.add_parser("validate", help="validate a design (exit 0 if valid, 2 if not)")
    add_design_arguments(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=run_validate)

    p = sub.add_parser("build", help="build a design and save its weights and resolved design")
    add_design_arguments(p)
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="folder to write into")
    p.add_argument("--seed", type=int, default=0, help="seed of the weight initialisation")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=run_build)

    p = sub.add_parser("zoo", help="list the reference designs")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=run_zoo)
