"""Health monitor and detectors: measurements against oracles, the published pitfalls, NaN."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from archlab.diagnose import HealthRecorder, HealthState, make_detectors
from archlab.diagnose.detectors import DETECTORS, Exploding, Unscaled, Vanishing
from archlab.errors import UsageError


def train(model, x, y, steps, *, lr=0.1, every=1, recorder=None, loss_fn=None, adam=False, **kw):
    """A plain PyTorch loop driving the recorder (the Lightning callback uses the same calls)."""
    rec = recorder or HealthRecorder(every=every, **kw)
    opt = (torch.optim.Adam if adam else torch.optim.SGD)(model.parameters(), lr=lr)
    rec.attach(model, optimizer=opt)
    loss_fn = loss_fn or nn.functional.cross_entropy
    for _ in range(steps):
        rec.begin_step(targets=y)
        loss = loss_fn(model(x), y)
        rec.after_loss(loss, replay=lambda: model(x))
        opt.zero_grad()
        loss.backward()
        rec.before_optimizer_step()
        opt.step()
        rec.end_step()
    return rec


def data(n=64, f=16, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, f, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    return x, y


def test_gradient_norms_and_update_ratio_match_sgd():
    """Oracle: SGD moves w by lr*g, so |dw|/|w| = lr*|g|/|w| exactly."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4))
    x, y = data()
    w0 = [p.detach().clone() for p in model.parameters()]
    nn.functional.cross_entropy(model(x), y).backward()
    g = [p.grad.detach().clone() for p in model.parameters()]
    model.zero_grad()
    rec = train(model, x, y, 1, lr=0.1)
    st = rec.state
    assert st.param_layers == ["0", "2"]
    for i in range(len(st.param_layers)):
        gn = math.sqrt(sum(float(t.pow(2).sum()) for t in g[2 * i:2 * i + 2]))
        wn = math.sqrt(sum(float(t.pow(2).sum()) for t in w0[2 * i:2 * i + 2]))
        assert st.series["grad_norm"][0][i] == pytest.approx(gn, rel=1e-5)
        assert st.series["weight_norm"][0][i] == pytest.approx(wn, rel=1e-5)
        assert st.series["update_ratio"][0][i] == pytest.approx(0.1 * gn / wn, rel=1e-4)


def test_dead_fraction_and_saturation_against_direct_count():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 10), nn.ReLU(), nn.Linear(10, 6), nn.Sigmoid(), nn.Linear(6, 4))
    with torch.no_grad():
        model[0].bias[:5] = -100.0   # units 0-4 can never be active
        model[2].weight.mul_(50)     # sigmoid pushed into its tails
    x, y = data()
    rec = train(model, x, y, 1, lr=0.0)
    with torch.no_grad():
        h = model[1](model[0](x))
        s = model[3](model[2](h))
    from archlab.diagnose.monitor import ACT_EXAMPLES

    h, s = h[:ACT_EXAMPLES], s[:ACT_EXAMPLES]     # the statistics read the first 16 examples
    dead = 1 - (h > 0).any(0).float().mean().item()
    sat = ((s < 0.01) | (s > 0.99)).float().mean().item()
    st = rec.state
    assert st.series["dead_fraction"][0][st.act_layers.index("1")] == pytest.approx(dead)
    assert st.series["saturation"][0][st.act_layers.index("3")] == pytest.approx(sat)
    assert dead >= 0.5


def test_hooks_only_on_sampled_steps():
    model = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4))
    x, y = data()
    rec = HealthRecorder(every=3)
    rec.attach(model)
    seen = []
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    hooks = torch.nn.modules.module._global_forward_hooks   # one process-wide hook per sample
    for _ in range(7):
        rec.begin_step()
        seen.append(len(hooks) + sum(len(m._forward_hooks) for m in model.modules()))
        loss = nn.functional.cross_entropy(model(x), y)
        rec.after_loss(loss)
        loss.backward()
        rec.before_optimizer_step()
        opt.step()
        rec.end_step()
    assert [n > 0 for n in seen] == [True, False, False, True, False, False, True]
    assert len(hooks) + sum(len(m._forward_hooks) for m in model.modules()) == 0
    assert rec.state.sample_steps == [0, 3, 6]


