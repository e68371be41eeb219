"""One sample of the health monitor, made cheap: a fixed number of fused tensor ops per sample,
whatever the number of layers.

A network of many small layers (a deep narrow MLP) makes per-layer work the monitor's main
cost: Python-level tensor ops cost microseconds each whatever their size, so 33 layers x a
handful of ops each is milliseconds per sample. Here:

* **the hook only appends** ``(module, inputs, output)`` to a list during the sampled forward
  pass (no lookup, no tensor op, no timer); one process-wide forward hook is installed for the
  sampled step only. The list is read once, right after the forward pass
  (:meth:`ActivationSample.collect`);
* :meth:`ActivationSample.reduce` turns all the watched outputs into per-layer statistics in a
  fixed number of ops. Outputs shaped ``(N, F)`` with the same ``N`` (linear layers and their
  activations: the layers of an MLP) are concatenated along the features once, and every
  statistic is a column reduction followed by a segment sum over the layers' columns
  (``index_add_``): mean and standard deviation (two-pass, as ``torch.std_mean``), the units
  never active (> 0) over the last ``dead_window`` samples, the sigmoid/tanh outputs in their
  flat tails. Other small outputs are flattened into one vector and reduced the same way; an
  output larger than FUSE_LIMIT values (a convolution's feature maps: its cost is the data, not
  the op) is reduced on its own, in two vectorised passes (mean, then the squared deviations:
  on a CPU 6x faster than ``torch.std_mean``'s Welford reduction, the same value to rounding),
  and its active units come from one ``amax`` per channel. A map that is the same tensor as
  another (an in-place ReLU returns its input, so a batch norm's output is its ReLU's) is
  reduced once, and the deviations go into buffers kept between samples (SCRATCH_LIMIT);
* :func:`layer_norms` turns the per-parameter norms of gradients, weights and updates
  (three ``_foreach_norm`` results) into per-layer norms with one stack, one square, one
  ``index_add_`` and one square root.

Every result stays on the device; the monitor brings all of a sample back in one
device-to-host copy.
"""

from __future__ import annotations

from collections import deque

import torch

ACT_EXAMPLES = 16  # activation statistics read the first 16 examples of a sampled batch
# outputs up to this many values (of ACT_EXAMPLES examples) are reduced together: (N, F) ones
# column-wise (WIDE_LIMIT), others flattened into one vector with a per-value layer index
WIDE_LIMIT, FUSE_LIMIT = 16384, 4096
# the large maps' deviations are written into buffers kept between samples up to this many
# values in all (16 MB of float32); beyond, into fresh memory on each sample
SCRATCH_LIMIT = 1 << 22
DEAD_KINDS = ("relu", "relu6")
SIGMOID_KINDS = ("sigmoid", "hardsigmoid")
TANH_KINDS = ("tanh", "hardtanh")
SAT_KINDS = SIGMOID_KINDS + TANH_KINDS


def _units_active(y: torch.Tensor) -> torch.Tensor:
    """Per unit, whether it is > 0 anywhere in the batch. Units: features of (N, F), channels of
    (N, C, ...) (PyTorch's layout); a (N,) or scalar output is one unit."""
    if y.dim() < 2:
        return (y > 0).any().reshape(1)
    # the largest value per unit > 0: one vectorised reduction (10x faster on a CPU than
    # any() over a transposed copy of the comparison)
    return y.amax(dim=(0, *range(2, y.dim()))) > 0


def _tails(y: torch.Tensor, kind: str) -> torch.Tensor:
    """Boolean mask of the outputs in the flat tails of a sigmoid (< 0.01 or > 0.99) or a tanh
    (|y| > 0.99)."""
    return ((y < 0.01) | (y > 0.99)) if kind in SIGMOID_KINDS else (y.abs() > 0.99)


def _first(y: torch.Tensor) -> torch.Tensor:
    """The first ACT_EXAMPLES examples of a batched output (a view)."""
    return y[:ACT_EXAMPLES] if y.dim() >= 2 and y.shape[0] > ACT_EXAMPLES else y


