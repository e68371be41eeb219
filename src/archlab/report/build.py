"""Report pages for a design, a run and a comparison, and :func:`report`, which picks one from
what it is given (the ``archlab report`` operands)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import UsageError
from .compare_page import add_comparison_sections
from .design import add_design_sections
from .page import Page, write_html
from .run_page import add_run_sections


def design_page(design: Any, figures: Any = None, variables: dict | None = None,
                title: str | None = None) -> Page:
    from ..analysis.plot import design_label
    from ..compare.figures import design_figures

    figures = figures or design_figures(design)
    label = design_label(design, variables)
    page = Page(title or f"{label}: design report",
                f"input {'x'.join(map(str, design.input_shape))} · {len(design.graph.nodes)} nodes · "
                f"{design.graph.param_count:,} parameters")
    add_design_sections(page, design, figures, variables)
    return page


def run_page(operand: Any, examples: bool = True) -> Page:
    """A run's page: its training and health first, then its design."""
    from ..analysis.plot import design_label
    from ..compare.figures import design_figures
    from ..compare.runs import run_figures

    run = operand.run
    figures = run_figures(run)
    d = operand.design
    label = design_label(d, d.variables) if d is not None else Path(run.path).name
    page = Page(f"{label}: run report", f"{run.path} · {figures.data} · {figures.epochs} epochs")
    for problem in operand.problems:
        page.section("Problems with this run folder", id="problems").note(problem)
    add_run_sections(page, run, figures, Path(run.path).name, examples=examples)
    if d is not None:  # the cost plot is in the design's own report; the bars and table show it here
        add_design_sections(page, d, design_figures(d), d.variables, cost_plot=False)
    return page


def comparison_page(comparison: Any) -> Page:
    labels = [e.label for e in comparison.entries]
    page = Page(f"{labels[0]} vs {', '.join(labels[1:])}" if len(labels) > 1 else labels[0],
                f"comparison of {len(labels)} operands; baseline {labels[0]}")
    add_comparison_sections(page, comparison)
    return page


def report(operands: list[str], output: str | Path, *, variables: dict | None = None,
           batch: int | None = None, latency: bool = False, examples: bool = True) -> Path:
    """Write one self-contained HTML report. One design or run operand: its page; several, or a
    saved comparison (``archlab compare --json`` output): the comparison page."""
    from ..compare import compare, parse_operand

    if len(operands) == 1 and operands[0].endswith(".json") and Path(operands[0]).is_file():
        operands = _saved_comparison(Path(operands[0]))
    if len(operands) == 1:
        op = parse_operand(operands[0], variables)
        if op.run is not None:
            page = run_page(op, examples=examples)
        elif op.design is not None:
            from ..compare.figures import design_figures

            page = design_page(op.design, design_figures(op.design, batch=batch, latency=latency),
                               op.variables)
        else:
            raise UsageError(f"'{operands[0]}' cannot be reported: " + "; ".join(op.problems),
                             fix="give a finished run folder, a design file or a zoo name")
    else:
        page = comparison_page(compare(operands, variables=variables, batch=batch, latency=latency))
    return write_html(page, output)


def _saved_comparison(path: Path) -> list[str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read '{path}' as JSON ({exc})", source=str(path),
                         fix="give the output of `archlab compare ... --json`") from None
    if not isinstance(data, dict) or data.get("schema") != "archlab.compare/1":
        raise UsageError(f"'{path}' is not a saved comparison: expected schema archlab.compare/1, "
                         f"got {data.get('schema') if isinstance(data, dict) else type(data).__name__}",
                         source=str(path), fix="give the output of `archlab compare ... --json`")
    # a trained operand is re-read from its run folder, so the report shows the runs
    return [o["run"] or o["spec"] for o in data["operands"]]
