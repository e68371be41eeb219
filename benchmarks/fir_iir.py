"""Speed of the vertical IIR (FIR-IIR block, A10): the parallel blocked scan against the reference
row loop and against a depthwise kx1 convolution with the same effective receptive field.

The three are measured interleaved in one run (one forward+backward of each per round, so a noisy
machine slows them alike), and the script prints the median time per forward+backward and the
ratios. The kx1 conv's k is the number of rows that holds 99% of the energy of the IIR's impulse
response ``a^r``: ``1 - a^(2k) >= 0.99``, i.e. ``k = ceil(ln(0.01) / (2 ln|a|))`` (11 rows at
a = 0.8), rounded up to odd so the conv stays centred.

    python benchmarks/fir_iir.py [--batch 8 --channels 32 --size 128 --coefficient 0.8]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from archlab.blocks.fir_iir import VerticalIIR, iir_rows_loop


class RowLoopIIR(nn.Module):
    """The same filter evaluated row by row (the reference, what the block avoids)."""

    def __init__(self, iir: VerticalIIR) -> None:
        super().__init__()
        self.iir = iir

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return iir_rows_loop(x, self.iir.coefficient)


def energy_rows(a: float, fraction: float = 0.99) -> int:
    """Rows of the impulse response a^r that hold ``fraction`` of its energy."""
    return math.ceil(math.log(1.0 - fraction) / (2.0 * math.log(abs(a))))


def multiply_adds(module: nn.Module, x: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter:
        module(x)
    return counter.get_total_flops() // 2


def step_seconds(module: nn.Module, x: torch.Tensor) -> float:
    start = time.perf_counter()
    module(x).sum().backward()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--size", type=int, default=128, help="height = width")
    parser.add_argument("--coefficient", type=float, default=0.8)
    parser.add_argument("--chunk", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    k = energy_rows(args.coefficient)
    k += 1 - k % 2
    c = args.channels
    iir = VerticalIIR(c, chunk=args.chunk, init=args.coefficient)
    methods = {
        "iir parallel scan": iir,
        "iir row loop": RowLoopIIR(iir),
        f"depthwise {k}x1 conv": nn.Conv2d(c, c, (k, 1), padding=(k // 2, 0), groups=c,
                                           bias=False),
    }
    x = torch.randn(args.batch, c, args.size, args.size, requires_grad=True)

    # correctness first: the two IIR evaluations agree
    with torch.no_grad():
        error = (iir(x) - RowLoopIIR(iir)(x)).abs().max().item()

    for module in methods.values():  # warm-up
        step_seconds(module, x)
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(args.rounds):
        for name, module in methods.items():
            times[name].append(step_seconds(module, x))

    shape = f"(N={args.batch}, C={c}, H={args.size}, W={args.size})"
    print(f"vertical IIR, a={args.coefficient}, chunk={args.chunk}, input {shape}, "
          f"{torch.get_num_threads()} threads, {args.rounds} interleaved rounds")
    print(f"kx1 conv: k={k} rows hold 99% of the energy of a^r; "
          f"max |parallel - loop| = {error:.2e}")
    base = statistics.median(times["iir parallel scan"])
    print(f"{'method':<24}{'fwd+bwd ms (median)':>21}{'vs parallel':>13}{'multiply-adds':>16}")
    for name, module in methods.items():
        median = statistics.median(times[name])
        macs = multiply_adds(module, x.detach())
        print(f"{name:<24}{median * 1e3:>21.2f}{median / base:>12.2f}x{macs:>16,}")
    recurrence = args.batch * c * args.size * args.size
    print(f"(the recurrence itself is {recurrence:,} multiply-adds: one per element; "
          "multiply-adds exclude element-wise work, 1 multiply-add = 2 FLOPs)")


if __name__ == "__main__":
    main()
