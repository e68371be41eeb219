"""Checkpoints that are safe to load, written atomically, and that know their design (C11, C15).

* :class:`SafeCheckpointIO` is Lightning's checkpoint plugin for archlab runs: it writes the
  trainer state (weights, optimiser moments, schedule, loop counters: tensors and plain values
  only) to a temporary file in the same folder and renames it over the old one with
  ``os.replace``, so a run killed mid-write leaves the previous checkpoint intact. It reads with
  ``torch.load(weights_only=True)``: a checkpoint cannot run code.
* :meth:`SafeCheckpointIO.save_in_background` (archlab's own loop uses it for ``best.ckpt``
  and ``last.ckpt``) writes the temporary file on the training thread, at the end of the epoch
  it belongs to, and leaves only the rename to a :class:`BackgroundWriter` thread: on ext4 the
  rename over the previous file is most of a checkpoint's cost (it starts writing the new
  file's data back, 1-15 ms here), and it needs no Python while it waits. Renames run in the
  order handed in; the run waits for them before it ends, before it reads a checkpoint and on
  errors; a failed one stops the run with :class:`CheckpointError`, never silently.
* :func:`torch_save_bytes` makes the bytes ``torch.save`` writes (the same file, byte for
  byte) with a leaner storage test in the pickler, in memory, and the file gets them in one
  write.
* Final weights are also exported as ``model.safetensors`` with the design in its metadata.
* Loading weights into a design that changed reports, per node, what was added, removed or
  reshaped, instead of PyTorch's raw state_dict error, and offers partial loading.
* Transfer: load the weights whose node path and shape match; freeze nodes by path pattern.
"""

from __future__ import annotations

import collections
import contextlib
import fnmatch
import io
import os
import pickle
import tempfile
import types
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import CheckpointIO
from torch import nn

from ..errors import ArchlabError

WEIGHTS_FILE = "model.safetensors"


class CheckpointError(ArchlabError):
    """A checkpoint is missing, unreadable, or does not fit the design it is loaded into."""


