"""Running the review: from a design or a module to findings.

``archlab.review(design_or_module, ...) -> list[Finding]`` is the public entry; the CLI uses
:func:`run_review`, which also reports what was suppressed or disabled.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import UsageError
from .config import ReviewConfig, parse_config
from .facts import Facts, outermost, owners_for
from .rule import RULES, Finding, severity_rank
from .trace import trace_flow

# the loss a design's task implies, for the final-activation rule
TASK_LOSS = {"classification": "cross_entropy", "segmentation": "cross_entropy",
             "regression": "mse", "detection": None, "generation": None}


@dataclass
class ReviewResult:
    """Findings of one review, with what the configuration silenced and why."""

    name: str
    input_shape: tuple[int, ...]
    findings: list[Finding]
    suppressed: list[tuple[Finding, str]] = field(default_factory=list)
    disabled: dict[str, str] = field(default_factory=dict)
    rules_run: list[str] = field(default_factory=list)

    def at_or_above(self, severity: str) -> list[Finding]:
        return [f for f in self.findings if severity_rank(f.severity) >= severity_rank(severity)]


def parse_input_shape(text: str | tuple | list | None) -> tuple[int, ...] | None:
    """'3x224x224' -> (3, 224, 224)."""
    if text is None:
        return None
    if isinstance(text, (tuple, list)):
        return tuple(int(v) for v in text)
    try:
        shape = tuple(int(v) for v in str(text).lower().replace(",", "x").split("x") if v)
    except ValueError:
        shape = ()
    if not shape or any(v <= 0 for v in shape):
        raise UsageError(f"--input takes positive sizes joined by 'x' without the batch, got "
                         f"'{text}'", fix="e.g. --input 3x224x224")
    return shape


def load_factory(spec: str) -> nn.Module:
    """``path/to/model.py:factory`` -> the module the factory returns (the user's own code runs:
    that is what asking for a Python file means; design files never run code)."""
    file, _, attr = spec.rpartition(":")
    path = Path(file)
    if not attr or not file.endswith(".py"):
        raise UsageError(f"expected FILE.py:FACTORY, got '{spec}'", fix="e.g. model.py:make_model")
    if not path.is_file():
        raise UsageError(f"no such Python file '{file}'", path=spec,
                         fix="check the path: write path/to/model.py:factory")
    name = f"_archlab_user_{abs(hash(str(path.resolve())))}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    from ..errors import register_user_file, user_code

    register_user_file(path)
    with user_code(f"importing {path.name}", str(path)):
        module_spec.loader.exec_module(module)
    factory = getattr(module, attr, None)
    if factory is None:
        names = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))]
        raise UsageError(f"'{file}' has no '{attr}'", source=file,
                         fix=f"callables in it: {', '.join(names) or 'none'}")
    with user_code(f"calling {attr}() from {path.name}", str(path)):
        model = factory() if not isinstance(factory, nn.Module) else factory
    if not isinstance(model, nn.Module):
        raise UsageError(f"'{spec}' returned {type(model).__name__}, expected a torch.nn.Module",
                         source=file)
    return model


def measure_nodes(facts: Facts, model: nn.Module, rounds: int = 9) -> None:
    """Time the model's forward pass on the CPU and each node in it (hooks, interleaved rounds,
    medians: archlab.analysis's latency method), for the rules that speak of time."""
    from ..analysis.latency import measure_latency

    nodes = outermost(facts.owners)
    latency = measure_latency(model, facts.input_shape, 1, rounds=rounds,
                              stage_of={p: p for p in nodes})
    facts.forward_seconds = latency.forward.median_s
    facts.node_seconds = {p: s for p, s in latency.stages.items() if p != "other"}