class _Layout:
    """Index tensors of one arrangement of watched outputs, built once and reused while the
    arrangement (which layers, their widths) stays the same: on every sample of a run."""

    def __init__(self, wide: list[tuple[str, int]], flat: list[tuple[str, int]],
                 kinds: dict, device) -> None:
        def seg(sizes):
            return torch.repeat_interleave(torch.arange(len(sizes), device=device),
                                           torch.tensor(sizes, device=device, dtype=torch.long))

        self.wide_labels = [k for k, _ in wide]
        self.flat_labels = [k for k, _ in flat]
        widths = [w for _, w in wide]
        self.wide_seg = seg(widths) if wide else None                  # column -> layer
        self.wide_width = torch.tensor(widths, device=device, dtype=torch.float32)
        self.flat_seg = seg([n for _, n in flat]) if flat else None    # value -> layer
        self.flat_n = torch.tensor([n for _, n in flat], device=device, dtype=torch.float32)
        # columns of the ReLU layers among the wide ones, and of the saturating ones
        self.dead_wide = [k for k in self.wide_labels if kinds.get(k) in DEAD_KINDS]
        self.sat_wide = [k for k in self.wide_labels if kinds.get(k) in SAT_KINDS]
        start, cols = 0, {}
        for k, w in wide:
            cols[k] = (start, w)
            start += w

        def take(labels):
            idx = [c for k in labels for c in range(cols[k][0], cols[k][0] + cols[k][1])]
            return torch.tensor(idx, device=device, dtype=torch.long)

        self.dead_cols = take(self.dead_wide) if self.dead_wide else None
        self.sat_cols = take(self.sat_wide) if self.sat_wide else None
        self.sat_sigmoid = (torch.tensor([kinds[k] in SIGMOID_KINDS for k in self.sat_wide
                                          for _ in range(cols[k][1])], device=device)
                            if self.sat_wide else None)
        sat_w = [cols[k][1] for k in self.sat_wide]
        self.sat_seg = seg(sat_w) if sat_w else None
        self.sat_width = torch.tensor(sat_w, device=device, dtype=torch.float32)


