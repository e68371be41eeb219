"""Malformed designs: each gets an error naming the place, what was expected, what was received,
and the fix; the CLI prints it without a traceback and exits with status 2."""

from __future__ import annotations

import textwrap

import pytest

import archlab
from archlab.cli import main
from archlab.errors import DesignError

GOOD_HEAD = "input: [3, 32, 32]\nlayers:\n"

# (id, design text, expected substrings of the message)
CASES = [
    ("empty", "", ["the design is empty"]),
    ("only-comment", "# nothing here\n", ["the design is empty"]),
    ("invalid-yaml", "input: [3, 32, 32\nlayers: []\n", ["invalid YAML"]),
    ("bad-indent", "input: [3, 8, 8]\nlayers:\n  - {block: conv}\n   - {block: conv}\n",
     ["invalid YAML", ":4:"]),
    ("not-a-mapping", "- 1\n- 2\n", ["a design must be a mapping", "got a list"]),
    ("no-input", "layers:\n  - {block: conv, out: 8}\n", ["the design has no 'input'", "input: [3, 224, 224]"]),
    ("no-layers", "input: [3, 8, 8]\n", ["the design has no 'layers'"]),
    ("empty-layers", "input: [3, 8, 8]\nlayers: []\n", ["'layers' must be a non-empty list"]),
    ("unknown-top-key", "input: [3, 8, 8]\nlayer:\n  - {block: conv}\nlayers:\n  - {block: conv}\n",
     [":2", "unknown top-level key 'layer'", "did you mean 'layers'?"]),
    ("negative-input", "input: [3, -8, 8]\nlayers:\n  - {block: conv}\n", ["'input' sizes must be positive", "[3, -8, 8]"]),
    ("input-wrong-type", "input: 224\nlayers:\n  - {block: conv}\n", ["'input' must be a list of positive integers", "got 224"]),
    ("unknown-block", GOOD_HEAD + "  - {block: convv, out: 8}\n",
     [":3", "layers[0]", "unknown block 'convv'", "did you mean 'conv'?"]),
    ("unknown-key", GOOD_HEAD + "  - {block: conv, out: 8, kernal: 3}\n",
     [":3", "unknown key 'kernal' for block 'conv'", "did you mean 'kernel'?"]),
    ("wrong-type", GOOD_HEAD + "  - {block: conv, out: eight}\n",
     [":3", "'out' of block 'conv'", "got 'eight'"]),
    ("zero-size", GOOD_HEAD + "  - {block: conv, out: 0}\n", ["'out' of block 'conv'", "greater than 0", "got 0"]),
    ("negative-kernel", GOOD_HEAD + "  - {block: conv, out: 8, kernel: -3}\n", ["'kernel' of block 'conv'", "must be positive"]),
    ("unknown-reference", GOOD_HEAD + "  - {name: a, block: conv, out: 8}\n  - {block: conv, out: 8, from: b}\n",
     [":4", "unknown node 'b'"]),
    ("later-reference", GOOD_HEAD + "  - {name: a, block: conv, out: 8, from: b}\n  - {name: b, block: conv, out: 8}\n",
     [":3", "'b' is defined later (line 4)", "a node can only take inputs from nodes above it"]),
    ("self-reference", GOOD_HEAD + "  - {name: a, block: conv, out: 8, from: a}\n",
     ["node 'a' takes its own output as input (a cycle)"]),
    ("positional-reference", GOOD_HEAD + "  - {name: a, block: conv, out: 8}\n  - {block: conv, from: 0}\n",
     ["'from' takes node names, got 0", "positions are not allowed"]),
    ("merge-mismatch", textwrap.dedent("""\
        input: [3, 32, 32]
        layers:
          - {name: a, block: conv, out: 64}
          - {name: b, block: conv, out: 128, stride: 2}
          - {name: m, merge: sum, from: [a, b]}
        """), [":5", "layers[2] (m)", "merge 'sum' needs equal shapes", "(64, 32, 32) from 'a'",
               "(128, 16, 16) from 'b'", "use merge: concat"]),
    ("merge-one-input", GOOD_HEAD + "  - {name: a, block: conv, out: 8}\n  - {merge: concat, from: [a]}\n",
     ["merge 'concat' needs at least two inputs", "from: [a, b]"]),
    ("unknown-merge", GOOD_HEAD + "  - {name: a, block: conv, out: 8}\n  - {name: b, block: conv, out: 8}\n"
     "  - {merge: add, from: [a, b]}\n", ["unknown merge 'add'", "concat, sum, weighted"]),
    ("two-inputs-no-merge", GOOD_HEAD + "  - {name: a, block: conv, out: 8}\n  - {name: b, block: conv, out: 8}\n"
     "  - {block: conv, from: [a, b]}\n", ["2 inputs need a merge first", "merge: concat"]),
    ("kernel-too-large", "input: [3, 4, 4]\nlayers:\n  - {block: conv, out: 8, kernel: 7, padding: valid}\n",
     [":3", "kernel 7", "larger than the padded feature map"]),
    ("groups-not-dividing", GOOD_HEAD + "  - {block: conv, out: 8, groups: 2}\n",
     ["input channels (=3) must be divisible by groups (=2)"]),
    ("duplicate-name", GOOD_HEAD + "  - {name: a, block: conv, out: 8}\n  - {name: a, block: conv, out: 8}\n",
     [":4", "duplicate node name 'a'"]),
    ("bad-name", GOOD_HEAD + "  - {name: 1st, block: conv, out: 8}\n", ["node name '1st' must be an identifier"]),
    ("reserved-name", GOOD_HEAD + "  - {name: input, block: conv, out: 8}\n", ["'input' is a reserved name"]),
    ("no-kind", GOOD_HEAD + "  - {name: a, out: 8}\n", ["a node needs 'block', 'merge' or 'layers'"]),
    ("bad-depth", GOOD_HEAD + "  - {block: conv, out: 8, depth: 0}\n", ["'depth' must be a positive integer, got 0"]),
    ("unknown-variable", "input: [3, 8, 8]\nvariables: {width: 8}\nlayers:\n  - {block: conv, out: $widht}\n",
     [":4", "unknown variable 'widht'", "did you mean 'width'?"]),
    ("bad-expression", "input: [3, 8, 8]\nvariables: {width: 8}\nlayers:\n  - {block: conv, out: '$(__import__(\"os\"))'}\n",
     ["unknown function '__import__'"]),
    ("attribute-expression", "input: [3, 8, 8]\nvariables: {width: 8}\nlayers:\n  - {block: conv, out: '$(width.real)'}\n",
     ["is not allowed in an expression"]),
    ("python-tag", "input: [3, 8, 8]\nlayers:\n  - {block: conv, out: !!python/object/apply:os.system [ls]}\n",
     ["nothing in a design file may construct objects or run code"]),
    ("duplicate-key", "input: [3, 8, 8]\ninput: [3, 8, 8]\nlayers:\n  - {block: conv}\n", [":2", "duplicate key 'input'"]),
    ("unknown-act", GOOD_HEAD + "  - {block: conv, out: 8, act: rleu}\n", ["unknown activation 'rleu'", "did you mean 'relu'?"]),
    ("unknown-norm", GOOD_HEAD + "  - {block: conv, out: 8, norm: btach}\n", ["unknown norm 'btach'", "did you mean 'batch'?"]),
    ("auto-width-no-policy", GOOD_HEAD + "  - {block: conv, out: auto}\n", ["'auto' width needs a width policy"]),
    ("residual-rank", "input: [16]\nlayers:\n  - {block: reshape, shape: [1, 4, 4], residual: true}\n",
     ["a residual needs the same rank on both sides"]),
    ("recursive-block", "input: [3, 8, 8]\nblocks:\n  loop:\n    layers:\n      - {block: loop}\nlayers:\n  - {block: loop}\n",
     ["block 'loop' uses itself (loop -> loop)"]),
    ("block-def-unknown-param", "input: [3, 8, 8]\nblocks:\n  pair:\n    params: {out: 8}\n    layers:\n"
     "      - {block: conv, out: $out}\nlayers:\n  - {block: pair, width: 8}\n",
     ["unknown setting 'width' for block 'pair'", "it takes: out"]),
    ("nested-unknown-key", "input: [64, 8, 8]\nlayers:\n  - {block: bottleneck, out: 256, se: {gat: sigmoid}}\n",
     [":3", "unknown key 'gat' in 'se' of block 'bottleneck'"]),
    ("unknown-output", GOOD_HEAD + "  - {name: a, block: conv, out: 8}\noutput: b\n", ["unknown output node 'b'"]),
]


