"""Gradient check for custom layers (principle C12): analytic backward against numeric gradients.

``gradcheck(factory, [(4, 8, 16, 16)])`` builds the layer, converts it to float64 and feeds it
fixed, non-random inputs (a deterministic sine pattern without exact zeros or ties, so kinks of
ReLU/max-pool are not hit). The objective ``L = sum(w * f(x))`` uses fixed output weights ``w``;
its analytic gradient (one backward pass) is compared, element by element, with central
differences ``(L(t + h) - L(t - h)) / 2h`` for every input and every parameter. Large tensors are
checked on an evenly spread subset of ``max_elements`` elements. An element passes when
``|analytic - numeric| <= atol + rtol * |numeric|`` (the rule of ``torch.autograd.gradcheck``),
and ``torch.autograd.gradcheck`` (full Jacobians) runs as an independent second opinion when
the inputs are small (<= 1024 elements).

NaN probes then run the layer in float32 (the training dtype) on edge inputs: zeros, a constant,
tiny and huge magnitudes. A non-finite output or gradient points at a log, sqrt, division or
exp that lacks an epsilon or a max-subtraction.
"""

from __future__ import annotations

import importlib.util
import inspect
import math
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..errors import UsageError, unknown_name

ATOL, RTOL, STEP = 1e-5, 1e-3, 1e-6   # float64: central differences are good to ~1e-9

# Edge inputs and what a failure on each usually means.
PROBES = [
    ("zeros", lambda s: torch.zeros(s), "log(0), x/0 or x/|x| without an epsilon"),
    ("constant", lambda s: torch.full(s, 0.5), "division by a variance or a norm of 0 "
                                                "(normalisation without an epsilon)"),
    ("tiny", lambda s: _pattern(s) * 1e-12, "sqrt, log or division near 0 without an epsilon"),
    ("huge", lambda s: _pattern(s) * 1e8, "exp or square overflowing float32: subtract the max "
                                          "before exp, compute norms in a scaled form"),
    ("negative_huge", lambda s: -(_pattern(s).abs() + 0.1) * 1e8, "exp/log of large negatives"),
]


@dataclass
class TensorCheck:
    name: str
    kind: str                 # 'input' or 'parameter'
    shape: list[int]
    elements: int
    checked: int
    max_abs_error: float
    max_rel_error: float
    passed: bool


@dataclass
class ProbeResult:
    name: str
    output_finite: bool
    input_grad_finite: bool
    nonfinite_param_grads: list[str]
    passed: bool
    hint: str
    error: str | None = None


