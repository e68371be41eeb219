"""The layer-level health monitor inside generative training (archlab.train.generative.health):
one recorder per network, verdicts named by network and layer, shown by `archlab diagnose`.

Faults are constructed (a deep sigmoid generator whose gradient vanishes before its first
layers; ReLU units killed by a bias of -50), and healthy tiny runs of each task stay silent."""

from __future__ import annotations

import json

import pytest
import torch
from lightning.pytorch.callbacks import Callback

import archlab
from archlab.cli import main
from archlab.diagnose.callback import HealthMonitor
from archlab.errors import UsageError
from archlab.train.data import ArrayData, load_data
from archlab.train.generative.health import LAYER_DETECTORS, split_options

FAST = dict(epochs=2, batch=32, progress=False, judge=False, split=(0.6, 0.2, 0.2))
PAIR = dict(task="gan", discriminator="dcgan_mnist_discriminator", d_variables={"ndf": 8})
# eight sigmoid layers: each multiplies the backward signal by at most 0.25
DEEP_SIGMOID = {"archlab": 1, "name": "deep_sigmoid_generator", "input": [16],
                "layers": [*({"name": f"h{i}", "block": "linear", "out": 64, "act": "sigmoid"} for i in range(8)),
                           {"name": "pixels", "block": "linear", "out": 784, "act": "tanh"},
                           {"name": "image", "block": "reshape", "shape": [1, 28, 28]}]}


@pytest.fixture(scope="module")
def digits():
    d = load_data("mnist5k")
    return ArrayData(d.x[:240], d.y[:240], d.task, d.classes, "mnist5k")


def events(run) -> list[dict]:
    return run.summary["health"]["events"]


def test_vanishing_generator_is_named_with_its_layers(digits, tmp_path, capsys):
    # 6 epochs of 4-5 batches: the vanishing rule wants a window of >= 20 optimiser steps
    # (a gradient small for fewer steps is a transient of the initialisation)
    run = archlab.train(DEEP_SIGMOID, digits, out=str(tmp_path), **PAIR, **{**FAST, "epochs": 6})
    found = [e for e in events(run) if e["detector"] == "vanishing_gradients"]
    assert found, events(run)
    e = found[0]
    assert e["network"] == "generator" and e["message"].startswith("generator: ")
    assert e["layers"][0] == "generator/h0.0"            # the first layer, named inside its network
    assert all(layer.startswith("generator/") for layer in e["layers"])
    assert e["evidence"]["relative_grad"]["h0.0"] < 1e-3 * max(e["evidence"]["relative_grad"].values())
    # the discriminator (the zoo's, healthy) raised nothing of its own
    assert not [x for x in events(run) if x.get("network") == "discriminator"]
    # each network has its own record; the run's record shows both networks' layers
    health = run.path / "health"
    for net in ("generator", "discriminator"):
        assert (health / net / "series.npz").exists() and (health / net / "batches.json").exists()
    # archlab diagnose reports it (exit status 1: a problem found)
    assert main(["diagnose", str(run.path), "--json", "--no-plots"]) == 1
    report = json.loads(capsys.readouterr().out)
    mine = [x for x in report["events"] if x["detector"] == "vanishing_gradients"]
    assert mine and mine[0]["layers"][0] == "generator/h0.0"
    from archlab.diagnose.state import HealthState

    state = HealthState.load(health)
    assert "generator/h0.0" in state.param_layers and "discriminator/down1.0" in state.param_layers


class KillRelus(Callback):
    """A bias of -50 before the decoder's first ReLU: its units never fire (a constructed fault)."""

    def on_train_start(self, trainer, pl_module):
        with torch.no_grad():
            pl_module.model.expand[0].bias.fill_(-50.0)


def test_dead_relu_in_an_autoencoder_is_found(digits, tmp_path):
    # 5 epochs of 4 batches: 20 samples of 16 examples, above dying_relu's 300 examples
    run = archlab.train("autoencoder_mnist", digits, task="autoencoder", out=str(tmp_path),
                        callbacks=[KillRelus()], **{**FAST, "epochs": 5})
    dead = [e for e in events(run) if e["detector"] == "dying_relu"]
    assert dead and dead[0]["network"] == "autoencoder"
    assert "autoencoder/expand.1" in dead[0]["layers"]
    assert dead[0]["evidence"]["dead_fraction"]["expand.1"] == 1.0
    # everything before the dead layer gets no gradient at all: named too
    gone = [e for e in events(run) if e["detector"] == "vanishing_gradients"]
    assert gone and "autoencoder/enc1.0" in gone[0]["layers"]


