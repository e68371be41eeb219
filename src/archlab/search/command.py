"""``archlab search``, ``archlab space sample|compare|show`` and ``archlab new``.

    archlab search space.yaml --budget params<=50k --budget latency<=5ms@batch1 --trials 30
    archlab search space.yaml --storage postgresql://user@db:5432/archlab --name s1   # each worker
    archlab search --report --name s1
    archlab space sample space.yaml -n 100 --epochs 2
    archlab space compare runs/space/a runs/space/b
    archlab new --task classification --input 1x28x28 --classes 10 --budget params<=100k -o net.yaml

Only the standard library is imported here: the work happens in the functions, so that
``archlab --help`` does not load Optuna or PyTorch.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _search_options(p: argparse.ArgumentParser, trials_flag: tuple[str, ...] = ("--trials",)) -> None:
    p.add_argument("--budget", action="append", default=[], metavar="FIGURE<=LIMIT",
                   help="a limit checked before training: params<=1M, multiply_adds<=300M, "
                        "latency<=5ms@batch1, train_memory<=2GiB@batch64 (repeatable)")
    p.add_argument(*trials_flag, dest="trials", type=int, default=20,
                   help="finished trials the study should hold (default 20)")
    p.add_argument("--data", default="mnist5k", help="training data (digits, mnist5k, a path)")
    p.add_argument("--epochs", type=int, default=1, help="epochs per trial (the fidelity; default 1)")
    p.add_argument("--steps", type=int, help="stop each trial after this many optimiser steps")
    p.add_argument("--minutes", type=float, help="stop each trial after this many minutes")
    p.add_argument("--seed", type=int, default=0, help="sampler and training seed")
    p.add_argument("--device", default="cpu", help="device for measured latency (cpu, cuda)")
    p.add_argument("--storage", help="Optuna storage URL shared by many workers "
                                     "(postgresql://USER@HOST:PORT/DB); default: SQLite in the "
                                     "study folder")
    p.add_argument("--train", action="append", default=[], metavar="OPTION=VALUE",
                   help="a fixed training option for every trial (lr=3e-3, batch=128)")
    p.add_argument("--health", action="store_true", help="record training health in each trial")
    p.add_argument("--json", action="store_true", help="results as JSON")


def register(sub) -> None:
    p = sub.add_parser("search", help="search a design space under budgets (Optuna)",
                       description="Search a design space: screen each candidate against the "
                                   "budgets, train the ones that fit, keep every trial as a run "
                                   "folder. Rerun the same command to resume (docs/search.md).")
    p.add_argument("space", nargs="?", help="space file, or a design with a 'search:' section")
    p.add_argument("--name", help="study name (default: the space's name); folder runs/search/NAME")
    p.add_argument("--objective", action="append", default=[], metavar="NAME[:max|min]",
                   help="val_accuracy (default for classification), val_loss, params, "
                        "multiply_adds, latency...; two or more: NSGA-II and the Pareto front")
    p.add_argument("--sampler", default="auto", choices=["auto", "tpe", "nsga2", "random"],
                   help="auto: TPE for one objective, NSGA-II for several")
    p.add_argument("--pruner", default="median", choices=["median", "halving", "none"],
                   help="early stopping of bad trials (one objective only)")
    p.add_argument("--out", default="runs/search", help="folder of study folders")
    p.add_argument("--report", action="store_true",
                   help="print the study's leaderboard, Pareto front, importances and history "
                        "and write PNG plots (no training)")
    _search_options(p)
    p.set_defaults(run=run_search)

    sp = sub.add_parser("space", help="design-space studies: sample, compare (error EDFs)")
    ssub = sp.add_subparsers(dest="space_command", metavar="ACTION")
    ssub.required = True
    s = ssub.add_parser("sample", help="train n random designs of a space (under the budgets)")
    s.add_argument("space", help="space file, or a design with a 'search:' section")
    s.add_argument("--name", help="sample name (default: the space's name); folder runs/space/NAME")
    s.add_argument("--out", default="runs/space", help="folder of sample folders")
    _search_options(s, ("-n", "--samples"))
    s.set_defaults(run=run_space_sample)
    c = ssub.add_parser("compare", help="error EDFs, error vs each parameter, bootstrap intervals")
    c.add_argument("samples", nargs="+", help="sample folders (runs/space/NAME) or space names")
    c.add_argument("--out", help="folder for the plots (default: runs/space/compare-A-B)")
    c.add_argument("--bootstrap", type=int, default=10000, help="bootstrap resamples (default 10000)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(run=run_space_compare)
    v = ssub.add_parser("show", help="validate a space and list its dimensions")
    v.add_argument("space")
    v.add_argument("--json", action="store_true")
    v.set_defaults(run=run_space_show)

    n = sub.add_parser("new", help="write a simple baseline design scaled to fit budgets",
                       description="Write a commented baseline design (start simple, borrow a "
                                   "known family), scaled by analytic screening to fit the budgets.")
    n.add_argument("--task", default="classification", choices=["classification", "regression"])
    n.add_argument("--input", required=True, help="input shape without batch: 1x28x28, 3x32x32, 64")
    n.add_argument("--classes", type=int, default=10, help="classes (classification)")
    n.add_argument("--outputs", type=int, default=1, help="outputs (regression)")
    n.add_argument("--budget", action="append", default=[], metavar="FIGURE<=LIMIT")
    n.add_argument("--from", dest="base", help="borrow this design (zoo name or path) and scale "
                                               "its width variable instead")
    n.add_argument("--name", help="the design's name (default: from -o)")
    n.add_argument("--data", help="also run archlab check on the new design with this data")
    n.add_argument("-o", "--output", required=True, help="where to write the design (.yaml)")
    n.add_argument("--force", action="store_true", help="overwrite an existing file")
    n.add_argument("--json", action="store_true")
    n.set_defaults(run=run_new)


def _settings(args: argparse.Namespace, space, name: str, out: str, sampler: str = "auto",
              pruner: str = "median", objectives: list[str] | None = None):
    from ..design.design import parse_assignments
    from .budget import parse_budgets
    from .study import Objective, SearchSettings

    train = parse_assignments(args.train)
    names = objectives or [_default_objective(space)]
    return SearchSettings(
        name=name, data=args.data, trials=args.trials, budgets=parse_budgets(args.budget),
        objectives=[Objective.parse(o) for o in names], sampler=sampler, pruner=pruner,
        epochs=args.epochs, steps=args.steps, minutes=args.minutes, storage=args.storage, out=out,
        seed=args.seed, device=args.device, health=args.health, train_options=train)


def _default_objective(space) -> str:
    task = space.design_raw.get("task") if space is not None else "classification"
    return "val_accuracy" if task in (None, "classification") else "val_loss"


def _check_trials(args) -> None:
    from ..errors import UsageError

    if args.trials < 1:
        raise UsageError(f"the number of trials must be at least 1, got {args.trials}")


def run_search(args: argparse.Namespace) -> int:
    from ..errors import UsageError
    from .space import load_space

    if args.report:
        return _report(args)
    if not args.space:
        raise UsageError("archlab search needs a space file", fix="archlab search space.yaml "
                         "(or --report --name NAME to read a study)")
    _check_trials(args)
    space = load_space(args.space)
    settings = _settings(args, space, args.name or space.name, args.out, args.sampler,
                         args.pruner, args.objective)
    from .results import collect, render
    from .study import Searcher

    log = (lambda *a: print(*a, file=sys.stderr)) if args.json else print
    searcher = Searcher(settings, space, log=log)
    log(f"study {settings.name}: {settings.trials} trials, storage {settings.storage_url()}, "
        f"trial runs in {searcher.trials_dir}")
    try:
        study = searcher.run()
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to continue the study", file=sys.stderr)
        return 130
    results = collect(study)
    if args.json:
        print(json.dumps(results.to_dict(), indent=2, default=str))
    else:
        print(render(results))
        print(f"archlab search --report --name {settings.name}  # tables and PNG plots")
    return 0


def _report(args: argparse.Namespace) -> int:
    from ..errors import UsageError
    from .results import render, write_report
    from .space import load_space
    from .study import open_study

    name = args.name
    space = None
    if name is None and args.space:
        space = load_space(args.space)
        name = space.name
    if name is None:
        raise UsageError("--report needs the study: --name NAME (or the space file)")
    settings = _settings(args, space, name, args.out, objectives=args.objective or ["val_accuracy"])
    study = open_study(settings, None, create=False)
    results = write_report(study, settings.folder / "report")
    _report_page(results, settings.folder / "report")
    if args.json:
        print(json.dumps(results.to_dict(), indent=2, default=str))
    else:
        print(render(results))
        print(f"results: {settings.folder / 'report' / 'results.json'}")
    return 0


def _report_page(results, folder: Path) -> None:
    """The study as a page of the HTML report (archlab.report), when that package is present."""
    from .results import search_page

    page = search_page(results, folder)
    if page is not None:
        results.plots["html"] = str(page)


def run_space_sample(args: argparse.Namespace) -> int:
    from .results import collect, render
    from .space import load_space
    from .study import Searcher

    _check_trials(args)
    space = load_space(args.space)
    settings = _settings(args, space, args.name or space.name, args.out, sampler="random",
                         pruner="none")
    log = (lambda *a: print(*a, file=sys.stderr)) if args.json else print
    log(f"sampling {settings.trials} random designs of {space.name} into {settings.folder}")
    try:
        study = Searcher(settings, space, log=log).run()
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to continue the sample", file=sys.stderr)
        return 130
    results = collect(study)
    if args.json:
        print(json.dumps(results.to_dict(), indent=2, default=str))
    else:
        print(render(results, top=5))
        print(f"compare with: archlab space compare {settings.folder} OTHER")
    return 0


def run_space_compare(args: argparse.Namespace) -> int:
    from .space_study import compare_samples, render_comparison

    out = compare_samples(args.samples, out=args.out, bootstrap=args.bootstrap)
    print(json.dumps(out, indent=2, default=str) if args.json else render_comparison(out))
    return 0


def run_space_show(args: argparse.Namespace) -> int:
    from .space import load_space

    space = load_space(args.space)
    if args.json:
        print(json.dumps({"name": space.name, "design": space.design_source,
                          "fingerprint": space.fingerprint(),
                          "dimensions": space.describe()}, indent=2, default=str))
        return 0
    print(f"space {space.name} over {space.design_source} (fingerprint {space.fingerprint()})")
    for name, what in space.describe():
        print(f"  {name:<24} {what}")
    return 0


def run_new(args: argparse.Namespace) -> int:
    from .advisor import new_design

    result = new_design(task=args.task, input_text=args.input, classes=args.classes,
                        outputs=args.outputs, budgets=args.budget, base=args.base,
                        name=args.name or Path(args.output).stem, output=args.output,
                        force=args.force, data=args.data)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
        return 0
    print(f"wrote {args.output}: {result['summary']}")
    for line in result.get("checks", []):
        print(f"  check {line}")
    return 0
