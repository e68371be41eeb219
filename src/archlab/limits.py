"""Every size limit archlab enforces on its inputs, in one place (docs/limits.md).

A design file, a data file or a run folder may come from anyone. Before archlab does work whose
cost grows with the input (expanding YAML aliases, repeating a stage, allocating a tensor,
decoding an image) it checks the size against a limit here and stops with an
:class:`~archlab.errors.LimitError` that names the limit, its value and how to raise it.

The limits are raised explicitly, never by the environment:

* from Python: ``with archlab.limits.raised(nodes=50_000): archlab.load("big.yaml")``;
* from the command line: ``archlab --limit nodes=50000 validate big.yaml`` (repeatable).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import LimitError, UsageError, closest


@dataclass(frozen=True)
class Limits:
    """The limits. Each is a positive integer; the docstring of each field says what it counts."""

    file_bytes: int = 16 * 2**20
    """bytes of a design file or YAML text (data files have their own limits below)."""
    yaml_depth: int = 64
    """nesting depth of mappings and lists in a design (also bounds recursion)."""
    yaml_nodes: int = 100_000
    """values in a design after YAML aliases are expanded (a 'billion laughs' stops here)."""
    yaml_aliases: int = 1_000
    """uses of YAML aliases (``*name``) in a design."""
    string_chars: int = 100_000
    """characters of one string value, written or computed by an expression."""
    expression_chars: int = 2_000
    """characters of one ``${...}`` expression."""
    expression_depth: int = 50
    """nesting depth of one expression (operators inside operators)."""
    integer_digits: int = 18
    """decimal digits of an integer computed by an expression (10**18 and more is refused)."""
    nodes: int = 10_000
    """nodes of a resolved design (repeated stages count each repetition)."""
    tensor_elements: int = 2**31
    """elements of one tensor: a node's output for one example, one node's parameters, one data
    array."""
    classes: int = 100_000
    """classes of a classification task (the largest label + 1)."""
    image_pixels: int = 64 * 2**20
    """pixels of one image file (width x height); larger images may be decompression bombs."""
    batch: int = 2**20
    """examples in one batch (--batch, --examples)."""

    def with_values(self, **values: int) -> Limits:
        for name, value in values.items():
            if name not in _FIELDS:
                best = closest(name, _FIELDS)
                raise UsageError(f"unknown limit '{name}'; limits: {', '.join(_FIELDS)}",
                                 fix=f"did you mean '{best}'?" if best else "see docs/limits.md")
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UsageError(f"limit '{name}' must be a positive integer, got {value!r}",
                                 fix=f"e.g. --limit {name}={getattr(DEFAULT, name) * 4}")
        return dataclasses.replace(self, **values)


_FIELDS = [f.name for f in dataclasses.fields(Limits)]
DEFAULT = Limits()
_ACTIVE: contextvars.ContextVar[Limits] = contextvars.ContextVar("archlab_limits", default=DEFAULT)


def active() -> Limits:
    """The limits in force (the defaults unless raised)."""
    return _ACTIVE.get()


@contextlib.contextmanager
def raised(**values: int) -> Iterator[Limits]:
    """Raise (or lower) some limits for the code inside the ``with`` block."""
    token = _ACTIVE.set(active().with_values(**values))
    try:
        yield active()
    finally:
        _ACTIVE.reset(token)


def set_limits(**values: int) -> Limits:
    """Set some limits for the rest of the process (the CLI's ``--limit``)."""
    _ACTIVE.set(active().with_values(**values))
    return active()


def parse_limit(text: str) -> tuple[str, int]:
    """``'nodes=50000'`` -> ``('nodes', 50000)`` (the CLI's ``--limit``)."""
    name, sep, value = text.partition("=")
    name = name.strip().replace("-", "_")
    try:
        number = int(value.strip().replace("_", ""))
    except ValueError:
        number = None
    if not sep or number is None or name not in _FIELDS or number < 1:
        best = closest(name, _FIELDS) if name not in _FIELDS else name
        hint = f"did you mean '{best}'? " if best and best != name else ""
        raise UsageError(f"--limit takes NAME=POSITIVE_INTEGER with NAME one of "
                         f"{', '.join(_FIELDS)}; received '{text}'", path="--limit",
                         fix=f"{hint}e.g. --limit {best or 'nodes'}="
                             f"{getattr(DEFAULT, best or 'nodes') * 4}")
    return name, number


def exceeded(name: str, received: int | str, what: str, **where) -> LimitError:
    """The error for a size over the limit ``name``: says the limit and how to raise it."""
    limit = getattr(active(), name)
    bigger = max(limit * 4, int(received) * 2 if isinstance(received, int) and received < 2**62
                 else limit * 4)
    return LimitError(
        f"{what} is {received:,} where the limit '{name}' is {limit:,}"
        if isinstance(received, int) else f"{what} is {received} where the limit '{name}' is {limit:,}",
        fix=(f"if the input is meant to be this large, raise the limit: archlab --limit "
             f"{name}={bigger} ... (Python: with archlab.limits.raised({name}={bigger}): ...); "
             "see docs/limits.md"),
        **where)


def check(name: str, value: int, what: str, **where) -> None:
    """Raise :func:`exceeded` when ``value`` is above the limit ``name``."""
    if value > getattr(active(), name):
        raise exceeded(name, value, what, **where)


def check_regular_file(path: str | Path, what: str = "file", limit: str | None = "file_bytes") -> int:
    """Refuse what is not a regular file (a FIFO or device would block or never end) and, with
    ``limit``, a file larger than that limit; checked from ``stat`` before anything is read.
    Returns the size in bytes."""
    path = Path(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise UsageError(f"no such {what} '{path}'", source=str(path),
                         fix="check the path") from None
    except OSError as exc:
        raise UsageError(f"cannot read {what} '{path}': {exc.strerror}", source=str(path),
                         fix="check the path and its permissions") from None
    if stat.S_ISDIR(info.st_mode):
        raise UsageError(f"'{path}' is a folder, expected a {what}", source=str(path),
                         fix="give the file inside it")
    if not stat.S_ISREG(info.st_mode):
        raise UsageError(f"'{path}' is not a regular file (a pipe, socket or device), expected a "
                         f"{what}; reading it might never end", source=str(path),
                         fix="save the content to an ordinary file and give that")
    if limit is not None:
        check(limit, info.st_size, f"the size of {what} '{path}' in bytes", source=str(path))
    return info.st_size


def output_folder(path: str | Path, flag: str, *, create: bool = True) -> Path:
    """Check (and with ``create``, make) a folder archlab will write into: not an existing file,
    not under a file, creatable. Errors name the option and the path."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{flag} '{path}' exists and is a file, expected a folder",
                         source=str(path), fix=f"give {flag} a folder path, or remove the file")
    _check_parent(path, flag)
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create the folder {flag} '{path}': {exc.strerror}",
                             source=str(path), fix=f"give {flag} a folder you can write to") from None
    return path


def output_file(path: str | Path, flag: str) -> Path:
    """Check a file archlab will write: not an existing folder, its folder creatable (made)."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{flag} '{path}' is a folder, expected a file name",
                         source=str(path), fix=f"give {flag} a file path such as {path / 'out'}"
                                               f"{path.suffix or ''}")
    _check_parent(path.parent, flag, target=path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the folder of {flag} '{path}': {exc.strerror}",
                         source=str(path), fix=f"give {flag} a path you can write to") from None
    return path


def _check_parent(path: Path, flag: str, target: Path | None = None) -> None:
    target = target or path
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise UsageError(f"cannot write {flag} '{target}': '{probe}' is a file, not a folder",
                         source=str(target), fix=f"give {flag} a path whose folders are folders")
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write {flag} '{target}': no permission to write in '{probe}'",
                         source=str(target), fix=f"give {flag} a folder you can write to")


