"""Budgets: limits on analysis figures, checked before a candidate is trained.

``--budget params<=1M --budget multiply_adds<=300M --budget latency<=5ms@batch1
--budget train_memory<=2GiB@batch64``. The figures:

============================ ======================================= =========================
figure                       what                                    how it is obtained
============================ ======================================= =========================
params                       parameters (PyTorch's count)            analytic (block formulas)
multiply_adds, flops         per sample; FLOPs = 2 x multiply-adds   analytic
elementwise                  element-wise operations per sample      analytic
memory_access_bytes          ShuffleNetV2's memory access, float32   analytic
train_memory@batchN          peak training memory (Adam), batch N=64 meta-device trace
inference_memory@batchN      peak inference memory, batch N=1        meta-device trace
latency@batchN               forward latency (median), batch N=1     measured (archlab.analysis)
============================ ======================================= =========================

Screening computes the analytic figures first (from the resolved graph: block formulas are
memoised, and each distinct block's totals are summed once), and the traced and measured figures
only for a candidate that passed them; all of them are cached per design (the hash of its
resolved YAML), latency in a JSON file next to the study so that a resumed or second worker does
not measure a design twice.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import UsageError

ANALYTIC = ("params", "multiply_adds", "flops", "elementwise", "memory_access_bytes")
TRACED = ("train_memory", "inference_memory")
MEASURED = ("latency",)
FIGURES = ANALYTIC + TRACED + MEASURED
DEFAULT_BATCH = {"train_memory": 64, "inference_memory": 1, "latency": 1}
_COUNT_UNITS = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "b": 1e9, "t": 1e12}
_TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6}
_BUDGET_RE = re.compile(r"^\s*([A-Za-z_]+)\s*(<=|<)\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*"
                        r"([A-Za-zµ]*)\s*(?:@\s*batch\s*([0-9]+))?\s*$")


@dataclass(frozen=True)
class Budget:
    """One limit: ``figure <= limit`` (seconds for latency, bytes for memory, counts otherwise),
    at ``batch`` for the batch-dependent figures."""

    figure: str
    limit: float
    batch: int | None = None
    text: str = ""

    @property
    def key(self) -> str:
        return f"{self.figure}@batch{self.batch}" if self.batch else self.figure

    def violation(self, value: float) -> float:
        """Optuna's constraint value: <= 0 when within the budget (the relative excess)."""
        return value / self.limit - 1.0

    def show(self, value: float | None) -> str:
        return format_figure(self.figure, value)


def format_figure(figure: str, value: float | None) -> str:
    if value is None:
        return "-"
    if figure == "latency":
        return f"{value * 1e3:.3g} ms"
    if figure in TRACED or figure == "memory_access_bytes":
        from ..analysis.memory import format_bytes

        return format_bytes(value)
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{unit}"
    return f"{value:g}"


def parse_budget(text: str) -> Budget:
    """'params<=1M', 'latency<=5ms@batch1', 'train_memory<=2GiB@batch64' -> Budget.

    >>> parse_budget('latency<=5ms@batch1').limit
    0.005
    """
    m = _BUDGET_RE.match(str(text))
    if not m:
        raise UsageError(f"cannot read the budget '{text}': expected FIGURE<=LIMIT[UNIT][@batchN]",
                         fix="e.g. --budget params<=1M, --budget latency<=5ms@batch1, "
                             "--budget train_memory<=2GiB@batch64")
    figure, _, number, unit, batch = m.groups()
    if figure not in FIGURES:
        from ..errors import unknown_name

        raise UsageError(unknown_name("budget figure", figure, FIGURES),
                         fix="budgets limit analysis figures (docs/search.md#budgets)")
    value = float(number)
    if figure == "latency":
        if unit.lower() not in _TIME_UNITS:
            raise UsageError(f"latency budget '{text}' needs a time unit (s, ms, us), got "
                             f"'{unit or 'none'}'", fix="e.g. --budget latency<=5ms@batch1")
        limit = value * _TIME_UNITS[unit.lower()]
    elif figure in TRACED or figure == "memory_access_bytes":
        from ..analysis.memory import parse_bytes

        limit = float(parse_bytes(f"{number}{unit}"))
    else:
        if unit.lower() not in _COUNT_UNITS:
            raise UsageError(f"cannot read the unit '{unit}' of '{text}': counts take k, M or G",
                             fix="e.g. --budget params<=1.5M, --budget multiply_adds<=300M")
        limit = value * _COUNT_UNITS[unit.lower()]
    if figure in ANALYTIC and batch:
        raise UsageError(f"'{figure}' is counted per sample; '@batch{batch}' does not apply",
                         fix=f"write --budget {figure}<={number}{unit}")
    if limit <= 0:
        raise UsageError(f"budget '{text}' must be positive")
    b = int(batch) if batch else DEFAULT_BATCH.get(figure)
    return Budget(figure, limit, b, str(text).strip())


def parse_budgets(items: list[str] | None) -> list[Budget]:
    return [parse_budget(t) for t in items or []]


# ----------------------------------------------------------------------------- screening ---


@lru_cache(maxsize=65536)
def _node_totals(cls, params, shapes: tuple) -> tuple[int, int, int, int]:
    from ..graph import block_formula

    return _totals(block_formula(cls, "ops", params, shapes))


