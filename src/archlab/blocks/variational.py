"""Variational bottleneck (Kingma & Welling 2014, "Auto-encoding variational Bayes").

The encoder's features are mapped to the mean and the log-variance of a diagonal Gaussian over
the latent code, and the block outputs a reparameterised sample ``z = mean + exp(logvar/2) * eps``
with ``eps ~ N(0, I)`` during training (the mean itself in eval mode, so evaluation is
deterministic). Vectors use linear maps, feature maps 1x1 convolutions (a latent per position).

The KL term is exposed for the loss. Convention: after every forward the module stores

    ``module.kl = mean over the batch of sum over latent elements of
    KL(N(mean, exp(logvar)) || N(0, I)) = 0.5 * sum(mean^2 + exp(logvar) - 1 - logvar)``

(a scalar tensor in the autograd graph), which pairs with a reconstruction loss *summed* over
the elements of each sample and averaged over the batch (the ELBO per sample). ``beta`` weights
it (Higgins et al. 2017, beta-VAE); :func:`kl_loss` adds ``beta * kl`` of every variational
bottleneck in a model, so a training step is ``loss = reconstruction + kl_loss(model)``. With a
reconstruction loss averaged over elements, set ``beta`` to 1 / (elements per sample) to keep the
same balance.
"""

from __future__ import annotations

from typing import Optional

import torch
from pydantic import Field, PositiveInt
from torch import nn

from ..errors import UsageError
from ..ops import Op, act_op, conv_op, linear_op, numel
from .base import Block, BlockParams, register_block
from .layers import CONV_CLASSES

# exp(logvar) overflows float32 above ~88 and a variance of exp(-30) is already a point mass:
# clamping keeps a diverging encoder from producing inf/NaN (numerical-safety epsilons, C12)
LOGVAR_RANGE = (-30.0, 20.0)


class VariationalBottleneck(nn.Module):
    """(N, C, *positions) -> (N, latent, *positions): Gaussian latent with the KL stored in
    ``self.kl`` after each forward (batch mean of the per-sample KL)."""

    def __init__(self, channels: int, latent: int, rank: int, beta: float = 1.0) -> None:
        super().__init__()
        if rank == 1:
            self.mean = nn.Linear(channels, latent)
            self.log_variance = nn.Linear(channels, latent)
        else:
            conv = CONV_CLASSES[rank - 1]
            self.mean = conv(channels, latent, 1)
            self.log_variance = conv(channels, latent, 1)
        self.beta = beta
        self.kl = None
        self.logvar_min, self.logvar_max = LOGVAR_RANGE  # attributes: TorchScript reads no globals

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = self.mean(x)
        logvar = self.log_variance(x).clamp(self.logvar_min, self.logvar_max)
        per_element = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar)
        self.kl = per_element.flatten(1).sum(1).mean()
        if not self.training:
            return mean
        return mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)


# the attribute's type as an object, not a postponed string: TorchScript reads it to compile a
# forward that stores a tensor where __init__ stored None
VariationalBottleneck.__annotations__["kl"] = Optional[torch.Tensor]  # noqa: UP045


def kl_loss(model: nn.Module) -> torch.Tensor:
    """``sum(beta * kl)`` over every :class:`VariationalBottleneck` in ``model``, from its last
    forward pass; add it to the reconstruction loss.

    Raises :class:`UsageError` when the model has no variational bottleneck or one has not run.
    """
    terms = []
    for path, module in model.named_modules():
        if isinstance(module, VariationalBottleneck):
            if module.kl is None:
                raise UsageError(
                    f"variational bottleneck '{path}' has no KL term yet: expected a forward pass "
                    "before kl_loss, received a module that has not run",
                    fix="call model(x) first, then kl_loss(model)",
                )
            terms.append(module.beta * module.kl)
    if not terms:
        raise UsageError(
            "kl_loss needs a model with a 'variational' block, received one without",
            fix="add a 'variational' node (e.g. variational: {latent: 16}) or drop the KL term",
        )
    return torch.stack(terms).sum()


class VariationalParams(BlockParams):
    """Settings of the variational bottleneck."""

    latent: PositiveInt = Field(..., description="latent width (per position for feature maps)")
    beta: float = Field(1.0, ge=0, description="weight of the KL term in kl_loss (1 = the ELBO; "
                        ">1 = beta-VAE, more disentangled, blurrier)")


@register_block
class Variational(Block):
    """Variational bottleneck: mean and log-variance, reparameterised sample, KL for the loss.

    Shapes: (F,) -> (latent,); (C, L) -> (latent, L); (C, H, W) -> (latent, H, W). Two linear
    maps (vectors) or two 1x1 convs (feature maps) give mean and log-variance; training outputs
    ``mean + exp(logvar/2) * eps``, eval outputs ``mean``. ``module.kl`` holds the batch-mean KL
    after each forward; :func:`archlab.blocks.variational.kl_loss` sums ``beta * kl`` over a
    model. Kingma & Welling 2014. Counts are for the inference form (eval, as analysed): the
    maps, the clamp and the KL; the training sample adds 4 element-wise operations per latent
    value (scale, exp, multiply by the noise, add).

    >>> from archlab.blocks import BLOCKS
    >>> p = BLOCKS['variational'].Params(latent=16)
    >>> BLOCKS['variational'].output_shape(p, [(256,)])
    (16,)
    """

    name = "variational"
    family = "generative"
    Params = VariationalParams
    width_fields = ("latent",)
    inherits = ()
    examples = [
        ({"latent": 8}, [(32,)]),
        ({"latent": 4, "beta": 4.0}, [(16, 5, 6)]),
        ({"latent": 3}, [(6, 10)]),
    ]

    @classmethod
    def output_shape(cls, p, inputs):
        cls.check_inputs(inputs)
        return (p.latent, *inputs[0][1:])

    @classmethod
    def ops(cls, p, inputs) -> list[Op]:
        inp = tuple(inputs[0])
        out = cls.output_shape(p, inputs)
        if len(inp) == 1:
            maps = [linear_op(path, inp, out) for path in ("mean", "log_variance")]
        else:
            kernel = (1,) * (len(inp) - 1)
            maps = [conv_op(path, inp, out, kernel, bias=True) for path in ("mean", "log_variance")]
        n = numel(out)
        return [
            *maps,
            act_op("", "clamp", out),                     # the log-variance's safe range
            # the KL per element: mean^2, exp(logvar), +, -1, -logvar, *0.5, sum; then the
            # batch mean (one operation per sample)
            Op("kl_divergence", "", (out, out), (), elementwise=7 * n + 1),
        ]

    @classmethod
    def build(cls, p, inputs):
        inp = inputs[0]
        return VariationalBottleneck(inp[0], p.latent, len(inp), p.beta)
