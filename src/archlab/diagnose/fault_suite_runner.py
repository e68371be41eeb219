"""The running code of the blind fault suites (``fault_catalogue_fresh4`` on), written once.

Each blind suite used to carry its own copy of this code (from ``hurt`` to ``measure_hurt``),
the previous suite's copy renamed and extended by the user bugs the new suite injects. This
module is the union of those copies; a suite gives only what is its own in a
:class:`SuiteRunner`: its name, data (``prepare``, ``archlab_data``, ``CLASSES``), its set-ups
and measured ``HURT`` table, its seeds, the ``archlab.train`` options it passes on and the
layers its ``freeze`` knob counts. The bugs a set-up's ``train`` dict switches on are read here
(``bug``: ``no_zero_grad``, ``zero_grad_after_backward``, ``eval_mode``, ``copy_params``,
``step_every``, ``sum_reduction``, ``squeeze_target``, ``nll_sign``; and ``head_only``,
``adamw_wd``, ``eps``/``betas``, ``schedule``, ``clip``, ``clip_value``, ``l2_in_loss``,
``freeze``, ``val_size``); a suite that sets none of a knob runs as its own copy did without it
(checked on each suite's set-ups: fresh4's plain and Lightning models have no parameter with
``requires_grad`` off, so the gradient-only parameter list is its whole list; no suite's model
is built in eval mode; no earlier suite sets a later suite's bug, ``eps``/``betas`` or warm-up).

Users: fault_catalogue_fresh4 .. fresh7 (2026-12-03, session 8). Moving them here changed no
run, proven on copies of the tree before and after (fresh4 on commit 9e28791, fresh5-fresh7 on
6a888bf): every set-up of each suite's ``SETUPS``, seed 0 (fresh7 also seed 1), gave the same
validation score to the last digit with the monitor off, and the same verdicts, evidence, steps
and scores with the monitor on (``benchmarks/monitor_cost_equality.py suite`` then ``compare``:
fresh4 75/75, fresh5 81/81, fresh6 87/87, fresh7 80/80 identical; fresh7 only after its
judging). The earlier suites (fault_catalogue_fresh, fresh2, fresh3) keep their own, older
runners.

A new blind suite writes its data, models, set-ups, twins and :data:`HURT` table, then::

    RUNNER = SuiteRunner("fresh8", classes=CLASSES, prepare=prepare, archlab_data=archlab_data,
                         candidates=CANDIDATES, healthy=HEALTHY, hurt_table=HURT,
                         model_seed=(8282, 41), loader_seed=808)
    hurt, run_fresh8, measure_hurt = RUNNER.hurt, RUNNER.run, RUNNER.measure_hurt

and adds a user bug it needs here, behind its own ``train`` key, so the earlier suites keep
running as they were (prove it as above before it lands).
"""

from __future__ import annotations

import copy
import math
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .faults import Result

WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d)
ARCHLAB_OPTIONS = ("optimizer", "lr", "batch", "l2", "l1", "scale", "scale_targets", "clip", "eps",
                   "betas", "momentum", "schedule_name")


def optimizer(t: dict, params):
    kind, lr = t.get("optimizer", "adam"), t.get("lr", 1e-3)
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=t.get("momentum", 0.0))
    if t.get("adamw_wd"):   # fault: AdamW with this (decoupled) weight decay
        return torch.optim.AdamW(params, lr=lr, weight_decay=t["adamw_wd"])
    return torch.optim.Adam(params, lr=lr, eps=t.get("eps", 1e-8),
                            betas=tuple(t.get("betas", (0.9, 0.999))))


def params(t: dict, model: nn.Module):
    """All parameters that require a gradient, or (fault) only those of the last layer, or
    (fault) those of a copy of the model made before training."""
    if t.get("head_only"):
        last = [m for m in model.modules() if isinstance(m, WEIGHT_LAYERS)][-1]
        return list(last.parameters())
    if t.get("bug") == "copy_params":   # fault: the optimizer holds a deep copy's parameters
        return [p for p in copy.deepcopy(model).parameters() if p.requires_grad]
    return [p for p in model.parameters() if p.requires_grad]


