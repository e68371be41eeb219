"""Resuming generative runs: a run stopped after one epoch and resumed to two ends where the
uninterrupted two-epoch run ends (weights of both networks, per-step record, metrics), with
both optimisers' states, the GAN's d_steps phase and the judge's reports carried over."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import archlab
from archlab.train.data import ArrayData, load_data
from archlab.train.run import resume

GAN = dict(task="gan", variables={"ngf": 8}, discriminator="dcgan_mnist_discriminator",
           d_variables={"ndf": 8}, d_steps=2)
COMMON = dict(batch=32, progress=False, judge=False, split=(0.6, 0.2, 0.2))


@pytest.fixture(scope="module")
def digits():
    d = load_data("mnist5k")   # the first 240 images: a resumed run reloads mnist5k and its splits
    return ArrayData(d.x[:240], d.y[:240], d.task, d.classes, "mnist5k")


def rows(run) -> list[dict]:
    return [json.loads(line) for line in (run.path / "health" / "generative.jsonl").read_text().splitlines()]


def close(a: dict, b: dict, tol: float = 1e-5) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=tol, rtol=tol), k


@pytest.mark.parametrize("design,extra", [
    ("dcgan_mnist_generator", GAN),                 # two optimisers, manual optimisation, d_steps 2
    ("vae_mnist", {"task": "vae"}),                 # one optimiser, the best checkpoint
], ids=["gan", "vae"])
def test_resumed_run_equals_an_uninterrupted_one(digits, tmp_path, design, extra):
    full = archlab.train(design, digits, epochs=2, out=str(tmp_path / "a"), name="full", **extra, **COMMON)
    part = archlab.train(design, digits, epochs=1, out=str(tmp_path / "b"), name="part", **extra, **COMMON)
    resumed = resume(part.path, epochs=2)
    assert resumed.path == part.path and len(resumed.metrics) == 2
    close(load_file(full.path / "model.safetensors"), load_file(resumed.path / "model.safetensors"))
    if design == "dcgan_mnist_generator":
        close(load_file(full.path / "discriminator.safetensors"), load_file(resumed.path / "discriminator.safetensors"))
        assert (resumed.path / "samples" / "epoch_001.png").exists()
    a, b = rows(full), rows(resumed)
    assert [r["step"] for r in a] == [r["step"] for r in b] and [set(r) for r in a] == [set(r) for r in b]
    for ra, rb in zip(a, b, strict=True):   # 5 batches an epoch: the generator's every-2nd phase carries on
        for k in ra:
            assert ra[k] == pytest.approx(rb[k], rel=1e-4, abs=1e-6), (ra["step"], k)
    for ma, mb in zip(full.metrics, resumed.metrics, strict=True):
        for k, v in ma.items():
            if k not in ("seconds", "lr") and isinstance(v, float):
                assert v == pytest.approx(mb[k], rel=1e-4, abs=1e-6), k
    assert resumed.summary["epochs_run"] == 2 and resumed.summary["health"] is not None
    # the layer monitor records the resumed part, numbered as the run's batches
    net = "generator" if design == "dcgan_mnist_generator" else "vae"
    batches = json.loads((resumed.path / "health" / net / "batches.json").read_text())
    assert batches and batches[0] >= 5