class SafeCheckpointIO(CheckpointIO):
    """Atomic, pickle-free checkpoint files for Lightning (``Trainer(plugins=[SafeCheckpointIO()])``).

    ``save_checkpoint`` publishes before it returns, as Lightning expects of a CheckpointIO.
    :meth:`save_in_background` writes the temporary file and hands its rename to a
    :class:`BackgroundWriter` (archlab's loop does, for the run's own checkpoints); every save,
    read, removal and :meth:`teardown` first waits for the renames handed in before it.

    The cadence of the run's own checkpoints (archlab's loop): :meth:`save_deferred` collects
    an epoch's checkpoints and :meth:`end_epoch` writes them when ``interval`` seconds have
    passed since the last write (0: every epoch), at the run's last epoch, or keeps an exact
    copy of them in memory (:func:`snapshot`) until then. The copies of finished epochs are
    written (:meth:`publish_kept`) before any read or removal through this object, at
    :meth:`teardown` (the run's end, an error, Ctrl-C), and replaced by newer ones of the same
    file; a write always carries the files in the order of their latest save (``best.ckpt``
    before ``last.ckpt``), so the files on disk always belong together."""

    def __init__(self, interval: float = 0.0, clock: Callable[[], float] | None = None) -> None:
        import time

        self.writer = BackgroundWriter()
        self.interval = float(interval)
        self.clock = clock or time.monotonic
        self._last_write = self.clock()
        self._epoch: dict[Path, dict] = {}  # saved at this epoch's end, not yet written (live state)
        self._kept: dict[Path, dict] = {}   # copies of finished epochs' checkpoints, not yet written

    def restart_clock(self) -> None:
        """The interval counts from now (the start of training)."""
        self._last_write = self.clock()

    def save_deferred(self, checkpoint: dict[str, Any], path, fresh: tuple[str, ...] = ()) -> None:
        """A checkpoint of the epoch that is ending: written or kept by :meth:`end_epoch`.
        ``fresh``: top-level keys whose values were made for this checkpoint alone and are
        never changed (archlab's loop counters): a kept copy shares them."""
        path = Path(path)
        self._epoch.pop(path, None)  # re-saved: it moves to the end of the order
        self._epoch[path] = (checkpoint, fresh)

    def end_epoch(self, final: bool = False) -> bool:
        """The epoch's checkpoints are all saved: write them with the kept ones if ``interval``
        seconds have passed since the last write (or ``final``), else keep exact copies.
        Returns whether they were written."""
        due = final or self.interval <= 0 or self.clock() - self._last_write >= self.interval
        if not due:
            kept = dict(self._kept)
            for path, (checkpoint, fresh) in self._epoch.items():
                kept.pop(path, None)
                kept[path] = snapshot(checkpoint, fresh)
            self._kept, self._epoch = kept, {}
            return False
        pending = dict(self._kept)
        for path, (checkpoint, _) in self._epoch.items():
            pending.pop(path, None)
            pending[path] = checkpoint
        self._kept, self._epoch = {}, {}
        self._write_all(pending)
        return True

    def publish_kept(self) -> None:
        """Write the kept copies of finished epochs now; checkpoints of an epoch whose end did
        not finish (an error or Ctrl-C inside it) are dropped, so the files stay together."""
        self._epoch = {}
        if self._kept:
            pending, self._kept = self._kept, {}
            self._write_all(pending)

    @property
    def kept(self) -> list[Path]:
        """The files whose latest checkpoint is held in memory, not yet written."""
        return list(self._kept)

    def _write_all(self, pending: dict[Path, dict]) -> None:
        with self.writer.held():  # the renames start once every file is written
            for path, checkpoint in pending.items():
                self.save_in_background(checkpoint, path)
        self._last_write = self.clock()

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        self.writer.flush()  # in the order handed in: never under a write still queued
        atomic_torch_save(checkpoint, Path(path))

    def save_in_background(self, checkpoint: dict[str, Any], path) -> None:
        """Write the checkpoint to a temporary file now (the state as it is: no copy needed) and
        rename it over ``path`` in the writer thread. Until the rename, ``path`` holds the
        previous checkpoint, whole."""
        path = Path(path)
        self.writer.raise_failures()  # a rename that failed stops the run before more work
        tmp = write_temporary(checkpoint, path)
        try:
            self.writer.submit(publish_or_discard, tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def flush(self) -> None:
        """Wait for the background writes; raise :class:`CheckpointError` if one failed."""
        self.writer.flush()

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict[str, Any]:
        self.publish_kept()
        self.writer.flush()
        return read_checkpoint(Path(path), map_location=map_location)

    def remove_checkpoint(self, path) -> None:
        self._kept.pop(Path(path), None)
        self._epoch.pop(Path(path), None)
        self.publish_kept()
        self.writer.flush()
        Path(path).unlink(missing_ok=True)

    def teardown(self) -> None:
        try:
            self.publish_kept()
        finally:
            self.writer.close()


class BackgroundWriter:
    """One thread that runs file writes in the order they are handed in (Lightning's
    ``AsyncCheckpointIO`` idea, with the failures kept).

    * :meth:`submit` first re-raises an earlier failure, and waits while ``max_pending`` jobs
      are still queued or running (bounded when the disk is slower than training);
    * jobs submitted inside :meth:`held` start together when the block ends: the loop holds the
      renames of an epoch until both of its files are written, because a rename over a file
      locks its folder while ext4 starts the write-back (4-7 ms here), and creating the next
      temporary file in that folder would wait for it;
    * :meth:`flush` waits for every job handed in and raises :class:`CheckpointError` naming
      the file and the cause if one failed (each failure is reported once);
    * the thread starts with the first job and ends with :meth:`close` (or at interpreter exit,
      after its queue is done). A killed process leaves at worst a finished temporary file that
      was not renamed yet: the checkpoint itself is the previous one, whole.
    """

    def __init__(self, max_pending: int = 2) -> None:
        self.max_pending = max_pending
        self._pending: deque = deque()  # (future, path), oldest first
        self._executor = None
        self._held: list | None = None

    @contextlib.contextmanager
    def held(self):
        """Start the jobs submitted inside when the block ends (also when it raises: the files
        handed in are whole)."""
        if self._held is not None:  # nested: the outer block starts them
            yield
            return
        self._held = []
        try:
            yield
        finally:
            jobs, self._held = self._held, None
            for job in jobs:
                self._start(*job)

    def submit(self, fn: Callable[..., None], obj: Any, path: Path) -> None:
        """Run ``fn(obj, path)`` in the writer thread, after the jobs handed in before it."""
        if self._held is not None:
            self._held.append((fn, obj, path))
            return
        self._start(fn, obj, path)

    def _start(self, fn: Callable[..., None], obj: Any, path: Path) -> None:
        self._raise_failures(wait_for=len(self._pending) - self.max_pending + 1)
        if self._executor is None:
            from concurrent.futures import ThreadPoolExecutor

            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="archlab-checkpoint")
        self._pending.append((self._executor.submit(fn, obj, path), path))

    def raise_failures(self) -> None:
        """Raise :class:`CheckpointError` if a finished job failed (waits for none)."""
        self._raise_failures(wait_for=0)

    @property
    def pending(self) -> int:
        return sum(not f.done() for f, _ in self._pending) + len(self._held or ())

    def flush(self) -> None:
        """Wait for every job handed in, held ones included (they start now)."""
        if self._held:
            jobs, self._held = self._held, []
            for job in jobs:
                self._start(*job)
        self._raise_failures(wait_for=len(self._pending))

    def close(self) -> None:
        try:
            self.flush()
        finally:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None

    def _raise_failures(self, wait_for: int) -> None:
        """Wait for the oldest ``wait_for`` writes, drop the finished ones, raise the first failure."""
        failed = None
        kept: deque = deque()
        for i, (future, path) in enumerate(self._pending):
            if i < wait_for:
                future.exception()  # waits; a failure is read below
            if future.done():
                exc = future.exception()
                if exc is not None and failed is None:
                    failed = (exc, path)
            else:
                kept.append((future, path))
        self._pending = kept
        if failed is not None:
            exc, path = failed
            raise CheckpointError(
                f"writing the checkpoint failed in the background writer ({type(exc).__name__}: "
                f"{str(exc)[:200]}); the file holds the checkpoint written before it, if any",
                source=str(path),
                fix="free disk space or make the run folder writable, then continue the run with "
                    "`archlab train --resume RUN`") from exc


