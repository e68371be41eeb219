"""Blocks of the transformer era on tokens and maps: the pre-norm transformer block (ViT, GPT-2)
and the ConvNeXt block, both with layer scale and drop path on their residual branches.

* ``transformer_block`` on tokens (L, D): ``x = x + drop_path(ls1(attn(ln_1(x))))`` then
  ``x = x + drop_path(ls2(mlp(ln_2(x))))`` (Vaswani et al. 2017; the pre-norm placement of
  Xiong et al. 2020 that ViT and GPT-2 use). ``causal: true`` makes it a decoder block.
  Submodules are named as torchvision's ViT ``EncoderBlock`` (``ln_1``, ``self_attention``
  with ``in_proj_weight``/``out_proj``, ``ln_2``, ``mlp.0``/``mlp.3``), so weights map by name.
* ``convnext_block`` on maps (C, H, W): 7x7 depthwise conv, layer norm over the channels of
  each pixel, a 4x inverted bottleneck of linear layers with GELU, layer scale, drop path and
  the residual add (Liu et al. 2022, "A ConvNet for the 2020s"), in torchvision's layout
  (``block.0`` conv, ``block.2`` norm, ``block.3``/``block.5`` linear, ``layer_scale``).
"""

from __future__ import annotations

from pydantic import Field, PositiveInt
from torch import Tensor, nn

from ..ops import Op, act_op, conv_op, eltwise_op, linear_op, move_op, norm_op
from .attention import MultiHeadSelfAttention, attention_ops
from .base import Block, BlockParams, register_block
from .layers import ActSpec, act_ops, check_divisible, make_act
from .stochastic import DropPath, LayerScale, drop_path_ops, layer_scale_ops


def _optional(module: nn.Module | None) -> nn.Module:
    """An absent part is an ``nn.Identity``: the forward stays one straight line (and
    TorchScript-compilable) whatever the settings."""
    return module if module is not None else nn.Identity()


# ----------------------------------------------------------------- transformer block -------


class TransformerBlockParams(BlockParams):
    """Settings of a pre-norm transformer block on tokens."""

    heads: PositiveInt = Field(8, description="attention heads; must divide the width D")
    mlp_ratio: float = Field(4.0, gt=0, description="hidden width of the MLP / D (ViT, GPT: 4)")
    act: ActSpec = Field(ActSpec(kind="gelu"), description="MLP activation (gelu; gelu_tanh "
                         "in GPT-2)")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout after attention and in the MLP")
    attention_dropout: float = Field(0.0, ge=0, lt=1, description="dropout on attention weights")
    causal: bool = Field(False, description="position i attends to positions <= i (a decoder, "
                         "GPT; Radford et al. 2018)")
    layer_scale: float | None = Field(None, gt=0, description="start value of a learned "
                                      "per-channel scale on both branches (CaiT: 1e-5); "
                                      "None = off")
    drop_path: float = Field(0.0, ge=0, lt=1, description="stochastic depth rate of both "
                             "branches, training only (DeiT: up to 0.1); see the design's "
                             "drop_path schedule")
    eps: float = Field(1e-6, gt=0, description="layer-norm epsilon (ViT 1e-6, GPT-2 1e-5)")
    bias: bool = Field(True, description="biases in the projections")


class TransformerBlockModule(nn.Module):
    """(N, L, D) -> (N, L, D): pre-norm attention and MLP, each a residual branch."""

    def __init__(self, width: int, length: int, p: TransformerBlockParams, hidden: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width, eps=p.eps)
        self.self_attention = MultiHeadSelfAttention(width, p.heads, None, p.attention_dropout,
                                                     p.bias, length if p.causal else 0)
        self.dropout = nn.Dropout(p.dropout)
        self.ln_2 = nn.LayerNorm(width, eps=p.eps)
        self.mlp = nn.Sequential(nn.Linear(width, hidden, bias=p.bias),
                                 _optional(make_act(p.act)), nn.Dropout(p.dropout),
                                 nn.Linear(hidden, width, bias=p.bias), nn.Dropout(p.dropout))
        scale = p.layer_scale
        self.ls_1 = _optional(LayerScale((length, width), -1, scale) if scale else None)
        self.ls_2 = _optional(LayerScale((length, width), -1, scale) if scale else None)
        self.drop_path = _optional(DropPath(p.drop_path) if p.drop_path > 0 else None)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.ls_1(self.dropout(self.self_attention(self.ln_1(x)))))
        return x + self.drop_path(self.ls_2(self.mlp(self.ln_2(x))))