def test_schedule_is_a_function_of_the_step():
    """Dense early, then the interval doubles each time the step count doubles."""
    from archlab.diagnose.monitor import is_sampled, sample_interval

    sampled = [s for s in range(600) if is_sampled(s)]
    assert sampled[:16] == list(range(16))
    assert [s for s in sampled if 16 <= s < 40] == [16, 18, 20, 22, 24, 26, 28, 30, 32, 36]
    assert sample_interval(511) == 32 and sample_interval(512) == 64 and sample_interval(10**6) == 64
    assert [s for s in range(100) if is_sampled(s, every=25)] == [0, 25, 50, 75]


def test_same_seed_gives_identical_events_and_samples():
    """Reproducible verdicts: nothing the monitor decides depends on measured time."""
    def run():
        torch.manual_seed(3)
        model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
        x, y = data(n=64)
        rec = train(model, x, y, 120, lr=3.0, recorder=HealthRecorder())
        return rec.state.sample_steps, [v.to_dict() for v in rec.events]

    steps_a, events_a = run()
    steps_b, events_b = run()
    assert steps_a == steps_b and events_a == events_b and events_a


def test_nan_from_custom_op_is_located_and_survived():
    class Log(nn.Module):
        def forward(self, x):
            return torch.log(x)  # no epsilon: log(0) = -inf after a ReLU

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), Log(), nn.Linear(8, 4))
    x, y = data()
    rec = train(model, x, y, 3)
    nf = rec.state.nonfinite
    assert nf["step"] == 0 and nf["layer"] == "2" and nf["cause"] == "forward"
    assert nf["builtin"] is False
    names = [v.detector for v in rec.events]
    assert "nan_inf" in names and "exploding_gradients" not in names
    v = next(v for v in rec.events if v.detector == "nan_inf")
    assert "'2' (Log) makes NaN/Inf from finite inputs and weights" in v.fixes[0]


def test_zero_initialised_network_is_no_gradient_not_exploding():
    """The published pitfall: first/last gradient-norm ratios divide 0 by 0 on a zero-init net."""
    model = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))
    for p in model.parameters():
        nn.init.zeros_(p)
    x, y = data()
    rec = train(model, x, y, 5)
    names = {v.detector: v for v in rec.events}
    assert "exploding_gradients" not in names
    assert "receive no gradient at all" in names["vanishing_gradients"].message
    assert set(names["vanishing_gradients"].layers) >= {"0", "2"}


def test_standardised_inputs_with_long_tails_are_not_unscaled():
    """The other pitfall: a range rule fires on standardised data; ours reads mean and std."""
    st = HealthState(param_layers=["fc"])
    x = torch.randn(10000)
    x[:20] = 60.0                      # rare pixels standardised per feature become huge
    x = (x - x.mean()) / x.std()
    st.input_stats = [(float(x.mean()), float(x.std()))]
    assert Unscaled().check(st) is None
    st.input_stats = [(33.0, 78.0)]    # MNIST left in 0-255
    v = Unscaled().check(st)
    assert v is not None and "mean 33, std 78" in v.message and v.layers == ["fc"]


def test_exploding_requires_a_positive_reference():
    st = HealthState(param_layers=["a", "b"])
    st.losses = [1.0] * 10
    st.series["grad_norm"] = [[0.0, 0.0]] * 3 + [[0.0, 5.0]]
    assert Exploding().check(st) is None           # 0 -> 5 is not "1e3x growth"
    st.series["grad_norm"] = [[1.0, 1.0]] * 3 + [[2e3, 2e3]]
    v = Exploding().check(st)
    assert v is not None and v.message == "total gradient norm grew 2e+03x (from 1.41 to 2.83e+03)"
    st.series["grad_norm"] = [[500.0, 500.0]] * 3 + [[2e3, 2e3]]
    v = Exploding().check(st)
    assert v.message == "total gradient norm 2.83e+03 > limit 1000 with scaled inputs and targets"


