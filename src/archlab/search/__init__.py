"""Search a design space under budgets: spaces in the design language, budgets checked before
training, Optuna studies on one machine or many, design-space studies (error EDFs) and baselines
scaled to a budget (docs/search.md).

    from archlab.search import load_space, parse_budgets, search
    study = search("space.yaml", name="s1", budgets=["params<=50k"], trials=20, data="digits")
"""

from __future__ import annotations

from typing import Any

from .budget import Budget, Screener, analytic_figures, parse_budget, parse_budgets
from .space import Space, SpaceError, load_space


def search(space: Any, *, name: str | None = None, budgets: list[str] | None = None,
           objectives: list[str] | None = None, trials: int = 20, data: Any = "mnist5k",
           **settings: Any):
    """Run (or resume) a study; returns the Optuna study. ``settings``: the other
    :class:`~archlab.search.study.SearchSettings` fields (epochs, sampler, storage, out, ...)."""
    from .study import Objective, Searcher, SearchSettings

    sp = load_space(space)
    task = sp.design_raw.get("task")
    names = objectives or ["val_accuracy" if task in (None, "classification") else "val_loss"]
    s = SearchSettings(name=name or sp.name, data=data, trials=trials,
                       budgets=parse_budgets(budgets), objectives=[Objective.parse(o) for o in names],
                       **settings)
    return Searcher(s, sp, log=lambda *a: None).run()


__all__ = ["Budget", "Screener", "Space", "SpaceError", "analytic_figures", "load_space",
           "parse_budget", "parse_budgets", "search"]
