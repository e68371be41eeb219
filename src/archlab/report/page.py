"""The one report renderer: a :class:`Page` of :class:`Section` s rendered to ONE self-contained
HTML file (styles, script and images inlined; it opens from disk with no network).

Every capability that shows results (design, run, comparison, search) builds a Page::

    from archlab.report import Page, render_html, write_html
    page = Page("resnet18 vs resnet18 (width=32)")
    s = page.section("Figures")
    s.paragraph("Counts are per sample.")
    s.table(["figure", "baseline", "variant"], [["params", 11.7e6, 3.1e6]])
    s.image(png_bytes, alt="Pareto plot", caption="quality against multiply-adds")
    write_html(page, "report.html")

Tables are sortable (click a header); numbers sort as numbers. ``Section.html`` takes trusted
fragments built by archlab; every other method escapes its text.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import Any

from .assets import CSS, SCRIPT


def _anchor(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "section"


def cell_html(value: Any) -> tuple[str, str]:
    """(display html, sort key) of a table cell: numbers sort as numbers, None shows as '-'."""
    if value is None:
        return "-", ""
    if isinstance(value, bool):
        return escape(str(value)), str(int(value))
    if isinstance(value, int):
        return f"{value:,}", str(value)
    if isinstance(value, float):
        if value != value:
            return "-", ""
        text = f"{value:.4g}" if abs(value) < 1e5 else f"{value:,.0f}"
        return text, repr(value)
    if isinstance(value, Raw):
        return value.html, value.sort
    return escape(str(value)), str(value)


def bar_html(fraction: float, css: str = "") -> str:
    """A horizontal bar (0..1) drawn with CSS: no image needed."""
    pct = max(0.0, min(1.0, fraction)) * 100
    return (f'<div class="bar-track"><div class="bar-fill {css}" style="width:{pct:.1f}%"></div>'
            "</div>")


@dataclass
class Raw:
    """A trusted HTML cell (built by archlab) with its sort key."""

    html: str
    sort: str = ""


@dataclass
class Section:
    title: str
    id: str
    parts: list[str] = field(default_factory=list)
    level: int = 2

    def paragraph(self, text: str, css: str = "") -> Section:
        self.parts.append(f'<p class="{css}">{escape(text)}</p>' if css else f"<p>{escape(text)}</p>")
        return self

    def note(self, text: str) -> Section:
        return self.paragraph(text, "note")

    def html(self, fragment: str) -> Section:
        """A trusted fragment (archlab's own markup, e.g. an SVG diagram)."""
        self.parts.append(fragment)
        return self

    def table(self, columns: list[str], rows: list[list[Any]], *, row_nodes: list[str] | None = None,
              sortable: bool = True, css: str = "", caption: str | None = None) -> Section:
        head = "".join(f'<th data-col="{i}" title="click to sort">{escape(c)}</th>' if sortable
                       else f"<th>{escape(c)}</th>" for i, c in enumerate(columns))
        body = []
        for r, row in enumerate(rows):
            rid = f' data-node="{escape(row_nodes[r])}"' if row_nodes else ""
            cells = []
            for value in row:
                shown, key = cell_html(value)
                num = ' class="num"' if isinstance(value, (int, float)) and not isinstance(value, bool) else ""
                cells.append(f'<td data-sort="{escape(key)}"{num}>{shown}</td>')
            body.append(f"<tr{rid}>{''.join(cells)}</tr>")
        cap = f"<caption>{escape(caption)}</caption>" if caption else ""
        cls = " ".join(c for c in ("data", "sortable" if sortable else "", css) if c)
        self.parts.append(f'<div class="table-wrap"><table class="{cls}">{cap}<thead><tr>{head}</tr>'
                          f"</thead><tbody>{''.join(body)}</tbody></table></div>")
        return self

    def image(self, png: bytes, alt: str, caption: str | None = None, mime: str = "image/png",
              css: str = "") -> Section:
        self.parts.append(image_html(png, alt, caption, mime, css))
        return self

    def cards(self, items: list[tuple[str, str]]) -> Section:
        """Headline figures as a row of small cards: (label, value text)."""
        inner = "".join(f'<div class="card"><div class="card-value">{escape(v)}</div>'
                        f'<div class="card-label">{escape(k)}</div></div>' for k, v in items)
        self.parts.append(f'<div class="cards">{inner}</div>')
        return self

    def grid(self, cells: list[tuple[str, str]], css: str = "") -> Section:
        """Side by side: (title, trusted html) per column."""
        inner = "".join(f'<div class="cell"><h4>{escape(t)}</h4>{h}</div>' for t, h in cells)
        self.parts.append(f'<div class="grid {css}">{inner}</div>')
        return self


def image_html(png: bytes, alt: str, caption: str | None = None, mime: str = "image/png",
               css: str = "") -> str:
    data = base64.b64encode(png).decode("ascii")
    img = f'<img class="{css}" alt="{escape(alt)}" src="data:{mime};base64,{data}">'
    if caption is None:
        return img
    return f"<figure>{img}<figcaption>{escape(caption)}</figcaption></figure>"


@dataclass
class Page:
    """A report page: a title, an optional subtitle, sections in order."""

    title: str
    subtitle: str = ""
    sections: list[Section] = field(default_factory=list)

    def section(self, title: str, id: str | None = None, level: int = 2) -> Section:
        anchor = id or _anchor(title)
        taken = {s.id for s in self.sections}
        base, i = anchor, 2
        while anchor in taken:
            anchor, i = f"{base}-{i}", i + 1
        s = Section(title, anchor, level=level)
        self.sections.append(s)
        return s


def render_html(page: Page) -> str:
    """The page as one HTML document with everything inlined."""
    from .. import __version__

    nav = "".join(f'<a href="#{s.id}">{escape(s.title)}</a>' for s in page.sections if s.level == 2)
    body = []
    for s in page.sections:
        tag = f"h{s.level}"
        body.append(f'<section id="{s.id}" class="level{s.level}"><{tag}>{escape(s.title)}</{tag}>'
                    f"{''.join(s.parts)}</section>")
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{escape(page.title)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>{escape(page.title)}</h1>"
        + (f'<p class="subtitle">{escape(page.subtitle)}</p>' if page.subtitle else "")
        + f"<nav>{nav}</nav></header><main>{''.join(body)}</main>"
        f"<footer>archlab {escape(__version__)} · {stamp} · one self-contained file: no network "
        f"needed</footer><script>{SCRIPT}</script></body></html>\n")


def write_html(page: Page, path: str | Path) -> Path:
    """Write the page; returns the path. The file is written whole (a temporary file renamed)."""
    import os
    import tempfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = render_html(page)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # as a plain open() would create it
    os.replace(tmp, path)
    return path
