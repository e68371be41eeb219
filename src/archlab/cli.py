"""The ``archlab`` command. Thin: parse arguments, call the library, render.

Each capability keeps its sub-commands in its own module, which defines::

    def register(subparsers) -> None   # adds one or more sub-parsers, each with set_defaults(run=fn)

``fn(args) -> int`` returns the exit status. Errors derived from :class:`ArchlabError` are printed
without a traceback and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .errors import ArchlabError

# Modules that contribute sub-commands, in the order `archlab --help` lists them.
COMMAND_MODULES = [
    "archlab.design.commands",      # show, validate, build, zoo
    "archlab.analysis.command",     # analyze
    "archlab.review.command",       # review
    "archlab.train.command",        # train, evaluate, predict
    "archlab.diagnose.command",     # check, diagnose, gradcheck
]


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="archlab",
        description="Design, judge, train and diagnose neural-network architectures.",
    )
    parser.add_argument("--version", action="version", version=f"archlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # a capability not present in this build
            if exc.name and name.startswith(exc.name):
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except ArchlabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `archlab show X --json | head`: the reader left, nothing is wrong
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def entry() -> None:  # console script
    sys.exit(main())


if __name__ == "__main__":
    entry()
