"""``archlab check``, ``archlab diagnose``, ``archlab gradcheck``. Thin: parse, call, render.

Exit status: 0 when everything passed (or the run is healthy), 1 when a check failed or a
problem was found, 2 on a usage error (printed without a traceback).

JSON output (``--json``), stable:

* ``check``: ``{"design", "data", "task", "passed": bool, "checks": [{"name", "status":
  "pass"|"warn"|"fail", "message", "evidence": {...}, "fixes": [str], "layers": [str]}]}``.
* ``diagnose``: ``{"run", "healthy": bool, "steps", "samples", "monitor_overhead": float|null,
  "nonfinite": null|{"step", "layer", "cause", "detail", ...}, "events": [{"detector", "step",
  "severity", "message", "layers": [str], "evidence": {...}, "thresholds": {...},
  "fixes": [str]}], "plots": [path]}``.
* ``gradcheck``: ``{"factory", "input_shapes": [[int]], "tolerances": {"atol", "rtol", "step",
  "dtype", "max_elements"}, "passed": bool, "tensors": [{"name", "kind": "input"|"parameter",
  "shape", "elements", "checked", "max_abs_error", "max_rel_error", "passed"}],
  "torch_gradcheck": {"passed": bool|null (null: skipped, inputs > 1024 elements), "message"}, "probes": [{"name", "output_finite",
  "input_grad_finite", "nonfinite_param_grads": [str], "passed", "hint", "error"}]}``.

Non-finite numbers appear in JSON as the strings "nan"/"inf".
"""

from __future__ import annotations

import json
import math

from .. import tables
from ..errors import UsageError
from ..train.command import add_data_options, data_spec

STATUS_STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red"}


def register(subparsers) -> None:
    c = subparsers.add_parser(
        "check", help="sanity checks before training: loss at init, inputs, init, gradients, ...",
        description="Validate the data (NaN/Inf, duplicates within and across splits, class "
                    "balance per split, constant features, outliers, an image grid per class) "
                    "and, given a DESIGN, run the pre-training sanity checks: loss at "
                    "initialisation against -ln(1/C), input statistics per channel, weight "
                    "initialisation, gradient flow, dead units, output/loss pairing, "
                    "non-linearity, and overfitting a tiny batch. Without DESIGN only the data "
                    "is checked: archlab check --data mnist5k")
    c.add_argument("design", nargs="?", help="design file, zoo name or YAML text (optional: "
                   "without it only the data is checked)")
    add_data_options(c)  # the same data options as `archlab train`
    c.add_argument("--grid", metavar="PNG", help="image data: where to write the example grid "
                   "(default without DESIGN: <data>-examples.png in the current folder; 'none': "
                   "no file)")
    c.add_argument("--split", default="0.7,0.2,0.1", help="train,val,test fractions the data "
                   "checks split by (archlab train's default)")
    c.add_argument("--task", choices=["classification", "regression", "segmentation", "gan", "vae",
                                      "autoencoder", "image-to-image"])
    c.add_argument("--discriminator", metavar="DESIGN", help="gan, image-to-image: check the pair")
    c.add_argument("--d-set", action="append", metavar="NAME=VALUE", help="discriminator design variable")
    c.add_argument("--gan-loss", choices=["ns", "hinge", "wgan-gp"], help="gan loss the pair is checked for")
    c.add_argument("--set", action="append", metavar="NAME=VALUE", help="design variable (repeatable)")
    c.add_argument("--no-scale", action="store_true", help="check the inputs as read, unscaled")
    c.add_argument("--examples", type=int, default=256, help="batch used by the checks (default 256)")
    c.add_argument("--overfit-examples", type=int, default=8, help="tiny batch size (default 8)")
    c.add_argument("--overfit-steps", type=int, default=200, help="step budget (default 200)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--json", action="store_true", help="print the documented JSON instead of tables")
    c.set_defaults(run=run_check)

    d = subparsers.add_parser(
        "diagnose", help="health of a training run: what went wrong, when, where, fixes; plots",
        description="Summarise the health monitor's record of a run (RUN/health) and write "
                    "PNG plots: loss curves, per-layer gradient-norm heatmap, dead units.")
    d.add_argument("run_dir", metavar="RUN", help="run folder (or its health/ folder)")
    d.add_argument("--out", help="folder for the plots (default RUN/health/plots)")
    d.add_argument("--no-plots", action="store_true")
    d.add_argument("--json", action="store_true")
    d.set_defaults(run=run_diagnose)

    g = subparsers.add_parser(
        "gradcheck", help="check a custom layer's backward against numeric gradients",
        description="Build FILE.py:NAME, run forward/backward in float64 on fixed inputs, compare "
                    "with central differences per input and parameter, and probe edge inputs "
                    "(zeros, constant, tiny, huge) for NaN/Inf.")
    g.add_argument("factory", metavar="FILE.py:NAME", help="layer class or function returning a module")
    g.add_argument("--input", action="append", required=True, metavar="SHAPE",
                   help="input shape with batch, e.g. 4x8x16x16 (repeat for several inputs)")
    g.add_argument("--kwargs", default="{}", help="JSON arguments for the factory")
    g.add_argument("--max-elements", type=int, default=256,
                   help="elements checked per tensor, evenly spread (default 256)")
    g.add_argument("--atol", type=float, default=1e-5)
    g.add_argument("--rtol", type=float, default=1e-3)
    g.add_argument("--no-probes", action="store_true", help="skip the NaN probes")
    g.add_argument("--json", action="store_true")
    g.set_defaults(run=run_gradcheck)


