"""The design figures of one operand, before any training: what ``archlab compare`` tabulates.

Counts come from the analytic path (each block's formulas, no tensors: a ResNet-50 in a few
milliseconds); memory needs a meta-device trace and is computed only when a batch is given;
latency is measured only when asked, with the analysis' own protocol
(:func:`archlab.analysis.measure_latency`: warm-up, fixed threads, median and interquartile range).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# name -> (label, unit, direction, depends on the input shape). direction: 'lower' is better,
# 'higher' is better, or '' (a property, neither).
FIGURES: dict[str, tuple[str, str, str, bool]] = {
    "params": ("parameters", "", "lower", False),
    "multiply_adds": ("multiply-adds (per sample)", "", "lower", True),
    "elementwise": ("element-wise ops (per sample)", "", "lower", True),
    "memory_access_bytes": ("memory access (per sample)", "B", "lower", True),
    "arithmetic_intensity": ("arithmetic intensity", "op/B", "higher", True),
    "saved_activation_bytes": ("saved activations (batch)", "B", "lower", True),
    "peak_training_bytes": ("peak training memory (batch)", "B", "lower", True),
    "latency_ms": ("latency, forward (median)", "ms", "lower", True),
    "latency_iqr_ms": ("latency spread (IQR)", "ms", "", True),
    "findings_error": ("review findings: error", "", "lower", False),
    "findings_warning": ("review findings: warning", "", "lower", False),
    "findings_info": ("review findings: info", "", "", False),
}


@dataclass
class DesignFigures:
    """Figures of one design. ``values`` maps FIGURES names to numbers (None: not computed)."""

    values: dict[str, float | int | None] = field(default_factory=dict)
    analysis: Any = None                      # archlab.analysis.Analysis
    findings: list = field(default_factory=list)  # archlab.review Finding records
    stages: list[dict] = field(default_factory=list)  # per stage: path, params, multiply_adds, ...


def design_figures(design: Any, *, batch: int | None = None, latency: bool = False,
                   review: bool = True, latency_rounds: int = 15, optimizer: str = "adam",
                   device: str = "cpu") -> DesignFigures:
    """Analyse one design. ``batch``: also saved activations and peak training memory at that
    batch (a meta trace); ``latency``: also the measured forward latency (at ``batch`` or 1)."""
    from ..analysis import analyze

    a = analyze(design, batch=batch or 1, memory=batch is not None, latency=latency,
                rounds=latency_rounds, optimizer=optimizer, device=device)
    t = a.totals
    values: dict[str, Any] = {k: t[k] for k in ("params", "multiply_adds", "elementwise",
                                                "memory_access_bytes", "arithmetic_intensity")}
    values["saved_activation_bytes"] = a.memory.saved_activation_bytes if a.memory else None
    values["peak_training_bytes"] = a.memory.peak_training_bytes if a.memory else None
    values["latency_ms"] = a.latency.forward.median_s * 1e3 if a.latency else None
    values["latency_iqr_ms"] = a.latency.forward.iqr_s * 1e3 if a.latency else None
    findings: list = []
    if review:
        from ..review.run import run_review

        findings = run_review(design).findings
        counts = Counter(f.severity for f in findings)
        for sev in ("error", "warning", "info"):
            values[f"findings_{sev}"] = counts.get(sev, 0)
    else:
        for sev in ("error", "warning", "info"):
            values[f"findings_{sev}"] = None
    stages = [{"stage": s.path or "(top)", "params": s.params, "multiply_adds": s.multiply_adds,
               "memory_access_bytes": s.memory_access_bytes} for s in a.stages]
    return DesignFigures(values, a, findings, stages)


def change(base: float | None, value: float | None) -> tuple[float | None, float | None]:
    """(ratio value/base, percent change) or Nones where undefined (a zero or missing base)."""
    if base is None or value is None:
        return None, None
    if base == 0:
        return (1.0, 0.0) if value == 0 else (None, None)
    return value / base, 100.0 * (value - base) / base


def human(value: float | int | None, unit: str = "") -> str:
    """12.3M, 1.50 GiB, 3.2 ms: figures for people (the JSON keeps exact numbers)."""
    if value is None:
        return "-"
    if unit == "B":
        for name, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
            if abs(value) >= scale:
                return f"{value / scale:.2f} {name}"
        return f"{int(value)} B"
    if unit == "ms":
        return f"{value:.3g} ms"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.3g}" + (f" {unit}" if unit else "")
    for name, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f}{name}"
    return f"{int(value)}"
