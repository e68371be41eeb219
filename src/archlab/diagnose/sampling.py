"""One sample of the health monitor, made cheap: a fixed number of fused tensor ops per sample,
whatever the number of layers.

A network of many small layers (a deep narrow MLP) made the old per-layer work the monitor's
main cost: on every sampled step each watched module's hook ran its own ``std_mean``, its own
dead-unit count and saturation count, and each layer's norms went through Python. Here:

* **hooks only stash** a reference to the first :data:`ACT_EXAMPLES` examples of each watched
  module's output (a view, no copy) during the sampled forward pass; one process-wide forward
  hook is installed for the sampled step only (one registration instead of one per module);
* :meth:`ActivationSample.reduce` turns all the stashed outputs into per-layer statistics with
  one concatenation and segment sums (``index_add_``): mean and standard deviation of every
  small layer (two-pass, as ``torch.std_mean``; a layer with more than FUSE_LIMIT values, whose
  cost is its data rather than the op, keeps its own ``std_mean``), the fraction of never-active ReLU units over the last
  ``dead_window`` samples (one ``any`` over all fully connected ReLU layers at once), and the
  fraction of sigmoid/tanh outputs in their flat tails;
* :func:`layer_norms` sums per-parameter norms into per-layer norms with one ``index_add_``.

Every result stays on the device; the monitor brings all of a sample back in one
device-to-host copy.
"""

from __future__ import annotations

from collections import deque

import torch

ACT_EXAMPLES = 16  # activation statistics read the first 16 examples of a sampled batch
FUSE_LIMIT = 4096  # outputs up to this many values (of ACT_EXAMPLES examples) are reduced together
DEAD_KINDS = ("relu", "relu6")
SIGMOID_KINDS = ("sigmoid", "hardsigmoid")
TANH_KINDS = ("tanh", "hardtanh")


def _units_active(y: torch.Tensor) -> torch.Tensor:
    """Per unit, whether it is > 0 anywhere in the batch. Units: features of (N, F), channels of
    (N, C, ...) (PyTorch's layout); a (N,) or scalar output is one unit."""
    if y.dim() < 2:
        return (y > 0).any().reshape(1)
    return (y > 0).transpose(0, 1).reshape(y.shape[1], -1).any(1)


def _segments(sizes: list[int], device) -> torch.Tensor:
    return torch.repeat_interleave(torch.arange(len(sizes), device=device),
                                   torch.tensor(sizes, device=device))