def test_huge_regression_targets_are_a_target_scale_fault_not_exploding():
    """Large targets give large gradients by themselves: the verdict names the targets."""
    from archlab.diagnose.taxonomy import UnscaledTargets

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 1))
    x = torch.randn(64, 16)
    y = 1e4 * (x[:, :1] + 3.0)          # targets of order 1e4
    rec = train(model, x, y, 20, lr=1e-3, loss_fn=nn.functional.mse_loss, adam=True)
    names = {v.detector: v for v in rec.events}
    assert "exploding_gradients" not in names
    v = names["unscaled_targets"]
    assert "regression targets are not scaled" in v.message
    assert v.fixes[0].startswith("standardise the targets")
    assert UnscaledTargets().check(HealthState()) is None


def test_vanishing_uses_relative_gradients():
    st = HealthState(param_layers=["first", "mid", "last"])
    st.series["grad_norm"] = [[1e-6, 1e-3, 1.0]]
    st.series["weight_norm"] = [[1.0, 1.0, 1.0]]
    v = Vanishing().check(st)
    assert v.layers == ["first"] and v.evidence["relative_grad"]["first"] == pytest.approx(1e-6)
    st.series["grad_norm"] = [[0.5, 1.0, 1.0]]
    assert Vanishing().check(st) is None


def test_every_detector_documents_rule_thresholds_and_fixes():
    assert len(DETECTORS) >= 12
    for name, cls in DETECTORS.items():
        assert cls.name == name and cls.rule and cls.fixes, name


def test_threshold_and_detector_names_are_checked():
    with pytest.raises(UsageError) as err:
        make_detectors(thresholds={"dying_relu": {"dead_fractoin": 0.4}})
    assert "unknown threshold of detector 'dying_relu' 'dead_fractoin'" in str(err.value)
    assert "did you mean 'dead_fraction'?" in str(err.value)
    with pytest.raises(UsageError) as err:
        make_detectors(["vanishing"])
    assert "did you mean 'vanishing_gradients'?" in str(err.value)
    made = {d.name: d for d in make_detectors(thresholds={"dying_relu": {"dead_fraction": 0.4}})}
    assert made["dying_relu"].t["dead_fraction"] == 0.4 and made["dying_relu"].t is not DETECTORS["dying_relu"].thresholds


def test_files_round_trip_without_pickle(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4))
    x, y = data()
    rec = train(model, x, y, 6, every=2)
    rec.state.validation.append({"step": 5, "epoch": 0, "train_loss": 1.0, "val_loss": 1.1})
    rec.finish(tmp_path)
    with np.load(tmp_path / "series.npz", allow_pickle=False) as z:
        assert z["grad_norm"].shape == (3, 2)
    back = HealthState.load(tmp_path)
    assert back.param_layers == rec.state.param_layers
    assert back.losses == pytest.approx(rec.state.losses)
    assert back.validation[0]["val_loss"] == pytest.approx(1.1)
    monitor = json.loads((tmp_path / "monitor.json").read_text())
    assert monitor["steps"] == 6 and "dying_relu" in monitor["detectors"]