def snapshot(obj: Any, fresh: tuple[str, ...] = ()) -> Any:
    """An exact copy of a checkpoint that later training does not change, so that it can be
    written later: dicts, lists, tuples and OrderedDicts are copied (an object met twice is
    copied once, as the pickler writes it once), every tensor's storage is copied once (views
    and tensors sharing a storage share the copy, at the same offsets and strides) and
    immutable values are shared. A checkpoint holding anything else (another type, a tensor
    with gradients, hooks, Python attributes, conjugate or negative bits, not on the CPU) is
    serialised now instead (:class:`Serialised`). Either way the file written later is the
    one written now: ``torch_save_bytes(snapshot(c)) == torch_save_bytes(c)``. ``fresh``: keys
    of a top-level dict whose values are shared, not copied (made for this checkpoint alone
    and never changed)."""
    try:
        if fresh and type(obj) is dict:
            copier = _Snapshot()
            return {k: v if k in fresh else copier.copy(v) for k, v in obj.items()}
        return _Snapshot().copy(obj)
    except _NotPlain:
        return Serialised(torch_save_bytes(obj))


@dataclass(frozen=True)
class Serialised:
    """A checkpoint already serialised: :func:`write_checkpoint_to` writes these bytes."""

    data: bytes


class _NotPlain(Exception):
    pass


_IMMUTABLE = frozenset({int, float, complex, str, bytes, bool, type(None), torch.dtype,
                        torch.device, torch.Size})