class ActivationSample:
    """The watched outputs of one sampled forward pass, and their reduction.

    ``kinds`` maps a layer label to its activation kind ('relu', 'sigmoid', 'tanh', ... or None
    for a weight layer); ``dead_window`` is the number of samples a ReLU unit must stay inactive
    on (the window of activity vectors lives here, across samples)."""

    def __init__(self, kinds: dict[str, str | None], dead_window: int) -> None:
        self.kinds = kinds
        self.window: deque = deque(maxlen=dead_window)
        self._layout: tuple | None = None     # the dead-unit layout the window was built for
        self._cache: dict = {}                # _Layout per arrangement of outputs
        self.outputs: dict[str, torch.Tensor] = {}

    def reset(self) -> None:
        self.outputs = {}

    def add(self, label: str, y: torch.Tensor) -> None:
        """Keep the first call's output of a module (a reference; reduced later)."""
        if label not in self.outputs and y.is_floating_point() and y.numel():
            self.outputs[label] = y

    def reduce(self) -> tuple[list[str], list[torch.Tensor], dict[str, list[str]]]:
        """(labels in the order of the values, [mean, std, dead, saturation] tensors, {'dead':
        labels of the dead values, 'saturation': labels of the saturation values})."""
        with torch.no_grad():
            return self._reduce()

    def _reduce(self):
        outs = self.outputs
        if not outs:
            return [], [], {"dead": [], "saturation": []}
        device = next(iter(outs.values())).device
        key = (tuple([(k, y.shape) for k, y in outs.items()]), str(device))
        lay = self._cache.get(key)   # the same layers and shapes on every sample of a run
        if lay is None:
            lay = self._cache[key] = self._arrange(outs, device)
        wide, flat, large = lay.wide, lay.flat, lay.large
        means, stds, active, tails = [], [], [], []
        if wide:
            x = torch.cat([outs[k] for k, _ in wide], 1)[:ACT_EXAMPLES].float()   # (n, W)
            consts = lay.consts.get(x.shape[0])
            if consts is None:   # the examples per layer and what follows from them, once
                consts = lay.consts[x.shape[0]] = _moment_constants(x.shape[0] * lay.wide_width)
            m, s = self._segment_moments(x.sum(0), x, lay.wide_seg, consts, rows=True)
            means.append(m)
            stds.append(s)
            if lay.dead_cols is not None:
                active.append((x.index_select(1, lay.dead_cols) > 0).any(0))
            if lay.sat_cols is not None:
                xs = x.index_select(1, lay.sat_cols)
                t = torch.where(lay.sat_sigmoid, (xs < 0.01) | (xs > 0.99), xs.abs() > 0.99)
                cnt = torch.zeros(len(lay.sat_wide), device=device).index_add_(
                    0, lay.sat_seg, t.sum(0).float())
                tails.append(cnt / (x.shape[0] * lay.sat_width))
        if flat:
            v = torch.cat([_first(outs[k]).reshape(-1) for k, _ in flat]).float()
            consts = lay.consts.get("flat")
            if consts is None:
                consts = lay.consts["flat"] = _moment_constants(lay.flat_n)
            m, s = self._segment_moments(None, v, lay.flat_seg, consts, rows=False)
            means.append(m)
            stds.append(s)
        if large:   # two passes, as torch.std_mean (7x faster on a CPU than its Welford
            # reduction, the same value to rounding): the mean, then one fused norm of all the
            # deviations (_foreach_norm: no squared copy), scaled by sqrt(n - 1) in one op
            # an output that is the same tensor as an earlier one (an in-place ReLU returns its
            # input: a batch norm's output and its ReLU's are one tensor, read after the
            # forward pass) is reduced once: the same values, the same ops on the same data
            ys = [outs[k] for k in large]
            alias = _aliases(ys)
            unique, where = alias if alias is not None else (ys, None)
            vs = [_first(y).float() for y in unique]
            ms = [v.mean() for v in vs]
            devs = torch._foreach_norm(_deviations(lay, vs, ms))
            if where is not None:
                ms = [ms[i] for i in where]
                devs = [devs[i] for i in where]
            means.append(torch.stack(ms))
            stds.append(torch.stack(devs) / lay.large_scale)
        labels = lay.wide_labels + lay.flat_labels + large
        # ReLU layers outside the wide group, and saturating ones: one op or two each
        # (few in practice: convolutional and sigmoid/tanh networks are shallow)
        dead_labels = list(lay.dead_wide)
        sat_labels = list(lay.sat_wide)
        peaks = []   # the large ReLU outputs' largest value per unit, compared with 0 at once
        for k in lay.flat_labels + large:
            kind = self.kinds.get(k)
            if kind in DEAD_KINDS:
                y = _first(outs[k])
                if k not in lay.large_set:
                    active.append(_units_active(y))
                elif y.dim() >= 2:
                    peaks.append(y.amax(dim=(0, *range(2, y.dim()))))
                else:   # a long (N,) output: one unit, as _units_active
                    peaks.append((y > 0).any().reshape(1).to(y.dtype))
                dead_labels.append(k)
            elif kind in SAT_KINDS:
                tails.append(_tails(_first(outs[k]), kind).float().mean().reshape(1))
                sat_labels.append(k)
        if peaks:   # after every flat ReLU layer in dead_labels: the same order
            active.append((torch.cat(peaks) if len(peaks) > 1 else peaks[0]) > 0)
        values = [torch.cat(means) if len(means) > 1 else means[0],
                  torch.cat(stds) if len(stds) > 1 else stds[0]]
        if active:
            values.append(self._dead(dead_labels, active))
        if tails:
            values.append(torch.cat(tails) if len(tails) > 1 else tails[0])
        return labels, values, {"dead": dead_labels, "saturation": sat_labels}

    def _arrange(self, outs: dict[str, torch.Tensor], device) -> _Layout:
        """Which outputs are reduced how: the wide group, (N, F) outputs with the batch size of
        the first of them and at most WIDE_LIMIT values in ACT_EXAMPLES rows, concatenated along
        the features; other small outputs, flattened into one vector; large ones, one by one."""
        rows = next((y.shape[0] for y in outs.values() if y.dim() == 2), None)
        wide, flat, large = [], [], []
        for k, y in outs.items():
            n = min(y.shape[0], ACT_EXAMPLES) * (y.numel() // max(y.shape[0], 1)) if y.dim() else 1
            if y.dim() == 2 and y.shape[0] == rows and n <= WIDE_LIMIT:
                wide.append((k, int(y.shape[1])))
            elif n <= FUSE_LIMIT:
                flat.append((k, int(_first(y).numel())))
            else:
                large.append(k)
        lay = _Layout(wide, flat, self.kinds, device)
        lay.consts = {}   # _moment_constants of the wide group (by its rows) and the flat one
        lay.wide, lay.flat, lay.large, lay.large_set = wide, flat, large, set(large)
        lay.large_scale = torch.tensor([max(_first(outs[k]).numel() - 1, 1) for k in large],
                                       device=device, dtype=torch.float32).sqrt()
        return lay

    @staticmethod
    def _segment_moments(colsum, x, seg, consts, rows):
        """Per segment mean and unbiased standard deviation (two-pass, as torch.std_mean):
        ``rows`` when x is (examples, columns) and ``seg`` maps columns to layers, else x is a
        vector and ``seg`` maps its values to layers; ``consts``: :func:`_moment_constants` of
        the values per segment (the same on every sample of an arrangement)."""
        z, n, denominator, several, zero = consts
        mean = z.index_add(0, seg, colsum if rows else x) / n   # (out of place: z stays 0)
        dev = x - mean[seg]
        sq = (dev * dev).sum(0) if rows else dev * dev
        var = z.index_add(0, seg, sq) / denominator
        return mean, torch.where(several, var.sqrt(), zero)

    def _dead(self, labels: list[str], parts: list[torch.Tensor]) -> torch.Tensor:
        """Fraction of units never active (> 0) on any example of the last dead_window samples,
        per ReLU layer, from this sample's activity vectors ``parts`` (in ``labels`` order)."""
        active = torch.cat(parts) if len(parts) > 1 else parts[0]
        outs = self.outputs
        units = [outs[k].shape[1] if outs[k].dim() >= 2 else 1 for k in labels]
        layout = tuple(zip(labels, units, strict=True))
        if layout != self._layout:
            self.window.clear()
            self._layout = layout
        self.window.append(active)
        ever = torch.stack(list(self.window)).any(0) if len(self.window) > 1 else active
        key = ("dead", layout, str(active.device))
        cached = self._cache.get(key)
        if cached is None:
            seg = torch.repeat_interleave(torch.arange(len(units), device=active.device),
                                          torch.tensor(units, device=active.device))
            cached = self._cache[key] = (seg, torch.tensor(units, device=active.device,
                                                           dtype=torch.float32))
        seg, n = cached
        live = torch.zeros(len(labels), device=active.device).index_add_(0, seg, ever.float())
        return 1.0 - live / n


def _aliases(ys: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[int]] | None:
    """None when the tensors ``ys`` are distinct objects; else (the distinct ones, in order of
    first appearance; for each of ``ys`` its index among them). Identity, not equal values:
    only a tensor that is the same object (an in-place op's result) is read once."""
    ids = [id(y) for y in ys]
    if len(set(ids)) == len(ids):
        return None
    first: dict[int, int] = {}
    unique: list[torch.Tensor] = []
    where = []
    for key, y in zip(ids, ys, strict=True):
        at = first.get(key)
        if at is None:
            at = first[key] = len(unique)
            unique.append(y)
        where.append(at)
    return unique, where


def _deviations(lay, vs: list[torch.Tensor], ms: list[torch.Tensor]) -> list[torch.Tensor]:
    """``[v - m for v, m in zip(vs, ms)]`` written into buffers kept on the arrangement ``lay``
    (the same subtraction, element for element, into the same strides: identical values and
    the same norm), so a sample does not allocate, and fault in, fresh memory for feature maps
    of 10^5 values each; made again when shapes, strides, dtypes or the device change. Kept
    only up to SCRATCH_LIMIT values in all (a large network's maps are subtracted into fresh
    memory as before, not held between samples)."""
    key = tuple([(v.shape, v.stride(), v.dtype, v.device) for v in vs])
    kept = getattr(lay, "scratch", None)
    if kept is None or kept[0] != key:   # empty_like: the strides v - m would have
        if sum([v.numel() for v in vs]) > SCRATCH_LIMIT:
            return [v - m for v, m in zip(vs, ms, strict=True)]
        kept = lay.scratch = (key, [torch.empty_like(v) for v in vs])
    return [torch.sub(v, m, out=b) for v, m, b in zip(vs, ms, kept[1], strict=True)]


def _moment_constants(n: torch.Tensor) -> tuple:
    """What the moments of segments of ``n`` values each divide by, computed once per
    arrangement instead of on every sample: (zeros to sum into, n, n - 1 at least 1, n > 1,
    the 0 of a segment of one value)."""
    return (torch.zeros(n.shape[0], device=n.device), n, (n - 1).clamp_min(1), n > 1,
            torch.zeros((), device=n.device))


def layer_norms(norms: list[torch.Tensor], owner: torch.Tensor, size: int) -> torch.Tensor:
    """Per-layer norms from per-parameter norms, in one pass: sqrt of the summed squares of the
    parameters each layer owns (``owner[i]`` is the slot of parameter i among ``size``). Several
    groups (gradients, weights, updates) go through one call with their slots offset by the
    number of layers."""
    if not norms:
        return torch.zeros(size)
    sq = torch.stack(norms).float() ** 2        # _foreach_norm gives 0-d tensors
    return torch.zeros(size, device=sq.device).index_add_(0, owner.to(sq.device), sq).sqrt()