@pytest.mark.parametrize("case_id,text,expected", CASES, ids=[c[0] for c in CASES])
def test_malformed_design_message_and_exit_status(tmp_path, capsys, case_id, text, expected):
    path = tmp_path / "design.yaml"
    path.write_text(text)
    with pytest.raises(DesignError) as info:
        archlab.load(path)
    message = str(info.value)
    assert message.startswith(str(path)), message
    for piece in expected:
        assert piece in message, f"{piece!r} not in {message!r}"
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.startswith("error: ") and expected[0] in err


def test_at_least_twenty_malformed_cases():
    assert len(CASES) >= 20


def test_missing_file_and_folder(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "nope.yaml")]) == 2
    assert "no such design file" in capsys.readouterr().err
    assert main(["validate", str(tmp_path)]) == 2
    assert "is a folder, expected a design file" in capsys.readouterr().err


def test_unknown_zoo_name_suggests_closest(capsys):
    assert main(["show", "resnet19"]) == 2
    err = capsys.readouterr().err
    assert "'resnet19' is neither a design file nor a zoo design" in err
    assert "did you mean the zoo design 'resnet18'?" in err


def test_unknown_set_variable(capsys):
    assert main(["show", "resnet18", "--set", "widht=32"]) == 2
    err = capsys.readouterr().err
    assert "unknown variable 'widht'" in err and "did you mean 'width'?" in err


def test_dict_errors_name_the_node_path():
    with pytest.raises(DesignError) as info:
        archlab.load({"input": [3, 8, 8], "layers": [{"block": "conv", "out": 8},
                                                      {"block": "conv", "kernel": 9, "padding": 0}]})
    message = str(info.value)
    assert message.startswith("<dict> layers[1]:"), message
    assert "kernel 9" in message
