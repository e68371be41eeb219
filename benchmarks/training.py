"""Training benchmarks, measured side by side in one run (issues 6 and 15).

1. Overhead: epoch time of ``archlab.train`` (as users get it: archlab's own training loop on
   one CPU process, ``archlab.train.loop``, which drives the same LightningModule hooks and
   Lightning callbacks as ``lightning.Trainer``; the progress display on) against a minimal
   hand-written PyTorch loop on the same built model, scaled split, batch size (64) and optimiser
   (Adam 1e-3). Target: archlab / hand <= 1.10 for mnist_cnn on mnist5k with the health monitor
   on (the default of ``archlab train``), <= 1.5 for digits_mlp on digits (a tiny model: the
   worst case for fixed per-step costs). Each repeat runs, one after the other: the hand loop,
   a bare Lightning loop (Lightning's own floor, see below), archlab with the monitor off and
   archlab with it on, each for ``--overhead-epochs`` epochs of a fresh model (odd repeats run
   them in the reverse order). The ratio of a repeat divides the mean epoch of each archlab run
   by that of the hand loop of the same repeat; the figure is the median of the repeats' ratios
   with their range, and the machine's load average is printed beside every repeat. Three clocks
   are shown: wall-clock seconds (the target's), CPU seconds of this process (all threads: torch's
   intra-op workers, which spin while they wait, and archlab's checkpoint writer) and CPU seconds
   of the training thread alone (the least disturbed by other processes on a shared machine; it
   leaves out the checkpoint writer's renames and the intra-op workers).

   Precision (session 8). A ``digits_mlp`` epoch is ~22 steps and 11-25 ms; with 2 epochs a
   run, 5 repeats spread by +-15 % from run to run, wider than the distance between the figure
   and its 1.5 target. So: the epochs per run are set per design (``--overhead-epochs`` unset:
   2 for ``mnist_cnn``, an epoch of ~1 s, and 20 for ``digits_mlp``, ~0.3-0.5 s a run), the
   repeats alternate their order (a drift of the machine's speed during a repeat no longer
   favours the loop that runs first) and a discarded warm-up round runs every loop once for
   ``--warmup-epochs`` epochs before the repeats (the first repeat's hand loop otherwise pays
   the process's first calls of the model's kernels alone, while the loops after it find them
   warm), and every run starts after a full garbage collection, so that no loop inherits the
   garbage of the runs before it (a full collection of this process's ~400k objects took
   ~1 s at load 9-18; inside a 20-epoch digits_mlp run only young-generation collections
   were seen, 5 in archlab's, 1 in the hand loop's; the collections a run's own allocations
   cause stay inside it). What a
   figure measures is unchanged: the mean epoch of a whole run, its first epoch
   included, of archlab.train over that of the hand loop in the same repeat, median and range.
   A run's first epoch carries its one-off costs (in archlab: the checkpoint writer's thread,
   the first whole write of ``metrics.csv``, the first checkpoint files; in both loops the
   optimiser's state), which 2 epochs weigh at a half and 20 at a twentieth, so the 20-epoch
   figure of ``digits_mlp`` is lower than a 2-epoch one (``--overhead-epochs 2`` gives the old
   weighting); the one-off cost of a whole ``archlab.train`` call is printed apart, as before.
   With 20 epochs, the monitor's dense start (every early step sampled) is a smaller part of a
   ``digits_mlp`` run with the monitor than it was over 2 epochs; that figure has no target.

   What one epoch includes:

   * hand loop: a permutation; per batch: index the tensors, forward, cross entropy,
     zero_grad, backward, Adam step; then validation: forward, argmax and a correct count per
     batch (one ``.item()`` each);
   * bare Lightning: the same model, batches sliced the same way, and the same manual
     optimisation step as archlab's (zero_grad, ``manual_backward``, step) in a
     ``lightning.Trainer`` with no callbacks, logger, checkpoints or progress bar; validation as
     the hand loop's. What Lightning costs by itself;
   * archlab: the data loader over in-memory tensors (one sliced index tensor and one batched
     fetch per step), forward, loss, the epoch's training loss and accuracy summed on the
     device, the step through the module's and callbacks' hooks, validation with loss and the
     full confusion matrix (one more op per batch than the hand loop's count), the epoch's
     metrics computed once, the ``metrics.csv`` row (appended), the checkpoints on archlab's
     cadence (``checkpoint_interval``, 10 s by default: ``best.ckpt``, weights only, and
     ``last.ckpt``, the resumable full state, are written atomically at the end of the first
     epoch 10 s after the last write and after the last epoch, the temporary files on the
     training thread and the renames in the background writer, which the run waits for
     before its end, inside the last epoch's time; every other epoch keeps exact copies of
     them in memory instead. A 20-epoch ``digits_mlp`` run or a 2-epoch ``mnist_cnn`` run
     takes under 10 s, so it writes them once, after its last epoch; ``--checkpoint-interval
     0`` measures the writes of every epoch, as before session 9), the progress line; with
     the monitor, its sampling of activations, gradients and weights. ``--compare-trainer`` adds the same run with the monitor in
     ``lightning.Trainer`` (``loop='lightning'``, the path of multi-device runs).

   Not in an epoch, and printed apart: the rest of an ``archlab.train`` call (preparing the data
   and the network, the run folder, the trainer's start-up, the best checkpoint's test pass,
   ``model.safetensors``, ``summary.json``).
2. Time to quality: the zoo's ``mnist_cnn`` trained by ``archlab.train`` with the recipe below
   reaches >= 98% test accuracy on mnist5k (mean of 3 seeds); next to it, a plain Adam loop
   (lr 1e-3, no schedule, no augmentation) on the same model, splits and scaling, and the time it
   needs to reach the same test accuracy.

Usage: ``python benchmarks/training.py [--repeats 5] [--overhead-epochs N] [--warmup-epochs 1]
[--skip-quality] [--seeds 3] [--max-plain-epochs 20] [--compare-trainer] [--threads N]
[--designs mnist_cnn digits_mlp] [--checkpoint-interval SECONDS]``. Timings are seconds on this machine.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import logging
import os
import statistics
import tempfile
import time
import warnings

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback

import archlab
from archlab.train import Run, prepare

DESIGN = "mnist_cnn"
DATA = "mnist5k"
BATCH = 64
# The recipe for time to quality: one-cycle Adam and 2-pixel shifts (digits tolerate small
# translations, not flips).
RECIPE = {"epochs": 12, "batch": 32, "lr": 3e-3, "schedule": "onecycle", "augment": "shift=2"}
TARGET = 0.98
# (target ratio, the archlab set-up it applies to): the monitor is on for mnist_cnn (the default
# of `archlab train`); the digits_mlp target was set on the plain run
OVERHEAD_TARGETS = {DESIGN: (1.10, "archlab+monitor"), "digits_mlp": (1.5, "archlab")}
# epochs per run when --overhead-epochs is not given: about a second of a run's epochs or more
OVERHEAD_EPOCHS = {DESIGN: 2, "digits_mlp": 20}
CLOCKS = ((0, "wall"), (1, "CPU"), (2, "thread"))


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f}"


def _clocks() -> tuple[float, float, float]:
    return time.perf_counter(), time.process_time(), time.thread_time()


def hand_loop_epochs(design: str, data: str, epochs: int, batch: int, seed: int) -> list[tuple[float, ...]]:
    """A minimal hand-written loop: shuffle, slice, forward, loss, backward, step; then a
    no-grad validation pass. Returns (wall, CPU, thread CPU) seconds of each epoch."""
    setup = prepare(design, data, batch=batch, seed=seed, progress=False)
    model = setup.model
    train = setup.datamodule.split("train")
    val = setup.datamodule.split("val")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    times = []
    for _ in range(epochs):
        start = _clocks()
        model.train()
        perm = torch.randperm(len(train.x))
        for i in range(0, len(perm), batch):
            idx = perm[i:i + batch]
            loss = F.cross_entropy(model(train.x[idx]), train.y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        correct = 0
        with torch.no_grad():
            for i in range(0, len(val.x), batch):
                correct += (model(val.x[i:i + batch]).argmax(1) == val.y[i:i + batch]).sum().item()
        times.append(tuple(b - a for a, b in zip(start, _clocks(), strict=True)))
    return times


class EpochWallClock(Callback):
    """Epoch time as the hand loop sees it: from one epoch's start to the next one's, so
    validation, the metrics row, the checkpoints (written or kept) and every Lightning hook are inside it.
    Keeps (wall, CPU, thread CPU) seconds."""

    def __init__(self) -> None:
        self.marks: list[tuple[float, float, float]] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.marks.append(_clocks())

    def on_train_end(self, trainer, pl_module) -> None:
        self.marks.append(_clocks())

    @property
    def epochs(self) -> list[tuple[float, ...]]:
        return [tuple(y - x for x, y in zip(a, b, strict=True)) for a, b in zip(self.marks, self.marks[1:], strict=False)]


MONITOR_SECONDS: list[dict] = []   # monitor.json "seconds" of each run with the monitor


CHECKPOINT_INTERVAL: dict = {}   # {"checkpoint_interval": s} from --checkpoint-interval, else archlab's default


def archlab_epochs(design: str, data: str, epochs: int, batch: int, seed: int, out: str,
                   health: bool, loop: str = "auto") -> tuple[list[tuple[float, ...]], float]:
    """(wall, CPU) seconds of each epoch, and the wall seconds of the whole ``archlab.train``
    call (preparing the data and network, the run folder, the trainer's start-up, the test pass,
    the weights and the summary included). The defaults of ``archlab.train``: its progress
    display on (its lines captured here, as a terminal would take them) and ``loop='auto'``,
    which is archlab's own loop on one CPU process; ``loop='lightning'`` measures
    ``lightning.Trainer`` running the same module and callbacks."""
    clock = EpochWallClock()
    started = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):
        run = archlab.train(design, data, epochs=epochs, batch=batch, seed=seed, out=out,
                            health=health, callbacks=[clock], loop=loop, **CHECKPOINT_INTERVAL)
    took = time.perf_counter() - started
    path = run.health_dir / "monitor.json" if health else None
    if path is not None and path.exists() and loop == "auto":   # the monitor's own timing
        got = json.loads(path.read_text())
        MONITOR_SECONDS.append(got["seconds"] | {"samples": got["samples"]})
    return clock.epochs, took


class _SlicedBatches:
    """Batches sliced from in-memory tensors as the hand loop slices them (shuffled or not)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch: int, shuffle: bool) -> None:
        self.x, self.y, self.batch, self.shuffle = x, y, batch, shuffle

    def __len__(self) -> int:
        return (len(self.x) + self.batch - 1) // self.batch

    def __iter__(self):
        order = torch.randperm(len(self.x)) if self.shuffle else None
        for i in range(0, len(self.x), self.batch):
            if order is None:
                yield self.x[i:i + self.batch], self.y[i:i + self.batch]
            else:
                idx = order[i:i + self.batch]
                yield self.x[idx], self.y[idx]


