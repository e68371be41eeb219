"""The search on one machine: budgets screened before training (infeasible trials never train,
their figures reach the sampler as constraints), trials are ordinary run folders, the report,
NSGA-II's Pareto front, pruning through the Lightning callback, a changed space refused, a
space with no feasible design. Real training on scikit-learn's digits (a second per trial)."""

from __future__ import annotations

import textwrap

import optuna
import pytest

import archlab
from archlab import cli
from archlab.search.budget import parse_budget
from archlab.search.space import load_space
from archlab.search.study import Objective, Searcher, SearchError, SearchSettings, open_study

SPACE = textwrap.dedent("""\
    space: digits_mlp_space
    design: digits_mlp
    variables:
      hidden: {int: [4, 96], step: 4}
    train:
      lr: {log: [3.0e-3, 3.0e-2]}
    """)


@pytest.fixture
def space_file(tmp_path):
    f = tmp_path / "space.yaml"
    f.write_text(SPACE)
    return f


def settings(tmp_path, name="s", trials=6, budgets=("params<=3k",), objectives=("val_accuracy",),
             **kw):
    return SearchSettings(name=name, data="digits", trials=trials,
                          budgets=[parse_budget(b) for b in budgets],
                          objectives=[Objective.parse(o) for o in objectives],
                          out=str(tmp_path / "runs"), seed=3, **kw)


def test_a_search_screens_trains_and_records_every_trial(tmp_path, space_file):
    s = settings(tmp_path, trials=4)
    study = Searcher(s, load_space(space_file), log=lambda *a: None).run()
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(trials) == 4
    feasible = [t for t in trials if t.user_attrs["feasible"]]
    infeasible = [t for t in trials if not t.user_attrs["feasible"]]
    assert feasible and infeasible, [t.user_attrs.get("variables") for t in trials]
    for t in infeasible:  # over budget: never trained, recorded with its figures
        assert t.user_attrs["figures"]["params"] > 3000
        assert "run" not in t.user_attrs
        assert t.system_attrs["constraints:params"] > 0  # what the sampler reads
        assert "over budget: params" in t.user_attrs["infeasible_reason"]
    for t in feasible:  # an ordinary run folder with the resolved design
        run = archlab.train.Run.open(t.user_attrs["run"])
        design = run.design()
        assert design.graph.param_count == t.user_attrs["figures"]["params"] <= 3000
        assert design.variables["hidden"] == t.params["hidden"]
        assert run.config.lr == pytest.approx(t.params["lr"])
        assert t.values[0] == pytest.approx(run.metrics[-1]["val_accuracy"])
        assert t.system_attrs["constraints:params"] <= 0
    # rerunning the finished study trains nothing more
    again = Searcher(s, load_space(space_file), log=lambda *a: None).run()
    assert len(again.get_trials()) == len(study.get_trials())


def test_report_tables_and_plots(tmp_path, space_file, capsys):
    s = settings(tmp_path, name="r", trials=5, budgets=("params<=4k",))
    Searcher(s, load_space(space_file), log=lambda *a: None).run()
    code = cli.main(["search", "--report", "--name", "r", "--out", str(tmp_path / "runs")])
    out = capsys.readouterr().out
    assert code == 0
    assert "leaderboard (by val_accuracy" in out and "optimisation history" in out
    report = tmp_path / "runs" / "r" / "report"
    assert (report / "history.png").stat().st_size > 1000
    assert (report / "results.json").exists()
    import importlib.util

    if importlib.util.find_spec("archlab.report") is not None:  # the one HTML renderer's page
        html = (report / "report.html").read_text()
        assert "Leaderboard" in html and "Optimisation history" in html and "data:image/png" in html


def test_nsga2_pareto_front_of_accuracy_and_size(tmp_path, space_file):
    s = settings(tmp_path, name="mo", trials=6, budgets=(),
                 objectives=("val_accuracy", "params:min"))
    study = Searcher(s, load_space(space_file), log=lambda *a: None).run()
    assert isinstance(study.sampler, optuna.samplers.NSGAIISampler)
    assert isinstance(study.pruner, optuna.pruners.NopPruner)  # Optuna cannot prune these
    from archlab.search.results import collect

    results = collect(study)
    front = {r["number"] for r in results.pareto}
    assert front == {t.number for t in study.best_trials}  # Optuna's own Pareto front


