"""One error format for all of archlab.

Every error a user can cause says *where* (file:line and node path), *what was expected*, *what
was received*, and the fix when one is known. The CLI prints ``str(error)`` without a traceback
and exits with status 2.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ArchlabError(Exception):
    """Base class of every error archlab raises on purpose (bad input, not a bug).

    Attributes:
        message: what went wrong, with what was expected and what was received.
        source: file name (or ``<dict>``/``<text>``) the problem is in, if known.
        line: 1-based line number in ``source``, if known.
        path: node path such as ``layers[3].merge`` or ``layer2.0.conv1``, if known.
        fix: a concrete suggestion, if known.
    """

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        line: int | None = None,
        path: str | None = None,
        fix: str | None = None,
    ) -> None:
        self.message = message
        self.source = source
        self.line = line
        self.path = path
        self.fix = fix
        super().__init__(self.format())

    def where(self) -> str:
        loc = ""
        if self.source:
            loc = self.source if self.line is None else f"{self.source}:{self.line}"
        elif self.line is not None:
            loc = f"line {self.line}"
        if self.path:
            loc = f"{loc} {self.path}" if loc else self.path
        return loc

    def format(self) -> str:
        where = self.where()
        text = f"{where}: {self.message}" if where else self.message
        if self.fix:
            text += f"; {self.fix}"
        return text

    def located(
        self,
        *,
        source: str | None = None,
        line: int | None = None,
        path: str | None = None,
    ) -> ArchlabError:
        """Fill in location fields that are still unknown (inner code knows less than outer)."""
        if self.source is None and source is not None:
            self.source = source
        if self.line is None and line is not None:
            self.line = line
        if self.path is None and path is not None:
            self.path = path
        self.args = (self.format(),)
        return self

    def to_dict(self) -> dict:
        """The error for programs (``--json``): the parts of the message, each ``None`` when
        unknown, and the whole formatted message."""
        return {"kind": type(self).__name__, "message": self.message, "source": self.source,
                "line": self.line, "path": self.path, "fix": self.fix, "text": self.format()}

    def __str__(self) -> str:  # keep in sync after located()
        return self.format()


class DesignError(ArchlabError):
    """A design (YAML file, dict or text) is malformed or inconsistent."""


class BlockError(ArchlabError):
    """A block's parameters do not fit its inputs. Raised inside block formulas;
    the resolver adds the file, line and node path."""

    def __init__(self, message: str, *, fix: str | None = None, field: str | None = None) -> None:
        self.field = field
        super().__init__(message, fix=fix)


class UsageError(ArchlabError):
    """A command-line or API argument is wrong (unknown variable, bad --input, ...)."""


def closest(name: str, choices: Iterable[str]) -> str | None:
    """The closest valid name to a misspelt one, or None when nothing is close."""
    matches = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return matches[0] if matches else None


def unknown_name(kind: str, name: str, choices: Iterable[str]) -> str:
    """Message for an unknown registered name: lists the valid ones and the closest match."""
    choices = sorted(choices)
    text = f"unknown {kind} '{name}'; valid {kind}s: {', '.join(choices)}"
    best = closest(name, choices)
    if best:
        text += f"; did you mean '{best}'?"
    return text


class LimitError(ArchlabError):
    """An input is larger than a documented limit (:mod:`archlab.limits`); the message names
    the limit and how to raise it."""


class UserCodeError(ArchlabError):
    """The user's own Python code (a ``model.py:factory`` named on the command line) raised.
    The message is their exception with the frames of their own file(s)."""


# Python files of the user's that archlab imported on request (``model.py:factory``).
USER_FILES: set[str] = set()


def register_user_file(path) -> None:
    import os

    USER_FILES.add(os.path.realpath(str(path)))


def _user_frames(exc: BaseException) -> list[tuple[str, int | None, str, str]]:
    """(file, line, function, code) of each frame in the user's own files, outermost first."""
    import os
    import traceback

    frames = [(f.filename, f.lineno, f.name, (f.line or "").strip())
              for f in traceback.extract_tb(exc.__traceback__)
              if os.path.realpath(f.filename) in USER_FILES]
    if isinstance(exc, SyntaxError) and exc.filename and \
            os.path.realpath(exc.filename) in USER_FILES:
        frames.append((exc.filename, exc.lineno, "<module>", (exc.text or "").strip()))
    # a runaway recursion repeats one frame a thousand times: show it three times, then count
    out: list = []
    for frame in frames:
        if len(out) >= 3 and all(f == frame for f in out[-3:]):
            if isinstance(out[-1], int):
                out[-1] += 1
            else:
                out.append(1)
        elif out and isinstance(out[-1], int) and out[-2] == frame:
            out[-1] += 1
        else:
            out.append(frame)
    return [f if not isinstance(f, int) else ("", None, f"[the frame above repeated {f} more "
                                               "times]", "") for f in out]


def user_code_error(exc: BaseException, what: str | None = None,
                    source: str | None = None) -> UserCodeError | None:
    """The exception as the user's error when its traceback passes through a registered user
    file (or ``what`` says it came from user code); None when it is not the user's."""
    if isinstance(exc, ArchlabError):
        return None
    frames = _user_frames(exc)
    if not frames and what is None:
        return None
    line = None
    real = [f for f in frames if f[0]]
    if real:
        source, line = real[-1][0], real[-1][1]
    kind = type(exc).__name__
    text = exc.msg if isinstance(exc, SyntaxError) else str(exc)
    doing = f" while {what}" if what else ""
    message = f"your code raised {kind}{doing}: {text}"
    if frames:
        message += "\n" + "\n".join(
            (f"  {file}:{no}, in {name}" if file else f"  {name}") + (f"\n    {code}" if code else "")
            for file, no, name, code in frames) + "\n"
    return UserCodeError(message, source=source, line=line,
                         fix="fix: the frames above are in your file; correct it and run the "
                             "command again")


class user_code:
    """``with user_code("building the model", "model.py"):`` turns any exception the user's code
    raises into a :class:`UserCodeError` (their frames, exit status 2). archlab's own errors pass
    through unchanged."""

    def __init__(self, what: str, source: str | None = None) -> None:
        self.what = what
        self.source = source

    def __enter__(self) -> user_code:
        return self

    def __exit__(self, kind, exc, tb) -> bool:
        if exc is None or isinstance(exc, (ArchlabError, KeyboardInterrupt)):
            return False
        if isinstance(exc, Exception) or isinstance(exc, SystemExit):
            raise user_code_error(exc, self.what, self.source) from None
        return False


def explain(error: ArchlabError) -> str:
    """``str(error)``, and when it was raised while handling an exception from the user's own
    code (a forward pass archlab traced, a layer it built), that code's frames."""
    def cause_of(exc: BaseException) -> BaseException | None:
        # the context too when it was hidden with `from None`: archlab hides tracebacks, but the
        # user's frames in it are what they need
        return exc.__cause__ or exc.__context__

    if isinstance(error, UserCodeError):  # already the user's frames
        return str(error)
    seen, cause = set(), cause_of(error)
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if not isinstance(cause, ArchlabError):
            frames = _user_frames(cause)
            if frames:
                lines = "\n".join((f"  {file}:{no}, in {name}" if file else f"  {name}")
                                  + (f"\n    {code}" if code else "")
                                  for file, no, name, code in frames)
                return (f"{error}\nit came from {type(cause).__name__} in your code:\n{lines}\n"
                        "fix the error in your file (the frames above are yours)")
        cause = cause_of(cause)
    return str(error)
