"""Validate a data set before training (``archlab check --data DATA``).

Each check returns a :class:`~archlab.diagnose.checks.CheckResult` with its evidence (counts,
example rows) and the fix. The splits are the ones ``archlab train`` would make with the same
``split``/``seed``/``stratify`` options, so that leakage between them is seen as training will:

* ``invalid_values``: NaN/Inf in the inputs (per feature) and in the targets;
* ``duplicates``: identical examples within the training split, and across splits (the same
  input in training and validation/test leaks: its score is memorised, not generalised);
  identical inputs with different labels are label conflicts;
* ``class_balance``: examples per class in each split (imbalance ratio, classes missing from a
  split);
* ``constant_features``: features that never vary (std 0) or nearly never (the near-zero-variance
  rule of Kuhn & Johnson, *Applied Predictive Modeling* 2013: most common value > 19x the second
  most common and at most 10 % distinct values); for images, pixels that never vary are
  reported but do not warn (image borders are often constant);
* ``outliers``: values further than 10 robust standard deviations (1.4826 x the median absolute
  deviation) from a feature's median, for tabular inputs and regression targets;
* ``example_grid`` (image data): a PNG grid of training examples, one row per class.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from .checks import CheckReport, CheckResult

OUTLIER_SIGMAS = 10.0


def load_unchecked(data):
    """The data set as ``archlab train`` reads it, without the checks that refuse NaN/Inf (they
    are reported here instead, with the rows)."""
    from ..train import data as D

    spec = D.DataSpec.of(data)
    if spec.source in D.LOADERS:
        out = D.LOADERS[spec.source](spec)
    else:
        path = Path(spec.source).expanduser()
        if not path.exists():
            return D.load_data(spec)   # raises the documented error
        out = D._load_path(path, spec)
    if spec.task and spec.task != out.task:
        out = D._retask(out, spec.task)
    return out


def check_data(data, *, split=(0.7, 0.2, 0.1), seed: int = 0, stratify: bool = True,
               grid: str | Path | None = None) -> CheckReport:
    """Run every data check on ``data`` (a built-in name, path or data spec). ``grid``: where
    to write the example grid of image data (default: no file)."""
    from ..train.prepare import make_splits

    d = load_unchecked(data)
    if len(d.x) == 0:
        from ..train.data import DataError

        raise DataError("the data set is empty", source=d.source,
                          fix="give a file with samples in it")
    report = CheckReport("-", d.source, d.task)
    x = d.x.reshape(len(d.x), -1).double()
    y = d.y
    report.checks.append(invalid_values(x, y))
    finite_rows = torch.isfinite(x).all(1)
    if y is not None and y.is_floating_point():
        finite_rows &= torch.isfinite(y.reshape(len(y), -1)).all(1)
    splits = make_splits(d, tuple(split), seed, stratify)
    parts = {"train": splits.train, "val": splits.val, "test": splits.test}
    report.checks.append(duplicates(x, y, parts))
    if d.task == "classification" and y is not None:
        report.checks.append(class_balance(y, parts, d.classes))
    image = len(d.sample_shape) == 3
    train_x = x[torch.as_tensor(splits.train, dtype=torch.int64)]
    report.checks.append(constant_features(train_x[finite_rows[torch.as_tensor(splits.train,
                                                                                dtype=torch.int64)]],
                                           image=image))
    if not image:
        report.checks.append(outliers(x, y if d.task == "regression" else None))
    if image and d.task == "classification" and grid is not None:
        report.checks.append(example_grid(d, splits.train, Path(grid)))
    return report


def invalid_values(x: torch.Tensor, y) -> CheckResult:
    bad_x = ~torch.isfinite(x)
    rows_x = torch.nonzero(bad_x.any(1)).flatten().tolist()
    feats = torch.nonzero(bad_x.any(0)).flatten().tolist()
    rows_y: list[int] = []
    if y is not None and y.is_floating_point():
        rows_y = torch.nonzero(~torch.isfinite(y.reshape(len(y), -1)).all(1)).flatten().tolist()
    if not rows_x and not rows_y:
        return CheckResult("invalid_values", "pass", f"no NaN/Inf in {x.numel()} input values"
                           + (" or the targets" if y is not None else ""), {})
    msg = []
    if rows_x:
        msg.append(f"{len(rows_x)} rows hold NaN/Inf inputs (features {feats[:6]})")
    if rows_y:
        msg.append(f"{len(rows_y)} rows hold NaN/Inf targets")
    return CheckResult("invalid_values", "fail", "; ".join(msg),
                       {"input_rows": rows_x[:20], "input_features": feats[:20],
                        "target_rows": rows_y[:20], "rows_counted_from": 0},
                       ["drop or impute these rows (median of the training split), or fix the "
                        "source file; archlab train refuses them"])


def _row_keys(x: torch.Tensor, y) -> tuple[list[bytes], list[bytes]]:
    xs = x.float().numpy()
    ys = None if y is None else y.reshape(len(y), -1).numpy()
    kx = [hashlib.blake2b(r.tobytes(), digest_size=12).digest() for r in xs]
    ky = kx if ys is None else [hashlib.blake2b(r.tobytes(), digest_size=8).digest() for r in ys]
    return kx, ky


def duplicates(x: torch.Tensor, y, parts: dict[str, np.ndarray]) -> CheckResult:
    kx, ky = _row_keys(x, y)
    where: dict[bytes, list[int]] = {}
    for i, k in enumerate(kx):
        where.setdefault(k, []).append(i)
    split_of = np.empty(len(kx), dtype=object)
    for name, idx in parts.items():
        split_of[np.asarray(idx, dtype=np.int64)] = name
    within: dict[str, int] = {name: 0 for name in parts}
    across: list[tuple[int, int]] = []
    conflicts: list[tuple[int, int]] = []
    for rows in where.values():
        if len(rows) < 2:
            continue
        first = rows[0]
        for r in rows[1:]:
            if split_of[r] == split_of[first]:
                within[split_of[r]] += 1
            else:
                across.append((first, r))
            if y is not None and ky[r] != ky[first]:
                conflicts.append((first, r))
    evidence = {"within_split": within, "across_splits": len(across),
                "across_examples": across[:10], "label_conflicts": len(conflicts),
                "conflict_examples": conflicts[:10]}
    if not across and not conflicts and not any(within.values()):
        return CheckResult("duplicates", "pass", f"no duplicate inputs among {len(kx)} examples",
                           evidence)
    status = "fail" if across or conflicts else "warn"
    msg = (f"{len(across)} inputs appear in more than one split (leakage), "
           f"{sum(within.values())} duplicates within splits, {len(conflicts)} identical inputs "
           "with different labels")
    fixes = []
    if across:
        fixes.append("deduplicate before splitting, or split by group (all copies in one split)")
    if conflicts:
        fixes.append("resolve conflicting labels (inspect the rows; relabel or drop)")
    if any(within.values()):
        fixes.append("drop exact duplicates, or keep them deliberately as sample weights")
    return CheckResult("duplicates", status, msg, evidence, fixes)


def class_balance(y: torch.Tensor, parts: dict[str, np.ndarray], classes) -> CheckResult:
    k = max(len(classes or ()), int(y.max()) + 1 if y.numel() else 0)
    table, missing, worst = {}, [], 1.0
    for name, idx in parts.items():
        if len(idx) == 0:
            continue
        counts = torch.bincount(y[torch.as_tensor(idx, dtype=torch.int64)].reshape(-1),
                                minlength=k).tolist()
        table[name] = counts
        missing += [f"{name}:{c}" for c, n in enumerate(counts) if n == 0]
        present = [n for n in counts if n > 0]
        worst = max(worst, max(present) / min(present)) if present else worst
    evidence = {"counts": table, "imbalance_ratio": worst, "missing": missing,
                "rule": "ratio of the largest to the smallest class <= 3; every class in every split"}
    if missing or worst > 3:
        return CheckResult("class_balance", "warn", f"classes are imbalanced: largest/smallest "
                           f"{worst:.1f}x" + (f"; missing from splits: {', '.join(missing[:6])}"
                                              if missing else ""), evidence,
                           ["weight the loss by inverse class frequency or oversample rare "
                            "classes; report balanced accuracy",
                            "stratify the split (archlab train does unless --no-stratify)"])
    return CheckResult("class_balance", "pass", f"{k} classes, largest/smallest {worst:.2f}x in "
                       "every split", evidence)


def constant_features(x: torch.Tensor, image: bool) -> CheckResult:
    if len(x) == 0:
        return CheckResult("constant_features", "pass", "no finite rows to inspect", {})
    std = x.std(0) if len(x) > 1 else torch.zeros(x.shape[1], dtype=x.dtype)
    constant = torch.nonzero(std == 0).flatten().tolist()
    near = []
    xs = x.numpy()
    for j in range(xs.shape[1]):
        if std[j] == 0:
            continue
        values, counts = np.unique(xs[:, j], return_counts=True)
        if len(values) < 2:
            continue
        top = np.sort(counts)[::-1]
        if top[0] > 19 * top[1] and len(values) <= 0.1 * len(xs):
            near.append(j)
    evidence = {"constant": constant[:50], "near_constant": near[:50], "features": int(x.shape[1]),
                "rule": "std 0; or most common value > 19x the second and <= 10% distinct values"}
    if not constant and not near:
        return CheckResult("constant_features", "pass", f"all {x.shape[1]} features vary", evidence)
    msg = f"{len(constant)} constant and {len(near)} near-constant of {x.shape[1]} features"
    if image:
        return CheckResult("constant_features", "pass", msg + " (pixels: borders are often "
                           "constant; per-pixel scaling must guard std 0)", evidence)
    return CheckResult("constant_features", "warn", msg, evidence,
                       ["drop constant features (they carry no information and give 0/0 when "
                        "standardised per feature)", "check near-constant ones: a rare value may "
                        "be a data-entry default"])


def outliers(x: torch.Tensor, y) -> CheckResult:
    def robust(a: torch.Tensor):
        a = a.reshape(len(a), -1)
        ok = torch.isfinite(a)
        med = torch.nanmedian(torch.where(ok, a, torch.nan), dim=0).values
        mad = torch.nanmedian((torch.where(ok, a, torch.nan) - med).abs(), dim=0).values
        scale = 1.4826 * mad
        z = torch.where(scale > 0, (a - med).abs() / torch.where(scale > 0, scale, 1.0),
                        torch.zeros_like(a))
        z = torch.where(ok, z, torch.zeros_like(z))
        return torch.nonzero((z > OUTLIER_SIGMAS).any(1)).flatten().tolist(), \
            torch.nonzero((z > OUTLIER_SIGMAS).any(0)).flatten().tolist()

    rows, feats = robust(x)
    trows = robust(y.double())[0] if y is not None and y.is_floating_point() else []
    evidence = {"input_rows": rows[:20], "input_features": feats[:20], "target_rows": trows[:20],
                "rule": f"|value - median| > {OUTLIER_SIGMAS:g} x 1.4826 MAD"}
    if not rows and not trows:
        return CheckResult("outliers", "pass", f"no value beyond {OUTLIER_SIGMAS:g} robust standard "
                           "deviations", evidence)
    return CheckResult("outliers", "warn", f"{len(rows)} rows with outlying inputs (features "
                       f"{feats[:6]}), {len(trows)} with outlying targets", evidence,
                       ["inspect these rows: entry errors (wrong units, sentinel values such as "
                        "-999) should be fixed or dropped", "for genuine heavy tails: a robust "
                        "loss (Huber) or a log transform"])


def example_grid(d, train_idx, path: Path, per_class: int = 8) -> CheckResult:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y = d.y[torch.as_tensor(train_idx, dtype=torch.int64)]
    x = d.x[torch.as_tensor(train_idx, dtype=torch.int64)]
    k = int(y.max()) + 1
    fig, axes = plt.subplots(k, per_class, figsize=(per_class * 0.8, k * 0.8), squeeze=False)
    for c in range(k):
        idx = torch.nonzero(y == c).flatten()[:per_class].tolist()
        for j in range(per_class):
            ax = axes[c][j]
            ax.axis("off")
            if j < len(idx):
                img = x[idx[j]].float()
                img = img[0] if img.shape[0] == 1 else img.permute(1, 2, 0)
                lo, hi = float(img.min()), float(img.max())
                ax.imshow(((img - lo) / (hi - lo if hi > lo else 1.0)).numpy(), cmap="gray")
        axes[c][0].set_title(str(d.classes[c]) if c < len(d.classes) else str(c), fontsize=6,
                             loc="left")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return CheckResult("example_grid", "pass", f"{per_class} training examples per class for "
                       f"{k} classes: {path}", {"path": str(path)},
                       ["look at it: wrong labels, rotated or inverted images, and classes that "
                        "differ only by background show up at a glance"])