def schedule(t: dict, opt):
    kind = t.get("schedule")
    if kind and kind[0] == "exp":
        return torch.optim.lr_scheduler.ExponentialLR(opt, gamma=kind[1])
    if kind and kind[0] == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=kind[1], gamma=kind[2])
    if kind and kind[0] == "warmup":   # a linear warm-up over kind[1] steps
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda i, n=kind[1]: min(1.0, (i + 1) / n))
    return None


def loss(s) -> Callable:
    """The loss function ``(model, out, y) -> loss`` the user wrote."""
    t = s.train
    reduction = "sum" if t.get("bug") == "sum_reduction" else "mean"
    if s.task == "regression":
        def base(out, y):
            if t.get("bug") == "squeeze_target":   # fault: (N, 1) outputs against (N,) targets
                y = y.squeeze(1)
            return F.mse_loss(out, y, reduction=reduction)
    elif t.get("bug") == "nll_sign":   # fault: a hand-written NLL without its minus sign
        def base(out, y):
            return F.log_softmax(out, 1).gather(1, y[:, None]).mean()
    else:
        def base(out, y):
            return F.cross_entropy(out, y, reduction=reduction)
    l2 = t.get("l2_in_loss")

    def lossf(model, out, y):
        if l2:   # fault: a hand-written L2 term on every weight
            return base(out, y) + l2 * sum((p ** 2).sum() for p in model.parameters()
                                           if p.dim() >= 2)
        return base(out, y)
    return lossf


def score(s, model: nn.Module, xva, yva) -> float:
    """Validation accuracy, or R^2 floored at -1; nan when the outputs are not finite."""
    model.eval()
    with torch.no_grad():
        out = model(xva)
    if not torch.isfinite(out).all():
        return math.nan
    if s.task == "regression":
        r2 = 1 - float(((out.reshape(yva.shape) - yva) ** 2).mean() / ((yva - yva.mean()) ** 2).mean())
        return max(-1.0, r2)
    return float((out.argmax(1) == yva).float().mean())


def result(s, seed: int, events, steps: int, score: float) -> Result:
    r = Result(s.name, seed, s.healthy, s.expected, s.plausible, steps=steps, score=score)
    for e in events:   # Verdict objects, or the dicts of events.jsonl
        e = e if isinstance(e, dict) else {**e.to_dict(), "kind": getattr(e, "kind", None),
                                           "explained_by": getattr(e, "explained_by", ())}
        r.fired.setdefault(e["detector"], e["step"])
        r.messages.setdefault(e["detector"], f"{e['message']} | evidence {e.get('evidence')}")
        if e.get("kind") == "symptom":
            r.symptoms[e["detector"]] = list(e.get("explained_by") or [])
    return r


