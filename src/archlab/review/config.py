"""Review settings: thresholds, disabled rules and suppressed findings.

Settings come from three places, later ones winning per key:

1. the rules' own defaults;
2. the project: ``[tool.archlab.review]`` in ``pyproject.toml``;
3. the design: its optional ``review:`` mapping (``design.review_config``);

and the Python API can pass a config on top. The same schema everywhere::

    review:
      loss: cross_entropy                 # the loss the task applies (final-activation rule)
      thresholds:
        narrow-relu: {max_channels: 4}
      disable:
        unequal-1x1-width: "bottlenecks are the point of this design"
      suppress:
        - {rule: narrow-relu, node: head.squeeze, reason: "SE squeeze; gate re-learns"}

A rule is disabled only with a reason, and a suppression names one node (a node path; it also
covers the modules inside that node) and says why, so the exceptions document themselves.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import UsageError, closest
from .rule import RULES, get_rule

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10: the same parser, as the tomli package
    try:
        import tomli as tomllib
    except ModuleNotFoundError:
        tomllib = None

LOSSES = ("cross_entropy", "nll", "bce", "bce_with_logits", "mse", "l1", "none")
"""Losses the final-activation rule knows: which output activations each already applies."""


class Suppression(BaseModel):
    """One finding silenced on one node, with the reason."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rule: str = Field(description="rule id")
    node: str = Field(description="node path; covers the modules inside it")
    reason: str = Field(min_length=1, description="why the finding does not apply here")


class ReviewConfig(BaseModel):
    """Validated review settings (see the module docstring for the file format)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    loss: str | None = Field(None, description="loss the task applies; None = infer from the output")
    thresholds: dict[str, dict[str, Any]] = Field(default_factory=dict,
                                                  description="rule id -> {threshold: value}")
    disable: dict[str, str] = Field(default_factory=dict, description="rule id -> reason")
    suppress: tuple[Suppression, ...] = Field((), description="findings silenced on one node")

    @field_validator("loss")
    @classmethod
    def _loss(cls, v: str | None) -> str | None:
        if v is not None and v not in LOSSES:
            best = closest(v, LOSSES)
            hint = f"; did you mean '{best}'?" if best else ""
            raise ValueError(f"unknown loss '{v}'; valid losses: {', '.join(LOSSES)}{hint}")
        return v

    @field_validator("disable")
    @classmethod
    def _reasons(cls, v: dict[str, str]) -> dict[str, str]:
        for rule_id, reason in v.items():
            _known_rule(rule_id)
            if not isinstance(reason, str) or not reason.strip():
                raise ValueError(f"rule '{rule_id}' is disabled without a reason; write "
                                 f"disable: {{{rule_id}: \"why it does not apply\"}}")
        return v

    @field_validator("suppress")
    @classmethod
    def _suppress(cls, v):
        for s in v:
            _known_rule(s.rule)
        return v

    @field_validator("thresholds")
    @classmethod
    def _thresholds(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for rule_id, values in v.items():
            rule = _known_rule(rule_id)
            if not isinstance(values, dict):
                raise ValueError(f"thresholds of '{rule_id}' must be a mapping, got {values!r}")
            for name, value in values.items():
                if name not in rule.thresholds:
                    valid = ", ".join(sorted(rule.thresholds)) or "none"
                    raise ValueError(f"rule '{rule_id}' has no threshold '{name}'; its "
                                     f"thresholds: {valid}")
                default = rule.thresholds[name]
                ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
                      if isinstance(default, (int, float)) and not isinstance(default, bool)
                      else isinstance(value, type(default)))
                if not ok:
                    raise ValueError(f"threshold {rule_id}.{name} must be a "
                                     f"{type(default).__name__} like {default!r}, got {value!r}")
        return v

    # ------------------------------------------------------------------------------------------
    def thresholds_for(self, rule_id: str) -> dict[str, Any]:
        return {**RULES[rule_id].thresholds, **self.thresholds.get(rule_id, {})}

    def merged(self, other: ReviewConfig | None) -> ReviewConfig:
        """``other`` on top of ``self``: per-rule thresholds merge key by key."""
        if other is None:
            return self
        thresholds = {k: dict(v) for k, v in self.thresholds.items()}
        for rule_id, values in other.thresholds.items():
            thresholds.setdefault(rule_id, {}).update(values)
        return ReviewConfig(
            loss=other.loss or self.loss,
            thresholds=thresholds,
            disable={**self.disable, **other.disable},
            suppress=tuple(self.suppress) + tuple(other.suppress),
        )

    def suppression(self, rule_id: str, node: str) -> Suppression | None:
        for s in self.suppress:
            if s.rule == rule_id and (node == s.node or node.startswith(s.node + ".")):
                return s
        return None


def _known_rule(rule_id: str):
    try:
        return get_rule(rule_id)
    except UsageError as exc:
        raise ValueError(exc.message) from None


def parse_config(data: Any, *, source: str | None = None, where: str = "review") -> ReviewConfig:
    """Validate a ``review:`` mapping; errors name the file and the offending key."""
    if data is None:
        return ReviewConfig()
    if isinstance(data, ReviewConfig):
        return data
    if not isinstance(data, dict):
        raise UsageError(f"'{where}' must be a mapping, got {type(data).__name__}", source=source,
                         fix="write review: {thresholds: {...}, disable: {...}, suppress: [...]}")
    try:
        return ReviewConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = (f"unknown key '{err['loc'][-1]}'; valid keys: "
                   f"{', '.join(ReviewConfig.model_fields)}")
        raise UsageError(msg, source=source, path=f"{where}.{loc}" if loc else where) from None


def load_pyproject(path: str | Path) -> ReviewConfig:
    """``[tool.archlab.review]`` of one pyproject.toml (an empty config when it has none)."""
    path = Path(path)
    if tomllib is None:  # pragma: no cover - Python 3.10 without tomli
        raise UsageError(f"reading {path} needs Python 3.11 or the 'tomli' package",
                         fix="pip install tomli, or pass --no-project-config")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}", source=str(path)) from None
    section = data.get("tool", {}).get("archlab", {}).get("review")
    return parse_config(section, source=str(path), where="tool.archlab.review")


def find_pyproject(start: str | Path) -> Path | None:
    """The nearest pyproject.toml at or above ``start`` (a file or a folder)."""
    here = Path(start).resolve()
    if here.is_file():
        here = here.parent
    for folder in (here, *here.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None
