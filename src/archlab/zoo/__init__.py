"""Reference designs shipped with archlab (A14: borrow architectures from papers, then adapt).

Each design is a YAML file beside this module; ``archlab zoo`` lists them and
``archlab.load(name)`` loads one. The published parameter counts they reproduce are in
``PUBLISHED`` (PyTorch convention: BatchNorm running statistics are buffers, not parameters).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

# Published parameter counts the zoo must reproduce exactly (torchvision / paper ports).
PUBLISHED: dict[str, int] = {
    "resnet18": 11_689_512,
    "resnet50": 25_557_032,
    "mobilenet_v2": 3_504_872,
    "vgg19": 143_667_240,
    "unet": 31_037_698,
    "dcgan_generator": 3_576_704,
    "dcgan_discriminator": 2_765_568,
    "xception": 22_855_952,
    "shufflenet_v2": 2_278_604,
    "mobilenet_v3_large": 5_483_032,
    "mobilenet_v3_small": 2_542_856,
    "se_resnet50": 28_088_024,
    "squeezenet": 1_248_424,
    "inception_v3": 27_161_264,
    "vit_b_16": 86_567_656,
    "convnext_tiny": 28_589_128,
    "efficientnet_b0": 5_288_548,
    "gpt2_small": 124_439_808,       # the tied input/output embedding counted once
}

# Published multiply-adds at the design's default input, in G as published (torchvision's
# "GFLOPS", which are multiply-adds of conv/linear/matmul/attention, given to two decimals)
PUBLISHED_GMACS: dict[str, float] = {
    "vit_b_16": 17.56,
    "convnext_tiny": 4.46,
    "efficientnet_b0": 0.39,
}


def _folder() -> Path:
    return Path(str(resources.files(__name__)))


def names() -> list[str]:
    """Names of all zoo designs, sorted."""
    return sorted(p.stem for p in _folder().glob("*.yaml"))


def path(name: str) -> Path:
    return _folder() / f"{name}.yaml"


def exists(name: str) -> bool:
    return path(name).is_file()