# ------------------------------------------------------------------- monitor options -----


def add_monitor_arguments(parser) -> None:
    """``archlab train``'s health-monitor options (standard library only: parsed cheaply)."""
    g = parser.add_argument_group("health monitor (archlab.diagnose; see docs/diagnostics.md)")
    g.add_argument("--health-every", type=int, metavar="K",
                   help="sample every K-th step instead of the schedule (every step for the "
                        "first 2 x dense steps, then doubling intervals)")
    g.add_argument("--health-dense", type=int, metavar="N", help="schedule: N (default 8)")
    g.add_argument("--health-max-every", type=int, metavar="K",
                   help="schedule: longest interval between samples (default 64)")
    g.add_argument("--health-detectors", metavar="NAMES",
                   help="comma-separated detectors to run (default: all; the list is in "
                        "docs/diagnostics.md)")
    g.add_argument("--health-threshold", action="append", metavar="DETECTOR.NAME=VALUE",
                   help="override a detector threshold (repeatable), e.g. dying_relu.dead_fraction=0.8")


def monitor_options(args) -> dict:
    """HealthMonitor keyword arguments from :func:`add_monitor_arguments`' options ({} when
    none is given)."""
    opts: dict = {}
    if getattr(args, "health_every", None):
        opts["every"] = args.health_every
    if getattr(args, "health_dense", None):
        opts["dense"] = args.health_dense
    if getattr(args, "health_max_every", None):
        opts["max_every"] = args.health_max_every
    if getattr(args, "health_detectors", None):
        opts["detectors"] = [n.strip() for n in args.health_detectors.split(",") if n.strip()]
    for item in getattr(args, "health_threshold", None) or []:
        key, sep, value = item.partition("=")
        detector, dot, name = key.partition(".")
        try:
            number = float(value)
        except ValueError:
            number = None
        if not sep or not dot or not detector or not name or number is None:
            raise UsageError(f"--health-threshold takes DETECTOR.NAME=VALUE; received '{item}'",
                             fix="e.g. --health-threshold dying_relu.dead_fraction=0.8")
        opts.setdefault("thresholds", {}).setdefault(detector, {})[name] = number
    return opts


def health_callbacks(args, expected_frozen=()) -> list:
    """A configured HealthMonitor for ``archlab train`` when monitor options were given (the
    run's default monitor is then switched off), else []. Names are checked here, before
    training starts."""
    opts = monitor_options(args)
    if not opts:
        return []
    from .callback import HealthMonitor

    return [HealthMonitor(expected_frozen=tuple(expected_frozen), **opts)]


# ------------------------------------------------------------------------------- check -----


