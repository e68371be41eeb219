"""Shared test settings.

One torch thread per test process: the suite runs under pytest-xdist with one worker per core,
and several threads per worker oversubscribe the cores (small convolutions then run ~100x
slower on a loaded 2-core machine), set again before every test, because a test that measures
with more threads must not leave them to the next. Matplotlib draws off-screen.
"""

import os

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
torch.set_num_threads(1)
os.environ.setdefault("ARCHLAB_TEST", "1")


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    yield
