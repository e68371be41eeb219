"""archlab's one report renderer: self-contained HTML pages (styles, script and images inlined).

Build a page from sections and render it; every capability's report is a page of this renderer::

    from archlab.report import Page, render_html, write_html
    page = Page("title", "subtitle")
    page.section("Figures").table(["figure", "value"], [["params", 11_689_512]])
    write_html(page, "report.html")

Ready-made pages: :func:`design_page`, :func:`run_page`, :func:`comparison_page`, and
:func:`report` (what ``archlab report`` runs). Diagrams: :mod:`archlab.report.diagram`
(``to_svg``, ``to_dot``, ``to_mermaid``).
"""

from .build import comparison_page, design_page, report, run_page
from .diagram import to_dot, to_mermaid, to_svg
from .page import Page, Raw, Section, bar_html, image_html, render_html, write_html

__all__ = ["Page", "Raw", "Section", "bar_html", "comparison_page", "design_page", "image_html",
           "render_html", "report", "run_page", "to_dot", "to_mermaid", "to_svg", "write_html"]
