"""Issue 3's image classifiers: (1) do the multi-branch blocks (shuffle_unit, fire) cost anything
at run time against the same networks written by hand? (2) do multiply-adds predict speed?

Part 1 times archlab-built ShuffleNetV2 1.0x and SqueezeNet 1.0 against plain-PyTorch versions
written here, interleaved, forward + backward in train mode. Target: ratio built / hand <= 1.03.

Part 2 times inference (batch 1, eval mode) of every issue-3 zoo design with ResNet-50 as the
baseline and prints multiply-adds, memory access (ShuffleNetV2's MAC, bytes) and ms per
G multiply-adds: ShuffleNetV2's guideline that speed depends on memory access and
fragmentation, not on multiply-adds alone (B3, B6).

    python benchmarks/issue3_cnn.py [--batch 8] [--size 224] [--repeats 15] [--threads 2]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
from torch import nn

import archlab
from archlab.analysis import analyze

# ---------------------------------------------------------------- hand-written networks -----


def conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, relu: bool = True):
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class HandShuffleUnit(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        half = cout // 2
        self.stride = stride
        if stride == 2:
            self.left = nn.Sequential(conv_bn(cin, cin, 3, 2, cin, relu=False), conv_bn(cin, half, 1))
        branch_in = cin if stride == 2 else half
        self.right = nn.Sequential(conv_bn(branch_in, half, 1), conv_bn(half, half, 3, stride, half, relu=False),
                                   conv_bn(half, half, 1))

    def forward(self, x):
        if self.stride == 1:
            a, b = x.chunk(2, 1)
            y = torch.cat([a, self.right(b)], 1)
        else:
            y = torch.cat([self.left(x), self.right(x)], 1)
        n, c, h, w = y.shape
        return y.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)


class HandShuffleNetV2(nn.Module):
    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        layers = [conv_bn(3, 24, 3, 2), nn.MaxPool2d(3, 2, 1)]
        cin = 24
        for cout, depth in ((116, 4), (232, 8), (464, 4)):
            layers += [HandShuffleUnit(cin if i == 0 else cout, cout, 2 if i == 0 else 1) for i in range(depth)]
            cin = cout
        layers.append(conv_bn(cin, 1024, 1))
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(1024, classes)

    def forward(self, x):
        return self.fc(self.features(x).mean((2, 3)))


class HandFire(nn.Module):
    def __init__(self, cin: int, s: int, e1: int, e3: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(cin, s, 1)
        self.e1 = nn.Conv2d(s, e1, 1)
        self.e3 = nn.Conv2d(s, e3, 3, padding=1)

    def forward(self, x):
        x = torch.relu(self.squeeze(x))
        return torch.cat([torch.relu(self.e1(x)), torch.relu(self.e3(x))], 1)


class HandSqueezeNet(nn.Module):
    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        pool = lambda: nn.MaxPool2d(3, 2, ceil_mode=True)  # noqa: E731
        self.features = nn.Sequential(
            nn.Conv2d(3, 96, 7, 2), nn.ReLU(inplace=True), pool(),
            HandFire(96, 16, 64, 64), HandFire(128, 16, 64, 64), HandFire(128, 32, 128, 128), pool(),
            HandFire(256, 32, 128, 128), HandFire(256, 48, 192, 192), HandFire(384, 48, 192, 192),
            HandFire(384, 64, 256, 256), pool(), HandFire(512, 64, 256, 256))
        self.classifier = nn.Sequential(nn.Dropout(0.5), nn.Conv2d(512, classes, 1), nn.ReLU(inplace=True),
                                        nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, x):
        return self.classifier(self.features(x))


# ------------------------------------------------------------------------------ timing -----


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def quartiles(xs: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(xs, n=4)
    return q[0], statistics.median(xs), q[2]


def train_step(model: nn.Module, x: torch.Tensor):
    def run():
        out = model(x)
        out = out[0] if isinstance(out, tuple) else out
        out.sum().backward()
    return run


def part1(args) -> None:
    print("\n1) built vs hand-written, forward + backward, train mode")
    pairs = {"shufflenet_v2": HandShuffleNetV2(), "squeezenet": HandSqueezeNet()}
    x = torch.randn(args.batch, 3, args.size, args.size)
    print(f"{'network':<15}{'params built':>14}{'params hand':>14}{'built ms (IQR)':>20}{'hand ms (IQR)':>20}"
          f"{'ratio':>8}")
    for name, hand in pairs.items():
        built = archlab.build(name, size=args.size)
        steps = {"built": train_step(built, x), "hand": train_step(hand, x)}
        for _ in range(args.warmup):
            for fn in steps.values():
                fn()
        times: dict[str, list[float]] = {k: [] for k in steps}
        for _ in range(args.repeats):  # interleaved, so load changes hit both alike
            for k, fn in steps.items():
                times[k].append(timed(fn) * 1e3)
        (b1, bm, b3), (h1, hm, h3) = quartiles(times["built"]), quartiles(times["hand"])
        nb = sum(p.numel() for p in built.parameters())
        nh = sum(p.numel() for p in hand.parameters())
        print(f"{name:<15}{nb:>14,}{nh:>14,}{bm:>10.1f} ({b1:.0f}-{b3:.0f}){hm:>10.1f} ({h1:.0f}-{h3:.0f})"
              f"{bm / hm:>8.3f}")


def part2(args) -> None:
    print("\n2) inference, batch 1, eval mode: multiply-adds vs measured time")
    names = ["resnet50", "se_resnet50", "xception", "inception_v3", "squeezenet", "shufflenet_v2",
             "mobilenet_v3_large", "mobilenet_v3_small"]
    nets, figures = {}, {}
    for name in names:
        design = archlab.load(name)
        a = analyze(design, memory=False)
        figures[name] = (a.totals["multiply_adds"], a.totals["memory_access_bytes"], a.totals["ops"])
        nets[name] = (archlab.build(design).eval(), torch.randn(1, *design.input_shape))
    times: dict[str, list[float]] = {n: [] for n in names}
    with torch.no_grad():
        for _ in range(args.warmup):
            for net, x in nets.values():
                net(x)
        for _ in range(args.repeats):
            for name, (net, x) in nets.items():
                times[name].append(timed(lambda net=net, x=x: net(x)) * 1e3)
    base = statistics.median(times["resnet50"])
    base_macs = figures["resnet50"][0]
    print(f"{'network':<20}{'G mult-adds':>12}{'MB mem access':>15}{'ops':>6}{'ms (IQR)':>20}"
          f"{'ms / G m-a':>12}{'time vs resnet50':>18}{'m-a vs resnet50':>17}")
    for name in names:
        macs, mac, n_ops = figures[name]
        q1, med, q3 = quartiles(times[name])
        print(f"{name:<20}{macs / 1e9:>12.3f}{mac / 1e6:>15.1f}{n_ops:>6}{med:>10.1f} ({q1:.0f}-{q3:.0f})"
              f"{med / (macs / 1e9):>12.1f}{med / base:>18.3f}{macs / base_macs:>17.3f}")
    print("memory access: bytes read + written per sample at float32 (inputs, weights and outputs of "
          "every op, ShuffleNetV2's MAC); 1 multiply-add = 2 FLOPs")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batch", type=int, default=8, help="batch of part 1")
    ap.add_argument("--size", type=int, default=224, help="input size of part 1")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--part", type=int, choices=(1, 2), default=None, help="run one part only")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {args.threads} threads, {platform.processor() or platform.machine()}, "
          f"{args.repeats} interleaved repeats after {args.warmup} warm-up rounds")
    if args.part in (None, 1):
        part1(args)
    if args.part in (None, 2):
        part2(args)


if __name__ == "__main__":
    main()