def image_guard(source: str | Path | None = None):
    """Set PIL's decompression-bomb limit from ``image_pixels``; returns a context manager that
    turns PIL's bomb warning and error into a :class:`LimitError` for the images opened in it."""
    return _ImageGuard(None if source is None else str(source))


class _ImageGuard(contextlib.AbstractContextManager):
    def __init__(self, source: str | None) -> None:
        self.source = source

    def __enter__(self):
        import warnings

        from PIL import Image

        self._saved = Image.MAX_IMAGE_PIXELS
        # PIL warns above MAX_IMAGE_PIXELS and refuses above twice that; the warning is an error
        Image.MAX_IMAGE_PIXELS = active().image_pixels  # warns above it: an error here
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        return self

    def __exit__(self, kind, exc, tb):
        from PIL import Image

        self._warnings.__exit__(None, None, None)
        Image.MAX_IMAGE_PIXELS = self._saved
        if kind is not None and issubclass(kind, (Image.DecompressionBombWarning,
                                                  Image.DecompressionBombError)):
            import re

            found = re.search(r"\((\d+) pixels\)", str(exc))
            pixels = int(found.group(1)) if found else "too large"
            raise exceeded("image_pixels", pixels, "the number of pixels of the image (a possible "
                           "decompression bomb)", source=self.source) from None
        return False


