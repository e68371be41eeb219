"""The RegNet width rule as a width policy: a whole family of networks is four numbers.

Radosavovic et al., "Designing Network Design Spaces" (CVPR 2020), section 3.3: block j of d
blocks gets the width ``u_j = w0 + wa * j``; the widths are then quantised to a geometric grid,
``s_j = round(log(u_j / w0) / log(wm))``, ``w_j = w0 * wm ** s_j``, rounded to a multiple of 8;
consecutive blocks of equal width form a stage. Each stage's bottleneck width ``w * b`` is made a
multiple of its group width ``g`` (``g`` is capped at the bottleneck width), as in the authors'
reference code, so its grouped 3x3 conv has ``w * b / g`` groups.

A design states the rule under ``width:`` and reads the stages as variables::

    width: {policy: regnet, w0: 24, wa: 36.44, wm: 2.49, depth: 13, group_width: 8,
            bottleneck_ratio: 1, stages: 4}
    # -> stage1_width .. stage4_width, stage1_depth .., stage1_groups .., stage1_mid ..
    #    (mid = the bottleneck width w*b), and regnet_stages (the count the rule gives)

``stages`` (optional) is the number of stages the design's layers use: a rule that gives another
count is an error naming the widths it gave, so a search records that candidate as invalid.

>>> [s.width for s in regnet_stages(24, 36.44, 2.49, 13, 8)]   # RegNetX-200MF (pycls)
[24, 56, 152, 368]
>>> [s.depth for s in regnet_stages(24, 36.44, 2.49, 13, 8)]
[1, 1, 4, 7]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

REGNET_KEYS = {"policy", "w0", "wa", "wm", "depth", "group_width", "bottleneck_ratio", "stages",
               "quantum"}


@dataclass(frozen=True)
class RegNetStage:
    width: int      # block output width
    depth: int      # blocks in the stage
    groups: int     # groups of the 3x3 conv (mid / group width)
    mid: int        # bottleneck width (width * bottleneck ratio, a multiple of the group width)


def regnet_stages(w0: float, wa: float, wm: float, depth: int, group_width: int,
                  bottleneck_ratio: float = 1.0, quantum: int = 8) -> list[RegNetStage]:
    """The stages the rule gives (widths, depths, groups, bottleneck widths)."""
    widths = []
    for j in range(depth):
        u = w0 + wa * j
        s = round(math.log(u / w0) / math.log(wm))
        widths.append(int(round(w0 * wm ** s / quantum) * quantum))
    stages: list[list[int]] = []
    for w in widths:
        if stages and stages[-1][0] == w:
            stages[-1][1] += 1
        else:
            stages.append([w, 1])
    out = []
    for w, d in stages:
        mid = max(1, int(round(w * bottleneck_ratio)))
        g = min(group_width, mid)
        mid = max(g, int(round(mid / g)) * g)
        width = int(round(mid / bottleneck_ratio))
        out.append(RegNetStage(width=width, depth=d, groups=mid // g, mid=mid))
    return out


def regnet_policy(spec: dict, error: Any) -> dict[str, Any]:
    """The resolver's width policy for ``policy: regnet``; ``error(message, key, fix)`` builds
    the resolver's located DesignError. Returns the policy with its ``derived`` variables."""
    for key in spec:
        if key not in REGNET_KEYS:
            from ..errors import unknown_name

            raise error(unknown_name("regnet width key", str(key), REGNET_KEYS), key, None)
    missing = [k for k in ("w0", "wa", "wm", "depth") if k not in spec]
    if missing:
        raise error(f"the regnet width rule needs {', '.join(missing)}", None,
                    "e.g. width: {policy: regnet, w0: 24, wa: 36, wm: 2.5, depth: 13, "
                    "group_width: 8}")

    def number(key: str, default: Any = None, *, integer: bool = False, low: float = 0.0,
               strict: bool = True) -> Any:
        value = spec.get(key, default)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if integer:
            ok = ok and float(value).is_integer()
        if not ok or (value <= low if strict else value < low):
            kind = "a whole number" if integer else "a number"
            bound = f"> {low:g}" if strict else f">= {low:g}"
            raise error(f"regnet '{key}' must be {kind} {bound}, got {value!r}", key, None)
        return int(value) if integer else float(value)

    w0 = number("w0")
    wa = number("wa", low=0.0, strict=False)
    wm = number("wm", low=1.0)
    depth = number("depth", integer=True)
    group_width = number("group_width", 8, integer=True)
    ratio = number("bottleneck_ratio", 1.0)
    quantum = number("quantum", 8, integer=True)
    stages = regnet_stages(w0, wa, wm, depth, group_width, ratio, quantum)
    wanted = spec.get("stages")
    if wanted is not None and wanted != len(stages):
        raise error(f"the regnet rule (w0={w0:g}, wa={wa:g}, wm={wm:g}, depth={depth}) gives "
                    f"{len(stages)} stage(s) of widths {[s.width for s in stages]}, the design's "
                    f"layers use {wanted}", "stages",
                    "change wa or wm (a larger wm merges stages, a smaller one splits them) or "
                    "the depth")
    derived: dict[str, Any] = {"regnet_stages": len(stages)}
    for i, s in enumerate(stages, 1):
        derived.update({f"stage{i}_width": s.width, f"stage{i}_depth": s.depth,
                        f"stage{i}_groups": s.groups, f"stage{i}_mid": s.mid})
    return {"policy": "regnet", "multiplier": 1.0, "divisor": quantum, "base": None,
            "derived": derived}