class _Snapshot:
    def __init__(self) -> None:
        self.storages: dict[int, Any] = {}  # a storage (torch.save's key of it) -> its copy
        self.copies: dict[int, tuple] = {}  # id(original) -> (original, copy)

    def copy(self, obj: Any) -> Any:
        t = type(obj)
        if t in _IMMUTABLE:
            return obj
        done = self.copies.get(id(obj))
        if done is not None:
            return done[1]
        if t is dict:
            out = {k: self.copy(v) for k, v in obj.items()}
        elif t is list:
            out = [self.copy(v) for v in obj]
        elif t is tuple:
            items = tuple(self.copy(v) for v in obj)
            out = obj if all(a is b for a, b in zip(items, obj, strict=True)) else items
        elif t is collections.OrderedDict:
            out = collections.OrderedDict((k, self.copy(v)) for k, v in obj.items())
            # a state_dict's _metadata (layer versions) is pickled with it
            out.__dict__.update({k: self.copy(v) for k, v in obj.__dict__.items()})
        elif t is torch.Tensor and self._plain(obj):
            out = self._tensor(obj)
        else:
            raise _NotPlain
        self.copies[id(obj)] = (obj, out)  # the original kept alive: its id stays its own
        return out

    @staticmethod
    def _plain(x: torch.Tensor) -> bool:
        return (x.layout == torch.strided and x.device.type == "cpu" and not x.requires_grad
                and not x.is_conj() and not x.is_neg() and not x.is_quantized
                and not x.__dict__ and x._backward_hooks is None)

    def _tensor(self, x: torch.Tensor) -> torch.Tensor:
        storage = x.untyped_storage()
        key = storage._cdata  # torch.save's own key of a storage: one copy per storage it writes
        new = self.storages.get(key)
        if new is None:
            new = self.storages[key] = storage.clone()
        return torch.empty((), dtype=x.dtype).set_(new, x.storage_offset(), x.size(), x.stride())


def atomic_torch_save(obj: Any, path: Path) -> None:
    """Write ``obj`` with torch.save so that ``path`` holds either the old or the new file."""
    publish_or_discard(write_temporary(obj, path), path)


def write_temporary(obj: Any, path: Path) -> str:
    """``obj`` written with torch.save to a new temporary file beside ``path``, with the mode
    of the umask; returns its name (removed again if the write fails)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # No fsync: the rename alone means a killed run (Ctrl-C, SIGKILL, out of memory) leaves
        # the previous checkpoint whole, which is the failure that happens; fsync only adds
        # safety against the machine itself losing power, and costs 7-25 ms a write here, two
        # writes every epoch: more than a whole epoch of a small model.
        with os.fdopen(fd, "wb") as fh:
            write_checkpoint_to(fh, obj)
        os.chmod(tmp, 0o666 & ~current_umask())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


class _LeanPickler(pickle.Pickler):
    """The pickler ``torch.save`` subclasses (``pickle_module=``), with its storage test made
    cheap. The C pickler asks ``persistent_id`` about every object it writes (about 740 for the
    ``last.ckpt`` of a small Adam model: Lightning's loop counters, the callbacks' state, the
    param groups), and torch answers through two Python calls and two ``isinstance`` tests
    each. Here an object whose type is one of the usual containers, scalars or tensors (never
    a storage) is answered None at one set lookup; anything else gets torch's own function, so
    the file is the same, byte for byte. Tensors are reduced by torch's own
    ``Tensor.__reduce_ex__``."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        full = type(self).persistent_id.__get__(self)  # torch.save's subclass method
        if full is None:
            return
        skip = _NOT_STORAGES

        def persistent_id(obj):
            return None if type(obj) in skip else full(obj)

        # the C pickler's own slot (an instance attribute would shadow nothing it reads)
        _PICKLER_PERSISTENT_ID.__set__(self, persistent_id)


_PICKLER_PERSISTENT_ID = pickle.Pickler.__dict__.get("persistent_id")
_NOT_STORAGES = frozenset({dict, list, tuple, set, frozenset, int, float, complex, str, bytes, bool,
                           type(None), collections.OrderedDict, torch.Tensor, torch.nn.Parameter,
                           torch.dtype, torch.device, torch.Size, type, types.FunctionType,
                           types.BuiltinFunctionType})


class _LeanPickle:
    """A ``pickle_module`` for ``torch.save``: the standard module with :class:`_LeanPickler`."""

    Pickler = _LeanPickler
    __name__ = "pickle"

    def __getattr__(self, name: str):
        return getattr(pickle, name)


def torch_save_bytes(obj: Any) -> bytes:
    """What ``torch.save(obj, buffer)`` writes, byte for byte, with :class:`_LeanPickler`
    (torch's own pickler where this Python's C pickler lacks the ``persistent_id`` slot, and
    a replaced ``torch.save``, a test's or a user's hook, is called as it is). Into memory, so that the file gets it in one ``write`` instead of a
    Python write call per zip record."""
    buffer = io.BytesIO()
    if torch.save is _TORCH_SAVE and _PICKLER_PERSISTENT_ID is not None \
            and hasattr(_PICKLER_PERSISTENT_ID, "__set__"):
        _TORCH_SAVE(obj, buffer, pickle_module=_LEAN_PICKLE)
    else:
        torch.save(obj, buffer)
    return buffer.getvalue()


