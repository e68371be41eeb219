"""Analysis of a design or of any ``torch.nn.Module``: parameters, multiply-adds, element-wise
operations, memory access, arithmetic intensity, saved activations, peak inference and training
memory, what fits a memory budget, and measured latency. See docs/analysis.md.

>>> import archlab
>>> a = archlab.analyze("resnet18", memory=False)
>>> round(a.totals["multiply_adds"] / 1e9, 3)
1.814
"""

from .analyze import analyze
from .latency import Latency, Timing, measure_latency
from .memory import OPTIMIZERS, Memory, format_bytes, memory_from_trace, parse_bytes
from .result import SCHEMA, Analysis, Row
from .trace import Trace, trace_module

__all__ = [
    "OPTIMIZERS",
    "SCHEMA",
    "Analysis",
    "Latency",
    "Memory",
    "Row",
    "Timing",
    "Trace",
    "analyze",
    "format_bytes",
    "measure_latency",
    "memory_from_trace",
    "parse_bytes",
    "trace_module",
]
