"""Training benchmarks, measured side by side in one run (issue 6).

1. Overhead: epoch time of ``archlab.train`` (PyTorch Lightning underneath) against a minimal
   hand-written PyTorch loop: same built model, same scaled data split, same batch size, same
   optimiser, both with a validation pass each epoch. Target ratio <= 1.10. The two are
   alternated (hand, archlab, hand, archlab) and the best epoch of each is compared, so a noisy
   shared machine hurts both alike. Measured for mnist_cnn on mnist5k (the realistic case),
   digits_mlp on digits (a tiny model: the worst case for fixed per-step costs), and mnist_cnn
   again with the diagnostics health monitor on (the default of ``archlab train``).
2. Time to quality: the zoo's ``mnist_cnn`` trained by ``archlab.train`` with the recipe below
   reaches >= 98% test accuracy on mnist5k (mean of 3 seeds); next to it, a plain Adam loop
   (lr 1e-3, no schedule, no augmentation) on the same model, splits and scaling, and the time it
   needs to reach the same test accuracy.

Usage: ``python benchmarks/training.py [--seeds 3] [--overhead-epochs 2] [--max-plain-epochs 20]``
Prints figures and ratios; timings are wall-clock seconds on this machine.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings

import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback

import archlab
from archlab.train import Run, prepare

DESIGN = "mnist_cnn"
DATA = "mnist5k"
# The recipe for time to quality: one-cycle Adam and 2-pixel shifts (digits tolerate small
# translations, not flips).
RECIPE = {"epochs": 12, "batch": 32, "lr": 3e-3, "schedule": "onecycle", "augment": "shift=2"}
TARGET = 0.98


def hand_loop_epochs(design: str, data: str, epochs: int, batch: int, seed: int) -> list[float]:
    """A minimal hand-written loop: shuffle, slice, forward, loss, backward, step; then a
    no-grad validation pass. Returns the seconds of each epoch."""
    setup = prepare(design, data, batch=batch, seed=seed, progress=False)
    model = setup.model
    train = setup.datamodule.split("train")
    val = setup.datamodule.split("val")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
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
        times.append(time.perf_counter() - t0)
    return times


class EpochWallClock(Callback):
    """Epoch time as the hand loop sees it: from one epoch's start to the next one's, so the
    metrics row, both checkpoint writes and every Lightning hook are inside it."""

    def __init__(self) -> None:
        self.marks: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.marks.append(time.perf_counter())

    def on_train_end(self, trainer, pl_module) -> None:
        self.marks.append(time.perf_counter())

    @property
    def epochs(self) -> list[float]:
        return [b - a for a, b in zip(self.marks, self.marks[1:], strict=False)]


def archlab_epochs(design: str, data: str, epochs: int, batch: int, seed: int, out: str,
                   health: bool) -> tuple[list[float], float]:
    clock = EpochWallClock()
    run = archlab.train(design, data, epochs=epochs, batch=batch, seed=seed, progress=False, out=out,
                        health=health, callbacks=[clock])
    return clock.epochs, float(run.summary["fit_seconds"])


def overhead(args, out: str, design: str, data: str, health: bool) -> None:
    print(f"\n== overhead: {design} on {data}, batch 64, Adam 1e-3, {args.overhead_epochs} epochs per "
          f"measurement, alternated x{args.repeats}, health monitor {'on' if health else 'off'}")
    hand: list[float] = []
    lit: list[float] = []
    fits: list[float] = []
    for r in range(args.repeats):
        hand += hand_loop_epochs(design, data, args.overhead_epochs, 64, seed=r)
        epochs, fit = archlab_epochs(design, data, args.overhead_epochs, 64, seed=r, out=out,
                                     health=health)
        lit += epochs
        fits.append(fit)
    best_hand, best_lit = min(hand), min(lit)
    print(f"hand-written loop  epoch s: best {best_hand:7.2f}  median {statistics.median(hand):7.2f}")
    print(f"archlab.train      epoch s: best {best_lit:7.2f}  median {statistics.median(lit):7.2f}  "
          f"(epochs include checkpoints and the metrics row; whole fit with Lightning start-up: "
          f"{min(fits):.2f} s for {args.overhead_epochs} epochs)")
    ratio = best_lit / best_hand
    print(f"ratio archlab / hand (best epochs): {ratio:.3f}  target <= 1.10: {'met' if ratio <= 1.10 else 'NOT met'}")
    print(f"ratio archlab / hand (median epochs): {statistics.median(lit) / statistics.median(hand):.3f}")


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
    parser.add_argument("--overhead-epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-plain-epochs", type=int, default=20)
    parser.add_argument("--skip-overhead", action="store_true")
    parser.add_argument("--skip-quality", action="store_true")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as out:
        if not args.skip_overhead:
            # the realistic case, then the worst case for fixed per-step costs (a tiny model)
            overhead(args, out, DESIGN, DATA, health=False)
            overhead(args, out, "digits_mlp", "digits", health=False)
            overhead(args, out, DESIGN, DATA, health=True)
        if not args.skip_quality:
            time_to_quality(args, out)


if __name__ == "__main__":
    main()
