"""``archlab check`` for generative designs: the pair, the losses at initialisation, gradient flow
through the discriminator into the generator, and a tiny-batch overfit.

=========================== ===========================================================================
check                       rule
=========================== ===========================================================================
pair                        the shape and activation checks of :mod:`.pair` (fail with the fix)
loss_at_init                gan: a fresh discriminator is undecided, so its raw scores are near 0: the
                            ns losses are near 2 ln 2 = 1.386 (D) and ln 2 = 0.693 (G); warn when the
                            mean |score| exceeds 2 (sigmoid outside 0.12..0.88: one net starts ahead)
generator_gradient_flow     gan, image-to-image: the generator's loss, back-propagated through the
                            discriminator, reaches every generator layer with a finite non-zero gradient
discriminator_overfit       gan: the discriminator separates 8 real images from 8 fixed generated ones
                            (every real scored above every fake and the loss below 0.1) within the steps
overfit_tiny_batch          vae, autoencoder, image-to-image: the reconstruction loss of 8 images falls
                            to below half its initial value within the steps
=========================== ===========================================================================
"""

from __future__ import annotations

import copy
import math

import torch

from .losses import discriminator_loss, generator_loss, reconstruction_loss

LN2 = math.log(2.0)


def _result(name, status, message, evidence=None, fixes=None, layers=None):
    from ...diagnose.checks import CheckResult

    return CheckResult(name, status, message, evidence or {}, fixes or [], layers or [])


def check_generative(design, data, *, variables: dict | None = None, examples: int = 64,
                     overfit_examples: int = 8, overfit_steps: int = 200, seed: int = 0, **options):
    """The generative checks as a :class:`archlab.diagnose.checks.CheckReport`."""
    from ...diagnose.checks import CheckReport
    from ..config import make_config
    from .pair import PairError
    from .setup import prepare_generative, with_task_defaults

    task = options.get("task")
    config = make_config(with_task_defaults({**options, "seed": seed, "progress": False}))
    name = str(getattr(design, "name", design))
    try:
        setup = prepare_generative(design, data, config, variables=variables)
    except PairError as err:
        report = CheckReport(name, str(data), task)
        report.checks.append(_result("pair", "fail", err.message, {"where": err.where()},
                                     [err.fix] if err.fix else []))
        return report
    report = CheckReport(setup.design.name, setup.data.source, task)
    pair = f"{setup.design.name} + {setup.discriminator_design.name}" if setup.discriminator_design else setup.design.name
    report.checks.append(_result("pair", "pass", f"{pair}: shapes and final activations fit the {task} loss",
                                 {"value_range": list(setup.value_range)}))
    torch.manual_seed(seed)
    ds = setup.datamodule.split("train")
    pick = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:examples]
    x, y = ds.x[pick], ds.y[pick]
    if task == "gan":
        from .gan import class_inputs

        # a class-conditional pair: the generator is asked for each real image's class and the
        # discriminator's score is the one of that class (ClassScore), for real and generated alike
        classes = int(setup.classes)
        wrap = (lambda net, labels: ClassScore(net, labels, classes)) if classes else (lambda net, labels: net)
        g, d = copy.deepcopy(setup.model).train(), wrap(copy.deepcopy(setup.discriminator).train(), y)
        z = torch.randn((len(x), int(setup.design.input_shape[0]) - classes),
                        generator=torch.Generator().manual_seed(seed))
        z = class_inputs(z, classes, y)
        report.checks.append(gan_loss_at_init(g, d, x, z, config.gan_loss))
        report.checks.append(generator_gradient_flow(g, lambda: generator_loss(config.gan_loss, d(g(z))),
                                                     setup.node_paths))
        k = min(overfit_examples, len(x))
        report.checks.append(discriminator_overfit(wrap(copy.deepcopy(setup.discriminator).train(), y[:k]), x[:k],
                                                   copy.deepcopy(setup.model).eval(), z[:k], overfit_steps))
        return report
    module = copy.deepcopy(setup.module)
    if task == "image-to-image":
        g = module.generator.train()
        report.checks.append(generator_gradient_flow(
            g, lambda: reconstruction_loss(setup.loss, g(x), y), setup.node_paths))
        fn = lambda m, a, b: reconstruction_loss(setup.loss, m(a), b)  # noqa: E731
        report.checks.append(overfit_reconstruction(copy.deepcopy(setup.model).train(), x[:overfit_examples],
                                                    y[:overfit_examples], fn, overfit_steps))
        return report
    k = min(overfit_examples, len(x))
    rng = torch.Generator().manual_seed(seed)

    def fn(m, a, b):
        module.model = m
        module._latents = [mod for mod in m.modules() if type(mod).__name__ == "VariationalBottleneck"]
        p = module._losses(a, rng)
        return p["recon"] + p.get("weighted_kl", 0.0)

    report.checks.append(overfit_reconstruction(copy.deepcopy(setup.model).train(), x[:k], x[:k], fn, overfit_steps))
    return report