def test_pruning_stops_a_bad_trial_through_the_lightning_callback(tmp_path):
    from archlab.search.callbacks import PruningCallback

    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=1.01))
    trial = study.ask()
    cb = PruningCallback(trial, "accuracy")
    run = archlab.train("digits_mlp", "digits", epochs=4, callbacks=[cb], progress=False,
                        health=False, out=str(tmp_path))
    assert cb.pruned and cb.pruned_at is not None and cb.pruned_at < 3
    assert len(run.metrics) == cb.pruned_at + 1  # stopped there instead of after four epochs
    assert list(study.trials[0].intermediate_values) == list(range(cb.pruned_at + 1))


def test_a_changed_space_is_refused_with_the_fix(tmp_path, space_file):
    s = settings(tmp_path, name="same", trials=1, budgets=())
    Searcher(s, load_space(space_file), log=lambda *a: None).run()
    changed = tmp_path / "changed.yaml"
    changed.write_text(SPACE.replace("[4, 96]", "[4, 128]"))
    with pytest.raises(SearchError) as err:
        open_study(s, load_space(changed))
    assert "already exists with a different design space" in str(err.value)
    assert "give the new search its own --name" in str(err.value)
    with pytest.raises(SearchError, match="different budgets"):
        open_study(settings(tmp_path, name="same", budgets=("params<=1k",)), load_space(space_file))


def test_no_feasible_design_names_the_closest_candidates(tmp_path, space_file):
    s = settings(tmp_path, name="none", trials=4, budgets=("params<=100",))
    with pytest.raises(SearchError) as err:
        Searcher(s, load_space(space_file), log=lambda *a: None).run()
    text = str(err.value)
    assert "no design of the 4 trials fits the budgets; the closest:" in text
    assert "(budget 100)" in text
    study = open_study(s, None, create=False)
    smallest = min(t.params["hidden"] for t in study.trials)
    first = text.split("the closest:\n")[1].splitlines()[0]
    assert first.startswith(f'  {{"hidden": {smallest}}}: params ')  # the smallest is the closest
    assert "loosen a budget" in text
    assert not (tmp_path / "runs" / "none" / "trials").exists()  # nothing was trained


@pytest.mark.parametrize("message", [
    "(sqlite3.IntegrityError) UNIQUE constraint failed: alembic_version.version_num",
    'duplicate key value violates unique constraint "alembic_version_pkc"'])
def test_storage_creation_race_is_retried(monkeypatch, tmp_path, message):
    """Two processes opening a new study file at once race to create Optuna's tables; the loser
    sees the winner's row (SQLite: a failed UNIQUE constraint; PostgreSQL: a duplicate key) and
    must try again, not fail the search (seen in CI: a poller and a search on one new file)."""
    from archlab.search import study as study_module

    real, calls = optuna.storages.RDBStorage, []

    def flaky(url, **kw):
        calls.append(url)
        if len(calls) == 1:
            raise RuntimeError(message)
        return real(url, **kw)

    monkeypatch.setattr(study_module.optuna.storages, "RDBStorage", flaky)
    monkeypatch.setattr(study_module.time, "sleep", lambda s: None)
    storage = study_module._storage(f"sqlite:///{tmp_path / 'race.db'}")
    assert len(calls) == 2 and storage is not None


def test_storage_other_errors_are_not_retried(monkeypatch, tmp_path):
    from archlab.search import study as study_module

    calls = []

    def broken(url, **kw):
        calls.append(url)
        raise RuntimeError("unable to open database file")

    monkeypatch.setattr(study_module.optuna.storages, "RDBStorage", broken)
    with pytest.raises(SearchError, match="cannot open the study storage"):
        study_module._storage(f"sqlite:///{tmp_path / 'x.db'}")
    assert len(calls) == 1
