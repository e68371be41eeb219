"""Pair checks of generative designs: clear errors (where, expected, received, fix) before
training, and `archlab check` on a pair (losses at init, gradient flow, discriminator overfit)."""

from __future__ import annotations

import pytest
import torch

import archlab
from archlab.build import build
from archlab.diagnose import check
from archlab.train.data import ArrayData, load_data
from archlab.train.generative import PairError
from archlab.train.generative.pair import final_activation_kind
from archlab.zoo import path as zoo_path

G, D = "dcgan_mnist_generator", "dcgan_mnist_discriminator"


@pytest.fixture(scope="module")
def small():
    d = load_data("mnist5k")
    return ArrayData(d.x[:120], d.y[:120], d.task, d.classes, "mnist5k")


def train(design, data, tmp_path, **kw):
    return archlab.train(design, data, epochs=1, batch=32, progress=False, judge=False, out=str(tmp_path), **kw)


def test_generator_output_must_be_the_discriminator_input(small, tmp_path):
    with pytest.raises(PairError) as e:
        train("dcgan_generator", small, tmp_path, task="gan", discriminator=D)
    msg = str(e.value)
    assert "outputs (3, 64, 64)" in msg and "takes (1, 28, 28)" in msg
    assert "the generator's output must be the discriminator's input" in msg and "--d-set" in msg


def test_zoo_sigmoid_discriminator_is_refused_with_the_node(small, tmp_path):
    big = ArrayData(torch.rand(40, 1, 64, 64) * 255, torch.arange(40) % 2, "classification", ("a", "b"), "t")
    with pytest.raises(PairError) as e:
        train(G, big, tmp_path, task="gan", variables={"size": 64, "channels": 1},
              discriminator="dcgan_discriminator", d_variables={"channels": 1})
    msg = str(e.value)
    # the zoo's 64x64 DCGAN discriminator ends with sigmoid, then a flatten: found through it
    assert "ends with sigmoid on node 'score'" in msg and "takes raw scores" in msg
    assert "act: none on node 'score'" in msg


def test_discriminator_must_give_one_score_per_sample(small, tmp_path):
    text = zoo_path(D).read_text().replace("out: 1, kernel: $(size // 4)", "out: 3, kernel: $(size // 4)")
    with pytest.raises(PairError, match=r"outputs \(3,\) per sample; the ns loss needs one score per sample"):
        train(G, small, tmp_path, task="gan", discriminator=text)


def test_relu_generator_output_is_refused(small, tmp_path):
    text = zoo_path(G).read_text().replace("act: tanh", "act: relu")
    with pytest.raises(PairError) as e:
        train(text, small, tmp_path, task="gan", discriminator=D)
    assert "ends with relu on node 'image'" in str(e.value) and "act: tanh" in str(e.value)


def test_wgan_gp_refuses_batch_norm_in_the_critic(small, tmp_path):
    with pytest.raises(PairError, match="--d-set norm=none"):
        train(G, small, tmp_path, task="gan", discriminator=D, gan_loss="wgan-gp")


def test_generator_needs_a_latent_vector(small, tmp_path):
    with pytest.raises(PairError, match=r"takes a latent vector \(nz,\); 'vae_mnist' takes \(1, 28, 28\)"):
        train("vae_mnist", small, tmp_path, task="gan", discriminator=D)


def test_bce_needs_a_sigmoid_output(small, tmp_path):
    text = zoo_path("autoencoder_mnist").read_text().replace("norm: none, act: sigmoid", "norm: none, act: tanh")
    with pytest.raises(PairError, match="bce reconstruction loss needs pixel probabilities"):
        train(text, small, tmp_path, task="autoencoder", loss="bce")


def test_image_discriminator_channels(small, tmp_path):
    with pytest.raises(PairError, match=r"needs \(2, 28, 28\) \(the input and the output side by side"):
        train("unet_mnist", small, tmp_path, task="image-to-image", discriminator="patch_discriminator",
              d_variables={"channels": 3})


def test_final_activation_sees_through_flatten_and_reshape():
    assert final_activation_kind(build(archlab.load("dcgan_discriminator")))[1] == "sigmoid"
    assert final_activation_kind(build(archlab.load(D)))[1] == "none"
    path, kind = final_activation_kind(build(archlab.load(G)))
    assert kind == "tanh" and path.split(".")[0] == "image"
    seq = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Sigmoid())
    assert final_activation_kind(seq) == ("1", "sigmoid")


def test_check_on_a_pair_passes_for_the_zoo_pair(small):
    report = check(G, small, task="gan", discriminator=D, overfit_steps=60)
    by = {c.name: c for c in report.checks}
    assert report.passed, [(c.name, c.message) for c in report.checks]
    assert set(by) == {"pair", "loss_at_init", "generator_gradient_flow", "discriminator_overfit"}
    ev = by["loss_at_init"].evidence
    assert ev["expected_d_loss"] == pytest.approx(2 * 0.693147, rel=1e-5)
    assert abs(ev["d_loss"] - ev["expected_d_loss"]) < 1.0
    assert set(by["generator_gradient_flow"].evidence["grad_norm_by_node"]) == {"up1", "up2", "image"}


def test_check_names_a_generator_cut_off_from_the_discriminator(small):
    # a generator whose image does not depend on up1: up1's output is multiplied by zero
    from archlab.train.generative.checks import generator_gradient_flow

    g = build(archlab.load(G, ngf=4))
    d = build(archlab.load(D, ndf=4))
    z = torch.randn(4, 64)
    result = generator_gradient_flow(g, lambda: d(g(z).detach() + 0 * g(z)).mean() * 0, ["latent", "up1", "up2", "image"])
    assert result.status == "fail" and "no gradient reaches generator node(s)" in result.message
    assert "up1" in result.layers


def test_check_reports_a_pair_error_as_a_failed_check(small):
    report = check("dcgan_generator", small, task="gan", discriminator=D)
    assert not report.passed
    [c] = report.checks
    assert c.name == "pair" and "must be the discriminator's input" in c.message


def test_cli_train_pair_error_exits_2_with_the_fix(capsys, tmp_path):
    from archlab.cli import main

    rc = main(["train", "dcgan_mnist_generator", "--discriminator", "dcgan_discriminator", "--d-set", "channels=1",
               "--task", "gan", "--no-judge", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "takes (1, 64, 64)" in err and "Traceback" not in err
    assert not any(tmp_path.iterdir())
