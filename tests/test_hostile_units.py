"""The mechanisms behind the hostile-input corpus, tested directly: limits can be raised (and
only explicitly), guards warn where they must, refusals never advise loading unsafely."""

from __future__ import annotations

import pickle

import pytest
import torch

import archlab
from archlab import limits
from archlab.errors import ArchlabError, LimitError


def _stack(depth: int) -> dict:
    return {"input": [8], "layers": [{"block": "linear", "out": 8, "depth": depth}]}


def test_a_limit_names_itself_and_how_to_raise_it() -> None:
    with pytest.raises(LimitError) as info:
        archlab.load(_stack(limits.DEFAULT.nodes + 1))
    text = str(info.value)
    assert "'nodes'" in text and f"{limits.DEFAULT.nodes:,}" in text
    assert "archlab --limit nodes=" in text and "archlab.limits.raised(nodes=" in text
    assert "<dict> layers" in text


def test_raising_a_limit_lets_the_design_through_and_is_undone_after() -> None:
    with limits.raised(nodes=30):
        assert len(archlab.load(_stack(25)).graph) == 25
    assert limits.active() == limits.DEFAULT
    with pytest.raises(LimitError):
        archlab.load(_stack(limits.DEFAULT.nodes + 5))


def test_lowering_a_limit_screens_designs_tighter() -> None:
    with limits.raised(nodes=10), pytest.raises(LimitError, match="'nodes' is 10"):
        archlab.load("resnet18")


def test_limits_are_checked_by_name_and_value() -> None:
    with pytest.raises(ArchlabError, match="did you mean 'nodes'"):
        limits.active().with_values(nodez=3)
    with pytest.raises(ArchlabError, match="positive integer"):
        limits.active().with_values(nodes=0)
    assert limits.parse_limit("tensor_elements=1_000") == ("tensor_elements", 1000)


def test_cli_limit_applies_to_the_command(capsys) -> None:
    from archlab.cli import main

    assert main(["--limit", "nodes=3", "validate", "resnet18"]) == 2
    assert "the limit 'nodes' is 3" in capsys.readouterr().err
    assert limits.active() == limits.DEFAULT  # --limit applied to that command only
    assert main(["validate", "resnet18"]) == 0


def test_a_design_cannot_raise_its_own_limits() -> None:
    with pytest.raises(ArchlabError, match="unknown top-level key 'limits'"):
        archlab.load({"limits": {"nodes": 10**9}, **_stack(2)})


def test_constant_features_warn_and_are_guarded() -> None:
    from archlab.train.prepare import fit_scaling

    x = torch.randn(50, 4)
    x[:, 2] = 7.0
    with pytest.warns(UserWarning, match="1 of 4 input features are constant"):
        scaling = fit_scaling(x)
    assert scaling.std[2] == 1.0  # centred, not divided by zero
    assert torch.isfinite(scaling.apply(x)).all()


class Payload:
    """Only a pickle loader would build this."""


def test_a_pickled_checkpoint_is_refused_without_advice_to_load_it_unsafely(tmp_path) -> None:
    from archlab.train.checkpoint import CheckpointError, read_checkpoint

    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": {}, "payload": Payload()}, path, pickle_module=pickle)
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(path)
    text = str(info.value)
    assert "pickled Python objects" in text and "could run code" in text
    assert "weights_only" not in text and "trust" not in text.lower()


def test_expression_limits_are_checked_before_the_work() -> None:
    design = {"variables": {"s": "${'ab' * 10**9}"}, **_stack(1)}
    with pytest.raises(ArchlabError, match="string_chars"):
        archlab.load(design)  # refused before a 2 GB string is built
    with limits.raised(integer_digits=40):
        d = archlab.load({"variables": {"n": "${10**30 // 10**28}"}, "input": [8],
                          "layers": [{"block": "linear", "out": "$n"}]})
    assert d.graph.output_shape == (100,)


def test_user_code_errors_carry_their_own_frames(tmp_path, capsys) -> None:
    from archlab.cli import main

    model = tmp_path / "model.py"
    model.write_text("import torch\n\ndef factory():\n    return helper()\n\n"
                     "def helper():\n    raise ValueError('broken on purpose')\n")
    assert main(["analyze", f"{model}:factory", "--input", "4"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "ValueError" in err and "broken on purpose" in err
    assert f"{model}:4, in factory" in err and f"{model}:7, in helper" in err
