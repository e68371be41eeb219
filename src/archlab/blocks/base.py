"""The block contract and the block registry.

A block is a small class, registered by name, that knows four things about itself *without a
forward pass*:

* ``Params``: a frozen pydantic model of its settings (unknown keys are errors);
* ``output_shape(p, inputs)``: its output shape from its input shapes (no batch dimension);
* ``ops(p, inputs)``: its primitive operations as :class:`archlab.ops.Op` records, from which the
  parameter count and the multiply-adds follow;
* ``build(p, inputs)``: a plain ``torch.nn.Module`` whose submodule names match the op paths.

Custom blocks are registered from Python with :func:`register_block`; a design file can then use
them by name. Nothing in a design file ever imports or runs code.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict
from torch import nn

from ..errors import BlockError, unknown_name
from ..ops import Op, Shape

BLOCKS: dict[str, type[Block]] = {}


class BlockParams(BaseModel):
    """Base of every block's settings: frozen, typed, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=False)


class Block:
    """Base class of registered blocks. Subclasses set ``name``, ``family`` and ``Params``.

    Class attributes:
        name:          the name used in design files (``block: conv``).
        family:        documentation group ('conv', 'pool', 'merge', 'residual', ...).
        Params:        the pydantic model of the block's settings.
        n_inputs:      number of inputs the block takes; ``None`` = one or more (merges).
        width_fields:  Params fields that hold channel widths, scaled by the design's width
                       multiplier and filled by a width policy when set to ``auto``.
        input_ranks:   accepted input ranks (len of the shape without batch); empty = any.
        inherits:      the design-level defaults this block takes when a node leaves them unset
                       (``defaults: {norm: batch, act: relu, order: norm_act, conv: separable}``;
                       ``conv`` fills the field ``kind``). A plain ``linear`` inherits nothing.
        examples:      (params dict, input shapes) pairs; the test suite checks every block's
                       formulas on each against a real forward pass and PyTorch's counters,
                       and docs/design-language.md shows them.
        input_dtype:   'float', or 'long' for blocks that read integer ids (``embedding``).
        weight_inputs: indices of inputs that are another node's weight, not activations (no
                       batch axis): a tied ``unembed`` reads an embedding's table.
        node_refs:     Params fields that name other nodes (``tie: wte``); the resolver checks
                       them and replaces the names with module paths.
    """

    name: ClassVar[str] = ""
    family: ClassVar[str] = ""
    Params: ClassVar[type[BlockParams]] = BlockParams
    n_inputs: ClassVar[int | None] = 1
    width_fields: ClassVar[tuple[str, ...]] = ()
    input_ranks: ClassVar[tuple[int, ...]] = ()
    examples: ClassVar[list[tuple[dict, list[Shape]]]] = []
    inherits: ClassVar[tuple[str, ...]] = ("norm", "act", "order", "kind")
    input_dtype: ClassVar[str] = "float"
    weight_inputs: ClassVar[tuple[int, ...]] = ()
    node_refs: ClassVar[tuple[str, ...]] = ()

    # ---- the three formulas every block provides --------------------------------------------
    @classmethod
    def output_shape(cls, p: Any, inputs: list[Shape]) -> Shape:
        raise NotImplementedError(f"block '{cls.name}' must define output_shape")

    @classmethod
    def ops(cls, p: Any, inputs: list[Shape]) -> list[Op]:
        raise NotImplementedError(f"block '{cls.name}' must define ops")

    @classmethod
    def build(cls, p: Any, inputs: list[Shape]) -> nn.Module:
        raise NotImplementedError(f"block '{cls.name}' must define build")

    # ---- derived figures ---------------------------------------------------------------------
    @classmethod
    def param_count(cls, p: Any, inputs: list[Shape]) -> int:
        return sum(op.params for op in cls.ops(p, inputs))

    @classmethod
    def multiply_adds(cls, p: Any, inputs: list[Shape]) -> int:
        return sum(op.multiply_adds for op in cls.ops(p, inputs))

    @classmethod
    def check_inputs(cls, inputs: list[Shape]) -> None:
        """Arity and rank checks shared by all blocks; formulas may add their own."""
        if cls.n_inputs is not None and len(inputs) != cls.n_inputs:
            raise BlockError(
                f"block '{cls.name}' takes {cls.n_inputs} input(s), got {len(inputs)}",
                fix="merge the inputs first (merge: concat or sum) or change 'from'",
            )
        if cls.input_ranks:
            for shape in inputs:
                if len(shape) not in cls.input_ranks:
                    ranks = " or ".join(_rank_name(r) for r in cls.input_ranks)
                    raise BlockError(
                        f"block '{cls.name}' expects {ranks} input, got shape {tuple(shape)}",
                        fix=_rank_fix(cls.input_ranks, shape),
                    )

    @classmethod
    def summary(cls) -> str:
        doc = (cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""


def _rank_name(rank: int) -> str:
    return {1: "a vector (F,)", 2: "a sequence (C, L)", 3: "an image (C, H, W)",
            4: "a volume (C, D, H, W)"}.get(rank, f"rank-{rank}")


def _rank_fix(ranks: tuple[int, ...], shape: Shape) -> str | None:
    if len(shape) > 1 and 1 in ranks:
        return "add a 'flatten' or 'global_pool' node before it"
    if len(shape) == 1 and any(r > 1 for r in ranks):
        return "add a 'reshape' node to give the vector channels and spatial size"
    return None


def register_block(cls: type[Block] | None = None, *, name: str | None = None, replace: bool = False):
    """Class decorator: make a block usable by name in designs.

    >>> from archlab.blocks import BLOCKS
    >>> 'conv' in BLOCKS
    True
    """

    def wrap(klass: type[Block]) -> type[Block]:
        key = name or klass.name
        if not key:
            raise ValueError(f"{klass.__name__} has no block name; set `name = '...'`")
        if key in BLOCKS and not replace and BLOCKS[key] is not klass:
            raise ValueError(f"block '{key}' is already registered by {BLOCKS[key].__module__}; "
                             "pass replace=True to override it")
        klass.name = key
        BLOCKS[key] = klass
        return klass

    return wrap(cls) if cls is not None else wrap


def get_block(name: str) -> type[Block]:
    try:
        return BLOCKS[name]
    except KeyError:
        raise BlockError(unknown_name("block", name, BLOCKS), field="block") from None