def build_facts(target: Any, input_shape=None, **variables: Any) -> tuple[Facts, Any]:
    """Facts for a Design (or anything ``archlab.load`` takes), an ``nn.Module`` or a
    ``model.py:factory`` string. Returns (facts, design or None)."""
    from ..design import Design, load

    if isinstance(target, str) and ".py:" in target:
        target = load_factory(target)
    if isinstance(target, nn.Module):
        if variables:
            raise UsageError(f"variables {sorted(variables)} apply to designs, not to modules",
                             fix="pass the module already configured")
        shape = parse_input_shape(input_shape)
        if shape is None:
            raise UsageError(f"reviewing a {type(target).__name__} needs the input shape",
                             fix="pass input_shape=(3, 224, 224) or --input 3x224x224")
        flow = trace_flow(target, shape)
        return Facts(flow, type(target).__name__, owners_for(flow, None)), None
    design = target if isinstance(target, Design) else load(target, **variables)
    if variables and isinstance(target, Design):
        design = design.with_variables(**variables)
    from ..build import build_graph

    with torch.device("meta"):  # no weights are allocated or initialised
        model = build_graph(design.graph, design.name)
    shape = parse_input_shape(input_shape) or design.input_shape
    if tuple(shape) != tuple(design.input_shape):
        raise UsageError(f"the design's input is {'x'.join(map(str, design.input_shape))}, got "
                         f"--input {'x'.join(map(str, shape))}",
                         fix="change the design's input with --set (e.g. --set size=128)")
    flow = trace_flow(model, shape)
    paths = [n.path for n in design.graph.nodes]
    facts = Facts(
        flow,
        design.name,
        owners_for(flow, paths),
        node_blocks={n.path: n.block for n in design.graph.nodes},
        node_lines={n.path: (n.source, n.line) for n in design.graph.nodes},
        loss=TASK_LOSS.get(design.task or ""),
    )
    return facts, design


def run_review(target: Any, input_shape=None, *, config: Any = None,
               project_config: ReviewConfig | None = None, rules: list[str] | None = None,
               latency: bool = False, **variables: Any) -> ReviewResult:
    """Review a design or module; see :func:`review`."""
    if isinstance(target, str) and ".py:" in target:
        target = load_factory(target)
    facts, design = build_facts(target, input_shape, **variables)
    if latency:
        from ..build import build

        model = target if isinstance(target, nn.Module) else build(design)
        measure_nodes(facts, model)
    settings = ReviewConfig().merged(project_config)
    if design is not None:
        settings = settings.merged(parse_config(design.review_config, source=design.source))
    settings = settings.merged(parse_config(config, source="<config>"))
    if settings.loss is not None:
        facts.loss = None if settings.loss == "none" else settings.loss
    chosen = list(RULES) if rules is None else rules
    result = ReviewResult(facts.name, facts.input_shape, [], disabled=dict(settings.disable))
    for rule_id in chosen:
        if rule_id not in RULES:
            from .rule import get_rule
            get_rule(rule_id)  # raises the error that lists the valid ids
        if rule_id in settings.disable:
            continue
        result.rules_run.append(rule_id)
        rule = RULES[rule_id]()
        for finding in rule.check(facts, settings.thresholds_for(rule_id)):
            src, line = facts.node_lines.get(finding.node, (None, None))
            finding = replace(finding, source=src, line=line)
            hushed = settings.suppression(rule_id, finding.node)
            if hushed is not None:
                result.suppressed.append((finding, hushed.reason))
            else:
                result.findings.append(finding)
    order = {p: i for i, p in enumerate(dict.fromkeys(facts.owners))}
    result.findings.sort(key=lambda f: (order.get(f.node, -1), -severity_rank(f.severity), f.rule))
    return result


def review(design_or_module: Any, input_shape=None, *, config: Any = None,
           rules: list[str] | None = None, latency: bool = False,
           **variables: Any) -> list[Finding]:
    """Check a network against the design guidelines; each finding carries its evidence.

    ``design_or_module``: a Design, a path/zoo name/dict/YAML text, an ``nn.Module`` (then
    ``input_shape`` = (C, H, W) without the batch is required) or ``"model.py:factory"``.
    ``config``: a ``review:`` mapping (thresholds, disable, suppress, loss) applied on top of the
    design's own ``review:`` section. ``rules``: run only these rule ids. ``variables``: design
    variables (``width=32``). ``latency``: also time each node on the CPU, so findings about
    speed (fragmentation) report their share of the measured forward time.

    >>> import archlab
    >>> [f.rule for f in archlab.review("vgg19") if f.rule == "deep-plain-stack"]
    ['deep-plain-stack']
    """
    return run_review(design_or_module, input_shape, config=config, rules=rules,
                      latency=latency, **variables).findings
