"""Benchmark of archlab compare and archlab report (issue 10).

1. ``compare`` of 20 ResNet-50-sized design variants without training (target: under 2 s): the
   default (analytic counts; the review is automatic for up to 6 designs) and ``--review``
   (each design also traced for the design review), side by side, interleaved: median and range.
2. ``report`` of a 20-epoch run (target: under 3 s) with the size of the HTML file: a small MLP
   trained here for 20 quick epochs on scikit-learn's digits (health monitor on), then its
   report timed with and without the worst-predicted examples (those need the data and a
   forward pass), interleaved.

The machine's load average is printed beside every figure: on a shared machine the wall-clock
figures move with it.

    .venv/bin/python benchmarks/compare.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} on {os.cpu_count()} CPUs"


def summary(xs: list[float], cpu: list[float] | None = None) -> str:
    text = f"median {statistics.median(xs):.3f} s (range {min(xs):.3f}-{max(xs):.3f} s, n={len(xs)})"
    if cpu:  # CPU seconds of this process: what the machine's load does not inflate as much
        text += f", CPU {statistics.median(cpu):.3f} s"
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=20)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from archlab.compare import compare
    from archlab.report import comparison_page, report, write_html

    variants = ["resnet50"] + [f"resnet50?width={w}" for w in range(50, 69)]
    assert len(variants) == 20
    compare(variants[:2])  # warm-up: imports, first-use caches
    print(f"# compare of {len(variants)} ResNet-50-sized variants (widths 50-68 against 64), no training")
    # the default for 20 designs is the analytic path (the review is automatic up to 6 designs)
    times: dict[str, list[float]] = {"default (counts, no review)": [], "--review (+ review)": []}
    cpus: dict[str, list[float]] = {k: [] for k in times}
    for _ in range(args.repeats):
        for label, review in (("default (counts, no review)", None), ("--review (+ review)", True)):
            t, p = time.perf_counter(), time.process_time()
            c = compare(variants, review=review)
            times[label].append(time.perf_counter() - t)
            cpus[label].append(time.process_time() - p)
            print(f"  {label:28s} {times[label][-1]:.3f} s   [{load()}]")
    for label, xs in times.items():
        print(f"compare, {label:28s}: {summary(xs, cpus[label])}   target < 2 s   [{load()}]")
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        out = write_html(comparison_page(c), Path(tmp) / "compare.html")
        print(f"report of that comparison: {time.perf_counter() - t:.3f} s, "
              f"{out.stat().st_size / 1024:.0f} KiB   [{load()}]")

        import archlab

        print(f"\n# report of a {args.epochs}-epoch run (digits_mlp on digits, health monitor on)")
        t = time.perf_counter()
        run = archlab.train("digits_mlp", "digits", epochs=args.epochs, progress=False,
                            out=tmp, name="bench", lr=3e-3)
        print(f"  training took {time.perf_counter() - t:.1f} s, {len(run.metrics)} epochs   [{load()}]")
        rtimes: dict[str, list[float]] = {"full report": [], "without examples": []}
        rcpus: dict[str, list[float]] = {k: [] for k in rtimes}
        size = 0
        for _ in range(args.repeats):
            for label, examples in (("full report", True), ("without examples", False)):
                t, p = time.perf_counter(), time.process_time()
                path = report([str(run.path)], Path(tmp) / f"run-{examples}.html", examples=examples)
                rtimes[label].append(time.perf_counter() - t)
                rcpus[label].append(time.process_time() - p)
                if examples:
                    size = path.stat().st_size
                print(f"  {label:18s} {rtimes[label][-1]:.3f} s   [{load()}]")
        for label, xs in rtimes.items():
            print(f"report, {label:18s}: {summary(xs, rcpus[label])}   target < 3 s   [{load()}]")
        print(f"HTML file of the full run report: {size / 1024:.0f} KiB (self-contained: styles, "
              "script, plots and example images inlined)")


if __name__ == "__main__":
    main()
