"""Generative benchmarks (issue 12), on this machine's CPUs, with the load average beside each figure.

1. DCGAN-style pair at 28x28 (zoo; by default the class-conditional pair cdcgan_mnist_generator +
   cdcgan_mnist_discriminator: the generator is given the one-hot class after its latent, the
   discriminator gives one score per class and the loss reads the image's class; ``--generator
   dcgan_mnist_generator --discriminator dcgan_mnist_discriminator`` runs the unconditional pair)
   with the gan task's defaults: non-saturating loss, Adam beta1 0.5, samples from the weight average
   g_ema 0.999; but Adam's learning rate ``--lr``, default GAN_LR = 1e-3 for both networks,
   measured ahead of the task's DCGAN default 2e-4 at equal steps; ``--lr 0`` runs the default) on mnist5k (4,000 training images, batch 64: 63 steps per epoch), epoch
   by epoch until the target is met or a wall-time budget (default 600 s) runs out. Per epoch:
   wall time since the start of training, steps, wall and CPU milliseconds per training step,
   the seconds of the epoch's evaluation (validation, sample grid, judging), classifier-FID on
   mnist5k, precision/recall, the share of samples the judge labels with probability >= 0.9,
   classes covered and the smallest class share, and the 1-minute load average.
   Target: >= 90% of samples confidently classified with all 10 classes at >= 5% each within
   10 minutes (600 s of wall time from the start of training, evaluation included). The
   real-vs-real figures (1000 training images vs the 500 test images the generator is compared
   with) are printed as the floor at these sample sizes. For a class-conditional pair it also
   prints how often the judge labels the final generator's samples as the class asked for
   (:func:`class_agreement`): the judge's class histogram counts its own labels, so coverage is
   judged, not assumed from the classes asked for.
2. vae_mnist (zoo, as it is): test-split ELBO (nats per image) by epoch (validation split each
   epoch, test split at the end), wall time.
3. Denoising autoencoder (autoencoder_mnist, --corrupt mask=0.5): test reconstruction error
   (per-pixel MSE against the clean image) vs the corruption's own error.

   ``--steps N`` stops the GAN after N training steps instead of (or as well as) the wall-time
   budget: on a loaded machine, develop against the number of steps a quiet one does in 600 s
   (the table's ms/step on a quiet run gives it); ``--budget 0`` then leaves the steps alone to stop it.

   ``--r1 G`` adds R1 on real images (``G / 2 x E ||grad_x D(x)||^2`` every step, Mescheder et
   al. 2018) to the discriminator's loss; the task has it off, the benchmark's default is
   GAN_R1 (docs/training.md, the GAN benchmark, gives the figures).
   ``--truncation T`` also judges the final generator's samples drawn with the truncation trick
   (latent from a normal truncated to [-T, T], Brock et al. 2019; sampling only) and prints the
   target's verdict with and without it. Off by default: on this batch-norm pair it lowered the
   confident share (docs/training.md).

   ``--option NAME=VALUE`` passes any other archlab.train option (e.g. ``--option gan_loss=hinge``);
   ``--keep-going`` trains on to the budget / ``--steps`` after the target is met (the default stops
   at the first epoch that meets it, as the target is a time to quality).

Usage: ``python benchmarks/generative.py [--budget 600] [--steps N] [--seed 0] [--lr 1e-3] [--threads auto|1|2]
[--r1 G] [--truncation T] [--generator G --discriminator D] [--option NAME=VALUE] [--keep-going]
[--skip vae,dae]``.
``--threads auto`` (the default) measures instead of guessing: the first training steps of the GAN
run alternate between 1 and 2 torch threads (after two warm-up steps, 4 steps each in the order
1, 2, 2, 1, 1, 2, 2, 1, so a drift of the load hits both alike), and the rest of the run keeps
the count whose median step was faster; the timings are printed. On a loaded 2-core machine two
threads wait for each other and a step can take 10x longer; on a quiet one two threads take
about half the time of one. ``--threads 1`` or ``2`` fixes the count.
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
from archlab.judge import Judge, class_coverage, frechet_distance, precision_recall

TARGET_CONFIDENT, TARGET_MIN_SHARE, TARGET_SECONDS = 0.9, 0.05, 600.0
# the benchmark's learning rate for both networks: measured ahead of the gan task's DCGAN default
# 2e-4 at equal steps (docs/training.md, the GAN benchmark); it is not yet the task's default
# because the generative fault suite's set-ups state their learning rates against 2e-4
GAN_LR = 1e-3
# the benchmark's R1 weight on real images (the gan task has it off): at 1,260 steps (seed 0, lr 1e-3) classifier-FID
# 68.6 against 96.4 and every class >= 5%; docs/training.md, the GAN benchmark
GAN_R1 = 1.0
# the benchmark's pair (zoo designs): the class-conditional DCGAN pair (the generator is given the
# one-hot class, the discriminator scores each class): seed 0 met the target after 378 steps
# where the unconditional pair (dcgan_mnist_generator + dcgan_mnist_discriminator) reached a
# confident share of 0.720 after 7,875 (docs/training.md, the GAN benchmark)
GAN_GENERATOR, GAN_DISCRIMINATOR = "cdcgan_mnist_generator", "cdcgan_mnist_discriminator"


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.1f}/{five:.1f}/{fifteen:.1f} on {os.cpu_count()} cores"


def met(metrics: dict) -> bool:
    return (metrics.get("confident_share", 0.0) >= TARGET_CONFIDENT
            and metrics.get("min_class_share", 0.0) >= TARGET_MIN_SHARE)


class ThreadChooser(Callback):
    """Times the first training steps with each torch thread count in ``candidates`` and keeps
    the fastest for the rest of the run (``--threads auto``).

    Steps ``0 .. warmup - 1`` run with the first candidate and are not timed; then each candidate
    runs ``per_count`` steps in an ABBA order (for two candidates: 1, 2, 2, 1, 1, 2, 2, 1), so a
    load that drifts during the measurement hits every candidate alike. The choice is the
    candidate with the smallest median step time (wall clock: what the budget counts)."""

    def __init__(self, candidates=(1, 2), warmup: int = 2, per_count: int = 4) -> None:
        self.candidates = tuple(candidates)
        self.warmup = warmup
        order: list[int] = []
        while len(order) < per_count * len(self.candidates):
            k = len(order) // len(self.candidates)
            order.extend(self.candidates if k % 2 == 0 else self.candidates[::-1])
        self.order = order
        self.times: dict[int, list[float]] = {c: [] for c in self.candidates}
        self.chosen: int | None = None
        self._batch = 0

    def _count_for(self, i: int) -> int | None:
        if i < self.warmup:
            return self.candidates[0]
        j = i - self.warmup
        return self.order[j] if j < len(self.order) else None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        count = self._count_for(self._batch)
        if count is not None:
            torch.set_num_threads(count)
        self._t = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        dt = time.perf_counter() - self._t
        i, self._batch = self._batch, self._batch + 1
        count = self._count_for(i)
        if count is None:
            return
        if i >= self.warmup:
            self.times[count].append(dt)
        if i == self.warmup + len(self.order) - 1:   # the last timed step: choose
            medians = {c: float(torch.tensor(v).median()) for c, v in self.times.items()}
            self.chosen = min(medians, key=medians.get)
            torch.set_num_threads(self.chosen)
            timed = ", ".join(f"{c} thread{'s' if c > 1 else ''} {1000 * m:.0f} ms" for c, m in medians.items())
            print(f"threads measured (median of {len(self.order) // len(self.candidates)} interleaved "
                  f"training steps each, {load()}): {timed}; keeping {self.chosen}", flush=True)


class R1Penalty(Callback):
    """Sets the GAN module's R1 weight (``--r1``: r1 / 2 x E ||grad_x D(x)||^2 on real images,
    Mescheder et al. 2018, every step) before the first training step: the training config has
    no ``r1`` field yet, so the benchmark sets the module's attribute."""

    def __init__(self, weight: float) -> None:
        self.weight = float(weight)

    def on_train_start(self, trainer, pl_module) -> None:
        pl_module.r1 = self.weight