@register_block
class TransformerBlock(Block):
    """Pre-norm transformer block on tokens: attention and MLP branches, layer scale, drop path.

    Shapes: (L, D) -> (L, D). Vaswani et al. 2017; pre-norm as in ViT (Dosovitskiy et al. 2021)
    and GPT-2 (Radford et al. 2019); layer scale from CaiT (Touvron et al. 2021); drop path
    (Huang et al. 2016). Parameters ``4D^2 + 4D`` (attention) ``+ 2DF + F + D`` (MLP, F =
    mlp_ratio*D) ``+ 4D`` (norms) ``[+ 2D`` layer scale``]``; multiply-adds per sample
    ``4LD^2 + 2L^2 D + 2LDF``.

    >>> from archlab.blocks import BLOCKS
    >>> B = BLOCKS['transformer_block']
    >>> B.param_count(B.Params(heads=12), [(197, 768)])     # a ViT-B/16 encoder layer
    7087872
    """

    name = "transformer_block"
    family = "sequence"
    Params = TransformerBlockParams
    input_ranks = (2,)
    inherits = ()
    examples = [
        ({"heads": 2}, [(5, 8)]),
        ({"heads": 2, "causal": True, "act": "gelu_tanh", "eps": 1e-5}, [(6, 4)]),
        ({"heads": 1, "layer_scale": 0.1, "drop_path": 0.2, "mlp_ratio": 2}, [(3, 6)]),
    ]

    @classmethod
    def _hidden(cls, p, inputs) -> int:
        cls.check_inputs(inputs)
        width = inputs[0][1]
        check_divisible(width, p.heads, "token width D", "heads", None, "heads", by_key="heads")
        return max(1, round(p.mlp_ratio * width))

    @classmethod
    def output_shape(cls, p, inputs):
        cls._hidden(p, inputs)
        return tuple(inputs[0])

    @classmethod
    def ops(cls, p, inputs) -> list[Op]:
        hidden = cls._hidden(p, inputs)
        length, width = tokens = tuple(inputs[0])
        wide = (length, hidden)
        add = eltwise_op("", "add", (tokens, tokens), tokens)
        ops = [norm_op("ln_1", "layer_norm", tokens, 2 * width),
               *attention_ops("self_attention", length, width, p.heads, width, p.bias, p.causal)]
        if p.layer_scale:
            ops += layer_scale_ops("ls_1", tokens, -1)
        ops += [*drop_path_ops("drop_path", tokens, p.drop_path), add,
                norm_op("ln_2", "layer_norm", tokens, 2 * width),
                linear_op("mlp.0", tokens, wide, bias=p.bias), *act_ops("mlp.1", p.act, wide),
                linear_op("mlp.3", wide, tokens, bias=p.bias)]
        if p.layer_scale:
            ops += layer_scale_ops("ls_2", tokens, -1)
        ops += [*drop_path_ops("drop_path", tokens, p.drop_path), add]
        return ops

    @classmethod
    def build(cls, p, inputs):
        hidden = cls._hidden(p, inputs)
        length, width = inputs[0]
        return TransformerBlockModule(width, length, p, hidden)


# -------------------------------------------------------------------- convnext block -------


