"""``archlab report`` from the command line: a design, a saved comparison, bad input."""

from __future__ import annotations

import json
import re

from archlab.cli import main


def test_design_report_and_saved_comparison(tmp_path, capsys):
    out = tmp_path / "d.html"
    assert main(["report", "mnist_cnn", "--set", "width=8", "-o", str(out)]) == 0
    assert "self-contained" in capsys.readouterr().out
    html = out.read_text()
    assert "<title>mnist_cnn (width=8): design report</title>" in html
    assert html.count('class="node') == 10 and "<script>" in html and "<style>" in html
    assert not re.search(r'<(script|link|img)[^>]+(src|href)="(https?:)?//', html)

    assert main(["compare", "mnist_cnn", "mnist_cnn?width=8", "--no-review", "--json"]) == 0
    saved = tmp_path / "c.json"
    saved.write_text(capsys.readouterr().out)
    out = tmp_path / "c.html"
    assert main(["report", str(saved), "-o", str(out)]) == 0
    html = out.read_text()
    assert "mnist_cnn vs mnist_cnn?width=8" in html and "Structural diff against the baseline" in html
    assert html.count('class="archlab-diagram"') == 2  # both designs, side by side


def test_bad_saved_comparison_is_an_error(tmp_path, capsys):
    bad = tmp_path / "x.json"
    bad.write_text(json.dumps({"schema": "archlab.analysis/1"}))
    assert main(["report", str(bad), "-o", str(tmp_path / "x.html")]) == 2
    err = capsys.readouterr().err
    assert "is not a saved comparison: expected schema archlab.compare/1, got archlab.analysis/1" in err
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty"), "-o", str(tmp_path / "y.html")]) == 2
    assert "is a folder but not a run folder" in capsys.readouterr().err
