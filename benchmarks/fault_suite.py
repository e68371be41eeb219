"""Fault suite: does the health monitor find training faults it was not tuned on, name the
right cause, stay quiet on healthy runs, and what does it cost?

Runs the set-ups of archlab.diagnose.fault_catalogue (>= 40 faults from the published
taxonomies injected into >= 15 healthy twins; archlab train, Lightning callback and plain-loop
paths; images, tabular regression, sequences, synthetic data) over 3 seeds with the monitor at
its default settings. The development half (thresholds may be tuned on it) and the held-out
half (never tuned on; the split was fixed once, before tuning, with random.Random(14)) are
reported SEPARATELY:

* hurt: each fault's validation score (accuracy; R^2 for regression) against its healthy twin,
  mean over seeds (a fault that does not hurt is not a fault);
* per fault: recall (runs where an expected detector fired), the runs where an expected CAUSE
  fired ("named": the monitor said why, not only what), the runs found only by a symptom that no
  cause explains ("unk": found, cause unknown), wrong-cause runs (a cause fired that is neither
  expected nor a plausible consequence, or a symptom that no right cause explains standing beside
  a named cause; a symptom attributed to a right cause is that cause's evidence, see
  docs/diagnostics.md "Causes and symptoms"), detection delay in steps;
* per detector: precision and recall over the half's runs;
* false alarms on healthy runs;
* overhead (``--overhead``): epoch time with / without the monitor, interleaved in one process,
  >= 7 pairs of ~1000-step runs, on a CNN and on a deep narrow MLP (16 layers of width 32),
  median and range, over all epochs and over those past the dense start of the schedule; plus
  the monitor's own timing.

    python benchmarks/fault_suite.py [--seeds 3] [--half dev|held-out|both] [--overhead]
                                     [--overhead-only] [--pairs 7] [--json out.json]
                                     [--fresh | --fresh2 | --fresh3 | --fresh4 | --fresh5
                                      | --fresh6 | --fresh7 | --fresh8]

``--fresh`` .. ``--fresh8`` run only one of the eight fresh held-out suites
(archlab.diagnose.fault_catalogue_fresh, fault_catalogue_fresh2 .. fault_catalogue_fresh8), each
written blind to the rules and judged once. The eight go through one
code path: the module's ``SETUPS`` run by its ``run_<label>`` function, scored by :func:`report`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import statistics
import time

import torch

from archlab.diagnose.detectors import DETECTORS
from archlab.diagnose.fault_catalogue import SETUPS, half, setups
from archlab.diagnose.faults import Setup, run_setup

# the fresh held-out suites (label -> module of archlab.diagnose), each judged once
FRESH = {"fresh": "fault_catalogue_fresh", "fresh2": "fault_catalogue_fresh2",
         "fresh3": "fault_catalogue_fresh3", "fresh4": "fault_catalogue_fresh4",
         "fresh5": "fault_catalogue_fresh5", "fresh6": "fault_catalogue_fresh6",
         "fresh7": "fault_catalogue_fresh7", "fresh8": "fault_catalogue_fresh8"}


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs (shared machine)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--half", choices=["dev", "held-out", "both"], default="both")
    ap.add_argument("--only", nargs="*", help="set-up names (default: all of the half, or of the "
                    "fresh suite chosen)")
    ap.add_argument("--overhead", action="store_true", help="also measure the monitor's overhead")
    ap.add_argument("--overhead-only", action="store_true")
    ap.add_argument("--pairs", type=int, default=7, help="interleaved with/without pairs")
    ap.add_argument("--json", help="also write the raw results here")
    ap.add_argument("--generative", action="store_true", help="also the generative set-ups (GAN/VAE)")
    fresh = ap.add_mutually_exclusive_group()
    for label, which in (("fresh", "the fresh"), ("fresh2", "the second fresh"),
                         ("fresh3", "the third fresh"), ("fresh4", "the fourth fresh"),
                         ("fresh5", "the fifth fresh"), ("fresh6", "the sixth fresh"),
                         ("fresh7", "the seventh fresh"), ("fresh8", "the eighth fresh")):
        fresh.add_argument(f"--{label}", action="store_true", help=f"only {which} held-out suite "
                           f"(archlab.diagnose.{FRESH[label]}: written blind to the rules, judged once)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(load())
    out: dict = {}
    label = next((k for k in FRESH if getattr(args, k)), None)
    if label:   # one code path for every fresh suite: its SETUPS, its run_<label>, report()
        module = importlib.import_module(f"archlab.diagnose.{FRESH[label]}")
        run = getattr(module, f"run_{label}")
        chosen = module.SETUPS
        if args.only:   # a subset (its healthy twins come along, for the scores they are against)
            unknown = sorted(set(args.only) - {s.name for s in module.SETUPS})
            if unknown:
                raise SystemExit(f"--only: no set-up {', '.join(unknown)} in the {label} suite")
            twins = {s.twin for s in module.SETUPS if s.name in args.only and s.twin}
            chosen = [s for s in module.SETUPS if s.name in set(args.only) | twins]
        t0, results = time.perf_counter(), []
        for s in chosen:
            for seed in range(args.seeds):
                results.append(r := run(s, seed))
                print(f"  [{label}] {s.name:30s} seed {seed}: {r.steps:4d} steps {r.seconds:5.1f}s "
                      f"score {r.score:6.3f} fired {r.fired}", flush=True)
        print(f"\n{label} suite: {len(results)} runs in {time.perf_counter() - t0:.0f}s; {load()}\n")
        out[label] = report(label, chosen, results)
        out[label]["runs"] = [r.__dict__ for r in results]
    elif not args.overhead_only:
        halves = ["dev", "held-out"] if args.half == "both" else [args.half]
        for which in halves:
            chosen = setups(args.only, which)
            twins = {s.twin for s in chosen if s.twin} - {s.name for s in chosen}
            extra = [s for s in SETUPS if s.name in twins]   # twins from the other half
            t0 = time.perf_counter()
            results = []
            for s in chosen + extra:
                for seed in range(args.seeds):
                    r = run_setup(s, seed)
                    results.append(r)
                    print(f"  [{half(s):8s}] {s.name:26s} seed {seed}: {r.steps:4d} steps "
                          f"{r.seconds:5.1f}s score {r.score:6.3f} fired {r.fired}", flush=True)
            print(f"\n{which} half: {len(results)} runs in {time.perf_counter() - t0:.0f}s; {load()}\n")
            out[which] = report(which, chosen, results)
            out[which]["runs"] = [r.__dict__ for r in results]
    if args.overhead or args.overhead_only:
        out["overhead"] = measure_overhead(args.pairs)
    if args.generative:   # archlab.diagnose.faults_generative: GAN, VAE, autoencoder set-ups
        from archlab.diagnose.faults_generative import run_suite

        out["generative"] = run_suite(seeds=args.seeds)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2, default=str)


def _mean(xs):
    xs = [x if math.isfinite(x) else -1.0 for x in xs]   # a diverged run scores below chance
    return sum(xs) / len(xs) if xs else math.nan


def report(which: str, chosen: list[Setup], results) -> dict:
    by = {}
    for r in results:
        by.setdefault(r.setup, []).append(r)
    faults = [s for s in chosen if not s.healthy]
    healthy = [s for s in chosen if s.healthy]
    print(f"=== {which} half: {len(faults)} faults, {len(healthy)} healthy set-ups ===")
    print(f"{'fault':26s} {'path':9s} {'data':9s} {'twin':>6s} {'fault':>6s} {'hurt':>5s} "
          f"{'recall':>6s} {'named':>5s} {'unk':>3s} {'wrong':>5s} {'delay med/max':>13s}  "
          "expected -> fired")
    rows = {}
    for s in faults:
        rs = by[s.name]
        twin, mine = _mean([r.score for r in by.get(s.twin, [])]), _mean([r.score for r in rs])
        hurt = twin - mine > 0.02 or s.expected == ("data_error",)
        found = [r for r in rs if r.detected]
        named = [r for r in rs if r.cause_named]
        unknown = [r for r in rs if r.cause_unknown]
        wrong = [r for r in rs if r.false_alarms]
        delays = [r.delay for r in found]
        d = f"{statistics.median(delays):.0f}/{max(delays)}" if delays else "-"
        fired = sorted({d for r in rs for d in r.fired})
        rows[s.name] = {"twin_score": twin, "score": mine, "hurts": hurt, "recall": len(found) / len(rs),
                        "cause_named_runs": len(named), "cause_unknown_runs": len(unknown),
                        "wrong_cause_runs": len(wrong), "delays": delays, "fired": fired,
                        "false_alarms": sorted({d for r in rs for d in r.false_alarms})}
        print(f"{s.name:26s} {s.path:9s} {s.data:9s} {twin:6.3f} {mine:6.3f} {'yes' if hurt else 'NO':>5s} "
              f"{len(found) / len(rs):6.2f} {len(named):5d} {len(unknown):3d} {len(wrong):5d} {d:>13s}  "
              f"{','.join(s.expected)} -> "
              f"{','.join(fired) or '-'}" + (f"  WRONG: {rows[s.name]['false_alarms']}" if wrong else ""))
    fault_runs = [r for s in faults for r in by[s.name]]
    healthy_runs = [r for s in healthy for r in by[s.name]]
    recall = sum(r.detected for r in fault_runs) / max(len(fault_runs), 1)
    named = sum(r.cause_named for r in fault_runs)
    unknown = sum(r.cause_unknown for r in fault_runs)
    wrong = [r for r in fault_runs if r.false_alarms]
    alarms = [r for r in healthy_runs if r.fired]
    delays = [r.delay for r in fault_runs if r.delay is not None]
    print(f"\n{which}: recall {recall:.3f} ({sum(r.detected for r in fault_runs)}/{len(fault_runs)} "
          f"faulty runs; an expected cause named on {named}, found only as a symptom with the "
          f"cause unknown on {unknown}); wrong-cause alarms on {len(wrong)}/{len(fault_runs)} faulty runs; "
          f"false alarms on {len(alarms)}/{len(healthy_runs)} healthy runs "
          + (str(sorted({(r.setup, d) for r in alarms for d in r.fired})) if alarms else ""))
    if delays:
        print(f"{which}: detection delay over detected runs: median {statistics.median(delays):.0f} "
              f"steps, worst {max(delays)}")
    print(f"\n{which}: per detector (precision = correct / (correct + wrong), plausible firings "
          "and symptoms explained by a right cause excluded; recall = runs where it fired / runs "
          "that list it)")
    print(f"{'detector':24s} {'fired':>6s} {'correct':>8s} {'explained':>9s} {'wrong':>6s} "
          f"{'precision':>9s} {'listed':>7s} {'hit':>4s} {'recall':>7s}")
    per_det = {}
    runs = fault_runs + healthy_runs
    for d in list(DETECTORS) + ["data_error"]:
        fired = [r for r in runs if d in r.fired]
        correct = [r for r in fired if d in r.expected]
        bad = [r for r in fired if d in r.false_alarms or (r.healthy and d in r.fired)]
        explained = [r for r in fired if d in r.symptoms and d not in r.expected and r not in bad
                     and d not in r.plausible]
        listed = [r for r in runs if d in r.expected]
        hit = [r for r in listed if d in r.fired]
        if not fired and not listed:
            continue
        judged = len(correct) + len(bad)
        per_det[d] = {"fired": len(fired), "correct": len(correct), "explained": len(explained),
                      "wrong": len(bad), "listed": len(listed), "hit": len(hit)}
        prec = f"{len(correct) / judged:.2f}" if judged else "-"
        rec = f"{len(hit) / len(listed):.2f}" if listed else "-"
        print(f"{d:24s} {len(fired):6d} {len(correct):8d} {len(explained):9d} {len(bad):6d} {prec:>9s} "
              f"{len(listed):7d} {len(hit):4d} {rec:>7s}")
    print()
    return {"recall": recall, "cause_named_runs": named, "cause_unknown_runs": unknown,
            "wrong_cause_runs": len(wrong), "faulty_runs": len(fault_runs),
            "healthy_alarm_runs": len(alarms), "healthy_runs": len(healthy_runs),
            "median_delay": statistics.median(delays) if delays else None,
            "worst_delay": max(delays) if delays else None, "faults": rows, "detectors": per_det,
            "load": load()}


def _deep_narrow() -> Setup:
    from archlab.diagnose.fault_models import mlp

    return Setup("overhead_deep_narrow_mlp", "16 ReLU layers of width 32 on digits", "lightning",
                 "digits", lambda i, o, s: mlp(i, o, (32,) * 16), batch=32)


def measure_overhead(pairs: int, steps: int = 1000, steady_from: int = 512) -> dict:
    """Epoch times with and without the monitor (Lightning callback path, default settings),
    ``pairs`` interleaved runs of whole epochs totalling about ``steps`` steps. Reported: the
    median and range over pairs of (time with / time without) over all epochs, and over the
    epochs that start at step ``steady_from`` or later (the schedule samples every 64th step
    there; before, densely: every step for the first 16); and the monitor's own timing (its
    measured seconds / the rest of the step time, whole run)."""
    cnn = setups(["h_l_mnist_cnn"])[0]
    out = {}
    print(f"monitor overhead: {pairs} interleaved pairs of ~{steps}-step runs; {load()}")
    for s in (cnn, _deep_narrow()):
        first = run_setup(s, 0, monitor=False, epochs=1)   # warm caches; steps per epoch
        per_epoch = first.steps
        epochs = max(2, round(steps / per_epoch))
        steady = math.ceil(steady_from / per_epoch)
        whole, later, own = [], [], []
        for i in range(pairs):
            a = run_setup(s, i, monitor=False, epochs=epochs)
            b = run_setup(s, i, monitor=True, epochs=epochs)
            whole.append(sum(b.epoch_seconds) / sum(a.epoch_seconds))
            later.append(sum(b.epoch_seconds[steady:]) / sum(a.epoch_seconds[steady:]))
            own.append(b.overhead)
        out[s.name] = {"steps": b.steps, "epochs": epochs, "steady_from_epoch": steady,
                       "ratio_all_epochs": whole, "ratio_steady": later, "monitor_own": own,
                       "seconds_without": sum(a.epoch_seconds)}
        print(f"  {s.name:26s} {b.steps:5d} steps ({epochs} epochs of {per_epoch}): with/without "
              f"all epochs median {statistics.median(whole):.3f} [{min(whole):.3f}-{max(whole):.3f}]; "
              f"epochs {steady + 1}.. (step >= {steady * per_epoch}) median "
              f"{statistics.median(later):.3f} [{min(later):.3f}-{max(later):.3f}]; monitor's own "
              f"timing {statistics.median(own):.3f} [{min(own):.3f}-{max(own):.3f}]; {load()}",
              flush=True)
    return out


if __name__ == "__main__":
    main()
