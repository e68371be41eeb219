"""The CLI loads only what the command needs: `archlab --help` imports neither torch nor
Lightning, and the design commands (zoo, show, validate) import no training code.

The oracle is ``sys.modules`` of a fresh interpreter after the command ran.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from archlab import cli

PROBE = """
import contextlib, io, json, sys
from archlab.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    try:
        code = main(sys.argv[1:])
    except SystemExit as exc:  # --help exits through argparse
        code = exc.code
print(json.dumps({"code": code, "torch": "torch" in sys.modules,
                  "lightning": any(m == "lightning" or m.startswith("lightning.") for m in sys.modules)}))
"""


def _probe(*args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_help_imports_neither_torch_nor_lightning():
    seen = _probe("--help")
    assert seen == {"code": 0, "torch": False, "lightning": False}


@pytest.mark.parametrize("args", [["zoo"], ["show", "mnist_cnn"], ["validate", "digits_mlp"]])
def test_design_commands_import_no_training_code(args):
    seen = _probe(*args)
    assert seen["code"] == 0 and seen["lightning"] is False


def _registered() -> dict[str, str]:
    parser = cli.make_parser(None)  # every module registers its commands for real
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {choice.dest: choice.help for choice in action._choices_actions}


def test_the_command_table_matches_what_the_modules_register():
    registered = _registered()
    assert set(registered) == set(cli.COMMANDS), "add or remove the command in cli.COMMANDS"
    for name, (module, help_text) in cli.COMMANDS.items():
        assert help_text == registered[name], f"{name}: the help line differs from {module}'s"


def test_each_command_parses_with_only_its_own_module(capsys):
    # the fast path builds the parser with one module; every command's --help still works
    for name in cli.COMMANDS:
        with pytest.raises(SystemExit) as done:
            cli.main([name, "--help"])
        assert done.value.code == 0
        assert f"usage: archlab {name}" in capsys.readouterr().out
