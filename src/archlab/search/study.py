"""The search: an Optuna study over a design space, each trial screened against the budgets and,
when it fits, trained by archlab's trainer into an ordinary run folder.

* Samplers: TPE (one objective, the default), NSGA-II (several objectives: the Pareto front),
  random. The budgets reach the sampler as constraint values (``Trial.set_constraint``, Optuna 5's
  form of ``constraints_func``): a candidate over budget
  is never trained, it is recorded (COMPLETE, with its figures and ``feasible: false``) so the
  sampler learns where the boundary lies.
* Pruning (one objective only): the validation metric is reported after every epoch through a
  Lightning callback and the median or successive-halving pruner stops bad trials early. Optuna
  cannot prune multi-objective studies (``Trial.report`` raises there); those rely on the
  analytic screening and a short fidelity (few epochs, ``--steps`` or ``--minutes``).
* Storage: ``sqlite:///runs/search/NAME/study.db`` by default; any Optuna RDB URL
  (``postgresql://...``) for many workers. Workers keep a heartbeat; a trial whose worker died
  (kill -9, a lost machine) is failed and queued again with the same parameters, at once when the
  dead worker ran on this machine, after the grace period otherwise.
* The study remembers its space's fingerprint: a name reused with a different space is refused.
"""

from __future__ import annotations

import json
import os
import socket
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from ..errors import ArchlabError, UsageError
from .budget import ANALYTIC, Budget, Screener, format_figure
from .space import Space

SEARCH_DIR = Path("runs") / "search"
HEARTBEAT_S = 10
GRACE_S = 60
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


class SearchError(ArchlabError):
    """A search cannot start or cannot go on (a changed space, no feasible design, ...)."""


@dataclass(frozen=True)
class Objective:
    """What a trial returns: a validation metric (``val_accuracy``) or a design figure."""

    name: str
    direction: str  # maximize | minimize

    @classmethod
    def parse(cls, text: str) -> Objective:
        name, _, way = text.partition(":")
        name = name.strip()
        if not (name.startswith(("val_", "test_")) or name in ANALYTIC or name in ("latency",
                                                                                   "train_memory")):
            raise UsageError(f"unknown objective '{name}': a validation metric (val_accuracy, "
                             "val_loss) or a figure (params, multiply_adds, latency, train_memory)",
                             fix="e.g. --objective val_accuracy --objective latency:min")
        if way not in ("", "max", "min", "maximize", "minimize"):
            raise UsageError(f"objective direction must be max or min, got '{way}'",
                             fix=f"write --objective {name}:max or {name}:min")
        if not way:
            way = "max" if name.endswith(("accuracy", "dice", "iou", "r2")) else "min"
        return cls(name, "maximize" if way.startswith("max") else "minimize")

    @property
    def worst(self) -> float:
        return 0.0 if self.direction == "maximize" else 1e12


@dataclass
class SearchSettings:
    """Everything a worker needs; every worker of one study is started with the same ones."""

    name: str
    data: Any = "mnist5k"
    trials: int = 20
    budgets: list[Budget] = field(default_factory=list)
    objectives: list[Objective] = field(default_factory=list)
    sampler: str = "auto"          # auto | tpe | nsga2 | random
    pruner: str = "median"         # median | halving | none
    epochs: int = 1                # fidelity per trial
    steps: int | None = None       # stop each trial after this many optimiser steps
    minutes: float | None = None   # stop each trial after this many minutes
    storage: str | None = None     # None: sqlite in the study folder
    out: str = str(SEARCH_DIR)
    seed: int = 0
    device: str = "cpu"            # for measured latency
    health: bool = False           # the diagnostics health monitor in each trial (slower)
    train_options: dict = field(default_factory=dict)

    @property
    def folder(self) -> Path:
        return Path(self.out) / self.name

    def storage_url(self) -> str:
        if self.storage:
            return with_driver(self.storage)
        self.folder.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{(self.folder / 'study.db').resolve()}"


