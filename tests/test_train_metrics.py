"""Task presets against independent oracles (scikit-learn's metrics, PyTorch's losses)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    jaccard_score,
    mean_absolute_error,
    mean_squared_error,
    recall_score,
)

from archlab.train.tasks import TrainingSetupError, dice_loss, final_activation, make_task


@pytest.mark.parametrize("module_name", ["archlab.train.data", "archlab.train.prepare", "archlab.train.run"])
def test_doctests(module_name):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module_name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def _accumulate(task, outs, ys):
    state = task.empty_state()
    for out, y in zip(outs, ys, strict=False):
        task.update(state, out, y, task.loss(out, y))
    return task.compute(state)


def test_classification_metrics_match_scikit_learn():
    g = torch.Generator().manual_seed(0)
    task = make_task("classification", None, 4)
    outs = [torch.randn(13, 4, generator=g) for _ in range(3)]
    ys = [torch.randint(0, 4, (13,), generator=g) for _ in range(3)]
    m = _accumulate(task, outs, ys)
    y = torch.cat(ys).numpy()
    pred = torch.cat(outs).argmax(1).numpy()
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert m["confusion"] == confusion_matrix(y, pred, labels=range(4)).tolist()
    assert m["per_class_accuracy"] == pytest.approx(recall_score(y, pred, average=None, labels=range(4)))
    ref_loss = torch.nn.functional.cross_entropy(torch.cat(outs), torch.cat(ys)).item()
    assert m["loss"] == pytest.approx(ref_loss, rel=1e-6)  # batch means weighted by batch size


def test_regression_metrics_match_scikit_learn():
    g = torch.Generator().manual_seed(1)
    task = make_task("regression", None, 0)
    outs = [torch.randn(7, 2, generator=g) for _ in range(2)]
    ys = [torch.randn(7, 2, generator=g) for _ in range(2)]
    m = _accumulate(task, outs, ys)
    y, p = torch.cat(ys).numpy(), torch.cat(outs).numpy()
    assert m["mse"] == pytest.approx(mean_squared_error(y, p), rel=1e-6)
    assert m["mae"] == pytest.approx(mean_absolute_error(y, p), rel=1e-6)
    assert m["loss"] == pytest.approx(m["mse"], rel=1e-6)


def test_segmentation_iou_matches_scikit_learn():
    g = torch.Generator().manual_seed(2)
    task = make_task("segmentation", "ce", 3)
    out = torch.randn(4, 3, 5, 5, generator=g)
    y = torch.randint(0, 3, (4, 5, 5), generator=g)
    m = _accumulate(task, [out], [y])
    pred = out.argmax(1).flatten().numpy()
    iou = jaccard_score(y.flatten().numpy(), pred, average=None, labels=range(3))
    assert m["per_class_iou"] == pytest.approx(iou)
    assert m["mean_iou"] == pytest.approx(iou.mean())
    assert m["pixel_accuracy"] == pytest.approx(accuracy_score(y.flatten().numpy(), pred))


def test_dice_loss_formula():
    y = torch.tensor([[[0, 1], [1, 1]]])
    perfect = torch.nn.functional.one_hot(y, 2).movedim(-1, 1).float() * 50
    assert dice_loss(perfect, y).item() == pytest.approx(0.0, abs=1e-6)
    logits = torch.zeros(1, 2, 2, 2)  # probabilities 0.5 everywhere
    # class 0: inter 0.5, |P| 2, |G| 1 -> (1 + 1) / (3 + 1); class 1: inter 1.5, |G| 3 -> 4 / 6
    expected = 1 - ((2 * 0.5 + 1) / (2 + 1 + 1) + (2 * 1.5 + 1) / (2 + 3 + 1)) / 2
    assert dice_loss(logits, y).item() == pytest.approx(expected)


def test_loss_must_fit_the_task():
    with pytest.raises(TrainingSetupError, match="loss 'dice' does not fit task classification; valid: ce"):
        make_task("classification", "dice", 3)


def test_final_activation_reads_the_fx_graph():
    import archlab

    net = archlab.build({"input": [4], "layers": [{"name": "fc", "block": "linear", "out": 3, "act": "sigmoid"}]})
    assert final_activation(net) == ("fc.1", "sigmoid")
    plain = archlab.build({"input": [4], "layers": [{"name": "fc", "block": "linear", "out": 3}]})
    assert final_activation(plain) is None
    seq = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LogSoftmax(1))
    assert final_activation(seq) == ("1", "log_softmax")
    assert np.isnan(make_task("classification", None, 2).compute(make_task("classification", None, 2)
                                                                 .empty_state())["accuracy"])


@pytest.mark.parametrize("name,classes", [("classification", 4), ("segmentation", 3), ("regression", 0)])
def test_training_sums_agree_with_the_full_metrics(name, classes):
    g = torch.Generator().manual_seed(3)
    task = make_task(name, None, classes)
    if name == "regression":
        out, y = torch.randn(9, 2, generator=g), torch.randn(9, 2, generator=g)
    elif name == "segmentation":
        out, y = torch.randn(3, 3, 4, 4, generator=g), torch.randint(0, 3, (3, 4, 4), generator=g)
    else:
        out, y = torch.randn(9, 4, generator=g), torch.randint(0, 4, (9,), generator=g)
    full, fast = task.empty_state(), task.empty_train_state()
    for _ in range(2):
        task.update(full, out, y, task.loss(out, y))
        task.update_train(fast, out, y, task.loss(out, y))
    ref = task.compute(full)
    for key, value in task.compute_train(fast).items():
        assert value == pytest.approx(ref[key], rel=1e-6), key