def test_lightning_callback_end_to_end(tmp_path):
    import lightning.pytorch as pl

    from archlab.diagnose import HealthMonitor, read_events

    class Module(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4))
            with torch.no_grad():
                self.net[0].bias.fill_(-50.0)     # every ReLU dead from the start

        def training_step(self, batch, i):
            x, y = batch
            loss = nn.functional.cross_entropy(self.net(x), y)
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    x, y = data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    hm = HealthMonitor(tmp_path / "health", every=1)
    # 24 steps of batches of 16: dying_relu needs 300 watched examples (19 samples)
    trainer = pl.Trainer(max_steps=24, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[hm])
    trainer.fit(Module(), loader)
    events = read_events(tmp_path / "health")
    dying = next(e for e in events if e["detector"] == "dying_relu")
    assert dying["layers"] == ["1"] and dying["evidence"]["dead_fraction"]["1"] == 1.0
    assert dying["thresholds"] == {"dead_fraction": 0.5, "min_examples": 300, "min_steps": 10}
    assert dying["step"] == 18 and dying["evidence"]["examples_per_sample"] == 16
    assert (tmp_path / "health" / "series.npz").exists()
    # layer names drop the LightningModule's 'net.' so they match the network's own paths
    assert hm.state.param_layers == ["0", "2"]


def test_missing_nonlinearity_sees_functional_and_inplace_activations():
    class Functional(nn.Module):
        def __init__(self, inplace):
            super().__init__()
            self.a, self.b, self.inplace = nn.Linear(16, 8), nn.Linear(8, 4), inplace

        def forward(self, x):
            h = self.a(x)
            h = torch.relu_(h) if self.inplace else nn.functional.relu(h)
            return self.b(h)

    x, y = data()
    linear = train(nn.Sequential(nn.Linear(16, 8), nn.Linear(8, 8), nn.Linear(8, 4)), x, y, 1)
    v = next(v for v in linear.events if v.detector == "missing_nonlinearity")
    assert v.layers == ["0", "1", "2"] and "0 -> 1 -> 2" in v.message
    for inplace in (False, True):
        rec = train(Functional(inplace), x, y, 1)
        assert "missing_nonlinearity" not in [v.detector for v in rec.events]


def test_softmax_output_is_reported():
    x, y = data()
    rec = train(nn.Sequential(nn.Linear(16, 4), nn.Softmax(dim=1)), x, y, 3)
    assert "probabilities_as_logits" in [v.detector for v in rec.events]


def test_sigmoid_before_cross_entropy_in_a_hand_written_module():
    """Rows do not sum to 1, the sigmoid is functional code in forward: the op that made the
    output (its autograd node) says it is a probability, from the first samples on."""
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(16, 4)

        def forward(self, x):
            return torch.sigmoid(self.fc(x))

    x, y = data()
    rec = train(Net(), x, y, 31)
    v = next(v for v in rec.events if v.detector == "probabilities_as_logits")
    assert v.step == 2 and v.evidence["output_op"] == "SigmoidBackward"   # 3 samples
    assert "made by a sigmoid" in v.message and v.evidence["class_id_targets"]
    # the same outputs with a loss that expects probabilities (BCE) are fine
    rec = HealthRecorder(every=1)
    rec.set_reference(loss="bce")
    rec = train(Net(), x, y, 31, recorder=rec)
    assert "probabilities_as_logits" not in [v.detector for v in rec.events]
    rec = train(nn.Sequential(nn.Linear(16, 4)), x, y, 2)
    assert "probabilities_as_logits" not in [v.detector for v in rec.events]


class _Squash(nn.Module):
    """A linear layer, then ``1 / (1 + exp(-z))`` written out (no sigmoid op to recognise), or
    nothing; ``shrink`` scales the weights down so that raw logits also lie inside [0, 1]."""

    def __init__(self, squash: bool, shrink: float = 1.0) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 4)
        self.squash = squash
        with torch.no_grad():
            self.fc.weight.mul_(shrink)
            self.fc.bias.fill_(0.5)

    def forward(self, x):
        z = self.fc(x)
        return 1 / (1 + torch.exp(-z)) if self.squash else z