class ActivationSample:
    """The watched outputs of one sampled forward pass, and their reduction.

    ``kinds`` maps a layer label to its activation kind ('relu', 'sigmoid', 'tanh', ... or None
    for a weight layer); ``dead_window`` is the number of samples a ReLU unit must stay inactive
    on (the window of activity vectors lives here, across samples)."""

    def __init__(self, kinds: dict[str, str | None], dead_window: int) -> None:
        self.kinds = kinds
        self.window: deque = deque(maxlen=dead_window)
        self._layout: tuple | None = None     # the dead-unit layout the window was built for
        self._cache: dict = {}                # segment indices per layout
        self.outputs: dict[str, torch.Tensor] = {}

    def reset(self) -> None:
        self.outputs = {}

    def add(self, label: str, y: torch.Tensor) -> None:
        """From the hook: keep the first call's output of a module (a view of ACT_EXAMPLES)."""
        if label in self.outputs or not y.is_floating_point() or not y.numel():
            return
        yd = y.detach()
        self.outputs[label] = yd[:ACT_EXAMPLES] if yd.dim() >= 2 and yd.shape[0] > ACT_EXAMPLES else yd

    def reduce(self) -> tuple[list[str], list[torch.Tensor], dict[str, list[str]]]:
        """(labels in the order of the values, [mean, std, dead, saturation] tensors, {'dead':
        labels of the dead values, 'saturation': labels of the saturation values})."""
        outs = self.outputs
        labels = list(outs)
        if not labels:
            return [], [], {"dead": [], "saturation": []}
        # small outputs (many narrow layers: the cost is per op) are fused; a large output (a
        # convolution's feature maps: the cost is the data) keeps its own std_mean, no copy
        labels = [k for k in labels if outs[k].numel() <= FUSE_LIMIT] + \
                 [k for k in labels if outs[k].numel() > FUSE_LIMIT]
        small = [k for k in labels if outs[k].numel() <= FUSE_LIMIT]
        means, stds = [], []
        if small:
            device = outs[small[0]].device
            flat = torch.cat([outs[k].flatten() for k in small]).float()
            seg, n = self._segment_index("all", [outs[k].numel() for k in small], device)
            mean = torch.zeros(len(small), device=device).index_add_(0, seg, flat) / n
            dev = flat - mean[seg]
            var = torch.zeros(len(small), device=device).index_add_(0, seg, dev * dev) / (n - 1).clamp_min(1)
            means.append(mean)
            stds.append(torch.where(n > 1, var.sqrt(), torch.zeros_like(var)))
        for k in labels[len(small):]:
            sd, m = torch.std_mean(outs[k].float())
            means.append(m.reshape(1))
            stds.append(sd.reshape(1))
        mean = torch.cat(means) if len(means) > 1 else means[0]
        std = torch.cat(stds) if len(stds) > 1 else stds[0]
        dead_labels, dead = self._dead([k for k in labels if self.kinds.get(k) in DEAD_KINDS])
        sat_labels = [k for k in labels if self.kinds.get(k) in SIGMOID_KINDS + TANH_KINDS]
        values = [mean, std]
        if dead is not None:
            values.append(dead)
        if sat_labels:
            tails = []
            for k in sat_labels:   # few layers in practice: sigmoid/tanh nets are shallow
                y = outs[k]
                tails.append(((y < 0.01) | (y > 0.99)).float().mean() if self.kinds[k] in SIGMOID_KINDS
                             else (y.abs() > 0.99).float().mean())
            values.append(torch.stack(tails).reshape(-1))
        return labels, values, {"dead": dead_labels, "saturation": sat_labels}

    def _segment_index(self, key: str, sizes: list[int], device) -> tuple[torch.Tensor, torch.Tensor]:
        cached = self._cache.get((key, tuple(sizes), str(device)))
        if cached is None:
            cached = (_segments(sizes, device), torch.tensor(sizes, device=device, dtype=torch.float32))
            self._cache[(key, tuple(sizes), str(device))] = cached
        return cached

    def _dead(self, labels: list[str]) -> tuple[list[str], torch.Tensor | None]:
        """Fraction of units never active (> 0) on any example of the last dead_window samples,
        per ReLU layer: one ``any`` over all (N, F) layers at once, one per other layer."""
        if not labels:
            return [], None
        outs = self.outputs
        flat2d = [k for k in labels if outs[k].dim() == 2]
        rows = {outs[k].shape[0] for k in flat2d}
        parts, order = [], []
        if flat2d and len(rows) == 1:
            parts.append((torch.cat([outs[k] for k in flat2d], dim=1) > 0).any(0))
            order += flat2d
        else:
            flat2d = []
        for k in labels:
            if k not in flat2d:
                parts.append(_units_active(outs[k]))
                order.append(k)
        active = torch.cat(parts) if len(parts) > 1 else parts[0]
        units = [outs[k].shape[1] if outs[k].dim() >= 2 else 1 for k in order]
        layout = tuple(zip(order, units, strict=True))
        if layout != self._layout:
            self.window.clear()
            self._layout = layout
        self.window.append(active)
        ever = torch.stack(list(self.window)).any(0) if len(self.window) > 1 else active
        seg, n = self._segment_index("dead", units, active.device)
        live = torch.zeros(len(order), device=active.device).index_add_(0, seg, ever.float())
        return order, 1.0 - live / n


def layer_norms(norms: list[torch.Tensor], owner: torch.Tensor, layers: int) -> torch.Tensor:
    """Per-layer norms from per-parameter norms: sqrt of the summed squares of the parameters
    each layer owns (``owner[i]`` is the layer of parameter i)."""
    if not norms:
        return torch.zeros(layers)
    sq = torch.stack(norms).float() ** 2   # _foreach_norm gives 0-d tensors
    return torch.zeros(layers, device=sq.device).index_add_(0, owner.to(sq.device), sq).sqrt()
