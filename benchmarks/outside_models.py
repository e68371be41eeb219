"""The outside test: archlab's analysis on models nobody here wrote (torchvision and timm, random
weights, their usual input sizes), against PyTorch's own counters and published figures.

Per model, in a process of its own (one PyTorch thread, niced, with a time limit):
  * parameters: archlab's count vs sum(p.numel());
  * multiply-adds: archlab's per-sample figure (and its weights-only figure, the named
    convention) vs torch.utils.flop_counter.FlopCounterMode // 2 at batch 1 (run on meta
    tensors; where the module makes CPU tensors, a real CPU forward with the math attention
    backend, since the counter has no formula for the CPU flash kernel), and vs torchvision's
    published GFLOPS (``_ops`` in its weight metadata, read offline: no weight is downloaded);
  * failures of the default ``archlab.analyze(model, input_shape)``;
  * time of the default analysis (memory included) vs fvcore's FlopCountAnalysis, interleaved
    repeats, median; and the first analysis in a fresh process (imports and first-call costs);
  * for 10 models: peak training memory of one Adam step vs the profiler's allocation events,
    and saved activations vs autograd's own (saved_tensors_hooks), on the CPU at batch 2.

It is a benchmark, not a CI test: it needs its own environment (several GB), made on first use
in .venv-outside with torch 2.14.1, torchvision 0.29.1, timm and fvcore (the project's .venv
keeps its own torch). Run: ``make bench-outside`` or
``python3 benchmarks/outside_models.py [--jobs 2] [--limit 240] [--only NAME ...] [--repeats N]``.
Results: out/outside/*.json per model, out/outside/summary.md; uptime printed beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv-outside"
PY = VENV / "bin" / "python"
PINS = ["torch==2.14.1", "torchvision==0.29.1", "timm", "fvcore"]
LIGHT = ["numpy", "pyyaml", "pydantic", "rich", "safetensors", "matplotlib"]

# at least one model of each timm family, small variants (random weights, default input size)
TIMM = """resnet18 resnet50d resnetv2_50 resnext26ts seresnext26d_32x4d res2net50_26w_4s resnest14d
skresnet18 regnetx_002 regnety_002 regnetz_b16 efficientnet_b0 efficientnetv2_rw_t
tf_efficientnet_lite0 mobilenetv2_100 mobilenetv3_small_100 mobilenetv4_conv_small ghostnet_100
ghostnetv2_100 mnasnet_small rexnet_100 hrnet_w18_small dla34 dpn48b densenet121 vgg11
inception_v3 inception_v4 xception41 cspresnet50 cspdarknet53 darknet17 vit_tiny_patch16_224
deit_tiny_patch16_224 deit3_small_patch16_224 swin_tiny_patch4_window7_224 swinv2_cr_tiny_ns_224
swinv2_tiny_window8_256 cait_xxs24_224 coat_lite_tiny convit_tiny crossvit_tiny_240 levit_128s
mvitv2_tiny pit_ti_224 tnt_s_patch16_224 twins_svt_small xcit_nano_12_p16_224 pvt_v2_b0
poolformer_s12 poolformerv2_s12 convnext_atto convnextv2_atto efficientformer_l1
efficientformerv2_s0 edgenext_xx_small mobilevit_xxs mobilevitv2_050 efficientvit_m0
efficientvit_b0 fastvit_t8 repvgg_a0 repvit_m0_9 selecsls42b sequencer2d_s resmlp_12_224
gmlp_ti16_224 gcvit_xxtiny maxvit_nano_rw_256 coatnet_nano_rw_224 davit_tiny focalnet_tiny_srf
nest_tiny volo_d1_224 visformer_tiny ese_vovnet19b_dw tresnet_m nf_resnet26 dm_nfnet_f0 gernet_s
lambda_resnet26t halonet26t botnet26t_256 hgnetv2_b0 hiera_tiny_224 eva02_tiny_patch14_224
flexivit_small inception_next_tiny rdnet_tiny starnet_s1 tiny_vit_5m_224 vitamin_small_224
mambaout_femto lcnet_050 tinynet_e hardcorenas_a mixnet_s fbnetc_100 spnasnet_100 semnasnet_075
cs3darknet_focus_s legacy_seresnet18 eca_resnet33ts sebotnet33ts_256 haloregnetz_b
fasternet_t0 mobileone_s0""".split()

# training memory and saved activations are measured for real on these (CPU, batch 2)
MEMORY = ["tv:resnet18", "tv:resnet50", "tv:mobilenet_v2", "tv:efficientnet_b0", "tv:vit_b_16",
          "tv:convnext_tiny", "tvseg:deeplabv3_resnet50", "tv:densenet121", "tv:swin_t",
          "timm:mobilenetv4_conv_small"]
EXTRA = ["tvseg:deeplabv3_resnet50"]
ISSUE = ["tnt_s_patch16_224", "mvitv2_tiny", "efficientvit_m0", "efficientvit_b0",
         "edgenext_xx_small", "xcit_nano_12_p16_224", "convit_tiny", "mobilenetv4_conv_small",
         "levit_128s", "rexnet_100", "resnest14d", "skresnet18", "sequencer2d_s", "inception_v3"]


# ---- the environment ---------------------------------------------------------------------
def ensure_environment() -> None:
    if PY.exists() and subprocess.run([str(PY), "-c", "import torch, torchvision, timm, fvcore, archlab"],
                                      capture_output=True).returncode == 0:
        return
    print(f"creating {VENV} ({' '.join(PINS)}; several GB, minutes)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [str(PY), "-m", "pip", "install", "-q"]
    subprocess.run(pip + PINS, check=True)
    subprocess.run(pip + LIGHT, check=True)
    subprocess.run(pip + ["--no-deps", "-e", str(ROOT)], check=True)


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} ({os.cpu_count()} cores)"


# ---- one model (runs inside .venv-outside) -------------------------------------------------
def build(spec: str):
    """(model with random weights, per-sample input shape, published GMACs or None)."""
    kind, _, name = spec.partition(":")
    if kind == "tv":
        import torchvision

        weights = list(torchvision.models.get_model_weights(name))
        smallest = min(weights, key=lambda w: w.transforms.keywords.get("crop_size", 224))
        side = smallest.transforms.keywords.get("crop_size", 224)
        model = torchvision.models.get_model(name, weights=None)
        return model, (3, side, side), smallest.meta.get("_ops")
    if kind == "tvseg":
        import torchvision

        model = torchvision.models.get_model(name, weights=None, weights_backbone=None)
        return model, (3, 224, 224), None
    import timm

    model = timm.create_model(name, pretrained=False)
    return model, tuple(model.pretrained_cfg.get("input_size", (3, 224, 224))), None


def flop_counter_macs(model, shape) -> tuple[int, str]:
    """PyTorch's own counter at batch 1 (FLOPs // 2): on meta tensors, else a real CPU forward
    with the math attention backend (the counter has no formula for the CPU flash kernel)."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    state = {k: torch.empty_like(v, device="meta") for k, v in
             [*model.named_parameters(), *model.named_buffers()]}
    counter = FlopCounterMode(display=False)
    try:
        with counter, torch.no_grad():
            torch.func.functional_call(model, state, (torch.empty(1, *shape, device="meta"),))
        return counter.get_total_flops() // 2, "meta"
    except Exception:  # noqa: BLE001 - a module that makes CPU tensors in its forward
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
            model(torch.randn(1, *shape))
        return counter.get_total_flops() // 2, "cpu (math attention)"