class EpochClock(Callback):
    """Per-epoch wall time, steps and evaluation time of a GAN run, printed as each epoch ends;
    stops the run once the target is met or the wall-time budget has run out."""

    HEADER = (f"{'epoch':>5} {'wall s':>7} {'steps':>6} {'ms/step':>7} {'cpu ms':>6} {'eval s':>6} "
              f"{'cFID':>7} {'prec':>5} {'recall':>6} {'conf':>5} {'classes':>7} {'min share':>9} {'load':>5}")

    def __init__(self, budget: float, max_steps: int | None = None, keep_going: bool = False) -> None:
        self.budget, self.t0, self.rows, self.steps = budget, None, [], 0
        self.max_steps = max_steps
        self.keep_going = keep_going   # train on to the budget / steps after the target is met
        self.reached = None
        self.classes = 0

    def on_train_start(self, trainer, pl_module) -> None:
        self.t0 = time.perf_counter()
        self.classes = int(getattr(pl_module, "classes", 0))   # a class-conditional pair: C
        print(self.HEADER, flush=True)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.epoch_steps, self.train_s, self.cpu_s = 0, 0.0, 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._t, self._c = time.perf_counter(), time.process_time()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.train_s += time.perf_counter() - self._t
        self.cpu_s += time.process_time() - self._c
        self.epoch_steps += 1

    def on_validation_start(self, trainer, pl_module) -> None:
        self._v = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:   # after the judge's epoch hook
        self.eval_s = time.perf_counter() - self._v

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.steps += self.epoch_steps
        elapsed = time.perf_counter() - self.t0
        m = pl_module.val_metrics
        n = max(self.epoch_steps, 1)
        row = {"epoch": pl_module.current_epoch, "wall": elapsed, "steps": self.steps,
               "ms_step": 1000 * self.train_s / n, "cpu_ms_step": 1000 * self.cpu_s / n,
               "eval_s": getattr(self, "eval_s", float("nan")), "load": os.getloadavg()[0], **m}
        self.rows.append(row)
        nan = float("nan")
        print(f"{row['epoch']:5d} {elapsed:7.0f} {self.steps:6d} {row['ms_step']:7.0f} {row['cpu_ms_step']:6.0f} "
              f"{row['eval_s']:6.1f} {m.get('classifier_fid', nan):7.1f} {m.get('precision', nan):5.2f} "
              f"{m.get('recall', nan):6.2f} {m.get('confident_share', nan):5.3f} {m.get('classes_covered', 0):7.0f} "
              f"{m.get('min_class_share', nan):9.3f} {row['load']:5.1f}", flush=True)
        if met(m) and self.reached is None:
            self.reached = row
            if not self.keep_going:
                trainer.should_stop = True
        if (self.budget > 0 and elapsed >= self.budget) or (self.max_steps and self.steps >= self.max_steps):
            trainer.should_stop = True