def run_check(args) -> int:
    from ..design import parse_assignments
    from .checks import CheckReport, check
    from .data_checks import check_data

    options = {}
    if args.task:
        options["task"] = args.task
    if getattr(args, "discriminator", None):
        options["discriminator"] = args.discriminator
        options["d_variables"] = parse_assignments(args.d_set)
    if getattr(args, "gan_loss", None):
        options["gan_loss"] = args.gan_loss
    if args.no_scale:
        options["scale"] = False
    try:
        split = tuple(float(v) for v in args.split.split(","))
    except ValueError:
        split = ()
    if len(split) != 3:
        raise UsageError(f"--split needs three fractions train,val,test; received '{args.split}'",
                         fix="e.g. --split 0.8,0.1,0.1")
    # the example grid: asked for, or by default when the data alone is checked
    grid = None if (args.grid or "").lower() == "none" else (
        args.grid or (None if args.design else f"{_stem(args.data)}-examples.png"))
    spec = data_spec(args)
    if args.task:
        if args.task in ("classification", "regression", "segmentation"):  # generative: images as they are
            spec = {**(spec if isinstance(spec, dict) else {"source": spec}), "task": args.task}
    data_report = check_data(spec, split=split, seed=args.seed, grid=grid)
    if args.design:
        report = check(args.design, data_spec(args), variables=parse_assignments(args.set),
                       examples=args.examples, overfit_examples=args.overfit_examples,
                       overfit_steps=args.overfit_steps, seed=args.seed, **options)
        report.checks = data_report.checks + report.checks
    else:
        report = CheckReport("-", data_report.data, data_report.task, data_report.checks)
    if args.json:
        print(json.dumps(_jsonable(report.to_dict()), indent=2))
    else:
        from rich.console import Console
        from rich.table import Table

        console = Console()
        what = f"{report.design} on {report.data}" if report.design != "-" else f"data {report.data}"
        t = Table(title=f"check: {what} ({report.task})", title_justify="left")
        t.add_column("check")
        t.add_column("status")
        t.add_column("measured against expected")
        for r in report.checks:
            t.add_row(r.name, f"[{STATUS_STYLE[r.status]}]{r.status}[/]", r.message)
        tables.print_table(t, console)
        for r in report.checks:
            if r.status != "pass" and r.fixes:
                console.print(f"[bold]{r.name}[/] fixes: " + "; ".join(r.fixes))
        console.print("all checks passed" if report.passed else "[bold red]some checks failed[/]")
    return 0 if report.passed else 1


def _stem(data: str) -> str:
    from pathlib import Path

    return Path(str(data)).stem or "data"


# ---------------------------------------------------------------------------- diagnose -----


def _check_health_files(run_dir: str) -> None:
    """Read the health record once, so that a damaged file is an error naming it (before any
    plot is drawn)."""
    import csv
    from pathlib import Path

    from ..errors import ArchlabError
    from .state import HealthState, read_events
    from .summary import health_folder

    folder = health_folder(run_dir)

    def losses() -> None:
        rows = list(csv.DictReader((Path(folder) / "loss.csv").read_text(
            encoding="utf-8").splitlines()))
        if not rows or "loss" not in rows[0]:
            raise ValueError("no rows with a 'loss' column")

    steps = [("loss.csv", losses), ("series.npz and loss.csv", lambda: HealthState.load(folder)),
             ("events.jsonl", lambda: read_events(folder))]
    monitor = Path(folder) / "monitor.json"
    if monitor.exists():
        steps.append(("monitor.json", lambda: _json_mapping(monitor)))
    metrics = Path(folder).parent / "metrics.csv"
    if metrics.exists():
        steps.append(("metrics.csv", lambda: list(csv.DictReader(
            metrics.read_text(encoding="utf-8").splitlines()))))
    for name, read in steps:
        try:
            read()
        except ArchlabError:
            raise
        except Exception as exc:
            raise UsageError(f"{name} in the health record is damaged ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0][:120] if str(exc) else ''})",
                             source=str(folder),
                             fix="train the run again to record its health; the weights and "
                                 "metrics of the run are not affected") from None


def _json_mapping(path) -> dict:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"expected a mapping, found {type(data).__name__}")
    return data


