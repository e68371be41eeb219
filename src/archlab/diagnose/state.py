"""What the health monitor has measured so far, in one place the detectors read.

Per-step figures (the loss) are kept for every training step; per-layer figures only for the
sampled steps. Per-layer series are rows of one float per layer, ``nan`` where a figure does not
apply (no gradient, no activation of that kind, no optimizer step on that sample).

On disk (a run's ``health/`` folder), never pickle:

* ``events.jsonl``: one verdict per line (see :class:`archlab.diagnose.detectors.Verdict`);
* ``series.npz``: the per-layer series as float arrays ``(samples, layers)`` plus the names;
* ``loss.csv``: ``step,loss`` for every step; ``validation.csv``: one row per validation epoch;
* ``context.json``: what the rules compare with: the declared loss reference, the target
  statistics seen on sampled steps, learning rates, clipping, batch-norm batch sizes.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# Per-layer series over parameter layers (modules that own parameters) ...
PARAM_SERIES = ("grad_norm", "weight_norm", "update_ratio")
# ... and over activation layers (modules whose output we watch: activations and weight layers).
ACT_SERIES = ("act_mean", "act_std", "dead_fraction", "saturation")
FORMAT_VERSION = 1


@dataclass
class HealthState:
    """Measurements of one training run (see the module docstring for the file layout)."""

    param_layers: list[str] = field(default_factory=list)   # forward order once known
    act_layers: list[str] = field(default_factory=list)
    act_kinds: dict[str, str] = field(default_factory=dict)  # layer -> 'relu', 'sigmoid', ...
    frozen: dict[str, bool] = field(default_factory=dict)    # layer -> all params requires_grad=False
    losses: list[float] = field(default_factory=list)        # one per training step
    sample_steps: list[int] = field(default_factory=list)
    series: dict[str, list[list[float]]] = field(
        default_factory=lambda: {k: [] for k in PARAM_SERIES + ACT_SERIES})
    input_stats: list[tuple[float, float]] = field(default_factory=list)  # (mean, std) per sample
    linear_chain: list[list[str]] = field(default_factory=list)  # [weight layers] if affine, else []
    affine: dict = field(default_factory=dict)   # the affine test's evidence (structure.affine_test)
    output_is_probability: list[bool] = field(default_factory=list)  # rows in [0,1] summing to 1
    output_in_unit_range: list[bool] = field(default_factory=list)   # every output in [0, 1]
    output_width: int = 0                 # features of the model's output (N, F)
    # what the loss rules compare with (see archlab.diagnose.baselines): declared by the
    # training code ({'classes', 'label_entropy', 'target_variance', 'loss'}) ...
    reference: dict = field(default_factory=dict)
    # ... and the targets seen on sampled steps: {'kind': 'classes', 'counts': [...],
    # 'batch_classes': [distinct classes per sampled batch], 'integer': bool} or {'kind':
    # 'values', 'n', 'sum', 'sumsq', 'absmax', 'matches_output': bool}
    targets: dict = field(default_factory=dict)
    lr: list[float] = field(default_factory=list)        # optimizer's largest lr per sample (nan: unknown)
    initial_lr: float = math.nan
    clip: dict = field(default_factory=dict)             # {'value', 'algorithm'} when known
    optimizer_params: dict[str, bool] = field(default_factory=dict)  # layer -> in the optimizer
    # the optimizer's settings when known: {'type': class name, 'momentum', 'dampening',
    # 'nesterov', 'betas', 'eps', 'weight_decay' (of the group with the largest lr), 'groups'}
    optimizer_settings: dict = field(default_factory=dict)
    # modules that add noise only in training mode (dropout with p > 0, drop-path, recurrent or
    # attention dropout), found by attach: layer -> rate; None when not known (a hand-written
    # F.dropout call is not visible here)
    train_mode_noise: dict | None = None
    # layer -> norm of a default initialisation of its shapes (structure.init_scale): the scale
    # below which an update-to-weight ratio means nothing (the weights are ~0)
    init_scale: dict[str, float] = field(default_factory=dict)
    # layer -> norm of its weights at attach, biases left out (as in init_scale): the first
    # sample's weight norm holds the biases too
    init_weight_norm: dict[str, float] = field(default_factory=dict)
    # {'initial': layers whose units all started identical, 'still': those still identical at
    # 'step'} (structure.identical_units); empty when no layer started so
    symmetry: dict = field(default_factory=dict)
    output_op: list[str] = field(default_factory=list)   # the op that made the output, per sample
    bounded_output: dict = field(default_factory=dict)   # the output-bound probe's evidence
    norm_batch: list[dict[str, int]] = field(default_factory=list)  # BN layer -> batch size
    nonfinite: dict | None = None        # where NaN/Inf first appeared
    # {step, epoch, train_loss, val_loss, val_size (examples in the validation pass, None: unknown)}
    validation: list[dict] = field(default_factory=list)
    every: list[int] = field(default_factory=list)          # sampling interval at each sample
    # per sample: whether the gradients were read before an optimizer step (False: no
    # before_optimizer_step on that sample), and whether backward reached the loss after it
    # was recorded (True: seen; None: unknown, e.g. a loss recorded after its backward)
    grad_read: list[bool] = field(default_factory=list)
    backward_seen: list[bool | None] = field(default_factory=list)
    # the label probe (classification): per evaluation {'step', 'n', 'classes', 'fitted',
    # 'per_class_fitted', 'contradicted' (probe indices), 'predicted' (their predicted
    # classes), 'confidence_contradicted', 'confidence_fitted', 'labels' (the probe's labels,
    # one list shared by every evaluation), 'all_predicted' and 'all_confidence' (every probe
    # example's predicted class and top-class probability)} (see detectors_labels)
    label_probe: list[dict] = field(default_factory=list)
    # the regulariser part of the training loss, as the training code reports it (the data
    # term is the recorded loss minus it): {'steps': [...], 'values': [...], 'degree': k (the
    # penalty's degree of homogeneity in the weights: 1 for L1, 2 for L2), 'what': text};
    # empty when nothing is reported (see record_penalty)
    penalty: dict = field(default_factory=dict)
    monitor_seconds: float = 0.0
    detector_seconds: float = 0.0   # the part of monitor_seconds spent in the detectors
    train_seconds: float = 0.0

    # ------------------------------------------------------------------ reading helpers ----
    @property
    def step(self) -> int:
        """Index of the last training step seen (-1 before the first)."""
        return len(self.losses) - 1

    def array(self, name: str, last: int | None = None) -> np.ndarray:
        """A per-layer series as ``(samples, layers)`` floats (read-only); ``last`` keeps the
        newest rows. Every detector reads these on every sample, so the rows live in a buffer
        of doubling capacity: a new sample's row is copied in once, and a call that finds no
        new row is a few attribute reads (a new list, or changed layers, start it again)."""
        rows = self.series[name]
        width = len(self.param_layers) if name in PARAM_SERIES else len(self.act_layers)
        caches = self.__dict__.setdefault("_array_cache", {})
        entry = caches.get(name)
        if entry is None or entry[0] is not rows or entry[2] > len(rows) or entry[1].shape[1] != width:
            entry = caches[name] = [rows, np.zeros((max(8, len(rows)), width)), 0, None]
        rows_of, buf, n, view = entry
        if n < len(rows):
            more = rows[n:]
            entry[1] = buf = grow_rows(buf, n, len(rows))
            buf[n:len(rows)] = [r if len(r) == width else r + [math.nan] * (width - len(r))
                                for r in more]
            entry[2] = n = len(rows)
            view = None
        if view is None:
            view = buf[:n]
            view.flags.writeable = False
            entry[3] = view
        return view if last is None else view[max(0, n - last):]

    def loss_array(self) -> np.ndarray:
        """All losses as a read-only array: the data term of each step, the recorded loss less
        the penalty the training code reported for that step (:meth:`record_penalty`; the
        know-nothing reference is the data term's, and a penalty's share is judged apart by
        the regularisation rule); the recorded losses themselves when none is reported."""
        raw = self._raw_loss_array()
        pen = self.penalty
        if not pen or not pen.get("steps"):
            return raw
        # incremental, as the raw buffer: new losses are copied in once and each reported
        # penalty is subtracted once, when its step's loss is there (a later one waits)
        entry = self.__dict__.get("_data_cache")
        n = raw.shape[0]
        if entry is None or entry[0] is not self.losses or entry[1] > n or entry[4] is not pen["steps"]:
            entry = self.__dict__["_data_cache"] = [self.losses, 0, 0, np.zeros(max(64, n)),
                                                    pen["steps"], None]
        _, done, applied, buf, steps, _ = entry
        if done < n or applied < len(steps):
            entry[3] = buf = grow_rows(buf, done, n)
            buf[done:n] = raw[done:n]
            entry[1] = n
            values = pen["values"]
            while applied < len(steps) and applied < len(values):
                s = int(steps[applied])
                if s >= n:
                    break
                if s >= 0:
                    buf[s] -= float(values[applied])
                applied += 1
            entry[2] = applied
            view = buf[:n]
            view.flags.writeable = False
            entry[5] = view
        return entry[5]

    def raw_loss_array(self) -> np.ndarray:
        """The recorded losses (penalty included) as a read-only array."""
        return self._raw_loss_array()

    def _raw_loss_array(self) -> np.ndarray:
        """All recorded losses as a read-only array; in a buffer of doubling capacity, as
        detectors read it every sample (each loss is copied in once)."""
        losses = self.losses
        entry = self.__dict__.get("_loss_cache")
        if entry is None or entry[0] is not losses or entry[2] > len(losses):
            entry = self.__dict__["_loss_cache"] = [losses, np.zeros(max(64, len(losses))), 0, None]
        _, buf, n, view = entry
        if n < len(losses):
            if len(losses) > buf.shape[0]:
                grown = np.zeros(max(2 * buf.shape[0], len(losses)))
                grown[:n] = buf[:n]
                entry[1] = buf = grown
            buf[n:len(losses)] = losses[n:]
            entry[2] = n = len(losses)
            view = None
        if view is None:
            view = buf[:n]
            view.flags.writeable = False
            entry[3] = view
        return view

    # -------------------------------------------- incremental statistics for the detectors --
    # Exact: each equals the numpy expression in its docstring on the whole series, but a row
    # (a sample) is reduced once, when it is first read, not again on every later sample.
    def row_norms(self, name: str) -> np.ndarray:
        """Per sample, the norm over the layers of a per-layer series, nan ignored (a row of
        nan gives 0): ``np.sqrt(np.nansum(state.array(name) ** 2, axis=1))``; for
        ``grad_norm``, the total gradient norm of each sample."""
        return self._per_row("norms", name, lambda a: np.sqrt(np.nansum(a ** 2, axis=1)))

    def row_medians(self, name: str) -> np.ndarray:
        """Per sample, the median over the layers of the finite values of a per-layer series
        (nan where none is finite): ``[np.median(r[np.isfinite(r)]) for r in rows]``."""
        def medians(a):
            out = np.full(a.shape[0], math.nan)
            for i, r in enumerate(a):
                f = r[np.isfinite(r)]
                if f.size:
                    out[i] = np.median(f)
            return out
        return self._per_row("medians", name, medians)

    def _per_row(self, what: str, name: str, reduce) -> np.ndarray:
        a = self.array(name)
        caches = self.__dict__.setdefault("_row_cache", {})
        of, width, done = caches.get((what, name), (None, None, None))
        if of is not self.series[name] or width != a.shape[1] or done.shape[0] > a.shape[0]:
            done = np.zeros(0)
        if done.shape[0] < a.shape[0]:
            done = np.concatenate([done, reduce(a[done.shape[0]:])])
            done.flags.writeable = False
        caches[(what, name)] = (self.series[name], a.shape[1], done)
        return done

    def loss_median(self, start: int, stop: int, finite: bool = True) -> float:
        """The median of ``losses[start:stop]`` (its finite values with ``finite``; nan when
        none): ``np.median(part[np.isfinite(part)])``. A window that ends at or before the
        latest loss never changes, so each is computed once (running baselines and first-loss
        references ask for the same windows on every sample and from several rules)."""
        n = len(self.losses)
        start, stop, _ = slice(start, stop).indices(n)
        key = (start, stop, finite)
        memo = self.__dict__.setdefault("_median_cache", {})
        pen = len((self.penalty or {}).get("steps", ()))
        if memo.get("_of") is not self.losses or memo.get("_n", 0) > n or memo.get("_pen", 0) != pen:
            memo.clear()   # (a penalty reported late changes the data term of its step)
            memo["_of"] = self.losses
        memo["_n"] = n
        memo["_pen"] = pen
        if key in memo:
            return memo[key]
        part = self.loss_array()[start:stop]
        if finite:
            part = part[np.isfinite(part)]
        value = float(np.median(part)) if part.size else math.nan
        if len(memo) > 256:   # old windows are not asked for again
            memo.clear()
            memo.update({"_of": self.losses, "_n": n, "_pen": pen})
        memo[key] = value
        return value

    def per_sample(self, key, compute):
        """``compute()`` once per state of the run (the step, the samples and the validation
        passes seen), shared by the rules that ask for the same thing on one sample (an
        evidence dictionary two rules read, a reference). The result must not be modified."""
        version = (len(self.losses), len(self.sample_steps), len(self.validation),
                   id(self.losses), id(self.sample_steps))
        memo = self.__dict__.get("_per_sample")
        if memo is None or memo[0] != version:
            memo = self.__dict__["_per_sample"] = (version, {})
        if key not in memo[1]:
            memo[1][key] = compute()
        return memo[1][key]

    def record_penalty(self, value, degree: float = 2, what: str = "", step: int | None = None) -> None:
        """Record the penalty part of this step's training loss (``value``: a float or a 0-d
        tensor, the regulariser term already added to the loss the recorder saw, such as
        ``l1 * sum |w|`` or ``l2 * sum w^2``); ``degree``: how the term grows with the weights
        (1 for L1, 2 for L2: scaling every weight by s scales the term by s^degree); ``step``:
        the training step it belongs to (default: the latest recorded loss's). The regularisation
        rule reads the share of the loss that is penalty (detectors_regularisation, (e))."""
        if not (isinstance(degree, (int, float)) and degree > 0):
            raise ValueError(f"record_penalty: degree must be a number > 0 (1 for L1, 2 for L2), "
                             f"got {degree!r}; pass degree=1 for an L1 term, 2 for an L2 term")
        v = float(value.detach()) if hasattr(value, "detach") else float(value)
        p = self.penalty
        if not p:
            p.update({"steps": [], "values": [], "degree": float(degree), "what": str(what)})
        elif float(degree) != p["degree"]:
            raise ValueError(f"record_penalty: degree {degree!r} differs from the {p['degree']:g} "
                             "recorded before; report one penalty per run (add the terms of "
                             "one degree together)")
        p["steps"].append(len(self.losses) - 1 if step is None else int(step))
        p["values"].append(v)

    # ---------------------------------------------------------------------- files ----------
    def save(self, folder: str | Path) -> Path:
        """Write ``series.npz``, ``loss.csv`` and ``validation.csv`` under ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        arrays = {name: self.array(name) for name in PARAM_SERIES + ACT_SERIES}
        np.savez(
            folder / "series.npz",
            format_version=np.array(FORMAT_VERSION),
            sample_steps=np.asarray(self.sample_steps, dtype=np.int64),
            every=np.asarray(self.every, dtype=np.int64),
            param_layers=np.asarray(self.param_layers, dtype=str),
            act_layers=np.asarray(self.act_layers, dtype=str),
            act_kinds=np.asarray([self.act_kinds.get(a, "") for a in self.act_layers], dtype=str),
            input_stats=np.asarray(self.input_stats, dtype=np.float64).reshape(-1, 2),
            monitor_seconds=np.array(self.monitor_seconds),
            train_seconds=np.array(self.train_seconds),
            **arrays,
        )
        with open(folder / "loss.csv", "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["step", "loss"])
            writer.writerows(enumerate(self.losses))
        with open(folder / "validation.csv", "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["step", "epoch", "train_loss", "val_loss", "val_size"])
            for row in self.validation:
                size = row.get("val_size")
                writer.writerow([row["step"], row["epoch"], row["train_loss"], row["val_loss"],
                                 "" if size is None else int(size)])
        if self.nonfinite is not None:
            (folder / "nonfinite.json").write_text(json.dumps(self.nonfinite, indent=2))
        (folder / "context.json").write_text(json.dumps(_plain({
            "reference": self.reference, "targets": self.targets, "output_width": self.output_width,
            "lr": self.lr, "initial_lr": self.initial_lr, "clip": self.clip,
            "optimizer_params": self.optimizer_params, "norm_batch": self.norm_batch,
            "optimizer_settings": self.optimizer_settings,
            "train_mode_noise": self.train_mode_noise,
            "init_scale": self.init_scale, "init_weight_norm": self.init_weight_norm,
            "symmetry": self.symmetry, "output_op": self.output_op,
            "bounded_output": self.bounded_output,
            "output_is_probability": self.output_is_probability,
            "output_in_unit_range": self.output_in_unit_range,
            "linear_chain": self.linear_chain, "affine": self.affine,
            "grad_read": self.grad_read, "backward_seen": self.backward_seen,
            "label_probe": self.label_probe, "penalty": self.penalty}), indent=2))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> HealthState:
        """Read back what :meth:`save` wrote (``allow_pickle=False``: the files cannot run code)."""
        folder = Path(folder)
        state = cls()
        with np.load(folder / "series.npz", allow_pickle=False) as z:
            state.param_layers = [str(s) for s in z["param_layers"]]
            state.act_layers = [str(s) for s in z["act_layers"]]
            state.act_kinds = {a: str(k) for a, k in zip(state.act_layers, z["act_kinds"], strict=False) if k}
            state.sample_steps = [int(s) for s in z["sample_steps"]]
            state.every = [int(s) for s in z["every"]]
            state.input_stats = [tuple(r) for r in z["input_stats"].tolist()]
            state.monitor_seconds = float(z["monitor_seconds"])
            state.train_seconds = float(z["train_seconds"])
            for name in PARAM_SERIES + ACT_SERIES:
                state.series[name] = z[name].tolist()
        with open(folder / "loss.csv", newline="") as fh:
            state.losses = [float(r["loss"]) for r in csv.DictReader(fh)]
        path = folder / "validation.csv"
        if path.exists():
            with open(path, newline="") as fh:
                state.validation = [
                    {"step": int(r["step"]), "epoch": int(r["epoch"]),
                     "train_loss": float(r["train_loss"]), "val_loss": float(r["val_loss"]),
                     "val_size": int(r["val_size"]) if r.get("val_size") else None}
                    for r in csv.DictReader(fh)]
        path = folder / "nonfinite.json"
        if path.exists():
            state.nonfinite = json.loads(path.read_text())
        path = folder / "context.json"
        if path.exists():
            ctx = json.loads(path.read_text())
            for key in ("reference", "targets", "output_width", "clip", "optimizer_params",
                        "optimizer_settings", "train_mode_noise",
                        "symmetry", "output_op", "bounded_output",
                        "norm_batch", "output_is_probability", "output_in_unit_range",
                        "linear_chain", "affine", "grad_read", "backward_seen", "label_probe",
                        "penalty"):
                if key in ctx:
                    setattr(state, key, ctx[key])
            state.init_scale = {k: float(v) for k, v in ctx.get("init_scale", {}).items()}
            state.init_weight_norm = {k: float(v) for k, v in ctx.get("init_weight_norm", {}).items()}
            state.lr = [float(v) for v in ctx.get("lr", [])]
            state.initial_lr = float(ctx.get("initial_lr", math.nan))
        return state


def grow_rows(buf: np.ndarray, done: int, need: int) -> np.ndarray:
    """``buf`` when it has room for ``need`` rows; otherwise a buffer of doubling capacity (the
    same dtype and row shape) holding its first ``done`` rows. The monitor's series and the
    rules' incremental arrays keep their rows this way: each row is copied in once."""
    if need <= buf.shape[0]:
        return buf
    bigger = np.zeros((max(2 * buf.shape[0], need), *buf.shape[1:]), dtype=buf.dtype)
    bigger[:done] = buf[:done]
    return bigger


def _plain(value):
    """JSON-safe: non-finite floats become the strings 'nan'/'inf' (float() reads them back)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return v if math.isfinite(v) else str(v)
    if isinstance(value, np.integer):
        return int(value)
    return value


def read_events(folder: str | Path) -> list[dict]:
    """The verdicts saved in ``folder/events.jsonl`` (empty when the file does not exist)."""
    path = Path(folder) / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