def gan(budget: float, out: str, judge: Judge, steps: int | None = None, seed: int = 0,
        threads: ThreadChooser | None = None, lr: float | None = None, truncation: float | None = None,
        r1: float = 0.0, generator: str = GAN_GENERATOR, discriminator: str = GAN_DISCRIMINATOR,
        options: dict | None = None, keep_going: bool = False) -> None:
    limits = ([f"budget {budget:.0f} s"] if budget > 0 else []) + ([f"{steps} steps"] if steps else [])
    print(f"\n1. DCGAN pair {generator} + {discriminator} on mnist5k (gan task defaults, lr {lr or 'default'}, "
          f"R1 {r1:g}, {options or {}}), seed {seed}, "
          f"{' or '.join(limits)}; {load()}",
          flush=True)
    clock = EpochClock(budget, steps, keep_going)
    t0 = time.perf_counter()
    run = archlab.train(generator, "mnist5k", task="gan",
                        discriminator=discriminator, epochs=1000, batch=64,
                        split=(0.8, 0.1, 0.1), progress=False, out=out, judge_model=judge, seed=seed,
                        **({"lr": lr} if lr else {}), **(options or {}),
                        callbacks=[clock] + ([threads] if threads is not None else [])
                        + ([R1Penalty(r1)] if r1 else []))
    wall = time.perf_counter() - t0
    c = run.config
    print(f"settings: gan_loss {c.gan_loss}, lr {c.lr}, d_lr {c.d_lr or c.lr}, betas {tuple(c.betas)}, "
          f"batch {c.batch}, d_steps {c.d_steps}, label_smoothing {c.label_smoothing}, g_ema {c.g_ema}, R1 {r1:g}")
    t = run.test_metrics
    print(f"final ({t.get('samples')} fresh samples vs {t.get('real_samples')} test images): classifier-FID "
          f"{t.get('classifier_fid', float('nan')):.2f}, precision {t.get('precision', float('nan')):.2f}, "
          f"recall {t.get('recall', float('nan')):.2f}, confident {t.get('confident_share', float('nan')):.3f}, "
          f"classes {t.get('classes_covered')}, min class share {t.get('min_class_share', float('nan')):.3f}")
    if clock.classes:
        agree = class_agreement(run.path, judge, clock.classes, n=int(t.get("samples") or 1000), seed=seed)
        print(f"class-conditional pair: the judge labels {agree['agreement']:.3f} of {agree['samples']} fresh "
              f"samples (each class asked for {agree['samples'] // clock.classes} times) as the class asked for, "
              f"{agree['confident_and_agreeing']:.3f} confidently (p >= 0.9) so; per asked class: "
              + " ".join(f"{k}:{v:.2f}" for k, v in enumerate(agree["per_class"])), flush=True)
    r = clock.reached
    if r is not None and r["wall"] <= TARGET_SECONDS:
        verdict = (f"MET at epoch {r['epoch']} after {r['wall']:.0f} s and {r['steps']} steps "
                   f"(final fresh samples: {'also met' if met(t) else 'NOT met'})")
    elif r is not None:
        verdict = f"reached at epoch {r['epoch']} after {r['wall']:.0f} s (> {TARGET_SECONDS:.0f} s): NOT met in time"
    else:
        last = clock.rows[-1] if clock.rows else {"wall": 0.0, "steps": 0}
        verdict = f"NOT met within {last['wall']:.0f} s and {last['steps']} steps"
    print(f"target (>= {TARGET_CONFIDENT:.0%} confident, every class >= {TARGET_MIN_SHARE:.0%}, "
          f"<= {TARGET_SECONDS:.0f} s): {verdict}; total wall {wall:.0f} s incl. final judging; {load()}")
    print(f"run folder: {run.path}", flush=True)
    data = archlab.train.load_data("mnist5k")
    splits = run.splits
    if truncation:
        tr = truncated_report(run.path, judge, truncation, data, n=int(t.get("samples") or 1000), seed=seed)
        print(f"with the truncation trick (sampling only: latent from a normal truncated to [-{truncation:g}, "
              f"{truncation:g}], the same final generator, {tr['samples']} fresh samples): classifier-FID "
              f"{tr['classifier_fid']:.2f}, precision {tr['precision']:.2f}, recall {tr['recall']:.2f}, "
              f"confident {tr['confident_share']:.3f}, classes {tr['classes_covered']}, min class share "
              f"{tr['min_class_share']:.3f}; target {'MET' if met(tr) else 'NOT met'} with truncation, "
              f"{'MET' if met(t) else 'NOT met'} without (final fresh samples)", flush=True)
    # 1000 training images spread over the split (mnist5k is sorted by class)
    real_train = data.x[torch.as_tensor(splits.train)[torch.linspace(0, len(splits.train) - 1, 1000).long()]]
    real_test = data.x[torch.as_tensor(splits.test)]
    f_train, p_train = judge.features(real_train)
    f_test, p_test = judge.features(real_test)
    floor = frechet_distance(f_train.double().numpy(), f_test.double().numpy())
    pr = precision_recall(f_test, f_train)
    cov, cov_test = class_coverage(p_train), class_coverage(p_test)
    print(f"real vs real (1000 train vs {len(real_test)} test images): classifier-FID {floor:.2f}, precision "
          f"{pr['precision']:.2f}, recall {pr['recall']:.2f}; the judge labels {cov['confident_share']:.3f} of "
          f"these training images and {cov_test['confident_share']:.3f} of the test images with probability "
          f">= 0.9 (smallest class share {cov['min_class_share']:.3f} / {cov_test['min_class_share']:.3f})")