def with_driver(url: str) -> str:
    """``postgresql://`` names SQLAlchemy 2.1's default driver, psycopg 3; archlab's
    ``postgres`` extra installs psycopg2: use whichever is installed."""
    if url.startswith(("postgresql://", "postgres://")):
        import importlib.util

        if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2"):
            return "postgresql+psycopg2://" + url.split("://", 1)[1]
    return url


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def open_study(settings: SearchSettings, space: Space | None, *, create: bool = True) -> optuna.Study:
    """Create or reopen the study; refuse a name reused with a different space or budgets."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    url = settings.storage_url()
    storage = _storage(url)
    directions = [o.direction for o in settings.objectives]
    if not create:
        try:
            return optuna.load_study(study_name=settings.name, storage=storage)
        except KeyError:
            raise SearchError(f"no study named '{settings.name}' in {url}",
                              fix="run archlab search first, or check --name/--storage") from None
    sampler = make_sampler(settings)
    pruner = make_pruner(settings)
    study = optuna.create_study(study_name=settings.name, storage=storage, sampler=sampler,
                                pruner=pruner, directions=directions, load_if_exists=True)
    check_same_study(study, settings, space)
    if not study.metric_names:
        study.set_metric_names([o.name for o in settings.objectives])
    return study


def _storage(url: str) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage with heartbeats. Workers that start at the same moment may race to
    create the tables (PostgreSQL then reports a duplicate key, SQLite a failed UNIQUE constraint
    on Optuna's ``alembic_version`` table): the loser tries again."""
    import random

    for attempt in range(6):
        try:
            storage = optuna.storages.RDBStorage(
                url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                    max_retry=3),
                engine_kwargs={"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None)
            if url.startswith("sqlite"):
                _sqlite_pragmas(storage)
            return storage
        except Exception as exc:  # SQLAlchemy/driver errors: a bad URL, a server that is down
            text = str(exc)
            if attempt < 5 and ("duplicate key" in text or "already exists" in text
                                or "UniqueViolation" in text or "UNIQUE constraint failed" in text
                                or "locked" in text):
                time.sleep(0.5 + random.random() * 2)
                continue
            raise SearchError(f"cannot open the study storage '{url}': {text.splitlines()[0]}",
                              fix="check the URL (postgresql://USER@HOST:PORT/DB) and that the "
                                  "server accepts connections") from None
    raise AssertionError("unreachable")


def _sqlite_pragmas(storage: Any) -> None:
    """Write-ahead log (readers do not block the writer: several workers on one machine) and
    fewer fsyncs (a crash may lose the last transaction, never corrupt the file)."""
    from sqlalchemy import event

    def on_connect(dbapi_connection, _record) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    event.listen(storage.engine, "connect", on_connect)
    storage.engine.dispose()  # reconnect with the pragmas


def study_fingerprint(settings: SearchSettings, space: Space) -> dict[str, str]:
    return {
        "space": space.fingerprint(),
        "budgets": ",".join(sorted(b.key + f"<={b.limit:g}" for b in settings.budgets)) or "none",
        "objectives": ",".join(f"{o.name}:{o.direction}" for o in settings.objectives),
    }


def check_same_study(study: optuna.Study, settings: SearchSettings, space: Space | None) -> None:
    if space is None:
        return
    mine = study_fingerprint(settings, space)
    theirs = study.user_attrs.get("archlab")
    if theirs is None:
        study.set_user_attr("archlab", mine)
        study.set_user_attr("space_name", space.name)
        study.set_user_attr("space_source", space.source)
        study.set_user_attr("data", str(settings.data))
        return
    for part in ("space", "budgets", "objectives"):
        if theirs.get(part) != mine[part]:
            what = {"space": "a different design space",
                    "budgets": f"different budgets ({theirs.get('budgets')} before, "
                               f"{mine['budgets']} now)",
                    "objectives": f"different objectives ({theirs.get('objectives')} before, "
                                  f"{mine['objectives']} now)"}[part]
            raise SearchError(
                f"the study '{settings.name}' already exists with {what}; its trials would not "
                "be comparable with the new ones",
                source=str(settings.folder),
                fix=f"give the new search its own --name, or delete {settings.folder} (and the "
                    "study in --storage) to start again")


def make_sampler(settings: SearchSettings) -> optuna.samplers.BaseSampler:
    multi = len(settings.objectives) > 1
    kind = settings.sampler
    if kind == "auto":
        kind = "nsga2" if multi else "tpe"
    # the budgets reach TPE and NSGA-II as constraint values set on each trial
    # (Trial.set_constraint, Optuna 5's form of constraints_func): see Searcher._constrain
    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=settings.seed,
                                          n_startup_trials=min(10, max(2, settings.trials // 3)))
    if kind == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=settings.seed,
                                             population_size=max(4, min(50, settings.trials // 3)))
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=settings.seed)
    raise UsageError(f"unknown sampler '{kind}'; valid: auto, tpe, nsga2, random")


def make_pruner(settings: SearchSettings) -> optuna.pruners.BasePruner:
    if len(settings.objectives) > 1 or settings.pruner == "none":
        return optuna.pruners.NopPruner()  # Optuna cannot prune multi-objective studies
    if settings.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=0)
    if settings.pruner == "halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    raise UsageError(f"unknown pruner '{settings.pruner}'; valid: median, halving, none")


# ------------------------------------------------------------------------------- trials ----


class _Surplus(Exception):
    """Another worker already started the last trial the study needs."""


def counts(study: optuna.Study) -> dict[str, int]:
    out = {s.name: 0 for s in TrialState}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name] += 1
    return out


def recover_lost_trials(study: optuna.Study) -> list[int]:
    """Fail and queue again the trials lost with their worker: RUNNING trials of a dead process
    on this machine (kill -9), and trials interrupted (Ctrl-C, SIGTERM) and not yet queued again.
    Returns the numbers queued again."""
    host = socket.gethostname()
    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    storage = study._storage  # the study's own storage object (RDBStorage)
    retry = optuna.storages.RetryHeartbeatStaleTrialCallback()
    queued = []
    for t in trials:
        worker = str(t.user_attrs.get("worker", ""))
        w_host, _, w_pid = worker.rpartition(":")
        lost = False
        if t.state == TrialState.RUNNING and w_host == host and w_pid.isdigit() \
                and int(w_pid) != os.getpid() and not _alive(int(w_pid)):
            storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            lost = True
        elif t.state == TrialState.FAIL and t.user_attrs.get("interrupted") and t.number not in retried:
            lost = True
        if lost and t.number not in retried:
            retry(study, storage.get_trial(t._trial_id))
            queued.append(t.number)
    return queued


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (a killed child not yet reaped) is dead for our purpose
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except OSError:
        return True


@dataclass
class TrialOutcome:
    number: int
    feasible: bool
    values: list[float]
    run: str | None


class Searcher:
    """Runs trials of one study until it holds ``settings.trials`` finished ones."""

    def __init__(self, settings: SearchSettings, space: Space, *, log=print) -> None:
        self.settings = settings
        self.space = space
        self.log = log
        self.screener = Screener(settings.budgets, device=settings.device,
                                 cache_file=settings.folder / "figures_cache.json")
        self.study: optuna.Study | None = None
        self.trials_dir = settings.folder / "trials"
        self._designs: dict[str, Any] = {}

    def run(self) -> optuna.Study:
        s = self.settings
        s.folder.mkdir(parents=True, exist_ok=True)
        self.study = study = open_study(s, self.space)
        self._write_space()
        queued = recover_lost_trials(study)
        if queued:
            self.log(f"queued again the trials lost with their worker: {queued}")
        while True:
            c = counts(study)
            done = c["COMPLETE"] + c["PRUNED"]
            if done >= s.trials:
                break
            if done + c["RUNNING"] >= s.trials and not c["WAITING"]:
                time.sleep(1.0)  # the last trials run elsewhere: wait for them, or for their
                # heartbeat to go stale (then optimize() fails and queues them again)
                optuna.storages.fail_stale_trials(study)
                continue
            try:
                study.optimize(self.objective, n_trials=1, catch=(_Surplus,))
            except KeyboardInterrupt:
                queued = recover_lost_trials(study)
                self.log(f"interrupted; trial(s) {queued} will run again when this command is "
                         "repeated")
                raise
        self._check_feasible(study)
        return study

    def _write_space(self) -> None:
        f = self.settings.folder / "space.json"
        data = {"name": self.space.name, "source": self.space.source,
                "design": self.space.design_source, "fingerprint": self.space.fingerprint(),
                "dimensions": self.space.describe(),
                "budgets": [b.text for b in self.settings.budgets],
                "objectives": [asdict(o) for o in self.settings.objectives]}
        tmp = f.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=2, default=str))
        tmp.replace(f)

    def objective(self, trial: optuna.Trial) -> float | list[float]:
        s = self.settings
        trial.set_user_attr("worker", worker_id())
        before = [t for t in self.study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING))
                  if t.number < trial.number]
        if len(before) >= s.trials:
            trial.set_user_attr("surplus", True)
            raise _Surplus(f"trial {trial.number} is not needed: {s.trials} trials were started")
        values, train = self.space.suggest(trial)
        trial.set_user_attr("variables", values)
        trial.set_user_attr("train_options", train)
        n_budget = len(s.budgets)
        broken = self.space.violations(values, train)
        design = None
        invalid = None
        if not broken:
            try:
                design = self._design(values)
            except ArchlabError as exc:
                invalid = str(exc)
        if broken or invalid:
            reason = (f"breaks {', '.join(broken)}" if broken else f"invalid design: {invalid}")
            trial.set_user_attr("feasible", False)
            trial.set_user_attr("infeasible_reason", reason)
            self._constrain(trial, [0.0] * n_budget + [1.0])
            return self._values(None, None, {})
        screening = self.screener.screen(design)
        figures = {k: v for k, v in screening.figures.items() if v is not None}
        trial.set_user_attr("figures", figures)
        self._constrain(trial, [screening.violations[b.key] for b in s.budgets] + [0.0])
        trial.set_user_attr("feasible", screening.feasible)
        if not screening.feasible:
            trial.set_user_attr("infeasible_reason", "over budget: " + "; ".join(
                screening.over(s.budgets)))
            return self._values(None, design, figures)
        run = self._train(trial, design, train)
        return self._values(run, design, figures, trial)

    def _design(self, values: dict) -> Any:
        """The candidate design, cached by its variables (samplers repeat points)."""
        key = json.dumps(values, sort_keys=True, default=str)
        if key not in self._designs:
            if len(self._designs) > 4096:
                self._designs.clear()
            self._designs[key] = self.space.candidate_design(values)
        return self._designs[key]

    def _constrain(self, trial: optuna.Trial, values: list[float]) -> None:
        """The constraint values the samplers read (<= 0: feasible): the relative excess over
        each budget, then 1 for a point that breaks the space's constraints or gives an invalid
        design (0 otherwise)."""
        trial.set_user_attr("constraints", values)
        keys = [b.key for b in self.settings.budgets] + ["space"]
        for key, value in zip(keys, values, strict=True):
            trial.set_constraint(key, value)

    def _train(self, trial: optuna.Trial, design: Any, train: dict) -> Any:
        from ..train.run import train as train_design
        from .callbacks import FidelityCallback, PruningCallback

        s = self.settings
        options = {"epochs": s.epochs, "seed": s.seed, "progress": False, "health": s.health,
                   **s.train_options, **train}
        callbacks = [FidelityCallback(steps=s.steps, minutes=s.minutes)]
        pruning = None
        if len(s.objectives) == 1 and s.objectives[0].name.startswith("val_"):
            pruning = PruningCallback(trial, s.objectives[0].name[4:])
            callbacks.append(pruning)
        self.trials_dir.mkdir(parents=True, exist_ok=True)
        name = f"trial-{trial.number:04d}"
        trial.set_user_attr("run", str(self.trials_dir / name))
        try:
            run = train_design(design, s.data, callbacks=callbacks, out=str(self.trials_dir),
                               name=name, **options)
        except KeyboardInterrupt:
            trial.set_user_attr("interrupted", True)
            raise
        except UsageError as exc:
            if "interrupted" in exc.message:
                trial.set_user_attr("interrupted", True)
                raise KeyboardInterrupt from None
            raise
        if pruning is not None and pruning.pruned:
            trial.set_user_attr("pruned_at_epoch", pruning.pruned_at)
            raise optuna.TrialPruned(f"pruned after epoch {pruning.pruned_at}")
        return run

    def _values(self, run: Any, design: Any, figures: dict, trial: optuna.Trial | None = None):
        out = []
        metrics = _run_metrics(run) if run is not None else {}
        if trial is not None:
            trial.set_user_attr("metrics", metrics)
        for o in self.settings.objectives:
            if o.name.startswith(("val_", "test_")):
                value = metrics.get(o.name)
                value = o.worst if value is None else value
            elif o.name in figures:
                value = figures[o.name]
            elif design is not None:
                value = self.screener.figure(design, o.name)
                if trial is not None:
                    trial.set_user_attr("figures", {**figures, o.name: value})
            else:
                value = o.worst
            out.append(float(value))
        return out[0] if len(out) == 1 else out

    def _check_feasible(self, study: optuna.Study) -> None:
        trials = [t for t in study.get_trials(deepcopy=False, states=FINISHED)]
        if not trials or any(t.user_attrs.get("feasible") for t in trials):
            return
        raise no_feasible_error(trials, self.settings.budgets, f"the {len(trials)} trials")


