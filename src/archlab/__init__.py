"""archlab: design neural-network architectures the way the design literature teaches.

Describe a network in a design language, judge it before training, train and diagnose it,
compare variants. The public API::

    import archlab
    design = archlab.load("resnet18", width=32)   # a path, zoo name, dict or YAML text
    model = archlab.build(design)                 # a plain torch.nn.Module
    archlab.zoo.names()

Every name is imported on first use, so ``import archlab`` (and ``archlab --help``) stays fast:
torch is loaded by the first name that needs it, Lightning only by training.
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import ArchlabError, BlockError, DesignError, UsageError

__version__ = "0.1.0"

# name -> "module:attribute", imported when first used: `import archlab` (and so `archlab --help`)
# loads neither torch nor Lightning until a name that needs them is used
_LAZY = {
    "BLOCKS": "archlab.blocks:BLOCKS",
    "Block": "archlab.blocks:Block",
    "BlockParams": "archlab.blocks:BlockParams",
    "register_block": "archlab.blocks:register_block",
    "build": "archlab.build:build",
    "load_built": "archlab.build:load_built",
    "save": "archlab.build:save",
    "Design": "archlab.design:Design",
    "load": "archlab.design:load",
    "Graph": "archlab.graph:Graph",
    "Node": "archlab.graph:Node",
    "zoo": "archlab.zoo",
    "analyze": "archlab.analysis:analyze",
    # the packages themselves: they are callable (archlab.train(...) trains) and hold the rest
    # of their API (archlab.train.TrainConfig, archlab.review.Finding)
    "review": "archlab.review",
    "train": "archlab.train",
}


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'archlab' has no attribute '{name}'")
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    value = getattr(module, attr) if attr else module
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "ArchlabError",
    "BlockError",
    "DesignError",
    "UsageError",
    *_LAZY,
]
