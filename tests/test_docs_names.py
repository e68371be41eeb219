"""Every Python name the README and docs/ mention (``archlab.train.TrainConfig``,
``archlab.diagnose.HealthRecorder.attach``...) is reachable as written, and the docs cite no
file outside the repository.

The oracle is the import system: each dotted name is imported module by module, then looked up
attribute by attribute.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# a dotted name; not a JSON schema id such as archlab.show/1 or archlab.weights-import/1
NAME = re.compile(r"\barchlab(?:\.[A-Za-z_][A-Za-z0-9_]*)+(?![A-Za-z0-9_/-])")
# configuration keys written like names, not Python objects ([tool.archlab.review] tables)
NOT_PYTHON = ("archlab.review.thresholds", "archlab.review.disable", "archlab.review.suppress")


def _names() -> list[tuple[str, str]]:
    found: dict[str, str] = {}
    for doc in DOCS:
        for line in doc.read_text().splitlines():
            if "tool.archlab" in line:  # pyproject tables, not Python names
                continue
            for name in NAME.findall(line):
                name = name.rstrip(".")
                if not name.startswith(NOT_PYTHON):
                    found.setdefault(name, doc.name)
    return sorted(found.items())


def _resolve(dotted: str):
    parts = dotted.split(".")
    obj = importlib.import_module(parts[0])
    for i, part in enumerate(parts[1:], start=1):
        if hasattr(obj, part):
            obj = getattr(obj, part)
            continue
        obj = importlib.import_module(".".join(parts[: i + 1]))  # a submodule not yet imported
    return obj


@pytest.mark.parametrize("name,doc", _names())
def test_documented_name_is_reachable(name, doc):
    try:
        _resolve(name)
    except (ImportError, AttributeError) as exc:
        pytest.fail(f"{doc} mentions {name}, which does not resolve: {exc}")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_docs_cite_nothing_outside_the_repository(doc):
    text = doc.read_text()
    assert "../shared" not in text and "PRINCIPLES.md" not in text
