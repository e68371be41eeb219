"""``archlab train``, ``archlab evaluate``, ``archlab predict``. Thin: parse, call, render.

JSON output (``--json``), stable:

* ``train``: the run's ``summary.json``: ``{"run", "design", "data", "task", "seed", "epochs_run",
  "best_epoch", "params", "train_seconds", "fit_seconds", "val": {metric: number},
  "test": {metric: number | list}, "transfer": null | {...}, "finished", "code": {...}, "torch"}``.
* ``evaluate``: ``{"run", "split", "data", "metrics": {metric: number | list}}``.
* ``predict``: ``{"run", "task", "predictions": [{"input": i, "label", "class", "probability"}
  | {"input": i, "output": [...]}]}``.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from .. import tables
from ..errors import UsageError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train a design on data; writes a run folder",
        description="Train a design with sound defaults (Adam 1e-3, 70/20/10 stratified split, "
                    "training-split scaling, seeded). Writes runs/NAME with the design, config, "
                    "splits, scaling, metrics.csv, checkpoints, model.safetensors and summary.json.")
    p.add_argument("design", nargs="?", help="design file, zoo name or YAML text (omit with --resume)")
    add_data_options(p)
    p.add_argument("--task", choices=["classification", "regression", "segmentation", "gan", "vae",
                                      "autoencoder", "image-to-image"])
    p.add_argument("--loss", choices=["ce", "dice", "mse", "bce", "l1"])
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--optimizer", choices=["adam", "adamw", "sgd"])
    p.add_argument("--momentum", type=float, help="SGD Nesterov momentum (default 0.9)")
    p.add_argument("--schedule", choices=["constant", "cosine", "onecycle"])
    p.add_argument("--l1", type=float, help="L1 penalty on conv/linear weights")
    p.add_argument("--l2", type=float, help="weight decay on conv/linear weights")
    p.add_argument("--clip", type=float, help="gradient clipping threshold")
    p.add_argument("--clip-by", choices=["norm", "value"])
    p.add_argument("--patience", type=int, help="early stopping: epochs without improvement")
    p.add_argument("--split", help="train,val,test fractions (default 0.7,0.2,0.1)")
    p.add_argument("--no-stratify", action="store_true", help="plain random splits")
    p.add_argument("--no-scale", action="store_true", help="do not standardise inputs")
    p.add_argument("--no-scale-targets", action="store_true",
                   help="regression: train on the targets as they are (default: standardised)")
    p.add_argument("--augment", help="image augmentation: hflip,vflip,shift=2")
    p.add_argument("--workers", type=int, help="data-loader processes (default 0: data is in memory)")
    p.add_argument("--seed", help="an integer, or 'random' (recorded in the run)")
    p.add_argument("--deterministic", action="store_true", help="deterministic algorithms (slower)")
    p.add_argument("--init-from", help="run folder, built folder or weights file (.safetensors, "
                   ".pth; torchvision/timm names are matched to node paths): load the weights that match")
    p.add_argument("--freeze", action="append", metavar="PATTERN",
                   help="node-path glob whose weights stay fixed (repeatable), e.g. 'conv*'")
    p.add_argument("--set", action="append", metavar="NAME=VALUE", help="design variable (repeatable)")
    g = p.add_argument_group("generative tasks (docs/training.md#generative-tasks)")
    g.add_argument("--discriminator", metavar="DESIGN", help="gan, image-to-image: the discriminator design")
    g.add_argument("--d-set", action="append", metavar="NAME=VALUE", help="discriminator design variable")
    g.add_argument("--gan-loss", choices=["ns", "hinge", "wgan-gp"], help="default ns (non-saturating)")
    g.add_argument("--d-lr", type=float, help="discriminator learning rate (TTUR); default: --lr")
    g.add_argument("--d-steps", type=int, help="discriminator steps per generator step (default 1)")
    g.add_argument("--label-smoothing", type=float, help="one-sided: real targets 1 - S (ns loss)")
    g.add_argument("--gp-weight", type=float, help="wgan-gp gradient penalty weight (default 10)")
    g.add_argument("--g-ema", type=float, help="gan: decay of the generator's weight average (default 0.999; 0 = off)")
    g.add_argument("--r1", type=float, help="gan: R1 penalty weight on real images (Mescheder et al. 2018; default 0 = off)")
    g.add_argument("--adversarial", type=float, help="image-to-image: adversarial loss weight (default 0.01)")
    g.add_argument("--kl-weight", type=float, help="vae: weight of the KL term (beta; default 1)")
    g.add_argument("--corrupt", metavar="KIND=AMOUNT",
                   help="autoencoder/image-to-image inputs: mask=0.5 | noise=0.3 | blur=1.5 | erase=0.4")
    g.add_argument("--judge-samples", type=int, help="samples generated to judge a gan/vae (default 1000)")
    g.add_argument("--no-judge", action="store_true", help="do not judge samples with a data-set classifier")
    g.add_argument("--judge-cache", metavar="DIR",
                   help="folder of the cached judge classifiers (default ~/.cache/archlab/judges/)")
    p.add_argument("--out", help="folder for run folders (default runs/)")
    p.add_argument("--name", help="run folder name (default design-data-time-seed)")
    p.add_argument("--resume", metavar="RUN", help="continue a run from its last checkpoint")
    p.add_argument("--accelerator", help="cpu | gpu | auto (Lightning)")
    p.add_argument("--devices", help="devices per node, or 'auto' (Lightning)")
    p.add_argument("--num-nodes", type=int, help="machines (Lightning)")
    p.add_argument("--strategy", help="auto | ddp | ... (Lightning)")
    p.add_argument("--precision", help="32-true | bf16-mixed | 16-mixed (Lightning)")
    p.add_argument("--loop", choices=["auto", "lightning"],
                   help="auto (default): archlab's own loop for one process on the CPU in 32-bit "
                        "precision, lightning.Trainer otherwise; lightning: always lightning.Trainer")
    p.add_argument("--checkpoint-interval", type=float, metavar="SECONDS",
                   help="write checkpoints at an epoch's end once SECONDS have passed since the "
                        "last write (default 10; 0 = every epoch); always at the end, on Ctrl-C "
                        "and on errors (archlab's loop)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-health", action="store_true", help="do not record training health (health/)")
    _add_monitor_arguments(p)
    p.add_argument("--logger", choices=["tensorboard", "mlflow", "csv"],
                   help="also log to a Lightning logger inside the run folder (tensorboard/, mlflow.db, "
                        "csv_logs/): config and design figures as hyper-parameters, metrics per epoch")
    p.add_argument("--json", action="store_true", help="print summary.json instead of tables")
    p.set_defaults(run=run_train)

    e = subparsers.add_parser("evaluate", help="metrics of a trained run on its test split or new data")
    e.add_argument("run_dir", metavar="RUN")
    e.add_argument("--data", help="other data (all of it is evaluated), scaled with the run's statistics")
    e.add_argument("--split", default="test", choices=["train", "val", "test"],
                   help="which split of the run's own data (default test)")
    e.add_argument("--json", action="store_true")
    e.set_defaults(run=run_evaluate)

    r = subparsers.add_parser("predict", help="predictions of a trained run for .npy/.npz/CSV/image inputs")
    r.add_argument("run_dir", metavar="RUN")
    r.add_argument("inputs", nargs="+", help=".npy, .npz (key x), .csv (a header row; the label column is dropped), image files or image folders")
    r.add_argument("--save", help="write the raw outputs to this .npy file")
    r.add_argument("--json", action="store_true")
    r.set_defaults(run=run_predict)


# ---------------------------------------------------------------------------- train ---------


def _options(args) -> dict:
    opts: dict = {}
    for key in ("task", "loss", "epochs", "batch", "lr", "optimizer", "momentum", "schedule", "l1", "l2",
                "clip", "clip_by", "patience", "workers", "init_from", "accelerator", "strategy",
                "precision", "num_nodes", "out", "name", "discriminator", "gan_loss", "d_lr", "d_steps",
                "label_smoothing", "gp_weight", "g_ema", "r1", "adversarial", "kl_weight", "corrupt", "judge_samples",
                "judge_cache", "loop", "checkpoint_interval"):
        value = getattr(args, key, None)
        if value is not None:
            opts[key] = value
    if args.seed is not None:
        opts["seed"] = args.seed if args.seed == "random" else _int(args.seed, "--seed")
    if args.devices is not None:
        opts["devices"] = args.devices if not args.devices.isdigit() else int(args.devices)
    if args.split:
        parts = [p for p in args.split.split(",") if p]
        if len(parts) != 3:
            raise UsageError(f"--split needs three fractions train,val,test; received '{args.split}'",
                             fix="e.g. --split 0.8,0.1,0.1")
        opts["split"] = tuple(_float(v, "--split") for v in parts)
        if not all(0 <= v <= 1 for v in opts["split"]) or abs(sum(opts["split"]) - 1) > 1e-6 \
                or opts["split"][0] <= 0:
            raise UsageError(f"--split fractions must each be 0..1, sum to 1, with a training "
                             f"part above 0; received '{args.split}'", path="--split",
                             fix="e.g. --split 0.8,0.1,0.1")
        if opts["split"][1] == 0 and opts["split"][2] == 0:
            from .config import NOTHING_HELD_OUT, SPLIT_FIX

            raise UsageError(f"{NOTHING_HELD_OUT}; received --split {args.split}", path="--split",
                             fix=f"{SPLIT_FIX.replace('e.g. ', 'e.g. --split ', 1)}")
    if args.augment:
        opts["augment"] = args.augment
    if args.freeze:
        opts["freeze"] = tuple(args.freeze)
    if args.no_stratify:
        opts["stratify"] = False
    if args.no_scale:
        opts["scale"] = False
    if args.no_scale_targets:
        opts["scale_targets"] = False
    if args.deterministic:
        opts["deterministic"] = True
    if args.no_progress or args.json:
        opts["progress"] = False
    if args.no_health:
        opts["health"] = False
    if getattr(args, "no_judge", False):
        opts["judge"] = False
    if getattr(args, "d_set", None):
        from ..design import parse_assignments

        opts["d_variables"] = parse_assignments(args.d_set)
    return opts


def _int(text: str, flag: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"{flag} takes an integer or 'random'; received '{text}'", path=flag,
                         fix=f"e.g. {flag} 0, or {flag} random") from None


def _float(text: str, flag: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise UsageError(f"{flag} takes numbers; received '{text}'") from None


def add_data_options(p) -> None:
    """The data options of every command that reads a data set (train, check): one definition,
    so each command takes the data the same way."""
    p.add_argument("--data", default="mnist5k",
                   help="digits | mnist5k | synthetic-classification|regression|segmentation|sequence | "
                        "an image folder | .npz | .npy | .csv (default: mnist5k)")
    p.add_argument("--label", help="CSV: label column; .npy inputs: the labels .npy")
    p.add_argument("--keys", help=".npz: input and target keys, 'x,y'")
    p.add_argument("--masks", help="segmentation: folder of masks named like the images")
    p.add_argument("--classes", type=int, help="number of classes when the labels do not show all")


def data_spec(args) -> dict | str:
    """The data set named by :func:`add_data_options`' flags."""
    return _data_spec(args)


