"""Generative health detectors on constructed runs (faulty and healthy), with a held-out part
built from other random draws and other magnitudes than the development cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from archlab.diagnose.generative import GENERATIVE_DETECTORS, GenerativeRecord, assess


def gan_record(rng, n=400, *, d_loss=1.2, d_real=0.62, d_fake=0.38, g_grad=1.0, noise=0.05,
               spread=0.8, covered=10, loss="ns", late=None, nan_at=None, flip_every=None, near=None):
    """A GAN's per-step record; ``late`` overrides the last quarter's values (a fault setting in)."""
    steps = []
    for i in range(n):
        v = {"d_loss": d_loss, "d_real": d_real, "d_fake": d_fake, "g_grad": g_grad}
        if late and i >= 3 * n // 4:
            v.update(late)
        if flip_every and i >= n // 2 and (i // flip_every) % 2:
            v["d_real"], v["d_fake"] = v["d_fake"], v["d_real"]
        r = {"step": i, "epoch": i // 50}
        for k, x in v.items():
            r[k] = float(max(1e-6, x * (1 + noise * rng.standard_normal())))
        r["g_loss"] = float(-math.log(max(r["d_fake"], 1e-6)))
        if nan_at is not None and i == nan_at:
            r["g_loss"] = float("nan")
        steps.append(r)
    epochs = [{"epoch": e, "sample_spread": spread, "classes_covered": covered,
               **({"neighbour_ratio": near} if near is not None else {})} for e in range(n // 50)]
    return GenerativeRecord("gan", steps, epochs, loss, classes=10)


def vae_record(rng, kl, latent=16, n=300, noise=0.05):
    steps = [{"step": i, "epoch": i // 50, "loss": 120.0, "recon": 100.0,
              "kl": float(kl * (1 + noise * rng.standard_normal()))} for i in range(n)]
    return GenerativeRecord("vae", steps, [{"epoch": 5, "sample_spread": 0.7}], latent_units=latent, classes=10)


def fired(record):
    return {v.detector for v in assess(record)}


# (name, builder(rng) -> record, expected detectors; empty = healthy)
DEVELOPMENT = [
    ("healthy_gan", lambda r: gan_record(r), set()),
    ("healthy_hinge", lambda r: gan_record(r, loss="hinge", d_real=0.8, d_fake=-0.7, d_loss=1.5), set()),
    ("d_wins", lambda r: gan_record(r, late={"d_loss": 0.02, "d_real": 0.99, "d_fake": 0.01}), {"d_overpowering"}),
    ("g_grad_vanishes", lambda r: gan_record(r, loss="hinge", late={"g_grad": 1e-4}), {"d_overpowering"}),
    ("collapsed", lambda r: gan_record(r, spread=0.1), {"mode_collapse"}),
    ("few_classes", lambda r: gan_record(r, covered=3), {"mode_collapse"}),
    ("oscillating", lambda r: gan_record(r, d_real=0.85, d_fake=0.15, flip_every=25), {"gan_oscillation"}),
    ("nan", lambda r: gan_record(r, nan_at=137), {"gan_nonfinite"}),
    ("near_copies", lambda r: gan_record(r, near=0.1), {"mode_collapse"}),
    ("healthy_neighbours", lambda r: gan_record(r, near=0.9), set()),
    ("healthy_vae", lambda r: vae_record(r, kl=25.0), set()),
    ("posterior_collapse", lambda r: vae_record(r, kl=0.05), {"kl_collapse"}),
    ("prior_ignored", lambda r: vae_record(r, kl=400.0), {"prior_ignored"}),
]
# other draws and other magnitudes, never used to set a threshold
HELD_OUT = [
    ("healthy_gan_noisy", lambda r: gan_record(r, n=600, d_loss=0.9, d_real=0.7, d_fake=0.3, noise=0.2), set()),
    ("healthy_gan_balanced", lambda r: gan_record(r, d_loss=1.38, d_real=0.5, d_fake=0.49, spread=0.5, covered=9), set()),
    ("d_wins_late", lambda r: gan_record(r, n=800, late={"d_loss": 0.005, "d_real": 0.999, "d_fake": 0.002}),
     {"d_overpowering"}),
    ("collapse_spread", lambda r: gan_record(r, n=1000, spread=0.05, covered=1), {"mode_collapse"}),
    ("oscillating_slow", lambda r: gan_record(r, n=1200, d_real=0.9, d_fake=0.1, flip_every=60), {"gan_oscillation"}),
    ("inf_grad", lambda r: gan_record(r, nan_at=5), {"gan_nonfinite"}),
    ("curve_of_images", lambda r: gan_record(r, n=700, near=0.3, spread=0.9), {"mode_collapse"}),
    ("noise_like_neighbours", lambda r: gan_record(r, n=500, near=1.7), set()),
    ("healthy_vae_small_latent", lambda r: vae_record(r, kl=12.0, latent=4), set()),
    ("posterior_collapse_2", lambda r: vae_record(r, kl=0.2, latent=32), {"kl_collapse"}),
    ("prior_ignored_2", lambda r: vae_record(r, kl=700.0, latent=32), {"prior_ignored"}),
]


@pytest.mark.parametrize("name, build, expected", DEVELOPMENT, ids=[c[0] for c in DEVELOPMENT])
def test_development_cases(name, build, expected):
    assert fired(build(np.random.default_rng(0))) == expected


@pytest.mark.parametrize("name, build, expected", HELD_OUT, ids=[c[0] for c in HELD_OUT])
def test_held_out_cases(name, build, expected):
    for seed in (11, 12):
        assert fired(build(np.random.default_rng(seed))) == expected


def test_verdicts_show_measured_values_thresholds_and_fixes():
    [v] = assess(gan_record(np.random.default_rng(0), late={"d_loss": 0.02, "d_real": 0.99, "d_fake": 0.01}))
    assert v.evidence["median_d_loss"] < 0.1 and v.thresholds["d_loss_max"] == 0.1
    assert any("--d-lr" in f for f in v.fixes)
    assert "median D loss" in v.message


def test_short_runs_are_not_judged_for_collapse():
    record = gan_record(np.random.default_rng(0), n=100, spread=0.05)
    assert "mode_collapse" not in fired(record)


def test_thresholds_can_be_overridden():
    record = gan_record(np.random.default_rng(0), spread=0.4)
    assert not assess(record)
    assert {v.detector for v in assess(record, {"mode_collapse": {"spread_min": 0.5}})} == {"mode_collapse"}


def test_every_detector_documents_rule_thresholds_and_fixes():
    for name, cls in GENERATIVE_DETECTORS.items():
        assert cls.rule and cls.fixes and cls.tasks, name


def test_neighbour_ratio_against_its_definition():
    """Real images against themselves: 1; copies: 0; 64 points on the segment between two real
    images (a one-value latent's curve): their spacing, far below the real images' neighbours."""
    import torch

    from archlab.train.data import load_data
    from archlab.train.generative.run import nearest_distance, neighbour_ratio

    real = load_data("mnist5k").x[:64].float() / 255
    assert neighbour_ratio(real, real) == pytest.approx(1.0)
    assert neighbour_ratio(real[:1].repeat(64, 1, 1, 1), real) == 0.0
    t = torch.linspace(0, 1, 64).view(-1, 1, 1, 1)
    line = real[0] * (1 - t) + real[1] * t
    spacing = float((real[0] - real[1]).norm()) / 63
    assert neighbour_ratio(line, real) == pytest.approx(spacing / float(nearest_distance(real)), rel=1e-6)
    assert neighbour_ratio(line, real) < 0.1
