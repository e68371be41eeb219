"""Training engine: run folders, reproducibility, resume, design/loss checks, checkpoints, transfer.

Tiny synthetic data and small designs keep each fit to a second or two.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

import archlab
from archlab.train import (
    CheckpointError,
    Run,
    TrainingSetupError,
    make_config,
    prepare,
    resume,
    train,
)
from archlab.train.checkpoint import SafeCheckpointIO, read_checkpoint
from archlab.train.data import load_data
from archlab.train.engine import make_optimizer
from archlab.train.prepare import fit_scaling

DATA = {"source": "synthetic-classification", "samples": 96, "shape": [1, 8, 8], "classes": 3}


def tiny(classes: int = 3, width: int = 4, extra: list | None = None, last_act: str | None = None) -> dict:
    fc = {"name": "fc", "block": "linear", "out": classes}
    if last_act:
        fc["act"] = last_act
    return {"name": "tiny", "input": [1, 8, 8], "layers": [
        {"name": "conv", "block": "conv", "out": width},
        {"name": "drop", "block": "dropout", "p": 0.2},
        {"name": "pool", "block": "global_pool"},
        *(extra or []),
        fc,
    ]}


def fit(tmp_path, name, design=None, data=DATA, **options):
    # the health monitor is the diagnostics issue's; one test below runs with it
    opts = {"epochs": 2, "batch": 16, "progress": False, "health": False, "out": str(tmp_path),
            "name": name, **options}
    return train(design or tiny(), data, **opts)


def rows_without_time(run: Run) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in run.metrics]


# ------------------------------------------------------------------------------ run folder --


def test_run_folder_holds_everything(tmp_path):
    run = fit(tmp_path, "r1", augment="shift=1")
    files = {p.name for p in run.path.iterdir()}
    assert {"design.yaml", "config.yaml", "data.json", "splits.npz", "scaling.json", "metrics.csv",
            "checkpoints", "model.safetensors", "summary.json", "health"} <= files
    assert len(run.metrics) == 2 and run.metrics[1]["epoch"] == 1
    s = run.summary
    assert s["epochs_run"] == 2 and s["task"] == "classification" and s["seed"] == 0
    assert set(s["test"]) >= {"loss", "accuracy", "per_class_accuracy", "confusion"}
    assert np.array(s["test"]["confusion"]).sum() == len(run.splits.test) == 10
    assert s["code"]["archlab_version"] == archlab.__version__
    assert "git_commit" in s["code"] or "archlab_version" in s["code"]
    # the resolved design reloads; the config round-trips
    assert archlab.load(run.path / "design.yaml").graph.param_count == archlab.load(tiny()).graph.param_count
    assert run.config == make_config({**yaml.safe_load((run.path / "config.yaml").read_text())})
    # scaling statistics are the training split's, saved with the run
    x = load_data(DATA).x
    assert run.scaling == fit_scaling(x[torch.as_tensor(run.splits.train)])
    # checkpoints load without unpickling code; they carry the design
    ckpt = torch.load(run.path / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["epoch"] == 1 and "name: tiny" in ckpt["archlab"]["design"]
    from safetensors import safe_open

    with safe_open(str(run.path / "model.safetensors"), "pt") as f:
        assert "name: tiny" in f.metadata()["archlab_design"]


def test_same_seed_same_metrics_and_random_seed_is_recorded(tmp_path):
    a = fit(tmp_path, "a", seed=7, augment="hflip,shift=1")
    b = fit(tmp_path, "b", seed=7, augment="hflip,shift=1")
    assert rows_without_time(a) == rows_without_time(b)
    assert a.test_metrics == b.test_metrics
    c = fit(tmp_path, "c", seed=8)
    assert rows_without_time(c) != rows_without_time(a)
    r = fit(tmp_path, "r", seed="random", epochs=1)
    assert isinstance(r.config.seed, int) and r.summary["seed"] == r.config.seed


class _Crash(RuntimeError):
    pass


class _CrashAt(archlab.train.engine.Callback):
    """Kills training in the middle of an epoch, like a lost machine."""

    def __init__(self, epoch: int, batch: int) -> None:
        self.at = (epoch, batch)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if (trainer.current_epoch, batch_idx) == self.at:
            raise _Crash("machine lost")


def test_resume_after_a_crash_ends_like_an_uninterrupted_run(tmp_path):
    opts = {"epochs": 3, "augment": "shift=1", "schedule": "onecycle", "seed": 3}
    whole = fit(tmp_path, "whole", **opts)
    with pytest.raises(_Crash):
        fit(tmp_path, "crashed", callbacks=[_CrashAt(epoch=2, batch=2)], **opts)
    crashed = Run.open(tmp_path / "crashed")
    assert len(crashed.metrics) == 2 and not (crashed.path / "summary.json").exists()
    resumed = resume(crashed.path)
    assert rows_without_time(resumed) == rows_without_time(whole)
    assert resumed.test_metrics == whole.test_metrics


def test_health_monitor_writes_into_the_run_folder(tmp_path):
    pytest.importorskip("archlab.diagnose.callback")
    run = fit(tmp_path, "h", health=True)
    assert any((run.path / "health").iterdir())


def test_early_stopping_on_the_validation_metric(tmp_path):
    run = fit(tmp_path, "es", epochs=6, lr=1e-12, patience=1)  # nothing improves after epoch 0
    assert run.summary["epochs_run"] == 2


# ---------------------------------------------------------------- design, data and loss ----


def test_final_softmax_like_activation_is_rejected_with_the_fix(tmp_path):
    with pytest.raises(TrainingSetupError) as err:
        fit(tmp_path, "sig", design=tiny(last_act="sigmoid"))
    assert str(err.value) == (
        "<dict> fc: the output ends with sigmoid, but the classification loss (cross entropy) applies "
        "softmax itself; training on sigmoid outputs squashes the gradients and learns slowly; remove "
        "the final sigmoid (act: none on node 'fc'); predictions apply softmax when probabilities are shown")


def test_a_plain_module_ending_in_softmax_is_rejected():
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3), torch.nn.Softmax(dim=1))
    with pytest.raises(TrainingSetupError, match="2: the output ends with softmax"):
        prepare(net, DATA, progress=False)


def test_class_count_must_match_the_output(tmp_path):
    with pytest.raises(TrainingSetupError) as err:
        fit(tmp_path, "k", design=tiny(classes=5))
    assert "the design outputs 5 class scores, the data has 3 classes" in str(err.value)
    assert "set the last layer's out to 3" in str(err.value)


def test_unknown_option_suggests_the_right_one():
    with pytest.raises(archlab.UsageError, match="unknown training option 'epoch'; did you mean 'epochs'"):
        make_config({"epoch": 3})


def test_regression_and_segmentation_presets(tmp_path):
    reg = {"name": "reg", "input": [6], "layers": [{"name": "fc", "block": "linear", "out": 1}]}
    r = fit(tmp_path, "reg", design=reg, data={"source": "synthetic-regression", "samples": 64, "shape": [6]})
    assert set(r.test_metrics) == {"loss", "mse", "mae", "r2"}
    # the loss is on the standardised targets, the MSE in the data's units
    std = r.scaling.target_std
    assert r.test_metrics["loss"] == pytest.approx(r.test_metrics["mse"] / std**2)
    seg = {"name": "seg", "input": [1, 12, 12], "layers": [
        {"name": "conv", "block": "conv", "out": 4},
        {"name": "head", "block": "conv", "out": 2, "kernel": 1, "norm": "none", "act": "none"}]}
    segdata = {"source": "synthetic-segmentation", "samples": 40, "shape": [1, 12, 12]}
    for loss in ("ce", "dice"):
        s = fit(tmp_path, f"seg-{loss}", design=seg, data=segdata, loss=loss)
        assert {"mean_iou", "pixel_accuracy", "per_class_iou"} <= set(s.test_metrics)


# ------------------------------------------------------------------ checkpoints, transfer ---


def test_loading_into_a_changed_design_says_what_changed(tmp_path):
    run = fit(tmp_path, "base", epochs=1)
    changed = tiny(width=8, extra=[{"name": "hidden", "block": "linear", "out": 6}])
    with pytest.raises(CheckpointError) as err:
        run.model(changed)
    text = str(err.value)
    assert "the checkpoint does not fit the design: nodes added (not in the checkpoint): hidden" in text
    assert "reshaped: conv.0.weight checkpoint (4, 1, 3, 3) vs design (8, 1, 3, 3)" in text
    assert "fc.weight checkpoint (3, 4) vs design (3, 6)" in text
    assert text.endswith("load the 2 matching tensors with partial loading (Run.model(design, "
                         "partial=True), or archlab train --init-from RUN) and train the rest")
    model = run.model(changed, partial=True)
    trained = run.model()
    assert torch.equal(model.state_dict()["fc.bias"], trained.state_dict()["fc.bias"])


def test_transfer_loads_matching_weights_and_freezes_by_node_path(tmp_path):
    base = fit(tmp_path, "base", epochs=1)
    before = {k: v.clone() for k, v in base.model().state_dict().items()}
    tuned = fit(tmp_path, "tuned", epochs=1, init_from=str(base.path), freeze=["conv*"], lr=1e-2)
    after = tuned.model().state_dict()
    for name in ("conv.0.weight", "conv.1.weight", "conv.1.running_mean"):
        assert torch.equal(after[name], before[name]), name  # frozen, BN statistics included
    assert not torch.equal(after["fc.weight"], before["fc.weight"])  # retrained
    t = tuned.summary["transfer"]
    assert t["matched"] == len(before) and t["freeze"] == ["conv*"] and t["frozen_tensors"] == 3
    with pytest.raises(CheckpointError, match="freeze pattern\\(s\\) stem\\* match no node; node paths"):
        fit(tmp_path, "bad", epochs=1, freeze=["stem*"])


def test_checkpoint_writes_are_atomic_and_loads_refuse_code(tmp_path, monkeypatch):
    path = tmp_path / "c.ckpt"
    io = SafeCheckpointIO()
    io.save_checkpoint({"w": torch.ones(2)}, path)

    def broken_save(obj, fh):
        fh.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        io.save_checkpoint({"w": torch.zeros(2)}, path)
    monkeypatch.undo()
    assert torch.equal(io.load_checkpoint(path)["w"], torch.ones(2))  # the old one is intact
    assert [p.name for p in tmp_path.iterdir()] == ["c.ckpt"]  # no temporary left behind
    torch.save({"obj": _Crash("x")}, path)  # a pickled object: could run code when loaded
    with pytest.raises(CheckpointError, match="c.ckpt: the checkpoint holds pickled Python objects"):
        read_checkpoint(path)


# ---------------------------------------------------------------------- optimiser presets ---


def test_optimiser_presets_and_schedules():
    net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    adam = make_optimizer(net, make_config({}), 10)["optimizer"]
    assert isinstance(adam, torch.optim.Adam)
    g = adam.param_groups[0]
    assert (g["lr"], g["betas"], g["eps"]) == (1e-3, (0.9, 0.999), 1e-8)
    sgd = make_optimizer(net, make_config({"optimizer": "sgd", "lr": 0.1, "l2": 5e-4}), 10)["optimizer"]
    decay, other = sgd.param_groups
    assert sgd.defaults["nesterov"] and sgd.defaults["momentum"] == 0.9
    assert decay["weight_decay"] == 5e-4 and other["weight_decay"] == 0.0
    assert [tuple(p.shape) for p in decay["params"]] == [(4, 4), (2, 4)]  # weights only
    adamw = make_optimizer(net, make_config({"optimizer": "adamw", "l2": 0.01}), 10)["optimizer"]
    assert isinstance(adamw, torch.optim.AdamW) and adamw.param_groups[0]["weight_decay"] == 0.01
    cfg = make_config({"schedule": "onecycle", "lr": 0.01, "epochs": 2})
    out = make_optimizer(net, cfg, 10)
    sched = out["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(20):
        out["optimizer"].step()
        lrs.append(out["optimizer"].param_groups[0]["lr"])
        sched.step()
    assert max(lrs) == pytest.approx(0.01, rel=0.05) and lrs[-1] < 1e-4
    cos = make_optimizer(net, make_config({"schedule": "cosine", "epochs": 1}), 4)
    assert cos["lr_scheduler"]["interval"] == "step"


def test_l1_and_variational_kl_join_the_loss():
    setup = prepare(tiny(), DATA, l1=0.5, progress=False)
    m = setup.module
    m.on_train_epoch_start()
    x, y = next(iter(setup.datamodule.train_dataloader()))
    torch.manual_seed(0)
    total = m.training_step((x, y), 0)
    torch.manual_seed(0)
    plain = m.task.loss(m.model(x), y)
    l1 = sum(p.abs().sum() for p in m.model.parameters() if p.ndim > 1)
    assert total.item() == pytest.approx((plain + 0.5 * l1).item(), rel=1e-5)

    vae = tiny(extra=[{"name": "z", "block": "variational", "latent": 4}])
    setup = prepare(vae, DATA, kl_weight=2.0, progress=False)
    m = setup.module
    m.on_train_epoch_start()
    torch.manual_seed(0)
    total = m.training_step((x, y), 0)
    kl = m.model.get_submodule("z").kl
    torch.manual_seed(0)
    plain = m.task.loss(m.model(x), y)
    assert total.item() == pytest.approx((plain + 2.0 * kl).item(), rel=1e-5)


def test_archlab_train_is_callable_however_it_was_imported():
    import archlab.train.engine  # noqa: F401  binds the package to archlab.train

    assert callable(archlab.train) and archlab.train.train is train


def test_trainer_settings_pass_through(tmp_path):
    from archlab.train import make_trainer

    config = make_config({"clip": 0.5, "clip_by": "value", "accelerator": "cpu", "devices": 1,
                          "epochs": 3, "progress": False, "deterministic": True})
    try:
        trainer = make_trainer(config, tmp_path, [])
        assert (trainer.gradient_clip_val, trainer.gradient_clip_algorithm) == (0.5, "value")
        assert trainer.max_epochs == 3 and trainer.num_devices == 1
        assert torch.are_deterministic_algorithms_enabled()
        assert isinstance(trainer.strategy.checkpoint_io, SafeCheckpointIO)
    finally:
        torch.use_deterministic_algorithms(False)


def test_design_with_an_auxiliary_output_trains_and_predicts_with_the_first(tmp_path):
    """Several outputs (``output: [logits, aux]``, as Inception-v3's auxiliary head): the first is
    the prediction; the others add aux_weight x their loss in training only."""
    import archlab
    from archlab.train.engine import split_outputs

    design = {
        "name": "two_heads", "task": "classification", "input": [1, 8, 8],
        "layers": [
            {"name": "stem", "block": "conv", "out": 8},
            {"name": "aux", "block": "head", "classes": 10},
            {"name": "body", "block": "conv", "out": 16, "from": "stem", "stride": 2},
            {"name": "logits", "block": "head", "classes": 10}],
        "output": ["logits", "aux"]}
    run = archlab.train(design, "digits", epochs=1, out=str(tmp_path), progress=False, health=False)
    assert 0.0 <= run.test_metrics["accuracy"] <= 1.0
    model = run.model()
    out = model(torch.zeros(2, 1, 8, 8))
    assert isinstance(out, tuple) and len(out) == 2
    main, aux = split_outputs(out)
    assert main.shape == (2, 10) and len(aux) == 1
    assert run.predict(torch.zeros(3, 1, 8, 8))["outputs"].shape == (3, 10)
