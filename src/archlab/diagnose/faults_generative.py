"""Generative fault set-ups: faulty and healthy GAN / VAE / autoencoder runs for the fault suite.

Each set-up is an ``archlab train`` call on a fixed subset of mnist5k (1,200 images, batch 32)
with the generative health detectors of :mod:`archlab.diagnose.generative` at their default
thresholds. A fault is *found* when one of its expected detectors fires, or, for faults the
pair checks exist to stop, when training refuses to start with a :class:`PairError`; a healthy
set-up passes when nothing fires. The thresholds were set from the losses' own scales before any
of these runs (see the detectors' module); ``held_out`` marks set-ups kept apart from any later
adjustment, reported separately by benchmarks/fault_suite.py.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

PAIR_CHECK = "pair_check"
GAN = {"design": "dcgan_mnist_generator", "task": "gan", "discriminator": "dcgan_mnist_discriminator",
       "d_variables": {"ndf": 32}}
# the zoo pair's widths when the set-ups were defined and first measured (the zoo's defaults
# later became DCGAN's nz 100, ngf/ndf 64): pinned, so the set-ups do not move with the zoo
ZOO_G_PIN = {"nz": 64, "ngf": 32}
# a deeper generator (three 2x upsamplings from 7x7 would overshoot 28: one extra stride-1 layer)
DEEP_G = {
    "archlab": 1, "name": "deep_generator", "input": [64],
    "variables": {"norm": "batch", "width": 64},
    "defaults": {"norm": "$norm", "act": "relu", "order": "norm_act"},
    "layers": [
        {"name": "latent", "block": "reshape", "shape": [64, 1, 1]},
        {"name": "up1", "block": "conv_transpose", "out": "$(width * 2)", "kernel": 7, "stride": 1, "padding": 0},
        {"name": "mid1", "block": "conv", "out": "$(width * 2)"},
        {"name": "up2", "block": "conv_transpose", "out": "$width", "kernel": 4, "stride": 2},
        {"name": "mid2", "block": "conv", "out": "$width"},
        {"name": "mid3", "block": "conv", "out": "$width"},
        {"name": "image", "block": "conv_transpose", "out": 1, "kernel": 4, "stride": 2, "norm": "none",
         "act": "tanh", "bias": True},
    ],
}


# eight sigmoid layers before the image: the backward signal shrinks by <= 0.25 per layer
DEEP_SIGMOID_G = {
    "archlab": 1, "name": "deep_sigmoid_generator", "input": [16],
    "layers": [*({"name": f"h{i}", "block": "linear", "out": 64, "act": "sigmoid"} for i in range(8)),
               {"name": "pixels", "block": "linear", "out": 784, "act": "tanh"},
               {"name": "image", "block": "reshape", "shape": [1, 28, 28]}],
}
# the reduced form (CI): a few hundred images, small batches, narrow networks, few epochs
REDUCED_SAMPLES = 400
REDUCED = {"batch": 16}
NARROW_GAN = {"variables": {"ngf": 8}, "d_variables": {"ndf": 8}}
R_GAN = {"epochs": 10, **NARROW_GAN}   # 200 steps: mode_collapse judges from step 200 on
R_VAE = {"epochs": 3}


@dataclass
class GenerativeSetup:
    name: str
    problem: str
    options: dict[str, Any]
    expected: tuple[str, ...] = ()        # detectors (or 'pair_check') that should fire; () = healthy
    held_out: bool = False
    variables: dict = field(default_factory=dict)
    reduced: dict = field(default_factory=dict)   # overrides of the reduced form (epochs, widths)

    @property
    def healthy(self) -> bool:
        return not self.expected


def _relu_generator() -> str:
    from ..zoo import path

    text = path("dcgan_mnist_generator").read_text()
    return text.replace("name: dcgan_mnist_generator", "name: relu_generator").replace(
        "act: tanh", "act: relu")


def _sigmoid_discriminator() -> str:
    from ..zoo import path

    text = path("dcgan_mnist_discriminator").read_text()
    return text.replace("name: dcgan_mnist_discriminator", "name: sigmoid_discriminator").replace(
        "norm: none, act: none}", "norm: none, act: sigmoid}")


def setups() -> list[GenerativeSetup]:
    """The generative set-ups (healthy and faulty), in a fixed order."""
    s = [
        # healthy: DCGAN defaults, hinge, vae, denoising autoencoder
        GenerativeSetup("healthy_dcgan", "none (DCGAN defaults)", {**GAN, "epochs": 8}, reduced=R_GAN),
        GenerativeSetup("healthy_vae", "none", {"design": "vae_mnist", "task": "vae", "epochs": 6}, reduced=R_VAE),
        GenerativeSetup("healthy_dae", "none (mask=0.5)", {"design": "autoencoder_mnist", "task": "autoencoder",
                                                           "corrupt": "mask=0.5", "epochs": 4}, reduced=R_VAE),
        GenerativeSetup("healthy_hinge", "none (hinge loss)", {**GAN, "gan_loss": "hinge", "epochs": 8},
                        held_out=True, reduced=R_GAN),
        # faults the pair checks stop before training
        GenerativeSetup("relu_generator_output", "generator ends with ReLU (samples cannot be negative)",
                        {**GAN, "design": _relu_generator()}, (PAIR_CHECK,)),
        GenerativeSetup("sigmoid_discriminator", "sigmoid before a logits loss",
                        {**GAN, "discriminator": _sigmoid_discriminator()}, (PAIR_CHECK,)),
        GenerativeSetup("wgan_gp_batchnorm_critic", "batch norm in a WGAN-GP critic",
                        {**GAN, "gan_loss": "wgan-gp"}, (PAIR_CHECK,), held_out=True),
        # training-time faults
        GenerativeSetup("d_lr_10x", "discriminator lr 10x the generator's",
                        {**GAN, "d_lr": 2e-3, "d_steps": 1, "epochs": 8}, ("d_overpowering", "mode_collapse"),
                        reduced=R_GAN),
        GenerativeSetup("d_steps_5_lr_5x", "5 discriminator steps per generator step at 5x lr",
                        {**GAN, "d_lr": 1e-3, "d_steps": 5, "epochs": 8}, ("d_overpowering", "mode_collapse"),
                        held_out=True, reduced=R_GAN),
        GenerativeSetup("deep_generator_no_norm", "no normalisation in a deep generator",
                        {**GAN, "design": DEEP_G, "epochs": 8}, ("mode_collapse", "d_overpowering"),
                        variables={"norm": "none"}, reduced={**R_GAN, "variables": {"width": 16}}),
        GenerativeSetup("lr_huge", "learning rate 100x DCGAN's, beta1 0.9",
                        {**GAN, "lr": 2e-2, "betas": (0.9, 0.999), "epochs": 6},
                        ("gan_oscillation", "d_overpowering", "mode_collapse", "gan_nonfinite"), reduced=R_GAN),
        GenerativeSetup("kl_weight_0", "vae KL weight 0", {"design": "vae_mnist", "task": "vae", "kl_weight": 0.0,
                                                            "epochs": 6}, ("prior_ignored", "mode_collapse"),
                        reduced=R_VAE),
        GenerativeSetup("kl_weight_100", "vae KL weight 100", {"design": "vae_mnist", "task": "vae",
                                                                "kl_weight": 100.0, "epochs": 6},
                        ("kl_collapse", "mode_collapse"), reduced=R_VAE),
        # added after the first split, for the detectors that had never fired in trained runs
        # (mode_collapse, gan_oscillation) and for the layer monitor inside generative runs; the
        # held-out one was drawn with random.Random(12).choice before any of them was run
        GenerativeSetup("latent_1", "a latent of one value (the generator draws a curve of images)",
                        {**GAN, "epochs": 8}, ("mode_collapse",), variables={"nz": 1}, reduced=R_GAN),
        GenerativeSetup("g_lr_50x", "generator lr 50x the discriminator's (1e-2 vs 2e-4)",
                        {**GAN, "lr": 1e-2, "d_lr": 2e-4, "epochs": 8},
                        ("gan_oscillation", "lr_too_high", "mode_collapse", "d_overpowering"), held_out=True,
                        reduced=R_GAN),
        GenerativeSetup("deep_sigmoid_generator", "eight sigmoid layers in the generator",
                        {**GAN, "design": DEEP_SIGMOID_G, "epochs": 4}, ("vanishing_gradients",),
                        reduced={"epochs": 2, "d_variables": {"ndf": 8}}),
    ]
    return s


_DATA = None


def data(samples: int = 1200):
    """The fixed subset of mnist5k every set-up trains on (its first ``samples`` images)."""
    global _DATA
    if _DATA is None or len(_DATA) != samples:
        from ..train.data import ArrayData, load_data

        d = load_data("mnist5k")
        _DATA = ArrayData(d.x[:samples], d.y[:samples], d.task, d.classes, "mnist5k")
    return _DATA


@dataclass
class Outcome:
    setup: str
    seed: int
    fired: list[str]
    found: bool          # faulty: an expected detector fired; healthy: nothing fired
    seconds: float
    message: str = ""


def run_setup(setup: GenerativeSetup, seed: int = 0, *, out: str | None = None, epochs: int | None = None,
              samples: int = 1200, reduced: bool = False) -> Outcome:
    """Train one set-up with the health detectors on and say what fired. ``reduced``: the CI
    form (:data:`REDUCED_SAMPLES` images, :data:`REDUCED` options and the set-up's own
    ``reduced`` overrides: narrower networks, fewer epochs)."""
    import archlab

    from ..train.generative import PairError

    opts = dict(setup.options)
    design = opts.pop("design")
    variables = dict(setup.variables)
    if design == "dcgan_mnist_generator":
        variables = {**ZOO_G_PIN, **variables}
    if reduced:
        samples = REDUCED_SAMPLES
        extra = {**REDUCED, **setup.reduced}
        variables.update(extra.pop("variables", {}))
        opts.update(extra)
    if epochs is not None:
        opts["epochs"] = epochs
    opts = {"batch": 32, "split": (0.8, 0.1, 0.1), "judge": False, "progress": False, "seed": seed, **opts}
    t0 = time.perf_counter()
    try:
        run = archlab.train(design, data(samples), variables=variables or None,
                            out=out or tempfile.mkdtemp(prefix="archlab-genfault-"), **opts)
    except PairError as err:
        fired = [PAIR_CHECK]
        return Outcome(setup.name, seed, fired, PAIR_CHECK in setup.expected, time.perf_counter() - t0, err.message)
    fired = sorted({e["detector"] for e in (run.summary.get("health") or {}).get("events", [])})
    found = (not fired) if setup.healthy else bool(set(fired) & set(setup.expected))
    return Outcome(setup.name, seed, fired, found, time.perf_counter() - t0)


def run_suite(seeds: int = 1, names=None, log=print) -> dict:
    """Run the generative set-ups over ``seeds`` seeds; print one line per run and the summary
    (found faults, quiet healthy runs), development and held-out set-ups apart."""
    import os

    chosen = [s for s in setups() if names is None or s.name in names]
    runs = []
    for s in chosen:
        for seed in range(seeds):
            o = run_setup(s, seed)
            runs.append((s, o))
            log(f"  [{'held-out' if s.held_out else 'dev':8s}] {s.name:26s} seed {seed}: {o.seconds:6.1f}s "
                f"fired {o.fired or '-'} -> {'ok' if o.found else 'MISSED' if not s.healthy else 'FALSE ALARM'} "
                f"(load {os.getloadavg()[0]:.1f})")
    out: dict = {}
    for part, held in (("dev", False), ("held-out", True)):
        faulty = [o for s, o in runs if s.held_out == held and not s.healthy]
        healthy = [o for s, o in runs if s.held_out == held and s.healthy]
        out[part] = {"faults_found": sum(o.found for o in faulty), "faults": len(faulty),
                     "healthy_quiet": sum(o.found for o in healthy), "healthy": len(healthy)}
        log(f"generative {part}: faults found {out[part]['faults_found']}/{len(faulty)}, healthy runs without "
            f"an alarm {out[part]['healthy_quiet']}/{len(healthy)}")
    out["runs"] = [o.__dict__ for _, o in runs]
    return out