_LEAN_PICKLE = _LeanPickle()
_TORCH_SAVE = torch.save


def write_checkpoint_to(fh, obj: Any) -> None:
    """``torch.save(obj, fh)``'s bytes, in one write (:func:`torch_save_bytes`); a
    :class:`Serialised` checkpoint's bytes as they are."""
    fh.write(obj.data if type(obj) is Serialised else torch_save_bytes(obj))


def publish_or_discard(tmp: str, path: Path) -> None:
    """Rename a finished temporary file over ``path``; remove it if the rename fails."""
    try:
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def publish(tmp: str | os.PathLike, path: Path) -> None:
    """Move a finished temporary file into place with the permissions a plain ``open()`` would
    have given it (``0o666`` less the umask): ``mkstemp`` creates files readable by the owner
    only, and run files must not differ in mode depending on which writer made them."""
    os.chmod(tmp, 0o666 & ~current_umask())
    os.replace(tmp, path)


def current_umask() -> int:
    mask = os.umask(0o022)  # the only way to read it is to set it: put it straight back
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_checkpoint(path: Path, map_location=None) -> dict[str, Any]:
    if not path.exists():
        raise CheckpointError("checkpoint not found", source=str(path))
    from ..limits import check_regular_file

    check_regular_file(path, "checkpoint", limit=None)
    try:
        ckpt = torch.load(path, map_location=map_location or "cpu", weights_only=True)
    except Exception as exc:  # unpickling refused or a truncated file
        # PyTorch's own message advises turning weights_only off: never quote that advice
        import pickle
        import re

        found = re.search(r"Unsupported (?:global: GLOBAL [\w.]+|operand \S+)", str(exc))
        if isinstance(exc, pickle.UnpicklingError) and found:
            what = (f"the checkpoint holds pickled Python objects ({found.group(0).strip()}), "
                    "which archlab refuses to load: unpickling them could run code")
        else:
            what = (f"unreadable checkpoint ({type(exc).__name__}): the file is damaged, "
                    "truncated or not a PyTorch checkpoint")
        raise CheckpointError(what, source=str(path),
                              fix="archlab reads tensors and plain values only; use the run's "
                                  "model.safetensors, or train the run again") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"the checkpoint holds a {type(ckpt).__name__}, expected a mapping "
                              "of tensors", source=str(path),
                              fix="give a checkpoint written by archlab or Lightning")
    return ckpt


