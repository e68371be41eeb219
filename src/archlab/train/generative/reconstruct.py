"""Autoencoders (plain and denoising) and variational autoencoders.

* **autoencoder**: loss = reconstruction of the input (``mse`` default; ``bce`` for a sigmoid
  output; ``l1``), summed over a sample's elements, batch mean. With ``corrupt`` it is a
  denoising autoencoder (Vincent et al. 2008): the network sees a corrupted input, the target
  is the clean one. The corruption is drawn from (seed, epoch) in training and from the seed
  alone on the validation and test splits, so the reported error is reproducible. Metrics:
  ``mse`` per pixel of the reconstruction and, when corrupting, ``corruption_mse`` (the error
  of the corrupted input itself: the bar a denoiser has to beat).
* **vae**: loss = reconstruction (``bce`` default, a Bernoulli likelihood per pixel) +
  ``kl_weight`` x the ``variational`` blocks' beta x KL (Kingma & Welling 2014; beta-VAE,
  Higgins et al. 2017). Validation and test report the ELBO with beta = 1,
  ``elbo = -(reconstruction + KL)`` in nats per image, from one sample of the latent (the
  bottleneck samples during evaluation too; batch norm stays in evaluation mode).
"""

from __future__ import annotations

import torch
from torch import nn

from .base import GenerativeModule, optimizer_for
from .corrupt import Corruption
from .losses import reconstruction_loss


def bottlenecks(model: nn.Module) -> list[nn.Module]:
    from ...blocks.variational import VariationalBottleneck

    return [m for m in model.modules() if isinstance(m, VariationalBottleneck)]


class ReconstructionModule(GenerativeModule):
    """``model``: (N, *image) -> (N, *image). ``task``: 'autoencoder' or 'vae'."""

    def __init__(self, model: nn.Module, task: str, loss: str, config, steps_per_epoch: int,
                 value_range=(0.0, 1.0), corruption: Corruption | None = None, checkpoint_extra=None) -> None:
        super().__init__(config, steps_per_epoch, value_range, checkpoint_extra)
        self.model = model
        self.task = task
        self.loss_name = loss
        self.corruption = corruption
        self._eval_rng = torch.Generator()
        self._latents = bottlenecks(model) if task == "vae" else []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def corrupt(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Corrupt in [0, 1] units, whatever range the images are scaled to."""
        if self.corruption is None:
            return x
        lo, hi = self.value_range
        unit = (x - lo) / (hi - lo)
        return self.corruption.apply(unit, generator) * (hi - lo) + lo

    def target(self, x: torch.Tensor) -> torch.Tensor:
        lo, hi = self.value_range
        return (x - lo) / (hi - lo) if self.loss_name == "bce" else x

    def _losses(self, x: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        fed = self.corrupt(x, generator)
        out = self.model(fed)
        out = out[0] if isinstance(out, (tuple, list)) else out
        recon = reconstruction_loss(self.loss_name, out, self.target(x))
        parts = {"recon": recon, "out": out, "fed": fed}
        if self._latents:
            parts["kl"] = sum(m.kl for m in self._latents)
            parts["weighted_kl"] = sum(m.beta * m.kl for m in self._latents) * self.config.kl_weight
        return parts

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x = batch[0]
        p = self._losses(x, self.rng)
        loss = p["recon"] + p.get("weighted_kl", 0.0)
        values = {"loss": loss.item(), "recon": p["recon"].item()}
        if "kl" in p:
            values["kl"] = p["kl"].item()
        self._add("train", x.shape[0], **values)
        self.record(**values)
        return loss

    def _eval(self, name: str, batch) -> None:
        x = batch[0]
        for m in self._latents:      # one latent sample per image: the ELBO's estimate
            m.train()
        try:
            p = self._losses(x, self._eval_rng)
        finally:
            for m in self._latents:
                m.eval()
        values = {"loss": float(p["recon"] + p.get("kl", 0.0)), "recon": float(p["recon"]),
                  "mse": float((p["out"].reshape(x.shape) - x).pow(2).mean())}
        if "kl" in p:
            values["kl"] = p["kl"].item()
            values["elbo"] = -values["loss"]
        if self.corruption is not None:
            values["corruption_mse"] = float((p["fed"] - x).pow(2).mean())
        self._add(name, x.shape[0], **values)

    def on_validation_epoch_start(self) -> None:
        super().on_validation_epoch_start()
        self._eval_rng.manual_seed(int(self.config.seed) + 7)

    def on_test_epoch_start(self) -> None:
        super().on_test_epoch_start()
        self._eval_rng.manual_seed(int(self.config.seed) + 7)

    def configure_optimizers(self):
        return optimizer_for(self.model, self.config, self.config.lr, self.steps_per_epoch)

    # ---- the decoder on its own (prior samples, interpolation) ------------------------------
    @torch.no_grad()
    def decode(self, z: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Run the network with the first bottleneck's output replaced by ``z`` (N, latent...):
        the decoder half of the design, whatever its layout. ``like``: an input batch of N."""
        if not self._latents:
            raise ValueError("decode needs a variational bottleneck")
        handle = self._latents[0].register_forward_hook(lambda m, i, o: z.to(o))
        try:
            was = self.model.training
            self.model.eval()
            out = self.model(like)
            self.model.train(was)
        finally:
            handle.remove()
        return out[0] if isinstance(out, (tuple, list)) else out

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The latent mean of each input (eval mode)."""
        captured: list[torch.Tensor] = []
        handle = self._latents[0].register_forward_hook(lambda m, i, o: captured.append(o))
        try:
            was = self.model.training
            self.model.eval()
            self.model(x)
            self.model.train(was)
        finally:
            handle.remove()
        return captured[0]

    def output_to_range(self, out: torch.Tensor) -> torch.Tensor:
        """The network's output in the data's value range (bce outputs are probabilities)."""
        if self.loss_name == "bce":
            lo, hi = self.value_range
            return out * (hi - lo) + lo
        return out

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """vae: n images decoded from the prior N(0, I), in the data's value range."""
        latent = self._latent_shape()
        z = torch.randn((n, *latent), generator=generator or self.rng).to(self.device)
        like = torch.zeros((n, *self._input_shape()), device=self.device)
        return torch.cat([self.output_to_range(self.decode(z[i:i + 256], like[i:i + 256]))
                          for i in range(0, n, 256)])

    def _input_shape(self) -> tuple[int, ...]:
        return tuple(self.input_shape)

    def _latent_shape(self) -> tuple[int, ...]:
        return tuple(self.latent_shape)

    input_shape: tuple[int, ...] = ()
    latent_shape: tuple[int, ...] = ()
