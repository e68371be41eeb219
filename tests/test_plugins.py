"""`--plugin FILE.py`: a user's own block registered from the command line, used by a design;
errors in the plugin are the user's (their file and line, exit status 2, no traceback)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

PLUGIN = textwrap.dedent('''
    from pydantic import Field
    from torch import nn

    from archlab.blocks import Block, BlockParams, register_block
    from archlab.ops import act_op


    class ScaleParams(BlockParams):
        factor: float = Field(2.0, description="multiplier")


    class Scale(nn.Module):
        def __init__(self, factor):
            super().__init__()
            self.factor = factor

        def forward(self, x):
            return x * self.factor


    @register_block
    class ScaleBlock(Block):
        """Multiply by a constant: (C, L) -> (C, L). Plugin test block (no paper)."""

        name = "plugin_scale"
        Params = ScaleParams

        @classmethod
        def output_shape(cls, p, inputs):
            return inputs[0]

        @classmethod
        def ops(cls, p, inputs):
            return [act_op("", "mul", inputs[0])]

        @classmethod
        def build(cls, p, inputs):
            return Scale(p.factor)
''')

DESIGN = "name: scaled\ninput: [2, 4]\nlayers:\n  - {name: s, block: plugin_scale, factor: 3.0}\n"


def _archlab(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "archlab", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def test_a_plugin_block_is_usable_by_a_design(tmp_path):
    (tmp_path / "myblocks.py").write_text(PLUGIN)
    (tmp_path / "scaled.yaml").write_text(DESIGN)
    for args in (["--plugin", "myblocks.py", "show", "scaled.yaml", "--json"],
                 ["show", "scaled.yaml", "--json", "--plugin=myblocks.py"]):  # before or after
        out = _archlab(*args, cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        nodes = json.loads(out.stdout)["nodes"]
        assert [n["block"] for n in nodes] == ["plugin_scale"]


def test_without_the_plugin_the_block_is_unknown(tmp_path):
    (tmp_path / "scaled.yaml").write_text(DESIGN)
    out = _archlab("validate", "scaled.yaml", cwd=tmp_path)
    assert out.returncode == 2 and "unknown block 'plugin_scale'" in out.stderr


def test_an_error_in_the_plugin_is_the_users(tmp_path):
    (tmp_path / "broken.py").write_text("import math\n\nvalue = math.sqrt(-1)\n")
    out = _archlab("--plugin", "broken.py", "zoo", cwd=tmp_path)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "broken.py:3" in out.stderr and "ValueError" in out.stderr and "math domain error" in out.stderr


def test_a_missing_plugin_names_the_file_and_the_fix(tmp_path):
    out = _archlab("--plugin", "nope.py", "zoo", cwd=tmp_path)
    assert out.returncode == 2
    assert "nope.py" in out.stderr and "plugin file not found" in out.stderr and "--plugin" in out.stderr
