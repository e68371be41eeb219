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

from . import __version__, limits
from .errors import ArchlabError, explain, user_code_error
from .plugins import load_plugin, split_plugins

# Modules that contribute sub-commands, in the order `archlab --help` lists them.
COMMAND_MODULES = [
    "archlab.design.commands",      # show, validate, build, zoo
    "archlab.analysis.command",     # analyze
    "archlab.review.command",       # review
    "archlab.train.command",        # train, evaluate, predict
    "archlab.diagnose.command",     # check, diagnose, gradcheck
    "archlab.search.command",       # search, space, new
    "archlab.compare.command",      # compare, runs
    "archlab.report.command",       # report
    "archlab.export.command",       # weights import, export
]

# Every command with the module that registers it and the line `archlab --help` shows. Only
# the module of the command being run is imported: `archlab --help` imports neither torch nor
# Lightning (a test holds this table equal to what the modules register). A command missing
# here still works: its module is found by importing the others.
COMMANDS: dict[str, tuple[str, str]] = {
    "show": ("archlab.design.commands", "show a design as a table of nodes, shapes and parameters"),
    "validate": ("archlab.design.commands", "validate a design (exit 0 if valid, 2 if not)"),
    "build": ("archlab.design.commands", "build a design and save its weights and resolved design"),
    "zoo": ("archlab.design.commands", "list the reference designs"),
    "analyze": ("archlab.analysis.command",
                "parameters, multiply-adds, memory access, memory and latency per block"),
    "review": ("archlab.review.command",
               "check a design or module against the design guidelines, with evidence"),
    "train": ("archlab.train.command", "train a design on data; writes a run folder"),
    "evaluate": ("archlab.train.command", "metrics of a trained run on its test split or new data"),
    "predict": ("archlab.train.command", "predictions of a trained run for .npy/.npz/CSV/image inputs"),
    "check": ("archlab.diagnose.command",
              "sanity checks before training: loss at init, inputs, init, gradients, ..."),
    "diagnose": ("archlab.diagnose.command",
                 "health of a training run: what went wrong, when, where, fixes; plots"),
    "gradcheck": ("archlab.diagnose.command", "check a custom layer's backward against numeric gradients"),
    "search": ("archlab.search.command", "search a design space under budgets (Optuna)"),
    "space": ("archlab.search.command", "design-space studies: sample, compare (error EDFs)"),
    "new": ("archlab.search.command", "write a simple baseline design scaled to fit budgets"),
    "compare": ("archlab.compare.command",
                "compare a baseline with variants: designs before training, runs after"),
    "runs": ("archlab.compare.command", "list run folders (design, data, seed, best metric, date, commit)"),
    "report": ("archlab.report.command",
               "write one self-contained HTML report of a design, a run or a comparison"),
    "weights": ("archlab.export.command", "load another library's weights (torchvision, timm) into a design"),
    "export": ("archlab.export.command", "a design, run or built model as ONNX, TorchScript, "
               "torch.export or one standalone PyTorch file"),
}


def _import(name: str):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:  # a capability not present in this build
        if exc.name and name.startswith(exc.name):
            return None
        raise


def _modules_in_order() -> list[str]:
    names = list(COMMAND_MODULES)
    names += [m for m, _ in COMMANDS.values() if m not in names]
    return names


def make_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser. ``command``: register that command's module for real and list the
    others by name only (the fast path; ``""`` lists every command by name); ``None``: register
    every module (the complete parser)."""
    parser = argparse.ArgumentParser(
        prog="archlab",
        description="Design, judge, train and diagnose neural-network architectures.",
    )
    parser.add_argument("--version", action="version", version=f"archlab {__version__}")
    parser.add_argument("--plugin", action="append", metavar="FILE.py",
                        help="import FILE.py first: it registers your own blocks (@register_block), "
                             "rules or data sets; repeatable, before or after the command")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    wanted = None  # None: every module; "": none (the top-level help); "*": a command not in COMMANDS
    if command is not None:
        wanted = COMMANDS[command][0] if command in COMMANDS else ("" if command == "" else "*")
    for name in _modules_in_order():
        listed = [c for c, (m, _) in COMMANDS.items() if m == name]
        if wanted is None or wanted == "*" or wanted == name:
            module = _import(name)
            if module is not None:
                module.register(sub)
            continue
        for cmd in listed:  # by name only: `archlab --help` lists it, nothing is imported
            sub.add_parser(cmd, help=COMMANDS[cmd][1], add_help=False)
    return parser


def _command_of(argv: list[str]) -> str | None:
    for arg in argv:
        if not arg.startswith("-"):
            return arg
        if arg in ("-h", "--help", "--version"):
            return None
    return None


def main(argv: list[str] | None = None) -> int:
    """Run one command line; returns the exit status. Runs in a copy of the caller's context, so
    that ``--limit`` applies to this command only (an in-process caller keeps its limits)."""
    import contextvars

    return contextvars.copy_context().run(_main, argv)


def _main(argv: list[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        plugins, argv = split_plugins(argv)
        argv = limits.split_limits(argv)  # --limit NAME=N, anywhere (docs/limits.md)
        limits.check_user_files(argv)  # FILE.py:NAME given: an ordinary file (a FIFO would hang)
    except ArchlabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    parser = make_parser(_command_of(argv) or "")
    limits.harden(parser)  # every option's range, checked while parsing (before any work)
    args = parser.parse_args(argv)
    try:
        limits.check_options(args)
        for plugin in plugins:  # before the command: a plugin registers blocks that designs use
            load_plugin(plugin)
        return int(args.run(args) or 0)
    except ArchlabError as exc:
        print(f"error: {explain(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `archlab show X --json | head`: the reader left, nothing is wrong
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # the user's own code (model.py:factory) raised: their error
        error = user_code_error(exc)
        if error is None:
            raise
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code


def entry() -> None:  # console script
    sys.exit(main())


if __name__ == "__main__":
    entry()