def _totals(ops: list) -> tuple[int, int, int, int]:
    """As archlab.analyze counts them: ops that do nothing at inference (dropout) do no
    element-wise work."""
    from ..analysis.analyze import INFERENCE_NOOPS

    p = m = e = a = 0
    for o in ops:  # one pass: this is the screening's inner loop
        p += o.params
        m += o.multiply_adds
        if o.kind not in INFERENCE_NOOPS:
            e += o.elementwise
        a += o.memory_access
    return p, m, e, a


def analytic_figures(graph: Any) -> dict[str, float]:
    """params, multiply_adds, flops, elementwise and memory_access_bytes (float32) of a resolved
    graph, summed per distinct block (no per-op records are renamed or copied)."""
    from ..blocks import get_block

    p = m = e = a = 0
    for node in graph.nodes:
        cached = node.__dict__.get("_ops")  # the resolver may have listed them already
        if cached is not None:
            np_, nm, ne, na = _totals(cached)
        else:
            try:
                key = tuple(tuple(s) for s in node.input_shapes)
                np_, nm, ne, na = _node_totals(get_block(node.block), node.params, key)
            except TypeError:  # settings that cannot be hashed
                np_, nm, ne, na = _totals(node.ops())
        p, m, e, a = p + np_, m + nm, e + ne, a + na
    return {"params": p, "multiply_adds": m, "flops": 2 * m, "elementwise": e,
            "memory_access_bytes": 4 * a}


def design_key(design: Any) -> str:
    return hashlib.sha256(design.to_yaml().encode()).hexdigest()[:20]


@dataclass
class Screening:
    """A candidate's figures against the budgets."""

    figures: dict[str, float | None]
    violations: dict[str, float]            # budget key -> relative excess (<= 0 within)
    feasible: bool
    measured: list[str] = field(default_factory=list)   # budget keys actually computed

    def over(self, budgets: list[Budget]) -> list[str]:
        return [f"{b.key} {b.show(self.figures.get(b.key))} > {b.show(b.limit)}"
                for b in budgets if self.violations.get(b.key, 0) > 0]


class Screener:
    """Checks candidates against budgets, cheapest figures first, with a cache per design."""

    def __init__(self, budgets: list[Budget], *, device: str = "cpu", cache_file: Path | None = None,
                 latency_rounds: int = 15) -> None:
        self.budgets = budgets
        self.device = device
        self.cache_file = Path(cache_file) if cache_file else None
        self.latency_rounds = latency_rounds
        self._lock = threading.Lock()
        self.cache: dict[str, float] = {}
        if self.cache_file and self.cache_file.exists():
            try:
                self.cache = json.loads(self.cache_file.read_text())
            except (OSError, ValueError):
                self.cache = {}

    def screen(self, design: Any, *, analytic_only: bool = False) -> Screening:
        figures: dict[str, float | None] = dict(analytic_figures(design.graph))
        violations: dict[str, float] = {}
        measured = []
        for b in self.budgets:
            if b.figure in ANALYTIC:
                violations[b.key] = b.violation(figures[b.figure])
                measured.append(b.key)
        feasible = all(v <= 0 for v in violations.values())
        expensive = [b for b in self.budgets if b.figure not in ANALYTIC]
        if expensive and feasible and not analytic_only:
            key = design_key(design)
            for b in sorted(expensive, key=lambda b: b.figure != "train_memory"):
                value = self._figure(design, key, b)
                figures[b.key] = value
                violations[b.key] = b.violation(value)
                measured.append(b.key)
                if value > b.limit:
                    break  # the candidate is out: spare the dearer figures
            feasible = all(v <= 0 for v in violations.values())
        for b in self.budgets:
            violations.setdefault(b.key, 0.0)  # not computed: the candidate failed a cheaper one
            figures.setdefault(b.key, None)
        return Screening(figures, violations, feasible, measured)

    def figure(self, design: Any, figure: str, batch: int | None = None) -> float:
        """One figure of a design (cached), whether or not a budget limits it."""
        if figure in ANALYTIC:
            return float(analytic_figures(design.graph)[figure])
        b = Budget(figure, float("inf"), batch or DEFAULT_BATCH[figure])
        return self._figure(design, design_key(design), b)

    def _figure(self, design: Any, key: str, b: Budget) -> float:
        cache_key = f"{key}:{b.key}:{self.device}"
        if cache_key in self.cache:
            return self.cache[cache_key]
        from ..analysis import analyze

        if b.figure == "latency":
            a = analyze(design, batch=b.batch, memory=False, latency=True, device=self.device,
                        rounds=self.latency_rounds)
            value = a.latency.forward.median_s
        else:
            a = analyze(design, batch=b.batch, memory=True)
            value = (a.memory.peak_training_bytes if b.figure == "train_memory"
                     else a.memory.peak_inference_bytes)
        with self._lock:
            self.cache[cache_key] = float(value)
            self._save()
        return float(value)

    def _save(self) -> None:
        if not self.cache_file:
            return
        if self.cache_file.exists():  # another worker's figures too
            try:
                self.cache = {**json.loads(self.cache_file.read_text()), **self.cache}
            except (OSError, ValueError):
                pass
        tmp = self.cache_file.with_suffix(f".{id(self)}.tmp")
        tmp.write_text(json.dumps(self.cache, indent=0))
        tmp.replace(self.cache_file)
