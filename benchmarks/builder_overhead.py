"""Does the builder add anything at run time? Forward+backward time of archlab-built ResNet-50 and
MobileNetV2 against the same networks written by hand in plain PyTorch, interleaved in one run.

Target: ratio built / hand-written <= 1.03. Prints medians, interquartile ranges and ratios.

    python benchmarks/builder_overhead.py [--batch 8] [--size 224] [--repeats 15] [--threads 2]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

import archlab
from archlab.analysis.reference import mobilenet_v2, resnet50  # written by hand, plain PyTorch


def step(model: torch.nn.Module, x: torch.Tensor) -> float:
    t0 = time.perf_counter()
    out = model(x)
    out.float().sum().backward()
    return time.perf_counter() - t0


def quartiles(xs: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(xs, n=4)
    return q[0], statistics.median(xs), q[2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {args.threads} threads, {platform.processor() or platform.machine()}, "
          f"batch {args.batch}, {args.size}x{args.size}, {args.repeats} interleaved repeats "
          f"after {args.warmup} warm-up steps; forward + backward, train mode")
    pairs = {
        "resnet50": (archlab.build("resnet50", size=args.size), resnet50()),
        "mobilenet_v2": (archlab.build("mobilenet_v2", size=args.size), mobilenet_v2()),
    }
    x = torch.randn(args.batch, 3, args.size, args.size)
    print(f"{'network':<14}{'params built':>14}{'params hand':>14}{'built ms (IQR)':>22}"
          f"{'hand ms (IQR)':>22}{'ratio':>8}")
    ratios = {}
    for name, (built, hand) in pairs.items():
        nb = sum(p.numel() for p in built.parameters())
        nh = sum(p.numel() for p in hand.parameters())
        built.train()
        hand.train()
        for _ in range(args.warmup):
            step(built, x)
            step(hand, x)
        tb, th = [], []
        for i in range(args.repeats):  # interleaved, alternating which goes first
            order = [(built, tb), (hand, th)] if i % 2 == 0 else [(hand, th), (built, tb)]
            for model, times in order:
                model.zero_grad(set_to_none=True)
                times.append(step(model, x))
        qb, qh = quartiles(tb), quartiles(th)
        ratio = qb[1] / qh[1]
        ratios[name] = ratio
        print(f"{name:<14}{nb:>14,}{nh:>14,}{qb[1] * 1e3:>10.1f} ({qb[0] * 1e3:.1f}-{qb[2] * 1e3:.1f})"
              f"{qh[1] * 1e3:>10.1f} ({qh[0] * 1e3:.1f}-{qh[2] * 1e3:.1f}){ratio:>8.3f}")
    worst = max(ratios.values())
    print(f"worst ratio {worst:.3f} (target <= 1.03): {'met' if worst <= 1.03 else 'NOT met'}")


if __name__ == "__main__":
    main()