def truncated_report(run_path, judge: Judge, truncation: float, data, n: int = 1000, seed: int = 0) -> dict:
    """The judge's report of ``n`` samples of a GAN run's final generator (``model.safetensors``:
    the weight average) whose latents come from a normal truncated to [-truncation, truncation]
    (BigGAN's truncation trick), against the run's test images."""
    from archlab.train.generative.gan import truncated_normal
    from archlab.train.run import Run

    run = Run.open(run_path)
    net = run.model()   # eval mode: batch norm uses its running statistics, as the run's own samples
    nz = run.design().input_shape[0]
    z = truncated_normal((n, nz), truncation, torch.Generator().manual_seed(int(seed) + 31))
    with torch.no_grad():
        x = torch.cat([net(z[i:i + 256]) for i in range(0, n, 256)])
    s = run.scaling
    raw = x * torch.tensor(s.std).view(1, -1, 1, 1) + torch.tensor(s.mean).view(1, -1, 1, 1)
    real = data.x[torch.as_tensor(run.splits.test)].float()
    return judge.report(raw, real)


def class_agreement(run_path, judge: Judge, classes: int, n: int = 1000, seed: int = 0) -> dict:
    """A class-conditional run's final generator (``model.safetensors``: the weight average) asked
    for each class in turn (sample i: class i mod C), and how often the judge's label is the
    class asked for: ``agreement`` (argmax), ``confident_and_agreeing`` (the label asked for with
    probability >= 0.9) and the agreement per asked class."""
    from archlab.train.generative.gan import class_inputs
    from archlab.train.run import Run

    run = Run.open(run_path)
    net = run.model()   # eval mode, as the run's own samples
    nz = run.design().input_shape[0] - classes
    z = torch.randn((n, nz), generator=torch.Generator().manual_seed(int(seed) + 37))
    asked = torch.arange(n) % classes
    with torch.no_grad():
        inputs = class_inputs(z, classes, asked)
        x = torch.cat([net(inputs[i:i + 256]) for i in range(0, n, 256)])
    s = run.scaling
    raw = x * torch.tensor(s.std).view(1, -1, 1, 1) + torch.tensor(s.mean).view(1, -1, 1, 1)
    _, probs = judge.features(raw)
    top, label = probs.max(1)
    hit = label == asked
    return {"samples": n, "agreement": float(hit.float().mean()),
            "confident_and_agreeing": float((hit & (top >= 0.9)).float().mean()),
            "per_class": [float(hit[asked == k].float().mean()) for k in range(classes)]}


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


