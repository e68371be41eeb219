"""Checks of generative designs before training: shapes and final activations.

A generative task fails late and silently when its pieces do not fit (a discriminator scoring
64x64 images fed 28x28 samples crashes after the first batch; a sigmoid before a logits loss
trains, slowly and wrongly). These checks run on the designs' inferred shapes, before any data
is loaded into a network, and raise :class:`PairError` naming the node, what was expected,
what was received and the fix:

* gan: the generator takes a latent vector (nz,); its output is the discriminator's input and
  the data's sample shape; the discriminator gives ONE raw score per sample (no sigmoid: the
  losses take logits); the generator's final activation bounds its samples (tanh -> data scaled
  to [-1, 1], sigmoid -> [0, 1]); WGAN-GP's critic has no batch norm. A class-conditional pair
  (:func:`gan_classes`): the discriminator gives one score per class of the data (C > 1 of
  them) and the generator takes the latent followed by the class one-hot, (nz + C,) with nz >= 1.
* vae / autoencoder: output shape = input shape; ``bce`` needs a sigmoid output; a vae has a
  variational block.
* image-to-image: output = target shape; the discriminator sees the target (unconditional) or
  the input and the target side by side (conditional, as pix2pix) and may score patches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn

from ..tasks import TrainingSetupError

# the generator's final activation -> the value range its samples (and the scaled data) live in
OUTPUT_RANGES = {"tanh": (-1.0, 1.0), "sigmoid": (0.0, 1.0)}


class PairError(TrainingSetupError):
    """The designs of a generative task do not fit each other, the data or the loss."""


@dataclass(frozen=True)
class Piece:
    """One network of a generative task, as the checks see it."""

    role: str                       # 'generator', 'discriminator', 'autoencoder', ...
    model: nn.Module
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    name: str = ""
    source: str | None = None
    node_paths: tuple[str, ...] = ()
    final: tuple[str, str] | None = None   # (node path, activation kind) of the output

    def where(self) -> dict:
        return {"source": self.source, "path": self.final[0] if self.final else None}


def final_activation_kind(model: nn.Module) -> tuple[str, str]:
    """(module path, activation) that produces the model's output: 'tanh', 'sigmoid', 'relu',
    ... or 'none' when the last operation is not an activation."""
    import torch.fx

    module, path = model, ""
    if isinstance(model, torch.fx.GraphModule):
        output = next(n for n in reversed(model.graph.nodes) if n.op == "output")
        node = output.args[0]
        if isinstance(node, (tuple, list)):
            node = node[0]
        if not isinstance(node, torch.fx.Node):
            return ("", "none")
        # shape-only steps after the activation (flatten, reshape) do not change what it made
        while _shape_only(model, node) and node.args and isinstance(node.args[0], torch.fx.Node):
            node = node.args[0]
        if node.op != "call_module":
            name = getattr(node.target, "__name__", str(node.target)).lower()
            return (node.name, name if name in ACTIVATION_NAMES else "none")
        path = str(node.target)
        module = model.get_submodule(path)
    while True:
        kind = ACTIVATION_CLASSES.get(type(module))
        if kind is not None:
            return (path, kind)
        children = list(module.named_children())
        if not children:
            return (path, "none")
        name, module = children[-1]
        path = f"{path}.{name}" if path else name


SHAPE_ONLY = {"Flatten", "Unflatten", "Reshaping", "Reshape", "Identity", "View", "Squeeze"}
SHAPE_FUNCTIONS = {"flatten", "reshape", "view", "squeeze", "unsqueeze", "contiguous"}


def _shape_only(model: nn.Module, node) -> bool:
    if node.op == "call_module":
        return type(model.get_submodule(node.target)).__name__ in SHAPE_ONLY
    if node.op in ("call_function", "call_method"):
        return getattr(node.target, "__name__", str(node.target)) in SHAPE_FUNCTIONS
    return False


ACTIVATION_CLASSES = {nn.Tanh: "tanh", nn.Sigmoid: "sigmoid", nn.ReLU: "relu", nn.ReLU6: "relu6",
                      nn.LeakyReLU: "leaky_relu", nn.Softmax: "softmax", nn.LogSoftmax: "log_softmax",
                      nn.Hardtanh: "hardtanh", nn.Hardsigmoid: "hardsigmoid", nn.GELU: "gelu",
                      nn.SiLU: "silu", nn.ELU: "elu", nn.Softplus: "softplus"}
ACTIVATION_NAMES = set(ACTIVATION_CLASSES.values())


def _node(piece: Piece, path: str) -> str:
    from ..checkpoint import node_path_of

    return node_path_of(path, piece.node_paths) if path else "the last layer"


def _shape(shape) -> str:
    return str(tuple(int(s) for s in shape))


def output_range(piece: Piece, task: str) -> tuple[float, float]:
    """The range the data is scaled to, from the generator's final activation."""
    path, kind = piece.final or final_activation_kind(piece.model)
    if kind in OUTPUT_RANGES:
        return OUTPUT_RANGES[kind]
    if kind == "none" and task != "gan":
        return (0.0, 1.0)   # an unbounded output with MSE/L1 regresses images scaled to [0, 1]
    node = _node(piece, path)
    raise PairError(
        f"the {piece.role} '{piece.name}' ends with {kind} on node '{node}': its samples are "
        f"{'unbounded' if kind == 'none' else 'not bounded to an image range'}, but {task} "
        "training compares them with images scaled to a fixed range (tanh -> [-1, 1], "
        "sigmoid -> [0, 1])", source=piece.source, path=node,
        fix=f"end the {piece.role} with act: tanh (DCGAN) on node '{node}'")


