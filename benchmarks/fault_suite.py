"""Fault suite: does the health monitor find injected training faults, and what does it cost?

Runs every set-up of archlab.diagnose.faults (>= 12 faulty, >= 6 healthy; digits, mnist5k and
synthetic data) over 3 seeds with the monitor at its default settings, then prints:

* the confusion table: injected problem (rows) x detector that fired (columns), counts over seeds;
* precision and recall per detector (a firing is correct when the detector is one of the
  set-up's expected detectors; 'plausible' consequences are neither hits nor false alarms);
* false alarms on healthy runs;
* detection delay in steps (first expected detection; faults are injected at step 0);
* the monitor's overhead: epoch time with / without it on the same set-ups, interleaved
  repeats, ratio of the minima (target <= 1.05 at the default sampling).

    python benchmarks/fault_suite.py [--seeds 3] [--overhead-repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time

import torch

from archlab.diagnose.detectors import DETECTORS
from archlab.diagnose.faults import SETUPS, prepare, run_setup, setups

OVERHEAD_SETUPS = ["healthy_mlp_digits", "healthy_cnn_mnist", "healthy_residual_mnist",
                   "healthy_gru_sequence"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--overhead-repeats", type=int, default=5)
    ap.add_argument("--only", nargs="*", help="set-up names (default: all)")
    ap.add_argument("--json", help="also write the raw results here")
    ap.add_argument("--overhead-only", action="store_true", help="skip the detection runs")
    ap.add_argument("--detection-only", action="store_true", help="skip the overhead runs")
    args = ap.parse_args()
    torch.set_num_threads(1)

    if args.overhead_only:
        measure_overhead(args.overhead_repeats)
        return
    chosen = setups(args.only) if args.only else SETUPS
    results = []
    t0 = time.perf_counter()
    for s in chosen:
        for seed in range(args.seeds):
            r = run_setup(s, seed)
            results.append(r)
            print(f"  {s.name:28s} seed {seed}: {r.steps:4d} steps {r.seconds:6.1f}s "
                  f"fired {r.fired}", flush=True)
    print(f"\nsuite: {len(results)} runs in {time.perf_counter() - t0:.0f}s "
          f"(machine shared: times are noisy)\n")
    report(chosen, results)
    overhead = {} if args.detection_only else measure_overhead(args.overhead_repeats)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"runs": [r.__dict__ for r in results], "overhead": overhead}, fh, indent=2,
                      default=str)


def report(chosen, results) -> None:
    detectors = [d for d in DETECTORS if any(d in r.fired for r in results)]
    short = {d: d[:10] for d in detectors}
    print("confusion: injected problem (rows) x detector fired (columns), runs out of seeds")
    print(f"{'set-up':28s} {'expected':34s} " + " ".join(f"{short[d]:>10s}" for d in detectors))
    for s in chosen:
        rs = [r for r in results if r.setup == s.name]
        cells = []
        for d in detectors:
            n = sum(d in r.fired for r in rs)
            mark = "*" if d in s.expected else "~" if d in s.plausible else ""
            cells.append(f"{(str(n) + mark) if n else '.':>10s}")
        exp = ",".join(s.expected) or "(healthy)"
        print(f"{s.name:28s} {exp[:34]:34s} " + " ".join(cells))
    print("  * expected detector, ~ plausible consequence, unmarked = false alarm\n")

    print("per problem (set-up): recall = runs where an expected detector fired / runs; "
          "precision = runs of this set-up among all runs flagged with its expected detectors")
    print(f"{'problem':28s} {'runs':>5s} {'found':>6s} {'recall':>7s} {'precision':>10s} "
          f"{'median delay':>13s}")
    for s in chosen:
        if s.healthy:
            continue
        rs = [r for r in results if r.setup == s.name]
        found = [r for r in rs if r.detected]
        flagged = [r for r in results if any(d in r.fired for d in s.expected)]
        # a flag is wrong only when the run is healthy or the detector is unrelated to its fault
        wrong = [r for r in flagged if r.setup != s.name and not any(
            d in r.fired and (d in r.expected or d in r.plausible) for d in s.expected)]
        prec = (len(flagged) - len(wrong)) / len(flagged) if flagged else float("nan")
        delays = [r.delay for r in found]
        med = f"{statistics.median(delays):.0f}" if delays else "-"
        print(f"{s.name:28s} {len(rs):5d} {len(found):6d} {len(found) / len(rs):7.2f} "
              f"{prec:10.2f} {med:>13s}")

    print("\nper detector: precision = correct / (correct + false alarms), plausible firings "
          "excluded; recall = runs where it fired / runs that list it as expected")
    print(f"{'detector':24s} {'fired':>6s} {'correct':>8s} {'false':>6s} {'precision':>10s} "
          f"{'expected':>9s} {'fired':>6s} {'recall':>7s}")
    for d in DETECTORS:
        fired = [r for r in results if d in r.fired]
        correct = [r for r in fired if d in r.expected]
        false = [r for r in fired if d not in r.expected and d not in r.plausible]
        judged = len(correct) + len(false)
        targets = [r for r in results if d in r.expected]
        hit = [r for r in targets if d in r.fired]
        prec = f"{len(correct) / judged:.2f}" if judged else "-"
        rec = f"{len(hit) / len(targets):.2f}" if targets else "-"
        print(f"{d:24s} {len(fired):6d} {len(correct):8d} {len(false):6d} {prec:>10s} "
              f"{len(targets):9d} {len(hit):6d} {rec:>7s}")
    faulty = [r for r in results if not r.healthy]
    healthy = [r for r in results if r.healthy]
    print(f"\nfaulty runs detected: {sum(r.detected for r in faulty)}/{len(faulty)} "
          f"(recall {sum(r.detected for r in faulty) / max(len(faulty), 1):.2f})")
    alarms = [r for r in healthy if r.fired]
    print(f"healthy runs with any alarm: {len(alarms)}/{len(healthy)} "
          + (str({r.setup: r.fired for r in alarms}) if alarms else ""))
    unrelated = [(r.setup, r.false_alarms) for r in faulty if r.false_alarms]
    print(f"faulty runs with an unrelated alarm: {len(unrelated)}/{len(faulty)} {unrelated or ''}")
    print("\ndetection delay (steps from step 0 to the first expected detection):")
    for s in chosen:
        if s.healthy:
            continue
        delays = [r.delay for r in results if r.setup == s.name and r.delay is not None]
        if delays:
            print(f"  {s.name:28s} median {statistics.median(delays):6.0f}  max {max(delays):5d}")
        else:
            print(f"  {s.name:28s} not detected")


def measure_overhead(repeats: int, measured_steps: int = 400) -> dict:
    """Epoch time with and without the monitor at its default settings. Each set-up trains one
    warm-up epoch (imports, first samples) plus enough epochs for ``measured_steps`` steps; the
    time of the epochs after the first is compared, with / without, over ``repeats`` runs of
    each, interleaved. Interference from other processes only ever adds time, so the ratio of the
    *minimum* totals is the steadiest estimate on a shared machine (timeit's rule); the median
    ratio is printed beside it. CPU time is this process's (one torch thread)."""
    print(f"\nmonitor overhead: time of epochs 2.. (>= {measured_steps} steps) with / without, "
          f"{repeats} interleaved repeats (ratio of minima; median ratio in brackets):")
    out = {}
    wall_ratios, cpu_ratios = [], []
    for name in OVERHEAD_SETUPS:
        s = setups([name])[0]
        xtr = prepare(s.data, s.scaling, 0, s.train_limit, s.shuffle_labels)[0]
        per_epoch = len(xtr) // s.batch if len(xtr) > s.batch else 1
        epochs = 1 + math.ceil(measured_steps / per_epoch)
        run_setup(s, 0, monitor=False, steps=5)   # warm caches (data, imports)
        on_w, off_w, on_c, off_c, estimate = [], [], [], [], []
        for i in range(repeats):
            off = run_setup(s, i, monitor=False, epochs=epochs)
            on = run_setup(s, i, monitor=True, epochs=epochs)
            off_w.append(sum(off.epoch_seconds[1:]))
            off_c.append(sum(off.epoch_cpu_seconds[1:]))
            on_w.append(sum(on.epoch_seconds[1:]))
            on_c.append(sum(on.epoch_cpu_seconds[1:]))
            estimate.append(on.overhead)
        w, c = min(on_w) / min(off_w), min(on_c) / min(off_c)
        wm = statistics.median(a / b for a, b in zip(on_w, off_w, strict=True))
        cm = statistics.median(a / b for a, b in zip(on_c, off_c, strict=True))
        wall_ratios.append(w)
        cpu_ratios.append(c)
        out[name] = {"steps_per_epoch": per_epoch, "epochs": epochs, "wall_with": on_w,
                     "wall_without": off_w, "cpu_with": on_c, "cpu_without": off_c,
                     "wall_ratio": w, "cpu_ratio": c, "monitor_estimate": estimate}
        print(f"  {name:28s} {per_epoch:4d} steps/epoch x {epochs - 1:2d}: cpu {min(off_c):6.2f}s "
              f"-> {min(on_c):6.2f}s ratio {c:5.3f} [{cm:5.3f}]   wall ratio {w:5.3f} [{wm:5.3f}]"
              f"   monitor's own estimate {statistics.median(estimate):5.3f}", flush=True)
    print(f"  over set-ups: median cpu ratio {statistics.median(cpu_ratios):.3f}, wall "
          f"{statistics.median(wall_ratios):.3f}, worst cpu {max(cpu_ratios):.3f} (target <= 1.05)")
    out["median_cpu_ratio"] = statistics.median(cpu_ratios)
    out["median_wall_ratio"] = statistics.median(wall_ratios)
    return out


if __name__ == "__main__":
    main()
