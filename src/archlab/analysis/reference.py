"""Plain-PyTorch reference networks, written by hand after the papers, with the same layer
structure as torchvision's (which cannot be installed here). They are oracles: the tests and
benchmarks check archlab's traced counts against torchvision's published figures on them
(resnet18 1.814 G, resnet50 4.089 G, mobilenet_v2 0.301 G multiply-adds at 224x224) and compare
archlab with torchinfo, fvcore and ptflops on the same modules. The Vision Transformer and
ConvNeXt references are the tests' output oracles for the zoo's vit_b_16 and convnext_tiny and
the builder benchmark's hand-written side.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout)]


class BasicBlock(nn.Module):
    """Two 3x3 convs with an identity or projected shortcut (He et al. 2016, ResNet).
    (N, C, H, W) -> (N, out, H/stride, W/stride)."""

    expansion = 1

    def __init__(self, cin: int, width: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1, self.bn1 = _conv_bn(cin, width, 3, stride)
        self.relu = nn.ReLU(inplace=True)
        self.conv2, self.bn2 = _conv_bn(width, width, 3)
        self.downsample = (nn.Sequential(*_conv_bn(cin, width, 1, stride))
                           if stride != 1 or cin != width else None)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (stride here, as torchvision's ResNet v1.5), 1x1 expand by 4.
    (N, C, H, W) -> (N, 4*width, H/stride, W/stride)."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1) -> None:
        super().__init__()
        out = width * 4
        self.conv1, self.bn1 = _conv_bn(cin, width, 1)
        self.conv2, self.bn2 = _conv_bn(width, width, 3, stride)
        self.conv3, self.bn3 = _conv_bn(width, out, 1)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = (nn.Sequential(*_conv_bn(cin, out, 1, stride))
                           if stride != 1 or cin != out else None)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    """ResNet for 224x224 ImageNet inputs. (N, 3, H, W) -> (N, classes)."""

    def __init__(self, block: type[nn.Module], depths: list[int], classes: int = 1000,
                 width: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = width
        for i, depth in enumerate(depths):
            w = width * 2**i
            blocks = []
            for j in range(depth):
                blocks.append(block(cin, w, 2 if (j == 0 and i > 0) else 1))
                cin = w * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


def resnet18(classes: int = 1000) -> ResNet:
    return ResNet(BasicBlock, [2, 2, 2, 2], classes)


def resnet50(classes: int = 1000, width: int = 64) -> ResNet:
    return ResNet(Bottleneck, [3, 4, 6, 3], classes, width)


def _divisible(v: float, d: int = 8) -> int:
    new = max(d, int(v + d / 2) // d * d)
    return new + d if new < 0.9 * v else new


class InvertedResidual(nn.Module):
    """1x1 expand, 3x3 depthwise, 1x1 linear projection (Sandler et al. 2018, MobileNetV2).
    (N, C, H, W) -> (N, out, H/stride, W/stride); a shortcut when shapes match."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [*_conv_bn(cin, hidden, 1), nn.ReLU6(inplace=True)]
        layers += [*_conv_bn(hidden, hidden, 3, stride, groups=hidden), nn.ReLU6(inplace=True),
                   *_conv_bn(hidden, cout, 1)]
        self.conv = nn.Sequential(*layers)
        self.use_res = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 1.0 for 224x224 inputs. (N, 3, H, W) -> (N, classes)."""

    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        setting = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                   (6, 160, 3, 2), (6, 320, 1, 1)]
        cin = 32
        features: list[nn.Module] = [nn.Sequential(*_conv_bn(3, cin, 3, 2), nn.ReLU6(inplace=True))]
        for t, c, n, s in setting:
            for i in range(n):
                features.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        features.append(nn.Sequential(*_conv_bn(cin, 1280, 1), nn.ReLU6(inplace=True)))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, classes))

    def forward(self, x: Tensor) -> Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1).flatten(1)
        return self.classifier(x)


def mobilenet_v2(classes: int = 1000) -> MobileNetV2:
    return MobileNetV2(classes)


class SmallConvNet(nn.Module):
    """A small CIFAR-sized network with a residual add, max pooling and a linear head, for
    memory tests that run for real on a CPU. (N, 3, 32, 32) -> (N, classes)."""

    def __init__(self, width: int = 16, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn(3, width, 3), nn.ReLU(inplace=True))
        self.block = BasicBlock(width, width)
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Sequential(nn.Conv2d(width, 2 * width, 3, padding=1), nn.GELU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.pool(self.block(self.stem(x))))


# ------------------------------------------------------------------ vision transformer -------


class ExplicitSelfAttention(nn.Module):
    """Multi-head self-attention written out: softmax(q k^T / sqrt(d)) v, with the projection
    weights laid out as nn.MultiheadAttention's. (N, L, D) -> (N, L, D)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, x: Tensor) -> Tensor:
        n, length, width = x.shape
        d = width // self.heads
        q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).reshape(
            n, length, 3, self.heads, d).permute(2, 0, 3, 1, 4)
        weights = torch.softmax(torch.matmul(q / math.sqrt(d), k.transpose(-2, -1)), dim=-1)
        return self.out_proj(torch.matmul(weights, v).transpose(1, 2).reshape(n, length, width))


