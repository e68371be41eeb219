"""The hostile-input corpus (tests/hostile/): every bad input ends in a clear error.

Each case is a command line given to ``archlab`` with a bad design, expression, option, data
file, run folder or weights file. Each must: exit with status 2, print no traceback, name the
place (``where``: a file, key path or option) and carry a fix (``fix``: text of the advice),
within its time limit, inside a memory limit. The cases run in child processes started with
RLIMIT_AS, one after another through ``archlab.cli.main`` in long-lived workers
(tests/hostile/worker.py); the resource bombs (``isolate: true``) in a worker of their own with a
tighter memory limit. Each case runs under an alarm (its ``timeout``).

The tables: tests/hostile/cases.yaml (the part used while fixing archlab) and
tests/hostile/held_out.yaml (written from the same classes of bad input, run only at the end;
ids start with ``held-``).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

HOSTILE = Path(__file__).resolve().parent / "hostile"
sys.path.insert(0, str(HOSTILE))

from corpus import build_files, load_cases, read_tables  # noqa: E402

TABLES = read_tables()
ALL = load_cases(Path("/unused"), TABLES)
IDS = [c["id"] for c in ALL]
WORKER_MEMORY = 5 * 2**30   # address space of a worker (torch and Lightning take about 1 GiB)
ISOLATED_MEMORY = 3 * 2**30  # address space of the worker that runs the resource bombs
PYTHON = sys.executable


def _limit(memory: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    return apply


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1] / "src"),
                                         env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    env["COLUMNS"] = "100"
    return env


def _start_worker(cases: list[dict], root: Path, base_run: bool, n: int, memory: int):
    job, out = root / f"job{n}.json", root / f"results{n}.jsonl"
    job.write_text(json.dumps({"root": str(root), "cases": cases, "base_run": base_run}))
    log = open(root / f"worker{n}.log", "w")
    proc = subprocess.Popen([PYTHON, str(HOSTILE / "worker.py"), str(job), str(out)],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            env=_env(), preexec_fn=_limit(memory), cwd=root)
    return proc, out, root / f"worker{n}.log"


def _collect(worker, cases: list[dict], budget: float) -> dict:
    proc, out, log = worker
    try:
        proc.wait(timeout=budget)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    err = log.read_text() if log.exists() else ""
    results = {}
    for line in (out.read_text() if out.exists() else "").splitlines():
        if line.startswith("{"):
            r = json.loads(line)
            results[r["id"]] = r
    for case in cases:  # a worker that died (memory, crash) fails the cases it did not report
        results.setdefault(case["id"], {"id": case["id"], "code": "worker died",
                                        "stderr": err[-3000:], "stdout": "", "seconds": 0.0})
    return results


@pytest.fixture(scope="module")
def results(request, tmp_path_factory) -> dict:
    selected = {item.callspec.params["case_id"] for item in request.session.items
                if getattr(item, "originalname", "") == "test_hostile_input"}
    root = tmp_path_factory.mktemp("hostile")
    build_files(root, TABLES)
    cases = [c for c in load_cases(root, TABLES) if c["id"] in selected]
    batch = [c for c in cases if not c.get("isolate")]
    with_run = [c for c in batch if c.get("run") is not None]
    others = [c for c in batch if c.get("run") is None]
    bombs = [c for c in cases if c.get("isolate")]
    # worker 0 also trains the run the run-folder cases damage; worker 2 runs the resource bombs
    # under a tighter memory limit
    jobs = [(with_run + others[1::3], WORKER_MEMORY), (others[0::3] + others[2::3], WORKER_MEMORY),
            (bombs, ISOLATED_MEMORY)]
    procs = [(_start_worker(job, root, base_run=(i == 0 and bool(with_run)), n=i, memory=memory),
              job) for i, (job, memory) in enumerate(jobs) if job]
    out: dict = {}
    for proc, job in procs:
        out.update(_collect(proc, job, 120 + sum(c.get("timeout", 30) for c in job)))
    return {"cases": {c["id"]: c for c in cases}, "results": out}


@pytest.mark.parametrize("case_id", IDS)
def test_hostile_input(case_id: str, results: dict) -> None:
    case = results["cases"][case_id]
    r = results["results"][case_id]
    shown = f"argv={case['argv']}\nexit={r['code']}\nstderr:\n{r['stderr']}\nstdout:\n{r['stdout'][-800:]}"
    assert r["code"] != "timeout", f"ran past {case.get('timeout', 30)} s\n{shown}"
    assert "Traceback" not in r["stderr"], shown
    assert r["code"] == 2, shown
    assert "error" in r["stderr"], shown
    assert case["where"] in r["stderr"], f"the message does not name {case['where']!r}\n{shown}"
    fixes = case["fix"] if isinstance(case["fix"], list) else [case["fix"]]
    assert any(f in r["stderr"] for f in fixes), f"no fix among {fixes}\n{shown}"


def test_corpus_is_large_and_covers_every_class() -> None:
    assert len(ALL) >= 300
    classes = {c["class"] for c in ALL}
    assert classes >= {"resource", "expression", "design", "option", "user-code", "data",
                       "run-folder", "weights", "output-path"}, classes
    held = [c for c in ALL if c["part"] == "held"]
    assert len(held) >= len(ALL) // 4, "keep about a third of the corpus held out"
    assert all(c["id"].startswith("held-") for c in held)
