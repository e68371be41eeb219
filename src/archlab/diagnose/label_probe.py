"""The label probe of the health monitor (read by :mod:`archlab.diagnose.detectors_labels`).

:class:`LabelProbe` keeps ``PROBE_PER_SAMPLE`` training examples of each sampled classification
batch until ``PROBE_EXAMPLES`` are held (a fixed set, chosen by the sampling schedule alone), and
every ``LABEL_PROBE_EVERY`` steps from ``LABEL_PROBE_FROM`` on runs the model on them (evaluation
mode, no gradients) to record which of their labels the model fits, which it contradicts, and how
confidently. :class:`~archlab.diagnose.monitor.HealthRecorder` owns one and calls
:meth:`LabelProbe.observe` on every sampled step.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .structure import _first_tensor

# examples kept per sample, in all, at least, input values
PROBE_PER_SAMPLE, PROBE_EXAMPLES, PROBE_MIN, PROBE_VALUES = 8, 128, 32, 1 << 22
PROBE_CLASS_MIN = 4              # a class's fitted fraction is read from >= 4 probe examples
LABEL_PROBE_FROM, LABEL_PROBE_EVERY = 64, 64   # probe evaluations from step 64, every 64 steps
PROBE_NEIGHBOURS = 3             # each probe example's nearest probe examples (label_noise)


def _lower_median(values: list[float]) -> float:
    """The lower of the two middle values for an even count (torch.median's convention); nan
    for none."""
    if not values:
        return math.nan
    return sorted(values)[(len(values) - 1) // 2]


def neighbours(x: torch.Tensor, k: int) -> list[list[int]]:
    """Each probe example's ``k`` nearest other probe examples in input space (the label
    probe's neighbour test): Euclidean on float inputs, Hamming on integer ones (token ids)."""
    n = x.shape[0]
    if n <= k:
        return []
    with torch.no_grad():
        flat = x.reshape(n, -1)
        if flat.is_floating_point():
            d = torch.cdist(flat.float(), flat.float())
        else:   # row by row: n x n x width booleans at once could be large
            d = torch.stack([(flat != flat[i]).sum(1) for i in range(n)]).float()
        d.fill_diagonal_(math.inf)
        return d.topk(k, dim=1, largest=False).indices.tolist()


class LabelProbe:
    """The fixed training examples of the label probe and their evaluations."""

    def __init__(self) -> None:
        self.x: list[torch.Tensor] = []   # fixed training examples (joined once, then one tensor)
        self.y: list[torch.Tensor] = []
        self.held = 0                      # examples in the probe
        self.next_step = LABEL_PROBE_FROM
        self.labels: list[int] | None = None
        self.near: list[list[int]] = []

    def observe(self, st, call: tuple | None, y: torch.Tensor | None,
                t: torch.Tensor | None) -> None:
        """One sampled step: ``call`` is (module, inputs) of the model's output ``y``, ``t`` the
        targets; appends an evaluation to ``st.label_probe`` when one is due."""
        if call is None or y is None or t is None or t.is_floating_point() or t.dim() != 1:
            return
        if y.dim() != 2 or y.shape[1] < 2 or len(call[1]) != 1 or y.shape[0] != t.shape[0]:
            return
        x = call[1][0]
        if not isinstance(x, torch.Tensor) or x.dim() < 1 or x.shape[0] != t.shape[0]:
            return
        held = self.held
        cap = max(PROBE_MIN, min(PROBE_EXAMPLES, PROBE_VALUES // max(1, x[0].numel())))
        if held < cap:
            k = min(PROBE_PER_SAMPLE, cap - held)
            self.x.append(x[:k].detach().clone())
            self.y.append(t[:k].detach().clone())
            self.held += len(self.y[-1])   # (fewer than k in a small batch)
            held += k
        if st.step < self.next_step or held < PROBE_MIN:
            return
        # the first sample at or after each multiple of LABEL_PROBE_EVERY (with the default
        # schedule: every multiple; with every=k, the next sampled step)
        self.next_step = (st.step // LABEL_PROBE_EVERY + 1) * LABEL_PROBE_EVERY
        mod = call[0]
        if len(self.x) > 1:   # joined once: the probe is the same set from then on
            self.x, self.y = [torch.cat(self.x)], [torch.cat(self.y)]
        xp, yp = self.x[0], self.y[0].long()
        modes = [(m, m.training) for m in mod.modules()]   # restored one by one: a
        try:                                                # frozen batch norm stays in eval
            mod.eval()
            with torch.no_grad():
                out = _first_tensor(mod(xp))
        except Exception:   # the probe is best effort: keep training alive
            return
        finally:
            for m, training in modes:
                m.training = training
        if out is None or out.dim() != 2 or out.shape[0] != len(yp) or int(yp.max()) >= out.shape[1]:
            return
        op = st.output_op[-1] if st.output_op else ""
        out = out.float()
        p = (out if op.startswith("SoftmaxBackward") else out.exp() if "LogSoftmax" in op
             else torch.softmax(out, 1))
        conf, pred = p.max(1)
        # every example's predicted class, top-class confidence and loss on its given label
        # (-ln p(label), the cross entropy the validation loss averages), brought back in one
        # copy; everything else is counted from that copy and the fixed probe's labels (copied
        # once) in Python: 128 examples are cheaper there than in ~140 small tensor ops
        nll = -p.gather(1, yp[:, None]).squeeze(1).clamp_min(1e-12).log()
        every = torch.stack((pred.to(conf.dtype), conf, nll)).tolist()
        classes = int(out.shape[1])
        if self.labels is None or len(self.labels) != len(yp):
            self.labels = yp.tolist()
            self.near = neighbours(xp, PROBE_NEIGHBOURS)   # once per probe size
        labels, n = self.labels, len(self.labels)
        predicted = [int(c) for c in every[0]]
        confidence = every[1]
        counts, hits = [0] * classes, [0] * classes
        wrong, right = [], []
        for i, (c, y_i) in enumerate(zip(predicted, labels, strict=True)):
            counts[y_i] += 1
            if c == y_i:
                hits[y_i] += 1
                right.append(confidence[i])
            else:
                wrong.append(i)
        wrong_conf = [confidence[i] for i in wrong]
        # fractions in float32 and the lower median, as the tensor ops gave them before
        f32 = np.float32
        st.label_probe.append({
            "step": st.step, "n": n, "classes": classes,
            "fitted": float(f32(n - len(wrong)) / f32(n)),
            "per_class_fitted": {c: float(f32(hits[c]) / f32(k)) for c, k in enumerate(counts)
                                 if k >= PROBE_CLASS_MIN},
            "contradicted": wrong, "predicted": [predicted[i] for i in wrong],
            "confidence_contradicted": _lower_median(wrong_conf),
            "confidence_fitted": _lower_median(right),
            "labels": labels, "all_predicted": predicted,
            "all_confidence": [round(c, 4) for c in confidence],
            "all_label_loss": [round(c, 4) for c in every[2]], "neighbours": self.near})
