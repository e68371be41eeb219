"""The health monitor's recorded state must not change when its cost does: six fixed seeded
set-ups, their HealthState (series.npz, loss.csv, validation.csv, context.json) and events
dumped to a folder, and two dumps compared (equal, or equal to float rounding).

Usage: ``python benchmarks/monitor_cost_equality.py dump FOLDER`` then, after a change,
``python benchmarks/monitor_cost_equality.py dump FOLDER2`` and
``python benchmarks/monitor_cost_equality.py compare FOLDER FOLDER2``.
Set-ups: mnist_cnn on mnist5k and digits_mlp on digits through ``archlab.train`` (archlab's
loop and the HealthMonitor callback); a GRU classifier, an MLP with dropout and a faulty MLP
(too high a learning rate, sigmoids, a frozen layer: verdicts to compare) driven by a
hand-written loop on HealthRecorder; a small network in ``lightning.Trainer`` with HealthMonitor.
Threads are set to 1 (the figures are then the same in every run). Timings are not compared.

``python benchmarks/monitor_cost_equality.py suite FOLDER [--seeds N] [--suites main,fresh3,fresh4]``
(main, fresh, fresh2 .. fresh6)
runs the fault suites' set-ups (archlab.diagnose.fault_catalogue and the fresh catalogues, each
on its own user path) and writes, per run, the verdicts with their steps, messages and full
evidence (every HealthRecorder's events, captured at ``finish``), the symptoms, the steps and the
validation score to ``FOLDER/<suite>.json``; ``compare`` compares those files too, and says how
many runs are identical to the last digit and how many only to float rounding.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import re
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

SKIP_KEYS = {"monitor_seconds", "train_seconds"}


def _manual(folder: Path, model, x, y, steps: int, loss_fn) -> None:
    from archlab.diagnose import HealthRecorder

    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    rec = HealthRecorder()
    rec.attach(model, opt)
    rec.set_reference(classes=int(y.max()) + 1, loss="cross_entropy")
    g = torch.Generator().manual_seed(1)
    for step in range(steps):
        idx = torch.randint(0, len(x), (32,), generator=g)
        xb, yb = x[idx], y[idx]
        rec.begin_step(targets=yb)
        loss = loss_fn(model(xb), yb)
        rec.after_loss(loss, lambda xb=xb: model(xb))
        opt.zero_grad()
        loss.backward()
        rec.before_optimizer_step()
        opt.step()
        rec.end_step()
        if step % 100 == 99:
            with torch.no_grad():
                model.eval()
                v = float(loss_fn(model(x[:200]), y[:200]))
                model.train()
            rec.validation(v, step // 100, val_size=200)
    rec.finish(folder)


class GRUNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(6, 16, batch_first=True)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


def setup_rnn(folder: Path) -> None:
    torch.manual_seed(0)
    x = torch.randn(512, 10, 6)
    y = (x[:, :, 0].sum(1) > 0).long() + 2 * (x[:, -1, 1] > 0).long()
    _manual(folder, GRUNet(), x, y, 300, nn.functional.cross_entropy)


def setup_dropout(folder: Path) -> None:
    torch.manual_seed(0)
    x = torch.randn(1024, 20)
    y = (x[:, :3].sum(1) > 0).long() + (x[:, 3] > 1).long()
    model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Dropout(0.3), nn.Linear(64, 64),
                          nn.Tanh(), nn.Dropout(0.2), nn.Linear(64, 3))
    _manual(folder, model, x, y, 400, nn.functional.cross_entropy)


def setup_faulty(folder: Path) -> None:
    """Faults the detectors name (a too-high learning rate, saturating sigmoids, a frozen
    layer), so that the verdicts and their steps are compared, not only the series."""
    torch.manual_seed(0)
    x = torch.randn(1024, 16) * 3
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    model = nn.Sequential(nn.Linear(16, 48), nn.Sigmoid(), nn.Linear(48, 48), nn.ReLU(),
                          nn.Linear(48, 48), nn.Sigmoid(), nn.Linear(48, 3))
    model[2].weight.requires_grad_(False)
    from archlab.diagnose import HealthRecorder

    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=3.0)
    rec = HealthRecorder()
    rec.attach(model, opt)
    g = torch.Generator().manual_seed(1)
    for _ in range(300):
        idx = torch.randint(0, len(x), (32,), generator=g)
        xb, yb = x[idx], y[idx]
        rec.begin_step(targets=yb)
        loss = nn.functional.cross_entropy(model(xb), yb)
        if not rec.after_loss(loss, lambda xb=xb: model(xb)):
            break
        opt.zero_grad()
        loss.backward()
        rec.before_optimizer_step()
        opt.step()
        rec.end_step()
    rec.finish(folder)


def setup_lightning(folder: Path) -> None:
    import lightning.pytorch as pl

    from archlab.diagnose import HealthMonitor

    torch.manual_seed(0)
    x = torch.randn(1024, 12)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()

    class Mod(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(12, 32), nn.BatchNorm1d(32), nn.ReLU(),
                                     nn.Linear(32, 16), nn.Sigmoid(), nn.Linear(16, 3))

        def training_step(self, batch, i):
            return nn.functional.cross_entropy(self.net(batch[0]), batch[1])

        def validation_step(self, batch, i):
            self.log("val_loss", nn.functional.cross_entropy(self.net(batch[0]), batch[1]))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)

    ds = torch.utils.data.TensorDataset(x, y)
    train = torch.utils.data.DataLoader(ds, batch_size=32, shuffle=True,
                                        generator=torch.Generator().manual_seed(2))
    val = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x[:256], y[:256]), batch_size=64)
    trainer = pl.Trainer(max_epochs=3, callbacks=[HealthMonitor(folder)], logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0,
                         default_root_dir=str(folder.parent / "lightning_root"), accelerator="cpu")
    trainer.fit(Mod(), train, val)


def setup_archlab(design: str, data: str, epochs: int):
    def run(folder: Path) -> None:
        import archlab

        with contextlib.redirect_stderr(io.StringIO()):
            r = archlab.train(design, data, epochs=epochs, batch=64, seed=0,
                              out=str(folder.parent / f"run_{design}"), health=True)
        shutil.copytree(r.health_dir, folder, dirs_exist_ok=True)
    return run


SETUPS = {"mnist_cnn": setup_archlab("mnist_cnn", "mnist5k", 2),
          "digits_mlp": setup_archlab("digits_mlp", "digits", 3),
          "gru": setup_rnn, "dropout_mlp": setup_dropout, "faulty": setup_faulty, "lightning": setup_lightning}


def dump(out: Path) -> None:
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    for name, fn in SETUPS.items():
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        with contextlib.redirect_stdout(io.StringIO()):
            fn(folder)
        print(name, "dumped", flush=True)


def _close(a, b, where: str, bad: list) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            bad.append(f"{where}: keys {sorted(set(a) ^ set(b))}")
        for k in set(a) & set(b):
            _close(a[k], b[k], f"{where}.{k}", bad)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            bad.append(f"{where}: length {len(a)} != {len(b)}")
        for i, (u, v) in enumerate(zip(a, b, strict=False)):
            _close(u, v, f"{where}[{i}]", bad)
    elif isinstance(a, float) or isinstance(b, float):
        try:
            fa, fb = float(a), float(b)
        except (TypeError, ValueError):
            bad.append(f"{where}: {a!r} != {b!r}")
            return
        if not (fa == fb or (math.isnan(fa) and math.isnan(fb))
                or math.isclose(fa, fb, rel_tol=1e-5, abs_tol=1e-7)):
            bad.append(f"{where}: {a!r} != {b!r}")
    elif a != b:
        bad.append(f"{where}: {a!r} != {b!r}")


def compare(a: Path, b: Path) -> int:
    failures = 0
    for name in SETUPS:
        bad: list[str] = []
        fa, fb = a / name, b / name
        with np.load(fa / "series.npz") as za, np.load(fb / "series.npz") as zb:
            if set(za.files) != set(zb.files):
                bad.append(f"series.npz keys {set(za.files) ^ set(zb.files)}")
            for k in set(za.files) & set(zb.files):
                if k in SKIP_KEYS:
                    continue
                u, v = za[k], zb[k]
                if u.shape != v.shape:
                    bad.append(f"{k}: shape {u.shape} != {v.shape}")
                elif u.dtype.kind == "f":
                    if not np.allclose(u, v, rtol=1e-5, atol=1e-7, equal_nan=True):
                        bad.append(f"{k}: max diff {np.nanmax(np.abs(u - v))}")
                elif not np.array_equal(u, v):
                    bad.append(f"{k}: differs")
        for f in ("loss.csv", "validation.csv"):
            ra = [r.split(",") for r in (fa / f).read_text().splitlines()]
            rb = [r.split(",") for r in (fb / f).read_text().splitlines()]
            _close([[_num(x) for x in r] for r in ra], [[_num(x) for x in r] for r in rb], f, bad)
        _close(json.loads((fa / "context.json").read_text()),
               json.loads((fb / "context.json").read_text()), "context", bad)
        ea = [json.loads(x) for x in (fa / "events.jsonl").read_text().splitlines() if x.strip()]
        eb = [json.loads(x) for x in (fb / "events.jsonl").read_text().splitlines() if x.strip()]
        _close(ea, eb, "events", bad)
        for f in ("nonfinite.json",):
            if (fa / f).exists() != (fb / f).exists():
                bad.append(f"{f}: present in one only")
        print(f"{name}: {'same' if not bad else 'DIFFERENT'}  ({len(ea)} events: "
              f"{', '.join(sorted({e.get('detector', '?') + '@' + str(e.get('step')) for e in ea}))})")
        for line in bad[:15]:
            print("   ", line)
        failures += bool(bad)
    return failures


def _num(x: str):
    try:
        return float(x)
    except ValueError:
        return x


SUITES = {"main": None, "fresh": "fault_catalogue_fresh", "fresh2": "fault_catalogue_fresh2",
          "fresh3": "fault_catalogue_fresh3", "fresh4": "fault_catalogue_fresh4",
          "fresh5": "fault_catalogue_fresh5", "fresh6": "fault_catalogue_fresh6"}


def suite(out: Path, seeds: int, names: list[str]) -> None:
    """Every set-up of each suite in ``names``, ``seeds`` seeds, its verdicts in full."""
    import importlib
    import time

    from archlab.diagnose import HealthRecorder

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    captured: list[list[dict]] = []
    finish = HealthRecorder.finish

    def keep(self, folder):   # every recorder's events, with their evidence, at its end
        finish(self, folder)
        captured.append([v.to_dict() for v in self.events])

    HealthRecorder.finish = keep
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        if SUITES[name] is None:
            from archlab.diagnose.fault_catalogue import SETUPS as chosen
            from archlab.diagnose.faults import run_setup as run
        else:
            module = importlib.import_module(f"archlab.diagnose.{SUITES[name]}")
            chosen, run = module.SETUPS, getattr(module, f"run_{name}")
        runs, t0 = {}, time.perf_counter()
        for s in chosen:
            for seed in range(seeds):
                before = len(captured)
                with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                    r = run(s, seed)
                runs[f"{s.name}/{seed}"] = {
                    "fired": r.fired, "messages": r.messages, "symptoms": r.symptoms,
                    "steps": r.steps, "score": r.score, "events": captured[before:]}
        (out / f"{name}.json").write_text(json.dumps(runs, indent=1, default=str))
        print(f"{name}: {len(runs)} runs in {time.perf_counter() - t0:.0f}s", flush=True)


def compare_suites(a: Path, b: Path) -> int:
    failures = 0
    for fa in sorted(a.glob("*.json")):
        fb = b / fa.name
        if not fb.exists():
            continue
        # a run's temporary folder is named at random: not part of what is compared
        tmp = re.compile(r"/tmp/archlab-[A-Za-z0-9_-]+?/|/tmp/tmp[A-Za-z0-9_]+/")
        ra, rb = (json.loads(tmp.sub("/TMP/", f.read_text())) for f in (fa, fb))
        bad: list[str] = []
        if set(ra) != set(rb):
            bad.append(f"runs {sorted(set(ra) ^ set(rb))[:5]}")
        exact = sum(ra[k] == rb[k] for k in set(ra) & set(rb))
        for k in sorted(set(ra) & set(rb)):
            _close(ra[k], rb[k], k, bad)
        verdicts = sum(len(r["fired"]) for r in ra.values())
        print(f"suite {fa.stem}: {len(ra)} runs, {verdicts} verdicts: "
              f"{'same' if not bad else 'DIFFERENT'}; identical to the last digit: {exact}/{len(ra)}")
        for line in bad[:15]:
            print("   ", line)
        failures += bool(bad)
    return failures


if __name__ == "__main__":
    if sys.argv[1] == "dump":
        dump(Path(sys.argv[2]))
    elif sys.argv[1] == "suite":
        import argparse

        ap = argparse.ArgumentParser()
        ap.add_argument("folder")
        ap.add_argument("--seeds", type=int, default=1)
        ap.add_argument("--suites", default="main,fresh3,fresh4")
        args = ap.parse_args(sys.argv[2:])
        suite(Path(args.folder), args.seeds, args.suites.split(","))
    else:
        a, b = Path(sys.argv[2]), Path(sys.argv[3])
        failed = compare(a, b) if (a / next(iter(SETUPS))).exists() else 0
        sys.exit(failed + compare_suites(a, b))
