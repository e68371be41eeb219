"""Design-space studies: compare whole spaces, not single designs (Radosavovic et al.,
"Designing Network Design Spaces", CVPR 2020).

``archlab space sample SPACE -n 100 --epochs 2`` trains n random designs of a space (the same
budgets and fidelity for every space); ``archlab space compare A B`` then gives, for each sample:

* the **error EDF**, F(e) = the share of its models with error < e: a space whose curve lies
  higher and further left holds more good models (the paper's Figure 2);
* **error against each parameter** (a scatter per parameter), where the good region shows;
* a **bootstrap 95% interval of the best value of each parameter**: draw 25% of the models with
  replacement, keep the parameter value of the best one, repeat (10,000 times by default); the
  2.5% and 97.5% quantiles bound where the best models lie (the paper's section 3.1).

Error is 1 - validation accuracy for classification, the validation loss otherwise (the
sample's objective when it is minimised).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError

SAMPLE_DIR = Path("runs") / "space"


def _open(ref: str):
    """A sample's study from its folder (runs/space/NAME) or its name."""
    import optuna

    folder = Path(ref)
    if not (folder / "study.db").exists():
        folder = SAMPLE_DIR / ref
    if not (folder / "study.db").exists():
        raise UsageError(f"no space sample at '{ref}' (looked for {Path(ref) / 'study.db'} and "
                         f"{folder / 'study.db'})",
                         fix="run archlab space sample SPACE -n 100 first, then compare its folder")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{(folder / 'study.db').resolve()}"
    names = optuna.get_all_study_names(storage)
    if not names:
        raise UsageError(f"{folder / 'study.db'} holds no study")
    name = folder.name if folder.name in names else names[0]
    return optuna.load_study(study_name=name, storage=storage), folder


def sample_errors(ref: str) -> dict[str, Any]:
    """The trained models of one sample: their errors and parameter values."""
    from optuna.trial import TrialState

    study, folder = _open(ref)
    direction = study.directions[0].name.lower()
    metric = (study.metric_names or ["val_accuracy"])[0]
    models = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if not t.user_attrs.get("feasible") or t.values is None:
            continue
        value = float(t.values[0])
        error = 1.0 - value if metric.endswith("accuracy") else (
            value if direction == "minimize" else -value)
        params = {**t.user_attrs.get("variables", {}), **t.user_attrs.get("train_options", {})}
        params.update({f: t.user_attrs.get("figures", {}).get(f) for f in ("params", "multiply_adds")})
        models.append({"trial": t.number, "error": error, "params": params})
    infeasible = sum(1 for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                     if not t.user_attrs.get("feasible"))
    return {"name": study.study_name, "folder": str(folder), "metric": metric,
            "error": "1 - " + metric if metric.endswith("accuracy") else metric,
            "models": models, "infeasible": infeasible}


def edf(errors: list[float], grid: np.ndarray) -> np.ndarray:
    """F(e) = share of errors < e, at each e of the grid.

    >>> edf([0.1, 0.2, 0.3, 0.4], np.array([0.25])).tolist()
    [0.5]
    """
    e = np.sort(np.asarray(errors, dtype=float))
    return np.searchsorted(e, grid, side="left") / max(1, len(e))


