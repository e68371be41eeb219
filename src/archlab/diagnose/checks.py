"""Sanity checks before training (principles C1, C5): ``archlab check DESIGN --data ...``.

Each check runs on a copy of the freshly built network, on the training split as the trainer
would feed it (split and scaled by :func:`archlab.train.setup.prepare`), and returns a
:class:`CheckResult` with the measured values, what was expected, and the fixes:

* ``loss_at_init``: cross entropy near ln(C) for C classes (uniform guesses); for regression, an
  MSE near that of predicting the training mean (Karpathy, "A recipe for training neural nets"),
  and targets of unit scale (huge targets pass the first rule, since it scales with them);
* ``input_statistics``: per channel/feature mean, std, range as read and as fed (unscaled inputs
  found directly, by mean and std, not by range);
* ``initialisation``: all-zero or constant weights, identical rows, std far from the fan-in
  scale 1/sqrt(fan_in) (He et al. 2015; Glorot & Bengio 2010);
* ``gradient_flow``: per-layer gradient norms on one batch; layers with no gradient;
* ``dead_units``: ReLU units never active on a batch; saturated sigmoid/tanh;
* ``output_loss``: the output fits the loss (logits for cross entropy: no probabilities from a
  softmax or sigmoid, in any module);
* ``nonlinearity``: the network is not one affine map (linear layers, convolutions and poolings
  without activations), by :func:`archlab.diagnose.structure.affine_test`;
* ``overfit_tiny_batch``: the loss on a few examples must fall close to zero within a bounded
  number of steps; if not, the layer where the signal stops is named.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from ..errors import ArchlabError
from .detectors import TARGET_VARIANCE_LIMIT
from .monitor import DEAD_KINDS, SATURATING_KINDS
from .structure import affine_test, output_ranges

STATUSES = ("pass", "warn", "fail")


@dataclass
class CheckResult:
    name: str
    status: str                      # 'pass', 'warn' or 'fail'
    message: str                     # measured against expected, in words
    evidence: dict = field(default_factory=dict)
    fixes: list[str] = field(default_factory=list)
    layers: list[str] = field(default_factory=list)


@dataclass
class CheckReport:
    design: str
    data: str
    task: str
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.status != "fail" for c in self.checks)

    def to_dict(self) -> dict:
        return {"design": self.design, "data": self.data, "task": self.task,
                "passed": self.passed, "checks": [asdict(c) for c in self.checks]}


def _param_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules owning parameters directly ('' = the model itself)."""
    return [(n, m) for n, m in model.named_modules() if any(True for _ in m.parameters(False))]


def _fmt(x: float) -> str:
    return f"{x:.3g}" if math.isfinite(x) else str(x)


# ------------------------------------------------------------------------------ the checks --


def loss_at_init(model, task, x, y) -> CheckResult:
    with torch.no_grad():
        out = model(x)
        loss = float(task.loss(out, y))
    if task.name == "regression":
        target = y.reshape(len(y), -1).double()
        baseline = float(((target - target.mean(0)) ** 2).mean())
        mean, std = float(target.mean()), float(target.std()) if target.numel() > 1 else 0.0
        # the loss at init is compared with predicting the mean, but that comparison scales
        # with the targets: huge targets pass it. Their scale is judged on its own.
        unscaled = baseline > TARGET_VARIANCE_LIMIT or (std > 0 and abs(mean) > 10 * std)
        ok = loss <= 10 * max(baseline, 1e-12) and not unscaled
        fixes = []
        if unscaled:
            fixes.append("standardise the regression targets with training-split statistics "
                         "(zero mean, unit variance) and undo it on the predictions")
        if loss > 10 * max(baseline, 1e-12):
            fixes.append("initialise the last layer's bias to the target mean")
        return CheckResult("loss_at_init", "pass" if ok else "warn",
                           f"MSE at init {_fmt(loss)}; predicting the mean gives {_fmt(baseline)}"
                           + (f"; targets are not scaled (variance {_fmt(baseline)}, mean "
                              f"{_fmt(mean)})" if unscaled else ""),
                           {"loss": loss, "expected": baseline, "target_mean": mean,
                            "target_std": std, "rule": "loss <= 10 x mean-predictor MSE; target "
                            f"variance <= {TARGET_VARIANCE_LIMIT:g} and |mean| <= 10 std"}, fixes)
    c = task.classes or out.shape[1]
    expected = math.log(c)
    ratio = loss / expected if expected > 0 else math.nan
    ok = math.isfinite(loss) and 0.5 <= ratio <= 1.5
    return CheckResult(
        "loss_at_init", "pass" if ok else "fail" if not math.isfinite(loss) or ratio > 3 else "warn",
        f"loss at init {_fmt(loss)}, expected about -ln(1/{c}) = {expected:.3f} ({_fmt(ratio)}x)",
        {"loss": loss, "expected": expected, "ratio": ratio, "rule": "0.5 <= loss/ln(C) <= 1.5"},
        [] if ok else ["outputs are too confident at init: scale the inputs, shrink the last "
                       "layer's initial weights", "check that the output is logits"])


