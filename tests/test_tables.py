"""Tables fit the terminal: no line wider than the terminal, no header cut inside a word, no
number folded over two lines, and the columns left out at a narrow width are named.

Oracles: the printed text itself (line widths; every header word and every number of the JSON
output found whole in it).
"""

from __future__ import annotations

import json

import pytest
from rich.table import Table

from archlab import tables
from archlab.cli import main


def _run(capsys, monkeypatch, width: int, *args: str) -> str:
    monkeypatch.setenv("COLUMNS", str(width))
    assert main(list(args)) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("width", [80, 100])
@pytest.mark.parametrize("args", [["zoo"], ["show", "inception_v3"], ["show", "unet"],
                                  ["review", "vgg19"], ["analyze", "mobilenet_v2"]])
def test_commands_fit_the_terminal(capsys, monkeypatch, args, width):
    out = _run(capsys, monkeypatch, width, *args)
    widest = max(len(line) for line in out.splitlines())
    assert widest <= width, f"{' '.join(args)} printed a line of {widest} columns at {width}"


def test_show_keeps_every_number_and_name_whole(capsys, monkeypatch):
    doc = json.loads(_run(capsys, monkeypatch, 200, "show", "inception_v3", "--json"))
    out = _run(capsys, monkeypatch, 80, "show", "inception_v3")
    for node in doc["nodes"]:
        assert f"{node['params']:,}" in out, node["path"]
    for header in ("block", "params", "multiply-adds"):
        assert header in out


def test_headers_wrap_between_words_only():
    t = Table()
    t.add_column("saved activations (batch 64)", justify="right")
    t.add_column("a description that is long")
    t.add_row("1,234,567", "word " * 40)
    buf = tables.console(file=None)
    buf.width = 40
    with buf.capture() as cap:
        tables.print_table(t, buf)
    text = cap.get()
    for word in "saved activations (batch 64)".split() + ["description", "1,234,567"]:
        assert word in text, word
    assert max(len(line) for line in text.splitlines()) <= 40


def test_optional_columns_are_left_out_and_named():
    t = Table()
    for h in ("name", "alpha", "beta", "gamma"):
        t.add_column(h, justify="left" if h == "name" else "right")
    t.add_row("x" * 20, "1" * 12, "2" * 12, "3" * 12)
    c = tables.console()
    c.width = 50
    with c.capture() as cap:
        tables.print_table(t, c, optional=("gamma", "beta"))
    text = cap.get()
    assert "left out at 50 columns: gamma" in text
    assert "1" * 12 in text and "3" * 12 not in text
    assert max(len(line) for line in text.splitlines()) <= 50