class ConvNeXtParams(BlockParams):
    """Settings of a ConvNeXt block."""

    kernel: PositiveInt = Field(7, description="depthwise kernel (Liu et al.: 7)")
    expand: float = Field(4.0, gt=0, description="hidden width of the MLP / C (Liu et al.: 4)")
    act: ActSpec = Field(ActSpec(kind="gelu"), description="MLP activation (gelu)")
    eps: float = Field(1e-6, gt=0, description="layer-norm epsilon (1e-6)")
    layer_scale: float | None = Field(1e-6, gt=0, description="start value of the learned "
                                      "per-channel scale on the branch; None = off")
    drop_path: float = Field(0.0, ge=0, lt=1, description="stochastic depth rate of the branch, "
                             "training only (ConvNeXt-T: 0 to 0.1 by depth)")


class Permute4(nn.Module):
    """(N, C, H, W) <-> (N, H, W, C): a view, as torchvision's ``Permute``."""

    def __init__(self, to_last: bool) -> None:
        super().__init__()
        self.to_last = to_last

    def forward(self, x: Tensor) -> Tensor:
        return x.permute(0, 2, 3, 1) if self.to_last else x.permute(0, 3, 1, 2)


class ConvNeXtBlockModule(nn.Module):
    """(N, C, H, W) -> (N, C, H, W): x + drop_path(gamma * block(x))."""

    def __init__(self, channels: int, p: ConvNeXtParams, hidden: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(channels, channels, p.kernel, padding=p.kernel // 2, groups=channels),
            Permute4(True), nn.LayerNorm(channels, eps=p.eps), nn.Linear(channels, hidden),
            _optional(make_act(p.act)), nn.Linear(hidden, channels), Permute4(False))
        self.layer_scale = _optional(LayerScale((channels, 1, 1), 0, p.layer_scale)
                                     if p.layer_scale else None)
        self.stochastic_depth = _optional(DropPath(p.drop_path) if p.drop_path > 0 else None)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.stochastic_depth(self.layer_scale(self.block(x)))


@register_block
class ConvNeXtBlock(Block):
    """ConvNeXt block: 7x7 depthwise conv, per-pixel layer norm, 4x MLP, layer scale, drop path.

    Shapes: (C, H, W) -> (C, H, W). Liu et al. 2022, "A ConvNet for the 2020s". Parameters
    ``C*k*k + C`` (depthwise) ``+ 2C`` (norm) ``+ 2CF + F + C`` (MLP, F = expand*C) ``+ C``
    (layer scale).

    >>> from archlab.blocks import BLOCKS
    >>> B = BLOCKS['convnext_block']
    >>> B.param_count(B.Params(), [(96, 56, 56)])     # ConvNeXt-T, stage 1
    79296
    """

    name = "convnext_block"
    family = "residual"
    Params = ConvNeXtParams
    input_ranks = (3,)
    inherits = ()
    examples = [({}, [(8, 7, 7)]), ({"kernel": 3, "layer_scale": None, "drop_path": 0.1,
                                     "expand": 2}, [(4, 5, 6)])]

    @classmethod
    def output_shape(cls, p, inputs):
        cls.check_inputs(inputs)
        return tuple(inputs[0])

    @classmethod
    def ops(cls, p, inputs) -> list[Op]:
        c, h, w = shape = tuple(inputs[0])
        hidden = max(1, round(p.expand * c))
        last = (h, w, c)
        wide = (h, w, hidden)
        ops = [conv_op("block.0", shape, shape, (p.kernel, p.kernel), groups=c, bias=True),
               move_op("block.1", "permute", (shape,), last),
               norm_op("block.2", "layer_norm", last, 2 * c),
               linear_op("block.3", last, wide)]
        if p.act.active:
            ops.append(act_op("block.4", p.act.kind, wide))
        ops += [linear_op("block.5", wide, last), move_op("block.6", "permute", (last,), shape)]
        if p.layer_scale:
            ops += layer_scale_ops("layer_scale", shape, 0)
        ops += drop_path_ops("stochastic_depth", shape, p.drop_path)
        ops.append(eltwise_op("", "add", (shape, shape), shape))
        return ops

    @classmethod
    def build(cls, p, inputs):
        c = inputs[0][0]
        return ConvNeXtBlockModule(c, p, max(1, round(p.expand * c)))


__all__ = ["ConvNeXtBlockModule", "TransformerBlockModule"]