def test_probabilities_are_judged_by_the_op_not_by_values_in_unit_range():
    """Small logits inside [0, 1] are not probabilities: scaling the input moves them out of
    [0, 1] (structure.bounded_probe); a written-out sigmoid stays inside, pressed against 0/1."""
    from archlab.diagnose.structure import bounded_probe

    torch.manual_seed(0)
    x, y = data()
    tiny = _Squash(False, shrink=0.01)          # logits 0.5 +- a little: all inside [0, 1]
    with torch.no_grad():
        assert 0 <= float(tiny(x).min()) and float(tiny(x).max()) <= 1
    assert bounded_probe(tiny, (x,))["bounded"] is False
    rec = train(tiny, x, y, 40, lr=1e-4)
    assert all(rec.state.output_in_unit_range)  # the old value-range rule would have fired
    assert "probabilities_as_logits" not in [v.detector for v in rec.events]
    written = _Squash(True)
    assert bounded_probe(written, (x,))["bounded"] is True
    rec = train(written, x, y, 40)
    v = next(v for v in rec.events if v.detector == "probabilities_as_logits")
    assert v.step == 30 and v.evidence["probe"]["bounded"] and "scaled up" in v.message


def test_zero_initialised_layers_are_named_and_do_not_inflate_the_update_ratio():
    """|dw|/|w| is huge as |w| -> 0 whatever the learning rate: the ratio is judged against
    max(|w|, default-initialisation norm), and symmetric units are the cause."""
    from archlab.diagnose.detectors import _update_ratio, effective_update_ratios
    from archlab.diagnose.structure import identical_units, init_scale

    lin = nn.Linear(64, 32)
    # the oracle: PyTorch's default init of a (32, 64) weight has norm ~ sqrt(32 / 3)
    assert init_scale(list(lin.parameters())) == pytest.approx(float(lin.weight.detach().norm()), rel=0.15)
    assert not identical_units(list(lin.parameters()))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))
    for p in model.parameters():
        nn.init.zeros_(p)
    x, y = data()
    rec = train(model, x, y, 12, adam=True, lr=1e-3)
    names = {v.detector: v for v in rec.events}
    assert "lr_too_high" not in names
    med, per = _update_ratio(rec.state, 2)
    st = rec.state
    i = st.param_layers.index("4")
    u, w = st.series["update_ratio"][1][i], st.series["weight_norm"][1][i]
    assert u > 0.5                              # raw |dw|/|w| after one step: |w| ~1e-2 of its scale
    # oracle by hand: |dw| = u * |w|, over max(|w|, sqrt(out / 3)) for the (4, 32) head
    assert effective_update_ratios(st)[1][i] == pytest.approx(u * w / max(w, math.sqrt(4 / 3)))
    assert effective_update_ratios(st)[1][i] < 0.05
    assert per["4"] < 0.3 and med < 0.3
    v = names["symmetric_init"]
    assert v.step == 10 and set(v.layers) == {"0", "2"}
    # a zero-initialised head on a random body (a common choice) is not symmetric for long
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    nn.init.zeros_(model[2].weight)
    nn.init.zeros_(model[2].bias)
    rec = train(model, x, y, 12, adam=True, lr=1e-3)
    assert rec.state.symmetry["initial"] == ["2"] and rec.state.symmetry["still"] == []
    assert "symmetric_init" not in [v.detector for v in rec.events]


def test_symptoms_are_attributed_to_the_causes_that_explain_them():
    """Causes explain symptoms: a symptom raised beside a cause that can produce it carries
    the cause (explained_by); alone it stands as "cause unknown"; a cause that cannot produce
    it (a frozen layer cannot make the loss swing) does not claim it."""
    from archlab.diagnose.detectors import Verdict, attribute

    flat = Verdict("loss_not_decreasing", 104, "", kind="symptom")
    swing = Verdict("oscillating_loss", 90, "", kind="symptom")
    frozen = Verdict("frozen_layers", 0, "")
    explains = {d: cls.explains for d, cls in DETECTORS.items()}
    attribute([flat, swing], explains)
    assert flat.explained_by == [] and swing.explained_by == []
    attribute([frozen, flat, swing], explains)
    assert flat.explained_by == ["frozen_layers"] and swing.explained_by == []
    high = Verdict("lr_too_high", 3, "")
    attribute([frozen, flat, swing, high], explains)
    assert flat.explained_by == ["frozen_layers", "lr_too_high"]
    assert swing.explained_by == ["lr_too_high"]
    assert {d for d, c in DETECTORS.items() if c.kind == "symptom"} == {"loss_not_decreasing",
                                                                          "oscillating_loss"}
    assert flat.to_dict()["kind"] == "symptom"


