"""archlab: design neural-network architectures the way the design literature teaches.

Describe a network in a design language, judge it before training, train and diagnose it,
compare variants. The public API::

    import archlab
    design = archlab.load("resnet18", width=32)   # a path, zoo name, dict or YAML text
    model = archlab.build(design)                 # a plain torch.nn.Module
    archlab.zoo.names()

Heavier capabilities (analysis, review, training, diagnostics) are imported on first use, so
``import archlab`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

from . import zoo
from .blocks import BLOCKS, Block, BlockParams, register_block
from .build import build, load_built, save
from .design import Design, load
from .errors import ArchlabError, BlockError, DesignError, UsageError
from .graph import Graph, Node

__version__ = "0.1.0"

# name -> "module:attribute", imported when first used
_LAZY = {
    "analyze": "archlab.analysis:analyze",
    "review": "archlab.review:review",
    "train": "archlab.train:train",
}


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'archlab' has no attribute '{name}'")
    module_name, _, attr = target.partition(":")
    value = getattr(importlib.import_module(module_name), attr)
    globals()[name] = value
    return value


__all__ = [
    "BLOCKS",
    "ArchlabError",
    "Block",
    "BlockError",
    "BlockParams",
    "Design",
    "DesignError",
    "Graph",
    "Node",
    "UsageError",
    "build",
    "load",
    "load_built",
    "register_block",
    "save",
    "zoo",
    *_LAZY,
]
