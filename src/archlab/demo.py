"""``make demo``: archlab's main job end to end on built-in examples.

1. Describe: load a zoo design (ResNet-18) and a variant of it (half the width, 10 classes,
   64x64 inputs) made with variables, without copying the file; validate both.
2. Build both into plain PyTorch modules, show the variant, save it (weights.safetensors +
   design.yaml) and load it back with identical outputs.
3. Judge, train and diagnose, as those capabilities are present in this build: the analysis of
   the variant, the design review of VGG-19, the sanity checks before training, a short
   training run on real data (mnist5k) with the health monitor, the run's health report, and
   a few seconds of GAN training (a DCGAN pair, samples saved per epoch).

Everything runs on the CPU from data shipped in installed packages (no download).
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import torch
from rich.console import Console

import archlab

from .cli import main as cli

console = Console()


def step(title: str) -> None:
    console.rule(f"[bold]{title}")


def _have(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def run(out: Path) -> int:
    step("1. Describe: a zoo design and a variant of it")
    base = archlab.load("resnet18")
    variant = archlab.load("resnet18", width=32, classes=10, size=64)
    console.print(f"zoo design  : {base}")
    console.print(f"variant     : {variant}   (--set width=32 classes=10 size=64)")
    for d in (base, variant):
        assert d.graph.param_count == sum(n.param_count for n in d.graph.nodes)
    console.print(f"ResNet-18 reproduces its published count: {base.graph.param_count:,} == "
                  f"{archlab.zoo.PUBLISHED['resnet18']:,}")

    step("2. Build, show, save, reload")
    rc = cli(["show", "resnet18", "--set", "width=32", "--set", "classes=10", "--set", "size=64"])
    if rc:
        return rc
    torch.manual_seed(0)
    model = archlab.build(variant).eval()
    folder = archlab.save(model, variant, out / "resnet18_w32")
    again = archlab.load_built(folder).eval()
    x = torch.randn(2, 3, 64, 64)
    same = torch.equal(model(x), again(x))
    console.print(f"saved to {folder}/ (weights.safetensors, design.yaml); reloaded outputs identical: "
                  f"{same}")
    if not same:
        return 1

    if _have("archlab.analysis.command"):
        step("3. Judge before training: analysis")
        rc = cli(["analyze", "resnet18", "--set", "width=32", "--set", "classes=10", "--set",
                  "size=64", "--batch", "32", "--depth", "stage"])
        if rc:
            return rc
    if _have("archlab.review.command"):
        step("4. Design review against the published guidelines")
        cli(["review", "vgg19"])  # findings are expected here: the exit status is not an error
    if _have("archlab.diagnose.command"):
        step("5. Sanity checks before training (mnist_cnn on mnist5k)")
        rc = cli(["check", "mnist_cnn", "--data", "mnist5k"])
        if rc:
            return rc
    if _have("archlab.train.command"):
        step("6. Train on real data (mnist5k) with sound defaults and the health monitor")
        from .train import train
        from .train.command import print_summary

        # five epochs of one-cycle Adam with 2-pixel shifts: about 97-98% test accuracy in
        # well under a minute on two cores (benchmarks/training.py trains 12 epochs to >= 98%)
        run_ = train("mnist_cnn", "mnist5k", epochs=5, out=str(out / "runs"), batch=32, lr=3e-3,
                     schedule="onecycle", augment="shift=2")
        print_summary(run_)
        if _have("archlab.diagnose.command"):
            step("7. Diagnose the run: health events, evidence, plots")
            rc = cli(["diagnose", str(run_.path)])
            if rc not in (0, 1):  # 1 = problems found: a finding, not a failure of the demo
                return rc
        if _have("archlab.train.generative"):
            step("8. Generative: a small DCGAN pair on 640 mnist5k digits, one short epoch")
            from .train.data import ArrayData, load_data

            digits = load_data("mnist5k")
            few = ArrayData(digits.x[:640], digits.y[:640], digits.task, digits.classes, "mnist5k")
            # judge=False: the judge classifier trains for minutes the first time (then cached);
            # `archlab train dcgan_mnist_generator --discriminator dcgan_mnist_discriminator
            # --task gan` judges every epoch
            gan = train("dcgan_mnist_generator", few, task="gan", discriminator="dcgan_mnist_discriminator",
                        variables={"ngf": 16}, d_variables={"ndf": 16}, epochs=1, judge=False,
                        progress=False, split=(0.9, 0.05, 0.05), out=str(out / "generative"))
            row = gan.metrics[-1]
            console.print(f"D loss {row['train_d_loss']:.3f}, G loss {row['train_g_loss']:.3f}, "
                          f"D(x) {row['train_d_real']:.2f}, D(G(z)) {row['train_d_fake']:.2f}; "
                          f"fixed-noise samples: {gan.path / 'samples' / 'epoch_000.png'}")
            health = gan.summary.get("health") or {}
            console.print("generative health: " + (", ".join(e["detector"] for e in health.get("events", []))
                                                   or "no problems found"))
    return 0


def main() -> None:
    """``python -m archlab.demo [OUT]``: outputs (saved model, run folder, plots) go to OUT,
    by default ``out/demo``, so they can be looked at afterwards."""
    started = time.perf_counter()
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("out") / "demo"
    out.mkdir(parents=True, exist_ok=True)
    try:
        rc = run(out)
    except archlab.ArchlabError as exc:
        console.print(f"[red]error: {exc}")
        rc = exc.exit_code
    console.rule(f"demo finished in {time.perf_counter() - started:.0f} s; outputs in {out}/"
                 if rc == 0 else f"demo failed (status {rc})")
    sys.exit(rc)


if __name__ == "__main__":
    main()
