"""archlab gradcheck: numeric-gradient oracle, wrong backward found, NaN probes, CLI."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch
from torch import nn

from archlab.cli import main
from archlab.diagnose.gradcheck import gradcheck, load_factory, parse_shape
from archlab.errors import UsageError

LAYERS = textwrap.dedent('''
    import torch
    from torch import nn

    class GoodNorm(nn.Module):
        """(N, C, H, W) -> (N, C, H, W): instance norm with an epsilon and a learned scale."""
        def __init__(self, channels=3):
            super().__init__()
            self.scale = nn.Parameter(torch.linspace(0.5, 1.5, channels))
        def forward(self, x):
            var = x.var(dim=(2, 3), keepdim=True, unbiased=False)
            mean = x.mean(dim=(2, 3), keepdim=True)
            return self.scale.view(1, -1, 1, 1) * (x - mean) / torch.sqrt(var + 1e-5)

    class NoEpsNorm(GoodNorm):
        def forward(self, x):
            var = x.var(dim=(2, 3), keepdim=True, unbiased=False)
            return self.scale.view(1, -1, 1, 1) * (x - x.mean(dim=(2, 3), keepdim=True)) / torch.sqrt(var)

    class _Square(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x
        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return grad * x          # wrong: d(x^2)/dx = 2x

    class WrongSquare(nn.Module):
        def forward(self, x):
            return _Square.apply(x)
''')


@pytest.fixture()
def layers_file(tmp_path):
    path = tmp_path / "layers.py"
    path.write_text(LAYERS)
    return path


def test_builtin_conv_matches_numeric_gradient():
    r = gradcheck(lambda: nn.Conv2d(3, 4, 3, padding=1), [(2, 3, 5, 5)], probes=False)
    assert r.passed
    assert [t.name for t in r.tensors] == ["input[0]", "weight", "bias"]
    assert all(t.max_abs_error < 1e-7 for t in r.tensors)
    assert r.torch_gradcheck == {"passed": True, "message": None}


def test_wrong_backward_is_found(layers_file):
    r = gradcheck(load_factory(f"{layers_file}:WrongSquare"), [(2, 3, 4, 4)], probes=False)
    t = r.tensors[0]
    assert not r.passed and not t.passed
    # analytic x against numeric 2x: a relative error of exactly one half
    assert t.max_rel_error == pytest.approx(0.5, rel=1e-4)
    assert r.torch_gradcheck["passed"] is False


def test_large_tensors_are_checked_on_a_spread_subset(layers_file):
    r = gradcheck(load_factory(f"{layers_file}:GoodNorm"), [(4, 3, 16, 16)], max_elements=64,
                  probes=False)
    assert r.tensors[0].checked == 64 and r.tensors[0].elements == 3072
    assert r.passed and r.torch_gradcheck["passed"] is None


def test_probes_catch_a_missing_epsilon(layers_file):
    good = gradcheck(load_factory(f"{layers_file}:GoodNorm"), [(2, 3, 4, 4)])
    assert good.passed and all(p.passed for p in good.probes)
    bad = gradcheck(load_factory(f"{layers_file}:NoEpsNorm"), [(2, 3, 4, 4)])
    by = {p.name: p for p in bad.probes}
    assert all(t.passed for t in bad.tensors)     # the gradient itself is right
    assert not by["constant"].output_finite and by["constant"].nonfinite_param_grads == ["scale"]
    assert "normalisation without an epsilon" in by["constant"].hint
    assert by["huge"].passed


def test_cli_json_and_exit_status(layers_file, capsys):
    assert main(["gradcheck", f"{layers_file}:GoodNorm", "--input", "2x3x4x4", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["passed"] is True and out["input_shapes"] == [[2, 3, 4, 4]]
    assert {"name", "kind", "shape", "elements", "checked", "max_abs_error", "max_rel_error",
            "passed"} <= set(out["tensors"][0])
    assert main(["gradcheck", f"{layers_file}:WrongSquare", "--input", "2x3", "--no-probes"]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_cli_usage_errors(layers_file, capsys):
    assert main(["gradcheck", f"{layers_file}:GoodNrom", "--input", "2x3x4x4"]) == 2
    err = capsys.readouterr().err
    assert "unknown layer factory 'GoodNrom'" in err and "did you mean 'GoodNorm'?" in err
    assert main(["gradcheck", f"{layers_file}:GoodNorm", "--input", "2x-3"]) == 2
    assert "expected an input shape like 4x8x16x16" in capsys.readouterr().err
    assert main(["gradcheck", "missing.py:Layer", "--input", "2x3"]) == 2
    assert "no such file 'missing.py'" in capsys.readouterr().err
    with pytest.raises(UsageError, match="expected FILE.py:NAME, received 'layers.py'"):
        load_factory("layers.py")
    assert parse_shape("4x8x16x16") == (4, 8, 16, 16)


def test_fixed_inputs_are_deterministic_without_zeros_or_ties():
    from archlab.diagnose.gradcheck import _pattern

    torch.manual_seed(1)
    a = _pattern((4, 8, 16, 16))
    torch.manual_seed(2)
    assert torch.equal(a, _pattern((4, 8, 16, 16)))
    assert float(a.abs().min()) > 1e-4          # away from ReLU's kink at 0
    assert a.flatten().unique().numel() == a.numel()   # no max-pool ties
