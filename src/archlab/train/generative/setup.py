"""From (designs, data, options) to a generative run's pieces: :func:`prepare_generative`.

Data for generative tasks is scaled to the value range of the network's output, fitted on the
training split (the minimum and maximum pixel value): tanh outputs -> [-1, 1], sigmoid outputs
-> [0, 1] (``scaling.json`` records it as a mean/std pair, so ``Run.scaling`` reads it as for
any run). Labels are kept to judge samples (class coverage); training uses images alone, except
for a class-conditional gan pair (a discriminator with one score per class), which trains on
each real image's label.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import lightning as L
import torch
from torch import nn

from ...errors import UsageError
from ..config import TrainConfig
from ..data import ArrayData, DataError, load_data
from ..engine import ArrayDataModule
from ..prepare import Scaling, Splits, make_splits
from .corrupt import Corruption
from .pair import (
    Piece,
    check_gan,
    check_image_discriminator,
    check_reconstruction,
    final_activation_kind,
    gan_classes,
)

GENERATIVE_TASKS = ("gan", "vae", "autoencoder", "image-to-image")
# DCGAN (Radford et al. 2016) and pix2pix (Isola et al. 2017): Adam, lr 2e-4, beta1 0.5
TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "gan": {"lr": 2e-4, "betas": (0.5, 0.999), "epochs": 10},
    "image-to-image": {"lr": 2e-4, "betas": (0.5, 0.999), "epochs": 10},
    "vae": {"epochs": 10},
    "autoencoder": {"epochs": 10},
}
LOSSES = {"vae": ("bce", "mse"), "autoencoder": ("mse", "bce", "l1"), "image-to-image": ("l1", "mse")}
DEFAULT_I2I_CORRUPTION = "erase=0.4"   # the built-in image-to-image task: restore erased squares
IDENTITY = Scaling((), (), "none")


@dataclass
class GenerativeSetup:
    """Everything a generative run trains with (the fields a run folder needs match
    :class:`archlab.train.engine.Setup`'s)."""

    config: TrainConfig
    task: str
    design: Any                  # the generator / autoencoder design
    model: nn.Module
    data: ArrayData              # as read (unscaled)
    splits: Splits
    scaling: Scaling             # raw -> the model's value range
    value_range: tuple[float, float]
    datamodule: ArrayDataModule
    module: Any = None
    discriminator_design: Any = None
    discriminator: nn.Module | None = None
    loss: str | None = None
    corruption: Corruption | None = None
    conditional: bool = False
    classes: int = 0             # gan: C for a class-conditional pair (the one-hot class of the generator's input)
    node_paths: list[str] = field(default_factory=list)
    transfer: dict | None = None


def with_task_defaults(options: dict) -> dict:
    """The task's defaults (DCGAN's Adam settings for gan) under the options the user gave."""
    return {**TASK_DEFAULTS.get(options.get("task") or "", {}), **options}


def range_scaling(x_train: torch.Tensor, value_range: tuple[float, float]) -> Scaling:
    """Scaling that maps [min, max] of the training inputs onto ``value_range`` (per data set,
    the same for every channel, so colours keep their balance)."""
    lo, hi = float(x_train.min()), float(x_train.max())
    if hi <= lo:
        raise DataError(f"the training images are constant ({lo}); a generator has nothing to learn",
                        fix="check the data source")
    t0, t1 = value_range
    std = (hi - lo) / (t1 - t0)
    mean = lo - t0 * std
    c = x_train.shape[1]
    return Scaling((mean,) * c, (std,) * c, "channel")


def piece(role: str, design: Any, model: nn.Module) -> Piece:
    graph = design.graph
    return Piece(role, model, tuple(design.input_shape), tuple(graph.output_shape), design.name,
                 design.source, tuple(n.path for n in graph.nodes), final_activation_kind(model))


def _build(design: Any, variables: dict | None):
    from ...build import build
    from ..setup import load_design

    d = load_design(design, variables)
    return d, build(d)


def _match(arrays: ArrayData, shape: tuple[int, ...], source: str | None) -> ArrayData:
    from ..setup import match_input

    if len(arrays.sample_shape) not in (2, 3):
        raise DataError(f"generative tasks train on images (C, H, W); the data's samples are "
                        f"{arrays.sample_shape}", source=arrays.source, fix="use --data mnist5k or an image folder")
    return match_input(arrays, shape, source)


def prepare_generative(design: Any, data: Any, config: TrainConfig, *, variables: dict | None = None,
                       splits: Splits | None = None) -> GenerativeSetup:
    task = config.task
    if task not in GENERATIVE_TASKS:
        raise UsageError(f"'{task}' is not a generative task; expected one of {', '.join(GENERATIVE_TASKS)}")
    if config.discriminator and task not in ("gan", "image-to-image"):
        raise UsageError(f"--discriminator applies to gan and image-to-image, not {task}",
                         fix="drop --discriminator, or use --task gan")
    if task == "gan" and not config.discriminator:
        raise UsageError("the gan task trains a pair: give the discriminator design",
                         fix="e.g. archlab train dcgan_mnist_generator --discriminator "
                             "dcgan_mnist_discriminator --task gan")
    if config.corrupt and task not in ("autoencoder", "vae", "image-to-image"):
        raise UsageError(f"--corrupt corrupts the inputs of an autoencoder; {task} has no inputs to corrupt",
                         fix="use --task autoencoder --corrupt mask=0.5")
    loss = config.loss
    if task in LOSSES and loss is not None and loss not in LOSSES[task]:
        raise UsageError(f"loss '{loss}' does not fit task {task}; valid: {', '.join(LOSSES[task])}",
                         fix=f"use --loss {LOSSES[task][0]}")
    if task == "gan" and loss is not None:
        raise UsageError("the gan task takes its loss from --gan-loss (ns, hinge, wgan-gp), not --loss",
                         fix=f"drop --loss {loss}; e.g. --gan-loss hinge")

    arrays = data if isinstance(data, ArrayData) else load_data(data)
    L.seed_everything(config.seed, workers=True, verbose=False)
    g_design, model = _build(design, variables)
    g = piece("generator" if task in ("gan", "image-to-image") else task, g_design, model)
    d_design = discriminator = None
    if config.discriminator:
        d_design, discriminator = _build(config.discriminator, dict(config.d_variables))
    conditional = False
    gan_conditional = 0
    corruption = Corruption.parse(config.corrupt) if config.corrupt else (
        Corruption.parse(DEFAULT_I2I_CORRUPTION) if task == "image-to-image" else None)

    if task == "gan":
        d = piece("discriminator", d_design, discriminator)
        shape = arrays.sample_shape if len(arrays.sample_shape) != 2 else (1, *arrays.sample_shape)
        value_range = check_gan(g, d, shape, config.gan_loss, arrays.n_classes)   # the pair first, then the data
        gan_conditional = gan_classes(g, d, arrays.n_classes) if arrays.n_classes > 1 else 0
        arrays = _match(arrays, d.input_shape, d_design.source)
    else:
        arrays = _match(arrays, g.input_shape, g_design.source)
        if loss is None:
            loss = LOSSES[task][0]
            if task == "vae" and g.final[1] != "sigmoid":
                loss = "mse"
        value_range = check_reconstruction(g, task, loss, arrays.sample_shape)
        if discriminator is not None:
            conditional = check_image_discriminator(piece("discriminator", d_design, discriminator),
                                                    arrays.sample_shape, arrays.sample_shape)

    if splits is None:
        splits = make_splits(arrays, config.split, config.seed, config.stratify)
    scaling = range_scaling(arrays.x[torch.as_tensor(splits.train)], value_range)
    x = scaling.apply(arrays.x)
    if task == "image-to-image":   # fixed pairs: the corrupted image -> the clean one, seeded
        lo, hi = value_range
        g_rng = torch.Generator().manual_seed(int(config.seed) + 99)
        source = corruption.apply((x - lo) / (hi - lo), g_rng) * (hi - lo) + lo
        fed = ArrayData(source, x, arrays.task, arrays.classes, arrays.source)
    else:
        fed = ArrayData(x, arrays.y, arrays.task, arrays.classes, arrays.source)
    datamodule = ArrayDataModule(fed, splits, IDENTITY, config.batch, config.workers, config.seed)
    setup = GenerativeSetup(config=config, task=task, design=g_design, model=model, data=arrays,
                            splits=splits, scaling=scaling, value_range=value_range, datamodule=datamodule,
                            discriminator_design=d_design, discriminator=discriminator, loss=loss,
                            corruption=corruption, conditional=conditional, classes=gan_conditional,
                            node_paths=[n.path for n in g_design.graph.nodes])
    setup.module = make_module(setup)
    return setup


def make_module(setup: GenerativeSetup):
    from ..setup import code_revision
    from .gan import GANModule
    from .image_to_image import ImageToImageModule
    from .reconstruct import ReconstructionModule

    c = setup.config
    steps = setup.datamodule.steps_per_epoch()
    extra = {"design": setup.design.to_yaml(), "code": json.dumps(code_revision()),
             "discriminator": setup.discriminator_design.to_yaml() if setup.discriminator_design else ""}
    if setup.task == "gan":
        return GANModule(setup.model, setup.discriminator, c, int(setup.design.input_shape[0]) - setup.classes,
                         steps, setup.value_range, extra, classes=setup.classes)
    if setup.task == "image-to-image":
        return ImageToImageModule(setup.model, setup.discriminator, setup.loss, c, steps,
                                  setup.value_range, setup.conditional, extra)
    module = ReconstructionModule(setup.model, setup.task, setup.loss, c, steps, setup.value_range,
                                  setup.corruption, extra)
    module.input_shape = tuple(setup.design.input_shape)
    if setup.task == "vae":
        module.latent_shape = _latent_shape(setup)
    return module


def _latent_shape(setup: GenerativeSetup) -> tuple[int, ...]:
    from .reconstruct import bottlenecks

    captured = []
    first = bottlenecks(setup.model)[0]
    handle = first.register_forward_hook(lambda m, i, o: captured.append(tuple(o.shape[1:])))
    was = setup.model.training
    setup.model.eval()
    with torch.no_grad():
        setup.model(torch.zeros((2, *setup.design.input_shape)))
    setup.model.train(was)
    handle.remove()
    return captured[0]