def _data_spec(args) -> dict | str:
    spec: dict = {"source": args.data}
    if args.label:
        spec["label"] = args.label
    if args.masks:
        spec["masks"] = args.masks
    if args.classes:
        spec["classes"] = args.classes
    if args.keys:
        keys = args.keys.split(",")
        if len(keys) != 2:
            raise UsageError(f"--keys needs two names 'x,y'; received '{args.keys}'")
        spec["x_key"], spec["y_key"] = keys
    return spec if len(spec) > 1 else args.data


def _add_monitor_arguments(p) -> None:
    from ..diagnose.command import add_monitor_arguments  # standard library only

    add_monitor_arguments(p)


def _health_callbacks(args, freeze) -> list:
    if getattr(args, "no_health", False):
        return []
    from ..diagnose.command import health_callbacks

    return health_callbacks(args, freeze)


def _logger_callbacks(args) -> list:
    """``--logger``: the design's figures and variables go with the run's config as
    hyper-parameters (two variants' runs can be told apart in TensorBoard or MLflow)."""
    if not getattr(args, "logger", None):
        return []
    from ..design import load, parse_assignments
    from .engine import LoggerCallback, require_logger

    require_logger(args.logger)  # a missing package fails before any training
    design = load(args.design, **parse_assignments(args.set))
    hparams = {"design/name": design.name, "design/params": design.graph.param_count,
               "design/multiply_adds": design.graph.multiply_adds,
               "design/input": "x".join(map(str, design.input_shape))}
    hparams.update({f"design/variables/{k}": v for k, v in design.variables.items()})
    return [LoggerCallback(args.logger, hparams, name=design.name)]