def input_statistics(raw: torch.Tensor, fed: torch.Tensor, limit: float = 5.0) -> CheckResult:
    def per_channel(x):
        dims = [0] + list(range(2, x.dim()))
        xf = x.double()
        return {"mean": xf.mean(dims).tolist(), "std": xf.std(dims).tolist(),
                "min": xf.amin(dims).tolist(), "max": xf.amax(dims).tolist()}

    raw_s, fed_s = per_channel(raw), per_channel(fed)
    bad = [i for i, (m, s) in enumerate(zip(fed_s["mean"], fed_s["std"], strict=False)) if abs(m) > limit or s > limit]
    flat = [i for i, s in enumerate(fed_s["std"]) if s < 1e-6]
    status = "fail" if bad else "warn" if flat else "pass"
    msg = (f"{len(bad)} of {len(fed_s['mean'])} channels are not scaled (|mean| or std > {limit:g})"
           if bad else f"{len(flat)} constant channels (std 0)" if flat else
           f"inputs scaled: mean {_fmt(min(fed_s['mean']))}..{_fmt(max(fed_s['mean']))}, "
           f"std {_fmt(min(fed_s['std']))}..{_fmt(max(fed_s['std']))} over {len(fed_s['mean'])} channels")
    fixes = (["standardise with training-split statistics (archlab train does unless --no-scale)"]
             if bad else ["drop constant channels or check the data"] if flat else [])
    return CheckResult("input_statistics", status, msg,
                       {"as_read": raw_s, "as_fed": fed_s, "unscaled_channels": bad,
                        "constant_channels": flat, "rule": f"|mean| <= {limit:g} and std <= {limit:g}"},
                       fixes)


def initialisation(model) -> CheckResult:
    problems, evidence = [], {}
    for name, m in _param_layers(model):
        if isinstance(m, nn.Embedding):
            continue
        for pname, p in m.named_parameters(recurse=False):
            if p.dim() < 2:
                continue
            w = p.detach().double()
            full = f"{name}.{pname}" if name else pname
            fan_in = w[0].numel()
            std = float(w.std()) if w.numel() > 1 else 0.0
            scale = std * math.sqrt(fan_in)
            evidence[full] = {"std": std, "std_x_sqrt_fan_in": scale}
            if not bool(w.any()):
                problems.append((full, "all zero"))
            elif std == 0:
                problems.append((full, "constant"))
            elif w.shape[0] > 1 and torch.unique(w.reshape(w.shape[0], -1), dim=0).shape[0] == 1:
                problems.append((full, "identical rows"))
            elif not 0.1 <= scale <= 10:
                problems.append((full, f"std {std:.3g} is {scale:.3g}/sqrt(fan_in), far from 1/sqrt(fan_in)"))
    fails = [p for p in problems if p[1] in ("all zero", "constant", "identical rows")]
    status = "fail" if fails else "warn" if problems else "pass"
    msg = ("; ".join(f"{n}: {why}" for n, why in problems[:4]) if problems
           else f"{len(evidence)} weight tensors: none zero, constant or with identical rows; "
                "std within 0.1-10 x 1/sqrt(fan_in)")
    return CheckResult("initialisation", status, msg, {"weights": evidence,
                       "rule": "not all-zero/constant/identical rows; 0.1 <= std*sqrt(fan_in) <= 10"},
                       ["use He (ReLU) or Glorot (tanh/sigmoid) initialisation"] if problems else [],
                       [n for n, _ in problems])