def test_oscillation_is_judged_against_the_loss_own_noise_and_level():
    """Constructed curves with a known answer: swings of a LOW loss (far below the know-nothing
    level) count; noise, isolated spikes, a converged plateau and a falling loss do not."""
    from archlab.diagnose.detectors import Oscillating

    rng = np.random.default_rng(1)
    t = np.arange(160)

    def fires(curve, classes=10):
        st = HealthState(param_layers=["a"], losses=[float(v) for v in curve])
        st.reference = {"classes": classes}     # know-nothing level ln 10 = 2.3
        return Oscillating().check(st) is not None

    square = 0.3 * (1 + 0.4 * np.sign(np.sin(2 * np.pi * t / 20 + 0.1)))   # 0.18 <-> 0.42
    assert fires(square + rng.normal(0, 0.02, t.size))   # rises of 0.24 << 0.3 x 2.3
    assert fires(1.0 + 0.4 * np.sin(2 * np.pi * t / 20) + rng.normal(0, 0.05, t.size))
    assert not fires(2.3 * np.exp(-t / 50) + 0.1 + rng.normal(0, 0.1, t.size))
    assert not fires(0.01 + np.abs(rng.normal(0, 0.003, t.size)))            # converged
    assert not fires(1.0 + rng.normal(0, 0.05, t.size) + (rng.random(t.size) < 0.05) * 5)
    # a converged small-batch run: most batches ~0, a third hold a mistake (two-valued losses,
    # whose chunk medians jump: the null spread comes from the same losses in random order)
    two_valued = lambda: np.where(rng.random(t.size) < 1 / 3, 1.5 + rng.random(t.size),  # noqa: E731
                                  0.02 * rng.random(t.size))
    false = sum(fires(1 + rng.normal(0, 0.2, t.size)) + fires(1 + 0.1 * rng.standard_t(2, t.size))
                + fires(two_valued()) + fires(rng.exponential(0.3, t.size)) for _ in range(50))
    assert false == 0                           # white, heavy-tailed, two-valued, skewed noise