def no_feasible_error(trials: list, budgets: list[Budget], what: str) -> SearchError:
    """The error for a space without a feasible design: the closest candidates' figures."""
    def excess(t) -> float:
        return sum(max(0.0, v) for v in t.user_attrs.get("constraints", [1.0])) or 1e9

    closest = sorted(trials, key=excess)[:3]
    lines = []
    for t in closest:
        figs = t.user_attrs.get("figures", {})
        parts = [f"{b.key} {format_figure(b.figure, figs.get(b.key))} (budget "
                 f"{format_figure(b.figure, b.limit)})" for b in budgets]
        why = t.user_attrs.get("infeasible_reason", "")
        lines.append(f"  {json.dumps(t.user_attrs.get('variables', {}))}: {', '.join(parts)}"
                     + (f" [{why}]" if why and not parts else ""))
    return SearchError(f"no design of {what} fits the budgets; the closest:\n" + "\n".join(lines),
                       fix="loosen a budget, or widen the space towards smaller designs "
                           "(lower widths and depths)")


def _run_metrics(run: Any) -> dict[str, float]:
    """Best validation metrics over the epochs (the kept checkpoint) and the test metrics."""
    rows = run.metrics
    out: dict[str, float] = {}
    summary = run.summary
    best = summary.get("best_epoch")
    row = next((r for r in rows if r.get("epoch") == best), rows[-1] if rows else {})
    for k, v in row.items():
        if k.startswith("val_") and isinstance(v, (int, float)) and v == v:
            out[k] = float(v)
    for k, v in (summary.get("test") or {}).items():
        if isinstance(v, (int, float)):
            out[f"test_{k}"] = float(v)
    out["train_seconds"] = float(summary.get("fit_seconds") or 0.0)
    return out
