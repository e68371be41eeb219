"""Task presets: the loss and the established metrics of each task (principle C3).

============== ======================================= ==============================================
task           loss                                    metrics
============== ======================================= ==============================================
classification cross entropy (on logits)               loss, accuracy, per-class accuracy, confusion
regression     mean squared error                      loss (MSE), mse, mae
segmentation   cross entropy or soft Dice (on logits)  loss, pixel accuracy, mean IoU, per-class IoU
============== ======================================= ==============================================

Metrics are accumulated as sums in tensors (a confusion matrix, squared/absolute error sums), so
they add up exactly across batches and, under DDP, across processes, before being divided.

The output layer and the loss are checked against each other: cross entropy applies log-softmax
itself, so a softmax (or sigmoid) on the network's last node trains on probabilities of
probabilities and learns slowly; :func:`check_output` rejects it with the fix.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ArchlabError


class TrainingSetupError(ArchlabError):
    """The design, the data and the training options do not fit together."""


# Final activations that a logits-based loss would apply a second time.
PROBABILITY_ACTIVATIONS = {
    nn.Softmax: "softmax", nn.LogSoftmax: "log_softmax", nn.Sigmoid: "sigmoid",
    nn.Hardsigmoid: "hardsigmoid", nn.Softmin: "softmin",
}
PROBABILITY_FUNCTIONS = {"softmax", "log_softmax", "sigmoid", "hardsigmoid", "softmin"}


# correct predictions held before they are counted (booleans: a megabyte); a step's count is
# exact either way, held or not
HELD_HITS = 1 << 20


@dataclass(frozen=True)
class Task:
    """One task preset. ``monitor`` is the validation metric that early stopping and the best
    checkpoint follow; ``mode`` says whether larger is better."""

    name: str
    loss_name: str
    classes: int = 0
    # regression: the model learns (y - target_mean) / target_std; metrics are in the data's units
    target_mean: float = 0.0
    target_std: float = 1.0

    def with_target_scaling(self, scaling) -> Task:
        """This task with the target statistics of ``scaling`` (a :class:`Scaling`), if any."""
        if getattr(scaling, "target_mean", None) is None:
            return self
        return dataclasses.replace(self, target_mean=scaling.target_mean, target_std=scaling.target_std)

    # ---- loss -------------------------------------------------------------------------------
    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.name == "regression":
            return F.mse_loss(out.reshape(y.shape), y)
        if self.loss_name == "dice":
            return dice_loss(out, y)
        return F.cross_entropy(out, y)

    @property
    def monitor(self) -> str:
        return {"classification": "accuracy", "regression": "mse", "segmentation": "mean_iou"}[self.name]

    @property
    def mode(self) -> str:
        return "min" if self.name == "regression" else "max"

    # ---- metrics as additive sums -----------------------------------------------------------
    def empty_state(self, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        # the sample count is a Python int (known without a tensor op); a multi-device run
        # turns it into a tensor before summing it over devices
        state: dict = {"loss_sum": torch.zeros((), dtype=torch.float64, device=device), "count": 0}
        if self.name == "regression":
            state["se_sum"] = torch.zeros((), dtype=torch.float64, device=device)
            state["y_sum"] = torch.zeros((), dtype=torch.float64, device=device)
            state["y_sq_sum"] = torch.zeros((), dtype=torch.float64, device=device)
            state["ae_sum"] = torch.zeros((), dtype=torch.float64, device=device)
            state["elements"] = torch.zeros((), dtype=torch.float64, device=device)
        else:
            state["confusion"] = torch.zeros((self.classes, self.classes), dtype=torch.int64, device=device)
        return state

    def update(self, state: dict[str, torch.Tensor], out: torch.Tensor, y: torch.Tensor,
               loss: torch.Tensor) -> None:
        if torch.is_grad_enabled():  # validation and tests run without: no context to enter
            with torch.no_grad():
                return self._update(state, out, y, loss)
        return self._update(state, out, y, loss)

    def _update(self, state: dict, out: torch.Tensor, y: torch.Tensor, loss: torch.Tensor) -> None:
        n = y.shape[0]
        # the float32 loss times n is exact in float64: one rounding, as loss.double() * n added
        state["loss_sum"].add_(loss.detach(), alpha=n)
        state["count"] += n
        if self.name == "regression":
            # back to the data's units: the loss is on scaled targets, the metrics are not
            target = y.double() * self.target_std + self.target_mean
            pred = out.reshape(y.shape).double() * self.target_std + self.target_mean
            err = pred - target
            state["se_sum"] += err.square().sum()
            state["y_sum"] += target.sum()
            state["y_sq_sum"] += target.square().sum()
            state["ae_sum"] += err.abs().sum()
            state["elements"] += err.numel()
        else:
            pred = out.argmax(1)
            k = self.classes
            cell = pred.add(y, alpha=k)  # y * k + pred in one op
            if cell.ndim != 1:
                cell = cell.flatten()
            state["confusion"] += torch.bincount(cell, minlength=k * k).view(k, k)

    def empty_train_state(self, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        """Training-time sums: the loss and, for class tasks, the correct count only. Fewer
        small ops per step than the full confusion matrix: training steps are the hot path.
        The counts are Python ints (known without a tensor op); a multi-device run turns them
        into tensors before summing them over devices (after :meth:`settle_train`)."""
        state: dict = {"loss_sum": torch.zeros((), device=device), "count": 0}
        if self.name != "regression":
            state["correct"] = torch.zeros((), dtype=torch.int64, device=device)
            state["total"] = 0
            state["hits"] = []        # each step's (prediction == target), counted together
            state["hit_elements"] = 0
        return state

    def update_train(self, state: dict, out: torch.Tensor, y: torch.Tensor,
                     loss: torch.Tensor) -> None:
        # detached values only, so no autograd context is needed: two tensor ops a step for the
        # loss (its float32 sum keeps its order) and two for the correct predictions, kept
        # (fresh tensors of their own) and counted at the epoch's end or every
        # HELD_HITS elements: the same integer count, three ops fewer a step
        n = y.shape[0]
        state["loss_sum"].add_(loss.detach(), alpha=n)
        state["count"] += n
        if self.name != "regression":
            hits = out.argmax(1) == y  # argmax: an integer, no gradient
            state["hits"].append(hits)
            state["total"] += y.numel()
            state["hit_elements"] += y.numel()
            if state["hit_elements"] >= HELD_HITS:
                self.settle_train(state)

    def settle_train(self, state: dict) -> dict:
        """Count the held correct predictions into ``state['correct']``; returns ``state``."""
        hits = state.get("hits")
        if hits:
            flat = [h.reshape(-1) for h in hits] if hits[0].ndim != 1 else hits
            state["correct"] += (flat[0] if len(flat) == 1 else torch.cat(flat)).sum()
            hits.clear()
            state["hit_elements"] = 0
        return state

    def compute_train(self, state: dict[str, torch.Tensor]) -> dict:
        self.settle_train(state)
        metrics = {"loss": float(state["loss_sum"]) / max(float(state["count"]), 1.0)}
        if self.name != "regression":
            key = "accuracy" if self.name == "classification" else "pixel_accuracy"
            metrics[key] = float(state["correct"]) / max(float(state["total"]), 1.0)
        return metrics

    def compute(self, state: dict[str, torch.Tensor]) -> dict:
        """Sums -> metrics. Scalars are floats; per-class lists and the confusion matrix are
        plain lists (JSON-ready). NaN marks a class with no samples."""
        count = max(float(state["count"]), 1.0)
        metrics: dict = {"loss": float(state["loss_sum"]) / count}
        if self.name == "regression":
            elements = max(float(state["elements"]), 1.0)
            metrics["mse"] = float(state["se_sum"]) / elements
            metrics["mae"] = float(state["ae_sum"]) / elements
            # R^2 = 1 - SSE / SST: the share of the targets' variance the model explains (NaN
            # when the targets are constant)
            sst = float(state["y_sq_sum"]) - float(state["y_sum"]) ** 2 / elements
            metrics["r2"] = 1.0 - float(state["se_sum"]) / sst if sst > 1e-12 * max(elements, 1.0) else math.nan
            return metrics
        cm = state["confusion"].double()
        total = float(cm.sum())
        correct = float(cm.diagonal().sum())
        per_class = (cm.diagonal() / cm.sum(1)).tolist()  # row = true class
        if self.name == "classification":
            metrics["accuracy"] = correct / total if total else math.nan
            metrics["per_class_accuracy"] = per_class
        else:
            union = cm.sum(0) + cm.sum(1) - cm.diagonal()
            iou = (cm.diagonal() / union).tolist()
            present = [v for v in iou if not math.isnan(v)]
            metrics["pixel_accuracy"] = correct / total if total else math.nan
            metrics["mean_iou"] = sum(present) / len(present) if present else math.nan
            metrics["per_class_iou"] = iou
        metrics["confusion"] = state["confusion"].tolist()
        return metrics


def dice_loss(logits: torch.Tensor, y: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Soft Dice loss over classes: (N, K, H, W) logits, (N, H, W) labels -> scalar.

    1 - mean over classes of 2|P∩G| / (|P| + |G|), with softmax probabilities P and one-hot G
    (Milletari et al. 2016, V-Net). ``eps`` (in pixels) keeps absent classes finite.
    """
    k = logits.shape[1]
    probs = logits.softmax(1)
    onehot = F.one_hot(y, k).movedim(-1, 1).to(probs.dtype)
    dims = (0,) + tuple(range(2, logits.dim()))
    inter = (probs * onehot).sum(dims)
    denom = probs.sum(dims) + onehot.sum(dims)
    return 1 - ((2 * inter + eps) / (denom + eps)).mean()


