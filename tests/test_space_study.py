"""Design-space studies: `archlab space sample` trains random designs of a space, `archlab space
compare` gives error EDFs, error vs each parameter and bootstrap intervals of the best value
(Radosavovic et al. 2020). EDF and bootstrap checked against direct computations."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

from archlab import cli
from archlab.search.space_study import bootstrap_best, edf


def test_edf_is_the_share_of_models_below_each_error():
    errors = [0.3, 0.1, 0.2, 0.2, 0.5]
    grid = np.array([0.0, 0.1, 0.15, 0.2, 0.25, 0.6])
    expected = [sum(e < g for e in errors) / len(errors) for g in grid]
    assert edf(errors, grid).tolist() == expected


def test_bootstrap_interval_holds_the_best_models_value():
    rng = np.random.default_rng(0)
    # error is lowest near width 40: the best models' widths lie around it
    models = [{"error": abs(w - 40) / 100 + rng.normal(0, 0.01), "params": {"width": float(w)}}
              for w in rng.integers(8, 128, size=200)]
    ci = bootstrap_best(models, "width", resamples=2000)
    assert ci["low"] <= 40 <= ci["high"] and ci["high"] - ci["low"] < 30
    assert bootstrap_best(models[:3], "width") is None  # too few models


SPACE = textwrap.dedent("""\
    space: {name}
    design: digits_mlp
    variables:
      hidden: {{int: [{low}, {high}]}}
    """)


def test_sample_and_compare_two_spaces(tmp_path, capsys):
    for name, low, high in (("narrow", 4, 12), ("wide", 32, 96)):
        f = tmp_path / f"{name}.yaml"
        f.write_text(SPACE.format(name=name, low=low, high=high))
        assert cli.main(["space", "sample", str(f), "-n", "5", "--data", "digits", "--epochs", "1",
                         "--out", str(tmp_path / "space")]) == 0
    capsys.readouterr()
    out = tmp_path / "cmp"
    assert cli.main(["space", "compare", str(tmp_path / "space" / "narrow"),
                     str(tmp_path / "space" / "wide"), "--out", str(out), "--bootstrap", "500",
                     "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    names = [s["name"] for s in result["samples"]]
    assert names == ["narrow", "wide"] and all(s["models"] == 5 for s in result["samples"])
    for s in result["samples"]:
        f = np.array(s["edf"]["F"])
        assert (np.diff(f) >= 0).all() and f[-1] <= 1.0  # a distribution function
        ci = s["best_values"]["hidden"]
        assert ci["low"] <= ci["best"] <= ci["high"] or ci["low"] <= ci["median"] <= ci["high"]
    assert (out / "edf.png").stat().st_size > 1000 and (out / "parameters.png").exists()
    assert cli.main(["space", "compare", str(tmp_path / "nothing")]) == 2
    assert "no space sample at" in capsys.readouterr().err


def test_space_show_lists_the_dimensions(tmp_path, capsys):
    f = tmp_path / "s.yaml"
    f.write_text(SPACE.format(name="s", low=4, high=12))
    assert cli.main(["space", "show", str(f)]) == 0
    out = capsys.readouterr().out
    assert "hidden" in out and "int in [4, 12]" in out
    with pytest.raises(SystemExit):
        cli.main(["space"])
