"""``archlab review``: check a design or a PyTorch module against the design guidelines.

Exit status: 0 when no finding reaches ``--fail-on`` (default: error), 1 when one does (so it
can guard a CI pipeline), 2 on a usage or design error. Output: a table grouped by node path,
``--json`` (schema ``archlab.review/1``, see :mod:`archlab.review.render`), or ``--sarif``
(SARIF 2.1.0 for code-scanning tools). ``--rules`` lists the rules.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import UsageError
from .config import find_pyproject, load_pyproject
from .render import print_report, print_rules, rules_json, to_json, to_sarif
from .rule import SEVERITIES
from .run import run_review


def run(args: argparse.Namespace) -> int:
    if args.list_rules:
        if args.json:
            print(json.dumps(rules_json(), indent=2))
        else:
            print_rules()
        return 0
    if not args.target:
        raise UsageError("review needs a DESIGN or FILE.py:FACTORY",
                         fix="e.g. archlab review resnet50, or --rules to list the rules")
    from ..design.design import parse_assignments

    project = None
    if args.config:
        from ..limits import check_regular_file

        check_regular_file(args.config, "--config file (pyproject.toml)")
        try:
            Path(args.config).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise UsageError(f"--config '{args.config}' is not UTF-8 text (TOML)",
                             source=args.config,
                             fix="give a pyproject.toml with a [tool.archlab.review] table") from None
        project = load_pyproject(args.config)
    elif not args.no_project_config:
        start = args.target.rpartition(":")[0] if ".py:" in args.target else args.target
        start_path = Path(start) if Path(start).exists() else Path.cwd()
        found = find_pyproject(start_path)
        project = load_pyproject(found) if found else None
    result = run_review(args.target, args.input, project_config=project,
                        rules=args.rule or None, latency=args.latency,
                        **parse_assignments(args.set))
    source = args.target.rpartition(":")[0] if ".py:" in args.target else args.target
    if args.json:
        print(json.dumps(to_json(result), indent=2, default=str))
    elif args.sarif:
        print(json.dumps(to_sarif(result, source if Path(source).is_file() else None),
                         indent=2, default=str))
    else:
        print_report(result)
    failing = result.at_or_above(args.fail_on)
    if failing and not (args.json or args.sarif):
        print(f"{len(failing)} finding(s) at or above '{args.fail_on}'", file=sys.stderr)
    return 1 if failing else 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "review",
        help="check a design or module against the design guidelines, with evidence",
        description="Design review: each finding names the rule, the node, the measured "
                    "evidence and a fix. Settings: the design's `review:` section and "
                    "[tool.archlab.review] in the nearest pyproject.toml.",
    )
    p.add_argument("target", nargs="?", metavar="DESIGN|FILE.py:FACTORY",
                   help="a design file, a zoo name, or a Python file and the function that "
                        "returns the module")
    p.add_argument("--input", metavar="CxHxW",
                   help="input shape without the batch (required for a module), e.g. 3x224x224")
    p.add_argument("--set", dest="set", action="append", default=[], metavar="NAME=VALUE",
                   help="override a design variable (repeatable)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="machine-readable (archlab.review/1)")
    fmt.add_argument("--sarif", action="store_true", help="SARIF 2.1.0 for code-scanning tools")
    p.add_argument("--fail-on", choices=list(SEVERITIES[1:]) + ["info"], default="error",
                   help="exit 1 when a finding at or above this severity remains (default: error)")
    p.add_argument("--latency", action="store_true",
                   help="also time each node on the CPU (fragmentation reports its share of time)")
    p.add_argument("--rule", action="append", metavar="ID",
                   help="run only this rule (repeatable)")
    p.add_argument("--config", metavar="PYPROJECT",
                   help="read [tool.archlab.review] from this file instead of the nearest one")
    p.add_argument("--no-project-config", action="store_true",
                   help="ignore [tool.archlab.review] in pyproject.toml")
    p.add_argument("--rules", dest="list_rules", action="store_true",
                   help="list the rules with their ids, sources and thresholds")
    p.set_defaults(run=run)