def make_task(name: str, loss: str | None, classes: int) -> Task:
    valid = {"classification": ("ce",), "regression": ("mse",), "segmentation": ("ce", "dice")}
    loss = loss or valid[name][0]
    if loss not in valid[name]:
        raise TrainingSetupError(f"loss '{loss}' does not fit task {name}; valid: {', '.join(valid[name])}",
                                 fix=f"use --loss {valid[name][0]}")
    return Task(name, loss, classes)


# ---------------------------------------------------------------------- output checks -------


def final_activation(model: nn.Module) -> tuple[str, str] | None:
    """The probability activation (softmax, sigmoid, ...) that produces the model's output, as
    (module path, kind), or None. Reads the fx graph of a built design (exact); for another
    module, the last leaf module in registration order (the usual layout of a Sequential)."""
    graph = getattr(model, "graph", None)
    if isinstance(model, torch.fx.GraphModule) and graph is not None:
        output = next(n for n in reversed(graph.nodes) if n.op == "output")
        node = output.args[0]
        if isinstance(node, torch.fx.Node):
            if node.op == "call_module":
                return _last_leaf(model.get_submodule(node.target), node.target)
            name = getattr(node.target, "__name__", str(node.target))
            if node.op in ("call_function", "call_method") and name in PROBABILITY_FUNCTIONS:
                return (node.name, name)
        return None
    return _last_leaf(model, "")


