"""``archlab weights import`` and ``archlab export``.

``weights import --json`` prints the import report (schema ``archlab.weights-import/1``, see
:class:`archlab.export.weights.ImportReport`), plus ``"output"`` and ``"check"``.
``export --json`` prints ``{"schema": "archlab.export/1", "format", "file", "source", "kind",
"seconds", "checked", ...}`` with the format's check figures (``max_difference``,
``bit_identical``, ``dynamic_batch``).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

FORMATS = {
    "onnx": ".onnx",
    "torchscript": ".pt",
    "exported-program": ".pt2",
    "python": ".py",
}


def register(sub) -> None:
    w = sub.add_parser("weights", help="load another library's weights (torchvision, timm) into a design")
    wsub = w.add_subparsers(dest="weights_command", metavar="ACTION")
    wsub.required = True
    i = wsub.add_parser("import", help="match a foreign state dict to a design and save the result")
    i.add_argument("design", metavar="DESIGN", help="a design file (.yaml) or a zoo name")
    i.add_argument("file", metavar="FILE", help="a state dict: .pth/.pt/.bin (read with "
                   "weights_only=True) or .safetensors")
    i.add_argument("--set", dest="set", action="append", default=[], metavar="NAME=VALUE",
                   help="design variable (repeatable), e.g. --set classes=10")
    i.add_argument("-o", "--output", help="a folder (weights.safetensors + design.yaml, as "
                   "`archlab build` writes; default NAME-imported) or a .safetensors file")
    i.add_argument("--partial", action="store_true", help="load what fits with certainty and "
                   "keep the design's initialisation for the rest (e.g. a new classifier head)")
    i.add_argument("--check", metavar="FILE.py:FACTORY", help="verify the outputs against the "
                   "network the weights came from (your Python: it is imported)")
    i.add_argument("--all", action="store_true", help="list every tensor, also those matched by name")
    i.add_argument("--json", action="store_true", help="print the full report as JSON")
    i.set_defaults(run=run_import)

    e = sub.add_parser("export", help="a design, run or built model as ONNX, TorchScript, "
                       "torch.export or one standalone PyTorch file")
    e.add_argument("source", metavar="DESIGN|RUN|BUILT", help="a design file or zoo name (fresh "
                   "weights, seed 0), a run folder (trained weights) or a folder from `archlab build`")
    e.add_argument("--format", required=True, metavar="FORMAT",
                   help="onnx | torchscript | exported-program | python")
    e.add_argument("--set", dest="set", action="append", default=[], metavar="NAME=VALUE",
                   help="design variable (repeatable), for a DESIGN source")
    e.add_argument("-o", "--output", help="output file (or folder for python); default "
                   "export/NAME.<suffix>")
    e.add_argument("--no-check", action="store_true", help="skip running the exported model "
                   "against the original")
    e.add_argument("--json", action="store_true")
    e.set_defaults(run=run_export)


def run_import(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..build import save
    from ..design import load, parse_assignments
    from .weights import WeightsImportError, import_weights, read_state_dict

    design = load(args.design, **parse_assignments(args.set))
    model, report = import_weights(design, args.file, partial=args.partial)
    check = None
    if args.check:
        from .check import check_against

        check = check_against(model, design, read_state_dict(args.file)[0], args.check)
    out = Path(args.output or f"{design.name}-imported")
    if out.suffix == ".safetensors":
        from ..train.checkpoint import save_weights

        save_weights(model, out, metadata={"archlab_design": design.name, "imported_from": str(args.file)})
    else:
        if out.exists() and not out.is_dir():
            raise WeightsImportError("the output exists and is not a folder", source=str(out),
                                     fix="give a folder, or a path ending in .safetensors")
        save(model, design, out)
        (out / "import-report.json").write_text(json.dumps({**report.to_json(), "check": check},
                                                           indent=2))
    data = {**report.to_json(), "output": str(out), "check": check}
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    _print_report(design.name, args.file, report, check, out, args.all)
    return 0


def _print_report(name, file, report, check, out, show_all: bool) -> None:
    counts = report.counts()
    how = ", ".join(f"{counts[k]} by {'module order' if k == 'order' else k}"
                    for k in ("name", "rule", "order", "reshaped") if counts.get(k))
    print(f"{name} <- {file}: {len(report.matches)} tensors loaded ({how})")
    rows = [m for m in report.matches if show_all or m.how != "name"]
    if rows:
        width = max(len(m.design) for m in rows)
        for m in rows:
            shape = (str(m.design_shape) if m.file_shape == m.design_shape
                     else f"{m.file_shape} -> {m.design_shape}")
            print(f"  {m.how:<9} {m.design:<{width}}  <- {m.file}  {shape}")
    for f, fs, d, ds in report.mismatched:
        print(f"  MISMATCH  {d} {ds} (kept as initialised)  vs file {f} {fs}")
    for d, s in report.unfilled:
        print(f"  UNFILLED  {d} {s} (kept as initialised)")
    for a in report.ambiguous:
        print(f"  AMBIGUOUS file {', '.join(a['file'][:4])} vs design {', '.join(a['design'][:4])}"
              " (not loaded)")
    for f, s in report.unused:
        print(f"  UNUSED    file {f} {s}")
    if report.kept:
        print(f"  kept the design's own {len(report.kept)} counter(s) the file lacks "
              f"({', '.join(report.kept[:3])})")
    if check:
        print(f"check: outputs agree with {check['reference']} (max difference "
              f"{check['max_difference']:.1e}, relative to the output scale)")
    target = out if str(out).endswith(".safetensors") else f"{out}/ (weights.safetensors, " \
        "design.yaml, model.json, import-report.json)"
    print(f"wrote {target}")


def run_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..design import parse_assignments
    from ..errors import UsageError, unknown_name
    from .source import open_source

    if args.format not in FORMATS:
        raise UsageError(unknown_name("export format", args.format, FORMATS),
                         fix="e.g. --format onnx")
    item = open_source(args.source, parse_assignments(args.set))
    stem = item.design.name.replace("/", "_")
    default = Path("export") / (stem if args.format == "python" else stem + FORMATS[args.format])
    out = Path(args.output) if args.output else default
    check = not args.no_check
    warnings.filterwarnings("ignore")  # torch's exporters warn about their own internals
    start = time.perf_counter()
    if args.format == "onnx":
        from .onnx import export_onnx

        info = export_onnx(item.model, item.design, out, check=check)
    elif args.format == "torchscript":
        from .script import export_torchscript

        info = export_torchscript(item.model, item.design, out, check=check)
    elif args.format == "exported-program":
        from .script import export_program

        info = export_program(item.model, item.design, out, check=check)
    else:
        from .eject import eject

        info = eject(item.model, item.design, out, check=check)
    seconds = time.perf_counter() - start
    data = {"schema": "archlab.export/1", **info, "source": item.source, "kind": item.kind,
            "seconds": round(seconds, 3)}
    data.setdefault("checked", False)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    what = {"design": "fresh weights, seed 0", "run": "trained weights",
            "built": "built weights"}[item.kind]
    print(f"exported {item.design.name} ({what}) as {args.format} -> {info['file']}"
          + (f" + {info['weights']}" if "weights" in info else "") + f" in {seconds:.1f} s")
    if data["checked"]:
        if info.get("bit_identical"):
            print("check: loading the file gives bit-identical outputs to the built model")
        else:
            extra = (f", dynamic batch axis '{info['dynamic_batch']}'" if "dynamic_batch" in info
                     else "")
            print(f"check: outputs agree with PyTorch's (max difference "
                  f"{info['max_difference']:.1e}){extra}")
    return 0
