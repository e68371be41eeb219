"""Generative tasks end to end (tiny), corruption, losses and sample metrics against oracles."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F

import archlab
from archlab.errors import UsageError
from archlab.judge import class_coverage, frechet_distance, precision_recall
from archlab.train.data import ArrayData, load_data
from archlab.train.generative import Corruption
from archlab.train.generative.losses import (
    discriminator_loss,
    generator_loss,
    gradient_penalty,
    reconstruction_loss,
)

FAST = dict(epochs=1, batch=32, progress=False, judge=False, split=(0.6, 0.2, 0.2))


@pytest.fixture(scope="module")
def digits300():
    d = load_data("mnist5k")
    return ArrayData(d.x[:240], d.y[:240], d.task, d.classes, "mnist5k")


# ------------------------------------------------------------------------ tasks, tiny ---------


def test_gan_trains_and_writes_samples_each_epoch(digits300, tmp_path):
    run = archlab.train("dcgan_mnist_generator", digits300, task="gan", variables={"ngf": 8},
                        discriminator="dcgan_mnist_discriminator", d_variables={"ndf": 8},
                        d_steps=2, label_smoothing=0.1, d_lr=4e-4, out=str(tmp_path), **{**FAST, "epochs": 2})
    assert run.config.betas == (0.5, 0.999) and run.config.lr == 2e-4      # DCGAN's Adam defaults
    assert (run.path / "samples" / "epoch_000.png").exists() and (run.path / "samples" / "epoch_001.png").exists()
    assert (run.path / "discriminator.yaml").exists() and (run.path / "discriminator.safetensors").exists()
    rows = [json.loads(line) for line in (run.path / "health" / "generative.jsonl").read_text().splitlines()]
    steps_per_epoch = 5  # 144 training images / batch 32
    assert len(rows) == 2 * steps_per_epoch
    assert sum("g_loss" in r for r in rows) == len(range(0, 2 * steps_per_epoch, 2))  # every 2nd batch
    assert {"d_loss", "d_real", "d_fake", "d_grad"} <= set(rows[0])
    # the generator rebuilt from the run folder produces images in the tanh range
    g = run.model()
    assert g(torch.randn(3, 64)).shape == (3, 1, 28, 28)
    s = run.scaling
    assert s.apply(torch.tensor([[[[0.0]]], [[[255.0]]]])).flatten().tolist() == pytest.approx([-1.0, 1.0])


@pytest.mark.parametrize("loss", ["hinge", "wgan-gp"])
def test_gan_losses_run(digits300, tmp_path, loss):
    run = archlab.train("dcgan_mnist_generator", digits300, task="gan", variables={"ngf": 8},
                        discriminator="dcgan_mnist_discriminator", d_variables={"ndf": 8, "norm": "none"},
                        gan_loss=loss, out=str(tmp_path), **FAST)
    rows = [json.loads(line) for line in (run.path / "health" / "generative.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["d_loss"]) for r in rows)
    assert ("penalty" in rows[0]) == (loss == "wgan-gp")


def test_vae_mnist_from_the_zoo_reports_elbo_and_pictures(digits300, tmp_path):
    run = archlab.train("vae_mnist", digits300, task="vae", out=str(tmp_path), **FAST)
    test = run.test_metrics
    assert test["elbo"] == pytest.approx(-(test["recon"] + test["kl"]))
    assert 0 < test["recon"] < 784 * np.log(2) * 2 and test["kl"] >= 0
    for name in ("reconstructions.png", "prior.png", "interpolation.png"):
        assert (run.path / "samples" / name).exists()


def test_denoising_autoencoder_corrupts_inputs_only(digits300, tmp_path):
    run = archlab.train("autoencoder_mnist", digits300, task="autoencoder", corrupt="mask=0.5",
                        out=str(tmp_path), **FAST)
    test = run.test_metrics
    # masking half the pixels of an image in [0, 1]: the corruption's own error is half the mean
    # squared intensity of the clean images
    x = run.scaling.apply(digits300.x[torch.as_tensor(run.splits.test)])
    assert test["corruption_mse"] == pytest.approx(0.5 * float(x.pow(2).mean()), rel=0.15)
    assert run.summary["corrupt"] == "mask=0.5"


def test_image_to_image_with_patch_discriminator(digits300, tmp_path):
    run = archlab.train("unet_mnist", digits300, task="image-to-image", variables={"width": 4},
                        discriminator="patch_discriminator", d_variables={"ndf": 8}, corrupt="blur=1.5",
                        out=str(tmp_path), **FAST)
    assert {"l1", "mse", "input_mse"} <= set(run.test_metrics)
    assert run.summary["loss"] == "l1"
    assert (run.path / "samples" / "epoch_000.png").exists()


# -------------------------------------------------------------------- option errors ----------


def test_gan_without_discriminator_names_the_fix(digits300, tmp_path):
    with pytest.raises(UsageError, match="--discriminator dcgan_mnist_discriminator --task gan"):
        archlab.train("dcgan_mnist_generator", digits300, task="gan", out=str(tmp_path), **FAST)


def test_corrupt_for_a_gan_is_refused(digits300, tmp_path):
    with pytest.raises(UsageError, match="has no inputs to corrupt"):
        archlab.train("dcgan_mnist_generator", digits300, task="gan", corrupt="mask=0.5",
                      discriminator="dcgan_mnist_discriminator", out=str(tmp_path), **FAST)


@pytest.mark.parametrize("text, message", [("mask", "KIND=AMOUNT"), ("mask=x", "takes a number"),
                                            ("noise=-1", "expected a value"), ("smudge=1", "KIND=AMOUNT")])
def test_corruption_parse_errors(text, message):
    with pytest.raises(UsageError, match=message):
        Corruption.parse(text)


# ---------------------------------------------------------------------- corruption -----------


def test_corruption_is_seeded_and_of_the_asked_amount():
    x = torch.ones(64, 1, 28, 28)
    c = Corruption.parse("mask=0.3")
    a = c.apply(x, torch.Generator().manual_seed(5))
    b = c.apply(x, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and torch.equal(x, torch.ones_like(x))
    assert float((a == 0).double().mean()) == pytest.approx(0.3, abs=0.01)
    noise = Corruption.parse("noise=0.3").apply(x, torch.Generator().manual_seed(1)) - x
    assert float(noise.std()) == pytest.approx(0.3, rel=0.02)
    erased = Corruption.parse("erase=0.5").apply(x, torch.Generator().manual_seed(1))
    assert float((erased == 0).flatten(1).sum(1).double().mean()) == 14 * 14


def test_blur_matches_a_dense_gaussian_convolution():
    x = torch.zeros(1, 1, 15, 15)
    x[0, 0, 7, 7] = 1.0
    out = Corruption.parse("blur=1.0").apply(x, torch.Generator())
    t = torch.arange(-2, 3, dtype=torch.float32)
    k = torch.exp(-0.5 * t ** 2)
    k2 = torch.outer(k, k) / k.sum() ** 2
    assert torch.allclose(out[0, 0, 5:10, 5:10], k2, atol=1e-6)


# -------------------------------------------------------------------------- losses -----------


def test_gan_losses_against_their_formulas():
    real, fake = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -3.0])
    sig = torch.sigmoid
    ns = -(torch.log(sig(real)).mean() + torch.log(1 - sig(fake)).mean())
    assert float(discriminator_loss("ns", real, fake)) == pytest.approx(float(ns), rel=1e-6)
    smooth = -(0.9 * torch.log(sig(real)) + 0.1 * torch.log(1 - sig(real))).mean() - torch.log(1 - sig(fake)).mean()
    assert float(discriminator_loss("ns", real, fake, 0.1)) == pytest.approx(float(smooth), rel=1e-6)
    assert float(generator_loss("ns", fake)) == pytest.approx(float(-torch.log(sig(fake)).mean()), rel=1e-6)
    hinge = F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    assert float(discriminator_loss("hinge", real, fake)) == pytest.approx(float(hinge))
    assert float(discriminator_loss("wgan-gp", real, fake)) == pytest.approx(float(fake.mean() - real.mean()))
    assert float(generator_loss("hinge", fake)) == pytest.approx(float(-fake.mean()))


def test_gradient_penalty_of_a_linear_critic():
    # D(x) = w.x has gradient w everywhere: the penalty is (|w| - 1)^2 exactly
    lin = torch.nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[3.0, 0.0, 4.0, 0.0]]))
    gp = gradient_penalty(lin, torch.randn(8, 4), torch.randn(8, 4))
    assert gp.item() == pytest.approx(16.0, rel=1e-5)


def test_reconstruction_losses_sum_per_sample():
    out, target = torch.full((2, 1, 2, 2), 0.25), torch.ones(2, 1, 2, 2)
    assert float(reconstruction_loss("mse", out, target)) == pytest.approx(4 * 0.75 ** 2)
    assert float(reconstruction_loss("l1", out, target)) == pytest.approx(4 * 0.75)
    assert float(reconstruction_loss("bce", out, target)) == pytest.approx(-4 * np.log(0.25), rel=1e-5)


# -------------------------------------------------------------------- sample metrics ---------


def _scipy_frechet(a, b):
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def test_frechet_distance_equals_the_sqrtm_formula():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 6))
    b = rng.normal(size=(300, 6)) @ rng.normal(size=(6, 6)) + 0.7
    assert frechet_distance(a, b) == pytest.approx(_scipy_frechet(a, b), rel=1e-6)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)


def test_precision_recall_of_covering_and_collapsed_sets():
    rng = np.random.default_rng(1)
    real = rng.normal(size=(300, 2))
    far = real + 100.0
    assert precision_recall(real, far) == {"precision": 0.0, "recall": 0.0, "k": 3}
    same = precision_recall(real, real)
    assert same["precision"] == 1.0 and same["recall"] == 1.0
    # a collapsed generator (all samples at one real point) is precise but recalls almost nothing
    collapsed = np.repeat(real[:1], 50, axis=0) + 1e-6 * rng.normal(size=(50, 2))
    pr = precision_recall(real, collapsed)
    assert pr["precision"] == 1.0 and pr["recall"] < 0.05


def test_class_coverage_counts_confident_samples_and_modes():
    p = torch.zeros(10, 4)
    p[:6, 0] = 0.95
    p[:6, 1] = 0.05
    p[6:, 2] = 0.6
    p[6:, 3] = 0.4
    cov = class_coverage(p)
    assert cov["confident_share"] == pytest.approx(0.6)
    assert cov["class_histogram"] == [0.6, 0.0, 0.4, 0.0]
    assert cov["classes_covered"] == 2 and cov["min_class_share"] == 0.0


# ------------------------------------------------------------------------------- judge ---------


def test_judge_trains_once_caches_and_judges_a_gan(tmp_path):
    from archlab.judge import Judge

    judge = Judge.for_data("digits", epochs=2, cache=tmp_path / "cache")
    again = Judge.for_data("digits", epochs=2, cache=tmp_path / "cache")
    assert again.run == judge.run and 0.5 < judge.accuracy <= 1.0      # cached, accuracy recorded
    assert judge.name == "classifier-FID on digits"
    digits = load_data("digits")
    real_a, real_b = digits.x[:400], digits.x[400:800]
    noise = torch.rand(400, 1, 8, 8) * 16
    same, other = judge.report(real_a, real_b), judge.report(noise, real_b)
    assert same["classifier_fid"] < other["classifier_fid"]
    assert same["precision"] > other["precision"]
    assert same["classes_covered"] > other["classes_covered"]

    run = archlab.train("dcgan_mnist_generator", "digits", task="gan", variables={"size": 8, "ngf": 4},
                        discriminator="dcgan_mnist_discriminator", d_variables={"size": 8, "ndf": 4},
                        judge_model=judge, judge_samples=64, out=str(tmp_path / "runs"),
                        **{**FAST, "judge": True, "split": (0.2, 0.1, 0.7)})
    test = run.test_metrics
    for key in ("classifier_fid", "precision", "recall", "confident_share", "classes_covered"):
        assert key in test and f"val_{key}" in run.metrics[0]
    report = json.loads((run.path / "judge.json").read_text())
    assert report["final"]["judge"] == "classifier-FID on digits" and len(report["epochs"]) == 1
    assert run.summary["judge"]["judge_accuracy"] == judge.accuracy
    # the judge's ceiling: its confident share of the real images of its own test split, in every report
    from archlab.judge import class_coverage
    from archlab.judge.classifier import JUDGE_SCHEDULE
    from archlab.train.run import Run

    own = Run.open(judge.run)
    assert own.config.schedule == JUDGE_SCHEDULE == "cosine" and own.config.epochs == 2
    held_out = digits.x[torch.as_tensor(own.splits.test)]
    assert judge.real_confident_share == class_coverage(judge.features(held_out)[1])["confident_share"]
    assert report["final"]["judge_real_confident_share"] == judge.real_confident_share
    assert run.summary["judge"]["judge_real_confident_share"] == judge.real_confident_share


def test_judge_cache_is_an_explicit_option_never_the_environment(monkeypatch, tmp_path, digits300, capsys):
    from pathlib import Path

    from archlab.cli import main
    from archlab.judge import classifier

    monkeypatch.setenv("ARCHLAB_CACHE", str(tmp_path / "from-env"))   # no longer read
    assert classifier.cache_root() == Path.home() / ".cache" / "archlab" / "judges"
    assert classifier.cache_root(tmp_path / "mine") == tmp_path / "mine"
    seen: list = []

    def for_data(cls, data, **kw):   # stands in for training the judge: records where it would live
        seen.append(kw.get("cache"))
        raise UsageError("judge reached")

    monkeypatch.setattr(classifier.Judge, "for_data", classmethod(for_data))
    with pytest.raises(UsageError, match="judge reached"):
        archlab.train("vae_mnist", digits300, task="vae", judge_cache=str(tmp_path / "py"),
                      out=str(tmp_path / "runs"), **{**FAST, "judge": True})
    assert main(["train", "vae_mnist", "--task", "vae", "--data", "mnist5k", "--judge-cache",
                 str(tmp_path / "cli"), "--out", str(tmp_path / "runs"), "--no-progress"]) == 2
    assert "judge reached" in capsys.readouterr().err
    assert seen == [str(tmp_path / "py"), str(tmp_path / "cli")]