@pytest.mark.parametrize("task,design,extra", [
    ("gan", "dcgan_mnist_generator", dict(variables={"ngf": 8}, **PAIR)),
    ("gan-d2", "dcgan_mnist_generator", dict(variables={"ngf": 8}, d_steps=2, **PAIR)),
    ("vae", "vae_mnist", {"task": "vae"}),
    ("autoencoder", "autoencoder_mnist", {"task": "autoencoder", "corrupt": "mask=0.5"}),
], ids=lambda v: v if isinstance(v, str) else "")
def test_healthy_tiny_runs_stay_silent(digits, tmp_path, task, design, extra):
    run = archlab.train(design, digits, out=str(tmp_path), **{**FAST, **extra})
    h = run.summary["health"]
    assert h["healthy"] and h["events"] == [], h["events"]
    nets = {"gan": ["generator", "discriminator"], "gan-d2": ["generator", "discriminator"],
            "vae": ["vae"], "autoencoder": ["autoencoder"]}[task]
    assert h["networks"] == nets
    for net in nets:   # every network was sampled: the monitor ran
        monitor = json.loads((run.path / "health" / net / "monitor.json").read_text())
        assert monitor["samples"] > 0 and set(monitor["detectors"]) <= set(LAYER_DETECTORS)
        assert "missing_nonlinearity" in monitor["detectors"]   # every network gets it
    if task == "gan-d2":   # the generator steps every 2nd batch: its steps are those batches
        batches = json.loads((run.path / "health" / "generator" / "batches.json").read_text())
        assert batches == list(range(0, 10, 2))


def test_monitor_options_reach_each_network(digits, tmp_path):
    """archlab train's --health-* options arrive as a HealthMonitor; a generative run gives its
    options to the per-network recorders; its detector list selects among both kinds."""
    monitor = HealthMonitor(every=3, detectors=["vanishing_gradients"])
    # 8 epochs: samples every 3rd step must span the vanishing rule's 20-step window
    run = archlab.train(DEEP_SIGMOID, digits, out=str(tmp_path), callbacks=[monitor], health=False,
                        **PAIR, **{**FAST, "epochs": 8})
    g = json.loads((run.path / "health" / "generator" / "monitor.json").read_text())
    assert g["schedule"]["every"] == 3 and list(g["detectors"]) == ["vanishing_gradients"]
    assert run.summary["health"]["detectors"] == []      # no generative detector was chosen
    assert {e["detector"] for e in events(run)} == {"vanishing_gradients"}
    recorder, generative, _ = split_options({"detectors": ["dying_relu", "mode_collapse"]})
    assert recorder["detectors"] == ["dying_relu"] and generative == ["mode_collapse"]
    with pytest.raises(UsageError, match="unknown detector 'no_such'"):
        split_options({"detectors": ["no_such"]})


def test_every_network_gets_the_same_layer_detectors(tmp_path):
    """No network-specific exceptions: a discriminator (hinge or not) is judged by the same
    layer detectors as its generator; what its inputs and loss do is handled in the detectors
    (the affine test refuses near-copies, vanishing_gradients leaves out steps whose loss gave
    no gradient: tests/test_diagnose_consequences.py)."""
    from types import SimpleNamespace

    from torch import nn

    from archlab.train.generative.health import GenerativeHealth

    for run in ("a", "b"):
        nets = {"generator": nn.Sequential(nn.Linear(4, 8), nn.Tanh()),
                "discriminator": nn.Sequential(nn.Linear(8, 4), nn.LeakyReLU(0.2), nn.Linear(4, 1))}
        cb = GenerativeHealth(tmp_path / run, nets, adversarial=True)
        cb.setup(SimpleNamespace(is_global_zero=True), None, "fit")
        d = [x.name for x in cb.watches["discriminator"].recorder.detectors]
        g = [x.name for x in cb.watches["generator"].recorder.detectors]
        assert d == g == list(LAYER_DETECTORS)
        # adversarial networks: the loss-level parts are off, the gradient parts stay
        ex = next(x for x in cb.watches["generator"].recorder.detectors if x.name == "exploding_gradients")
        assert ex.t["loss_factor"] == float("inf") and ex.t["grad_norm_limit"] == 1e3
