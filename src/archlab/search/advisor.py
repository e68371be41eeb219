"""``archlab new``: a simple baseline design, scaled by analytic screening to fit the budgets.

Start simple and small (A15) and borrow a known family (A14): for images, a plain CNN in the
VGG/LeNet manner (conv-BN-ReLU, the width doubling as the feature map halves, global average
pooling and one linear layer); for vectors, a two-layer perceptron; ``--from DESIGN`` borrows a
design (a zoo name or file) and scales its width variables instead. One multiplier scales every
width; the largest that fits every budget is kept (a bisection on the analytic figures, then the
measured ones, latency and memory, are checked and the width is stepped down until they fit).
The file states each choice's reason in a YAML comment. Principle ids: docs/principles.md.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

from ..errors import UsageError
from .budget import ANALYTIC, Screener, format_figure, parse_budgets

WIDTH_NAMES = ("width", "hidden", "base", "planes", "filters", "units")


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in str(text).lower().replace(",", "x").split("x"))
    except ValueError:
        shape = ()
    if not shape or any(v <= 0 for v in shape):
        raise UsageError(f"cannot read --input '{text}': expected sizes joined by 'x', channels "
                         "first, no batch", fix="e.g. --input 1x28x28, 3x32x32, 1x16000 or 64")
    return shape


def _cnn_text(name: str, task: str, shape: tuple[int, ...], outputs: int) -> str:
    channels, *spatial = shape
    side = min(spatial)
    stem_stride = 2 if side >= 64 else 1
    after_stem = side // stem_stride
    stages = max(1, min(4, int(math.log2(max(after_stem, 2) / 4))))
    kind = "images" if len(spatial) == 2 else "sequences"
    lines = [
        f"# {name}: a baseline written by `archlab new` for {kind} of shape {list(shape)}.",
        "# Start simple and small (A15), borrow a known family (A14): a plain CNN in the VGG manner.",
        "# Train it first; change one thing at a time against this baseline (docs/principles.md).",
        "archlab: 1",
        f"name: {name}",
        f"task: {task}",
        "variables:",
        "  width: 16      # channels of the first stage; scaled by `archlab new` to fit the budgets",
        "  depth: 1       # conv layers per stage: one is the simplest start (A15)",
        f"  outputs: {outputs}    # {'classes' if task == 'classification' else 'regression targets'}",
        f"input: {list(shape)}",
        "defaults: {norm: batch, act: relu}   # BN after each conv lets the convs drop their bias (A6)",
        "layers:",
    ]
    if stem_stride == 2:
        lines.append("  # a large input: the stem halves it at once, where compute is dearest")
        lines.append("  - {name: stem, block: conv, out: $width, kernel: 3, stride: 2}")
    else:
        lines.append("  - {name: stem, block: conv, out: $width, kernel: 3}")
    for i in range(stages):
        width = f"$(width * {2 ** (i + 1)})"
        lines.append(f"  - {{name: pool{i + 1}, block: maxpool, kernel: 2}}"
                     + ("   # halve the size..." if i == 0 else ""))
        lines.append(f"  - {{name: stage{i + 1}, block: conv, out: {width}, depth: $depth}}"
                     + ("   # ...and double the width (A8)" if i == 0 else ""))
    lines.append("  # global average pooling + one linear layer: few parameters, any input size")
    lines.append("  - {name: head, block: head, classes: $outputs}")
    return "\n".join(lines) + "\n"


def _mlp_text(name: str, task: str, shape: tuple[int, ...], outputs: int) -> str:
    return "\n".join([
        f"# {name}: a baseline written by `archlab new` for vectors of {shape[0]} features.",
        "# Start simple and small (A15): a two-layer perceptron is the baseline to beat.",
        "archlab: 1",
        f"name: {name}",
        f"task: {task}",
        "variables:",
        "  width: 64      # hidden units; scaled by `archlab new` to fit the budgets",
        f"  outputs: {outputs}",
        f"input: {list(shape)}",
        "layers:",
        "  - {name: hidden1, block: linear, out: $width, act: relu}",
        "  - {name: hidden2, block: linear, out: $width, act: relu}",
        "  - {name: out, block: linear, out: $outputs}   # logits / targets: no activation",
    ]) + "\n"


def _scalable(raw: dict) -> dict[str, int]:
    declared = raw.get("variables") or {}
    return {k: v for k, v in declared.items() if k in WIDTH_NAMES and isinstance(v, int)
            and not isinstance(v, bool)}


def _scaled(base: dict[str, int], m: float) -> dict[str, int]:
    return {k: max(4, int(round(v * m / 4)) * 4) if v >= 8 else max(1, int(round(v * m)))
            for k, v in base.items()}


def fit_to_budgets(raw: dict, source: str, budgets: list, extra: dict[str, Any]) -> tuple[Any, dict, list]:
    """The largest common width multiplier whose design fits every budget. Returns (design,
    the width variables, [(multiplier, figures, fits)] tried)."""
    from ..design import load

    base = _scalable(raw)
    if not base:
        raise UsageError(f"{source} has no width variable to scale (one of "
                         f"{', '.join(WIDTH_NAMES)} under 'variables:')",
                         fix="declare width: N under variables and use $width in the layers")
    screener = Screener(budgets)
    tried: list = []

    def candidate(m: float):
        values = {**extra, **_scaled(base, m)}
        design = load(copy.deepcopy(raw), _source=source, **values)
        return design, values

    def analytic_ok(m: float) -> bool:
        design, values = candidate(m)
        s = screener.screen(design, analytic_only=True)
        ok = all(s.violations[b.key] <= 0 for b in budgets if b.figure in ANALYTIC)
        tried.append((m, s.figures, ok))
        return ok

    low, high = 1 / 64, 16.0
    if not analytic_ok(low):
        s = tried[-1][1]
        raise UsageError("even the narrowest variant (widths x 1/64) is over budget: " + ", ".join(
            f"{b.key} {format_figure(b.figure, s.get(b.key))} > {format_figure(b.figure, b.limit)}"
            for b in budgets if b.figure in ANALYTIC and s.get(b.key, 0) > b.limit),
            fix="loosen the budget or start from a smaller family (--from digits_mlp)")
    if analytic_ok(high):
        low = high
    for _ in range(24):  # bisection on a log scale
        if high / low < 1.02:
            break
        mid = math.sqrt(low * high)
        if analytic_ok(mid):
            low = mid
        else:
            high = mid
    m = low
    for _ in range(40):  # measured budgets: step down until they fit
        design, values = candidate(m)
        s = screener.screen(design)
        tried.append((m, s.figures, s.feasible))
        if s.feasible:
            return design, values, tried
        m *= 0.85
        if m < 1 / 64:
            break
    raise UsageError("no width of this family fits every budget: " + "; ".join(s.over(budgets)),
                     fix="loosen the budget, or borrow a lighter design with --from")


def new_design(*, task: str, input_text: str, classes: int = 10, outputs: int = 1,
               budgets: list[str] | None = None, base: str | None = None, name: str = "mynet",
               output: str, force: bool = False, data: str | None = None) -> dict:
    from ..design.source import parse_text, read_file

    out = Path(output)
    if out.exists() and not force:
        raise UsageError(f"{out} exists; archlab new never overwrites a design",
                         fix="choose another -o, or add --force")
    shape = _shape(input_text)
    parsed = parse_budgets(budgets)
    n_out = classes if task == "classification" else outputs
    extra: dict[str, Any] = {}
    if base is not None:
        from .. import zoo

        path = Path(base)
        raw, source = None, base
        if path.exists():
            raw, source = read_file(path)
        elif zoo.exists(base):
            raw, _ = read_file(zoo.path(base))
            source = f"zoo:{base}"
        if raw is None:
            raise UsageError(f"'{base}' is neither a design file nor a zoo design",
                             fix="archlab zoo lists the designs")
        declared = raw.get("variables") or {}
        for key, value in (("classes", n_out), ("channels", shape[0])):
            if key in declared:
                extra[key] = value
        if "size" in declared and len(shape) == 3:
            extra["size"] = shape[1]
        header = (f"# {name}: {source} borrowed (A14) and scaled by `archlab new` to fit "
                  f"{', '.join(b.text for b in parsed) or 'no budget'}.\n"
                  "# Its width variables were multiplied by one factor, the largest that fits.\n")
    else:
        text = (_cnn_text if len(shape) >= 2 else _mlp_text)(name, task, shape, n_out)
        raw, source = parse_text(text, str(out)), str(out)
        header = ""
    design, values, tried = fit_to_budgets(raw, source, parsed, extra)
    values = {k: v for k, v in values.items() if k not in extra}  # the scaled widths only
    if tuple(design.graph.input_shape) != shape:
        raise UsageError(f"{source} takes input {list(design.graph.input_shape)}, not {list(shape)}",
                         fix="borrow a design with a matching input, or leave out --from")
    figures = tried[-1][1]
    budget_lines = "".join(f"#   {b.text}: {format_figure(b.figure, figures.get(b.key))}\n"
                           for b in parsed)
    fit_note = (f"# Scaled by `archlab new`: widths {values} (the largest that fits; "
                f"{len(tried)} variants screened).\n" + (f"# Budgets:\n{budget_lines}" if parsed else ""))
    if base is None:
        body = _set_values(text, values)
    else:
        data_out = design.to_dict()
        data_out["name"] = name
        import yaml

        body = yaml.safe_dump(data_out, sort_keys=False, default_flow_style=None, width=100)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(header + fit_note + body)
    from ..design import load

    final = load(out)
    result = {"path": str(out), "variables": values, "figures": figures,
              "budgets": [b.text for b in parsed],
              "summary": f"{final.graph.param_count:,} parameters, "
                         f"{format_figure('multiply_adds', final.graph.multiply_adds)} "
                         f"multiply-adds per sample, widths {values}"}
    if data:
        from ..diagnose.checks import check

        report = check(final, data)
        result["checks"] = [f"{c.name}: {c.status}: {c.message}" for c in report.checks]
    return result


def _set_values(text: str, values: dict[str, int]) -> str:
    """Write the fitted widths into the template's variables, keeping the comments."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        for k, v in values.items():
            prefix = f"  {k}: "
            if line.startswith(prefix):
                rest = line[len(prefix):]
                comment = rest[rest.index("#"):] if "#" in rest else ""
                lines[i] = f"{prefix}{v}" + (f"      {comment}" if comment else "")
    return "\n".join(lines) + "\n"
