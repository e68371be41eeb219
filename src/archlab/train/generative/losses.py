"""Losses of the generative tasks.

GAN losses take the discriminator's raw scores (no sigmoid):

============ ============================================== ==========================================
loss         discriminator                                  generator
============ ============================================== ==========================================
ns (default) -log sigmoid(D(x)) - log(1 - sigmoid(D(G(z)))) -log sigmoid(D(G(z))) (non-saturating,
             (real targets 1 - label_smoothing)             Goodfellow et al. 2014)
hinge        relu(1 - D(x)) + relu(1 + D(G(z)))             -D(G(z)) (Lim & Ye 2017; Miyato 2018)
wgan-gp      D(G(z)) - D(x) + gp_weight x (|grad D(x_hat)|  -D(G(z)) (Gulrajani et al. 2017)
             - 1)^2 on random interpolates x_hat
============ ============================================== ==========================================

Any of them can add R1 (Mescheder et al. 2018): ``r1 / 2 x ||grad_x D(x)||^2`` on the real images
the discriminator sees, averaged over the batch (:func:`r1_penalty`; GAN module attribute ``r1``,
0 = off, the default).

Reconstruction losses are summed over the elements of each sample and averaged over the batch
(the per-sample convention of the ELBO, so ``beta x KL`` keeps its published meaning);
``bce`` takes probabilities (a sigmoid output), clamped away from 0 and 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

GAN_LOSSES = ("ns", "hinge", "wgan-gp")
RECON_LOSSES = ("mse", "bce", "l1")


def discriminator_loss(kind: str, real: torch.Tensor, fake: torch.Tensor,
                       smoothing: float = 0.0) -> torch.Tensor:
    """Scores (N, ...) of real and generated samples -> the discriminator's loss (no penalty)."""
    if kind == "ns":
        target = torch.full_like(real, 1.0 - smoothing)
        return (F.binary_cross_entropy_with_logits(real, target)
                + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))
    if kind == "hinge":
        return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()
    return fake.mean() - real.mean()


def generator_loss(kind: str, fake: torch.Tensor) -> torch.Tensor:
    if kind == "ns":
        return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))
    return -fake.mean()


def gradient_penalty(discriminator, real: torch.Tensor, fake: torch.Tensor,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """WGAN-GP: mean of (||grad_x D(x_hat)||_2 - 1)^2 at x_hat between real and fake samples."""
    n = real.shape[0]
    alpha = torch.rand((n,) + (1,) * (real.dim() - 1), generator=generator).to(real)
    x_hat = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    scores = discriminator(x_hat)
    (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1.0).pow(2).mean()


def r1_penalty(real_input: torch.Tensor, real_scores: torch.Tensor) -> torch.Tensor:
    """R1 (Mescheder et al. 2018): the batch mean of ``||grad_x D(x)||_2^2`` at the real images
    ``real_input`` (a leaf that requires grad, from which ``real_scores`` were computed), with
    the graph kept so the penalty trains the discriminator."""
    (grad,) = torch.autograd.grad(real_scores.sum(), real_input, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()


def reconstruction_loss(kind: str, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample sum over elements, batch mean."""
    out = out.reshape(target.shape)
    if kind == "bce":
        err = F.binary_cross_entropy(out.clamp(1e-6, 1 - 1e-6), target.clamp(0, 1), reduction="none")
    elif kind == "l1":
        err = (out - target).abs()
    else:
        err = (out - target).pow(2)
    return err.flatten(1).sum(1).mean()


def probability_of_real(kind: str, scores: torch.Tensor) -> torch.Tensor:
    """What the discriminator's scores say about 'real', for health records: sigmoid(score) for
    the logistic (ns) loss; for hinge and WGAN the raw score (no probability meaning)."""
    return torch.sigmoid(scores) if kind == "ns" else scores