# ---- command-line values ------------------------------------------------------------------
# One table for every command: an option with this destination is checked wherever it appears,
# at parse time (argparse reports "argument --batch: ..." and exits 2 before any work).
# (kind, smallest, largest or a limit's name, example); None = no bound.
_NUMBERS: dict[str, tuple[type, float | None, float | str | None, str]] = {
    "batch": (int, 1, "batch", "64"),
    "examples": (int, 1, "batch", "256"),
    "overfit_examples": (int, 1, "batch", "8"),
    "epochs": (int, 1, 10**7, "10"),
    "rounds": (int, 1, 10**6, "9"),
    "threads": (int, 1, 4096, "4"),
    "max_elements": (int, 1, 2**31, "256"),
    "overfit_steps": (int, 1, 10**7, "200"),
    "patience": (int, 1, 10**7, "3"),
    "num_nodes": (int, 1, 10**5, "1"),
    "classes": (int, 2, "classes", "10"),
    "workers": (int, 0, 1024, "0"),
    "trials": (int, 1, 10**7, "20"),
    "lr": (float, 0, 1e6, "1e-3"),
    "momentum": (float, 0, 1, "0.9"),
    "l1": (float, 0, 1e6, "1e-5"),
    "l2": (float, 0, 1e6, "1e-4"),
    "clip": (float, 0, 1e12, "1.0"),
    "atol": (float, 0, 1e6, "1e-5"),
    "rtol": (float, 0, 1e6, "1e-3"),
}
_EXCLUSIVE_ZERO = {"lr", "clip"}     # must be above zero, not just at least zero
_EXCLUSIVE_TOP = {"momentum"}        # must be below the top
PRECISIONS = ("16-mixed", "bf16-mixed", "32-true", "64-true", "16-true", "bf16-true", "32", "16",
              "64", "bf16", "transformer-engine", "transformer-engine-float16")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")


def _number_type(dest: str, flag: str, kind: type, original):
    low, high, example = _NUMBERS[dest][1], _NUMBERS[dest][2], _NUMBERS[dest][3]
    import argparse
    import math

    def parse(text: str):
        value = None
        try:
            value = kind(text)
        except (TypeError, ValueError):
            try:  # 1e3 for an integer option: read it, then check the range
                number = float(text)
                if kind is int and math.isfinite(number) and number.is_integer():
                    value = int(number)
            except ValueError:
                pass
        if value is None:
            what = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"expected {what}, received '{text}'; e.g. {flag} "
                                             f"{example}")
        top = getattr(active(), high) if isinstance(high, str) else high
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, received '{text}'; "
                                             f"e.g. {flag} {example}")
        too_low = low is not None and (value < low or (dest in _EXCLUSIVE_ZERO and value <= low))
        too_high = top is not None and (value > top or (dest in _EXCLUSIVE_TOP and value >= top))
        if too_low or too_high:
            lo = f"above {low}" if dest in _EXCLUSIVE_ZERO else f"at least {low}"
            hi = "" if top is None else (f" and below {top}" if dest in _EXCLUSIVE_TOP
                                        else f" and at most {top:,}")
            raise_hint = (f" (the limit '{high}': raise it with --limit {high}=N)"
                          if isinstance(high, str) and too_high else "")
            raise argparse.ArgumentTypeError(f"must be {lo}{hi}{raise_hint}, received '{text}'; "
                                             f"e.g. {flag} {example}")
        return value

    parse.__name__ = getattr(original, "__name__", kind.__name__)
    return parse


def _plain_number_type(flag: str, kind: type, default):
    import argparse

    def parse(text: str):
        try:
            return kind(text)
        except (TypeError, ValueError):
            what = "a whole number" if kind is int else "a number"
            example = default if isinstance(default, (int, float)) else 1
            raise argparse.ArgumentTypeError(f"expected {what}, received '{text}'; e.g. {flag} "
                                             f"{example}") from None

    parse.__name__ = kind.__name__
    return parse


def _choice_type(flag: str, choices: tuple[str, ...], example: str):
    import argparse

    def parse(text: str) -> str:
        if text not in choices:
            best = closest(text, choices)
            hint = f"did you mean '{best}'? " if best else ""
            raise argparse.ArgumentTypeError(f"'{text}' is not one of {', '.join(choices)}; "
                                             f"{hint}e.g. {flag} {example}")
        return text

    parse.__name__ = "choice"
    return parse


def _devices_type(flag: str):
    import argparse

    def parse(text: str):
        parts = [p.strip() for p in text.split(",") if p.strip()]
        ok = text == "auto" or text == "-1" or (parts and all(p.isdigit() for p in parts)
                                                 and (len(parts) > 1 or int(parts[0]) >= 1))
        if not ok:
            raise argparse.ArgumentTypeError(f"expected 'auto', a positive count or a list of "
                                             f"device ids such as 0,1, received '{text}'; "
                                             f"e.g. {flag} 1")
        return text

    parse.__name__ = "devices"
    return parse


def _strategies() -> tuple[str, ...]:
    try:
        from lightning.pytorch.strategies import StrategyRegistry

        names = tuple(StrategyRegistry.available_strategies())
    except Exception:  # Lightning not installed: the common names
        names = ("ddp", "ddp_spawn", "fsdp", "deepspeed", "single_device")
    return ("auto", *names)


