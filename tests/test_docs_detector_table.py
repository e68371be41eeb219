"""docs/diagnostics.md's detector table is the registry's own text: each row is made from a
detector's `kind`, `rule`, `thresholds` and first two `fixes`, so the page cannot drift from
what the monitor runs (regenerate the rows when a rule changes)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from archlab.diagnose.detectors import DETECTORS

DOC = Path(__file__).resolve().parents[1] / "docs" / "diagnostics.md"


def _fmt(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def table_row(name: str) -> str:
    d = DETECTORS[name]()
    rule = " ".join(str(d.rule).split()).replace("|", "\\|")
    th = d.thresholds if isinstance(d.thresholds, dict) else {}
    ths = ", ".join(f"{k}={_fmt(v)}" for k, v in th.items()) or "-"
    fixes = "; ".join(list(d.fixes)[:2]).replace("|", "\\|")
    return f"| `{name}` | {d.kind} | {rule} | {ths} | {fixes} |"


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_docs_row_is_the_registry_text(name):
    rows = re.findall(r"^\| `" + re.escape(name) + r"` \|.*$", DOC.read_text(), re.M)
    assert rows, f"docs/diagnostics.md: no table row for detector {name!r}; add: {table_row(name)}"
    assert rows[0] == table_row(name), (
        f"docs/diagnostics.md: the row of {name!r} differs from the registry's text; "
        f"replace it with:\n{table_row(name)}")