def test_loss_curve_detectors_on_known_curves():
    from archlab.diagnose.detectors import LossFlat, LrLow, Oscillating, Overfitting

    rng = np.random.default_rng(0)
    healthy = list(2.3 * np.exp(-np.arange(200) / 40) + 0.05 * rng.random(200))
    st = HealthState(param_layers=["a"], losses=healthy)
    assert LossFlat().check(st) is None and Oscillating().check(st) is None
    # a noisy plateau near zero is not an oscillation (relative noise is large, absolute tiny)
    st.losses = list(0.02 + 0.02 * rng.random(200))
    assert Oscillating().check(st) is None
    swings = [2.0] * 10 + [6.0] * 10 + [2.5] * 10 + [7.0] * 10 + [2.2] * 10 + [6.5] * 10 + [2.4] * 10 + [6.8] * 10
    st.losses = [2.3] * 20 + swings
    v = Oscillating().check(st)
    assert v is not None and v.message.startswith("loss oscillates: 4 rises")
    st.losses = [2.30 + 0.01 * float(rng.random()) for _ in range(120)]
    assert LossFlat().check(st).evidence["change"] > -0.05
    st.series["update_ratio"] = [[2e-7]] * 3
    st.series["grad_norm"] = [[0.0]] * 3        # no gradient: not the learning rate's fault
    assert LrLow().check(st) is None
    st.series["grad_norm"] = [[0.1]] * 3
    assert "median update/weight ratio 2e-07 < 0.0001" in LrLow().check(st).message
    # Adam at lr 1e-5 moves weights of rms ~0.1 by ~1e-4 of themselves a step: ten times below
    # the healthy ~1e-3; a healthy ratio with the same flat loss is not the learning rate
    st.series["update_ratio"] = [[5e-5]] * 3
    assert LrLow().check(st) is not None
    st.series["update_ratio"] = [[1e-3]] * 3
    assert LrLow().check(st) is None
    st.series["update_ratio"] = [[2e-7]] * 3
    st.validation = [{"step": 30 * i + 29, "epoch": i, "train_loss": t, "val_loss": v}
                     for i, (t, v) in enumerate([(2.0, 2.1), (1.0, 1.3), (0.5, 1.5), (0.2, 1.8)])]
    v = Overfitting().check(st)
    assert v is not None and v.evidence["best_epoch"] == 1
    # the standard error: the spread of the last two epochs' batch losses (steps 60-119), from
    # their successive differences (a falling loss is not noise)
    spread = float(np.std(np.diff(st.losses[60:120]), ddof=1)) / math.sqrt(2)
    assert v.evidence["standard_error"] == pytest.approx(spread)
    # the same curves with batch losses that swing by 0.5: the rise is within the noise
    st.losses = [2.3 + 0.5 * float(rng.standard_normal()) for _ in range(120)]
    assert Overfitting().check(st) is None


def test_lightning_survives_nan_and_names_the_layer(tmp_path):
    import lightning.pytorch as pl

    from archlab.diagnose import HealthMonitor, read_events

    class Breaks(nn.Module):
        """Divides by a norm without an epsilon; the norm is 0 from the 4th training call on
        (the monitor's affine test runs the network once more, in evaluation mode)."""

        def __init__(self):
            super().__init__()
            self.calls = 0

        def forward(self, x):
            self.calls += self.training
            scale = x.norm() * (0.0 if self.calls >= 4 else 1.0)
            return x / scale

    class Module(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(16, 8), Breaks(), nn.Linear(8, 4))

        def training_step(self, batch, i):
            x, y = batch
            loss = nn.functional.cross_entropy(self.net(x), y)
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    x, y = data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    hm = HealthMonitor(tmp_path / "health")
    trainer = pl.Trainer(max_steps=50, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[hm])
    trainer.fit(Module(), loader)
    assert trainer.global_step == 4                 # stopped after the first NaN step
    nf = json.loads((tmp_path / "health" / "nonfinite.json").read_text())
    assert nf["step"] == 3 and nf["layer"] == "1" and nf["type"] == "Breaks"
    assert nf["cause"] == "forward" and nf["loss"] == "nan"
    events = read_events(tmp_path / "health")
    assert [e["detector"] for e in events if e["step"] == 3] == ["nan_inf"]


def test_loss_rules_compare_with_the_know_nothing_level_and_show_a_drop_as_negative():
    """Not the first loss: dropout may inflate it; the reference is -ln(1/C) (or the label
    entropy); a loss 2 % below that level is reported as '-2.x%'."""
    from archlab.diagnose.baselines import loss_reference
    from archlab.diagnose.detectors import LossFlat

    st = HealthState(param_layers=["a"])
    st.reference = {"classes": 10}
    st.losses = [6.0] * 5 + [0.98 * math.log(10)] * 115     # inflated first losses
    ref = loss_reference(st)
    assert ref.kind == "chance" and ref.value == pytest.approx(math.log(10))
    v = LossFlat().check(st)
    assert v is not None and "-2.0% from the know-nothing level 2.3" in v.message
    st.reference = {"label_entropy": 1.0}                    # imbalanced labels: lower level
    assert "+125.7% from the know-nothing level 1" in LossFlat().check(st).message
    st.losses = [0.5] * 120
    assert LossFlat().check(st) is None                       # 50 % below the level: learning