def save_weights(model: nn.Module, path: Path, metadata: dict[str, str] | None = None) -> None:
    """Weights as safetensors (atomic), with string metadata such as the resolved design."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(state, tmp, metadata=metadata or {})
        publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_weights(source: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A state dict from a run folder, a ``.safetensors`` file or a Lightning ``.ckpt``."""
    path = Path(source)
    if path.is_dir() and (path / "config.yaml").exists() and not (path / WEIGHTS_FILE).exists():
        return run_weights(path)  # a run folder whose weights file is missing: say what is used
    if path.is_dir():
        # a run folder, or a folder written by `archlab build` / `archlab weights import`
        for candidate in (path / WEIGHTS_FILE, path / "checkpoints" / "last.ckpt",
                          path / "weights.safetensors"):
            if candidate.exists():
                path = candidate
                break
        else:
            raise CheckpointError(f"no {WEIGHTS_FILE}, checkpoints/last.ckpt or weights.safetensors "
                                  "in the folder", source=str(source),
                                  fix="give a finished run, a folder from `archlab build` or "
                                      "`archlab weights import`, or a weights file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        if not path.exists():
            raise CheckpointError("weights file not found", source=str(path),
                                  fix="train the run again, or give another weights file")
        from ..limits import check_regular_file

        check_regular_file(path, "weights file", limit=None)
        try:
            return load_file(str(path))
        except Exception as exc:  # safetensors' errors: a damaged, truncated or empty file
            raise CheckpointError(f"unreadable weights file ({type(exc).__name__}: "
                                  f"{str(exc)[:120]}): damaged, truncated or not safetensors",
                                  source=str(path),
                                  fix="train the run again, or restore the file from a copy") from None
    ckpt = read_checkpoint(path)
    state = ckpt.get("state_dict", ckpt)
    # DesignModule keeps the network as `self.model`: drop that prefix to get the network's names
    return {k.removeprefix("model."): v for k, v in state.items() if isinstance(v, torch.Tensor)}


def run_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    """The kept weights of a run folder whose ``model.safetensors`` is missing, from the
    checkpoint that holds the same weights, with a warning naming the missing file and the one
    used: ``checkpoints/best.ckpt`` when the run has a validation split (the kept weights are the
    best epoch's), ``checkpoints/last.ckpt`` when it has none (the last epoch's). The
    checkpoint's epoch must be the one ``summary.json`` names; otherwise (or when the run never
    finished) a :class:`CheckpointError` says which file is missing and how to get it back."""
    import json
    import warnings

    run_dir = Path(run_dir)
    missing = run_dir / WEIGHTS_FILE
    summary_file = run_dir / "summary.json"
    if not summary_file.exists():
        raise CheckpointError(f"the run folder has no {WEIGHTS_FILE}: the run did not finish "
                              "(it is written at the end, with summary.json)", source=str(missing),
                              fix=f"finish the run with `archlab train --resume {run_dir}`")
    try:
        summary = json.loads(summary_file.read_text(encoding="utf-8"))
        has_val = int(json.loads((run_dir / "data.json").read_text(encoding="utf-8"))["splits"]["val"]) > 0
    except Exception:
        summary, has_val = None, None
    if not isinstance(summary, dict) or has_val is None:
        raise CheckpointError(f"{WEIGHTS_FILE} is missing (deleted?), and summary.json or data.json "
                              "cannot say which checkpoint holds the same weights", source=str(missing),
                              fix="restore model.safetensors from a copy of the run, or train the run again")
    name, epoch, what = (("best.ckpt", summary.get("best_epoch"), "the best epoch's") if has_val else
                         ("last.ckpt", int(summary.get("epochs_run", 0)) - 1, "the last epoch's"))
    ckpt_path = run_dir / "checkpoints" / name
    ckpt = read_checkpoint(ckpt_path) if ckpt_path.exists() else {}
    if not ckpt or epoch is None or ckpt.get("epoch") != epoch:
        found = "is missing too" if not ckpt else f"holds epoch {ckpt.get('epoch')}, not {epoch}"
        raise CheckpointError(f"{WEIGHTS_FILE} is missing (deleted?), and checkpoints/{name}, which "
                              f"would hold the same weights, {found}", source=str(missing),
                              fix="restore model.safetensors from a copy of the run, or train the run again")
    warnings.warn(f"{missing} is missing (deleted?); using checkpoints/{name} instead, which holds "
                  f"the same weights ({what}, epoch {epoch}). Restore {WEIGHTS_FILE} from a copy of "
                  "the run to silence this warning.", stacklevel=3)
    state = ckpt.get("state_dict", ckpt)
    return {k.removeprefix("model."): v for k, v in state.items() if isinstance(v, torch.Tensor)}


# --------------------------------------------------------------------- comparing states ------


@dataclass
class StateDiff:
    """How a checkpoint's tensors compare with a model's, by node path."""

    matched: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)       # in the design, not in the checkpoint
    removed: list[str] = field(default_factory=list)     # in the checkpoint, not in the design
    reshaped: list[tuple[str, tuple, tuple]] = field(default_factory=list)  # (name, ckpt, model)
    node_of: dict[str, str] = field(default_factory=dict)

    @property
    def exact(self) -> bool:
        return not (self.added or self.removed or self.reshaped)

    def nodes(self, names: Iterable[str]) -> list[str]:
        return sorted({self.node_of.get(n, n) for n in names})

    def describe(self) -> str:
        parts = []
        if self.added:
            parts.append(f"nodes added (not in the checkpoint): {', '.join(self.nodes(self.added))}")
        if self.removed:
            parts.append(f"nodes removed (only in the checkpoint): {', '.join(self.nodes(self.removed))}")
        if self.reshaped:
            parts.append("reshaped: " + ", ".join(
                f"{n} checkpoint {tuple(a)} vs design {tuple(b)}" for n, a, b in self.reshaped))
        return "; ".join(parts)

    def to_json(self) -> dict:
        return {"matched": len(self.matched), "added": self.nodes(self.added),
                "removed": self.nodes(self.removed),
                "reshaped": [{"tensor": n, "checkpoint": list(a), "design": list(b)}
                             for n, a, b in self.reshaped]}


