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
    yaml_nodes: int = 200_000
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
    nodes: int = 20_000
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
        raise UsageError(f"--limit takes NAME=POSITIVE_INTEGER with NAME one of "
                         f"{', '.join(_FIELDS)}; received '{text}'", path="--limit",
                         fix=f"e.g. --limit {best or 'nodes'}={getattr(DEFAULT, best or 'nodes') * 4}")
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


def image_guard():
    """Set PIL's decompression-bomb limit from ``image_pixels``; returns a context manager that
    turns PIL's bomb warning and error into a :class:`LimitError` for the images opened in it."""
    return _ImageGuard()


class _ImageGuard(contextlib.AbstractContextManager):
    def __enter__(self):
        import warnings

        from PIL import Image

        self._saved = Image.MAX_IMAGE_PIXELS
        # PIL warns above MAX_IMAGE_PIXELS and refuses above twice that; the warning is an error
        Image.MAX_IMAGE_PIXELS = active().image_pixels
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
            raise exceeded("image_pixels", "larger", f"an image ({exc})") from None
        return False


__all__ = ["DEFAULT", "Limits", "active", "check", "check_regular_file", "exceeded",
           "image_guard", "parse_limit", "raised", "set_limits"]