@dataclass(frozen=True, eq=False)
class SuiteRunner:
    """What one blind suite gives the shared running code (see the module docstring)."""

    name: str                           # "fresh4": run_fresh4, temporary folders archlab-fresh4-*
    classes: dict[str, int]             # data kind -> number of classes
    prepare: Callable                   # (setup, seed) -> xtr, ytr, xva, yva tensors
    archlab_data: Callable              # setup -> x, y tensors for archlab.train
    candidates: list
    healthy: list
    hurt_table: dict[str, list[float]]  # the measured HURT table
    model_seed: tuple[int, int]         # torch.manual_seed(a + b * seed) before a model is built
    loader_seed: int                    # batch order: torch.Generator().manual_seed(this + seed)
    archlab_options: tuple[str, ...] = ARCHLAB_OPTIONS   # train keys passed on to archlab.train
    freeze_layers: tuple[type, ...] = WEIGHT_LAYERS      # the layers ``freeze: n`` counts

    def hurt(self, name: str) -> float:
        """Twin's mean recorded score minus the fault's (non-finite counted as -1)."""
        def mean(xs):
            return sum(x if math.isfinite(x) else -1.0 for x in xs) / len(xs)

        twin = next(s.twin for s in self.candidates if s.name == name)
        return mean(self.hurt_table[twin]) - mean(self.hurt_table[name])

    def build(self, s, shape: tuple, seed: int) -> nn.Module:
        a, b = self.model_seed
        torch.manual_seed(a + b * seed)
        model = s.model(tuple(shape), 1 if s.task == "regression" else self.classes[s.data])
        n = s.train.get("freeze", 0)
        if isinstance(n, int) and n:   # fault: requires_grad=False on the first n weight layers
            for m in [m for m in model.modules() if isinstance(m, self.freeze_layers)][:n]:
                m.requires_grad_(False)
        return model

    def run_lightning(self, s, seed: int, monitor: bool, folder: Path, steps: int) -> Result:
        """A LightningModule of the user's own, with ``HealthMonitor`` in the trainer's callbacks."""
        import logging

        import lightning.pytorch as pl

        from .callback import HealthMonitor

        xtr, ytr, xva, yva = self.prepare(s, seed)
        net, t, lossf = self.build(s, xtr.shape[1:], seed), s.train, loss(s)

        class UserModule(pl.LightningModule):
            def __init__(self):
                super().__init__()
                self.net = net

            def forward(self, x):
                return self.net(x)

            def training_step(self, batch, batch_idx):
                x, y = batch
                value = lossf(self.net, self(x), y)
                self.log("train_loss", value)
                return value

            def validation_step(self, batch, batch_idx):
                x, y = batch
                self.log("val_loss", lossf(self.net, self(x), y))

            def configure_optimizers(self):
                opt = optimizer(t, params(t, self.net))
                sched = schedule(t, opt)
                if sched is None:
                    return opt
                return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

            if t.get("bug") == "no_zero_grad":   # the hook overridden and left doing nothing
                def optimizer_zero_grad(self, epoch, batch_idx, optimizer):
                    pass

        train_loader = torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(xtr, ytr), batch_size=t["batch"],
            shuffle=not s.prep.get("sort"),
            generator=torch.Generator().manual_seed(self.loader_seed + seed),
            drop_last=len(xtr) > t["batch"])
        val_loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xva, yva),
                                                 batch_size=512)
        hm = HealthMonitor(folder / "health") if monitor else None
        logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
        trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, max_steps=steps,
                             enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, num_sanity_val_steps=0,
                             gradient_clip_val=t.get("clip"), default_root_dir=str(folder),
                             callbacks=[hm] if hm else [])
        trainer.fit(UserModule(), train_loader, val_loader)
        return result(s, seed, hm.events if hm else [], trainer.global_step, score(s, net, xva, yva))

    def run_plain(self, s, seed: int, monitor: bool, folder: Path, steps: int) -> Result:
        """A plain PyTorch loop driving ``HealthRecorder`` as docs/diagnostics.md shows. Some loops
        pass the validation set's size to ``validation`` (``val_size``), others do not; a loop that
        clips declares it to ``attach``."""
        from . import HealthRecorder

        xtr, ytr, xva, yva = self.prepare(s, seed)
        model, t, lossf = self.build(s, xtr.shape[1:], seed), s.train, loss(s)
        opt = optimizer(t, params(t, model))
        sched = schedule(t, opt)
        rec = HealthRecorder() if monitor else None
        if rec:
            clip = {"clip": t["clip"]} if t.get("clip") else {}
            if t.get("clip_value"):
                clip = {"clip": t["clip_value"], "clip_algorithm": "value"}
            rec.attach(model, optimizer=opt, **clip)
        g = torch.Generator().manual_seed(self.loader_seed + seed)
        batch, step, epoch, stop = t["batch"], 0, 0, False
        bug = t.get("bug")
        if bug == "eval_mode":   # fault: eval() before the loop, train() never called
            model.eval()
        while step < steps and not stop:
            order = torch.arange(len(xtr)) if s.prep.get("sort") else torch.randperm(len(xtr), generator=g)
            for i in range(0, max(1, len(xtr) - batch + 1), batch):
                if step >= steps:
                    break
                x, y = xtr[order[i:i + batch]], ytr[order[i:i + batch]]
                if rec:
                    rec.begin_step(targets=y)
                value = lossf(model, model(x), y)
                if rec and not rec.after_loss(value, replay=lambda x=x: model(x)):
                    stop = True   # NaN/Inf located: stop, as the documented loop does
                    break
                if bug not in ("no_zero_grad", "zero_grad_after_backward"):
                    opt.zero_grad()
                value.backward()
                if bug == "zero_grad_after_backward":
                    opt.zero_grad()
                if t.get("clip"):
                    torch.nn.utils.clip_grad_norm_(model.parameters(), t["clip"])
                if t.get("clip_value"):
                    torch.nn.utils.clip_grad_value_(model.parameters(), t["clip_value"])
                if rec:
                    rec.before_optimizer_step()
                if bug != "step_every" or step % t.get("step_every", 25) == 0:   # fault: indented
                    opt.step()                                                  # under an if
                if sched:
                    sched.step()
                if rec:
                    rec.end_step()
                step += 1
            was = model.training
            model.eval()
            with torch.no_grad():
                val_loss = float(lossf(model, model(xva), yva))
            model.train(was)
            if rec:
                if t.get("val_size"):
                    rec.validation(val_loss, epoch, val_size=len(xva))
                else:
                    rec.validation(val_loss, epoch)
            epoch += 1
        if rec:
            rec.finish(folder / "health")
        return result(s, seed, rec.events if rec else [], step, score(s, model, xva, yva))

    def run_archlab(self, s, seed: int, monitor: bool, folder: Path, steps: int) -> Result:
        """``archlab.train`` on the design (a dict) with the data as an npz file; archlab splits
        (0.8/0.2/0, seeded) and scales it itself; epochs = ceil(steps / batches per epoch)."""
        from ..errors import ArchlabError
        from ..train import train
        from . import read_events

        x, y = self.archlab_data(s)
        np.savez(folder / "data.npz", x=x.numpy(), y=y.numpy())
        t = s.train
        per_epoch = max(1, int(0.8 * len(x)) // t["batch"])
        epochs = max(1, math.ceil(steps / per_epoch))
        opts = {k: t[k] for k in self.archlab_options if k in t}
        if "schedule_name" in opts:
            opts["schedule"] = opts.pop("schedule_name")
        if s.task != "regression":
            opts.pop("scale_targets", None)
        design = s.model(tuple(x.shape[1:]), 1 if s.task == "regression" else self.classes[s.data])
        try:
            run = train(design, {"source": str(folder / "data.npz")}, epochs=epochs, seed=seed,
                        out=str(folder), name="run", progress=False, health=monitor, task=s.task,
                        split=(0.8, 0.2, 0.0), **opts)
        except ArchlabError as err:   # refused before training (bad data): found by archlab
            r = Result(s.name, seed, s.healthy, s.expected, s.plausible)
            r.fired, r.messages = {"data_error": 0}, {"data_error": str(err)}
            return r
        last = run.metrics[-1] if run.metrics else {}
        if s.task == "regression":
            yv = y.numpy()[np.asarray(run.splits.val)]
            value = 1 - float(last.get("val_mse", math.nan)) / float(yv.var())
            value = max(-1.0, value) if math.isfinite(value) else math.nan
        else:
            value = float(last.get("val_accuracy", math.nan))
        events = read_events(run.path / "health") if monitor else []
        return result(s, seed, events, epochs * per_epoch, value if math.isfinite(value) else math.nan)

    def run(self, s, seed: int = 0, monitor: bool = True, steps: int | None = None) -> Result:
        """Train one set-up on its user path (the monitor at its defaults unless ``monitor=False``)
        in a temporary folder; the Result carries the verdicts, their evidence and the score."""
        runner = {"lightning": self.run_lightning, "plain": self.run_plain,
                  "archlab": self.run_archlab}[s.path]
        with tempfile.TemporaryDirectory(prefix=f"archlab-{self.name}-") as tmp, \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            r = runner(s, seed, monitor, Path(tmp), steps or s.train["steps"])
            r.seconds = time.perf_counter() - t0
        return r

    def measure_hurt(self, names=None, seeds: int = 3) -> dict[str, list[float]]:
        """Validation scores with the monitor OFF (how the suite's HURT table was recorded)."""
        out: dict[str, Any] = {}
        for s in self.candidates + self.healthy:
            if names and s.name not in names:
                continue
            t0, c0 = time.perf_counter(), time.process_time()
            out[s.name] = [self.run(s, seed, monitor=False).score for seed in range(seeds)]
            print(f'    "{s.name}": [{", ".join("NAN" if not math.isfinite(v) else f"{v:.3f}" for v in out[s.name])}],'
                  f"  # {time.perf_counter() - t0:.1f}s wall {time.process_time() - c0:.1f}s cpu", flush=True)
        return out
