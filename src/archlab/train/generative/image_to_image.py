"""Image-to-image: an input image -> a target image (pix2pix, Isola et al. 2017).

loss = reconstruction (``l1`` default: sharper than MSE; or ``mse``) per sample, batch mean, plus,
when a discriminator is given, ``adversarial`` x the generator's non-saturating GAN loss. The
discriminator is conditional when it takes the input and the output side by side (channels =
both), as pix2pix's patch discriminator. With no discriminator the module trains the
reconstruction loss alone (manual optimisation either way, so both share one code path).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .base import GenerativeModule, grad_norm, optimizer_for
from .losses import discriminator_loss, generator_loss, reconstruction_loss


class ImageToImageModule(GenerativeModule):
    def __init__(self, generator: nn.Module, discriminator: nn.Module | None, loss: str, config,
                 steps_per_epoch: int, value_range=(0.0, 1.0), conditional: bool = True,
                 checkpoint_extra=None) -> None:
        super().__init__(config, steps_per_epoch, value_range, checkpoint_extra)
        self.automatic_optimization = False
        self.generator = generator
        self.discriminator = discriminator
        self.loss_name = loss
        self.conditional = conditional

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.generator(x)

    def _judge(self, source: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.discriminator(torch.cat([source, image], 1) if self.conditional else image)

    def configure_optimizers(self):
        c = self.config
        opts = [optimizer_for(self.generator, c, c.lr, self.steps_per_epoch)["optimizer"]]
        if self.discriminator is not None:
            opts.append(optimizer_for(self.discriminator, c, c.d_lr or c.lr, self.steps_per_epoch)["optimizer"])
        return opts

    def training_step(self, batch, batch_idx: int) -> None:
        source, target = batch
        opts = self.optimizers()
        opts = opts if isinstance(opts, (list, tuple)) else [opts]
        out = self.generator(source)
        record: dict[str, float] = {}
        if self.discriminator is not None:
            real = self._judge(source, target)
            fake = self._judge(source, out.detach())
            d_loss = discriminator_loss("ns", real, fake, self.config.label_smoothing)
            opts[1].zero_grad(set_to_none=True)
            self.manual_backward(d_loss)
            record["d_grad"] = grad_norm(self.discriminator)
            opts[1].step()
            record.update(d_loss=d_loss.item(), d_real=float(torch.sigmoid(real.detach()).mean()),
                          d_fake=float(torch.sigmoid(fake.detach()).mean()))
        recon = reconstruction_loss(self.loss_name, out, target)
        loss = recon
        if self.discriminator is not None:
            g_adv = generator_loss("ns", self._judge(source, out))
            loss = recon + self.config.adversarial * target[0].numel() * g_adv
            record["g_loss"] = g_adv.item()
        opts[0].zero_grad(set_to_none=True)
        self.manual_backward(loss)
        record["g_grad"] = grad_norm(self.generator)
        opts[0].step()
        record.update(loss=loss.item(), recon=recon.item())
        self.record(**record)
        self._add("train", source.shape[0], **{k: v for k, v in record.items() if not k.endswith("grad")})
        if not all(math.isfinite(v) for v in record.values()):
            self.trainer.should_stop = True

    def _eval(self, name: str, batch) -> None:
        source, target = batch
        out = self.generator(source)
        self._add(name, source.shape[0], loss=float(reconstruction_loss(self.loss_name, out, target)),
                  mse=float((out - target).pow(2).mean()), l1=float((out - target).abs().mean()),
                  input_mse=float((source[:, :target.shape[1]] - target).pow(2).mean())
                  if source.shape == target.shape else float("nan"))

