"""Weights from other libraries: a torchvision or timm state dict loaded into a built design.

A foreign state dict names its tensors after its own modules (torchvision's ResNet has
``conv1.weight`` and ``bn1.*`` where archlab's stem conv block has ``conv1.0.weight`` and
``conv1.1.*``), so tensors are matched in four passes, each only among what the earlier ones
left, and each tensor's report says which pass matched it:

1. ``name``: the same name and shape (inside residual blocks archlab keeps torchvision's names);
2. ``rule``: a known renaming: the file's name equals the design's with one container segment
   left out (``conv1.0.weight`` -> ``conv1.weight``, ``fc.fc.weight`` -> ``fc.weight``), when
   exactly one design tensor of that shape fits;
3. ``order``: the rest grouped by module (``bn1``: weight, bias, running_mean, running_var) and
   paired by module order among modules with the same tensor names and shapes. A group whose
   counts differ between file and design is *ambiguous* and never guessed;
4. ``reshaped``: modules whose tensors differ only by singleton axes (a linear classifier
   stored as a 1x1 conv), paired the same way;
5. ``order`` again for single tensors whose modules are grouped differently (a class token and
   positional embedding kept in one container), by order among tensors of the same shape.

Anything left is reported: file tensors not used, design tensors not filled, shape mismatches
with both shapes. A load that would leave design tensors unfilled or that met an ambiguity is
refused unless ``partial=True`` (then the unfilled tensors keep their initialisation: transfer
learning's usual case, a new head for other classes).

Files are read safely: ``.safetensors``, or ``torch.load(weights_only=True)`` for .pth/.pt/.bin/
.ckpt (tensors and plain values only: a pickle cannot run code).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ArchlabError

OPTIONAL_SUFFIXES = ("num_batches_tracked",)  # older checkpoints lack it; the design keeps its own


class WeightsImportError(ArchlabError):
    """A foreign state dict cannot be read, or does not fit the design it is loaded into."""


# --------------------------------------------------------------------------- reading --------


def read_state_dict(path: str | Path) -> tuple[dict[str, Any], bool]:
    """(state dict, whether its key order is the module order) from a weights file.

    .pth files keep the order of the module's ``state_dict()``; safetensors stores keys sorted,
    so for those the order is rebuilt by natural sort of the names (``layer2`` before ``layer10``).
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise WeightsImportError("weights file not found", source=str(path),
                                 fix="give a .pth, .pt, .bin or .safetensors file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except Exception as exc:
            raise WeightsImportError(f"unreadable safetensors file ({str(exc)[:200]})",
                                     source=str(path)) from None
        return dict(sorted(state.items(), key=lambda kv: natural_key(kv[0]))), False
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsImportError(
            f"cannot read the file with torch.load(weights_only=True) ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200]})", source=str(path),
            fix="archlab reads tensors and plain values only (a pickle of objects could run code); "
                "save the state dict itself: torch.save(model.state_dict(), path), or use "
                "safetensors") from None
    state = _tensors_of(obj)
    if not state:
        raise WeightsImportError("the file holds no tensors", source=str(path),
                                 fix="save a state dict: torch.save(model.state_dict(), path)")
    return _strip_common_prefix(state), True


def _tensors_of(obj: Any) -> dict[str, Any]:
    import torch

    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state_dict", "ema"):  # training checkpoints
            inner = obj.get(key)
            if isinstance(inner, dict) and any(isinstance(v, torch.Tensor) for v in inner.values()):
                obj = inner
                break
        return {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    return {}


def _strip_common_prefix(state: dict[str, Any]) -> dict[str, Any]:
    # DataParallel writes 'module.', Lightning 'model.': the network's own names follow
    for prefix in ("module.", "model."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def natural_key(name: str) -> tuple:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name))


# -------------------------------------------------------------------------- matching --------


@dataclass
class Match:
    design: str           # tensor name in the design (the node path plus the tensor)
    file: str             # tensor name in the file
    how: str              # name | rule | order | reshaped
    file_shape: tuple
    design_shape: tuple


@dataclass
class ImportReport:
    """Every tensor of the file and of the design, and what became of it."""

    source: str
    matches: list[Match] = field(default_factory=list)
    unused: list[tuple[str, tuple]] = field(default_factory=list)      # in the file only
    unfilled: list[tuple[str, tuple]] = field(default_factory=list)    # in the design only
    mismatched: list[tuple[str, tuple, str, tuple]] = field(default_factory=list)
    ambiguous: list[dict] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # optional tensors the file lacks (BN counters)

    @property
    def complete(self) -> bool:
        return not (self.unfilled or self.mismatched or self.ambiguous)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for m in self.matches:
            out[m.how] += 1
        return dict(out)

    def to_json(self) -> dict:
        return {
            "schema": "archlab.weights-import/1", "source": self.source, "complete": self.complete,
            "counts": {**self.counts(), "unused": len(self.unused), "unfilled": len(self.unfilled),
                       "mismatched": len(self.mismatched), "ambiguous": len(self.ambiguous)},
            "matched": [{"design": m.design, "file": m.file, "how": m.how,
                         "file_shape": list(m.file_shape), "design_shape": list(m.design_shape)}
                        for m in self.matches],
            "unused": [{"file": n, "shape": list(s)} for n, s in self.unused],
            "unfilled": [{"design": n, "shape": list(s)} for n, s in self.unfilled],
            "mismatched": [{"file": f, "file_shape": list(fs), "design": d, "design_shape": list(ds)}
                           for f, fs, d, ds in self.mismatched],
            "ambiguous": self.ambiguous,
            "kept_from_design": self.kept,
        }

    def problems(self, limit: int = 6) -> str:
        parts = []
        if self.mismatched:
            parts.append(f"{len(self.mismatched)} tensor(s) differ in shape (" + ", ".join(
                f"file {f} {fs} vs design {d} {ds}" for f, fs, d, ds in self.mismatched[:limit]) + ")")
        if self.ambiguous:
            parts.append(f"{len(self.ambiguous)} group(s) of same-shaped modules cannot be paired "
                         "with certainty (" + "; ".join(
                             f"file {a['file'][:3]} vs design {a['design'][:3]}"
                             for a in self.ambiguous[:2]) + ")")
        left = [n for n, _ in self.unfilled]
        if left:
            parts.append(f"{len(left)} design tensor(s) have no counterpart in the file "
                         f"({', '.join(left[:limit])})")
        return "; ".join(parts)


def _shape(t) -> tuple:
    return tuple(int(s) for s in t.shape)


def _squeezed(shape: tuple) -> tuple:
    return tuple(s for s in shape if s != 1)


def _module_of(name: str) -> tuple[str, str]:
    module, _, suffix = name.rpartition(".")
    return module, suffix


def _groups(names: list[str], shapes: dict[str, tuple]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for n in names:
        groups.setdefault(_module_of(n)[0], []).append(n)
    return groups


def _signature(tensors: list[str], shapes: dict[str, tuple], squeeze: bool) -> tuple:
    sig = []
    for n in tensors:
        suffix = _module_of(n)[1]
        if suffix in OPTIONAL_SUFFIXES:
            continue
        shape = shapes[n]
        sig.append((suffix, _squeezed(shape) if squeeze else shape))
    return tuple(sorted(sig))


def _rule_candidates(design_name: str) -> list[str]:
    """The names a foreign library may give a design tensor: one container segment left out
    (a numbered position inside a block, or a segment that repeats its parent's name)."""
    parts = design_name.split(".")
    out = []
    for i in range(len(parts) - 1):
        if parts[i].isdigit() or (i > 0 and parts[i] == parts[i - 1]):
            out.append(".".join(parts[:i] + parts[i + 1:]))
    return out


def match_state(design_state: dict[str, Any], file_state: dict[str, Any], *,
                ordered: bool = True, source: str = "") -> ImportReport:
    """Pair the file's tensors with the design's (see the module docstring for the passes)."""
    report = ImportReport(source=source)
    dshape = {k: _shape(v) for k, v in design_state.items()}
    fshape = {k: _shape(v) for k, v in file_state.items()}
    d_left = list(design_state)
    f_left = list(file_state)

    # 1. names
    for name in list(d_left):
        if name in fshape and fshape[name] == dshape[name]:
            report.matches.append(Match(name, name, "name", fshape[name], dshape[name]))
            d_left.remove(name)
            f_left.remove(name)

    # 2. rules: the file name is the design name with one container segment left out
    f_set = set(f_left)
    claims: dict[str, list[str]] = defaultdict(list)
    for name in d_left:
        for cand in _rule_candidates(name):
            if cand in f_set and fshape[cand] == dshape[name]:
                claims[cand].append(name)
    for fname, dnames in claims.items():
        if len(dnames) == 1:
            d = dnames[0]
            report.matches.append(Match(d, fname, "rule", fshape[fname], dshape[d]))
            d_left.remove(d)
            f_left.remove(fname)

    # 3. and 4. module order within groups of equal signature (exact shapes, then squeezed)
    for how, squeeze in (("order", False), ("reshaped", True)):
        d_groups, f_groups = _groups(d_left, dshape), _groups(f_left, fshape)
        d_by_sig: dict[tuple, list[str]] = defaultdict(list)
        f_by_sig: dict[tuple, list[str]] = defaultdict(list)
        for mod, tensors in d_groups.items():
            d_by_sig[_signature(tensors, dshape, squeeze)].append(mod)
        for mod, tensors in f_groups.items():
            f_by_sig[_signature(tensors, fshape, squeeze)].append(mod)
        pairs = []
        for sig, d_mods in d_by_sig.items():
            f_mods = f_by_sig.get(sig, [])
            if not sig or not f_mods:
                continue
            if len(f_mods) != len(d_mods):
                if how == "order":
                    report.ambiguous.append({"tensors": [f"{s} {list(sh)}" for s, sh in sig],
                                             "file": f_mods, "design": d_mods})
                continue
            pairs.extend(zip(f_mods, d_mods, strict=True))
        if ordered and how == "order" and not _monotone(pairs, file_state, design_state):
            report.ambiguous.append({"tensors": ["module order"], "file": [f for f, _ in pairs],
                                     "design": [d for _, d in pairs],
                                     "why": "pairing by shape contradicts the file's module order"})
            pairs = []
        for f_mod, d_mod in pairs:
            by_suffix = {_module_of(n)[1]: n for n in f_groups[f_mod]}
            for d in d_groups[d_mod]:
                f = by_suffix.get(_module_of(d)[1])
                if f is None:  # an optional counter the file lacks: the design keeps its own
                    report.kept.append(d)
                    d_left.remove(d)
                    continue
                kind = "reshaped" if fshape[f] != dshape[d] else "order"
                report.matches.append(Match(d, f, kind, fshape[f], dshape[d]))
                d_left.remove(d)
                f_left.remove(f)
            for f in by_suffix.values():
                if f in f_left:  # an optional counter only the file has
                    f_left.remove(f)
                    report.unused.append((f, fshape[f]))
    # 5. single tensors whose modules are grouped differently (torchvision's ViT keeps class
    # token and positions in one container, archlab has a node for each): by order among
    # tensors of the same shape, with the same count and order rules
    d_by_shape: dict[tuple, list[str]] = defaultdict(list)
    f_by_shape: dict[tuple, list[str]] = defaultdict(list)
    for d in d_left:
        if _module_of(d)[1] not in OPTIONAL_SUFFIXES:
            d_by_shape[dshape[d]].append(d)
    for f in f_left:
        if _module_of(f)[1] not in OPTIONAL_SUFFIXES:
            f_by_shape[fshape[f]].append(f)
    singles = [(f, d) for shape, ds in d_by_shape.items()
               if len(f_by_shape.get(shape, [])) == len(ds) for f, d in zip(f_by_shape[shape], ds, strict=True)]
    if singles and (not ordered or _monotone(singles, file_state, design_state, tensors=True)):
        for f, d in singles:
            report.matches.append(Match(d, f, "order", fshape[f], dshape[d]))
            d_left.remove(d)
            f_left.remove(f)

    # ambiguous groups found by the exact pass may have been settled by the reshape pass
    report.ambiguous = [a for a in report.ambiguous
                        if any(any(n.startswith(m + ".") for n in d_left) for m in a["design"])]

    # what is left: modules with the same tensor names but other shapes, paired in order
    # (a classifier for other classes); the rest is unused or unfilled
    d_groups, f_groups = _groups(d_left, dshape), _groups(f_left, fshape)
    d_by_names: dict[tuple, list[str]] = defaultdict(list)
    f_by_names: dict[tuple, list[str]] = defaultdict(list)
    for mod, tensors in d_groups.items():
        d_by_names[tuple(sorted(_module_of(n)[1] for n in tensors))].append(mod)
    for mod, tensors in f_groups.items():
        f_by_names[tuple(sorted(_module_of(n)[1] for n in tensors))].append(mod)
    for names, d_mods in d_by_names.items():
        f_mods = f_by_names.get(names, [])
        if len(f_mods) != len(d_mods):
            continue
        for f_mod, d_mod in zip(f_mods, d_mods, strict=True):
            for suffix in names:
                f, d = f"{f_mod}.{suffix}", f"{d_mod}.{suffix}"
                if fshape[f] == dshape[d]:
                    continue  # stays unfilled and unused: its module as a whole does not fit
                report.mismatched.append((f, fshape[f], d, dshape[d]))
                f_left.remove(f)
                d_left.remove(d)
    report.unfilled = [(d, dshape[d]) for d in d_left]
    report.unused += [(f, fshape[f]) for f in f_left]
    order = {n: i for i, n in enumerate(design_state)}
    report.matches.sort(key=lambda m: order[m.design])
    return report


def _monotone(pairs: list[tuple[str, str]], file_state: dict, design_state: dict,
              tensors: bool = False) -> bool:
    """True when pairs sorted by design order are also in file order (module order agrees).
    ``pairs`` are (file, design) module names, or tensor names with ``tensors``."""
    key = (lambda n: n) if tensors else (lambda n: _module_of(n)[0])
    f_pos = {key(n): i for i, n in reversed(list(enumerate(file_state)))}
    d_pos = {key(n): i for i, n in reversed(list(enumerate(design_state)))}
    ranks = [f_pos[f] for f, d in sorted(pairs, key=lambda p: d_pos[p[1]])]
    return all(a < b for a, b in zip(ranks, ranks[1:], strict=False))


# --------------------------------------------------------------------------- loading --------


def apply_matches(model, file_state: dict[str, Any], report: ImportReport) -> None:
    """Copy every matched tensor into the model (reshaped ones viewed to the design's shape)."""
    import torch

    own = model.state_dict()
    with torch.no_grad():
        for m in report.matches:
            own[m.design].copy_(file_state[m.file].reshape(m.design_shape))


def import_state(model, file_state: dict[str, Any], *, ordered: bool = True, partial: bool = False,
                 source: str = "", design_name: str = "design") -> ImportReport:
    """Match ``file_state`` to ``model``'s tensors and load it; refuse an incomplete or
    ambiguous match unless ``partial``. Returns the report."""
    report = match_state(model.state_dict(), file_state, ordered=ordered, source=source)
    if not report.matches:
        raise WeightsImportError(
            f"no tensor of the file fits the design '{design_name}' by name, rule, module order "
            f"or shape ({len(file_state)} tensors in the file, {len(model.state_dict())} in the "
            "design)", source=source,
            fix="check that the file comes from the same architecture (and the design's "
                "--set variables, e.g. width or classes)")
    if not report.complete and not partial:
        fix = ("pass --partial (partial=True) to load the "
               f"{len(report.matches)} tensors that fit and keep the design's initialisation "
               "for the rest")
        if report.mismatched:
            fix += ("; a classifier trained for other classes is the usual mismatch: keep the "
                    "fresh head and retrain it (transfer), or build the design with the file's "
                    "class count (--set classes=N)")
        raise WeightsImportError(
            f"the weights do not fill the design '{design_name}' with certainty: "
            f"{report.problems()}; nothing was loaded", source=source, fix=fix)
    apply_matches(model, file_state, report)
    return report


def import_weights(design: Any, path: str | Path, *, partial: bool = False, **variables: Any):
    """Build ``design`` and load a foreign state dict into it: ``(model, report)``.

    >>> import torch, archlab, tempfile, os
    >>> ref = torch.nn.Sequential(torch.nn.Linear(4, 3))
    >>> f = os.path.join(tempfile.mkdtemp(), "w.pth"); torch.save(ref.state_dict(), f)
    >>> model, report = import_weights({"input": [4], "layers": [{"block": "linear", "out": 3}]}, f)
    >>> report.counts()
    {'order': 2}
    """
    from ..build import build
    from ..design import Design, load

    d = design if isinstance(design, Design) and not variables else load(design, **variables)
    model = build(d)
    state, ordered = read_state_dict(path)
    report = import_state(model, state, ordered=ordered, partial=partial, source=str(path),
                          design_name=d.name)
    return model, report


def is_foreign(source: str | Path) -> bool:
    """A weights file another library wrote (its names are matched to node paths), not a run
    folder, checkpoint or archlab-written safetensors (their names are node paths already, and
    a node removed from the design must not be matched to a new one by shape)."""
    path = Path(source)
    if path.is_dir() or path.suffix == ".ckpt":
        return False
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
        except Exception:
            return True
        return "archlab_design" not in meta
    return True


def to_design_names(model, file_state: dict[str, Any], *, ordered: bool = True,
                    source: str = "") -> dict[str, Any]:
    """The file's tensors renamed to the model's names where they match (for ``--init-from``);
    tensors that do not match are dropped. Names that already fit are kept as they are."""
    report = match_state(model.state_dict(), file_state, ordered=ordered, source=source)
    return {m.design: file_state[m.file].reshape(m.design_shape) for m in report.matches}


__all__ = ["ImportReport", "Match", "WeightsImportError", "import_state", "import_weights", "is_foreign",
           "match_state", "natural_key", "read_state_dict", "to_design_names"]
