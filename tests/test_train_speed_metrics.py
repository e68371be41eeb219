"""The training accuracy counted from held per-step hits equals the per-step count (an oracle
computed directly), for classification and segmentation, whether the hits are counted at the
epoch's end or every HELD_HITS elements; the held memory stays bounded."""

from __future__ import annotations

import pytest
import torch

from archlab.train import tasks
from archlab.train.tasks import make_task


@pytest.mark.parametrize("name, shape", [("classification", (7, 4)), ("segmentation", (3, 4, 5, 5))])
@pytest.mark.parametrize("held", [tasks.HELD_HITS, 40])
def test_held_hits_count_exactly(monkeypatch, name, shape, held):
    monkeypatch.setattr(tasks, "HELD_HITS", held)
    g = torch.Generator().manual_seed(2)
    task = make_task(name, None, shape[1])
    state = task.empty_train_state()
    correct = total = 0
    loss_sum = torch.zeros(())
    for _ in range(9):
        out = torch.randn(shape, generator=g, requires_grad=True)
        y = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=g)
        loss = task.loss(out, y)
        task.update_train(state, out, y, loss)
        assert state["hit_elements"] < held
        correct += int((out.detach().argmax(1) == y).sum())
        total += y.numel()
        loss_sum.add_(loss.detach(), alpha=shape[0])
    metrics = task.compute_train(state)
    key = "accuracy" if name == "classification" else "pixel_accuracy"
    assert metrics[key] == correct / total
    assert metrics["loss"] == float(loss_sum) / (9 * shape[0])
    assert state["hits"] == [] and int(state["correct"]) == correct
    assert task.compute_train(state)[key] == correct / total  # settling twice counts once