def gradient_flow(model, task, x, y) -> CheckResult:
    model.zero_grad(set_to_none=True)
    task.loss(model(x), y).backward()
    norms, none, zero = {}, [], []
    for name, m in _param_layers(model):
        ps = [p for p in m.parameters(False) if p.requires_grad]
        if not ps:
            continue
        gs = [p.grad for p in ps if p.grad is not None]
        if not gs:
            none.append(name)
            continue
        g = math.sqrt(sum(float(gr.double().pow(2).sum()) for gr in gs))
        w = math.sqrt(sum(float(p.detach().double().pow(2).sum()) for p in ps))
        norms[name] = {"grad_norm": g, "relative": g / w if w > 0 else math.nan}
        if g == 0:
            zero.append(name)
    model.zero_grad(set_to_none=True)
    rel = [v["relative"] for v in norms.values() if math.isfinite(v["relative"]) and v["relative"] > 0]
    weak = []
    if rel:
        top = max(rel)
        weak = [n for n, v in norms.items() if math.isfinite(v["relative"]) and v["relative"] < 1e-3 * top]
    if none or zero:
        return CheckResult("gradient_flow", "fail",
                           f"no gradient reaches {len(none) + len(zero)} layers: "
                           f"{', '.join((none + zero)[:5])}", {"layers": norms, "no_grad": none,
                                                              "zero_grad": zero},
                           ["check for detach()/no_grad or unused layers",
                            "all-zero weights or dead ReLUs upstream stop the gradient"], none + zero)
    if weak:
        return CheckResult("gradient_flow", "warn", f"{len(weak)} layers get < 1e-3 of the largest "
                           f"relative gradient: {', '.join(weak[:5])}", {"layers": norms},
                           ["skip connections", "normalisation", "ReLU-family activations"], weak)
    return CheckResult("gradient_flow", "pass", f"all {len(norms)} layers get a gradient; relative "
                       f"gradients within 1e-3 of each other", {"layers": norms})


def _ever_active(y: torch.Tensor) -> torch.Tensor:
    """Per unit, whether it is > 0 anywhere in the batch. Units: features of (N, F), channels of
    (N, C, ...) (PyTorch's layout); a (N,) or scalar output is one unit."""
    if y.dim() < 2:
        return (y > 0).any().reshape(1)
    return (y > 0).transpose(0, 1).reshape(y.shape[1], -1).any(1)


def dead_units(model, x) -> CheckResult:
    stats: dict[str, dict] = {}

    def hook_for(name, kind):
        def hook(mod, inputs, out):
            if not isinstance(out, torch.Tensor):
                return
            if kind in ("relu", "relu6"):
                active = _ever_active(out)
                stats[name] = {"kind": kind, "dead_fraction": 1 - float(active.float().mean())}
            else:
                sat = (out.abs() > 0.99) if kind in ("tanh", "hardtanh") else ((out < 0.01) | (out > 0.99))
                stats[name] = {"kind": kind, "saturated_fraction": float(sat.float().mean())}
        return hook

    kinds = {**DEAD_KINDS, **SATURATING_KINDS}
    handles = [m.register_forward_hook(hook_for(n, kinds[type(m)])) for n, m in model.named_modules()
               if type(m) in kinds]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    dead = [n for n, s in stats.items() if s.get("dead_fraction", 0) > 0.5]
    sat = [n for n, s in stats.items() if s.get("saturated_fraction", 0) > 0.5]
    if not stats:
        return CheckResult("dead_units", "pass", "no ReLU/sigmoid/tanh modules to inspect", {})
    if dead or sat:
        worst = max(stats.values(), key=lambda s: s.get("dead_fraction", s.get("saturated_fraction", 0)))
        all_dead = [n for n in dead if stats[n]["dead_fraction"] == 1.0]
        return CheckResult("dead_units", "fail" if all_dead else "warn",
                           f"{len(dead)} ReLU layers > 50% dead, {len(sat)} layers > 50% saturated "
                           f"on {len(x)} examples", {"layers": stats, "worst": worst},
                           ["leaky ReLU/PReLU", "biases at 0 and He init", "scale the inputs",
                            "normalisation before the activation"], dead + sat)
    return CheckResult("dead_units", "pass", f"{len(stats)} activation layers: none > 50% dead "
                       "or saturated", {"layers": stats})


