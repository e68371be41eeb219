"""Tables for people, fitted to the terminal.

Every command prints its tables through :func:`print_table`: the table takes the terminal's
width (rich's detection: the terminal, ``COLUMNS``, or 80 when the output is not a terminal),
columns shrink and wrap their text when it is narrower than the table would like, and two
things never happen: a header cut in the middle of a word, and a number folded over two lines.
Both follow from one rule: a column is never narrower than the longest word of its header, and a
right-aligned (numeric) column never narrower than its longest cell. A column of names (node
paths, rule ids, design names: cells without spaces) keeps names of up to ``NAME_WIDTH``
characters whole while there is room, so prose columns wrap before names do.

When the table does not fit with its prose columns at least ``PROSE_WIDTH`` wide, it first
leaves out the columns the command marked optional (and says which, and how to see them), then
lets long names wrap, and only when even the minimum widths do not fit prints wider than the
terminal.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import IO

from rich.console import Console
from rich.table import Table
from rich.text import Text

NAME_WIDTH = 32  # the first column keeps names up to this many characters on one line
NAME_WIDTH_TIGHT = 16  # ... and up to this many when the terminal is narrow
PROSE_WIDTH = 24  # a prose column (findings, fixes, descriptions) narrower than this is hard to read


def _plain(cell) -> str:
    if isinstance(cell, Text):
        return cell.plain
    if isinstance(cell, str):
        return Text.from_markup(cell).plain
    return str(cell)


def _longest_line(cell) -> int:
    return max((len(line) for line in _plain(cell).splitlines()), default=0)


def _is_name(column, first: bool = False) -> bool:
    """A column of names (node paths, rule ids, designs, shapes: the first column, cells without
    spaces, or short cells) is kept whole up to ``NAME_WIDTH``; a column of prose wraps at its
    words."""
    cells = [_plain(c).strip() for c in column.cells]
    if first or not cells:
        return True
    return not any(" " in c for c in cells) or max(len(c) for c in cells) <= NAME_WIDTH_TIGHT


def _minimum(column, name_width: int, first: bool = False) -> int:
    need = max(len(w) for w in (_plain(column.header).split() or [""]))
    if column.justify == "right":
        need = max([need, *(_longest_line(c) for c in column.cells)])
    elif _is_name(column, first):
        need = max([need, *(min(_longest_line(c), name_width) for c in column.cells)])
    return need


def _width(table: Table, name_width: int, prose_width: int = 0) -> int:
    """The narrowest the table can be, with prose columns at least ``prose_width`` wide."""
    inner = 0
    for i, c in enumerate(table.columns):
        need = _minimum(c, name_width, i == 0)
        if c.justify != "right" and not _is_name(c, i == 0):
            need = max(need, min(prose_width, max([0, *(_longest_line(x) for x in c.cells)])))
        inner += need + 2  # cell padding: one space each side
    return inner + len(table.columns) + 1  # one border character per column, plus the last


def fit(table: Table, name_width: int = NAME_WIDTH) -> Table:
    """Set each column's minimum width by the rule above (returns the same table)."""
    for i, column in enumerate(table.columns):
        # numbers never fold: their column is at least as wide as the longest (no_wrap would
        # also stop the header from wrapping at its words); a name breaks across lines, not '…'
        if column.justify != "right":
            column.overflow = "fold"
        column.min_width = max(column.min_width or 0, _minimum(column, name_width, i == 0))
    return table


def _share_the_rest(table: Table, width: int, name_width: int) -> None:
    """Cap the prose columns (left-aligned, after the first) so that together they take what the
    other columns leave, in proportion to their longest cell: rich would otherwise keep a long
    word whole and push the table past the terminal's edge."""
    prose = [c for i, c in enumerate(table.columns) if c.justify != "right" and not _is_name(c, i == 0)]
    if not prose:
        return
    fixed = sum(_minimum(c, name_width, i == 0) + 2 for i, c in enumerate(table.columns) if c not in prose)
    room = width - (len(table.columns) + 1) - fixed - 2 * len(prose)
    mins = [c.min_width or 0 for c in prose]
    natural = [max([1, *(_longest_line(x) for x in c.cells), len(_plain(c.header))]) for c in prose]
    if room < sum(mins) or sum(natural) <= room:
        return  # nothing to share (too narrow: printed wider), or everything fits as it is
    spare = room - sum(mins)  # beyond each column's minimum, shared by how much each would like
    wants = [max(0, n - m) for n, m in zip(natural, mins, strict=True)]
    for column, m, w in zip(prose, mins, wants, strict=True):
        column.max_width = m + (spare * w // sum(wants) if sum(wants) else 0)


def console(file: IO[str] | None = None) -> Console:
    """A console of the terminal's width."""
    return Console(file=file)


def print_table(table: Table, out: Console | None = None, optional: Sequence[str] = ()) -> None:
    """Print ``table`` fitted to ``out``'s width. ``optional``: headers of columns that may be
    left out, the first named first, when the table cannot fit otherwise."""
    out = out or console()
    width = out.width
    name_width = NAME_WIDTH
    hidden: list[str] = []
    for header in optional:  # names whole matter more than the optional columns
        if _width(table, name_width, PROSE_WIDTH) <= width:
            break
        column = next((c for c in table.columns if _plain(c.header) == header), None)
        if column is not None:
            table.columns.remove(column)
            hidden.append(header)
    if _width(table, name_width, PROSE_WIDTH) > width:
        name_width = NAME_WIDTH_TIGHT
    fit(table, name_width)
    _share_the_rest(table, width, name_width)
    need = _width(table, name_width)
    if need > width:  # nothing left to leave out: print whole, wider than the terminal
        out = Console(file=out.file, width=need, color_system=out.color_system,
                      force_terminal=out.is_terminal)
    out.print(table)
    if hidden:
        out.print(f"(left out at {width} columns: {', '.join(hidden)}; a wider terminal, "
                  "COLUMNS=160, or --json shows them)", style="dim")
