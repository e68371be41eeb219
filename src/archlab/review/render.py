"""Review output for people (a rich table grouped by node), programs (JSON) and code-scanning
tools (SARIF 2.1.0).

JSON schema ``archlab.review/1``::

    {
      "schema": "archlab.review/1",
      "name": str,                      # design or module class name
      "input": [int],                   # input shape without the batch
      "conventions": str,               # units of the figures in messages and evidence
      "counts": {"error": int, "warning": int, "info": int},
      "findings": [{"rule": str, "severity": "info"|"warning"|"error", "node": str,
                    "message": str, "fix": str, "guideline": str,
                    "evidence": {name: number|str|list|dict},
                    "source": str|null, "line": int|null}],
      "suppressed": [{...finding, "reason": str}],
      "disabled": {rule_id: reason},
      "rules_run": [rule_id]
    }

``node`` is a design node path (or a module path for a hand-written module); '' is the whole
network.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import __version__, tables
from .rule import RULES, SEVERITIES
from .run import ReviewResult

CONVENTIONS = ("per sample (batch 1); memory access in elements read + written, x4 bytes at "
               "float32 (ShuffleNetV2's MAC); multiply-adds of conv/linear/matmul (FLOPs = 2x)")

SARIF_LEVEL = {"info": "note", "warning": "warning", "error": "error"}
STYLE = {"info": "cyan", "warning": "yellow", "error": "bold red"}


def to_json(result: ReviewResult) -> dict[str, Any]:
    counts = {s: 0 for s in SEVERITIES}
    for f in result.findings:
        counts[f.severity] += 1
    return {
        "schema": "archlab.review/1",
        "name": result.name,
        "input": list(result.input_shape),
        "conventions": CONVENTIONS,
        "counts": counts,
        "findings": [f.to_dict() for f in result.findings],
        "suppressed": [{**f.to_dict(), "reason": why} for f, why in result.suppressed],
        "disabled": dict(result.disabled),
        "rules_run": list(result.rules_run),
    }


def _uri(source: str | None) -> str | None:
    """A file path a code-scanning tool can open (zoo designs and dicts have none)."""
    if not source or source.startswith(("<", "zoo:")):
        return None
    path = Path(source)
    try:
        return path.resolve().relative_to(Path.cwd()).as_posix()
    except ValueError:
        return path.as_posix()


def _location(finding, default_uri: str | None) -> dict[str, Any]:
    location: dict[str, Any] = {
        "logicalLocations": [{"fullyQualifiedName": finding.node or "<network>",
                              "kind": "module"}],
    }
    uri = _uri(finding.source) or default_uri
    if uri:
        physical: dict[str, Any] = {"artifactLocation": {"uri": uri}}
        if finding.line:
            physical["region"] = {"startLine": finding.line}
        location["physicalLocation"] = physical
    return location


def to_sarif(result: ReviewResult, source: str | None = None) -> dict[str, Any]:
    """SARIF 2.1.0 log with one run; suppressed findings carry their justification."""
    rule_ids = list(RULES)
    rules = [
        {
            "id": rid,
            "name": "".join(p.capitalize() for p in rid.split("-")),
            "shortDescription": {"text": RULES[rid].summary},
            "fullDescription": {"text": RULES[rid].rationale},
            "help": {"text": f"{RULES[rid].rationale} Source: {RULES[rid].guideline}. "
                             f"See docs/review-rules.md#{rid}."},
            "defaultConfiguration": {"level": SARIF_LEVEL[RULES[rid].severity]},
            "properties": {"guideline": RULES[rid].guideline,
                           "thresholds": dict(RULES[rid].thresholds)},
        }
        for rid in rule_ids
    ]
    default_uri = _uri(source)
    results = []
    for finding, reason in [(f, None) for f in result.findings] + list(result.suppressed):
        entry: dict[str, Any] = {
            "ruleId": finding.rule,
            "ruleIndex": rule_ids.index(finding.rule),
            "level": SARIF_LEVEL[finding.severity],
            "message": {"text": f"{finding.message}. Fix: {finding.fix}."},
            "locations": [_location(finding, default_uri)],
            "properties": {"node": finding.node, "evidence": finding.evidence,
                           "guideline": finding.guideline},
        }
        if reason is not None:
            entry["suppressions"] = [{"kind": "external", "justification": reason}]
        results.append(entry)
    return {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "archlab-review", "version": __version__,
                                "rules": rules}},
            "results": results,
            "properties": {"network": result.name, "input": list(result.input_shape),
                           "conventions": CONVENTIONS},
        }],
    }


def print_report(result: ReviewResult, console=None) -> None:
    """Findings grouped by node path, in network order."""
    from rich.table import Table

    console = console or tables.console()
    title = f"Design review of {result.name} (input {'x'.join(map(str, result.input_shape))})"
    if not result.findings:
        console.print(f"{title}: no findings from {len(result.rules_run)} rules")
    else:
        table = Table(title=title, show_lines=False, expand=False)
        table.add_column("node", style="bold", no_wrap=True)
        table.add_column("severity", no_wrap=True)
        table.add_column("rule", no_wrap=True)
        table.add_column("finding (evidence)", ratio=3)
        table.add_column("fix", ratio=2)
        previous = None
        for f in result.findings:
            node = f.node or "<network>"
            label = f"{node}\n[dim]line {f.line}[/]" if f.line else node
            module = f.evidence.get("module")
            message = f.message
            if isinstance(module, str) and module and module != f.node:
                # several layers of one node can be reported: say which, relative to the node
                inner = module[len(f.node) + 1:] if module.startswith(f.node + ".") else module
                message = f"[dim]{inner}:[/] {message}"
            table.add_row(label if node != previous else "",
                          f"[{STYLE[f.severity]}]{f.severity}[/]", f.rule, message, f.fix,
                          end_section=False)
            previous = node
        tables.print_table(table, console)
    counts = {s: sum(1 for f in result.findings if f.severity == s) for s in SEVERITIES}
    summary = ", ".join(f"{n} {s}" for s, n in reversed(counts.items()))
    console.print(f"{summary}; {len(result.suppressed)} suppressed")
    for rule_id, reason in result.disabled.items():
        console.print(f"rule {rule_id} disabled: {reason}")
    console.print(f"[dim]figures {CONVENTIONS}[/]")


def print_rules(console=None) -> None:
    from rich.table import Table

    console = console or tables.console()
    table = Table(title="Design-review rules")
    for col in ("id", "severity", "guideline", "looks for", "thresholds"):
        table.add_column(col)
    for rid, rule in RULES.items():
        thresholds = ", ".join(f"{k}={v}" for k, v in rule.thresholds.items()) or "-"
        table.add_row(rid, rule.severity, rule.guideline, rule.summary, thresholds)
    tables.print_table(table, console)


def rules_json() -> dict[str, Any]:
    return {
        "schema": "archlab.review-rules/1",
        "rules": [{"id": rid, "severity": r.severity, "guideline": r.guideline,
                   "summary": r.summary, "rationale": r.rationale,
                   "thresholds": dict(r.thresholds)} for rid, r in RULES.items()],
    }
