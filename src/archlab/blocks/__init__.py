"""Registered building blocks. Importing this package registers every built-in family.

Each family lives in its own module; ``BLOCKS`` maps a design-file name to its class.
"""

from .base import BLOCKS, Block, BlockParams, get_block, register_block
from .layers import ACTIVATIONS, NORMS, ActSpec, NormSpec, make_divisible

# Built-in families (import order = documentation order).
from . import conv  # noqa: E402,F401  isort: skip
from . import basic  # noqa: E402,F401  isort: skip
from . import pool  # noqa: E402,F401  isort: skip
from . import resample  # noqa: E402,F401  isort: skip
from . import dense  # noqa: E402,F401  isort: skip
from . import merge  # noqa: E402,F401  isort: skip
from . import se  # noqa: E402,F401  isort: skip
from . import resnet  # noqa: E402,F401  isort: skip
from . import mobile  # noqa: E402,F401  isort: skip
from . import separable3  # noqa: E402,F401  isort: skip
from . import fir_iir  # noqa: E402,F401  isort: skip
from . import attention  # noqa: E402,F401  isort: skip
from . import sequence  # noqa: E402,F401  isort: skip
from . import variational  # noqa: E402,F401  isort: skip
from . import residual  # noqa: E402,F401  isort: skip
from . import inception  # noqa: E402,F401  isort: skip
from . import fire  # noqa: E402,F401  isort: skip
from . import shufflenet  # noqa: E402,F401  isort: skip
from . import xception  # noqa: E402,F401  isort: skip
from . import stochastic  # noqa: E402,F401  isort: skip
from . import tokens  # noqa: E402,F401  isort: skip
from . import axis  # noqa: E402,F401  isort: skip
from . import transformer  # noqa: E402,F401  isort: skip

__all__ = [
    "ACTIVATIONS",
    "BLOCKS",
    "NORMS",
    "ActSpec",
    "Block",
    "BlockParams",
    "NormSpec",
    "get_block",
    "make_divisible",
    "register_block",
]
