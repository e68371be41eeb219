"""Search benchmarks (issue 11), side by side in one run, with the load average beside each figure.

1. Analytic screening with budgets: ResNet-50-sized AnyNet variants (per-stage widths and
   depths) per second, against plain ``archlab.analyze(memory=False)`` on the same variants;
   interleaved repeats, median and range.
2. Search quality on mnist5k under params<=50k and latency<=5ms@batch1: the best trial's test
   accuracy (the trial chosen by validation accuracy) after N trials of TPE and of random
   sampling, against mnist_cnn scaled to the budgets by ``archlab new``, S seeds; and the share
   of training compute that the over-budget candidates would have cost without screening
   (cost proxy: multiply-adds per sample, the same data and epochs for every candidate).
3. Two workers on one PostgreSQL study vs one worker on SQLite: trials per minute.

    .venv/bin/python benchmarks/search.py                       # everything (long)
    .venv/bin/python benchmarks/search.py --trials 10 --seeds 1 # a shorter run
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


ANYNET = {
    "name": "anynet_r50",
    "variables": {"w1": 256, "w2": 512, "w3": 1024, "w4": 2048, "d1": 3, "d2": 4, "d3": 6, "d4": 3},
    "input": [3, 224, 224],
    "defaults": {"norm": "batch", "act": "relu"},
    "layers": [
        {"name": "conv1", "block": "conv", "out": 64, "kernel": 7, "stride": 2},
        {"name": "maxpool", "block": "maxpool", "kernel": 3, "stride": 2, "padding": 1},
        {"name": "layer1", "block": "bottleneck", "depth": "$d1", "out": "$w1"},
        {"name": "layer2", "block": "bottleneck", "depth": "$d2", "out": "$w2", "stride": 2},
        {"name": "layer3", "block": "bottleneck", "depth": "$d3", "out": "$w3", "stride": 2},
        {"name": "layer4", "block": "bottleneck", "depth": "$d4", "out": "$w4", "stride": 2},
        {"name": "fc", "block": "head", "classes": 1000},
    ],
}


def screening(n: int, repeats: int) -> None:
    import archlab
    from archlab.search.budget import Screener, parse_budgets

    rng = random.Random(0)
    # ResNet-50-sized AnyNet: each stage's width (a multiple of 64) and depth drawn independently
    points = [{**{f"w{i}": rng.choice(range(64, 2049, 64)) for i in range(1, 5)},
               **{f"d{i}": rng.randint(1, 6) for i in range(1, 5)}} for _ in range(n * repeats * 2)]
    screener = Screener(parse_budgets(["params<=25M", "multiply_adds<=4G"]))
    rates = {"screen (load + budgets)": [], "archlab.analyze(memory=False)": []}
    feasible = 0
    chunks = iter([points[i:i + n] for i in range(0, len(points), n)])
    def screen_chunk(chunk):
        nonlocal feasible
        t = time.perf_counter()
        for p in chunk:
            feasible += screener.screen(archlab.load(ANYNET, **p)).feasible
        rates["screen (load + budgets)"].append(len(chunk) / (time.perf_counter() - t))

    def analyze_chunk(chunk):
        t = time.perf_counter()
        for p in chunk:
            archlab.analyze(ANYNET, memory=False, **p)
        rates["archlab.analyze(memory=False)"].append(len(chunk) / (time.perf_counter() - t))

    for r in range(repeats):  # interleaved, the order alternating (the block memo warms up)
        first, second = (screen_chunk, analyze_chunk) if r % 2 == 0 else (analyze_chunk, screen_chunk)
        first(next(chunks))
        second(next(chunks))
    print(f"\n1. analytic screening, {n} ResNet-50-sized AnyNet variants x {repeats} interleaved "
          f"repeats ({load()})")
    for k, v in rates.items():
        print(f"   {k:<32} {statistics.median(v):7.0f} designs/s  (range {min(v):.0f}-{max(v):.0f})")
    print(f"   feasible under params<=25M, multiply_adds<=4G: {feasible}/{n * repeats}")
    # the zoo's ResNet-50 with its width variable from 12 values: a search revisits blocks, so
    # the memoised block formulas hit (the case the memo was built for)
    widths = [rng.choice(range(16, 97, 8)) for _ in range(n * repeats * 2)]
    rates = {"screen (load + budgets)": [], "archlab.analyze(memory=False)": []}
    for r in range(repeats):
        chunk = widths[2 * r * n:(2 * r + 1) * n]
        t = time.perf_counter()
        for w in chunk:
            screener.screen(archlab.load("resnet50", width=w))
        rates["screen (load + budgets)"].append(n / (time.perf_counter() - t))
        chunk = widths[(2 * r + 1) * n:(2 * r + 2) * n]
        t = time.perf_counter()
        for w in chunk:
            archlab.analyze("resnet50", memory=False, width=w)
        rates["archlab.analyze(memory=False)"].append(n / (time.perf_counter() - t))
    print(f"   zoo resnet50, width from 12 values ({load()})")
    for k, v in rates.items():
        print(f"   {k:<32} {statistics.median(v):7.0f} designs/s  (range {min(v):.0f}-{max(v):.0f})")


SPACE = textwrap.dedent("""\
    space: mnist_budget
    design: mnist_cnn
    variables:
      width: {int: [4, 48], step: 4}
      hidden: {int: [16, 256], log: true}
    train:
      lr: {log: [3.0e-4, 1.0e-2]}
    """)


def quality(trials: int, seeds: int, work: Path) -> None:
    from archlab.search import search
    from archlab.search.advisor import new_design
    from archlab.train.run import train

    space = work / "space.yaml"
    space.write_text(SPACE)
    budgets = ["params<=50k", "latency<=5ms@batch1"]
    results: dict[str, list[float]] = {"tpe": [], "random": [], "archlab new (mnist_cnn scaled)": []}
    waste = []
    times = {}
    base = new_design(task="classification", input_text="1x28x28", classes=10, budgets=budgets,
                      base="mnist_cnn", name="mnist_budget_base", output=str(work / "base.yaml"),
                      force=True)
    for seed in range(seeds):
        for sampler in ("tpe", "random"):  # interleaved by seed
            t = time.perf_counter()
            study = search(space, name=f"{sampler}-s{seed}", budgets=budgets, trials=trials,
                           data="mnist5k", sampler=sampler, epochs=1, seed=seed,
                           out=str(work / "studies"), pruner="none")
            times.setdefault(sampler, []).append(time.perf_counter() - t)
            done = [x for x in study.trials if x.user_attrs.get("metrics")]
            best = max(done, key=lambda x: x.values[0])
            results[sampler].append(best.user_attrs["metrics"]["test_accuracy"])
            over = [x for x in study.trials if x.user_attrs.get("feasible") is False]
            cost_over = sum(x.user_attrs.get("figures", {}).get("multiply_adds", 0) for x in over)
            cost_in = sum(x.user_attrs.get("figures", {}).get("multiply_adds", 0) for x in done)
            waste.append((len(over), len(study.trials), cost_over / max(1, cost_over + cost_in)))
        run = train(work / "base.yaml", "mnist5k", epochs=1, seed=seed, progress=False,
                    health=False, out=str(work / "base_runs"))
        results["archlab new (mnist_cnn scaled)"].append(run.test_metrics["accuracy"])
    print(f"\n2. search quality on mnist5k, budgets {', '.join(budgets)}, {trials} trials x {seeds} "
          f"seed(s), 1 epoch per trial ({load()})")
    print(f"   baseline scaled by archlab new: {base['summary']}")
    for k, v in results.items():
        print(f"   {k:<32} best test accuracy median {statistics.median(v):.4f} "
              f"(range {min(v):.4f}-{max(v):.4f}; per seed {[round(x, 4) for x in v]})")
    for k, v in times.items():
        print(f"   {k:<32} {statistics.median(v) / 60:.1f} min per study")
    shares = [w[2] for w in waste]
    print(f"   over-budget candidates: {sum(w[0] for w in waste)}/{sum(w[1] for w in waste)} trials; "
          f"they would have cost {100 * statistics.median(shares):.0f}% of the training compute "
          f"(median over studies, range {100 * min(shares):.0f}-{100 * max(shares):.0f}%; "
          "proxy: multiply-adds per sample)")


def workers(trials: int, work: Path) -> None:
    space = work / "space2.yaml"
    space.write_text(textwrap.dedent("""\
        space: digits_speed
        design: digits_mlp
        variables:
          hidden: {int: [16, 128], step: 16}
        """))
    url, stop = _postgres(work)
    try:
        rates = {}
        for kind in ("sqlite, 1 worker", "postgresql, 2 workers"):
            n = 1 if kind.startswith("sqlite") else 2
            cmd = [sys.executable, "-m", "archlab", "search", str(space), "--data", "digits",
                   "--trials", str(trials), "--epochs", "1", "--name", kind.split(",")[0]]
            t = time.perf_counter()
            procs = [subprocess.Popen(cmd + (["--storage", url] if n == 2 else []) +
                                      ["--out", str(work / f"w{i}")], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL) for i in range(n)]
            for p in procs:
                p.wait()
            rates[kind] = trials / ((time.perf_counter() - t) / 60)
        print(f"\n3. {trials} trials (digits_mlp, 1 epoch) from start to end of the processes "
              f"({load()}; {os.cpu_count()} CPUs)")
        for k, v in rates.items():
            print(f"   {k:<24} {v:6.1f} trials/min")
    finally:
        stop()


def _postgres(work: Path):
    import glob
    import pwd
    import socket

    def binary(name):
        return shutil.which(name) or sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))[-1]

    root = Path(tempfile.mkdtemp(prefix="archlab-pg-bench-"))
    sudo = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if sudo:
        user = pwd.getpwnam("postgres")
        os.chown(root, user.pw_uid, user.pw_gid)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run(sudo + [binary("initdb"), "-D", str(root / "data"), "--auth=trust", "-U",
                           "postgres", "--no-sync"], check=True, capture_output=True)
    subprocess.run(sudo + [binary("pg_ctl"), "-D", str(root / "data"), "-l", str(root / "log"),
                           "-w", "-o", f"-p {port} -h 127.0.0.1 -k {root}", "start"], check=True,
                   capture_output=True)

    def stop():
        subprocess.run(sudo + [binary("pg_ctl"), "-D", str(root / "data"), "-m", "immediate",
                               "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)

    return f"postgresql://postgres@127.0.0.1:{port}/postgres", stop


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--screen", type=int, default=200, help="variants per screening repeat")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--worker-trials", type=int, default=12)
    ap.add_argument("--only", choices=["screening", "quality", "workers"])
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    print(f"archlab search benchmark; torch {torch.__version__}, {os.cpu_count()} CPUs; {load()}")
    work = Path(tempfile.mkdtemp(prefix="archlab-search-bench-"))
    os.chdir(work)
    try:
        if args.only in (None, "screening"):
            screening(args.screen, args.repeats)
        if args.only in (None, "quality"):
            quality(args.trials, args.seeds, work)
        if args.only in (None, "workers"):
            workers(args.worker_trials, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
