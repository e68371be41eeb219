"""Operands of ``archlab compare`` and ``archlab report``: designs and run folders.

Syntax (one operand per argument, the first is the baseline)::

    resnet18                       a zoo design
    nets/mynet.yaml                a design file
    'resnet18?width=32'            a design with variables set (URL-query style, ``&`` between
    'resnet18?width=32&classes=10' assignments; values are read as YAML scalars, like --set)
    runs/mnist_cnn-w32             a run folder written by ``archlab train``

``--set NAME=VALUE`` on the command line applies to every design operand; an operand's own
``?name=value`` wins over it. A run folder's design is the resolved ``design.yaml`` it holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ArchlabError, UsageError


@dataclass
class Operand:
    """One thing being compared.

    label:      the table's column name: what the user wrote, or a run folder's name.
    text:       the design or folder part of it (before ``?``).
    variables:  the design variables this operand sets (``--set`` merged with ``?...``).
    design:     the resolved Design (None when a run folder holds none).
    run:        the archlab.train.Run when the operand is a run folder.
    problems:   what is wrong with an incomplete or older run folder, in words.
    """

    label: str
    text: str
    variables: dict[str, Any] = field(default_factory=dict)
    given: str = ""               # the operand exactly as written (kept in the JSON as "spec")
    design: Any = None
    run: Any = None
    problems: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return "run" if self.run is not None or self.problems else "design"

    @property
    def task(self) -> str | None:
        if self.run is not None:
            try:
                return self.run.data_info.get("task")
            except (ArchlabError, OSError, ValueError):  # reported in problems
                pass
        return self.design.task if self.design is not None else None

    def spec(self) -> str:
        """The operand as text that :func:`parse_operand` reads back (kept in JSON output)."""
        return self.given or self.label


def split_operand(text: str) -> tuple[str, dict[str, Any]]:
    """``'resnet18?width=32&classes=10'`` -> ``('resnet18', {'width': 32, 'classes': 10})``."""
    from ..design import parse_assignments

    base, sep, query = text.partition("?")
    if not sep:
        return text, {}
    if not base:
        raise UsageError(f"operand '{text}' has no design before '?'",
                         fix="write DESIGN?name=value, e.g. 'resnet18?width=32'")
    items = [q for q in query.split("&") if q]
    for item in items:
        if "=" not in item:
            raise UsageError(f"operand '{text}': '{item}' is not name=value",
                             fix="write DESIGN?name=value&name=value, e.g. 'resnet18?width=32'")
    return base, parse_assignments(items)


def is_run_folder(path: Path) -> bool:
    """A folder written by ``archlab train`` (or one that tries to be: any of its files)."""
    return path.is_dir() and any((path / f).exists() for f in
                                 ("config.yaml", "summary.json", "metrics.csv", "design.yaml"))


def parse_operand(text: str, common: dict[str, Any] | None = None) -> Operand:
    """Resolve one operand. Design errors are raised (the user typed them); a run folder that is
    incomplete or from an older archlab is returned with ``problems`` instead."""
    from ..design import load

    base, own = split_operand(text)
    variables = {**(common or {}), **own}
    path = Path(base)
    if is_run_folder(path):
        if own:
            raise UsageError(f"operand '{text}': variables apply to designs, not to the run folder "
                             f"'{base}'", fix="compare the run as it was trained (drop '?...')")
        return _open_run(text, path)
    if path.is_dir():
        raise UsageError(f"'{base}' is a folder but not a run folder (no config.yaml, summary.json "
                         "or metrics.csv)", source=base,
                         fix="give a folder written by `archlab train` (see `archlab runs`), a "
                             "design file or a zoo name")
    design = load(base, **variables)
    return Operand(label=text, text=base, variables=variables, design=design, given=text)


def _open_run(label: str, path: Path) -> Operand:
    from ..train.run import Run

    # a run is named by its folder (the table's column), the JSON keeps the path
    op = Operand(label=path.resolve().name or label, text=str(path), given=label)
    missing = [f for f in ("config.yaml", "data.json", "metrics.csv", "summary.json", "design.yaml")
               if not (path / f).exists()]
    if missing:
        op.problems.append(f"incomplete run folder: missing {', '.join(missing)} (the run did not "
                           "finish, or was written by an older archlab)")
    try:
        op.run = Run.open(path)
    except ArchlabError as exc:
        op.problems.append(str(exc))
        return op
    try:
        if (path / "design.yaml").exists():
            op.design = op.run.design()
            op.variables = dict(op.design.variables)
    except ArchlabError as exc:
        op.problems.append(f"its design.yaml cannot be read: {exc}")
    except (OSError, ValueError) as exc:  # a truncated or foreign file
        op.problems.append(f"its design.yaml cannot be read: {exc}")
    for name, reader in (("config.yaml", lambda r: r.config), ("summary.json", lambda r: r.summary),
                         ("metrics.csv", lambda r: r.metrics), ("data.json", lambda r: r.data_info)):
        if name in missing:
            continue
        try:
            reader(op.run)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is reported, never raised
            op.problems.append(f"{name} cannot be read ({type(exc).__name__}: "
                               f"{str(exc).splitlines()[0] if str(exc) else ''}); the run was "
                               "probably written by an older archlab")
    return op


def parse_operands(texts: list[str], common: dict[str, Any] | None = None) -> list[Operand]:
    if not texts:
        raise UsageError("nothing to compare", fix="give a baseline and variants, e.g. "
                         "archlab compare resnet18 'resnet18?width=32'")
    ops = [parse_operand(t, common) for t in texts]
    seen: dict[str, int] = {}
    for op in ops:  # two identical operands get distinct column names
        n = seen.get(op.label, 0)
        seen[op.label] = n + 1
        if n:
            op.label = f"{op.label} #{n + 1}"
    return ops
