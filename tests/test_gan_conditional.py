"""The class-conditional GAN pair (cdcgan_mnist_generator + cdcgan_mnist_discriminator): the
generator's input is the latent then the one-hot class, the discriminator's score is the one of
each image's class (projection discriminator, one-hot class), the pair checks recognise and refuse
what does not fit, and a tiny run trains on the real images' labels and asks for each class in
turn when sampling. Tiny runs only: no quality figure is asserted."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch.callbacks import Callback

import archlab
from archlab.train.data import ArrayData, load_data
from archlab.train.generative.gan import class_inputs
from archlab.train.generative.pair import PairError

FAST = dict(batch=32, progress=False, judge=False, split=(0.6, 0.2, 0.2), health=False)
PAIR = dict(task="gan", variables={"ngf": 4, "nz": 8}, discriminator="cdcgan_mnist_discriminator",
            d_variables={"ndf": 4})


@pytest.fixture(scope="module")
def digits():
    d = load_data("mnist5k")
    idx = torch.arange(0, 5000, 50)   # 100 images, every class (mnist5k is sorted by class)
    return ArrayData(d.x[idx], d.y[idx], d.task, d.classes, "mnist5k")


def test_class_inputs_append_the_one_hot_class():
    z = torch.randn(5, 3)
    out = class_inputs(z, 4, torch.tensor([2, 0, 3, 3, 1]))
    assert out.shape == (5, 7) and torch.equal(out[:, :3], z)
    assert torch.equal(out[:, 3:], torch.eye(4)[[2, 0, 3, 3, 1]])
    turns = class_inputs(z, 4)   # no labels: class i mod C
    assert torch.equal(turns[:, 3:].argmax(1), torch.tensor([0, 1, 2, 3, 0]))
    assert class_inputs(z, 0) is z   # unconditional: unchanged


class Capture(Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.module = pl_module


def _trained(digits, tmp_path, **extra):
    cap = Capture()
    run = archlab.train("cdcgan_mnist_generator", digits, out=str(tmp_path), epochs=1, callbacks=[cap],
                        **PAIR, **{**FAST, **extra})
    return run, cap.module


def test_the_pair_is_recognised_as_conditional(digits, tmp_path):
    run, module = _trained(digits, tmp_path)
    assert module.classes == 10 and module.latent == 8
    # the fixed grid asks for the classes in turn
    assert module.fixed_noise.shape == (64, 18)
    assert torch.equal(module.fixed_noise[:, 8:].argmax(1), torch.arange(64) % 10)
    assert (run.path / "samples" / "final.png").exists()


def test_the_score_is_the_discriminator_output_of_each_image_class(digits, tmp_path):
    _, module = _trained(digits, tmp_path)
    module.discriminator.eval()
    x = digits.x[:6].float()
    y = torch.tensor([3, 0, 9, 9, 1, 4])
    with torch.no_grad():
        full = module.discriminator(x)
        got = module.score(x, y)
    assert full.shape == (6, 10) and got.shape == (6, 1)
    assert torch.equal(got[:, 0], full[torch.arange(6), y])


class Batches(Callback):
    def __init__(self) -> None:
        self.labels = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.labels.append(batch[1].clone())


def test_training_reads_the_real_labels_and_the_asked_classes(digits, tmp_path, monkeypatch):
    from archlab.train.generative import gan as gan_module

    seen = []   # (training?, labels) of every score the module takes
    orig = gan_module.GANModule.score

    def score(self, images, labels):
        seen.append((self.training, labels.clone()))
        return orig(self, images, labels)

    monkeypatch.setattr(gan_module.GANModule, "score", score)
    fed = []   # the classes the generator was given in training
    orig_inputs = gan_module.class_inputs

    def inputs(z, classes, labels=None):
        out = orig_inputs(z, classes, labels)
        if labels is not None:
            fed.append((labels.clone(), out))
        return out

    monkeypatch.setattr(gan_module, "class_inputs", inputs)
    batches = Batches()
    archlab.train("cdcgan_mnist_generator", digits, out=str(tmp_path), epochs=1, callbacks=[batches],
                  **PAIR, **FAST)
    train = [labels for training, labels in seen if training]
    assert len(batches.labels) == 2 and len(fed) == 2 and len(train) == 6   # 2 steps x (real, fake, G's fake)
    for step in range(2):
        real, asked_d, asked_g = train[3 * step: 3 * step + 3]
        lab, out = fed[step]
        assert torch.equal(real, batches.labels[step])          # real images: their own labels
        assert torch.equal(asked_d, lab) and torch.equal(asked_g, lab)   # generated: the class asked for
        assert torch.equal(out[:, 8:].argmax(1), lab) and torch.equal(out[:, 8:].sum(1), torch.ones(len(lab)))
    held_out = [labels for training, labels in seen if not training]
    assert held_out and all(set(v.tolist()) <= set(range(10)) for v in held_out)


def test_the_generator_is_given_the_class_when_sampling(digits, tmp_path):
    _, module = _trained(digits, tmp_path)
    given = []
    handle = module.sampler.register_forward_pre_hook(lambda m, a: given.append(a[0].clone()))
    module.sample(25, torch.Generator().manual_seed(0))
    handle.remove()
    z = torch.cat(given)
    assert z.shape == (25, 18)
    assert torch.equal(z[:, 8:], torch.eye(10)[torch.arange(25) % 10])


def test_a_discriminator_with_scores_that_are_not_the_classes_is_refused(digits, tmp_path):
    with pytest.raises(PairError, match=r"outputs \(7,\) per sample; the ns loss needs one score per sample.*"
                                        r"one score per class of the data \(10,\)") as err:
        archlab.train("cdcgan_mnist_generator", digits, out=str(tmp_path), epochs=1,
                      **{**PAIR, "d_variables": {"ndf": 4, "classes": 7}}, **FAST)
    assert "out: 10 for a class-conditional pair" in (err.value.fix or "")


def test_a_generator_without_room_for_the_class_is_refused(digits, tmp_path):
    with pytest.raises(PairError, match=r"takes the latent followed by the one-hot class.*takes \(10,\)") as err:
        archlab.train("dcgan_mnist_generator", digits, out=str(tmp_path), epochs=1,
                      **{**PAIR, "variables": {"ngf": 4, "nz": 10}}, **FAST)
    assert "nz + 10" in (err.value.fix or "")


def test_the_unconditional_pair_stays_unconditional(digits, tmp_path):
    cap = Capture()
    archlab.train("dcgan_mnist_generator", digits, out=str(tmp_path), epochs=1, callbacks=[cap],
                  **{**PAIR, "discriminator": "dcgan_mnist_discriminator"}, **FAST)
    assert cap.module.classes == 0 and cap.module.fixed_noise.shape == (64, 8)


def test_check_on_the_conditional_pair_reads_the_class_scores(digits):
    from archlab.diagnose import check

    report = check("cdcgan_mnist_generator", digits, task="gan", discriminator="cdcgan_mnist_discriminator",
                   overfit_steps=60)
    by = {c.name: c for c in report.checks}
    assert report.passed, [(c.name, c.message) for c in report.checks]
    ev = by["loss_at_init"].evidence
    assert abs(ev["d_loss"] - 2 * 0.693147) < 1.0
    assert set(by["generator_gradient_flow"].evidence["grad_norm_by_node"]) == {"up1", "up2", "image"}


def test_class_score_picks_each_image_class():
    from archlab.train.generative.checks import ClassScore

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    x = torch.randn(5, 1, 2, 2)
    y = torch.tensor([2, 0, 1, 1, 2])
    with torch.no_grad():
        assert torch.equal(ClassScore(net, y, 3)(x)[:, 0], net(x)[torch.arange(5), y])


class LabelJudge:
    """A judge stand-in that labels sample i as class i mod C, except every fourth sample, which
    it labels one class further on, with probability 0.95 (0.5 for samples 1 mod 8)."""

    def __init__(self, classes: int) -> None:
        self.classes = classes
        self.seen = None

    def features(self, raw):
        self.seen = raw
        n = len(raw)
        i = torch.arange(n)
        label = (i + (i % 4 == 0).long()) % self.classes
        top = torch.where(i % 8 == 1, 0.5, 0.95)
        probs = torch.full((n, self.classes), 0.0)
        probs[i, label] = top
        return torch.zeros(n, 3), probs


def test_benchmark_class_agreement_counts_the_judge_labels_against_the_asked_classes(digits, tmp_path):
    from test_gan_sampling import _benchmark

    run, _ = _trained(digits, tmp_path)
    judge = LabelJudge(10)
    got = _benchmark().class_agreement(run.path, judge, 10, n=40, seed=1)
    assert got["samples"] == 40 and got["agreement"] == pytest.approx(0.75)
    # agreeing and p >= 0.9: the 30 agreeing samples less those at 1 mod 8 (5 of them, all agreeing)
    assert got["confident_and_agreeing"] == pytest.approx(25 / 40)
    i = torch.arange(40)
    want = [float(((i % 4 != 0) & (i % 10 == k)).sum()) / 4 for k in range(10)]
    assert got["per_class"] == pytest.approx(want)
    # the images judged are the saved generator's for class i mod 10 (data units)
    from archlab.train.run import Run

    net = Run.open(run.path).model()
    z = torch.randn((40, 8), generator=torch.Generator().manual_seed(1 + 37))
    with torch.no_grad():
        want_x = net(class_inputs(z, 10, i % 10)) * run.scaling.std[0] + run.scaling.mean[0]
    assert torch.allclose(judge.seen, want_x, atol=1e-6)


def test_benchmark_options_parse_as_json_or_text():
    from test_gan_sampling import _benchmark

    parse = _benchmark().parse_options
    assert parse(["gan_loss=hinge", "d_steps=2", "betas=[0.0, 0.99]"]) == {
        "gan_loss": "hinge", "d_steps": 2, "betas": [0.0, 0.99]}
    with pytest.raises(SystemExit, match="expected NAME=VALUE"):
        parse(["hinge"])


def test_wgan_gp_penalises_the_score_of_the_real_image_class(digits, tmp_path, monkeypatch):
    from archlab.train.generative import gan as gan_module

    calls = []
    orig = gan_module.gradient_penalty

    def penalty(critic, real, fake, generator=None):
        calls.append((critic, real))
        return orig(critic, real, fake, generator)

    monkeypatch.setattr(gan_module, "gradient_penalty", penalty)
    batches = Batches()
    cap = Capture()
    archlab.train("cdcgan_mnist_generator", digits, out=str(tmp_path), epochs=1, gan_loss="wgan-gp",
                  callbacks=[batches, cap], **{**PAIR, "d_variables": {"ndf": 4, "norm": "none"}}, **FAST)
    assert len(calls) == 2
    module = cap.module
    for (critic, real), labels in zip(calls, batches.labels, strict=True):
        with torch.no_grad():
            got = critic(real)
            want = module.discriminator(real)[torch.arange(len(real)), labels]
        assert got.shape == (len(real), 1) and torch.allclose(got[:, 0], want)


def test_a_trained_conditional_generator_honours_the_class_asked_for(tmp_path):
    """Two classes, digits 0 and 1: after a few epochs the generator asked for 0 draws images
    nearer the real 0s' mean image than the real 1s', and asked for 1 the other way, for the same
    latents (a generator that ignored its class would draw the same images for both)."""
    from archlab.train.run import Run

    d = load_data("mnist5k")
    idx = torch.cat([torch.nonzero(d.y == k)[:, 0][:160] for k in (0, 1)])
    two = ArrayData(d.x[idx], d.y[idx], d.task, d.classes[:2], "mnist5k-01")
    run = archlab.train("cdcgan_mnist_generator", two, task="gan", discriminator="cdcgan_mnist_discriminator",
                        variables={"ngf": 8, "nz": 8, "classes": 2}, d_variables={"ndf": 8, "classes": 2},
                        epochs=8, lr=1e-3, g_ema=0, out=str(tmp_path), **{**FAST, "split": (0.8, 0.1, 0.1)})
    net = Run.open(run.path).model()
    z = torch.randn(200, 8, generator=torch.Generator().manual_seed(0))
    s = run.scaling
    x = (two.x.float() - s.mean[0]) / s.std[0]
    means = torch.stack([x[two.y == k].mean(0) for k in (0, 1)])
    for k in (0, 1):
        with torch.no_grad():
            images = net(class_inputs(z, 2, torch.full((200,), k)))
        nearest = (images.flatten(1)[:, None] - means.flatten(1)[None]).norm(dim=2).argmin(1)
        assert float((nearest == k).float().mean()) >= 0.9, (k, nearest.float().mean())
