"""``--input`` and ``--budget`` of every command that takes them are refused before any work with
exit status 2, the option's name, what was received and an example: each command reads its own
form (with or without the batch, a memory size or FIGURE<=LIMIT), and the shared checks
(archlab.limits.check_options) refuse a memory budget of 0."""

from __future__ import annotations

import pytest

from archlab.cli import main

CASES = [
    (["analyze", "digits_mlp", "--input", "axb"], "cannot read --input 'axb': expected positive sizes "
                                                  "joined by 'x', channels first, no batch; write --input"),
    (["analyze", "digits_mlp", "--input", "0x8x8"], "cannot read --input '0x8x8'"),
    (["review", "digits_mlp", "--input", "1x-3x3"], "--input takes positive sizes joined by 'x' without "
                                                    "the batch, got '1x-3x3'; e.g. --input 3x224x224"),
    (["gradcheck", "layer.py:make", "--input", "4x0"], "received '4x0'; give the batch dimension too: "
                                                       "--input 4x8x16x16"),
    (["new", "--task", "classification", "--input", "0x28", "--classes", "10", "-o", "net.yaml"],
     "cannot read --input '0x28'"),
    (["analyze", "digits_mlp", "--budget", "8XB"], "cannot read the memory size '8XB': expected a number "
                                                   "with a unit such as 8GiB"),
    (["analyze", "digits_mlp", "--budget=0GiB"], "--budget: a memory budget must be above 0 bytes; "
                                                 "received --budget 0GiB; e.g. --budget 8GiB"),
    (["new", "--task", "classification", "--input", "1x28x28", "--classes", "10", "--budget", "params<=abc",
      "-o", "net.yaml"], "cannot read the budget 'params<=abc': expected FIGURE<=LIMIT[UNIT][@batchN]; "
                         "e.g. --budget params<=1M"),
]


@pytest.mark.parametrize(("argv", "message"), CASES, ids=[" ".join(c[0][:4]) for c in CASES])
def test_input_and_budget_are_refused_before_any_work(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # `new -o net.yaml` must not write anything
    (tmp_path / "layer.py").write_text("import torch\n\ndef make():\n    return torch.nn.Linear(4, 4)\n")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert message in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["layer.py"]


def test_a_good_budget_reaches_the_analysis(capsys):
    assert main(["analyze", "digits_mlp", "--input", "1x8x8", "--budget", "1GiB", "--json"]) == 0
    assert '"budget_bytes": 1073741824' in capsys.readouterr().out
