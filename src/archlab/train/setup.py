"""From (design, data, options) to everything a run trains with: :func:`prepare`.

This is the seam other capabilities build on (the diagnostics issue's ``archlab check`` trains a
few steps with the same pieces): ``prepare(design, data, **options)`` returns a
:class:`~archlab.train.engine.Setup` with the LightningModule and the DataModule ready for a
``lightning.Trainer``.
"""

from __future__ import annotations

import json
from typing import Any

import lightning as L
import torch
from torch import nn

from .. import __version__
from .checkpoint import freeze, load_matching, read_weights
from .config import TrainConfig, make_config
from .data import ArrayData, DataError, DataSpec, load_data
from .engine import ArrayDataModule, DesignModule, Setup
from .prepare import Scaling, Splits, fit_scaling, fit_target_scaling, make_splits
from .tasks import TrainingSetupError, check_output, make_task


def load_design(design: Any, variables: dict | None = None):
    """A Design from anything ``archlab.load`` accepts (a Design passes through)."""
    from ..design import Design, load

    if isinstance(design, Design) and not variables:
        return design
    return load(design, **(variables or {}))


def match_input(data: ArrayData, input_shape: tuple[int, ...], design_source: str | None = None) -> ArrayData:
    """The design's input shape must equal the data's sample shape. One harmless mismatch is
    fixed silently: grey images given as (H, W) for a design that expects (1, H, W)."""
    shape = tuple(input_shape)
    if data.sample_shape == shape:
        return data
    if shape == (1, *data.sample_shape):
        return ArrayData(data.x.unsqueeze(1), data.y, data.task, data.classes, data.source)
    raise DataError(
        f"the design expects input {shape} (C, H, W without batch), the data's samples "
        f"({data.source}) are {data.sample_shape}", source=design_source,
        fix=f"set the design's input to {list(data.sample_shape)} or choose data shaped {shape}")


def output_shape_of(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Output shape of a plain nn.Module, from one forward pass of two zero samples."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros((2, *input_shape)))
    except Exception as exc:
        raise TrainingSetupError(f"the model fails on input (N, {', '.join(map(str, input_shape))}): {exc}",
                                 fix="check the model's first layer against the data's sample shape") from None
    finally:
        model.train(was_training)
    out = out[0] if isinstance(out, (tuple, list)) else out  # auxiliary outputs follow the first
    return tuple(out.shape[1:])


def code_revision() -> dict[str, Any]:
    """The code a run was trained with: git commit and dirty flag when archlab runs from a git
    checkout, else the installed package version (C11: trace models to code versions)."""
    import subprocess
    from pathlib import Path

    info: dict[str, Any] = {"archlab_version": __version__}
    root = Path(__file__).resolve().parents[3]
    if (root / ".git").exists():
        try:
            commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                                    text=True, timeout=10).stdout.strip()
            status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                    capture_output=True, text=True, timeout=10).stdout
            if commit:
                info.update(git_commit=commit, git_dirty=bool(status.strip()))
        except (OSError, subprocess.SubprocessError):
            pass
    return info


def prepare(design: Any, data: Any, config: TrainConfig | None = None, *,
            variables: dict | None = None, splits: Splits | None = None,
            scaling: Scaling | None = None, **options: Any) -> Setup:
    """Load the data, split and scale it, build the design, check design/data/loss against each
    other, apply transfer options, and wrap it all for Lightning.

    ``design``: a Design, anything ``archlab.load`` accepts, or a plain ``nn.Module``.
    ``data``: a built-in name, a path, a mapping of :class:`DataSpec` fields, or an ArrayData.
    ``splits``/``scaling``: reuse a run's (resume, evaluate) instead of drawing new ones.
    """
    if config is None:
        config = make_config(options)
    elif options:
        config = make_config({**config.model_dump(), **options})
    config = config.resolved_seed()

    arrays = data if isinstance(data, ArrayData) else load_data(
        DataSpec.of(data).model_copy(update={"task": config.task}) if config.task else data)
    task = make_task(arrays.task, config.loss, arrays.n_classes)

    # weights are initialised while the model is built: seed first (C13)
    L.seed_everything(config.seed, workers=True, verbose=False)
    if isinstance(design, nn.Module):
        design_obj, model = None, design
        input_shape = arrays.sample_shape
        node_paths = [n for n, _ in model.named_modules() if n]
        source = None
    else:
        design_obj = load_design(design, variables)
        from ..build import build

        input_shape = tuple(design_obj.input_shape)
        arrays = match_input(arrays, input_shape, design_obj.source)
        model = build(design_obj)
        node_paths = [n.path for n in design_obj.graph.nodes]
        source = design_obj.source

    if splits is None:
        splits = make_splits(arrays, config.split, config.seed, config.stratify)
    if scaling is None:
        scaling = fit_scaling(arrays.x[torch.as_tensor(splits.train)], config.scale)
        if task.name == "regression" and config.scale_targets:
            scaling = fit_target_scaling(scaling, arrays.y[torch.as_tensor(splits.train)])
    task = task.with_target_scaling(scaling)

    out_shape = (tuple(design_obj.graph.output_shape) if design_obj is not None
                 else output_shape_of(model, input_shape))
    target_shape = tuple(arrays.y.shape[1:])
    try:
        check_output(task, out_shape, target_shape, model, source, node_paths)
    except TrainingSetupError as err:
        if design_obj is not None and design_obj.graph.nodes:
            nodes = {n.path: n for n in design_obj.graph.nodes}
            node = nodes.get(err.path or "", design_obj.graph.nodes[-1])
            err.source = err.line = None  # the node knows its file and line better
            err.located(source=node.source, line=node.line, path=node.path)
        if "shape" in err.message:  # a design/data mismatch: say which data
            err.message += f" (data: {arrays.source}, task {task.name})"
            err.args = (err.format(),)
        raise

    transfer = None
    if config.init_from:
        state = read_weights(config.init_from)
        from ..export.weights import is_foreign, to_design_names

        if is_foreign(config.init_from):  # another library's names (torchvision, timm)
            state = to_design_names(model, state, source=config.init_from,
                                    ordered=not str(config.init_from).endswith(".safetensors"))
        diff = load_matching(model, state, partial=True, node_paths=node_paths, source=config.init_from)
        transfer = {"from": config.init_from, **diff.to_json()}
    if config.freeze:
        frozen = freeze(model, config.freeze, node_paths)
        transfer = {**(transfer or {}), "frozen_tensors": len(frozen), "freeze": list(config.freeze)}

    datamodule = ArrayDataModule(arrays, splits, scaling, config.batch, config.workers, config.seed)
    extra = {"design": design_obj.to_yaml() if design_obj is not None else "",
             "code": json.dumps(code_revision())}
    module = DesignModule(model, task, config, datamodule.steps_per_epoch(), extra)
    return Setup(config=config, design=design_obj, model=model, data=arrays, splits=splits,
                 scaling=scaling, task=task, module=module, datamodule=datamodule,
                 node_paths=node_paths, transfer=transfer)


def build_modules(design: Any, data: Any, **options: Any) -> tuple[DesignModule, ArrayDataModule]:
    """The LightningModule and DataModule for a design and data: the pair a ``lightning.Trainer``
    needs. ``options`` are :class:`TrainConfig` fields."""
    setup = prepare(design, data, **options)
    return setup.module, setup.datamodule
