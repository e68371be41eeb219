"""Many workers on one study: a REAL PostgreSQL server (Debian's postgresql package: initdb +
pg_ctl on a temporary folder and a loopback port) and two worker processes started with the same
command, as on two machines (each with its own run folder). No trial runs twice and the study
ends with exactly the requested count."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

INSTALL = "install it: apt-get update && apt-get install -y postgresql"


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for path in sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True):
        return path
    pytest.fail(f"PostgreSQL's '{name}' is not on PATH nor in /usr/lib/postgresql/*/bin; {INSTALL}")


def _as_server_user(cmd: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root: run them as the postgres system user
    if os.geteuid() != 0:
        return cmd
    runuser = shutil.which("runuser")
    if runuser is None:
        pytest.fail("running as root needs runuser (util-linux) to start PostgreSQL as 'postgres'")
    return [runuser, "-u", "postgres", "--", *cmd]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    root = Path(tempfile.mkdtemp(prefix="archlab-pg-"))
    data, sockets = root / "data", root / "sockets"
    sockets.mkdir()
    if os.geteuid() == 0:
        import pwd

        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.fail(f"no 'postgres' system user to run the server as; {INSTALL}")
        for p in (root, sockets):
            os.chown(p, user.pw_uid, user.pw_gid)
    port = _free_port()
    subprocess.run(_as_server_user([initdb, "-D", str(data), "--auth=trust", "-U", "postgres",
                                    "--encoding=UTF8", "--no-sync"]),
                   check=True, capture_output=True, text=True)
    log = root / "server.log"
    started = subprocess.run(_as_server_user([
        pg_ctl, "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o",
        f"-p {port} -h 127.0.0.1 -k {sockets} -c fsync=off"]) + ["start"],
        capture_output=True, text=True)
    if started.returncode != 0:
        text = log.read_text() if log.exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"PostgreSQL did not start: {started.stderr}{text}")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_server_user([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"]),
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


SPACE = textwrap.dedent("""\
    space: shared_space
    design: digits_mlp
    variables:
      hidden: {int: [8, 64], step: 8}
    train:
      lr: {log: [3.0e-3, 3.0e-2]}
    """)


def test_two_workers_share_one_study_on_postgresql(tmp_path, postgres_url):
    (tmp_path / "space.yaml").write_text(SPACE)
    trials = 6
    procs = []
    for i in range(2):  # two "machines": the same command, each its own run folder
        cmd = [sys.executable, "-m", "archlab", "search", str(tmp_path / "space.yaml"),
               "--storage", postgres_url, "--name", "shared", "--trials", str(trials),
               "--data", "digits", "--epochs", "1", "--out", str(tmp_path / f"machine{i}")]
        procs.append(subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    for p in procs:
        out, _ = p.communicate(timeout=500)
        assert p.returncode == 0, out
    from archlab.search.study import with_driver

    study = optuna.load_study(study_name="shared", storage=with_driver(postgres_url))
    complete = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(complete) == trials, [(t.number, t.state.name, t.user_attrs.get("surplus"))
                                     for t in study.get_trials()]
    numbers = {t.number for t in complete}
    others = [t for t in study.get_trials() if t.number not in numbers]
    assert all(t.user_attrs.get("surplus") for t in others)  # a worker's spare ask, never run
    # no trial ran twice: each finished trial has exactly one run folder, on one machine
    folders = [p for i in range(2) for p in (tmp_path / f"machine{i}" / "shared" / "trials").glob("trial-*")
               if p.is_dir()]
    assert sorted(f.name for f in folders) == sorted(f"trial-{t.number:04d}" for t in complete)
    pids = {p.pid for p in procs}
    for t in complete:
        assert int(t.user_attrs["worker"].rsplit(":", 1)[1]) in pids
        assert Path(t.user_attrs["run"]).name == f"trial-{t.number:04d}"
