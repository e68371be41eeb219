"""Reproduce ShuffleNetV2's G1 and G2 experiments on this machine, next to the review's prediction.

Ma et al. 2018 ("ShuffleNet V2", Tables 1 and 2) time stacks of 10 blocks of two 1x1 convs:

* G1: channel ratios c1:c2 = 1:1, 1:2, 1:6, 1:12 with the same multiply-adds
  (widths 128:128, 90:180, 52:312, 36:432, the paper's GPU setting);
* G2: group convs with groups 1, 2, 4, 8 and the same multiply-adds (widths 128, 180, 256, 360).

The design review predicts speed from memory access (the `unequal-1x1-width` and
`group-conv-memory` rules): more memory access for the same multiply-adds -> slower. This script
measures every variant interleaved (round-robin, so load changes on a shared machine hit all
variants alike), reports the median and interquartile range, and prints whether the measured
ranking matches the predicted one (Kendall's tau, 1.0 = same order).

    .venv/bin/python benchmarks/guidelines.py [--size 28] [--batch 1] [--rounds 30] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from archlab.review import review
from archlab.review.run import build_facts

BLOCKS = 10  # building blocks per stack, as in the paper


class Stack(nn.Module):
    """(N, c1, H, W) -> (N, c1, H, W): BLOCKS x [1x1 conv c1->c2, 1x1 conv c2->c1], ReLU after
    each (the paper's setting; no norm, so the convs are what is timed)."""

    def __init__(self, c1: int, c2: int, groups: int = 1) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(BLOCKS):
            layers += [nn.Conv2d(c1, c2, 1, groups=groups, bias=False), nn.ReLU(inplace=True),
                       nn.Conv2d(c2, c1, 1, groups=groups, bias=False), nn.ReLU(inplace=True)]
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return self.body(x)


G1 = [("1:1", 128, 128, 1), ("1:2", 90, 180, 1), ("1:6", 52, 312, 1), ("1:12", 36, 432, 1)]
G2 = [("g=1", 128, 128, 1), ("g=2", 180, 180, 2), ("g=4", 256, 256, 4), ("g=8", 360, 360, 8)]


def kendall_tau(a: list[float], b: list[float]) -> float:
    pairs = [(i, j) for i in range(len(a)) for j in range(i + 1, len(a))]
    score = sum((1 if (a[i] - a[j]) * (b[i] - b[j]) > 0 else -1) for i, j in pairs)
    return score / len(pairs)


def measure(models: dict[str, nn.Module], shapes: dict[str, tuple], batch: int, rounds: int,
            inner: int) -> dict[str, list[float]]:
    """Milliseconds per forward, each round timing every model once (interleaved, in a rotating
    order)."""
    inputs = {k: torch.randn(batch, *shapes[k]) for k in models}
    times: dict[str, list[float]] = {k: [] for k in models}
    with torch.inference_mode():
        for k, m in models.items():  # warm-up: allocator, kernels, caches
            for _ in range(3):
                m(inputs[k])
        names = list(models)
        for r in range(rounds):
            # rotate who goes first each round: no variant always runs right after another
            for k in names[r % len(names):] + names[:r % len(names)]:
                m = models[k]
                start = time.perf_counter()
                for _ in range(inner):
                    m(inputs[k])
                times[k].append((time.perf_counter() - start) * 1e3 / inner)
    return times


def experiment(title: str, variants, rule: str, args) -> bool:
    models, shapes, predicted, macs, flagged = {}, {}, {}, {}, {}
    for name, c1, c2, groups in variants:
        model = Stack(c1, c2, groups).eval()
        shape = (c1, args.size, args.size)
        facts, _ = build_facts(model, shape)
        models[name], shapes[name] = model, shape
        predicted[name] = facts.total_memory_access
        macs[name] = facts.total_multiply_adds
        flagged[name] = sum(1 for f in review(model, shape, rules=[rule]))
    times = measure(models, shapes, args.batch, args.rounds, args.inner)
    median = {k: statistics.median(v) for k, v in times.items()}
    base = variants[0][0]
    print(f"\n{title}  ({BLOCKS} blocks, {args.size}x{args.size}, batch {args.batch}, "
          f"{torch.get_num_threads()} threads, {args.rounds} interleaved rounds)")
    print(f"{'variant':8} {'widths':>9} {'mult-adds':>10} {'memory access':>14} "
          f"{'findings':>8} {'median ms':>10} {'IQR ms':>8} {'vs ' + base:>8}")
    for name, c1, c2, _ in variants:
        q = statistics.quantiles(times[name], n=4)
        print(f"{name:8} {f'{c1}:{c2}':>9} {macs[name] / 1e6:>9.1f}M "
              f"{predicted[name] / 1e6:>13.2f}M {flagged[name]:>8} {median[name]:>10.3f} "
              f"{q[2] - q[0]:>8.3f} {median[name] / median[base]:>7.2f}x")
    names = [v[0] for v in variants]
    order_pred = sorted(names, key=lambda k: predicted[k])
    order_meas = sorted(names, key=lambda k: median[k])
    tau = kendall_tau([predicted[k] for k in names], [median[k] for k in names])
    same = order_pred == order_meas
    print(f"predicted order (least memory access first): {' < '.join(order_pred)}")
    print(f"measured order  (fastest first):             {' < '.join(order_meas)}")
    print(f"ranks as the rule predicts: {'yes' if same else 'no'} (Kendall tau {tau:+.2f})")
    return same


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=28, help="feature map side (paper: 56)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--inner", type=int, default=3, help="forwards per timing")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print("memory access: elements read + written per sample (x4 bytes at float32); "
          "multiply-adds per sample")
    g1 = experiment("G1: equal channel width minimises memory access", G1, "unequal-1x1-width", args)
    g2 = experiment("G2: group convolution raises memory access", G2, "group-conv-memory", args)
    print(f"\nsummary: G1 ranking {'holds' if g1 else 'differs'}, "
          f"G2 ranking {'holds' if g2 else 'differs'} on this machine")


if __name__ == "__main__":
    main()