def output_loss(model, task, x) -> CheckResult:
    """Probabilities where the loss expects logits, whatever op made them (a softmax or a
    sigmoid layer, or functional code in forward): judged on the output values."""
    with torch.no_grad():
        out = model(x)
    if task.name != "regression" and task.loss_name in ("ce", "dice") and out.dim() >= 2 and out.shape[1] >= 2:
        rows, unit = output_ranges(out if out.dim() == 2 else out.transpose(1, -1).reshape(-1, out.shape[1]))
        if rows or unit:
            what = "rows are probabilities (sum to 1)" if rows else "every output lies in [0, 1]"
            return CheckResult("output_loss", "fail", f"the output {what} but cross entropy "
                               "expects logits", {"output_min": float(out.min()),
                                                  "output_max": float(out.max()),
                                                  "rows_sum_to_one": rows},
                               ["remove the final softmax/sigmoid: cross entropy applies "
                                "log-softmax itself"])
    return CheckResult("output_loss", "pass", f"output {tuple(out.shape[1:])} fits the {task.name} "
                       f"loss ({task.loss_name})", {"output_shape": list(out.shape[1:])})


def nonlinearity(model, x) -> CheckResult:
    """The whole network must not be an affine map of its input (see structure.affine_test)."""
    result = affine_test(model, (x,))
    if result is None:
        return CheckResult("nonlinearity", "pass", "the affine test cannot tell (the output does "
                           "not depend on the input, or the input is not a float batch)", {})
    if result["affine"]:
        return CheckResult("nonlinearity", "fail", "the network is an affine map of its input: "
                           "f((a+b)/2) = (f(a)+f(b))/2 and f(3a-2b) = 3f(a)-2f(b) on real examples",
                           result, ["add activations (ReLU) between the layers: linear layers, "
                                    "convolutions and poolings compose to one linear map"])
    return CheckResult("nonlinearity", "pass", f"non-linear: midpoint error "
                       f"{_fmt(result['midpoint_error'])}, extrapolation error "
                       f"{_fmt(result['extrapolation_error'])} (affine would be < 1e-4)", result)