def run_diagnose(args) -> int:
    from ..limits import output_folder
    from .summary import diagnose

    if args.out:
        output_folder(args.out, "--out")
    _check_health_files(args.run_dir)
    d = diagnose(args.run_dir, plots=not args.no_plots, out=args.out)
    if args.json:
        print(json.dumps(_jsonable(d.to_dict()), indent=2))
        return 0 if d.healthy else 1
    from rich.console import Console
    from rich.table import Table

    console = Console()
    overhead = f", monitor overhead {d.overhead:.1%}" if math.isfinite(d.overhead) else ""
    console.print(f"[bold]{d.run}[/]: {d.steps} steps, {d.samples} sampled{overhead}")
    if d.healthy:
        console.print("[green]healthy: no detector fired[/]")
    else:
        alone = [e for e in d.symptoms if not e.get("explained_by")]
        title = f"{len(d.causes)} causes found" + (f", {len(alone)} symptoms with the cause "
                                                    "unknown" if alone else "")
        t = Table(title=title, title_justify="left")
        for col in ("step", "problem", "where", "evidence", "fixes"):
            t.add_column(col, overflow="fold")
        for e in d.causes:   # causes first, each with the symptoms it explains as evidence
            seen = [s for s in d.symptoms if e["detector"] in s.get("explained_by", [])]
            evidence = e["message"] + "".join(f"; symptom: {s['message']}" for s in seen)
            t.add_row(str(e["step"]), e["detector"], ", ".join(e["layers"][:4]) or "-",
                      evidence, "; ".join(e["fixes"][:3]))
        for e in alone:
            t.add_row(str(e["step"]), f"{e['detector']} (symptom, cause unknown)",
                      ", ".join(e["layers"][:4]) or "-", e["message"], "; ".join(e["fixes"][:3]))
        tables.print_table(t, console)
    for p in d.plots:
        console.print(f"plot: {p}")
    return 0 if d.healthy else 1


# --------------------------------------------------------------------------- gradcheck -----


def run_gradcheck(args) -> int:
    from .gradcheck import gradcheck, load_factory, parse_shape

    try:
        kwargs = json.loads(args.kwargs)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--kwargs must be a JSON object, received '{args.kwargs}' ({exc.msg})",
                         fix="e.g. --kwargs '{\"channels\": 8}'") from None
    if not isinstance(kwargs, dict):
        raise UsageError(f"--kwargs must be a JSON object, received {type(kwargs).__name__}",
                         path="--kwargs", fix="e.g. --kwargs '{\"channels\": 8}'")
    shapes = [parse_shape(s) for s in args.input]
    factory = load_factory(args.factory)
    from ..errors import ArchlabError, user_code

    # the layer is the user's code: what it raises (building or running it) is their error
    try:
        with user_code(f"building and running {args.factory}", args.factory.rsplit(":", 1)[0]):
            report = gradcheck(factory, shapes, kwargs=kwargs, max_elements=args.max_elements,
                               atol=args.atol, rtol=args.rtol, probes=not args.no_probes,
                               name=args.factory)
    except ArchlabError as exc:  # about the user's layer: name their file
        raise exc.located(source=args.factory.rsplit(":", 1)[0]) from None
    if args.json:
        print(json.dumps(_jsonable(report.to_dict()), indent=2))
        return 0 if report.passed else 1
    from rich.console import Console
    from rich.table import Table

    console = Console()
    t = Table(title=f"gradient check: {report.factory}, float64, |a-n| <= {args.atol:g} + "
                    f"{args.rtol:g}|n|", title_justify="left")
    for col, just in (("tensor", "left"), ("shape", "left"), ("checked", "right"),
                      ("max abs error", "right"), ("max rel error", "right"), ("status", "left")):
        t.add_column(col, justify=just)
    for r in report.tensors:
        t.add_row(r.name, "x".join(map(str, r.shape)), f"{r.checked}/{r.elements}",
                  f"{r.max_abs_error:.2e}", f"{r.max_rel_error:.2e}",
                  "[green]pass[/]" if r.passed else "[bold red]FAIL[/]")
    tables.print_table(t, console)
    tg = report.torch_gradcheck
    verdict = {True: "[green]passed[/]", False: "[bold red]failed[/]", None: ""}[tg.get("passed")]
    console.print(f"torch.autograd.gradcheck: {verdict} {tg.get('message') or ''}")
    if report.probes:
        p = Table(title="NaN probes (float32)", title_justify="left")
        for col in ("input", "output finite", "input grad finite", "non-finite param grads", "hint"):
            p.add_column(col, overflow="fold")
        for r in report.probes:
            p.add_row(r.name, _yes(r.output_finite), _yes(r.input_grad_finite),
                      ", ".join(r.nonfinite_param_grads) or "-", (r.error + "; " if r.error else "") + r.hint)
        console.print(p)
    console.print("gradient check passed" if report.passed else "[bold red]gradient check failed[/]")
    return 0 if report.passed else 1


def _yes(ok: bool) -> str:
    return "[green]yes[/]" if ok else "[bold red]NO[/]"


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value
