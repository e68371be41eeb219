"""GAN training: a generator and a discriminator with their own optimisers (manual optimisation).

Per training batch: one discriminator step (``d_steps`` = discriminator steps per generator
step, as WGAN's critic iterations), then, every ``d_steps`` batches, one generator step. The
defaults follow DCGAN (Radford et al. 2016): Adam, lr 2e-4, beta1 0.5; ``d_lr`` gives the
discriminator its own rate (TTUR, Heusel et al. 2017: e.g. lr 1e-4, d_lr 4e-4); one-sided label
smoothing (Salimans et al. 2016) lowers the real targets of the non-saturating loss to 1 - s.
``schedule: cosine`` decays both learning rates to zero over the run (:meth:`GANModule.lr_factor`);
``constant`` (the default) keeps them. ``r1`` > 0 (module attribute, or the config's ``r1``
when it has one) adds R1 on real images (Mescheder et al. 2018), ``r1 / 2 x E ||grad_x D(x)||^2``,
to the discriminator's loss every step.
The config's ``augment`` (``--augment shift=2``) is differentiable augmentation (Zhao et al.
2020): every image the discriminator sees in training, real and generated, is augmented inside
the graph (:meth:`GANModule.d_input`); validation scores the plain images.

Samples come from an exponential moving average of the generator's weights (``g_ema``, default
0.999; Yazici et al. 2019, "The Unusual Effectiveness of Averaging in GAN Training"; Karras et
al. 2018 use 0.999): after each generator step every parameter and batch-norm statistic of the
average moves towards the live generator's, ``avg <- d avg + (1 - d) live``, with the warm-up
``d = min(g_ema, (1 + t) / (10 + t))`` after t updates (the ``num_updates`` rule of TensorFlow's
ExponentialMovingAverage), so early averages are not dominated by the random initial weights.
The average is :class:`torch.optim.swa_utils.AveragedModel`; it is what :meth:`sample` and the
sample grids draw from, and at the end of training the generator takes its weights (so
``model.safetensors`` holds them). ``g_ema: 0`` turns it off.

A class-conditional pair (``classes`` C > 1; Mirza & Osindero 2014 for the generator, the
projection discriminator of Miyato & Koyama 2018 for the discriminator): the generator's input
is the latent followed by the class's one-hot vector (``nz + C`` values), and the discriminator
gives one raw score per class, of which the loss reads the score of the image's class (real
images: their label; generated: the class asked for). That is the projection discriminator's
``embed(y) . phi(x)`` with a one-hot ``y`` (a linear layer's row y), without the unconditional
term. Samples ask for the classes in turn (``i mod C`` for sample i), so every class is asked
for equally; the judge labels them independently. :func:`class_inputs` builds the inputs.

The truncation trick (Brock et al. 2019, BigGAN), off by default: ``sample(n, truncation=t)``
draws the latent from a standard normal truncated to ``[-t, t]`` (every value outside is drawn
again until none is, :func:`truncated_normal`), trading variety for fidelity at sampling time
only; training always draws the full normal. ``truncation=None`` is the plain normal.

Every step records the health scalars the generative detectors read: both losses, the mean
D(x) and D(G(z)) (probabilities for the ns loss, raw scores otherwise), the gradient norms of
both nets, and whether any of them was NaN/Inf.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from ..prepare import augment
from .base import GenerativeModule, grad_norm, optimizer_for
from .losses import discriminator_loss, generator_loss, gradient_penalty, probability_of_real, r1_penalty


class GANModule(GenerativeModule):
    """``generator``: (N, nz) -> (N, *image); ``discriminator``: (N, *image) -> (N, 1) scores."""

    def __init__(self, generator: nn.Module, discriminator: nn.Module, config, latent: int,
                 steps_per_epoch: int, value_range=(-1.0, 1.0), checkpoint_extra=None,
                 grid: int = 64, classes: int = 0) -> None:
        super().__init__(config, steps_per_epoch, value_range, checkpoint_extra)
        self.automatic_optimization = False
        self.generator = generator
        self.discriminator = discriminator
        # a class-conditional pair: ``latent`` is the noise part of the generator's input (the
        # one-hot class follows it) and the discriminator scores each class; 0 = unconditional
        self.classes = int(classes)
        self.latent = latent
        g = torch.Generator().manual_seed(int(config.seed) + 12_345)
        # the grid's generator inputs (with the class one-hot for a conditional pair: class i mod C)
        self.register_buffer("fixed_noise", class_inputs(torch.randn((grid, latent), generator=g), self.classes),
                             persistent=False)
        self._batches = 0
        self.nonfinite = False
        decay = float(getattr(config, "g_ema", 0.0) or 0.0)
        self.generator_ema = (AveragedModel(generator, avg_fn=ema_update(decay), use_buffers=True)
                              if decay > 0 else None)
        # the config's image augmentation, for a GAN applied to every image the discriminator
        # sees, real and generated, inside the graph (differentiable augmentation, Zhao et al.
        # 2020): augmenting only the real images would teach the generator the augmentation
        spec = getattr(config, "augment", None)
        self.augment = spec if spec is not None and spec.active else None
        # R1 on real images (Mescheder et al. 2018): r1 / 2 x E ||grad_x D(x)||^2 added to the
        # discriminator's loss every step (not lazily); 0 = off. The config's ``r1`` when it has
        # one, else set on the module (the benchmark's R1Penalty callback)
        self.r1 = float(getattr(config, "r1", 0.0) or 0.0)

    def d_input(self, images: torch.Tensor) -> torch.Tensor:
        """What the discriminator sees in training: the images, augmented when ``augment`` is set."""
        return augment(images, self.augment, self.rng) if self.augment is not None else images

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.generator(z)

    def noise(self, n: int) -> torch.Tensor:
        return torch.randn((n, self.latent), generator=self.rng).to(self.device)

    def score(self, images: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """The discriminator's raw scores (N, 1): for a conditional pair, the score of each
        image's class ``labels`` among the C it gives."""
        scores = self.discriminator(images)
        if not self.classes:
            return scores
        return scores.reshape(len(scores), self.classes).gather(1, labels.long().view(-1, 1))

    @property
    def sampler(self) -> nn.Module:
        """The network samples come from: the weight average when ``g_ema`` > 0, else the generator."""
        return self.generator_ema.module if self.generator_ema is not None else self.generator

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None,
               truncation: float | None = None) -> torch.Tensor:
        """n samples in the generator's value range, eval mode, reproducible with ``generator``;
        ``truncation`` t: the latent from a normal truncated to [-t, t] (BigGAN's trick; None = off)."""
        z = truncated_normal((n, self.latent), truncation, generator or self.rng)
        return self.generate(class_inputs(z, self.classes).to(self.device))

    @torch.no_grad()
    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """The sampler's images for generator inputs z (latent vectors, with the one-hot class for
        a conditional pair: :func:`class_inputs`; eval mode, batches of 256)."""
        net = self.sampler
        was = net.training
        net.eval()
        out = torch.cat([net(z[i:i + 256]) for i in range(0, len(z), 256)])
        net.train(was)
        return out

    def on_train_end(self) -> None:
        """The generator takes the averaged weights: what is saved and tested is what was judged."""
        if self.generator_ema is not None:
            self.generator.load_state_dict(self.generator_ema.module.state_dict())

    def lr_factor(self) -> float:
        """The learning rates' multiplier at this batch: 1 for ``schedule: constant``; for
        ``cosine``, ``0.5 (1 + cos(pi t / T))`` after t batches of T = epochs x steps per epoch
        (both networks decay to zero at the end of the run). A function of the batch count, which
        a resumed run restores, so it needs no scheduler state of its own."""
        if self.config.schedule != "cosine":
            return 1.0
        total = max(1, int(self.steps_per_epoch) * int(self.config.epochs))
        return 0.5 * (1.0 + math.cos(math.pi * min(self._batches, total) / total))

    def configure_optimizers(self):
        c = self.config
        if c.schedule not in ("constant", "cosine"):
            raise ValueError(f"gan: schedule {c.schedule!r} is not available for the generator/discriminator pair "
                             f"(expected 'constant' or 'cosine', which decays both learning rates to zero over "
                             f"the run); fix: --schedule cosine or --schedule constant")
        steps = self.steps_per_epoch
        opt_g = optimizer_for(self.generator, c, c.lr, steps)["optimizer"]
        opt_d = optimizer_for(self.discriminator, c, c.d_lr or c.lr, steps)["optimizer"]
        return [opt_g, opt_d]

    def training_step(self, batch, batch_idx: int) -> None:
        c = self.config
        x = batch[0]
        labels = batch[1] if self.classes else None
        opt_g, opt_d = self.optimizers()
        if c.schedule == "cosine":
            f = self.lr_factor()
            for opt, lr in ((opt_g, c.lr), (opt_d, c.d_lr or c.lr)):
                for group in getattr(opt, "optimizer", opt).param_groups:
                    group["lr"] = lr * f
        n = x.shape[0]
        # a conditional pair asks for classes drawn uniformly (the generated batch's labels)
        asked = torch.randint(0, self.classes, (n,), generator=self.rng).to(self.device) if self.classes else None
        fake = self.generator(class_inputs(self.noise(n), self.classes, asked))

        # discriminator step on a real and a generated batch (separate batches: DCGAN)
        real_in = self.d_input(x)
        if self.r1 > 0:
            real_in = real_in.detach().requires_grad_(True)
        real_scores = self.score(real_in, labels)
        fake_scores = self.score(self.d_input(fake.detach()), asked)
        d_loss = discriminator_loss(c.gan_loss, real_scores, fake_scores, c.label_smoothing)
        r1 = r1_penalty(real_in, real_scores) if self.r1 > 0 else None
        if r1 is not None:
            d_loss = d_loss + self.r1 / 2 * r1
        penalty = torch.zeros(())
        if c.gan_loss == "wgan-gp":
            critic = self.discriminator if not self.classes else (lambda im: self.score(im, labels))
            penalty = gradient_penalty(critic, x, fake, self.rng)
            d_loss = d_loss + c.gp_weight * penalty
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(d_loss)
        d_grad = grad_norm(self.discriminator)
        opt_d.step()

        record = {"d_loss": d_loss.item(), "d_real": float(probability_of_real(c.gan_loss, real_scores.detach()).mean()),
                  "d_fake": float(probability_of_real(c.gan_loss, fake_scores.detach()).mean()), "d_grad": d_grad}
        if c.gan_loss == "wgan-gp":
            record["penalty"] = penalty.item()
        if r1 is not None:
            record["r1"] = r1.item()
        # generator step every d_steps batches, against the updated discriminator
        if self._batches % c.d_steps == 0:
            g_scores = self.score(self.d_input(fake), asked)
            g_loss = generator_loss(c.gan_loss, g_scores)
            opt_g.zero_grad(set_to_none=True)
            self.manual_backward(g_loss)
            record["g_grad"] = grad_norm(self.generator)
            opt_g.step()
            if self.generator_ema is not None:
                self.generator_ema.update_parameters(self.generator)
            record["g_loss"] = g_loss.item()
            record["d_fake_after"] = float(probability_of_real(c.gan_loss, g_scores.detach()).mean())
        self._batches += 1
        self.record(**record)
        self._add("train", n, d_loss=record["d_loss"], d_real=record["d_real"], d_fake=record["d_fake"],
                  **({"g_loss": record["g_loss"]} if "g_loss" in record else {}))
        if not all(math.isfinite(v) for v in record.values()):
            self.nonfinite = True
            self.trainer.should_stop = True   # NaN/Inf: stop now, the health record says where

    def epoch_train_metrics(self) -> dict:
        sums = self._sums.get("train", {"count": 0.0})
        m = self._means("train")
        if "g_loss" in m and self.config.d_steps > 1:   # g_loss was summed on 1 batch in d_steps
            m["g_loss"] *= self.config.d_steps
        self.train_metrics = m if sums["count"] else {}
        return self.train_metrics

    # ---- validation: the discriminator on held-out real images, then samples and judging -----
    def validation_step(self, batch, batch_idx: int) -> None:
        x = batch[0]
        scores = self.score(x, batch[1] if self.classes else None)
        self._add("val", x.shape[0], d_real=probability_of_real(self.config.gan_loss, scores).mean())

    def on_validation_epoch_end(self) -> None:
        self.val_metrics = self._means("val")
        self.run_epoch_hooks()   # sample grid, judge metrics into val_metrics

    def test_step(self, batch, batch_idx: int) -> None:
        x = batch[0]
        scores = self.score(x, batch[1] if self.classes else None)
        self._add("test", x.shape[0], d_real=probability_of_real(self.config.gan_loss, scores).mean())


