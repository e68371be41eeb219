"""A study's results: the leaderboard, the Pareto front, parameter importances and the
optimisation history, as tables (rich), JSON and PNG plots (matplotlib, headless).

Every trained trial is a run folder (``runs/search/NAME/trials/trial-NNNN``), so
``archlab compare`` and ``archlab report`` read the same results.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from .budget import format_figure

SCHEMA = "archlab.search/1"


@dataclass
class SearchResults:
    name: str
    objectives: list[dict]
    trials: list[dict]          # one per finished trial, in number order
    leaderboard: list[dict]     # trained trials, best first (first objective)
    pareto: list[dict]          # multi-objective: the feasible trials no other one dominates
    importances: dict[str, float]
    counts: dict[str, int]
    plots: dict[str, str]

    def to_dict(self) -> dict:
        return {"schema": SCHEMA, "name": self.name, "objectives": self.objectives,
                "counts": self.counts, "leaderboard": self.leaderboard, "pareto": self.pareto,
                "importances": self.importances, "trials": self.trials, "plots": self.plots}


def _trial_row(t: optuna.trial.FrozenTrial, objectives: list[dict]) -> dict:
    values = list(t.values) if t.values is not None else []
    row = {"number": t.number, "state": t.state.name.lower(),
           "feasible": bool(t.user_attrs.get("feasible", False)),
           "values": {o["name"]: v for o, v in zip(objectives, values, strict=False)},
           "variables": t.user_attrs.get("variables", {}),
           "train_options": t.user_attrs.get("train_options", {}),
           "figures": t.user_attrs.get("figures", {}),
           "metrics": t.user_attrs.get("metrics", {}),
           "run": t.user_attrs.get("run") if t.user_attrs.get("metrics") else None,
           "reason": t.user_attrs.get("infeasible_reason")}
    if t.state == TrialState.PRUNED:
        row["values"] = {objectives[0]["name"]: t.intermediate_values.get(
            max(t.intermediate_values), None) if t.intermediate_values else None}
    return row


def collect(study: optuna.Study) -> SearchResults:
    """The results of a study (works while workers are still running)."""
    objectives = [{"name": n, "direction": d} for n, d in zip(
        study.metric_names or _names(study), [d.name.lower() for d in study.directions],
        strict=False)]
    all_trials = study.get_trials(deepcopy=False)
    counts: dict[str, int] = {}
    for t in all_trials:
        key = t.state.name.lower()
        if t.state == TrialState.COMPLETE and not t.user_attrs.get("feasible", False):
            key = "infeasible"
        counts[key] = counts.get(key, 0) + 1
    finished = [t for t in all_trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    rows = [_trial_row(t, objectives) for t in finished]
    first = objectives[0]
    trained = [r for r in rows if r["state"] == "complete" and r["feasible"]]
    sign = -1 if first["direction"] == "maximize" else 1
    leaderboard = sorted(trained, key=lambda r: sign * r["values"][first["name"]])
    pareto: list[dict] = []
    if len(objectives) > 1:
        pareto = _pareto(trained, objectives)
    importances = _importances(study, finished)
    return SearchResults(study.study_name, objectives, rows, leaderboard, pareto, importances,
                         counts, {})


def _names(study: optuna.Study) -> list[str]:
    return [o["name"] for o in study.user_attrs.get("objectives", [])] or \
        [f"objective_{i}" for i in range(len(study.directions))]


def _pareto(rows: list[dict], objectives: list[dict]) -> list[dict]:
    def key(r):
        return [(-1 if o["direction"] == "maximize" else 1) * r["values"][o["name"]]
                for o in objectives]

    points = [(key(r), r) for r in rows]
    front = []
    for k, r in points:
        dominated = any(all(a <= b for a, b in zip(k2, k, strict=True)) and k2 != k
                        for k2, _ in points)
        if not dominated:
            front.append(r)
    return sorted(front, key=lambda r: key(r))


def _importances(study: optuna.Study, finished: list) -> dict[str, float]:
    """fANOVA importances (Optuna's default evaluator) over the trained trials; empty when too
    few trials or a single parameter value."""
    trained = [t for t in finished if t.state == TrialState.COMPLETE and t.user_attrs.get("feasible")]
    if len(trained) < 4:
        return {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # only the trained trials: an over-budget trial's placeholder value says nothing
            # about its parameters' effect on the metric
            only = optuna.create_study(directions=study.directions)
            only.add_trials(trained)
            imp = optuna.importance.get_param_importances(
                only, target=(lambda t: t.values[0]) if len(study.directions) > 1 else None,
                evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
        return {k: round(float(v), 4) for k, v in imp.items()}
    except (ValueError, RuntimeError, ZeroDivisionError):
        return {}


# ---------------------------------------------------------------------------- rendering ----


def write_report(study: optuna.Study, folder: Path) -> SearchResults:
    """Tables in results.json and PNG plots in ``folder``."""
    results = collect(study)
    folder.mkdir(parents=True, exist_ok=True)
    results.plots = plot(results, folder)
    (folder / "results.json").write_text(json.dumps(results.to_dict(), indent=2, default=str))
    return results


def plot(results: SearchResults, folder: Path) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots: dict[str, str] = {}
    first = results.objectives[0]
    best_fn = max if first["direction"] == "maximize" else min
    # history: every trained trial's value and the best so far
    xs, ys = [], []
    for r in results.trials:
        v = r["values"].get(first["name"])
        if r["feasible"] and v is not None and math.isfinite(v):
            xs.append(r["number"])
            ys.append(v)
    infeasible = [r["number"] for r in results.trials if not r["feasible"]]
    if xs:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.scatter(xs, ys, s=14, label="trained trial")
        best = [best_fn(ys[: i + 1]) for i in range(len(ys))]
        ax.step(xs, best, where="post", color="C3", label="best so far")
        for n in infeasible:
            ax.axvline(n, color="0.85", lw=0.8, zorder=0)
        ax.set_xlabel("trial (grey lines: over budget, not trained)")
        ax.set_ylabel(first["name"])
        ax.set_title(f"{results.name}: optimisation history")
        ax.legend(loc="best", fontsize=8)
        fig.tight_layout()
        plots["history"] = _save(fig, folder / "history.png", plt)
    if results.importances:
        fig, ax = plt.subplots(figsize=(6, 0.4 * len(results.importances) + 1.2))
        names = list(results.importances)[::-1]
        ax.barh(names, [results.importances[n] for n in names])
        ax.set_xlabel(f"importance for {first['name']} (fANOVA)")
        fig.tight_layout()
        plots["importances"] = _save(fig, folder / "importances.png", plt)
    if len(results.objectives) > 1:
        a, b = results.objectives[0]["name"], results.objectives[1]["name"]
        trained = [r for r in results.trials if r["feasible"] and r["state"] == "complete"]
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.scatter([r["values"][b] for r in trained], [r["values"][a] for r in trained], s=14,
                   color="0.6", label="trained trial")
        front = sorted(results.pareto, key=lambda r: r["values"][b])
        ax.plot([r["values"][b] for r in front], [r["values"][a] for r in front], "o-",
                color="C3", label="Pareto front")
        ax.set_xlabel(b)
        ax.set_ylabel(a)
        ax.legend(fontsize=8)
        ax.set_title(f"{results.name}: Pareto front")
        fig.tight_layout()
        plots["pareto"] = _save(fig, folder / "pareto.png", plt)
    return plots


def _save(fig: Any, path: Path, plt: Any) -> str:
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def render(results: SearchResults, top: int = 10) -> str:
    """Fixed-column tables for people."""
    from io import StringIO

    from rich.console import Console
    from rich.table import Table

    buf = StringIO()
    console = Console(file=buf, width=140, force_terminal=False, color_system=None)
    counts = ", ".join(f"{v} {k}" for k, v in sorted(results.counts.items()))
    console.print(f"study {results.name}: {counts}")
    first = results.objectives[0]["name"]
    board = Table(title=f"leaderboard (by {first}, trained trials)")
    for col in ("trial", *[o["name"] for o in results.objectives], "params", "multiply_adds",
                "variables", "run"):
        board.add_column(col, overflow="fold")
    for r in results.leaderboard[:top]:
        board.add_row(str(r["number"]), *[f"{r['values'][o['name']]:.4g}" for o in results.objectives],
                      format_figure("params", r["figures"].get("params")),
                      format_figure("multiply_adds", r["figures"].get("multiply_adds")),
                      _short({**r["variables"], **r["train_options"]}), str(r["run"] or "-"))
    console.print(board)
    if results.pareto:
        front = Table(title="Pareto front")
        for col in ("trial", *[o["name"] for o in results.objectives], "variables"):
            front.add_column(col, overflow="fold")
        for r in results.pareto:
            front.add_row(str(r["number"]), *[f"{r['values'][o['name']]:.4g}"
                                              for o in results.objectives],
                          _short({**r["variables"], **r["train_options"]}))
        console.print(front)
    if results.importances:
        imp = Table(title=f"parameter importances for {first} (fANOVA)")
        imp.add_column("parameter")
        imp.add_column("importance", justify="right")
        for k, v in results.importances.items():
            imp.add_row(k, f"{v:.3f}")
        console.print(imp)
    hist = Table(title="optimisation history")
    for col in ("trial", "state", first, "best so far", "note"):
        hist.add_column(col, overflow="fold")
    best = None
    maximize = results.objectives[0]["direction"] == "maximize"
    for r in results.trials:
        v = r["values"].get(first)
        note = r["reason"] or ""
        if r["feasible"] and r["state"] == "complete" and v is not None:
            best = v if best is None else (max(best, v) if maximize else min(best, v))
        state = r["state"] if r["feasible"] or r["state"] != "complete" else "infeasible"
        hist.add_row(str(r["number"]), state, "-" if v is None or not r["feasible"] else f"{v:.4g}",
                     "-" if best is None else f"{best:.4g}", note[:90])
    console.print(hist)
    for k, p in results.plots.items():
        console.print(f"{k} plot: {p}")
    return buf.getvalue()


def _short(values: dict) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in values.items())


def search_page(results: SearchResults, folder: Path) -> Path | None:
    """The study as a page of archlab's one HTML report renderer (archlab.report), when that
    package is present: the same tables, the plots inlined. Returns the file written."""
    try:
        from ..report import Page, write_html
    except ImportError:
        return None
    first = results.objectives[0]["name"]
    counts = ", ".join(f"{v} {k}" for k, v in sorted(results.counts.items()))
    page = Page(f"search {results.name}", counts)
    names = [o["name"] for o in results.objectives]
    board = page.section("Leaderboard")
    board.paragraph(f"Trained trials by {first}; every trial is a run folder.")
    board.table(["trial", *names, "params", "multiply_adds", "variables", "run"],
                [[r["number"], *[r["values"][n] for n in names], r["figures"].get("params"),
                  r["figures"].get("multiply_adds"), _short({**r["variables"], **r["train_options"]}),
                  r["run"]] for r in results.leaderboard])
    if results.pareto:
        front = page.section("Pareto front")
        front.table(["trial", *names, "variables"],
                    [[r["number"], *[r["values"][n] for n in names],
                      _short({**r["variables"], **r["train_options"]})] for r in results.pareto])
    if results.importances:
        imp = page.section("Parameter importances")
        imp.paragraph(f"fANOVA over the trained trials, for {first}.")
        imp.table(["parameter", "importance"], [[k, v] for k, v in results.importances.items()])
    hist = page.section("Optimisation history")
    hist.table(["trial", "state", first, "note"],
               [[r["number"], r["state"] if r["feasible"] or r["state"] != "complete" else "infeasible",
                 r["values"].get(first) if r["feasible"] else None, r["reason"] or ""]
                for r in results.trials])
    for key, path in results.plots.items():
        hist.image(Path(path).read_bytes(), alt=f"{key} plot", caption=key)
    out = folder / "report.html"
    write_html(page, out)
    return out
