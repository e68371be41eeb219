"""archlab's own training loop (archlab.train.loop) against lightning.Trainer, the oracle: the
same seeded run through either must give identical weights, metrics.csv rows, best epoch, kept
checkpoint (key for key, Lightning's loop counters included), health events and test metrics;
a checkpoint of either loop resumes with either; Ctrl-C keeps the run.
"""

from __future__ import annotations

import json

import pytest
import torch
from lightning.pytorch.callbacks import Callback, LearningRateMonitor

from archlab.errors import UsageError
from archlab.train import make_config, resume, train
from archlab.train.checkpoint import read_checkpoint
from archlab.train.loop import LoopTrainer, loop_applies
from archlab.train.run import make_run_trainer

DATA = {"source": "synthetic-classification", "samples": 96, "shape": [1, 8, 8], "classes": 3}
DESIGN = {"name": "tiny", "input": [1, 8, 8], "layers": [
    {"name": "conv", "block": "conv", "out": 4},
    {"name": "norm", "block": "norm"},
    {"name": "drop", "block": "dropout", "p": 0.2},   # the random stream must be consumed alike
    {"name": "pool", "block": "global_pool"},
    {"name": "fc", "block": "linear", "out": 3}]}


def fit(tmp_path, name, loop, design=DESIGN, callbacks=(), **options):
    opts = {"epochs": 3, "batch": 16, "progress": False, "health": False, "out": str(tmp_path),
            "name": name, "schedule": "onecycle", "lr": 3e-3, "seed": 5, "loop": loop, **options}
    return train(design, DATA, callbacks=list(callbacks), **opts)


def rows(run) -> list[dict]:
    # NaN never equals itself: compared as text
    return [{k: ("nan" if v != v else v) for k, v in r.items() if k != "seconds"} for r in run.metrics]