def bootstrap_best(models: list[dict], param: str, *, resamples: int = 10000, share: float = 0.25,
                   seed: int = 0) -> dict[str, float] | None:
    """95% interval of the parameter value of the best model, by bootstrap (Radosavovic et al.
    2020): draw ``share`` of the models with replacement, keep the best one's value, repeat."""
    pairs = [(m["error"], m["params"].get(param)) for m in models]
    pairs = [(e, float(v)) for e, v in pairs if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if len(pairs) < 4:
        return None
    errors = np.array([p[0] for p in pairs])
    values = np.array([p[1] for p in pairs])
    rng = np.random.default_rng(seed)
    k = max(2, int(round(share * len(pairs))))
    draws = rng.integers(0, len(pairs), size=(resamples, k))
    best = draws[np.arange(resamples), np.argmin(errors[draws], axis=1)]
    picked = values[best]
    low, high = np.percentile(picked, [2.5, 97.5])
    return {"best": float(values[np.argmin(errors)]), "low": float(low), "high": float(high),
            "median": float(np.median(picked))}


def compare_samples(refs: list[str], *, out: str | None = None, bootstrap: int = 10000) -> dict:
    samples = [sample_errors(r) for r in refs]
    for s in samples:
        if len(s["models"]) < 2:
            raise UsageError(f"sample '{s['name']}' has {len(s['models'])} trained model(s); an "
                             "error distribution needs more",
                             fix=f"add models: archlab space sample SPACE --name {s['name']} -n 50 "
                                 "(the sample resumes)")
    folder = Path(out) if out else SAMPLE_DIR / ("compare-" + "-".join(s["name"] for s in samples))
    folder.mkdir(parents=True, exist_ok=True)
    all_errors = np.concatenate([[m["error"] for m in s["models"]] for s in samples])
    grid = np.linspace(all_errors.min(), all_errors.max(), 101)
    params = sorted({p for s in samples for m in s["models"] for p, v in m["params"].items()
                     if isinstance(v, (int, float)) and not isinstance(v, bool)})
    summary = []
    for s in samples:
        errs = np.array([m["error"] for m in s["models"]])
        row = {"name": s["name"], "folder": s["folder"], "models": len(errs),
               "infeasible": s["infeasible"], "error": s["error"],
               "min_error": float(errs.min()), "median_error": float(np.median(errs)),
               "q10_error": float(np.quantile(errs, 0.1)),
               "edf": {"grid": grid.round(6).tolist(), "F": edf(errs.tolist(), grid).round(4).tolist()},
               "best_values": {}}
        for p in params:
            ci = bootstrap_best(s["models"], p, resamples=bootstrap)
            if ci is not None:
                row["best_values"][p] = ci
        summary.append(row)
    plots = _plot(samples, summary, params, grid, folder)
    result = {"schema": "archlab.space-compare/1", "samples": summary, "parameters": params,
              "plots": plots, "folder": str(folder)}
    (folder / "compare.json").write_text(json.dumps(result, indent=2))
    return result


def _plot(samples: list[dict], summary: list[dict], params: list[str], grid: np.ndarray,
          folder: Path) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots = {}
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for s, row in zip(samples, summary, strict=True):
        ax.plot(grid, row["edf"]["F"], label=f"{s['name']} (n={row['models']}, "
                                                f"min {row['min_error']:.3g})")
    ax.set_xlabel(f"error ({summary[0]['error']})")
    ax.set_ylabel("cumulative prob. F(error < e)")
    ax.set_title("error EDF")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(folder / "edf.png", dpi=110)
    plt.close(fig)
    plots["edf"] = str(folder / "edf.png")
    if params:
        cols = min(3, len(params))
        rows = (len(params) + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
        for ax, p in zip(axes.flat, params, strict=False):
            for i, s in enumerate(samples):
                pts = [(m["params"][p], m["error"]) for m in s["models"]
                       if isinstance(m["params"].get(p), (int, float))]
                if pts:
                    ax.scatter(*zip(*pts, strict=True), s=10, alpha=0.7, color=f"C{i}",
                               label=s["name"])
                ci = summary[i]["best_values"].get(p)
                if ci:
                    ax.axvspan(ci["low"], ci["high"], color=f"C{i}", alpha=0.12)
            ax.set_xlabel(p)
            ax.set_ylabel("error")
            if p in ("params", "multiply_adds") or (p.startswith(("lr", "l2"))):
                ax.set_xscale("log")
        for ax in list(axes.flat)[len(params):]:
            ax.axis("off")
        axes.flat[0].legend(fontsize=7)
        fig.suptitle("error vs parameter (band: bootstrap 95% interval of the best value)",
                     fontsize=9)
        fig.tight_layout()
        fig.savefig(folder / "parameters.png", dpi=110)
        plt.close(fig)
        plots["parameters"] = str(folder / "parameters.png")
    return plots


def render_comparison(result: dict) -> str:
    from io import StringIO

    from rich.console import Console
    from rich.table import Table

    buf = StringIO()
    console = Console(file=buf, width=130, force_terminal=False, color_system=None)
    t = Table(title=f"design spaces (error = {result['samples'][0]['error']})")
    for col in ("space", "models", "over budget", "min error", "10% quantile", "median error"):
        t.add_column(col, justify="right" if col != "space" else "left")
    for s in result["samples"]:
        t.add_row(s["name"], str(s["models"]), str(s["infeasible"]), f"{s['min_error']:.4f}",
                  f"{s['q10_error']:.4f}", f"{s['median_error']:.4f}")
    console.print(t)
    b = Table(title="best value of each parameter: bootstrap 95% interval (Radosavovic et al. 2020)")
    b.add_column("parameter")
    for s in result["samples"]:
        b.add_column(s["name"])
    for p in result["parameters"]:
        cells = []
        for s in result["samples"]:
            ci = s["best_values"].get(p)
            cells.append("-" if ci is None else f"{ci['best']:.4g} [{ci['low']:.4g}, {ci['high']:.4g}]")
        b.add_row(p, *cells)
    console.print(b)
    for k, v in result["plots"].items():
        console.print(f"{k} plot: {v}")
    return buf.getvalue()