def run_train(args) -> int:
    from ..design import parse_assignments
    from .run import resume, train

    if args.resume:
        run = resume(args.resume, epochs=args.epochs, loop=args.loop)
    else:
        if not args.design:
            raise UsageError("archlab train needs a DESIGN (file, zoo name) or --resume RUN",
                             fix="e.g. archlab train mnist_cnn --data mnist5k")
        if args.out:  # before any work: a folder for runs that cannot be made is a clear error
            from ..limits import output_folder

            output_folder(args.out, "--out")
        options = _options(args)
        health = _health_callbacks(args, options.get("freeze", ()))
        if health:   # monitor options given: this monitor replaces the default one
            options["health"] = False
        loggers = _logger_callbacks(args)
        run = train(args.design, _data_spec(args), variables=parse_assignments(args.set),
                    callbacks=health + loggers, **options)
    if not is_global_zero():
        return 0  # a DDP worker: rank 0 reports the run (and wrote its files)
    if args.json:
        print(json.dumps(run.summary, indent=2))
    else:
        print_summary(run)
    return 0


def is_global_zero() -> bool:
    """Whether this process is rank 0 (Lightning's DDP launcher sets the ranks of the others)."""
    import os

    ranks = (os.environ.get(k, "0") or "0" for k in ("RANK", "LOCAL_RANK", "NODE_RANK"))
    return all(r.strip() == "0" for r in ranks)


