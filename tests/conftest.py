"""Shared test settings.

One torch thread per test process: the suite runs under pytest-xdist with one worker per core,
and several threads per worker oversubscribe the cores (small convolutions then run ~100x
slower on a loaded 2-core machine). Matplotlib draws off-screen.
"""

import os

import matplotlib
import torch

matplotlib.use("Agg")
torch.set_num_threads(1)
os.environ.setdefault("ARCHLAB_TEST", "1")