def same(a, b, where: str, a_dir: str, b_dir: str) -> None:
    """Deep equality of two checkpoints, run folders' paths read alike."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b) or (a.is_floating_point() and bool(((a == b) | (a.isnan() & b.isnan())).all())), where
    elif isinstance(a, dict):
        norm = lambda d: {(k.replace(a_dir, "RUN").replace(b_dir, "RUN") if isinstance(k, str) else k): v  # noqa: E731
                          for k, v in d.items()}
        a, b = norm(a), norm(b)
        assert isinstance(b, dict) and sorted(map(str, a)) == sorted(map(str, b)), \
            f"{where}: keys {sorted(map(str, a))} != {sorted(map(str, b))}"
        for k in a:
            same(a[k], b[k], f"{where}.{k}", a_dir, b_dir)
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same(x, y, f"{where}[{i}]", a_dir, b_dir)
    elif isinstance(a, str) and isinstance(b, str):
        assert a.replace(a_dir, "RUN") == b.replace(b_dir, "RUN"), f"{where}: {a!r} != {b!r}"
    else:
        assert a == b or (a != a and b != b), f"{where}: {a!r} != {b!r}"


def assert_same_run(ours, theirs) -> None:
    assert rows(ours) == rows(theirs)
    for key in ("best_epoch", "epochs_run", "val", "test"):
        assert ours.summary[key] == theirs.summary[key], key
    for name in ("last.ckpt", "best.ckpt"):
        a, b = (r.path / "checkpoints" / name for r in (ours, theirs))
        assert a.exists() == b.exists(), name
        if a.exists():
            same(read_checkpoint(a), read_checkpoint(b), name, str(ours.path), str(theirs.path))
    for a, b in zip(ours.model().state_dict().values(), theirs.model().state_dict().values(), strict=True):
        same(a, b, "model.safetensors", "", "")


def events(run) -> list[dict]:
    text = (run.path / "health" / "events.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_archlab_loop_trains_exactly_as_lightnings_trainer(tmp_path):
    ours = fit(tmp_path, "ours", "auto")
    theirs = fit(tmp_path, "theirs", "lightning")
    assert_same_run(ours, theirs)


def test_clipping_automatic_optimisation_and_the_health_monitor(tmp_path):
    opts = {"clip": 0.05, "clip_by": "norm", "schedule": "cosine", "health": True, "lr": 0.3,
            "optimizer": "sgd"}
    ours = fit(tmp_path, "ours", "auto", **opts)
    theirs = fit(tmp_path, "theirs", "lightning", **opts)
    assert_same_run(ours, theirs)
    assert events(ours) == events(theirs)
    for name in sorted(p.name for p in (theirs.path / "health").iterdir()):
        if name.endswith(".json"):
            assert untimed(json.loads((ours.path / "health" / name).read_text())) == \
                   untimed(json.loads((theirs.path / "health" / name).read_text())), name


def untimed(value):
    """A health file without its wall-clock measurements (the monitor's own measured cost)."""
    if isinstance(value, dict):
        return {k: untimed(v) for k, v in value.items()
                if not any(w in k for w in ("overhead", "seconds", "time", "elapsed"))}
    if isinstance(value, list):
        return [untimed(v) for v in value]
    return value


def test_early_stopping_ties_and_no_validation_split(tmp_path):
    stop = {"epochs": 6, "lr": 1e-12, "patience": 1, "schedule": "constant"}
    ours, theirs = fit(tmp_path, "es-ours", "auto", **stop), fit(tmp_path, "es-theirs", "lightning", **stop)
    assert ours.summary["epochs_run"] == 2
    assert_same_run(ours, theirs)
    no_val = {"split": (0.8, 0.0, 0.2), "epochs": 2}
    assert_same_run(fit(tmp_path, "nv-ours", "auto", **no_val), fit(tmp_path, "nv-theirs", "lightning", **no_val))


def test_nan_loss_stops_alike(tmp_path):
    nan = {"lr": 1e6, "optimizer": "sgd", "health": True, "schedule": "constant", "epochs": 3}
    ours, theirs = fit(tmp_path, "ours", "auto", **nan), fit(tmp_path, "theirs", "lightning", **nan)
    assert_same_run(ours, theirs)
    assert events(ours) == events(theirs)


class _Crash(Exception):
    pass


class _CrashAt(Callback):
    def __init__(self, epoch: int, batch: int, error=_Crash) -> None:
        self.at, self.error = (epoch, batch), error

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if (trainer.current_epoch, batch_idx) == self.at:
            raise self.error("stop here")


@pytest.mark.parametrize("first,then,options", [
    ("auto", "lightning", {}), ("lightning", "auto", {}),
    ("auto", "lightning", {"clip": 0.1, "schedule": "cosine"})])   # the automatic optimisation's counters
def test_a_checkpoint_of_either_loop_resumes_with_either(tmp_path, first, then, options):
    whole = fit(tmp_path, "whole", then, **options)
    with pytest.raises(_Crash):
        fit(tmp_path, "crashed", first, callbacks=[_CrashAt(epoch=2, batch=1)], **options)
    resumed = resume(tmp_path / "crashed", loop=then)
    last = [read_checkpoint(r.path / "checkpoints" / "last.ckpt") for r in (resumed, whole)]
    same(last[0]["loops"], last[1]["loops"], "loops", "", "")
    assert rows(resumed) == rows(whole)
    assert resumed.summary["test"] == whole.summary["test"]
    assert resumed.summary["best_epoch"] == whole.summary["best_epoch"]
    for a, b in zip(resumed.model().state_dict().values(), whole.model().state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_resumed_checkpoints_match_lightnings_key_for_key(tmp_path):
    for loop in ("auto", "lightning"):
        with pytest.raises(_Crash):
            fit(tmp_path, f"c-{loop}", loop, callbacks=[_CrashAt(epoch=1, batch=1)])
        resume(tmp_path / f"c-{loop}", loop=loop)
    for name in ("last.ckpt", "best.ckpt"):
        a, b = (tmp_path / f"c-{loop}" / "checkpoints" / name for loop in ("auto", "lightning"))
        same(read_checkpoint(a), read_checkpoint(b), name, str(a.parents[1]), str(b.parents[1]))


def test_ctrl_c_keeps_the_run_and_names_the_resume(tmp_path):
    with pytest.raises(UsageError) as err:
        fit(tmp_path, "int", "auto", callbacks=[_CrashAt(epoch=1, batch=2, error=KeyboardInterrupt)])
    assert "interrupted" in str(err.value) and "--resume" in str(err.value.fix)
    assert (tmp_path / "int" / "checkpoints" / "last.ckpt").exists()
    done = resume(tmp_path / "int")
    assert len(done.metrics) == 3


def test_which_runs_take_archlabs_loop(tmp_path):
    cfg = make_config({"accelerator": "cpu"})
    assert loop_applies(cfg, []) == []
    for option in ({"loop": "lightning"}, {"devices": 2}, {"strategy": "ddp"}, {"precision": "bf16-mixed"},
                   {"num_nodes": 2}, {"accelerator": "gpu"}):
        assert loop_applies(make_config({"accelerator": "cpu", **option}), []), option
    assert loop_applies(cfg, [LearningRateMonitor()]) == ["Lightning callback LearningRateMonitor"]
    from archlab.train.tasks import make_task

    task = make_task("classification", None, 3)
    _, trainer = make_run_trainer(make_config({"accelerator": "cpu", "progress": False}), tmp_path, task, True, [])
    assert isinstance(trainer, LoopTrainer)
    _, trainer = make_run_trainer(make_config({"accelerator": "cpu", "progress": False}), tmp_path, task, True,
                                  [LearningRateMonitor()])
    assert not isinstance(trainer, LoopTrainer)


def test_a_callback_reading_what_the_loop_lacks_is_told_the_fix(tmp_path):
    class Reads(Callback):
        def on_train_start(self, trainer, pl_module) -> None:
            trainer.accumulate_grad_batches  # noqa: B018

    with pytest.raises(AttributeError, match="loop='lightning'"):
        fit(tmp_path, "reads", "auto", callbacks=[Reads()])
    fit(tmp_path, "reads-l", "lightning", callbacks=[Reads()], epochs=1)


def test_metrics_rows_are_appended_and_a_torn_last_row_is_dropped(tmp_path):
    import csv
    import io

    run = fit(tmp_path, "rows", "auto", epochs=2, schedule="constant")
    text = (run.path / "metrics.csv").read_text()
    buf = io.StringIO()  # what one atomic rewrite of all rows writes
    writer = csv.DictWriter(buf, fieldnames=list(run.metrics[0]))
    writer.writeheader()
    writer.writerows(run.metrics)
    assert text.replace("\r\n", "\n") == buf.getvalue().replace("\r\n", "\n")
    with open(run.path / "metrics.csv", "a") as fh:   # a run killed while appending its row
        fh.write("2,0.93")
    assert len(run.metrics) == 2
    longer = resume(run.path, epochs=3)
    assert [r["epoch"] for r in longer.metrics] == [0, 1, 2]
    assert "0.93\r\n" not in (run.path / "metrics.csv").read_text()


def test_a_scheduled_run_is_not_extended_by_resume(tmp_path):
    run = fit(tmp_path, "sched", "auto", epochs=1)   # onecycle, laid out for one epoch
    with pytest.raises(UsageError) as err:
        resume(run.path, epochs=2)
    assert "onecycle" in str(err.value) and "--init-from" in str(err.value.fix)
