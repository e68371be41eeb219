"""Cost per block, side by side: multiply-adds, memory access and saved-activation memory, so
the bottleneck shows at a glance (B1, B3). matplotlib with the Agg backend (no display needed);
the file type follows the suffix (.png, .svg, .pdf)."""

from __future__ import annotations

from pathlib import Path

from ..errors import UsageError
from .result import Analysis


def design_label(design_or_name, variables: dict | None = None) -> str:
    """'resnet18 (width=32)': a design's name with the variables set on it (``--set``), so the
    plots of two variants can be told apart. ``variables`` defaults to the design's overrides."""
    name = getattr(design_or_name, "name", design_or_name)
    if variables is None:
        variables = getattr(design_or_name, "overrides", None) or {}
    if not variables:
        return str(name)
    return f"{name} ({', '.join(f'{k}={v}' for k, v in variables.items())})"


def plot_cost(analysis: Analysis, path: str | Path, depth: str = "block",
              variables: dict | None = None) -> Path:
    """Write three horizontal bar charts sharing the block axis; returns the path written.
    ``variables``: the design variables set on the command line, named in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    if path.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise UsageError(f"cannot write a plot to '{path}': expected a .png, .svg or .pdf file",
                         fix=f"use --plot {path.with_suffix('.png')}")
    rows = analysis.rows(depth)
    labels = [r.path for r in rows]
    panels = [
        ("multiply-adds (M, per sample)", [r.multiply_adds / 1e6 for r in rows], "tab:blue"),
        ("memory access (MiB, per sample)", [r.memory_access_bytes / 2**20 for r in rows], "tab:orange"),
    ]
    if any(r.saved_activation_bytes is not None for r in rows):
        panels.append((f"saved activations (MiB, batch {analysis.batch})",
                       [(r.saved_activation_bytes or 0) / 2**20 for r in rows], "tab:green"))
    height = max(3.0, 0.22 * len(rows) + 1.2)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels) + 1.5, height), sharey=True)
    positions = list(range(len(rows)))
    for ax, (title, values, color) in zip(axes, panels, strict=True):
        ax.barh(positions, values, color=color)
        ax.set_title(title, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
        ax.tick_params(axis="x", labelsize=8)
    axes[0].set_yticks(positions, labels, fontsize=7)
    axes[0].invert_yaxis()  # first block at the top, as in the table
    fig.suptitle(f"{design_label(analysis.name, variables or {})}: cost per {depth} (input {analysis.input_shape})", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