def measured_memory(model, shape, batch: int) -> tuple[int, int]:
    """(peak bytes of one Adam step from the profiler's allocation events + what exists before
    it, bytes autograd saves in a real training forward deduplicated by storage)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    x = torch.randn(batch, *shape)
    model.train()
    weights = {t.untyped_storage()._cdata for t in [*model.parameters(), *model.buffers()]}
    saved: dict[int, int] = {}

    def pack(t):
        key = t.untyped_storage()._cdata
        if key not in weights:
            saved[key] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x)
    del out
    opt = torch.optim.Adam(model.parameters())

    def loss(out):
        outs = out.values() if isinstance(out, dict) else (out if isinstance(out, tuple | list) else [out])
        return sum(o.float().sum() for o in outs if isinstance(o, torch.Tensor))

    def step():
        opt.zero_grad(set_to_none=True)
        loss(model(x)).backward()
        opt.step()

    step()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]")
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    params = list(model.parameters())
    before = (3 * sum(p.numel() * p.element_size() for p in params) + 4 * len(params)
              + sum(b.numel() * b.element_size() for b in model.buffers()) + x.numel() * x.element_size())
    return before + peak, sum(saved.values())


def worker(spec: str, out: Path, memory: bool, repeats: int | None = None) -> None:
    import statistics
    import warnings

    import torch

    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    result: dict = {"model": spec, "torch": torch.__version__}

    def save() -> None:
        out.write_text(json.dumps(result, indent=1))

    t = time.perf_counter()
    model, shape, published = build(spec)
    model.eval()
    result.update(input=list(shape), published_gmacs=published, build_s=time.perf_counter() - t,
                  numel=sum(p.numel() for p in model.parameters()))
    save()
    from archlab.analysis import analyze
    from archlab.analysis.meta_kernels import clear_memos

    t = time.perf_counter()
    try:
        a = analyze(model, shape)
    except Exception as exc:  # noqa: BLE001 - recorded as the failure it is
        result["failure"] = f"{type(exc).__name__}: {exc}"[:600]
        save()
        return
    result["archlab_first_s"] = time.perf_counter() - t
    result.update(params=a.totals["params"], params_in_ops=a.totals["params_in_ops"],
                  macs=a.totals["multiply_adds"], weights_only_macs=a.totals["weights_only_multiply_adds"],
                  elementwise=a.totals["elementwise"], notes=a.notes,
                  attention_backends=a.memory.attention_backends if a.memory else {})
    save()
    result["flop_counter_macs"], result["flop_counter_on"] = flop_counter_macs(model, shape)
    save()

    from fvcore.nn import FlopCountAnalysis

    x = torch.randn(1, *shape)

    def ours() -> None:
        clear_memos()  # the first analysis of this network's shapes
        analyze(model, shape)

    def fvcore() -> None:
        f = FlopCountAnalysis(model, x)
        f.unsupported_ops_warnings(False)
        f.uncalled_modules_warnings(False)
        f.tracer_warnings("none")
        f.total()

    try:
        t = time.perf_counter()
        fvcore()  # warm-up: its first call's costs
        first_fv = time.perf_counter() - t
        if repeats is None:
            repeats = 2 if first_fv < 5 else 1
        ours_t, fv_t = [], []
        for _ in range(repeats):  # interleaved: drift of the shared machine hits both alike
            t = time.perf_counter()
            ours()
            ours_t.append(time.perf_counter() - t)
            t = time.perf_counter()
            fvcore()
            fv_t.append(time.perf_counter() - t)
        result.update(archlab_s=statistics.median(ours_t), fvcore_s=statistics.median(fv_t),
                      archlab_range=[min(ours_t), max(ours_t)], fvcore_range=[min(fv_t), max(fv_t)],
                      repeats=repeats, load=load_average())
    except Exception as exc:  # noqa: BLE001
        result["fvcore_failure"] = f"{type(exc).__name__}: {exc}"[:300]
    save()
    if memory:
        batch = 2
        m = analyze(model, shape, batch=batch, optimizer="adam").memory
        peak, saved = measured_memory(model, shape, batch)
        result.update(memory_batch=batch, predicted_peak=m.peak_training_bytes, measured_peak=peak,
                      predicted_saved=m.saved_activation_bytes, measured_saved=saved,
                      memory_backends=m.attention_backends)
        save()


# ---- the sweep and its tables --------------------------------------------------------------
def model_list(only: list[str] | None) -> list[str]:
    if only:
        return only
    listing = subprocess.run([str(PY), "-c", "import torchvision; print(' '.join(torchvision.models."
                              "list_models(module=torchvision.models)))"],
                             capture_output=True, text=True, check=True).stdout.split()
    everything = [f"tv:{n}" for n in listing] + EXTRA + [f"timm:{n}" for n in TIMM]
    # the measured-memory models and the ones named in issue 16 first: a sweep cut short by
    # its time still covers them
    first = MEMORY + [f"timm:{n}" for n in ISSUE] + ["tv:inception_v3"]
    tv = [s for s in everything if not s.startswith("timm:")]
    timm = [s for s in everything if s.startswith("timm:")]
    mixed = [s for pair in zip(tv, timm[:len(tv)], strict=False) for s in pair] + tv[len(timm):] + timm[len(tv):]
    return list(dict.fromkeys(first + mixed))  # both families alike, should the sweep be cut short


def finished(spec: str, out: Path) -> bool:
    """A model whose record is complete (a resumed sweep skips it)."""
    path = out / (spec.replace(":", "__") + ".json")
    if not path.exists():
        return False
    r = json.loads(path.read_text())
    if "failure" in r:
        return True
    timed = "archlab_s" in r or "fvcore_failure" in r
    return timed and ("measured_peak" in r or spec not in MEMORY)


def run_sweep(specs: list[str], out: Path, jobs: int, limit: int, resume: bool,
              repeats: int | None = None) -> None:
    pending = [s for s in specs if not (resume and finished(s, out))]
    running: list[tuple[subprocess.Popen, str, float]] = []
    while pending or running:
        while pending and len(running) < jobs:
            spec = pending.pop(0)
            path = out / (spec.replace(":", "__") + ".json")
            cmd = ["nice", "-n", "10", "timeout", str(limit), str(PY), __file__, "--worker", spec,
                   "--out", str(path)] + (["--memory"] if spec in MEMORY else []) + \
                (["--repeats", str(repeats)] if repeats else [])
            running.append((subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                             stderr=open(path.with_suffix(".log"), "w")), spec,
                            time.perf_counter()))
        time.sleep(0.5)
        for proc, spec, started in list(running):
            if proc.poll() is not None:
                running.remove((proc, spec, started))
                print(f"  {spec:44s} rc {proc.returncode:3d} {time.perf_counter() - started:6.1f} s  "
                      f"{load_average()}", flush=True)


def _rel(a: float, b: float) -> float:
    return (a - b) / b if b else 0.0


def tables(out: Path, specs: list[str], started: str) -> str:
    rows = []
    for spec in specs:
        path = out / (spec.replace(":", "__") + ".json")
        r = json.loads(path.read_text()) if path.exists() else {"model": spec}
        log = path.with_suffix(".log")
        if not path.exists() and not log.exists():
            continue  # not reached: the sweep was cut short
        if "params" not in r and "failure" not in r:
            tail = log.read_text().strip().splitlines()[-1:] if log.exists() else []
            r["failure"] = "did not finish (time limit or crash) " + " ".join(tail)[:200]
        rows.append(r)
    ok = [r for r in rows if "params" in r]
    counted = [r for r in ok if "flop_counter_macs" in r]
    reached = [r["model"] for r in rows]
    lines = [f"# Outside models: {len(rows)} of {len(specs)} models reached "
             f"({sum(s.startswith('tv') for s in reached)} torchvision, "
             f"{sum(s.startswith('timm') for s in reached)} timm)", "",
             f"started with {started}; tables written with {load_average()}", ""]
    exact_params = sum(r["params"] == r["numel"] for r in ok)
    within = [r for r in counted if abs(_rel(r["macs"], r["flop_counter_macs"])) <= 1e-3]
    by_convention = [r for r in counted if r not in within and abs(
        _rel(r["macs"] + r["weights_only_macs"], r["flop_counter_macs"])) <= 1e-3]
    published = [r for r in ok if r.get("published_gmacs")]
    pub_ok = [r for r in published if abs(r["macs"] / 1e9 - r["published_gmacs"]) <= 5e-4 + 1e-3 * r["published_gmacs"]]
    timed = [r for r in ok if "archlab_s" in r]
    faster = [r for r in timed if r["archlab_s"] < r["fvcore_s"]]
    ratios = sorted(r["archlab_s"] / r["fvcore_s"] for r in timed)
    lines += ["## Summary", "", "| check | result |", "|---|---|",
              f"| default analyze() ran | {len(ok)}/{len(rows)} |",
              f"| params == sum(numel) | {exact_params}/{len(ok)} |",
              f"| multiply-adds within 0.1% of FlopCounterMode//2 | {len(within)}/{len(counted)} |",
              f"| ... differing only by the weights-only convention (per-sample + weights-only within 0.1%) | {len(by_convention)}/{len(counted)} |",
              f"| multiply-adds vs torchvision's published GFLOPS (3 decimals) | {len(pub_ok)}/{len(published)} |",
              f"| faster than fvcore (1 thread, median of interleaved repeats) | {len(faster)}/{len(timed)} |"]
    if ratios:
        lines.append(f"| archlab time / fvcore time: median, worst | {ratios[len(ratios) // 2]:.2f}, {ratios[-1]:.2f} |")
    firsts = sorted(r["archlab_first_s"] for r in ok if "archlab_first_s" in r)
    if firsts:
        lines.append(f"| first analysis in a fresh process (s): median, worst | {firsts[len(firsts) // 2]:.2f}, {firsts[-1]:.2f} |")
    lines += ["", "## Failures", ""]
    lines += [f"- {r['model']}: {r['failure']}" for r in rows if "failure" in r] or ["- none"]
    lines += [f"- {r['model']} (fvcore): {r['fvcore_failure']}" for r in ok if "fvcore_failure" in r]
    worst = sorted(counted, key=lambda r: -abs(_rel(r["macs"], r["flop_counter_macs"])))[:15]
    lines += ["", "## Largest multiply-add differences from FlopCounterMode//2", "",
              "| model | input | archlab | weights-only | FlopCounterMode//2 (on) | per-sample diff | with weights-only |",
              "|---|---|---|---|---|---|---|"]
    for r in worst:
        lines.append(f"| {r['model']} | {'x'.join(map(str, r['input']))} | {r['macs']:,} | {r['weights_only_macs']:,} | "
                     f"{r['flop_counter_macs']:,} ({r['flop_counter_on']}) | {_rel(r['macs'], r['flop_counter_macs']):+.4%} | "
                     f"{_rel(r['macs'] + r['weights_only_macs'], r['flop_counter_macs']):+.4%} |")
    off = sorted(published, key=lambda r: -abs(_rel(r["macs"] / 1e9, r["published_gmacs"])))[:8]
    lines += ["", "## Largest differences from torchvision's published GFLOPS", "",
              "| model | archlab G | published G | diff |", "|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['macs'] / 1e9:.3f} | {r['published_gmacs']:.3f} | "
              f"{_rel(r['macs'] / 1e9, r['published_gmacs']):+.3%} |" for r in off]
    slow = sorted(timed, key=lambda r: -r["archlab_s"] / r["fvcore_s"])[:12]
    lines += ["", "## Slowest against fvcore (archlab default analysis incl. memory vs fvcore flop count)", "",
              "| model | archlab s (range) | fvcore s (range) | ratio | first analysis s | load when timed |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['archlab_s']:.3f} ({r['archlab_range'][0]:.3f}-{r['archlab_range'][1]:.3f}) | "
              f"{r['fvcore_s']:.3f} ({r['fvcore_range'][0]:.3f}-{r['fvcore_range'][1]:.3f}) | "
              f"{r['archlab_s'] / r['fvcore_s']:.2f} | {r['archlab_first_s']:.2f} | {r.get('load', '-')} |"
              for r in slow]
    mem = [r for r in ok if "measured_peak" in r]
    lines += ["", "## Training memory on the CPU (Adam, batch 2) and saved activations", "",
              "| model | predicted peak | measured peak | ratio | predicted saved | autograd saved | ratio | attention |",
              "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['predicted_peak'] / 2**20:.1f} MiB | {r['measured_peak'] / 2**20:.1f} MiB | "
              f"{r['predicted_peak'] / r['measured_peak']:.3f} | {r['predicted_saved'] / 2**20:.1f} MiB | "
              f"{r['measured_saved'] / 2**20:.1f} MiB | {r['predicted_saved'] / max(1, r['measured_saved']):.3f} | "
              f"{', '.join(r.get('memory_backends') or {}) or '-'} |" for r in mem]
    notes = [r for r in ok if r.get("notes")]
    lines += ["", "## Notes the analysis gave (first of each model)", ""]
    lines += [f"- {r['model']}: {r['notes'][0]}" for r in notes] or ["- none"]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=ROOT / "out" / "outside")
    p.add_argument("--memory", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--only", nargs="+", help="model specs: tv:NAME, tvseg:NAME, timm:NAME")
    p.add_argument("--jobs", type=int, default=2, help="models analysed at once (default 2)")
    p.add_argument("--limit", type=int, default=240, help="seconds per model (default 240)")
    p.add_argument("--tables-only", action="store_true", help="print the tables of a finished run")
    p.add_argument("--resume", action="store_true", help="skip models already recorded in --out")
    p.add_argument("--repeats", type=int, help="interleaved timing repeats per model (default 2, "
                   "1 where fvcore takes over 5 s)")
    args = p.parse_args()
    if args.worker:
        worker(args.worker, args.out, args.memory, args.repeats)
        return
    ensure_environment()
    args.out.mkdir(parents=True, exist_ok=True)
    specs = model_list(args.only)
    started = load_average()
    if not args.tables_only:
        print(f"{len(specs)} models, {args.jobs} at a time, {args.limit} s each at most; {started}",
              flush=True)
        run_sweep(specs, args.out, args.jobs, args.limit, args.resume, args.repeats)
    text = tables(args.out, specs, started)
    (args.out / "summary.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
