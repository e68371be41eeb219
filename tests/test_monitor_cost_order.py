"""The order evidence kept incrementally (order_evidence._order_evidence_kept, what
order_evidence returns on a HealthState) equals the direct computation (_order_evidence) to the
last digit, sample after sample, whatever the batch sizes and however the lists are replaced."""

import numpy as np

from archlab.diagnose.order_evidence import _order_evidence, _order_evidence_kept, order_evidence
from archlab.diagnose.state import HealthState


def _grow(st, rng, classes, sizes, samples, sorted_labels=False):
    t = st.targets
    for i in range(samples):
        b = int(rng.choice(sizes))
        if sorted_labels:
            labels = np.full(b, (i // 3) % classes)
        else:
            labels = rng.choice(classes, size=b, p=np.arange(1, classes + 1) / (classes * (classes + 1) / 2))
        counts = np.bincount(labels, minlength=classes)
        old = t.setdefault("counts", [0] * classes)
        for c in range(classes):
            old[c] += int(counts[c])
        t.setdefault("batch_classes", []).append(int((counts > 0).sum()))
        t.setdefault("batch_sizes", []).append(b)
        st.sample_steps.append(len(st.sample_steps))
        st.losses.append(1.0)
        yield


def test_kept_order_evidence_is_identical_to_the_direct_one_on_every_sample():
    rng = np.random.default_rng(0)
    for classes, sizes, ordered in [(10, [32], False), (3, [32, 32, 17], False), (2, [8, 64], True),
                                    (40, [5, 128, 128, 7], False), (10, [32, 30], True)]:
        st = HealthState(output_width=classes)
        st.targets["kind"] = "classes"
        for _ in _grow(st, rng, classes, sizes, 150, ordered):
            want = _order_evidence(st)
            assert _order_evidence_kept(st) == want      # floats equal to the last digit
            assert order_evidence(st) == want


def test_kept_order_evidence_starts_again_on_new_lists_and_fewer_batches():
    rng = np.random.default_rng(1)
    st = HealthState(output_width=5)
    st.targets["kind"] = "classes"
    for _ in _grow(st, rng, 5, [16, 20], 30):
        pass
    assert _order_evidence_kept(st) == _order_evidence(st)
    t = st.targets
    t["batch_classes"] = list(t["batch_classes"][:10])     # a new, shorter list
    t["batch_sizes"] = list(t["batch_sizes"][:12])          # (lengths may differ: the shorter counts)
    assert _order_evidence_kept(st) == _order_evidence(st)
    assert _order_evidence_kept(st)["samples"] == 10
    t["batch_classes"].extend([1] * 5)                      # grown in place
    t["batch_sizes"].extend([3] * 3)
    assert _order_evidence_kept(st) == _order_evidence(st)
    t["counts"] = [0, 0, 0, 0, 7]                           # one class: no evidence
    assert _order_evidence_kept(st) is None and _order_evidence(st) is None
    st.targets = {"kind": "values", "n": 3}
    assert _order_evidence_kept(st) is None


def test_grow_rows_keeps_room_or_doubles_with_the_rows_done():
    from archlab.diagnose.state import grow_rows

    buf = np.arange(12, dtype=np.int64).reshape(4, 3)
    assert grow_rows(buf, 2, 4) is buf                       # room: the same buffer
    big = grow_rows(buf, 2, 5)
    assert big.shape == (8, 3) and big.dtype == np.int64     # doubled, same row shape and dtype
    assert np.array_equal(big[:2], buf[:2]) and not big[2:].any()   # only the rows done copied
    assert grow_rows(np.zeros(3), 3, 10).shape == (10,)      # to the need when more than double
