"""mnist_cnn against two variants, trained by ``compare(..., data=...)`` with one seed, split and
set of options (CI: a 400-image subset of mnist5k, one epoch); the comparison and a run's
report opened in the real browser (see test_report_browser.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import archlab
from archlab.compare import compare
from archlab.report import comparison_page, report, write_html
from test_report_browser import browser, check_page, open_offline  # noqa: F401 (fixture)

VARIANTS = ["mnist_cnn", "mnist_cnn?width=8", "mnist_cnn?hidden=32"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from archlab.train import load_data

    root = tmp_path_factory.mktemp("cmp")
    full = load_data("mnist5k")
    rng = np.random.default_rng(0)
    keep = np.sort(rng.choice(len(full.y), 400, replace=False))
    data = root / "mnist400.npz"
    np.savez(data, x=full.x[keep].numpy(), y=full.y[keep].numpy())
    c = compare(VARIANTS, data=str(data), review=False,
                train_options={"epochs": 2, "batch": 64, "seed": 3}, out=root / "runs")
    return c, root


def test_every_operand_trains_the_same_way(trained):
    c, _ = trained
    runs = [e.operand.run for e in c.entries]
    assert all(r is not None for r in runs)
    splits = [np.load(r.path / "splits.npz") for r in runs]
    for s in splits[1:]:  # the same seed gives every operand the same split
        for key in ("train", "val", "test"):
            assert np.array_equal(s[key], splits[0][key])
    assert {r.config.seed for r in runs} == {3} and {r.config.epochs for r in runs} == {2}
    for e in c.entries:  # the figures are the run's own files
        assert e.run.test["accuracy"] == e.operand.run.summary["test"]["accuracy"]
        assert e.run.epochs == len(e.operand.run.metrics) == 2
        assert len(e.run.curves["val_accuracy"]) == 2
    params = {e.label: e.value("params") for e in c.entries}
    assert params["mnist_cnn?width=8"] == sum(p.numel() for p in c.entries[1].operand.run.model().parameters())


def test_quality_pareto_and_time_to_baseline(trained):
    c, _ = trained
    points = c.pareto()
    assert len(points) == 3 and any(p.front for p in points)
    cheapest = min(points, key=lambda p: p.cost)
    assert cheapest.front  # nothing is cheaper, so nothing dominates it
    base = c.entries[0].run
    assert base.reached == {"epoch": 2, "seconds": base.seconds[1]} or \
        base.reached["epoch"] <= 2  # the baseline reaches its own final score by its last epoch
    data = json.loads(c.to_json())
    assert data["runs"]["mnist_cnn"]["reached_baseline"]["epoch"] <= 2
    assert data["pareto"]["quality"] == "accuracy"
    assert len(data["runs"]["mnist_cnn?width=8"]["curves"]["val_loss"]) == 2


def test_comparison_and_run_reports_in_the_browser(trained, browser):  # noqa: F811
    c, root = trained
    out = write_html(comparison_page(c), root / "comparison.html")
    ctx, page, errors, requests = open_offline(browser, out)
    check_page(page, errors, requests, [e.operand.design for e in c.entries])
    text = page.inner_text("body")
    assert "Pareto front" in text and "Per-class test metrics" in text and "healthy" in text.lower() \
        or "event" in text
    page.screenshot(path=str(root / "comparison.png"), full_page=True)
    ctx.close()

    run_dir = c.entries[1].operand.run.path
    out = report([str(run_dir)], root / "run.html")
    ctx, page, errors, requests = open_offline(browser, out)
    check_page(page, errors, requests, [archlab.load(run_dir / "design.yaml")])
    examples = page.locator(".examples figure")
    assert examples.count() == 12
    caption = examples.first.inner_text()
    assert "true" in caption and "predicted" in caption
    alts = page.eval_on_selector_all("img", "els => els.map(e => e.alt)")
    assert {"confusion matrix", "health events timeline", "gradient heatmap"} <= set(alts)
    assert any(a.startswith("learning curves") for a in alts)
    page.screenshot(path=str(root / "run.png"), full_page=True)
    ctx.close()