def node_path_of(name: str, node_paths: Iterable[str]) -> str:
    """The node a tensor belongs to: the longest node path that prefixes its name."""
    best = ""
    for p in node_paths:
        if (name == p or name.startswith(p + ".")) and len(p) > len(best):
            best = p
    return best or name.rpartition(".")[0] or name


def compare_state(model_state: dict[str, torch.Tensor], ckpt_state: dict[str, torch.Tensor],
                  node_paths: Iterable[str] = ()) -> StateDiff:
    node_paths = list(node_paths)
    diff = StateDiff()
    for name, tensor in model_state.items():
        diff.node_of[name] = node_path_of(name, node_paths)
        if name not in ckpt_state:
            diff.added.append(name)
        elif tuple(ckpt_state[name].shape) != tuple(tensor.shape):
            diff.reshaped.append((name, tuple(ckpt_state[name].shape), tuple(tensor.shape)))
        else:
            diff.matched.append(name)
    for name in ckpt_state:
        if name not in model_state:
            diff.node_of[name] = node_path_of(name, node_paths)
            diff.removed.append(name)
    return diff


def load_matching(model: nn.Module, ckpt_state: dict[str, torch.Tensor], *, partial: bool = False,
                  node_paths: Iterable[str] = (), source: str | None = None) -> StateDiff:
    """Copy the checkpoint's tensors into ``model``.

    Exact match: load all. Otherwise raise :class:`CheckpointError` saying which nodes were added,
    removed or reshaped, unless ``partial``: then load the tensors whose name and shape match and
    leave the rest as initialised. Returns the comparison.
    """
    diff = compare_state(model.state_dict(), ckpt_state, node_paths)
    if not diff.exact and not partial:
        raise CheckpointError(
            f"the checkpoint does not fit the design: {diff.describe()}", source=source,
            fix=f"load the {len(diff.matched)} matching tensors with partial loading "
                "(Run.model(design, partial=True), or archlab train --init-from RUN) and train the rest")
    if not diff.matched and ckpt_state:
        raise CheckpointError("no tensor of the checkpoint matches the design by node path and shape",
                              source=source, fix="check that the checkpoint comes from a related design")
    with torch.no_grad():
        own = model.state_dict()
        for name in diff.matched:
            own[name].copy_(ckpt_state[name])
    return diff


def freeze(model: nn.Module, patterns: Iterable[str], node_paths: Iterable[str] = ()) -> list[str]:
    """Stop gradients for parameters whose node path (or full name) matches a glob pattern.

    ``freeze(model, ['stem*', 'layer1.*'])`` keeps the stem and stage 1 fixed (C15: "freeze most
    of the model's parameters and retrain the last few layers"). Returns the frozen names.
    """
    node_paths = list(node_paths)
    patterns = list(patterns)
    frozen: list[str] = []
    used = dict.fromkeys(patterns, False)
    for name, param in model.named_parameters():
        node = node_path_of(name, node_paths)
        for pat in patterns:
            if fnmatch.fnmatchcase(node, pat) or fnmatch.fnmatchcase(name, pat):
                param.requires_grad_(False)
                frozen.append(name)
                used[pat] = True
                break
    unused = [p for p, hit in used.items() if not hit]
    if unused:
        nodes = sorted({node_path_of(n, node_paths) for n, _ in model.named_parameters()})
        raise CheckpointError(f"freeze pattern(s) {', '.join(unused)} match no node",
                              fix=f"node paths with weights: {', '.join(nodes[:20])}")
    return frozen


def frozen_norm_modules(model: nn.Module) -> list[nn.Module]:
    """Norm layers whose parameters are all frozen: they must also stop updating running
    statistics, or a 'frozen' stage would still drift with the new data."""
    out = []
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            params = list(module.parameters())
            if params and not any(p.requires_grad for p in params):
                out.append(module)
    return out