def overfit_tiny_batch(model, task, x, y, *, steps: int = 200, lr: float = 1e-3,
                       target: float = 0.1) -> CheckResult:
    """Adam on ``len(x)`` examples for at most ``steps`` steps; the loss must fall below
    ``target`` x its starting value. Otherwise the layer whose relative gradient is smallest
    (or whose units are dead) is named as where the signal stops."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    first = last = math.nan
    taken = 0
    for taken in range(1, steps + 1):
        opt.zero_grad(set_to_none=True)
        loss = task.loss(model(x), y)
        last = float(loss.detach())
        if taken == 1:
            first = last
        if not math.isfinite(last) or last <= target * first:
            break
        loss.backward()
        opt.step()
    ok = math.isfinite(last) and last <= target * first
    evidence = {"examples": len(x), "steps": taken, "first_loss": first, "final_loss": last,
                "rule": f"final <= {target:g} x first within {steps} steps (Adam, lr {lr:g})"}
    if ok:
        return CheckResult("overfit_tiny_batch", "pass", f"loss {_fmt(first)} -> {_fmt(last)} on "
                           f"{len(x)} examples in {taken} steps", evidence)
    flow = gradient_flow(model, task, x, y)
    dead = dead_units(model, x)
    culprits = flow.layers or dead.layers
    if not culprits:
        rel = {n: v["relative"] for n, v in flow.evidence.get("layers", {}).items()
               if math.isfinite(v["relative"])}
        culprits = [min(rel, key=rel.get)] if rel else []
    where = f"; the signal stops at {', '.join(culprits[:3])}" if culprits else ""
    return CheckResult("overfit_tiny_batch", "fail", f"loss only {_fmt(first)} -> {_fmt(last)} on "
                       f"{len(x)} examples after {taken} steps{where}",
                       {**evidence, "gradient_flow": flow.message, "dead_units": dead.message},
                       ["a network that cannot memorise a few examples has a bug: check the "
                        "labels, the output/loss pairing, dead or frozen layers"] + flow.fixes[:1],
                       culprits)


# ------------------------------------------------------------------------------ the command -


def check(design, data, *, variables: dict | None = None, examples: int = 256,
          overfit_examples: int = 8, overfit_steps: int = 200, seed: int = 0,
          **options) -> CheckReport:
    """Run every sanity check on ``design`` (anything ``archlab.load`` accepts, or an
    ``nn.Module``) with ``data`` (a built-in name, path or data spec). ``options`` are training
    options (``scale=False``, ``batch=...``) passed to :func:`archlab.train.setup.prepare`."""
    from ..train.generative import GENERATIVE_TASKS
    from ..train.setup import prepare
    from ..train.tasks import TrainingSetupError

    if options.get("task") in GENERATIVE_TASKS:  # a gan pair, vae, autoencoder, image-to-image
        from ..train.generative.checks import check_generative

        return check_generative(design, data, variables=variables, examples=min(examples, 64),
                                overfit_examples=overfit_examples, overfit_steps=overfit_steps,
                                seed=seed, **options)
    try:
        setup = prepare(design, data, variables=variables, seed=seed, progress=False, **options)
    except TrainingSetupError as err:
        report = CheckReport(str(getattr(design, "name", design)), str(data), "?")
        report.checks.append(CheckResult("output_loss", "fail", err.message,
                                         {"where": err.where()}, [err.fix] if err.fix else []))
        return report
    torch.manual_seed(seed)
    name = setup.design.name if setup.design is not None else type(design).__name__
    report = CheckReport(name, setup.data.source, setup.task.name)
    idx = torch.as_tensor(setup.splits.train, dtype=torch.int64)
    raw = setup.data.x[idx]
    fed = setup.scaling.apply(raw)
    y = setup.data.y[idx]
    if hasattr(setup.scaling, "apply_target"):   # regression targets as training sees them
        y = setup.scaling.apply_target(y)
    pick = torch.randperm(len(idx), generator=torch.Generator().manual_seed(seed))
    xb, yb = fed[pick[:examples]], y[pick[:examples]]
    fresh = lambda: copy.deepcopy(setup.model).train()  # noqa: E731  each check gets its own copy
    report.checks.append(input_statistics(raw, fed))
    report.checks.append(output_loss(fresh(), setup.task, xb))
    report.checks.append(loss_at_init(fresh(), setup.task, xb, yb))
    report.checks.append(initialisation(setup.model))
    report.checks.append(gradient_flow(fresh(), setup.task, xb, yb))
    report.checks.append(dead_units(fresh(), xb))
    report.checks.append(nonlinearity(fresh(), xb))
    k = min(overfit_examples, len(xb))
    report.checks.append(overfit_tiny_batch(fresh(), setup.task, xb[:k], yb[:k], steps=overfit_steps))
    return report


__all__ = ["CheckReport", "CheckResult", "check", "ArchlabError"]