@dataclass
class GradcheckReport:
    factory: str
    input_shapes: list[list[int]]
    tolerances: dict
    tensors: list[TensorCheck] = field(default_factory=list)
    torch_gradcheck: dict = field(default_factory=dict)
    probes: list[ProbeResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return (all(t.passed for t in self.tensors) and all(p.passed for p in self.probes)
                and self.torch_gradcheck.get("passed") is not False)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["passed"] = self.passed
        return d


def _pattern(shape) -> torch.Tensor:
    """Fixed, non-random values in (-1, 1): no exact zeros, no repeated values nearby."""
    n = math.prod(shape)
    k = torch.arange(n, dtype=torch.float64)
    return (0.9 * torch.sin(1.3 * k + 0.2) + 0.05 * torch.cos(3.7 * k + 0.1)).reshape(shape)


def parse_shape(text: str) -> tuple[int, ...]:
    """'4x8x16x16' -> (4, 8, 16, 16)."""
    try:
        shape = tuple(int(p) for p in text.lower().replace("*", "x").split("x"))
    except ValueError:
        shape = ()
    if not shape or any(s <= 0 for s in shape):
        raise UsageError(f"expected an input shape like 4x8x16x16 (positive integers joined by "
                         f"'x'), received '{text}'", fix="give the batch dimension too: --input 4x8x16x16")
    return shape


def load_factory(spec: str):
    """'path/to/model.py:Name' -> the class or function ``Name`` defined in that file.
    (Running the user's own file is the point of this command; designs never run code.)"""
    if ":" not in spec:
        raise UsageError(f"expected FILE.py:NAME, received '{spec}'",
                         fix="name the layer class or factory function: model.py:MyLayer")
    path_text, name = spec.rsplit(":", 1)
    path = Path(path_text)
    if not path.is_file():
        raise UsageError(f"no such file '{path_text}'", source=path_text,
                         fix="give the path of the .py file that defines the layer")
    mod_name = f"archlab_user_{abs(hash(str(path.resolve())))}"
    spec_ = importlib.util.spec_from_file_location(mod_name, path)
    module = importlib.util.module_from_spec(spec_)
    sys.modules[mod_name] = module
    from ..errors import register_user_file, user_code

    register_user_file(path)
    with user_code(f"importing {path.name}", str(path)):
        spec_.loader.exec_module(module)
    if not hasattr(module, name):
        choices = [n for n, v in vars(module).items() if not n.startswith("_") and (
            (inspect.isclass(v) and issubclass(v, nn.Module) and v.__module__ == mod_name)
            or (inspect.isfunction(v) and v.__module__ == mod_name))]
        raise UsageError(unknown_name("layer factory", name, choices), source=path_text)
    return getattr(module, name)


def _objective_weights(outputs: list[torch.Tensor]) -> list[torch.Tensor]:
    return [(_pattern(o.shape) + 0.1).to(o.dtype) for o in outputs]


def _outputs(value) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _outputs(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _outputs(v)]
    return []


def _build(factory, kwargs: dict | None) -> nn.Module:
    try:
        layer = factory(**(kwargs or {}))
    except TypeError as exc:
        raise UsageError(f"could not build the layer: {exc}",
                         fix="pass its arguments as JSON: --kwargs '{\"channels\": 8}'") from None
    if not isinstance(layer, nn.Module):
        raise UsageError(f"expected the factory to return a torch.nn.Module, received "
                         f"{type(layer).__name__}",
                         fix="make the factory return the layer (an nn.Module instance)")
    return layer


def gradcheck(factory, input_shapes: list[tuple[int, ...]], *, kwargs: dict | None = None,
              max_elements: int = 256, atol: float = ATOL, rtol: float = RTOL,
              probes: bool = True, name: str = "") -> GradcheckReport:
    """Check ``factory(**kwargs)``'s backward against numeric gradients; see the module doc."""
    layer = _build(factory, kwargs).double()
    report = GradcheckReport(name or getattr(factory, "__name__", str(factory)),
                             [list(s) for s in input_shapes],
                             {"atol": atol, "rtol": rtol, "step": STEP, "dtype": "float64",
                              "max_elements": max_elements})
    inputs = [(_pattern(s) + 0.013 * i).requires_grad_(True) for i, s in enumerate(input_shapes)]
    params = [(n, p) for n, p in layer.named_parameters() if p.requires_grad]

    def objective() -> torch.Tensor:
        torch.manual_seed(0)  # the same dropout mask for every evaluation
        outs = _outputs(layer(*inputs))
        if not outs:
            raise UsageError("the layer returned no tensor", fix="return a tensor from forward()")
        return sum((w * o).sum() for w, o in zip(weights, outs, strict=False))

    torch.manual_seed(0)
    with torch.no_grad():
        weights = _objective_weights(_outputs(layer(*inputs)))
    loss = objective()
    targets = [(f"input[{i}]", "input", x) for i, x in enumerate(inputs)] + \
              [(n, "parameter", p) for n, p in params]
    grads = torch.autograd.grad(loss, [t for _, _, t in targets], allow_unused=True)
    for (label, kind, tensor), grad in zip(targets, grads, strict=False):
        analytic = torch.zeros_like(tensor) if grad is None else grad.detach()
        report.tensors.append(_compare(label, kind, tensor, analytic, objective, max_elements,
                                       atol, rtol))
    report.torch_gradcheck = _torch_opinion(layer, inputs)
    if probes:
        report.probes = run_probes(factory, input_shapes, kwargs)
    return report


def _compare(label, kind, tensor, analytic, objective, max_elements, atol, rtol) -> TensorCheck:
    flat = tensor.data.view(-1)
    n = flat.numel()
    idx = torch.linspace(0, n - 1, min(n, max_elements)).round().long().unique().tolist()
    max_abs = max_rel = 0.0
    ok = True
    with torch.no_grad():
        for i in idx:
            keep = float(flat[i])
            flat[i] = keep + STEP
            up = float(objective())
            flat[i] = keep - STEP
            down = float(objective())
            flat[i] = keep
            numeric = (up - down) / (2 * STEP)
            a = float(analytic.view(-1)[i])
            err = abs(a - numeric)
            if not math.isfinite(err):
                err = math.inf
            max_abs = max(max_abs, err)
            # relative to the larger of the two, floored at atol/rtol so that two near-zero
            # gradients (1e-9 vs 0) do not read as a 100 % error
            max_rel = max(max_rel, err / max(abs(numeric), abs(a), atol / rtol))
            ok = ok and err <= atol + rtol * abs(numeric)
    return TensorCheck(label, kind, list(tensor.shape), n, len(idx), max_abs, max_rel, ok)


def _torch_opinion(layer: nn.Module, inputs: list[torch.Tensor], limit: int = 1024) -> dict:
    """torch.autograd.gradcheck (full Jacobians) as an independent oracle, when the inputs are
    small enough for full Jacobians to be cheap. Its fast mode is not used: on large inputs its
    random projections let a backward that is off by a factor of 2 pass."""
    size = sum(x.numel() for x in inputs)
    if size > limit:
        return {"passed": None, "message": f"skipped: {size} input elements > {limit} "
                "(the element-wise check above is the oracle; use a smaller --input to run it)"}

    def f(*xs):
        torch.manual_seed(0)
        return tuple(_outputs(layer(*xs)))

    xs = [x.detach().clone().requires_grad_(True) for x in inputs]
    try:
        ok = torch.autograd.gradcheck(f, xs, atol=ATOL, rtol=RTOL, raise_exception=True)
        return {"passed": bool(ok), "message": None}
    except Exception as exc:  # its message names the mismatching output/input
        return {"passed": False, "message": str(exc).strip().splitlines()[0][:300]}


def run_probes(factory, input_shapes, kwargs=None) -> list[ProbeResult]:
    """Forward and backward in float32 on edge inputs; report non-finite outputs/gradients."""
    results = []
    for name, make, hint in PROBES:
        layer = _build(factory, kwargs).float()
        xs = [make(s).float().requires_grad_(True) for s in input_shapes]
        try:
            outs = _outputs(layer(*xs))
            out_ok = all(bool(torch.isfinite(o).all()) for o in outs)
            total = sum(o.float().sum() for o in outs if o.requires_grad)
            if isinstance(total, torch.Tensor) and total.requires_grad:
                total.backward()
            in_ok = all(x.grad is None or bool(torch.isfinite(x.grad).all()) for x in xs)
            bad = [n for n, p in layer.named_parameters()
                   if p.grad is not None and not bool(torch.isfinite(p.grad).all())]
            passed = out_ok and in_ok and not bad
            results.append(ProbeResult(name, out_ok, in_ok, bad, passed, "" if passed else hint))
        except Exception as exc:  # a crash on an edge input is a finding, not a tool failure
            results.append(ProbeResult(name, False, False, [], False, hint,
                                       f"{type(exc).__name__}: {exc}"))
    return results
