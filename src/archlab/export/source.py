"""What can be exported: a design (file or zoo name, freshly initialised), a run folder (the
trained weights) or a built folder (``archlab build`` / ``archlab weights import`` output)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ArchlabError

SEED = 0  # a design exported without weights is initialised from this seed, so runs repeat


@dataclass
class Exportable:
    design: Any          # archlab Design (resolved; its graph has every node's shapes)
    model: Any           # the built torch.fx.GraphModule, in eval mode
    kind: str            # design | run | built
    source: str


def open_source(source: str, variables: dict[str, Any] | None = None) -> Exportable:
    """A design, run folder or built folder, as a design and a model ready to export."""
    import torch

    from ..build import DESIGN_FILE, WEIGHTS_FILE, build, load_built
    from ..design import load

    variables = variables or {}
    path = Path(source)
    if path.is_dir():
        if variables:
            raise ArchlabError("--set applies to designs, not to saved folders", source=source,
                               fix="export the design itself with --set, or rebuild the folder")
        if (path / "config.yaml").exists():
            from ..train.run import Run

            run = Run.open(path)
            design = run.design()
            return Exportable(design, run.model().eval(), "run", source)
        if (path / DESIGN_FILE).exists() and (path / WEIGHTS_FILE).exists():
            return Exportable(load(path / DESIGN_FILE), load_built(path).eval(), "built", source)
        raise ArchlabError("the folder is neither a run (config.yaml) nor a built model "
                           f"({DESIGN_FILE} + {WEIGHTS_FILE})", source=source,
                           fix="give a design file or zoo name, a folder written by `archlab "
                               "train`, or one written by `archlab build -o FOLDER`")
    design = load(source, **variables)
    torch.manual_seed(SEED)
    return Exportable(design, build(design).eval(), "design", source)


def example_input(design, batch: int = 2, seed: int = 0):
    """A random input of the design's shape (integer tokens for an embedding input)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    first = design.graph.nodes[0] if design.graph.nodes else None
    shape = (batch, *design.input_shape)
    if first is not None and first.block == "embedding":
        vocab = getattr(first.params, "vocab", None) or getattr(first.params, "num_embeddings", 2)
        return torch.randint(0, int(vocab), shape, generator=g)
    return torch.randn(shape, generator=g)
