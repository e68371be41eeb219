"""Runs hostile-input cases through ``archlab.cli.main`` in this process, one after another.

Started by tests/test_hostile.py as a child process with a memory limit (RLIMIT_AS):
``worker.py JOB.json RESULTS.jsonl``. The job is ``{"root": DIR, "cases": [{"id", "argv",
"timeout", "run": {...} | null}], "base_run": bool}``; it writes one JSON line per case:
``{"id", "code", "stdout", "stderr", "seconds", "peak_mib"}``. An exception that escapes ``main`` is printed the way Python
would print it (so a case sees "Traceback" in stderr); a case that runs past its timeout is
stopped by SIGALRM and reported with code "timeout".
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import json
import os
import resource
import shutil
import signal
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus import corrupt_run  # noqa: E402


class CaseTimeout(BaseException):
    """Raised by SIGALRM in a case that runs too long (BaseException: nothing may swallow it)."""


def _alarm(signum, frame):
    raise CaseTimeout()


def train_base_run(root: Path) -> Path:
    """A real (tiny) training run whose folder the run-folder cases copy and damage."""
    import archlab.train

    path = root / "runs" / "base"
    if not (path / "summary.json").exists():
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            archlab.train.train("digits_mlp", "digits", epochs=1, out=str(root / "runs"),
                                name="base", progress=False)
    return path


def run_case(case: dict, root: Path, base: Path | None) -> dict:
    from archlab.cli import main

    argv = list(case["argv"])
    if case.get("run") is not None:
        target = root / "runs" / case["id"]
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(base, target)
        corrupt_run(target, case["run"])
        argv = [a.replace("{run}", str(target)) for a in argv]
    out, err = io.StringIO(), io.StringIO()
    start = time.perf_counter()
    code: int | str
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(int(case.get("timeout", 30)))
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            # each case in its own context: `--limit` set by one case does not leak to the next
            code = contextvars.copy_context().run(main, argv)
    except SystemExit as exc:  # argparse
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except CaseTimeout:
        code = "timeout"
    except BaseException:  # what a user would see: a traceback
        err.write(traceback.format_exc())
        code = 1
    finally:
        signal.alarm(0)
    return {"id": case["id"], "code": code, "stdout": out.getvalue()[-4000:],
            "stderr": err.getvalue()[-6000:], "seconds": time.perf_counter() - start,
            "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    job = json.loads(Path(sys.argv[1]).read_text())
    results = open(sys.argv[2], "a")
    root = Path(job["root"])
    os.chdir(root)  # relative outputs (runs/, plots) land in the scratch folder
    import torch

    torch.set_num_threads(1)
    # import what the commands import before any case runs: a case stopped by its timeout in the
    # middle of an import would leave a half-imported module behind for the next cases
    import lightning.pytorch  # noqa: F401
    from lightning.pytorch.strategies import StrategyRegistry  # noqa: F401

    import archlab.cli  # noqa: F401
    import archlab.diagnose.command  # noqa: F401
    import archlab.train.run  # noqa: F401
    base = train_base_run(root) if job.get("base_run") else None
    me = os.getpid()
    for case in job["cases"]:
        result = run_case(case, root, base)
        if os.getpid() != me:  # a case forked (a multi-process strategy): the copy stops here
            os._exit(0)
        results.write(json.dumps(result) + "\n")
        results.flush()


if __name__ == "__main__":
    main()