class EncoderBlock(nn.Module):
    """Pre-norm transformer encoder layer of ViT. (N, L, D) -> (N, L, D).

    ``fused``: attention by ``nn.MultiheadAttention`` (torchvision's choice; an independent
    implementation for the tests); otherwise written out as :class:`ExplicitSelfAttention`."""

    def __init__(self, width: int, heads: int, mlp: int, fused: bool) -> None:
        super().__init__()
        self.fused = fused
        self.ln_1 = nn.LayerNorm(width, eps=1e-6)
        self.self_attention = (nn.MultiheadAttention(width, heads, batch_first=True) if fused
                               else ExplicitSelfAttention(width, heads))
        self.ln_2 = nn.LayerNorm(width, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(width, mlp), nn.GELU(), nn.Linear(mlp, width))

    def forward(self, x: Tensor) -> Tensor:
        y = self.ln_1(x)
        y = self.self_attention(y, y, y, need_weights=False)[0] if self.fused else \
            self.self_attention(y)
        x = x + y
        return x + self.mlp(self.ln_2(x))


class VisionTransformer(nn.Module):
    """ViT (Dosovitskiy et al. 2021) in torchvision's layout: patch conv, class token,
    positional embedding, pre-norm encoder layers, final norm, head on the class token.
    (N, C, H, W) -> (N, classes)."""

    def __init__(self, size: int = 224, patch: int = 16, width: int = 768, depth: int = 12,
                 heads: int = 12, mlp: int = 3072, classes: int = 1000, channels: int = 3,
                 fused: bool = False) -> None:
        super().__init__()
        self.conv_proj = nn.Conv2d(channels, width, patch, patch)
        # after the patch projection in parameters(), as the class token follows it in the flow
        self.embeddings = nn.ParameterDict({
            "class_token": nn.Parameter(torch.zeros(1, 1, width)),
            "pos_embedding": nn.Parameter(torch.empty(1, (size // patch) ** 2 + 1, width).normal_(std=0.02))})
        self.layers = nn.Sequential(*[EncoderBlock(width, heads, mlp, fused) for _ in range(depth)])
        self.ln = nn.LayerNorm(width, eps=1e-6)
        self.head = nn.Linear(width, classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv_proj(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.embeddings["class_token"].expand(x.shape[0], -1, -1), x], dim=1)
        x = self.ln(self.layers(x + self.embeddings["pos_embedding"]))
        return self.head(x[:, 0])


def vit_b_16(classes: int = 1000, fused: bool = False) -> VisionTransformer:
    return VisionTransformer(classes=classes, fused=fused)


# --------------------------------------------------------------------------- convnext -------


class ChannelsLastNorm(nn.LayerNorm):
    """Layer norm over the channels of each pixel of (N, C, H, W)."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class Scale(nn.Module):
    """Multiply by a learned per-channel gamma of shape (C, 1, 1) (layer scale)."""

    def __init__(self, channels: int, init: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((channels, 1, 1), init))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class CNBlock(nn.Module):
    """ConvNeXt block (Liu et al. 2022): dw 7x7, norm, 4x MLP with GELU on channels-last
    pixels, layer scale, residual. (N, C, H, W) -> (N, C, H, W); eval form (no drop path)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.fc2 = nn.Linear(4 * dim, dim)
        self.scale = Scale(dim, 1e-6)

    def forward(self, x: Tensor) -> Tensor:
        y = self.norm(self.dwconv(x).permute(0, 2, 3, 1))
        y = self.fc2(F.gelu(self.fc1(y))).permute(0, 3, 1, 2)
        return x + self.scale(y)


class ConvNeXt(nn.Module):
    """ConvNeXt (Liu et al. 2022): 4x4 stem, four stages with norm + 2x2 conv downsampling,
    pooled head with a layer norm. (N, 3, H, W) -> (N, classes)."""

    def __init__(self, depths=(3, 3, 9, 3), dims=(96, 192, 384, 768), classes: int = 1000,
                 channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(channels, dims[0], 4, 4),
                                   ChannelsLastNorm(dims[0], eps=1e-6)]
        for i, (depth, dim) in enumerate(zip(depths, dims, strict=True)):
            if i:
                layers += [ChannelsLastNorm(dims[i - 1], eps=1e-6), nn.Conv2d(dims[i - 1], dim, 2, 2)]
            layers += [CNBlock(dim) for _ in range(depth)]
        self.features = nn.Sequential(*layers)
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.head = nn.Linear(dims[-1], classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.norm(self.features(x).mean((2, 3))))


def convnext_tiny(classes: int = 1000) -> ConvNeXt:
    return ConvNeXt(classes=classes)
