"""Resume: a search killed with SIGTERM and then with kill -9 while a trial trains continues when
the same command is run again, losing only the trials in flight (they are failed and queued
again with the same parameters); the study ends with the requested count. Real processes, real
signals, real training (scikit-learn's digits)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

SPACE = textwrap.dedent("""\
    space: resume_space
    design: digits_mlp
    variables:
      hidden: {int: [8, 32], step: 8}
    """)


_STORAGES: dict[str, optuna.storages.RDBStorage] = {}


def _study(out: Path):
    db = out / "k" / "study.db"
    if not db.exists():
        return None
    url = f"sqlite:///{db}"
    try:  # one storage object per file: polling must not rebuild it each time
        storage = _STORAGES.get(url) or _STORAGES.setdefault(url, optuna.storages.RDBStorage(url))
        return optuna.load_study(study_name="k", storage=storage)
    except Exception:  # the study is not created yet
        return None


def _start(tmp_path: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "archlab", "search", str(tmp_path / "space.yaml"), "--data",
           "digits", "--trials", "3", "--epochs", "8", "--name", "k", "--out", str(out),
           "--pruner", "none"]
    return subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _wait_for_training(proc: subprocess.Popen, out: Path, *, after_complete: int,
                       timeout: float = 400) -> int:
    """The number of a trial this process is training (its run folder exists), once at least
    ``after_complete`` trials have completed."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.stdout.read()  # it ended before we saw a trial train
        study = _study(out)
        if study is not None:
            trials = study.get_trials(deepcopy=False)
            done = sum(t.state == TrialState.COMPLETE for t in trials)
            for t in trials:
                worker = str(t.user_attrs.get("worker", ""))
                run = t.user_attrs.get("run")
                if (t.state == TrialState.RUNNING and worker.endswith(f":{proc.pid}") and run
                        and (Path(run) / "config.yaml").exists() and done >= after_complete):
                    return t.number
        time.sleep(0.1)
    proc.kill()
    study = _study(out)
    states = [(t.number, t.state.name, t.user_attrs.get("worker")) for t in study.trials] if study else []
    raise AssertionError(f"no trial started training in time; trials {states}; log:\n"
                         f"{proc.communicate()[0]}")


def test_a_killed_search_resumes_and_loses_only_the_trials_in_flight(tmp_path):
    (tmp_path / "space.yaml").write_text(SPACE)
    out = tmp_path / "runs"
    # 1. SIGTERM while the second trial trains
    proc = _start(tmp_path, out)
    first_killed = _wait_for_training(proc, out, after_complete=1)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    completed_before = {t.number for t in _study(out).get_trials(states=(TrialState.COMPLETE,))}
    # 2. the same command again; kill -9 while it trains
    proc = _start(tmp_path, out)
    second_killed = _wait_for_training(proc, out, after_complete=len(completed_before))
    proc.kill()
    proc.wait(timeout=60)
    # 3. the same command again runs the study to its end
    proc = _start(tmp_path, out)
    log, _ = proc.communicate(timeout=400)
    assert proc.returncode == 0, log
    assert "queued again the trials lost with their worker" in log
    study = _study(out)
    trials = study.get_trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(complete) == 3  # the requested count
    assert {t.number for t in failed} == {first_killed, second_killed}  # only those in flight
    assert completed_before <= {t.number for t in complete}  # finished work is kept, not redone
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    assert {first_killed, second_killed} <= retried  # each lost trial ran again...
    for t in complete:
        if t.system_attrs.get("retry_history"):
            original = study.trials[t.system_attrs["retry_history"][-1]]
            assert t.params == original.params  # ...with the same parameters
    runs = sorted(p.name for p in (out / "k" / "trials").iterdir())
    assert len(runs) == len(set(runs))
