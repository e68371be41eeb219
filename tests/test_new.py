"""`archlab new`: a commented baseline scaled to fit the budgets (the largest width that fits,
checked against archlab's own analysis), borrowed designs, vectors, impossible budgets."""

from __future__ import annotations

import archlab
from archlab import cli


def test_new_writes_a_commented_design_that_fits_the_budgets(tmp_path, capsys):
    out = tmp_path / "mynet.yaml"
    code = cli.main(["new", "--task", "classification", "--input", "1x28x28", "--classes", "10",
                     "--budget", "params<=100k", "--budget", "multiply_adds<=20M", "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    text = out.read_text()
    assert "A15" in text and "A14" in text and "# Budgets:" in text  # each choice's reason
    design = archlab.load(out)
    totals = archlab.analyze(design, memory=False).totals  # the oracle
    assert totals["params"] <= 100_000 and totals["multiply_adds"] <= 20e6
    assert design.graph.output_shape == (10,)
    # the largest that fits: one width step more breaks a budget
    wider = archlab.load(out, width=design.variables["width"] + 4)
    t = archlab.analyze(wider, memory=False).totals
    assert t["params"] > 100_000 or t["multiply_adds"] > 20e6
    assert f"wrote {out}" in capsys.readouterr().out


def test_new_borrows_a_design_and_scales_its_widths(tmp_path):
    out = tmp_path / "base.yaml"
    assert cli.main(["new", "--input", "1x28x28", "--from", "mnist_cnn", "--budget",
                     "params<=50k", "--budget", "latency<=50ms@batch1", "-o", str(out)]) == 0
    design = archlab.load(out)
    zoo = archlab.load("mnist_cnn")
    assert design.graph.param_count <= 50_000 < zoo.graph.param_count
    # one factor for every width: width and hidden keep their ratio (16:128), up to rounding
    ratio = design.variables["hidden"] / design.variables["width"]
    assert 4 <= ratio <= 12
    assert "borrowed (A14)" in out.read_text()


def test_new_for_vectors_is_a_perceptron(tmp_path):
    out = tmp_path / "mlp.yaml"
    assert cli.main(["new", "--task", "regression", "--input", "20", "--outputs", "3",
                     "--budget", "params<=5k", "-o", str(out)]) == 0
    design = archlab.load(out)
    assert [n.block for n in design.graph] == ["linear", "linear", "linear"]
    assert design.graph.output_shape == (3,) and design.graph.param_count <= 5000


def test_new_says_when_no_width_fits_and_never_overwrites(tmp_path, capsys):
    out = tmp_path / "x.yaml"
    assert cli.main(["new", "--input", "3x64x64", "--budget", "params<=10", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "even the narrowest variant (widths x 1/64) is over budget: params" in err
    assert "loosen the budget" in err and not out.exists()
    out.write_text("mine\n")
    assert cli.main(["new", "--input", "1x8x8", "-o", str(out)]) == 2
    assert "archlab new never overwrites a design" in capsys.readouterr().err
    assert out.read_text() == "mine\n"


def test_new_with_data_runs_the_sanity_checks(tmp_path, capsys):
    out = tmp_path / "digits_net.yaml"
    assert cli.main(["new", "--input", "1x8x8", "--budget", "params<=20k", "--data", "digits",
                     "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "check loss_at_init:" in text and "check overfit_tiny_batch:" in text
