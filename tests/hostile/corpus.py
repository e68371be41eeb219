"""The hostile-input corpus: files a hostile or careless user could hand archlab, and the cases.

``build_files(root)`` writes every file the cases use under ``root`` (design texts from the case
tables, and binary or special files made here: FIFOs, damaged .npz, a decompression-bomb PNG,
user code that fails). ``load_cases(root)`` reads the case tables (cases.yaml: the part used
while fixing archlab; held_out.yaml: written from the same classes but run only at the end)
and fills in the paths. ``corrupt_run(folder, spec)`` damages a copy of a real run folder.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import yaml

HERE = Path(__file__).resolve().parent
TABLES = {"dev": HERE / "cases.yaml", "held": HERE / "held_out.yaml"}
# ``fix: GENERIC`` in a table: the message must carry advice worded with one of these (errors
# whose fix is specific to the case name the words they must contain instead)
GENERIC = ["e.g.", "did you mean", "write", "add ", "remove", "give", "use ", "check", "choose",
           "fix", "raise", "start", "save", "declare", "move", "train", "name", "rename", "list",
           "retrain", "delete", "put ", "set ", "such as", "store", "restore", "encode", "fill",
           "clean", "resize", "leave", "drop", "pass ", "end with", "make "]


def _png_header(width: int, height: int) -> bytes:
    """A PNG that claims width x height pixels (only the header: PIL checks the size at open)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _npz(path: Path, **arrays) -> None:
    with open(path, "wb") as f:
        np.savez(f, **arrays)


USER_CODE = {
    "raises.py": "import torch\n\ndef factory():\n    raise ValueError('my factory is broken')\n",
    "syntax.py": "import torch\n\ndef factory(:\n    return torch.nn.Linear(4, 2)\n",
    "importerr.py": "import torch\nimport no_such_module_xyz\n\ndef factory():\n"
                    "    return torch.nn.Linear(4, 2)\n",
    "needs_args.py": "import torch\n\ndef factory(width):\n    return torch.nn.Linear(4, width)\n",
    "returns_int.py": "def factory():\n    return 42\n",
    "forward_raises.py": "import torch\n\nclass Bad(torch.nn.Module):\n"
                         "    def __init__(self):\n        super().__init__()\n"
                         "        self.lin = torch.nn.Linear(4, 2)\n"
                         "    def forward(self, x):\n        raise RuntimeError('my forward is broken')\n\n"
                         "def factory():\n    return Bad()\n",
    "exits.py": "import sys\n\ndef factory():\n    sys.exit(3)\n",
    "raise_on_import.py": "raise KeyError('broken at import')\n",
    "zero_div.py": "import torch\n\ndef factory():\n    return torch.nn.Linear(4, 1 // 0)\n",
    "wrong_shape.py": "import torch\n\ndef factory():\n    return torch.nn.Linear(7, 2)\n",
    "recursion.py": "import torch\n\ndef factory():\n    return factory()\n",
    "layer_raises.py": "import torch\n\nclass Layer(torch.nn.Module):\n"
                       "    def __init__(self, n=4):\n        super().__init__()\n"
                       "        raise TypeError('my layer cannot be built')\n",
    "layer_forward_raises.py": "import torch\n\nclass Layer(torch.nn.Module):\n"
                               "    def forward(self, x):\n        return x.view(-1, 12345)\n",
}


