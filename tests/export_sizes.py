"""Small variants of the zoo designs for the export tests: the same blocks and structure as the
published networks, at input sizes and widths that keep each test to a fraction of a second."""

SMALL: dict[str, dict] = {
    "dcgan_discriminator": {"ndf": 8},
    "dcgan_generator": {"ngf": 8, "nz": 16},
    "deepwatermap": {"size": 32},
    "fir_iir_net": {"size": 16},
    "inception_v3": {"classes": 10},  # its auxiliary head needs the 17x17 grid of 299x299
    "convnext_tiny": {"size": 32, "classes": 10},
    "efficientnet_b0": {"size": 32, "classes": 10},
    "gpt2_small": {"vocab": 96, "length": 16, "width": 64, "heads": 4, "depth": 2},
    "mobilenet_v2": {"size": 32, "classes": 10, "width_mult": 0.5},
    "mobilenet_v3_large": {"size": 32, "classes": 10, "width_mult": 0.5},
    "mobilenet_v3_small": {"size": 32, "classes": 10, "width_mult": 0.5},
    "resnet18": {"size": 32, "width": 16, "classes": 10},
    "resnet50": {"size": 32, "width": 16, "classes": 10},
    "se_resnet50": {"size": 32, "width": 16, "classes": 10},
    "shufflenet_v2": {"size": 32, "classes": 10},
    "squeezenet": {"size": 64, "classes": 10},
    "unet": {"size": 32, "width": 8},
    "vgg19": {"size": 32, "width": 8, "classes": 10},
    "vit_b_16": {"size": 32, "width": 64, "heads": 4, "depth": 2, "classes": 10},
    "xception": {"size": 75, "middle_depth": 1, "classes": 10},
}


def small(name: str, variables: dict) -> dict:
    """The small settings of a zoo design that its variables allow (all of them, normally)."""
    return {k: v for k, v in SMALL.get(name, {}).items() if k in variables}
