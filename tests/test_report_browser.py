"""The HTML report in a real browser: Debian's Chromium driven by Playwright (no browser
download), the file opened offline from disk. Checks: no console errors, every image decoded,
one SVG node per design node, a stage collapses and expands, a table sorts, a screenshot."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import archlab
from archlab.report import Page, render_html, report, write_html

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail("the report's browser test needs Debian's Chromium at /usr/bin/chromium; "
                    "install it: apt-get update && apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


def open_offline(browser, path: Path):
    """A page with the network cut off (any request fails the test) and console errors kept."""
    context = browser.new_context(offline=True, viewport={"width": 1300, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url) if not r.url.startswith(("file:", "data:")) else None)
    page.goto(path.resolve().as_uri())
    page.wait_for_load_state("load")
    return context, page, errors, requests


def check_page(page, errors, requests, designs):
    """Common checks: images decoded, SVG nodes for each design node, no errors, no network."""
    images = page.eval_on_selector_all("img", "els => els.map(e => [e.complete, e.naturalWidth])")
    assert images and all(done and width > 0 for done, width in images), images
    svgs = page.locator("svg.archlab-diagram")
    assert svgs.count() == len(designs)
    for i, d in enumerate(designs):
        paths = svgs.nth(i).evaluate("s => [...s.querySelectorAll('g.node')].map(g => g.dataset.path)")
        assert sorted(paths) == sorted(["input"] + [n.path for n in d.graph.nodes])
    assert errors == [] and requests == []


def _visible_nodes(svg):
    return svg.evaluate("s => [...s.querySelectorAll('g.node')].filter(g => g.style.display !== 'none').length")


def test_design_report_in_the_browser(browser, tmp_path):
    out = report(["unet"], tmp_path / "unet.html")
    html = out.read_text()
    assert not re.search(r'(src|href)="(https?:)?//', html)  # nothing outside the file
    ctx, page, errors, requests = open_offline(browser, out)
    design = archlab.load("unet")
    check_page(page, errors, requests, [design])
    svg = page.locator("svg.archlab-diagram").first
    total = _visible_nodes(svg)
    height = float(svg.get_attribute("height"))
    page.locator("g.stage[data-stage='dec4'] text.stage-label").click()   # collapse a stage
    assert _visible_nodes(svg) == total - 4 and float(svg.get_attribute("height")) < height
    assert page.locator("g.stage[data-stage='dec4'] .stage-collapsed").is_visible()
    page.locator("g.stage[data-stage='dec4'] text.stage-label").click()   # and expand it again
    assert _visible_nodes(svg) == total and float(svg.get_attribute("height")) == height
    # sort the node table by multiply-adds, largest first
    header = page.locator(".design-block table.nodes th", has_text="multiply-adds").first
    header.click()
    header.click()
    table = header.locator("xpath=ancestor::table")
    first = table.locator("tbody tr").first.locator("td").first.inner_text()
    costliest = max(design.graph.nodes, key=lambda n: n.multiply_adds).path
    assert first == costliest or design.graph.node(first).multiply_adds == \
        design.graph.node(costliest).multiply_adds
    # a finding's link lights up its node
    link = page.locator("a[data-node]")
    if link.count():
        link.first.click()
        assert page.locator("g.node.hl").count() == 1
    shot = tmp_path / "unet.png"
    page.screenshot(path=str(shot), full_page=False)
    assert shot.stat().st_size > 20_000
    ctx.close()


def test_large_design_opens_collapsed_and_expands(browser, tmp_path):
    out = report(["nas_cell_net"], tmp_path / "nas.html")
    ctx, page, errors, requests = open_offline(browser, out)
    design = archlab.load("nas_cell_net")
    check_page(page, errors, requests, [design])
    svg = page.locator("svg.archlab-diagram").first
    collapsed = _visible_nodes(svg)
    assert collapsed < 20  # over 40 nodes: every stage starts collapsed
    page.locator("button.expand-all").click()
    assert _visible_nodes(svg) == len(design.graph.nodes) + 1
    page.locator("g.stage[data-stage='cell2'] text.stage-label").click()
    assert _visible_nodes(svg) == len(design.graph.nodes) + 1 - 14
    ctx.close()


def test_page_api_escapes_text_and_inlines_images(tmp_path):
    page = Page("a <b> title")
    s = page.section("Figures")
    s.paragraph("x < y & z").table(["k", "v"], [["<i>", 1.5], ["n", None]])
    s.image(b"\x89PNG fake", alt="fake")
    html = render_html(page)
    assert "a &lt;b&gt; title" in html and "x &lt; y &amp; z" in html and "<i>" not in html
    assert 'src="data:image/png;base64,' in html and ">-</td>" in html
    path = write_html(page, tmp_path / "sub" / "p.html")
    assert path.read_text() == html.replace(html[html.index("<footer>"):html.index("</footer>")],
                                            path.read_text()[path.read_text().index("<footer>"):
                                                             path.read_text().index("</footer>")])
