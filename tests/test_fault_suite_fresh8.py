"""Integrity of the EIGHTH fresh held-out fault suite (archlab.diagnose.fault_catalogue_fresh8).

Only the catalogue is checked here, never the detectors' verdicts on it: the suite is judged
once, by ``benchmarks/fault_suite.py --fresh8``, so that no test tunes a rule to it. Every run
below has the monitor off. The checks are written once, in ``tests/fault_suite_integrity.py``
(listed there); this module describes the suite (:data:`SUITE`: its counts, data and knobs) and
holds its own checks: its data sets, the churn codes, the scaler applied to the training split only,
and a ``.detach()`` that keeps function and layers.
"""

from __future__ import annotations

import pytest
import torch

from archlab.diagnose.fault_catalogue_fresh8 import (
    CHURN_CODES,
    CHURN_LEVELS,
    GRAVITY,
    HEALTHY,
    prepare,
    raw,
)

pytest.register_assert_rewrite("fault_suite_integrity")   # its asserts explained as here

from fault_suite_integrity import (  # noqa: E402
    Suite,
    _same,
    integrity_tests,
    sorted_targets,
    stated_label_noise,
    unscaled_inputs,
    wider_targets,
)


def data_checks():
    x, y = raw("galaxies")
    assert x.shape == (1200, 1, 20, 20) and set(y.unique().tolist()) == {0, 1, 2}
    assert torch.equal(x, x.round()) and float(x.min()) >= 0 and float(x.max()) > 500  # counts
    assert 70 < float(x.median()) < 160   # the sky
    x, y = raw("ising")
    assert x.shape == (1200, 1, 16, 16) and set(x.unique().tolist()) == {-1.0, 1.0}
    # the temperature bands order the nearest-neighbour agreement (periodic lattice)
    agree = (x * torch.roll(x, 1, 2) + x * torch.roll(x, 1, 3)).mean((1, 2, 3)) / 2
    means = [float(agree[y == c].mean()) for c in range(3)]
    assert means[0] > means[1] > means[2] > 0, means
    x, y = raw("wing")
    assert x.shape == (1500, 10) and float(x[:, 8].min()) >= 1700 and 100 < float(y.min())
    assert float(y.max()) < 600   # pounds
    x, y = raw("projectile")
    assert x.shape == (1500, 7) and float(y.min()) > 0 and float(y.max()) > 300   # metres
    v0, ang = x[:, 0], torch.deg2rad(x[:, 1])   # drag only shortens the vacuum range
    vacuum = v0 * torch.cos(ang) * (v0 * torch.sin(ang) + torch.sqrt((v0 * torch.sin(ang)) ** 2
                                                                      + 2 * GRAVITY * x[:, 6])) / GRAVITY
    assert bool((y[:, 0] <= vacuum * 1.05).all())
    x, y = raw("churn")
    assert x.shape == (1800, 8) and torch.bincount(y).tolist() == [600, 600, 600]
    for col, levels in zip(CHURN_CODES, CHURN_LEVELS, strict=True):
        assert set(x[:, col].unique().tolist()) == set(range(levels)), col
    assert float(x[:, 0].max()) > 70 and float(x[:, 1].max()) > 100   # months, dollars
    x, y = raw("activity")
    assert x.shape == (1200, 3, 64) and set(y.unique().tolist()) == {0, 1, 2, 3}
    norm = x.norm(dim=1).mean(1)   # gravity in m/s^2 on the idle windows
    assert abs(float(norm[y == 0].mean()) - GRAVITY) < 0.2
    x, y = raw("lotka")
    assert x.shape == (1500, 2, 48) and torch.equal(x, x.round()) and float(x.min()) >= 0
    assert 0.6 <= float(y.min()) and float(y.max()) <= 1.4
    x, y = raw("dartboard")
    assert x.shape == (2000, 2) and float(x.norm(dim=1).max()) <= 1.0
    assert int(torch.bincount(y).min()) > 400


def val_unscaled_first(s, split, twin_split):
    """The scaler applied to the training split only: validation alone changes."""
    if not s.prep.get("val_unscaled"):
        return False
    (xtr, ytr, xva, _), (txtr, tytr, txva, _) = split, twin_split
    assert _same(xtr, txtr) and _same(ytr, tytr) and not _same(xva, txva), s.name
    x, _ = raw(s.data)
    assert float(xva.mean()) > 1 and float(xva.max()) <= float(x.max())
    return True


def gradients_differ(s, a, b, x):
    """The same function and layers: the gradients differ (a .detach() in the forward pass)."""
    a(x).sum().backward()
    b(x).sum().backward()
    ga = [p.grad for p in a.parameters()]
    gb = [p.grad for p in b.parameters()]
    assert any((u is None) != (v is None) or (u is not None and not torch.allclose(u, v))
               for u, v in zip(ga, gb, strict=True)), s.name
    assert any(u is None for u in ga)   # the layers before the detach get no gradient


SUITE = Suite(
    number=8,
    min_faults=40,
    runner_data=("dartboard", "churn"),
    scale_keys=frozenset({"unscaled", "raw_targets", "val_unscaled"}),   # validation too
    data_checks=data_checks,
    knob_checks=(
        ("label_noise", stated_label_noise),
        ("sort", sorted_targets),
        ("unscaled", unscaled_inputs(5, 1)),
        ("raw_targets", wider_targets(10)),
    ),
    data_fault_first=val_unscaled_first,
    same_function=gradients_differ,
)
globals().update(integrity_tests(SUITE))


def test_churn_codes_are_never_scaled():
    """The entity-embedding twin reads the category codes: scaling leaves them as codes."""
    s = next(s for s in HEALTHY if s.data == "churn" and s.path != "archlab")
    xtr, _, xva, _ = prepare(s, 0)
    for col, levels in zip(CHURN_CODES, CHURN_LEVELS, strict=True):
        assert set(xtr[:, col].unique().tolist()) <= set(range(levels)), col
        assert set(xva[:, col].unique().tolist()) <= set(range(levels)), col
    assert abs(float(xtr[:, 0].mean())) < 1e-4 and abs(float(xtr[:, 0].std()) - 1) < 1e-3