def parse_options(items: list[str]) -> dict:
    """``NAME=VALUE`` strings -> archlab.train keyword options (JSON values when they parse)."""
    import json

    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise SystemExit(f"--option {item!r}: expected NAME=VALUE, e.g. --option gan_loss=hinge")
        try:
            out[name] = json.loads(value)
        except ValueError:
            out[name] = value
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=TARGET_SECONDS, help="GAN wall-time budget (s)")
    ap.add_argument("--steps", type=int, default=None, help="GAN: stop after this many training steps")
    ap.add_argument("--seed", type=int, default=0, help="GAN: the run's seed")
    ap.add_argument("--lr", type=float, default=GAN_LR,
                    help=f"GAN: Adam's learning rate for both networks (default {GAN_LR:g}; 0 = the gan task's default)")
    ap.add_argument("--r1", type=float, default=GAN_R1,
                    help=f"GAN: R1 weight on real images (r1 / 2 x E |grad D(x)|^2 every step; default {GAN_R1:g}; 0 = off)")
    ap.add_argument("--truncation", type=float, default=0.0,
                    help="GAN: also judge the final generator with latents from a normal truncated to [-T, T] "
                         "(BigGAN's truncation trick, sampling only) and report the target with and without "
                         "it; default 0 = off (measured to lower the confident share of this batch-norm pair)")
    ap.add_argument("--generator", default=GAN_GENERATOR, help=f"GAN: the generator design (default {GAN_GENERATOR})")
    ap.add_argument("--discriminator", default=GAN_DISCRIMINATOR,
                    help=f"GAN: the discriminator design (default {GAN_DISCRIMINATOR})")
    ap.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                    help="GAN: any other archlab.train option, e.g. --option gan_loss=hinge (repeatable; "
                         "values read as JSON when they parse, else as text)")
    ap.add_argument("--keep-going", action="store_true",
                    help="GAN: train on to the budget / --steps after the target is met (the first epoch that "
                         "met it is still reported); default: stop there")
    ap.add_argument("--threads", default="auto", help="torch threads: auto (time the first GAN steps with 1 and 2, keep the faster), 1 or 2")
    ap.add_argument("--vae-epochs", type=int, default=8)
    ap.add_argument("--dae-epochs", type=int, default=8)
    ap.add_argument("--skip", default="", help="comma list of gan,vae,dae to skip")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    chooser = None
    if args.threads == "auto":
        chooser = ThreadChooser(tuple(range(1, min(2, cores) + 1))) if cores > 1 else None
        torch.set_num_threads(1)
    else:
        torch.set_num_threads(min(int(args.threads), cores))
    out = args.out or tempfile.mkdtemp(prefix="archlab-generative-")
    how = "measured on the first GAN steps" if chooser else f"{torch.get_num_threads()}"
    print(f"generative benchmark, torch threads {how}; {load()}")
    t0 = time.perf_counter()
    judge = Judge.for_data("mnist5k")
    print(f"judge: {judge.name}, test accuracy {judge.accuracy:.4f}, labels {judge.real_confident_share:.3f} "
          f"of the real images of its own test split with probability >= 0.9 (the ceiling of the "
          f"confident share) ({judge.run}; {time.perf_counter() - t0:.0f} s incl. training when not cached)")
    skip = set(args.skip.split(","))
    if "gan" not in skip:
        gan(args.budget, out, judge, args.steps, args.seed, chooser, args.lr or None, args.truncation or None,
            args.r1, args.generator, args.discriminator, parse_options(args.option), args.keep_going)
    if "vae" not in skip:
        vae(args.vae_epochs, out)
    if "dae" not in skip:
        dae(args.dae_epochs, out)


if __name__ == "__main__":
    main()
