"""Budgets: parsing, the screening figures against archlab.analyze (the oracle) on every zoo
design, cheapest-first screening, the per-design cache."""

from __future__ import annotations

import json

import pytest

import archlab
from archlab import zoo
from archlab.errors import UsageError
from archlab.search.budget import Screener, analytic_figures, parse_budget


@pytest.mark.parametrize(("text", "figure", "limit", "batch"), [
    ("params<=1M", "params", 1e6, None),
    ("params<=50k", "params", 5e4, None),
    ("multiply_adds<=300M", "multiply_adds", 3e8, None),
    ("flops < 1.5G", "flops", 1.5e9, None),
    ("latency<=5ms@batch1", "latency", 0.005, 1),
    ("latency<=800us@batch8", "latency", 0.0008, 8),
    ("latency<=2ms", "latency", 0.002, 1),
    ("train_memory<=2GiB@batch64", "train_memory", 2 * 2**30, 64),
    ("train_memory<=512MB", "train_memory", 512e6, 64),
    ("inference_memory<=100MiB@batch4", "inference_memory", 100 * 2**20, 4),
    ("memory_access_bytes<=40MB", "memory_access_bytes", 40e6, None),
])
def test_budgets_parse_with_units_and_batch(text, figure, limit, batch):
    b = parse_budget(text)
    assert (b.figure, b.batch) == (figure, batch)
    assert b.limit == pytest.approx(limit)


@pytest.mark.parametrize(("text", "message", "fix"), [
    ("params=1M", "expected FIGURE<=LIMIT", "--budget params<=1M"),
    ("parms<=1M", "unknown budget figure 'parms'", "did you mean 'params'"),
    ("latency<=5", "needs a time unit", "latency<=5ms@batch1"),
    ("params<=1Q", "counts take k, M or G", "params<=1.5M"),
    ("params<=1M@batch8", "counted per sample; '@batch8' does not apply", "params<=1M"),
    ("train_memory<=2GiX", "cannot read the memory size", "GiB"),
])
def test_bad_budgets_say_what_to_write(text, message, fix):
    with pytest.raises(UsageError) as err:
        parse_budget(text)
    assert message in str(err.value) and fix in str(err.value)


@pytest.mark.parametrize("name", zoo.names())
def test_screening_figures_equal_the_analysis(name):
    design = archlab.load(name)
    oracle = archlab.analyze(design, memory=False).totals
    mine = analytic_figures(design.graph)
    for key in ("params", "multiply_adds", "flops", "elementwise", "memory_access_bytes"):
        assert mine[key] == oracle[key], key


def test_screening_records_figures_and_checks_cheapest_first(tmp_path):
    design = archlab.load("mnist_cnn")
    params = design.graph.param_count
    cache = tmp_path / "figures.json"
    within = Screener([parse_budget(f"params<={params}"), parse_budget("train_memory<=64GiB@batch8")],
                      cache_file=cache)
    s = within.screen(design)
    assert s.feasible and s.violations["params"] == 0.0
    oracle = archlab.analyze(design, batch=8).memory.peak_training_bytes
    assert s.figures["train_memory@batch8"] == oracle
    assert json.loads(cache.read_text())  # the traced figure is cached per design
    over = Screener([parse_budget(f"params<={params - 1}"),
                     parse_budget("train_memory<=64GiB@batch8")]).screen(design)
    assert not over.feasible and over.violations["params"] > 0
    # over the cheap budget: the traced figure is never computed
    assert over.figures["train_memory@batch8"] is None and over.measured == ["params"]
    assert over.over([parse_budget(f"params<={params - 1}")]) == [
        f"params {params / 1e3:.3g}k > {(params - 1) / 1e3:.3g}k"]


def test_latency_is_measured_once_per_design(tmp_path, monkeypatch):
    design = archlab.load("digits_mlp")
    cache = tmp_path / "figures.json"
    screener = Screener([parse_budget("latency<=1s@batch1")], cache_file=cache, latency_rounds=3)
    first = screener.screen(design)
    assert first.feasible and 0 < first.figures["latency@batch1"] < 1
    import archlab.analysis as analysis

    def refuse(*a, **k):
        raise AssertionError("latency measured twice")

    monkeypatch.setattr(analysis, "analyze", refuse)
    again = Screener([parse_budget("latency<=1s@batch1")], cache_file=cache).screen(design)
    assert again.figures["latency@batch1"] == first.figures["latency@batch1"]