def harden(parser) -> None:
    """Give every option of every command in ``parser`` the checks of the table above (called
    once by the CLI on its parser)."""
    import argparse

    stack = [parser]
    while stack:
        p = stack.pop()
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                stack.extend(action.choices.values())
                continue
            flag = action.option_strings[-1] if action.option_strings else action.dest
            if action.dest in _NUMBERS and action.type in (int, float, None):
                kind = _NUMBERS[action.dest][0]
                action.type = _number_type(action.dest, flag, kind, action.type)
            elif action.type in (int, float) and action.choices is None:
                action.type = _plain_number_type(flag, action.type, action.default)
            elif action.dest == "precision" and action.choices is None:
                action.type = _choice_type(flag, PRECISIONS, "32-true")
            elif action.dest == "accelerator" and action.choices is None:
                action.type = _choice_type(flag, ACCELERATORS, "cpu")
            elif action.dest == "strategy" and action.choices is None:
                action.type = _lazy_choice(flag, "auto")
            elif action.dest == "devices" and action.choices is None:
                action.type = _devices_type(flag)


def _lazy_choice(flag: str, example: str):
    def parse(text: str) -> str:  # Lightning's registry is imported only when the flag is given
        return _choice_type(flag, _strategies(), example)(text)

    parse.__name__ = "strategy"
    return parse


def check_options(args) -> None:
    """Checks between options, after parsing and before the command runs."""
    optimizer, momentum = getattr(args, "optimizer", None), getattr(args, "momentum", None)
    if optimizer == "sgd" and momentum is not None and momentum <= 0:
        raise UsageError(f"SGD here uses Nesterov momentum, which needs a momentum above 0; "
                         f"received --momentum {momentum}", path="--momentum",
                         fix="use --momentum 0.9 (the default), or --optimizer adam")
    budget = getattr(args, "budget", None)
    if isinstance(budget, str):  # analyze's memory budget (search's budgets are a list, read at start)
        from .analysis.memory import parse_bytes

        if parse_bytes(budget) <= 0:  # garbage is refused by parse_bytes itself, with its fix
            raise UsageError(f"a memory budget must be above 0 bytes; received --budget {budget}",
                             path="--budget", fix="e.g. --budget 8GiB")
    accelerator = getattr(args, "accelerator", None)
    devices = getattr(args, "devices", None)
    device = getattr(args, "device", None)
    wants_gpu = accelerator in ("gpu", "cuda") or device == "cuda"
    if wants_gpu or (devices not in (None, "auto", "-1") and accelerator in (None, "auto", "cpu")):
        import torch

        has_gpu = torch.cuda.is_available()
        if wants_gpu and not has_gpu:
            flag = "--accelerator" if accelerator in ("gpu", "cuda") else "--device"
            raise UsageError(f"{flag} {accelerator or device} asks for a GPU, but this machine "
                             "has none that PyTorch can use (torch.cuda.is_available() is False)",
                             path=flag, fix=f"use {flag} cpu, or run on a machine with a CUDA GPU")
        parts = [p for p in str(devices).split(",") if p.strip()] if devices else []
        count = int(parts[0]) if len(parts) == 1 else len(parts)
        cores = os.cpu_count() or 1
        if devices is not None and not has_gpu and count > cores:
            raise UsageError(f"--devices {devices} on the CPU would start {count} training "
                             f"processes on a machine with {cores} cores", path="--devices",
                             fix=f"use --devices {min(2, cores)} (or fewer), or leave it out")


def check_user_files(argv: list[str]) -> None:
    """``FILE.py:NAME`` arguments whose file exists must be ordinary files (reading a FIFO as
    Python source would never end)."""
    for arg in argv:
        file, sep, name = arg.rpartition(":")
        if sep and name and file.endswith(".py") and Path(file).exists():
            check_regular_file(file, "Python file", limit=None)


def split_limits(argv: list[str]) -> list[str]:
    """Take ``--limit NAME=N`` (anywhere on the command line) out of ``argv`` and apply it."""
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--limit" or arg.startswith("--limit="):
            if arg == "--limit":
                if i + 1 >= len(argv):
                    raise UsageError("--limit needs NAME=N", path="--limit",
                                     fix="e.g. --limit nodes=50000")
                text, i = argv[i + 1], i + 2
            else:
                text, i = arg.partition("=")[2], i + 1
            set_limits(**dict([parse_limit(text)]))
            continue
        if arg == "--":
            rest.extend(argv[i:])
            break
        rest.append(arg)
        i += 1
    return rest


__all__ = ["DEFAULT", "Limits", "active", "check", "check_options", "check_regular_file",
           "exceeded", "harden", "image_guard", "output_file", "output_folder", "parse_limit",
           "raised", "set_limits", "split_limits"]
