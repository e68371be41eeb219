"""Generative tasks: GANs, VAEs, (denoising) autoencoders and image-to-image (docs/training.md).

    import archlab
    run = archlab.train("dcgan_mnist_generator", "mnist5k", task="gan",
                        discriminator="dcgan_mnist_discriminator", epochs=5)
    run.test_metrics["classifier_fid"], run.path / "samples"

:func:`archlab.train.train` hands every task in :data:`GENERATIVE_TASKS` to
:func:`train_generative`; :func:`prepare_generative` is the seam for custom loops.
"""

from .corrupt import Corruption
from .pair import PairError
from .setup import GENERATIVE_TASKS, GenerativeSetup, prepare_generative

__all__ = ["GENERATIVE_TASKS", "Corruption", "GenerativeSetup", "PairError", "prepare_generative",
           "train_generative"]


def train_generative(*args, **kwargs):
    from .run import train_generative as _train

    return _train(*args, **kwargs)
