"""Speed and agreement of archlab's analysis, side by side in one run, ratios printed.

1. Full traced analysis (counts per op/block/stage, memory access, saved activations, peak
   inference and training memory; everything but latency) of ResNet-50 at 224x224 from a plain
   PyTorch module, against fvcore's FlopCountAnalysis (flops only) on the same model, interleaved.
2. Analytic analysis throughput of ResNet-50-sized designs: load + resolve + analyse from a dict
   with a varied width (what a search screening thousands of variants does), and analyse only.
3. Counts of torchinfo, fvcore and ptflops beside archlab's for the same models (why they differ:
   docs/analysis.md).
4. When a CUDA device is present: predicted peak training memory against
   torch.cuda.max_memory_allocated for one Adam step.

Run: .venv/bin/python benchmarks/analysis_speed.py [--quick]
Figures depend on the machine; on a shared machine read the ratios, not the absolute times.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from pathlib import Path

import torch
import yaml

import archlab
from archlab.analysis import analyze, format_bytes
from archlab.analysis.meta_kernels import clear_memos
from archlab.analysis.reference import mobilenet_v2, resnet18, resnet50


def _median_time(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def full_analysis_vs_fvcore(repeats: int) -> None:
    from fvcore.nn import FlopCountAnalysis

    torch.manual_seed(0)
    model = resnet50().eval()
    x = torch.randn(1, 3, 224, 224)

    def ours():
        return analyze(model, (3, 224, 224), batch=1, optimizer="adam")

    def fvcore():
        f = FlopCountAnalysis(model, x)
        f.unsupported_ops_warnings(False)
        f.uncalled_modules_warnings(False)
        return f.total()

    def ours_cold():
        # the meta-kernel memo (analysis/trace.py) emptied: the first analysis of a network
        clear_memos()
        return ours()

    ours(), fvcore()  # warm-up: imports and first-call costs of both
    a_times, c_times, f_times = [], [], []
    for _ in range(repeats):  # interleaved, so machine drift hits all alike
        c_times += _median_time(ours_cold, 1)
        a_times += _median_time(ours, 1)
        f_times += _median_time(fvcore, 1)
    a, c, f = statistics.median(a_times), statistics.median(c_times), statistics.median(f_times)
    print("1. ResNet-50 at 224x224, batch 1, module on the CPU")
    print(f"   archlab full analysis, first of its shapes (cold memo):  {c * 1e3:8.1f} ms")
    print(f"   archlab full analysis, repeated (warm memo):             {a * 1e3:8.1f} ms")
    print(f"   fvcore FlopCountAnalysis (flops only, real forward):     {f * 1e3:8.1f} ms")
    print(f"   ratio fvcore / archlab: cold {f / c:.2f}x, warm {f / a:.2f}x  "
          f"({'archlab faster' if c < f else 'archlab SLOWER'} even cold)")


def analytic_throughput(count: int) -> None:
    raw = yaml.safe_load((Path(archlab.__file__).parent / "zoo" / "resnet50.yaml").read_text())
    widths = [32 + (i % 64) for i in range(count)]
    t = time.perf_counter()
    for w in widths:
        analyze(archlab.load(raw, width=w), memory=False)
    end_to_end = count / (time.perf_counter() - t)
    designs = [archlab.load(raw, width=w) for w in widths[: max(10, count // 4)]]
    t = time.perf_counter()
    for d in designs:
        analyze(d, memory=False)
    analyse_only = len(designs) / (time.perf_counter() - t)
    t = time.perf_counter()
    for w in widths[: max(10, count // 4)]:
        archlab.load(raw, width=w)
    load_only = max(10, count // 4) / (time.perf_counter() - t)
    print(f"2. Analytic analysis of ResNet-50-sized designs (width 32..95), {count} designs")
    print(f"   load + resolve + analyse from a dict: {end_to_end:7.1f} designs/s (target 200)")
    print(f"   load + resolve only:                  {load_only:7.1f} designs/s")
    print(f"   analyse a resolved design only:       {analyse_only:7.1f} designs/s")


def _human(n: float | None) -> str:
    return "-" if n is None else f"{n / 1e9:.3f} G" if n >= 1e8 else f"{n / 1e6:.3f} M"


def counts_side_by_side() -> None:
    print("3. Counts beside torchinfo, fvcore, ptflops (batch 1, 224x224)")
    print(f"   {'model':13} {'tool':9} {'params':>11} {'multiply-adds':>14} {'elementwise':>12}  note")
    for name, factory in (("resnet18", resnet18), ("resnet50", resnet50), ("mobilenet_v2", mobilenet_v2)):
        torch.manual_seed(0)
        model = factory().eval()
        x = torch.randn(1, 3, 224, 224)
        a = analyze(model, (3, 224, 224), batch=1)
        rows = [("archlab", a.totals["params"], a.totals["multiply_adds"], a.totals["elementwise"],
                 f"saved activations {format_bytes(a.memory.saved_activation_bytes)}")]
        try:
            from torchinfo import summary

            s = summary(model, input_size=(1, 3, 224, 224), verbose=0)
            rows.append(("torchinfo", s.total_params, s.total_mult_adds, None,
                         f"fwd/bwd pass size {format_bytes(s.total_output_bytes)}"))
        except Exception as exc:  # a tool failing is a figure too
            rows.append(("torchinfo", None, None, None, f"failed: {exc}"))
        try:
            from fvcore.nn import FlopCountAnalysis, parameter_count

            f = FlopCountAnalysis(model, x)
            f.unsupported_ops_warnings(False)
            f.uncalled_modules_warnings(False)
            total = f.total()
            skipped = sum(f.unsupported_ops().values())
            rows.append(("fvcore", parameter_count(model)[""], total, None,
                         f"'flops' = MACs incl. BN/pool; {skipped} ops uncounted"))
        except Exception as exc:
            rows.append(("fvcore", None, None, None, f"failed: {exc}"))
        try:
            from ptflops import get_model_complexity_info

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                macs, params = get_model_complexity_info(model, (3, 224, 224), as_strings=False,
                                                         print_per_layer_stat=False, verbose=False)
            rows.append(("ptflops", params, macs, None, "MACs incl. BN/ReLU/pool/bias"))
        except Exception as exc:
            rows.append(("ptflops", None, None, None, f"failed: {exc}"))
        base = a.totals["multiply_adds"]
        for tool, params, macs, elementwise, note in rows:
            ratio = f" ({macs / base:.4f}x)" if macs else ""
            print(f"   {name:13} {tool:9} {params if params is not None else '-':>11} "
                  f"{_human(macs):>14}{ratio:11} {_human(elementwise):>12}  {note}")


def cuda_memory() -> None:
    if not torch.cuda.is_available():
        print("4. CUDA peak memory: no CUDA device here; skipped")
        return
    torch.manual_seed(0)
    model = resnet18().cuda()
    batch = 64
    x = torch.randn(batch, 3, 224, 224, device="cuda")
    opt = torch.optim.Adam(model.parameters())

    def step():
        opt.zero_grad(set_to_none=True)
        model(x).sum().backward()
        opt.step()

    step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    step()
    torch.cuda.synchronize()
    measured = torch.cuda.max_memory_allocated()
    predicted = analyze(model, (3, 224, 224), batch=batch, device="cuda").memory.peak_training_bytes
    print(f"4. ResNet-18 batch {batch} Adam step on {torch.cuda.get_device_name()}: predicted "
          f"{format_bytes(predicted)}, measured {format_bytes(measured)}, "
          f"ratio {predicted / measured:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    full_analysis_vs_fvcore(3 if args.quick else 5)
    analytic_throughput(40 if args.quick else 200)
    counts_side_by_side()
    cuda_memory()


if __name__ == "__main__":
    main()