def _data_files(d: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 1, 8, 8)).astype(np.float32)  # digits_mlp reads 1x8x8
    y = np.arange(60) % 3
    _npz(d / "good.npz", x=x, y=y)
    raw = (d / "good.npz").read_bytes()
    (d / "trunc.npz").write_bytes(raw[: len(raw) // 2])
    (d / "empty.npz").write_bytes(b"")
    (d / "garbage.npz").write_bytes(os.urandom(3000))
    _npz(d / "labels2d.npz", x=x, y=np.stack([y, y], axis=1))
    _npz(d / "label_huge.npz", x=x, y=np.where(y == 2, 2**40, y))
    _npz(d / "label_negative.npz", x=x, y=y - 1)
    _npz(d / "label_float.npz", x=x, y=y + 0.5)
    nan_x = x.copy()
    nan_x[5, 0, 3, 3] = np.nan
    _npz(d / "nan_x.npz", x=nan_x, y=y)
    inf_x = x.copy()
    inf_x[7, 0, 1, 1] = np.inf
    _npz(d / "inf_x.npz", x=inf_x, y=y)
    _npz(d / "nan_y_reg.npz", x=x, y=np.where(y == 1, np.nan, y.astype(np.float32)))
    _npz(d / "mismatch.npz", x=x, y=y[:30])
    _npz(d / "zero_rows.npz", x=x[:0], y=y[:0])
    _npz(d / "wrong_keys.npz", a=x, b=y)
    _npz(d / "object.npz", x=np.array([{"a": 1}] * 60, dtype=object), y=y)
    _npz(d / "one_row.npz", x=x[:1], y=y[:1])
    _npz(d / "x_scalar.npz", x=np.float32(3.0), y=y)
    _npz(d / "x_huge_dims.npz", x=np.zeros((60, 1, 1, 1, 1, 1, 1, 1), np.float32), y=y)
    np.save(d / "good_x.npy", x)
    np.save(d / "object.npy", np.array([{"a": 1}] * 4, dtype=object), allow_pickle=True)
    (d / "garbage.npy").write_bytes(b"\x93NUMPY" + os.urandom(200))
    np.save(d / "wrong_features.npy", rng.normal(size=(4, 5)).astype(np.float32))
    np.save(d / "good_x_small.npy", x[:4])
    np.save(d / "nan_input.npy", np.full((4, 1, 8, 8), np.nan, np.float32))
    header = ",".join(f"f{i}" for i in range(4)) + ",label\n"
    (d / "rows3.csv").write_text(header + "".join(f"{i},1,2,3,{i % 2}\n" for i in range(3)))
    (d / "text.csv").write_text(header + "".join(f"a{i},b,c,d,{i % 2}\n" for i in range(30)))
    (d / "nan.csv").write_text(header + "".join(
        f"{'nan' if i == 4 else i},1,2,3,{i % 2}\n" for i in range(30)))
    (d / "ragged.csv").write_text(header + "".join(f"{i},1,{i % 2}\n" for i in range(30)))
    (d / "header_only.csv").write_text(header)
    (d / "binary.csv").write_bytes(os.urandom(2000))
    imgs = d / "images"
    for cls in ("cat", "dog"):
        (imgs / cls).mkdir(parents=True, exist_ok=True)
        (imgs / cls / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    bombs = d / "bombs"
    (bombs / "a").mkdir(parents=True, exist_ok=True)
    (bombs / "b").mkdir(parents=True, exist_ok=True)
    (bombs / "a" / "bomb.png").write_bytes(_png_header(20000, 20000))
    (bombs / "b" / "bomb.png").write_bytes(_png_header(20000, 20000))
    (d / "bomb.png").write_bytes(_png_header(20000, 20000))
    (d / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(100))
    (d / "emptydir").mkdir(exist_ok=True)


def _resource_files(d: Path) -> None:
    laughs = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 10):
        laughs.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]")
    (d / "laughs.yaml").write_text("variables:\n" + "".join(f"  {line}\n" for line in laughs)
                                   + "input: [8]\nlayers:\n  - {block: linear, out: 4}\n")
    (d / "deep_yaml.yaml").write_text("input: [8]\nlayers: " + "[" * 100_000 + "]" * 100_000 + "\n")
    (d / "deep_map.yaml").write_text("input: [8]\nnotes: " + "{a: " * 20_000 + "1" + "}" * 20_000
                                     + "\nlayers:\n  - {block: linear, out: 4}\n")
    (d / "cyclic.yaml").write_text("input: [8]\nlayers: &l\n  - {block: linear, out: 4}\n  - *l\n")
    with open(d / "huge.yaml", "w") as f:  # larger than the default file_bytes limit
        f.write("input: [8]\nlayers:\n  - {block: linear, out: 4}\n")
        line = "# " + "x" * 1022 + "\n"
        for _ in range(17 * 1024):
            f.write(line)
    (d / "many_layers.yaml").write_text("input: [8]\nlayers:\n" + "  - {block: linear, out: 4}\n"
                                        * 30_000)
    (d / "long_string.yaml").write_text("input: [8]\nnotes: " + "x" * 200_000
                                        + "\nlayers:\n  - {block: linear, out: 4}\n")
    (d / "many_values.yaml").write_text("input: [8]\nnotes: [" + ", ".join(["1"] * 300_000)
                                        + "]\nlayers:\n  - {block: linear, out: 4}\n")
    (d / "not_utf8.yaml").write_bytes(b"input: [8]\nname: \xff\xfe\xfa\nlayers: []\n")
    (d / "nul.yaml").write_bytes(b"input: [8]\x00\nlayers:\n  - {block: linear, out: 4}\n")
    (d / "unreadable.yaml").write_text("input: [8]\nlayers:\n  - {block: linear, out: 4}\n")
    os.chmod(d / "unreadable.yaml", 0)
    for name in ("pipe.yaml", "pipe.npz", "pipe.csv", "pipe.npy", "pipe.py"):
        if not (d / name).exists():
            os.mkfifo(d / name)
    (d / "a_file").write_text("I am a file, not a folder\n")


def build_files(root: Path, tables: dict) -> None:
    """Write every file the cases use into ``root`` (``tables``: the loaded case tables)."""
    d = root / "files"
    d.mkdir(parents=True, exist_ok=True)
    for table in tables.values():
        for name, text in (table.get("files") or {}).items():
            (d / name).parent.mkdir(parents=True, exist_ok=True)
            (d / name).write_text(text)
    for name, text in USER_CODE.items():
        (d / name).write_text(text)
    _data_files(d)
    _resource_files(d)


def read_tables() -> dict:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the tables are large: C if there
    return {part: yaml.load(path.read_text(), Loader=loader) for part, path in TABLES.items()
            if path.exists()}


def load_cases(root: Path, tables: dict) -> list[dict]:
    """Every case with ``{f}`` (the files folder) filled in and its part ('dev' or 'held')."""
    files = str(root / "files")
    cases = []
    for part, table in tables.items():
        for case in table["cases"]:
            case = dict(case)
            case["part"] = part
            case["argv"] = [str(a).replace("{f}", files) for a in case["argv"]]
            case["where"] = str(case.get("where", "")).replace("{f}", files)
            fixes = case["fix"] if isinstance(case["fix"], list) else [case["fix"]]
            case["fix"] = [w for f in fixes for w in (GENERIC if f == "GENERIC" else [f])]
            cases.append(case)
    ids = [c["id"] for c in cases]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    assert not duplicates, f"duplicate case ids: {duplicates}"
    return cases


class Hostile:
    """An object only a pickle loader would build: a checkpoint holding it must be refused."""


def corrupt_run(folder: Path, spec: dict) -> None:
    """Damage a copy of a run folder: ``{file, action}`` with action garbage, truncate, empty,
    delete, text (``text`` given), pickle (a pickled object where a checkpoint belongs), or
    wrong_tensors (a valid safetensors file with other tensors)."""
    path = folder / spec["file"]
    action = spec["action"]
    if action == "garbage":
        path.write_bytes(os.urandom(max(64, path.stat().st_size if path.exists() else 64)))
    elif action == "truncate":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif action == "empty":
        path.write_bytes(b"")
    elif action == "delete":
        if path.is_dir():
            import shutil

            shutil.rmtree(path)
        else:
            path.unlink()
    elif action == "text":
        path.write_text(spec["text"])
    elif action == "json":
        data = json.loads(path.read_text())
        data.update(spec["update"])
        path.write_text(json.dumps(data))
    elif action == "pickle":
        import torch

        torch.save({"state_dict": {}, "payload": Hostile()}, path)
    elif action == "wrong_tensors":
        import torch
        from safetensors.torch import save_file

        save_file({"nothing.weight": torch.zeros(3, 3)}, str(path))
    elif action == "fifo":
        path.unlink()
        os.mkfifo(path)
    else:
        raise ValueError(f"unknown corruption {action}")