def _last_leaf(module: nn.Module, path: str) -> tuple[str, str] | None:
    while True:
        for cls, kind in PROBABILITY_ACTIVATIONS.items():
            if isinstance(module, cls):
                return (path, kind)
        children = list(module.named_children())
        if not children:
            return None
        name, module = children[-1]
        path = f"{path}.{name}" if path else name


def check_output(task: Task, output_shape: tuple[int, ...], target_shape: tuple[int, ...],
                 model: nn.Module, source: str | None = None, node_paths: list[str] | None = None) -> None:
    """The model's output (one sample, no batch) must fit the task, the data and the loss."""
    from .checkpoint import node_path_of

    fa = final_activation(model)
    if fa is not None and task.name != "regression":
        path, kind = fa
        node = node_path_of(path, node_paths or []) if path else "the last layer"
        raise TrainingSetupError(
            f"the output ends with {kind}, but the {task.name} loss ({_loss_label(task)}) applies "
            f"softmax itself; training on {kind} outputs "
            "squashes the gradients and learns slowly",
            source=source, path=node if path else None,
            fix=f"remove the final {kind} (act: none on node '{node}'); predictions apply softmax "
                "when probabilities are shown")
    if task.name == "classification":
        if len(output_shape) != 1:
            raise TrainingSetupError(
                f"classification needs one score per class, shape ({task.classes},); the design "
                f"outputs {output_shape}", source=source,
                fix="end the design with global_pool/flatten and a linear layer of out = classes")
        if output_shape[0] != task.classes:
            raise TrainingSetupError(
                f"the design outputs {output_shape[0]} class scores, the data has {task.classes} classes",
                source=source, fix=f"set the last layer's out to {task.classes} (e.g. --set classes={task.classes})")
    elif task.name == "segmentation":
        want = (task.classes, *target_shape)
        if tuple(output_shape) != want:
            raise TrainingSetupError(
                f"segmentation needs scores per class and pixel, shape {want}; the design outputs "
                f"{tuple(output_shape)}", source=source,
                fix=f"end with a 1x1 conv of out = {task.classes} at the input's resolution")
    else:
        if math.prod(output_shape) != math.prod(target_shape):
            raise TrainingSetupError(
                f"regression targets have shape {target_shape}; the design outputs {tuple(output_shape)}",
                source=source, fix=f"end with a linear layer of out = {math.prod(target_shape)}")


def _loss_label(task: Task) -> str:
    return {"ce": "cross entropy", "dice": "Dice", "mse": "MSE"}[task.loss_name]