class _BareModule(L.LightningModule):
    """The least a LightningModule needs for the hand loop's work, with archlab's step."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.automatic_optimization = False
        self.correct = 0

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self.model(x), y)
        opt = self.optimizers()
        opt.zero_grad()
        self.manual_backward(loss)
        opt.step()

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.correct += (self.model(x).argmax(1) == y).sum().item()

    def configure_optimizers(self):
        return torch.optim.Adam(self.model.parameters(), lr=1e-3)


def lightning_floor_epochs(design: str, data: str, epochs: int, batch: int, seed: int,
                           out: str) -> list[tuple[float, ...]]:
    """Lightning's own cost: the hand loop's work inside a bare ``lightning.Trainer``."""
    setup = prepare(design, data, batch=batch, seed=seed, progress=False)
    train = setup.datamodule.split("train")
    val = setup.datamodule.split("val")
    clock = EpochWallClock()
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, callbacks=[clock],
                        default_root_dir=out)
    trainer.fit(_BareModule(setup.model), _SlicedBatches(train.x, train.y, batch, True),
                _SlicedBatches(val.x, val.y, batch, False))
    return clock.epochs


def _mean(epochs: list[tuple[float, ...]], which: int) -> float:
    return statistics.mean(e[which] for e in epochs)


def overhead(args, out: str, design: str, data: str) -> None:
    loops = ("hand", "lightning", "archlab", "archlab+monitor")
    if args.compare_trainer:  # the same archlab run in lightning.Trainer (loop='lightning')
        loops += ("archlab+monitor/Trainer",)
    epochs = args.overhead_epochs or OVERHEAD_EPOCHS[design]

    def run(k: str, r: int, n: int) -> list[tuple[float, ...]]:
        gc.collect()  # every run starts with the same collector state (see the docstring)
        if k == "hand":
            return hand_loop_epochs(design, data, n, BATCH, seed=r)
        if k == "lightning":
            return lightning_floor_epochs(design, data, n, BATCH, seed=r, out=out)
        got, fit = archlab_epochs(design, data, n, BATCH, seed=r, out=out, health=k != "archlab",
                                  loop="lightning" if k.endswith("/Trainer") else "auto")
        if k == "archlab":
            fits.append((fit, got))
        return got

    print(f"\n== overhead: {design} on {data}, batch {BATCH}, Adam 1e-3, {epochs} epochs "
          f"per run, {args.repeats} repeats (odd ones in reverse order), each repeat: {', '.join(loops)}"
          f"; a discarded warm-up round of {args.warmup_epochs} epoch(s) each first  [{load()}]")
    runs: dict[str, list[list[tuple[float, ...]]]] = {k: [] for k in loops}
    fits: list[tuple[float, list]] = []
    if args.warmup_epochs > 0:   # every loop once, as the repeats run them: not counted
        for k in loops:
            run(k, args.repeats, args.warmup_epochs)
        fits.clear()
    MONITOR_SECONDS.clear()
    for r in range(args.repeats):
        for k in (loops if r % 2 == 0 else loops[::-1]):
            runs[k].append(run(k, r, epochs))
        wall = "  ".join(f"{k} {_mean(runs[k][-1], 0):.4f}" for k in loops)
        ratios = " ".join(f"{_mean(runs[k][-1], 0) / _mean(runs['hand'][-1], 0):.3f}" for k in loops[1:])
        threads = " ".join(f"{_mean(runs[k][-1], 2) / _mean(runs['hand'][-1], 2):.3f}" for k in loops[1:])
        print(f"repeat {r + 1}  [{load()}]  mean epoch s (wall): {wall}   ratios to hand: {ratios}"
              f"   (thread CPU: {threads})")
    print(f"an archlab.train call outside its epochs (data, network, run folder, the trainer's "
          f"start-up, test pass, weights, summary): {min(f - sum(e[0] for e in ep) for f, ep in fits):.2f} s "
          f"(fewest over the repeats)")
    target, applies_to = OVERHEAD_TARGETS.get(design, (None, None))
    for which, label in CLOCKS:
        for k in loops[1:]:
            ratio = [_mean(a, which) / _mean(h, which) for a, h in zip(runs[k], runs["hand"], strict=True)]
            med = statistics.median(ratio)
            verdict = ""
            if target and k == applies_to and which == 0:
                verdict = f"  target <= {target:.2f}: {'met' if med <= target else 'NOT met'}"
            print(f"{label:6s} {k:16s} / hand: median {med:.3f}  range {min(ratio):.3f}-{max(ratio):.3f}  "
                  f"(mean epochs: hand {statistics.median(_mean(h, which) for h in runs['hand']):.3f} s, "
                  f"{k} {statistics.median(_mean(a, which) for a in runs[k]):.3f} s){verdict}")
    own = list(MONITOR_SECONDS)
    if own:   # its seconds / the rest of the step time, as timed by the monitor itself
        share = [m["monitor"] / (m["train"] - m["monitor"]) for m in own if m["train"] > m["monitor"]]
        det = [m["detectors"] / (m["train"] - m["monitor"]) for m in own if m["train"] > m["monitor"]]
        print(f"the monitor's own timing (monitor.json, archlab+monitor runs): its seconds / the rest "
              f"of the step time median {statistics.median(share):.3f} range {min(share):.3f}-"
              f"{max(share):.3f}, of which the detectors {statistics.median(det):.3f}; "
              f"{own[-1]['samples']} samples a run, {1e3 * statistics.median(m['monitor'] for m in own) / own[-1]['samples']:.1f} "
              f"ms a sample  [{load()}]")
    monitor = [_mean(m, 0) / _mean(a, 0) for m, a in zip(runs["archlab+monitor"], runs["archlab"], strict=True)]
    print(f"the health monitor's share: archlab+monitor / archlab, wall: median {statistics.median(monitor):.3f} "
          f"range {min(monitor):.3f}-{max(monitor):.3f}  [{load()}]")


def plain_adam_time_to(accuracy: float, seed: int, max_epochs: int) -> tuple[float | None, int, float]:
    """Plain Adam 1e-3 loop on the same model, splits and scaling; test accuracy after every
    epoch; seconds of training until it first reaches ``accuracy`` (None if never)."""
    setup = prepare(DESIGN, DATA, seed=seed, progress=False)
    model = setup.model
    train = setup.datamodule.split("train")
    test = setup.datamodule.split("test")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    spent, best = 0.0, 0.0
    for epoch in range(max_epochs):
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(len(train.x), generator=g)
        for i in range(0, len(perm), 64):
            idx = perm[i:i + 64]
            loss = F.cross_entropy(model(train.x[idx]), train.y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        spent += time.perf_counter() - t0
        model.eval()
        with torch.no_grad():
            acc = (model(test.x).argmax(1) == test.y).float().mean().item()
        best = max(best, acc)
        if acc >= accuracy:
            return spent, epoch + 1, acc
    return None, max_epochs, best


def time_to_quality(args, out: str) -> None:
    print(f"\n== time to quality: {DESIGN} on {DATA}, recipe {RECIPE}, seeds 0..{args.seeds - 1}")
    accs, secs = [], []
    for seed in range(args.seeds):
        run: Run = archlab.train(DESIGN, DATA, seed=seed, progress=False, out=out, health=False, **RECIPE)
        accs.append(run.test_metrics["accuracy"])
        secs.append(float(run.summary["train_seconds"]))
        print(f"seed {seed}: test accuracy {accs[-1]:.4f}  training {secs[-1]:7.1f} s  "
              f"(best epoch {run.summary['best_epoch']})")
    mean_acc, mean_s = statistics.mean(accs), statistics.mean(secs)
    print(f"archlab mean test accuracy {mean_acc:.4f} ({'>=' if mean_acc >= TARGET else '<'} {TARGET:.2f}); "
          f"mean training time {mean_s:.1f} s")
    goal = min(TARGET, mean_acc)
    plain = []
    for seed in range(args.seeds):
        t, epochs, acc = plain_adam_time_to(goal, seed, args.max_plain_epochs)
        plain.append(t)
        text = f"{t:7.1f} s ({epochs} epochs)" if t is not None else f"not reached in {epochs} epochs (best {acc:.4f})"
        print(f"plain Adam loop seed {seed}: time to {goal:.4f} test accuracy: {text}")
    reached = [t for t in plain if t is not None]
    if reached:
        print(f"mean time to {goal:.4f}: archlab {mean_s:.1f} s vs plain Adam loop "
              f"{statistics.mean(reached):.1f} s ({len(reached)}/{args.seeds} seeds reached it); "
              f"ratio archlab / plain {mean_s / statistics.mean(reached):.2f}")
    else:
        print(f"the plain Adam loop did not reach {goal:.4f} in {args.max_plain_epochs} epochs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--overhead-epochs", type=int, default=None,
                        help="epochs per run (default: " + ", ".join(f"{d} {n}" for d, n in OVERHEAD_EPOCHS.items())
                             + "; about a second of epochs a run or more)")
    parser.add_argument("--warmup-epochs", type=int, default=1,
                        help="epochs of each loop's discarded warm-up run before the repeats (0: none)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-plain-epochs", type=int, default=20)
    parser.add_argument("--skip-overhead", action="store_true")
    parser.add_argument("--designs", nargs="+", choices=(DESIGN, "digits_mlp"), default=(DESIGN, "digits_mlp"),
                        help="the overhead measures to run (default: both, the realistic case first)")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--compare-trainer", action="store_true",
                        help="also time the archlab run with the monitor in lightning.Trainer "
                             "(loop='lightning'), the path multi-device runs take")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's own); "
                        "1 on a heavily loaded machine, where spinning threads of every loop wait "
                        "on each other and wall-clock figures become noise")
    parser.add_argument("--checkpoint-interval", type=float, metavar="SECONDS",
                        help="archlab's checkpoint_interval (default: archlab's own, 10 s; 0: "
                             "write the checkpoints every epoch)")
    args = parser.parse_args()
    if args.checkpoint_interval is not None:
        CHECKPOINT_INTERVAL["checkpoint_interval"] = args.checkpoint_interval
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    for name in ("lightning.pytorch", "lightning.pytorch.utilities.rank_zero"):  # as archlab's runs do
        logging.getLogger(name).setLevel(logging.WARNING)
    print(f"torch {torch.__version__}, lightning {L.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} cores, {load()}")
    with tempfile.TemporaryDirectory() as out:
        if not args.skip_overhead:
            # the realistic case, then the worst case for fixed per-step costs (a tiny model)
            for design, data in ((DESIGN, DATA), ("digits_mlp", "digits")):
                if design in args.designs:
                    overhead(args, out, design, data)
        if not args.skip_quality:
            time_to_quality(args, out)


if __name__ == "__main__":
    main()