def gan_classes(generator: Piece, discriminator: Piece, classes: int) -> int:
    """C when the pair is class-conditional, else 0: the discriminator gives C > 1 scores per
    sample, one per class of the data (C = ``classes``), read as the projection discriminator's
    per-class scores; the generator must then take (nz + C,) inputs, nz >= 1 (the latent, then
    the class one-hot). Any other number of scores is left to :func:`check_scores` to refuse."""
    out = tuple(discriminator.output_shape)
    width = math.prod(out) if out else 1
    if width <= 1 or len(out) != 1 or width != classes:
        return 0
    if len(generator.input_shape) == 1 and generator.input_shape[0] <= classes:
        raise PairError(
            f"a class-conditional gan generator takes the latent followed by the one-hot class, "
            f"(nz + {classes},) with nz >= 1; '{generator.name}' takes {_shape(generator.input_shape)}",
            source=generator.source,
            fix=f"give the generator input: [$(nz + {classes})] (e.g. cdcgan_mnist_generator)")
    return width


def check_gan(generator: Piece, discriminator: Piece, sample_shape: tuple[int, ...],
              gan_loss: str = "ns", classes: int = 0) -> tuple[float, float]:
    """Raise PairError unless the pair fits; return the value range of the generator's samples.
    ``classes``: the data's number of classes, for a class-conditional pair (:func:`gan_classes`)."""
    if len(generator.input_shape) != 1:
        raise PairError(
            f"a gan generator takes a latent vector (nz,); '{generator.name}' takes "
            f"{_shape(generator.input_shape)}", source=generator.source,
            fix="give the generator a latent input, e.g. input: [$nz] then a reshape to [$nz, 1, 1]")
    if tuple(generator.output_shape) != tuple(discriminator.input_shape):
        raise PairError(
            f"the generator '{generator.name}' outputs {_shape(generator.output_shape)} but the "
            f"discriminator '{discriminator.name}' takes {_shape(discriminator.input_shape)}: the "
            "generator's output must be the discriminator's input", source=discriminator.source,
            fix="make the sizes and channels agree (e.g. --set size=28 --d-set size=28 "
                "--d-set channels=1)")
    if tuple(generator.output_shape) != tuple(sample_shape):
        raise PairError(
            f"the generator '{generator.name}' outputs {_shape(generator.output_shape)} but the "
            f"data's samples are {_shape(sample_shape)}", source=generator.source,
            fix=f"set the generator's size/channels to the data's {_shape(sample_shape)} "
                "(e.g. --set channels=1)")
    conditional = gan_classes(generator, discriminator, classes) if classes > 1 else 0
    check_scores(discriminator, gan_loss, patches=False, classes=conditional, data_classes=classes)
    if gan_loss == "wgan-gp":
        bn = [n for n, m in discriminator.model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if bn:
            node = _node(discriminator, bn[0])
            raise PairError(
                f"wgan-gp penalises the critic's gradient per sample, but the discriminator has "
                f"batch norm (node '{node}', {len(bn)} in all), which mixes the samples of a batch",
                source=discriminator.source, path=node,
                fix="use --d-set norm=none (or layer norm) in the critic, or --gan-loss ns")
    return output_range(generator, "gan")


def check_scores(discriminator: Piece, gan_loss: str, patches: bool, classes: int = 0,
                 data_classes: int = 0) -> None:
    """One raw score per sample (or per patch, ``patches``; or per class, ``classes`` > 1), no
    probability activation. ``data_classes``: the data's number of classes, named in the error
    (a class-conditional pair's discriminator gives that many)."""
    out = tuple(discriminator.output_shape)
    ok = math.prod(out) in (1, classes or 1) if not patches else (len(out) in (0, 1, 3) and (not out or out[0] == 1))
    if not ok:
        want = "one score per sample, shape (1,)" if not patches else "(1,) or a map of patch scores (1, h, w)"
        cond = data_classes > 1 and not patches
        if cond:
            want += (f", or one score per class of the data ({data_classes},) for a class-conditional "
                     f"pair")
        raise PairError(
            f"the discriminator '{discriminator.name}' outputs {_shape(out)} per sample; the "
            f"{gan_loss} loss needs {want}", source=discriminator.source,
            fix="end the discriminator with a conv or linear of out: 1 (and a flatten)"
                + (f", or out: {data_classes} for a class-conditional pair (e.g. cdcgan_mnist_discriminator)"
                   if cond else ""))
    path, kind = discriminator.final or final_activation_kind(discriminator.model)
    if kind != "none":
        node = _node(discriminator, path)
        raise PairError(
            f"the discriminator '{discriminator.name}' ends with {kind} on node '{node}', but the "
            f"{gan_loss} loss takes raw scores (it applies the logistic function itself, in a "
            f"numerically stable form); a {kind} there saturates and stalls the generator's gradient",
            source=discriminator.source, path=node,
            fix=f"remove the final {kind} (act: none on node '{node}'), e.g. use dcgan_mnist_discriminator")


def check_reconstruction(piece: Piece, task: str, loss: str, target_shape: tuple[int, ...]) -> tuple[float, float]:
    """vae, autoencoder, image-to-image: the output must be the target's shape and fit the loss."""
    if tuple(piece.output_shape) != tuple(target_shape):
        raise PairError(
            f"{task} needs an output shaped like its target {_shape(target_shape)}; "
            f"'{piece.name}' outputs {_shape(piece.output_shape)}", source=piece.source,
            fix="end with a (transposed) conv of out = the image channels at the image's size")
    if task == "vae":
        from ...blocks.variational import VariationalBottleneck

        if not any(isinstance(m, VariationalBottleneck) for m in piece.model.modules()):
            raise PairError(
                f"the vae task needs a variational block (mean, log-variance, KL); '{piece.name}' "
                "has none", source=piece.source,
                fix="add {block: variational, latent: 16} after the encoder, or use --task autoencoder")
    path, kind = piece.final or final_activation_kind(piece.model)
    if loss == "bce" and kind != "sigmoid":
        node = _node(piece, path)
        raise PairError(
            f"the bce reconstruction loss needs pixel probabilities (a sigmoid output); "
            f"'{piece.name}' ends with {kind} on node '{node}'", source=piece.source, path=node,
            fix=f"end with act: sigmoid on node '{node}', or use --loss mse")
    return output_range(piece, task)


def check_image_discriminator(discriminator: Piece, input_shape: tuple[int, ...],
                              target_shape: tuple[int, ...]) -> bool:
    """image-to-image: True when the discriminator is conditional (input and target stacked)."""
    d_in = tuple(discriminator.input_shape)
    conditional = (input_shape[0] + target_shape[0], *target_shape[1:])
    if d_in not in (conditional, tuple(target_shape)):
        raise PairError(
            f"the discriminator '{discriminator.name}' takes {_shape(d_in)}; image-to-image needs "
            f"{_shape(conditional)} (the input and the output side by side, as pix2pix) or "
            f"{_shape(target_shape)} (the output alone)", source=discriminator.source,
            fix=f"--d-set channels={conditional[0]} --d-set size={target_shape[-1]}")
    check_scores(discriminator, "ns", patches=True)
    return d_in == conditional