class ClassScore(torch.nn.Module):
    """A class-conditional discriminator read as the gan task reads it: the score of class
    ``labels[i]`` for image i (one label per image of the batches it is given)."""

    def __init__(self, discriminator: torch.nn.Module, labels: torch.Tensor, classes: int) -> None:
        super().__init__()
        self.discriminator, self.classes = discriminator, int(classes)
        self.register_buffer("labels", labels.long().view(-1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        scores = self.discriminator(images).reshape(len(images), self.classes)
        return scores.gather(1, self.labels[:len(images)])


def gan_loss_at_init(g, d, x, z, kind: str):
    with torch.no_grad():
        fake = g(z)
        real_s, fake_s = d(x), d(fake)
        d_loss = float(discriminator_loss(kind, real_s, fake_s))
        g_loss = float(generator_loss(kind, fake_s))
    score = float(torch.cat([real_s.flatten(), fake_s.flatten()]).abs().mean())
    expected = {"ns": (2 * LN2, LN2), "hinge": (2.0, 0.0), "wgan-gp": (0.0, 0.0)}[kind]
    ev = {"d_loss": d_loss, "g_loss": g_loss, "expected_d_loss": expected[0], "expected_g_loss": expected[1],
          "mean_abs_score": score, "limit_mean_abs_score": 2.0}
    if not (math.isfinite(d_loss) and math.isfinite(g_loss)):
        return _result("loss_at_init", "fail", f"the losses at initialisation are not finite (D {d_loss}, G {g_loss})",
                       ev, ["check the designs with archlab gradcheck; look for log/div of zero"])
    msg = (f"D loss {d_loss:.3f} (expected ~{expected[0]:.3f} for an undecided discriminator), "
           f"G loss {g_loss:.3f} (expected ~{expected[1]:.3f}); mean |score| {score:.3g}")
    if score > 2.0:
        return _result("loss_at_init", "warn", msg + ": the discriminator starts decided, one net is ahead "
                       "before training", ev, ["initialise the last layer smaller (DCGAN: N(0, 0.02) weights)",
                                               "check the input range of the discriminator"])
    return _result("loss_at_init", "pass", msg, ev)


def generator_gradient_flow(g, loss_fn, node_paths):
    from ..checkpoint import node_path_of

    g.zero_grad(set_to_none=True)
    loss = loss_fn()
    loss.backward()
    missing, bad, norms = [], [], {}
    for name, p in g.named_parameters():
        node = node_path_of(name, node_paths)
        if p.grad is None or float(p.grad.abs().sum()) == 0.0:
            missing.append(node)
        elif not torch.isfinite(p.grad).all():
            bad.append(node)
        else:
            norms[node] = norms.get(node, 0.0) + float(p.grad.norm()) ** 2
    norms = {k: v ** 0.5 for k, v in norms.items()}
    missing = sorted(set(missing))
    ev = {"generator_loss": loss.item(), "grad_norm_by_node": norms}
    if bad:
        return _result("generator_gradient_flow", "fail", f"non-finite gradients in {', '.join(sorted(set(bad)))}",
                       ev, ["look for a log or division of zero"], sorted(set(bad)))
    if missing:
        return _result("generator_gradient_flow", "fail",
                       f"no gradient reaches generator node(s) {', '.join(missing)} through the discriminator",
                       ev, ["check for a detach() or a non-differentiable op between the nets",
                            "a saturated final activation (sigmoid on the discriminator) stops the gradient"], missing)
    low = min(norms.values()) if norms else 0.0
    return _result("generator_gradient_flow", "pass",
                   f"every generator node gets a gradient (smallest node norm {low:.3g})", ev)


def discriminator_overfit(d, real, g, z, steps: int):
    with torch.no_grad():
        fake = g(z)
    opt = torch.optim.Adam(d.parameters(), lr=1e-3, betas=(0.5, 0.999))
    loss = float("nan")
    for step in range(1, steps + 1):
        real_s, fake_s = d(real), d(fake)
        lossv = discriminator_loss("ns", real_s, fake_s)
        opt.zero_grad()
        lossv.backward()
        opt.step()
        loss = lossv.item()
        separated = float(real_s.detach().min()) > float(fake_s.detach().max())
        if separated and loss < 0.1:
            return _result("discriminator_overfit", "pass",
                           f"the discriminator separates {len(real)} real from {len(fake)} generated images "
                           f"in {step} steps (loss {loss:.3g})", {"steps": step, "loss": loss, "limit_loss": 0.1})
    return _result("discriminator_overfit", "fail",
                   f"the discriminator cannot separate {len(real)} real from {len(fake)} fixed generated "
                   f"images in {steps} steps (loss {loss:.3g}, limit 0.1)", {"steps": steps, "loss": loss},
                   ["a discriminator that cannot memorise 16 images has a bug: check for a frozen or "
                    "dead layer, a final activation, or an input range different from the data's"])


def overfit_reconstruction(model, x, target, loss_fn, steps: int):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    first = last = float("nan")
    for step in range(1, steps + 1):
        loss = loss_fn(model, x, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        last = loss.item()
        if step == 1:
            first = last
        elif last < 0.5 * first:
            return _result("overfit_tiny_batch", "pass",
                           f"the reconstruction loss of {len(x)} images fell from {first:.4g} to {last:.4g} "
                           f"in {step} steps", {"first": first, "last": last, "steps": step})
    return _result("overfit_tiny_batch", "fail",
                   f"the reconstruction loss of {len(x)} images went from {first:.4g} to {last:.4g} in {steps} "
                   "steps (expected below half)", {"first": first, "last": last, "steps": steps},
                   ["check the output activation against the data range, and for frozen or dead layers"])
