"""Plugins: Python files of the user's that register their own blocks (or review rules,
detectors, data sets) before a command runs: ``archlab --plugin myblocks.py show mynet.yaml``.

A plugin is code the user names on the command line, so it runs, as ``model.py:factory`` does;
nothing in a design file can ask for one. An exception in the plugin is shown as the user's
error with the frames of their file (exit status 2).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from .errors import UsageError, register_user_file, user_code


def load_plugin(path: str | Path) -> ModuleType:
    """Import the file ``path`` once (a second call returns the same module)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise UsageError("plugin file not found" if not p.exists() else "plugin is not a file",
                         source=str(path), fix="give the path of a .py file, e.g. --plugin myblocks.py")
    if p.suffix != ".py":
        raise UsageError(f"a plugin is a Python file (.py); received '{p.name}'", source=str(path),
                         fix="give the .py file that registers your blocks")
    name = "archlab_plugin_" + "".join(ch if ch.isalnum() else "_" for ch in str(p.resolve()))
    if name in sys.modules:
        return sys.modules[name]
    register_user_file(p)
    spec = importlib.util.spec_from_file_location(name, p)
    if spec is None or spec.loader is None:
        raise UsageError("cannot import the plugin", source=str(path), fix="give a .py file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        with user_code(f"loading the plugin {p.name}", str(p)):
            spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def split_plugins(argv: list[str]) -> tuple[list[str], list[str]]:
    """``--plugin FILE`` / ``--plugin=FILE`` anywhere in ``argv`` (before or after the command),
    and the remaining arguments."""
    plugins: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--plugin":
            if i + 1 >= len(argv):
                raise UsageError("--plugin needs a file", fix="e.g. --plugin myblocks.py")
            plugins.append(argv[i + 1])
            i += 2
            continue
        if arg.startswith("--plugin="):
            plugins.append(arg.split("=", 1)[1])
        else:
            rest.append(arg)
        i += 1
    return plugins, rest
