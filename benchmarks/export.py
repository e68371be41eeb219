"""Export benchmark: how long each export format takes, and how fast onnxruntime runs the
exported network compared with PyTorch eager on the CPU.

For each design (default resnet50, mobilenet_v2, vit_b_16 at their published 224x224 input):

* export time of onnx, torchscript, exported-program and python (the export alone, its check
  not included), one export per format;
* latency of onnxruntime and PyTorch eager on the same input at batch 1 and 8: the two are
  timed in alternation (interleaved repeats, so load changes hit both), each repeat the median
  of a few calls; the table shows the median and range over repeats and the ratio
  onnxruntime / eager (below 1: onnxruntime is faster).

Both run with one thread (``torch.set_num_threads(1)``, onnxruntime ``intra_op_num_threads=1``):
the machine is shared, and one thread is the comparable setting. The load average is printed
beside every figure: on a loaded machine absolute times are inflated, the interleaved ratio
much less.

    .venv/bin/python benchmarks/export.py [--designs resnet50,mobilenet_v2] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch

import archlab
from archlab.build import build
from archlab.export.eject import eject
from archlab.export.onnx import export_onnx
from archlab.export.script import export_program, export_torchscript

FORMATS = {
    "onnx": (export_onnx, "m.onnx"),
    "torchscript": (export_torchscript, "m.pt"),
    "exported-program": (export_program, "m.pt2"),
    "python": (eject, "py"),
}


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.1f}/{five:.1f}/{fifteen:.1f}"


def export_times(model, design, folder: Path) -> dict[str, float]:
    out = {}
    for fmt, (fn, name) in FORMATS.items():
        start = time.perf_counter()
        fn(model, design, folder / name, check=False)
        out[fmt] = time.perf_counter() - start
        print(f"  export {fmt:<17} {out[fmt]:7.2f} s   ({load_average()})", flush=True)
    return out


def _median_call(fn, calls: int) -> float:
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def latency(model, onnx_path: Path, shape, batch: int, repeats: int, calls: int) -> dict:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    x = torch.randn(batch, *shape)
    feed = {name: x.numpy()}

    def eager():
        with torch.inference_mode():
            model(x)

    def onnxrt():
        session.run(None, feed)

    eager()
    onnxrt()  # warm-up: allocations, first-call graph optimisation
    t_eager, t_ort = [], []
    for i in range(repeats):  # interleaved, alternating which goes first
        pair = (eager, onnxrt) if i % 2 == 0 else (onnxrt, eager)
        for fn in pair:
            (t_eager if fn is eager else t_ort).append(_median_call(fn, calls))
    ratios = [o / e for o, e in zip(t_ort, t_eager, strict=True)]
    return {"eager": t_eager, "ort": t_ort, "ratio": ratios}


def _fmt(values: list[float], scale: float = 1e3, unit: str = "ms") -> str:
    return (f"{statistics.median(values) * scale:8.2f} {unit} "
            f"[{min(values) * scale:.2f}-{max(values) * scale:.2f}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--designs", default="resnet50,mobilenet_v2,vit_b_16")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repeats per batch size")
    parser.add_argument("--calls", type=int, default=3, help="calls per repeat (median taken)")
    parser.add_argument("--batches", default="1,8")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 thread; {load_average()} at start")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.designs.split(","):
            design = archlab.load(name)
            torch.manual_seed(0)
            model = build(design).eval()
            folder = Path(tmp) / name
            folder.mkdir()
            print(f"{name} {tuple(design.input_shape)}, {design.graph.param_count:,} parameters")
            times = export_times(model, design, folder)
            for batch in (int(b) for b in args.batches.split(",")):
                lat = latency(model, folder / "m.onnx", design.input_shape, batch, args.repeats,
                              args.calls)
                line = (f"  batch {batch}: eager {_fmt(lat['eager'])}  onnxruntime {_fmt(lat['ort'])}"
                        f"  ratio ort/eager {statistics.median(lat['ratio']):.2f} "
                        f"[{min(lat['ratio']):.2f}-{max(lat['ratio']):.2f}]   ({load_average()})")
                print(line, flush=True)
                rows.append((name, batch, times, lat))
    print(f"\nsummary ({load_average()} at end)")
    print(f"{'design':<14}{'onnx s':>8}{'script s':>10}{'export s':>10}{'python s':>10}"
          f"{'batch':>7}{'ort/eager':>11}")
    for name, batch, times, lat in rows:
        print(f"{name:<14}{times['onnx']:8.1f}{times['torchscript']:10.1f}"
              f"{times['exported-program']:10.1f}{times['python']:10.1f}{batch:7d}"
              f"{statistics.median(lat['ratio']):11.2f}")


if __name__ == "__main__":
    main()
