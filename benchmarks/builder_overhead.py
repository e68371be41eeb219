"""Does the builder add anything at run time? Forward+backward time of archlab-built ResNet-50,
MobileNetV2, ViT-B/16 and ConvNeXt-T against the same networks written by hand in plain PyTorch
(archlab.analysis.reference: the same computation, the attention written out as archlab's is),
interleaved in one run. ConvNeXt runs without stochastic depth (the hand-written one has none).

Target: ratio built / hand-written <= 1.03. Prints medians, interquartile ranges and ratios.

    python benchmarks/builder_overhead.py [--batch 8] [--size 224] [--repeats 15] [--threads 2]
        [--models resnet50,mobilenet_v2,vit_b_16,convnext_tiny] [--transformer-batch 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

import archlab
from archlab.analysis.reference import (  # written by hand, plain PyTorch
    convnext_tiny,
    mobilenet_v2,
    resnet50,
    vit_b_16,
)


def step(model: torch.nn.Module, x: torch.Tensor) -> float:
    t0 = time.perf_counter()
    out = model(x)
    out.float().sum().backward()
    return time.perf_counter() - t0


def same_weights(built: torch.nn.Module, hand: torch.nn.Module) -> bool:
    """Give the hand-written network the built one's weights (by order, where every tensor's
    size agrees): speed can depend on the values (small products, denormals), so both must
    compute on the same numbers for the ratio to measure the builder alone."""
    pairs = list(zip(built.parameters(), hand.parameters(), strict=False))  # lengths checked next
    if len(list(built.parameters())) != len(list(hand.parameters())) or any(
            a.numel() != b.numel() for a, b in pairs):
        return False
    with torch.no_grad():
        for a, b in pairs:
            b.copy_(a.reshape(b.shape))
    return True


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
    ap.add_argument("--models", default="resnet50,mobilenet_v2,vit_b_16,convnext_tiny")
    ap.add_argument("--transformer-batch", type=int, default=2,
                    help="batch of vit_b_16 and convnext_tiny (17.6 and 4.5 G multiply-adds each)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {args.threads} threads, {platform.processor() or platform.machine()}, "
          f"batch {args.batch}, {args.size}x{args.size}, {args.repeats} interleaved repeats "
          f"after {args.warmup} warm-up steps; forward + backward, train mode; load average "
          f"{os.getloadavg()[0]:.2f} (1 min) at the start", flush=True)
    factories = {
        "resnet50": lambda: (archlab.build("resnet50", size=args.size), resnet50()),
        "mobilenet_v2": lambda: (archlab.build("mobilenet_v2", size=args.size), mobilenet_v2()),
        "vit_b_16": lambda: (archlab.build("vit_b_16"), vit_b_16()),
        "convnext_tiny": lambda: (archlab.build("convnext_tiny", size=args.size, drop_path=0.0),
                                  convnext_tiny()),
    }
    print(f"{'network':<14}{'batch':>6}{'params built':>14}{'params hand':>14}{'built ms (IQR)':>22}"
          f"{'hand ms (IQR)':>22}{'ratio':>8}")
    ratios = {}
    for name in args.models.split(","):
        built, hand = factories[name]()
        batch = args.transformer_batch if name in ("vit_b_16", "convnext_tiny") else args.batch
        size = 224 if name == "vit_b_16" else args.size
        x = torch.randn(batch, 3, size, size)
        copied = same_weights(built, hand)
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
        print(f"{name:<14}{batch:>6}{nb:>14,}{nh:>14,}{qb[1] * 1e3:>10.1f} ({qb[0] * 1e3:.1f}-{qb[2] * 1e3:.1f})"
              f"{qh[1] * 1e3:>10.1f} ({qh[0] * 1e3:.1f}-{qh[2] * 1e3:.1f}){ratio:>8.3f}")
        print(f"  load average {os.getloadavg()[0]:.2f} (1 min) after {name}; "
              f"{'same weights' if copied else 'own initial weights'}", flush=True)
    worst = max(ratios.values())
    print(f"worst ratio {worst:.3f} (target <= 1.03): {'met' if worst <= 1.03 else 'NOT met'}")


if __name__ == "__main__":
    main()