def class_inputs(z: torch.Tensor, classes: int, labels: torch.Tensor | None = None) -> torch.Tensor:
    """A conditional generator's inputs: each latent row of ``z`` (N, nz) followed by the one-hot
    vector of its class (N, nz + C); ``labels`` None asks for the classes in turn (row i: class
    i mod C). ``classes`` 0 (an unconditional pair) returns ``z`` unchanged."""
    if not classes:
        return z
    if labels is None:
        labels = torch.arange(len(z), device=z.device) % classes
    onehot = torch.nn.functional.one_hot(labels.long().to(z.device), classes).to(z.dtype)
    return torch.cat([z, onehot], dim=1)


def truncated_normal(shape, truncation: float | None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard normal values of ``shape``; with ``truncation`` t > 0 every value with |z| > t is
    drawn again (from the same generator) until none is: the truncated normal of BigGAN's
    truncation trick (Brock et al. 2019). ``None`` gives the plain normal (``torch.randn``)."""
    z = torch.randn(shape, generator=generator)
    if truncation is None:
        return z
    if not truncation > 0:
        raise ValueError(f"truncated_normal: truncation must be a threshold > 0 (e.g. 1.0) or None for the "
                         f"plain normal; got {truncation!r}")
    while True:
        out = z.abs() > truncation
        k = int(out.sum())
        if not k:
            return z
        z[out] = torch.randn(k, generator=generator)


def ema_update(decay: float):
    """``avg_fn`` of :class:`~torch.optim.swa_utils.AveragedModel`: the average after the update
    number ``n`` + 1 is ``d avg + (1 - d) live`` with ``d = min(decay, (1 + n) / (10 + n))``."""
    def update(averaged: torch.Tensor, current: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        if not averaged.is_floating_point():   # batch norm's num_batches_tracked: a count
            return current
        d = min(decay, (1.0 + float(n)) / (10.0 + float(n)))
        return averaged * d + current * (1.0 - d)
    return update
