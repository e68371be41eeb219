"""Generative benchmarks (issue 12), on this machine's CPUs, with the load average beside each figure.

1. DCGAN-style pair at 28x28 (zoo: dcgan_mnist_generator + dcgan_mnist_discriminator, DCGAN's
   Adam 2e-4 / beta1 0.5, ns loss) on mnist5k, epoch by epoch until a wall-time budget
   (default 600 s): classifier-FID on mnist5k, precision/recall, the share of samples the judge
   labels with probability >= 0.9, classes covered and the smallest class share, wall time.
   Target: >= 90% of samples confidently classified with all 10 classes at >= 5% each within
   10 minutes. The real-vs-real classifier-FID (1000 training images vs the 500 test images the
   generator is compared with) is printed as the floor at these sample sizes.
2. vae_mnist (zoo, as it is): test-split ELBO (nats per image) by epoch (validation split each
   epoch, test split at the end), wall time.
3. Denoising autoencoder (autoencoder_mnist, --corrupt mask=0.5): test reconstruction error
   (per-pixel MSE against the clean image) vs the corruption's own error.

Usage: ``python benchmarks/generative.py [--budget 600] [--vae-epochs 8] [--dae-epochs 8]``
One run of each (the machine is shared; a repeat would double the wall time): the figures are
single measurements, not medians.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch
from lightning.pytorch.callbacks import Callback

import archlab
from archlab.judge import Judge, frechet_distance


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.1f}/{five:.1f}/{fifteen:.1f} on {os.cpu_count()} cores"


class Budget(Callback):
    """Stop after the epoch during which the wall-time budget ran out."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.t0 = seconds, time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if time.perf_counter() - self.t0 >= self.seconds:
            trainer.should_stop = True


def gan(budget: float, out: str, judge: Judge) -> None:
    print(f"\n1. DCGAN pair on mnist5k, budget {budget:.0f} s; {load()}", flush=True)
    t0 = time.perf_counter()
    run = archlab.train("dcgan_mnist_generator", "mnist5k", task="gan",
                        discriminator="dcgan_mnist_discriminator", epochs=100, batch=64,
                        split=(0.8, 0.1, 0.1), progress=False, out=out, judge=True,
                        callbacks=[Budget(budget)])
    wall = time.perf_counter() - t0
    print(f"{'epoch':>5} {'wall s':>7} {'cFID':>7} {'prec':>5} {'recall':>6} {'conf>=0.9':>9} "
          f"{'classes':>7} {'min share':>9} {'spread':>6}")
    elapsed, reached = 0.0, None
    for row in run.metrics:
        elapsed += float(row["seconds"])
        ok = row.get("val_confident_share", 0) >= 0.9 and row.get("val_min_class_share", 0) >= 0.05
        if ok and reached is None:
            reached = (row["epoch"], elapsed)
        print(f"{row['epoch']:5d} {elapsed:7.0f} {row.get('val_classifier_fid', float('nan')):7.2f} "
              f"{row.get('val_precision', float('nan')):5.2f} {row.get('val_recall', float('nan')):6.2f} "
              f"{row.get('val_confident_share', float('nan')):9.3f} {row.get('val_classes_covered', 0):7.0f} "
              f"{row.get('val_min_class_share', float('nan')):9.3f} {row.get('val_sample_spread', float('nan')):6.2f}")
    t = run.test_metrics
    print(f"final ({t.get('samples')} samples vs {t.get('real_samples')} test images): classifier-FID "
          f"{t.get('classifier_fid', float('nan')):.2f}, precision {t.get('precision', float('nan')):.2f}, "
          f"recall {t.get('recall', float('nan')):.2f}, confident {t.get('confident_share', float('nan')):.3f}, "
          f"classes {t.get('classes_covered')}, min class share {t.get('min_class_share', float('nan')):.3f}")
    verdict = f"reached at epoch {reached[0]} after {reached[1]:.0f} s" if reached else "not reached"
    print(f"target (>= 90% confident, every class >= 5%): {verdict}; "
          f"total wall {wall:.0f} s (judge evaluation included); {load()}")
    print(f"run folder: {run.path}", flush=True)
    data = archlab.train.load_data("mnist5k")
    splits = run.splits
    # 1000 training images spread over the split (mnist5k is sorted by class)
    real_train = data.x[torch.as_tensor(splits.train)[torch.linspace(0, len(splits.train) - 1, 1000).long()]]
    real_test = data.x[torch.as_tensor(splits.test)]
    floor = frechet_distance(judge.features(real_train)[0].double().numpy(),
                             judge.features(real_test)[0].double().numpy())
    print(f"real-vs-real classifier-FID floor (1000 train vs {len(real_test)} test images): {floor:.2f}")


def vae(epochs: int, out: str) -> None:
    print(f"\n2. vae_mnist on mnist5k, {epochs} epochs; {load()}", flush=True)
    t0 = time.perf_counter()
    run = archlab.train("vae_mnist", "mnist5k", task="vae", epochs=epochs, progress=False, out=out,
                        judge=True, judge_samples=1000)
    wall = time.perf_counter() - t0
    elapsed = 0.0
    print(f"{'epoch':>5} {'wall s':>7} {'val ELBO':>9} {'recon':>7} {'KL':>6}")
    for row in run.metrics:
        elapsed += float(row["seconds"])
        print(f"{row['epoch']:5d} {elapsed:7.0f} {row['val_elbo']:9.2f} {row['val_recon']:7.2f} {row['val_kl']:6.2f}")
    t = run.test_metrics
    print(f"test ELBO {t['elbo']:.2f} nats/image (recon {t['recon']:.2f} + KL {t['kl']:.2f}); prior samples: "
          f"classifier-FID {t.get('classifier_fid', float('nan')):.2f}, confident {t.get('confident_share', float('nan')):.3f}, "
          f"classes {t.get('classes_covered')}; wall {wall:.0f} s; {load()}", flush=True)


def dae(epochs: int, out: str) -> None:
    print(f"\n3. denoising autoencoder_mnist, --corrupt mask=0.5, {epochs} epochs; {load()}", flush=True)
    t0 = time.perf_counter()
    run = archlab.train("autoencoder_mnist", "mnist5k", task="autoencoder", corrupt="mask=0.5", epochs=epochs,
                        progress=False, out=out)
    wall = time.perf_counter() - t0
    t = run.test_metrics
    print(f"test per-pixel MSE (images in [0, 1]): reconstruction {t['mse']:.4f} vs the corrupted input's "
          f"{t['corruption_mse']:.4f} (ratio {t['mse'] / t['corruption_mse']:.2f}); wall {wall:.0f} s; {load()}",
          flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=600.0)
    ap.add_argument("--vae-epochs", type=int, default=8)
    ap.add_argument("--dae-epochs", type=int, default=8)
    ap.add_argument("--skip", default="", help="comma list of gan,vae,dae to skip")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 2))
    out = args.out or tempfile.mkdtemp(prefix="archlab-generative-")
    print(f"generative benchmark, torch threads {torch.get_num_threads()}; {load()}")
    t0 = time.perf_counter()
    judge = Judge.for_data("mnist5k")
    print(f"judge: {judge.name}, test accuracy {judge.accuracy:.4f} ({judge.run}; "
          f"{time.perf_counter() - t0:.0f} s incl. training when not cached)")
    skip = set(args.skip.split(","))
    if "gan" not in skip:
        gan(args.budget, out, judge)
    if "vae" not in skip:
        vae(args.vae_epochs, out)
    if "dae" not in skip:
        dae(args.dae_epochs, out)


if __name__ == "__main__":
    main()
