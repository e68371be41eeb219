"""The rule contract, the rule registry and the finding record of the design review.

A rule is a small registered class with a stable id, a severity, the guideline it comes from
(ShuffleNetV2's G1-G4, the principle ids of docs/principles.md), a rationale, its configurable
thresholds (with units and reasons), and ``check(facts, thresholds)`` that yields
:class:`Finding` records backed by measured figures.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..errors import UsageError, unknown_name

SEVERITIES = ("info", "warning", "error")
"""Ordered from least to most severe; ``--fail-on`` compares against this order."""


def severity_rank(severity: str) -> int:
    return SEVERITIES.index(severity)


@dataclass(frozen=True)
class Finding:
    """One observation about one node of a network.

    rule:       the rule's stable id ('unequal-1x1-width').
    severity:   'info' (a trade-off worth knowing), 'warning' (likely to cost accuracy or speed),
                'error' (almost certainly a mistake).
    node:       node path (design node or module path); '' = the whole network.
    message:    one sentence with the measured figures.
    fix:        a concrete change that removes the finding.
    guideline:  where the rule comes from ('ShuffleNetV2 G1; B4').
    evidence:   the figures behind the message, by name (elements, ratios, counts).
    source:     design file the node comes from, when known.
    line:       1-based line of the node in ``source``, when known.
    """

    rule: str
    severity: str
    node: str
    message: str
    fix: str
    guideline: str
    evidence: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    source: str | None = None
    line: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "severity": self.severity,
            "node": self.node,
            "message": self.message,
            "fix": self.fix,
            "guideline": self.guideline,
            "evidence": dict(self.evidence),
            "source": self.source,
            "line": self.line,
        }

    def __str__(self) -> str:
        where = self.node or "<network>"
        return f"{where}: {self.severity} [{self.rule}] {self.message}; fix: {self.fix}"


class Rule:
    """Base class of registered review rules. Subclasses set the class attributes and ``check``.

    id:           stable identifier used in configs, suppressions, JSON and SARIF.
    severity:     default severity of its findings.
    guideline:    the published guideline and principle ids it implements.
    summary:      one line: what the rule looks for.
    rationale:    why it matters (shown by ``--explain`` style outputs and in SARIF help).
    thresholds:   name -> default value; every threshold is configurable per design/project.
    """

    id: ClassVar[str] = ""
    severity: ClassVar[str] = "warning"
    guideline: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    rationale: ClassVar[str] = ""
    thresholds: ClassVar[dict[str, Any]] = {}

    def check(self, facts, t: dict[str, Any]) -> Iterator[Finding]:
        raise NotImplementedError(f"rule '{self.id}' must define check")

    # helper so rules build findings in one line
    @classmethod
    def finding(cls, node: str, message: str, fix: str, severity: str | None = None,
                **evidence: Any) -> Finding:
        return Finding(rule=cls.id, severity=severity or cls.severity, node=node,
                       message=message, fix=fix, guideline=cls.guideline, evidence=evidence)


RULES: dict[str, type[Rule]] = {}


def register_rule(cls: type[Rule]) -> type[Rule]:
    """Class decorator: add a rule to the review. Ids are stable; a clash is a programming error."""
    if not cls.id:
        raise ValueError(f"{cls.__name__} has no rule id")
    if cls.id in RULES and RULES[cls.id] is not cls:
        raise ValueError(f"rule '{cls.id}' is already registered by {RULES[cls.id].__module__}")
    if cls.severity not in SEVERITIES:
        raise ValueError(f"rule '{cls.id}' has severity '{cls.severity}', not one of {SEVERITIES}")
    RULES[cls.id] = cls
    return cls


def get_rule(rule_id: str, *, where: str | None = None) -> type[Rule]:
    try:
        return RULES[rule_id]
    except KeyError:
        raise UsageError(unknown_name("review rule", rule_id, RULES), source=where,
                         fix="run `archlab review --rules` to list them") from None