def _fmt(v) -> str:
    if isinstance(v, float):
        return "-" if math.isnan(v) else f"{v:.4f}"
    return str(v)


def print_summary(run) -> None:
    """Per-epoch metrics (last epochs) and the test metrics, as rich tables."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    rows = run.metrics
    if rows:
        t = Table(title=f"training: {run.path}", title_justify="left")
        columns = [c for c in rows[0] if c != "lr"] + ["lr"]
        for c in columns:  # 'val accuracy' wraps at its space on a narrow terminal
            t.add_column(c.replace("_", " "), justify="right")
        shown = rows if len(rows) <= 12 else rows[:3] + rows[-9:]
        for r in shown:
            t.add_row(*(_fmt(r.get(c, "")) for c in columns))
        tables.print_table(t, console)
    s = run.summary
    test = s.get("test") or {}
    t = Table(title="test split, best epoch", title_justify="left")
    t.add_column("metric")
    t.add_column("value", justify="right")
    for k, v in test.items():
        if isinstance(v, float):
            t.add_row(k, _fmt(v))
    t.add_row("epochs run", str(s.get("epochs_run")))
    t.add_row("best epoch", str(s.get("best_epoch")))
    t.add_row("training seconds", _fmt(float(s.get("train_seconds", 0.0))))
    t.add_row("parameters", f"{s.get('params', 0):,}")
    t.add_row("seed", str(s.get("seed")))
    tables.print_table(t, console)
    per_class = test.get("per_class_accuracy") or test.get("per_class_iou")
    if per_class:
        names = run.data_info.get("classes") or [str(i) for i in range(len(per_class))]
        label = "per-class accuracy" if "per_class_accuracy" in test else "per-class IoU"
        console.print(f"{label}: " + "  ".join(f"{n}={_fmt(v)}" for n, v in zip(names, per_class, strict=False)))


# ------------------------------------------------------------------------- evaluate ---------


def run_evaluate(args) -> int:
    from .run import Run

    run = Run.open(args.run_dir)
    metrics = run.evaluate(data=args.data, split=args.split)
    if args.json:
        print(json.dumps({"run": str(run.path), "split": None if args.data else args.split,
                          "data": args.data or run.data_info["source"], "metrics": metrics}, indent=2))
        return 0
    from rich.table import Table

    t = Table(title=f"{run.path}: {'all of ' + args.data if args.data else args.split + ' split'}",
              title_justify="left")
    t.add_column("metric")
    t.add_column("value", justify="right")
    for k, v in metrics.items():
        if isinstance(v, float):
            t.add_row(k, _fmt(v))
    tables.print_table(t)
    return 0


# -------------------------------------------------------------------------- predict ---------


def run_predict(args) -> int:
    import numpy as np

    from .run import Run

    run = Run.open(args.run_dir)
    if args.save:  # before predicting: a path that cannot be written is a clear error
        from ..limits import output_file

        output_file(args.save, "--save")
    result = run.predict(args.inputs)
    if args.save:
        np.save(Path(args.save), result["outputs"].numpy())
    preds = []
    if result["task"] == "classification":
        probs = result["probabilities"]
        for i, (label, cls) in enumerate(zip(result["labels"], result["predicted"].tolist(), strict=True)):
            preds.append({"input": result["names"][i], "label": label, "class": cls,
                          "probability": float(probs[i, cls])})
    else:
        out = result["outputs"] if result["task"] == "regression" else result["predicted"]
        preds = [{"input": result["names"][i], "output": out[i].tolist()} for i in range(len(out))]
    if args.json:
        json.dump({"run": str(run.path), "task": result["task"], "predictions": preds}, sys.stdout, indent=2)
        print()
        return 0
    from rich.table import Table

    t = Table(title=f"predictions of {run.path}", title_justify="left")
    if result["task"] == "classification":
        t.add_column("input", overflow="fold")
        for c in ("label", "probability"):
            t.add_column(c, justify="right")
        for p in preds:
            t.add_row(str(p["input"]), p["label"], f"{p['probability']:.3f}")
    else:
        t.add_column("input", overflow="fold")
        t.add_column("output")
        for p in preds[:50]:
            text = str(p["output"]) if result["task"] == "regression" else f"mask {np.shape(p['output'])}"
            t.add_row(str(p["input"]), text)
    tables.print_table(t)
    return 0

