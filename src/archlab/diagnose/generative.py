"""Health of generative training: detectors over the per-step record of a GAN, VAE, autoencoder
or image-to-image run, with documented rules, thresholds and fixes (docs/diagnostics.md).

The generative modules record per step: the discriminator's and generator's losses, the mean
D(x) and D(G(z)) (probabilities for the non-saturating loss), both gradient norms, and for
reconstruction tasks the loss, reconstruction and KL terms; after each epoch the sample writer
adds the spread of the generated samples and, with a judge, the classes they cover
(``health/generative.jsonl``, ``health/samples.jsonl``). The detectors read that record; their
verdicts are :class:`~archlab.diagnose.detectors.Verdict` objects, written to
``health/events.jsonl`` like the health monitor's, so ``archlab diagnose RUN`` reports them.

================= ===================================================================================
detector          rule (defaults in brackets; every threshold can be overridden)
================= ===================================================================================
gan_nonfinite     any recorded loss, score or gradient norm is NaN/Inf (the first step is named)
d_overpowering    over the last ``window`` [25%] of steps, ns loss: the median discriminator loss is
                  below ``d_loss_max`` [0.1] and the median D(G(z)) below ``d_fake_max`` [0.05] (D
                  tells every fake apart), or, any loss, the generator's gradient norm fell below
                  ``g_grad_drop`` [0.01] x its median over the first window (the gradient vanished)
mode_collapse     after ``min_steps`` [200] steps, at the last epoch: the generated samples' spread
                  (mean per-pixel std across samples / the same for real images) is below
                  ``spread_min`` [0.25]; or, gan, the median distance from a sample to its nearest
                  other sample, over the same among as many real images, is below
                  ``neighbour_min`` [0.5] (near-copies; a latent too small to vary the images);
                  or, with a judge, fewer than ``coverage_min`` [0.5] x classes hold >= half a
                  uniform share of the samples
gan_oscillation   ns loss: in the second half of training, the discriminator's margin mean D(x) -
                  mean D(G(z)) over windows of ``window_steps`` [max(5, steps/40)] changes sign at
                  least ``flips`` [3] times with swings of at least ``amplitude`` [0.3]: the pair
                  takes turns winning instead of converging
kl_collapse       vae: the mean KL per sample over the last epoch is below ``kl_min`` [0.5 nats]: the
                  latent carries (almost) no information about the input (posterior collapse)
prior_ignored     vae: the mean KL per latent unit over the last epoch exceeds ``kl_per_unit_max``
                  [10 nats]: codes lie far outside N(0, I), so samples from the prior decode to noise
================= ===================================================================================

Thresholds come from the losses' own scales, not from the fault suite's runs: 2 ln 2 = 1.39 is
the ns discriminator loss of an undecided D, so 0.1 is a D that is nearly always right; a
D(G(z)) of 0.05 rejects the fake at odds of 19 to 1 (a logit of -2.9; an undecided D gives 1 to
1). Both are medians over the window, because "D wins" is a statement about the typical step: a
mean is pulled up by the few batches on which G briefly fools D (measured on the development
fault d_lr_10x: mean 0.054 against a median of 0.026, with one batch at 0.67); 10 nats per
unit is a posterior standard deviation of about e^-9.5 or a mean 4.5 standard deviations out.
The neighbour rule (added when ``mode_collapse`` had never fired in a trained run, set from the
scale alone before it was run: half the distance at which real digits have their nearest
neighbour) reads the 64 fixed-noise samples against 64 real images; noise-like early samples
score above 1. It is not applied to VAEs, whose prior samples are blurred towards one another
by construction.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .detectors import Detector, Verdict

GENERATIVE_DETECTORS: dict[str, type[Detector]] = {}


def register(cls):
    GENERATIVE_DETECTORS[cls.name] = cls
    return cls


@dataclass
class GenerativeRecord:
    """What the generative detectors read (from a run folder or built by hand in tests)."""

    task: str
    steps: list[dict] = field(default_factory=list)       # per training step
    epochs: list[dict] = field(default_factory=list)      # per epoch (sample spread, judge)
    gan_loss: str = "ns"
    latent_units: int = 0
    classes: int = 0

    @property
    def step(self) -> int:
        return len(self.steps) - 1

    def series(self, key: str) -> np.ndarray:
        return np.array([_num(r[key]) for r in self.steps if key in r], dtype=np.float64)

    @classmethod
    def load(cls, run: str | Path) -> GenerativeRecord:
        import yaml

        run = Path(run)
        config = yaml.safe_load((run / "config.yaml").read_text())
        info = json.loads((run / "data.json").read_text()) if (run / "data.json").exists() else {}
        health = run / "health"
        steps = _jsonl(health / "generative.jsonl")
        epochs = _jsonl(health / "samples.jsonl")
        latent = 0
        meta = health / "generative_context.json"
        if meta.exists():
            latent = int(json.loads(meta.read_text()).get("latent_units", 0))
        return cls(config.get("task") or "", steps, epochs, config.get("gan_loss", "ns"), latent,
                   len(info.get("classes", [])))


def _jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _num(v) -> float:
    return float(v) if not isinstance(v, str) else float(v.replace("Infinity", "inf"))


class GenerativeDetector(Detector):
    tasks: tuple[str, ...] = ()

    def check(self, record: GenerativeRecord) -> Verdict | None:  # type: ignore[override]
        raise NotImplementedError


@register
class NonFinite(GenerativeDetector):
    name = "gan_nonfinite"
    rule = "a recorded loss, score or gradient norm is NaN or Inf"
    tasks = ("gan", "image-to-image", "vae", "autoencoder")
    thresholds: dict[str, float] = {}
    fixes = ["lower the learning rates (both nets)", "for wgan-gp, check the penalty weight (10)",
             "look for a log of zero: use the logits losses (no sigmoid on the discriminator)"]

    def check(self, record):
        for r in record.steps:
            bad = [k for k, v in r.items() if k not in ("step", "epoch") and not math.isfinite(_num(v))]
            if bad:
                return self.verdict(record, f"{', '.join(bad)} became non-finite at step {r['step']}",
                                    evidence={"step": r["step"], "quantities": bad})
        return None


def _last(values: np.ndarray, fraction: float) -> np.ndarray:
    n = max(1, int(math.ceil(len(values) * fraction)))
    return values[-n:]


@register
class DOverpowering(GenerativeDetector):
    name = "d_overpowering"
    rule = ("ns loss: median D loss < d_loss_max and median D(G(z)) < d_fake_max over the last window; "
            "any loss: the generator's gradient norm < g_grad_drop x its early median")
    tasks = ("gan", "image-to-image")
    thresholds = {"window": 0.25, "d_loss_max": 0.1, "d_fake_max": 0.05, "g_grad_drop": 0.01, "min_steps": 20}
    fixes = ["lower the discriminator's learning rate (--d-lr) or raise the generator's (TTUR)",
             "one-sided label smoothing (--label-smoothing 0.1)", "fewer discriminator steps (--d-steps 1)",
             "a smaller discriminator, or the hinge / wgan-gp loss whose gradients do not saturate"]

    def check(self, record):
        t = self.t
        d_loss, d_fake, g_grad = record.series("d_loss"), record.series("d_fake"), record.series("g_grad")
        if len(d_loss) < t["min_steps"]:
            return None
        ev = {}
        if record.gan_loss == "ns" and len(d_fake):
            dl, df = float(np.median(_last(d_loss, t["window"]))), float(np.median(_last(d_fake, t["window"])))
            ev.update(median_d_loss=dl, median_d_fake=df)
            if dl < t["d_loss_max"] and df < t["d_fake_max"]:
                return self.verdict(record, f"the discriminator wins: median D loss {dl:.3g} < {t['d_loss_max']} and "
                                    f"median D(G(z)) {df:.3g} < {t['d_fake_max']} over the last "
                                    f"{t['window']:.0%} of steps; the generator learns little", evidence=ev,
                                    layers=["discriminator"])
        if len(g_grad) >= t["min_steps"]:
            early = float(np.median(g_grad[:max(1, int(len(g_grad) * t["window"]))]))
            late = float(np.median(_last(g_grad, t["window"])))
            ev.update(early_g_grad=early, late_g_grad=late)
            if early > 0 and late < t["g_grad_drop"] * early:
                return self.verdict(record, f"the generator's gradient vanished: median norm {late:.3g} late vs "
                                    f"{early:.3g} early (< {t['g_grad_drop']} x)", evidence=ev,
                                    layers=["generator"])
        return None


@register
class ModeCollapse(GenerativeDetector):
    name = "mode_collapse"
    rule = ("sample spread < spread_min x the real images', or (gan) the samples' median nearest-"
            "neighbour distance < neighbour_min x the real images', or (judge) classes covered < "
            "coverage_min x classes")
    tasks = ("gan", "vae")
    thresholds = {"spread_min": 0.25, "neighbour_min": 0.5, "coverage_min": 0.5, "min_steps": 200}
    fixes = ["lower the learning rates, or use --gan-loss wgan-gp / hinge",
             "batch norm in the generator (an un-normalised deep generator collapses easily)",
             "a larger batch; minibatch standard deviation features in the discriminator"]
    vae_fixes = ["a KL weight near 1 (--kl-weight): a heavy KL term makes every code decode alike",
                 "KL annealing (the weight rising from 0 over the first epochs)"]

    def verdict(self, record, message, **kw):
        if record.task == "vae":
            kw["fixes"] = self.vae_fixes
        return super().verdict(record, message, **kw)

    def check(self, record):
        # before min_steps the samples of a healthy run may still look alike (blurry first
        # digits): the detector judges trained generators only
        if not record.epochs or len(record.steps) < self.t["min_steps"]:
            return None
        last = record.epochs[-1]
        spread = last.get("sample_spread")
        ev = {"epoch": last.get("epoch"), "sample_spread": spread}
        if spread is not None and math.isfinite(_num(spread)) and _num(spread) < self.t["spread_min"]:
            return self.verdict(record, f"the samples vary {_num(spread):.2f}x as much as real images "
                                f"(< {self.t['spread_min']}): the generator makes nearly the same image", evidence=ev)
        near = last.get("neighbour_ratio")
        if record.task == "gan" and near is not None and math.isfinite(_num(near)):
            ev["neighbour_ratio"] = _num(near)
            if _num(near) < self.t["neighbour_min"]:
                return self.verdict(record, f"each sample's nearest other sample is {_num(near):.2f}x as far as "
                                    f"between real images (< {self.t['neighbour_min']}): the samples are "
                                    "near-copies of one another, or variations of very few images", evidence=ev)
        covered = last.get("classes_covered")
        if covered is not None and record.classes:
            need = self.t["coverage_min"] * record.classes
            ev.update(classes_covered=covered, classes=record.classes, class_histogram=last.get("class_histogram"))
            if covered < need:
                return self.verdict(record, f"the samples cover {covered} of {record.classes} classes "
                                    f"(< {need:g}): modes are missing", evidence=ev)
        return None


@register
class Oscillation(GenerativeDetector):
    name = "gan_oscillation"
    rule = "ns loss, second half: the windowed margin mean D(x) - mean D(G(z)) flips sign >= flips times, swings >= amplitude"
    tasks = ("gan", "image-to-image")
    thresholds = {"flips": 3, "amplitude": 0.3, "min_steps": 40}
    severity = "warning"
    fixes = ["lower both learning rates (DCGAN: 2e-4 with beta1 0.5)", "TTUR: a slower generator (--lr) than discriminator (--d-lr)",
             "the wgan-gp loss, whose critic gives a smoother signal"]

    def check(self, record):
        if record.gan_loss != "ns":
            return None
        real, fake = record.series("d_real"), record.series("d_fake")
        if len(real) < self.t["min_steps"]:
            return None
        half = len(real) // 2
        margin = real[half:] - fake[half:]
        w = max(5, len(real) // 40)
        windows = np.array([margin[i:i + w].mean() for i in range(0, len(margin) - w + 1, w)])
        if len(windows) < 3:
            return None
        signs = np.sign(windows[np.abs(windows) > 1e-9])
        flips = int((np.diff(signs) != 0).sum())
        swing = float(windows.max() - windows.min())
        ev = {"sign_flips": flips, "swing": swing, "window_steps": w, "windows": len(windows)}
        if flips >= self.t["flips"] and swing >= self.t["amplitude"]:
            return self.verdict(record, f"the discriminator's margin changes sign {flips} times in the second half "
                                f"(swing {swing:.2f}): the pair takes turns winning", evidence=ev)
        return None


def _last_epoch(record: GenerativeRecord, key: str) -> float | None:
    epochs = [r.get("epoch", 0) for r in record.steps if key in r]
    if not epochs:
        return None
    last = max(epochs)
    values = [_num(r[key]) for r in record.steps if key in r and r.get("epoch", 0) == last]
    return float(np.mean(values))


@register
class KLCollapse(GenerativeDetector):
    name = "kl_collapse"
    rule = "vae: mean KL per sample over the last epoch < kl_min nats"
    tasks = ("vae",)
    thresholds = {"kl_min": 0.5}
    fixes = ["a smaller KL weight (--kl-weight, beta) or KL annealing from 0 to 1",
             "a weaker decoder, or fewer latent units"]

    def check(self, record):
        kl = _last_epoch(record, "kl")
        if kl is None or kl >= self.t["kl_min"]:
            return None
        return self.verdict(record, f"the KL term is {kl:.3g} nats per sample (< {self.t['kl_min']}): the "
                            "latent carries almost no information (posterior collapse)", evidence={"kl": kl},
                            layers=["variational"])


@register
class PriorIgnored(GenerativeDetector):
    name = "prior_ignored"
    rule = "vae: mean KL per latent unit over the last epoch > kl_per_unit_max nats"
    tasks = ("vae",)
    thresholds = {"kl_per_unit_max": 10.0}
    severity = "warning"
    fixes = ["a KL weight of about 1 (--kl-weight 1): with beta near 0 the vae is an autoencoder and "
             "samples from N(0, I) decode to noise"]

    def check(self, record):
        kl = _last_epoch(record, "kl")
        if kl is None or not record.latent_units:
            return None
        per = kl / record.latent_units
        if per <= self.t["kl_per_unit_max"]:
            return None
        return self.verdict(record, f"the KL is {per:.3g} nats per latent unit (> {self.t['kl_per_unit_max']}): "
                            "codes lie far outside the prior", evidence={"kl": kl, "kl_per_unit": per,
                                                                         "latent_units": record.latent_units},
                            layers=["variational"])


def make_generative_detectors(thresholds: dict | None = None, names=None) -> list[GenerativeDetector]:
    thresholds = thresholds or {}
    return [cls(**thresholds.get(name, {})) for name, cls in GENERATIVE_DETECTORS.items()
            if names is None or name in names]


def assess(record: GenerativeRecord, thresholds: dict | None = None, names=None) -> list[Verdict]:
    """Every generative detector that applies to the record's task (``names``: only these);
    the verdicts found."""
    out = []
    for det in make_generative_detectors(thresholds, names):
        if record.task in det.tasks:
            v = det.check(record)
            if v is not None:
                out.append(v)
    return out


# the per-network layer monitors' folders (archlab.train.generative.health), in report order
NETWORKS = ("generator", "discriminator", "vae", "autoencoder")


def network_folders(folder: Path) -> list[tuple[str, Path]]:
    return [(n, folder / n) for n in NETWORKS if (folder / n / "series.npz").exists()]


def _batches(sub: Path) -> list[int]:
    path = sub / "batches.json"
    return [int(b) for b in json.loads(path.read_text())] if path.exists() else []


def network_events(folder: Path) -> list[dict]:
    """The layer monitors' verdicts, each named by its network: ``network``, the message
    prefixed ('generator: ...'), layers as 'generator/up1.0', and ``step`` the run's batch
    (``network_step``: the network's own optimizer step)."""
    from .state import read_events

    out = []
    for name, sub in network_folders(folder):
        batches = _batches(sub)
        for e in read_events(sub):
            step = int(e.get("step", 0))
            out.append({**e, "network": name, "network_step": step,
                        "step": batches[step] if 0 <= step < len(batches) else step,
                        "message": f"{name}: {e.get('message', '')}",
                        "layers": [f"{name}/{layer}" for layer in e.get("layers", [])]})
    return out


def merged_state(folder: Path, losses: list[float]):
    """One HealthState for ``archlab diagnose``'s plots: the run's per-step loss and every
    network's per-layer series side by side (layers 'generator/...', 'discriminator/...'),
    on the union of the batches any network sampled (nan where a network was not sampled)."""
    from .state import ACT_SERIES, PARAM_SERIES, HealthState

    state = HealthState()
    state.losses = list(losses)
    parts = []
    for name, sub in network_folders(folder):
        part = HealthState.load(sub)
        batches = _batches(sub)
        at = [batches[s] if 0 <= s < len(batches) else s for s in part.sample_steps]
        parts.append((name, part, at))
    union = sorted({b for _, _, at in parts for b in at})
    state.sample_steps = union
    state.every = [1] * len(union)
    rows = {series: [[] for _ in union] for series in PARAM_SERIES + ACT_SERIES}
    index = {b: i for i, b in enumerate(union)}
    for name, part, at in parts:
        state.param_layers += [f"{name}/{p}" for p in part.param_layers]
        state.act_layers += [f"{name}/{a}" for a in part.act_layers]
        state.act_kinds.update({f"{name}/{a}": k for a, k in part.act_kinds.items()})
        state.frozen.update({f"{name}/{p}": f for p, f in part.frozen.items()})
        for series in PARAM_SERIES + ACT_SERIES:
            width = len(part.param_layers) if series in PARAM_SERIES else len(part.act_layers)
            values = part.series[series]
            got = {index[b]: (values[j] if j < len(values) else []) for j, b in enumerate(at)}
            for i in range(len(union)):
                row = list(got.get(i, []))
                rows[series][i] += row + [math.nan] * (width - len(row))
        if part.nonfinite is not None and state.nonfinite is None:
            state.nonfinite = {**part.nonfinite, "network": name}
    state.series = rows
    return state


def _write_monitor(folder: Path, networks: list[str]) -> None:
    """health/monitor.json: each network monitor's own, and the overhead of all of them over
    the training time they shared (their steps overlap: one batch steps both nets)."""
    own = {}
    for n in networks:
        path = folder / n / "monitor.json"
        own[n] = json.loads(path.read_text()) if path.exists() else {}
    if not own:
        return
    from .state import HealthState

    spent = [HealthState.load(folder / n) for n in networks]
    monitor = sum(s.monitor_seconds for s in spent)
    base = max(s.train_seconds for s in spent) - monitor
    (folder / "monitor.json").write_text(json.dumps({
        "networks": own, "measured_overhead": monitor / base if base > 0 else None}, indent=2))


def assess_run(run: str | Path, thresholds: dict | None = None, detectors=None) -> dict:
    """Assess a generative run folder: the generative detectors (``detectors``: only these
    names) over its record, plus the verdicts of the per-network layer monitors
    (``health/<network>/``). Writes ``health/events.jsonl`` and ``series.npz`` (the per-step
    loss and every network's layers) so ``archlab diagnose`` reads the run like any other."""
    run = Path(run)
    record = GenerativeRecord.load(run)
    verdicts = [v.to_dict() for v in assess(record, thresholds, detectors)]
    folder = run / "health"
    folder.mkdir(parents=True, exist_ok=True)
    events = sorted(verdicts + network_events(folder), key=lambda e: e["step"])
    with open(folder / "events.jsonl", "w") as fh:
        for e in events:
            fh.write(json.dumps(e) + "\n")
    key = "g_loss" if record.task == "gan" else "loss"
    state = merged_state(folder, [(_num(r[key]) if key in r else math.nan) for r in record.steps])
    bad = next((v for v in verdicts if v["detector"] == "gan_nonfinite"), None)
    if bad is not None:
        state.nonfinite = {"step": bad["evidence"].get("step"), "quantities": bad["evidence"].get("quantities"),
                           **({"layer_monitor": state.nonfinite} if state.nonfinite else {})}
    state.save(folder)
    networks = [n for n, _ in network_folders(folder)]
    _write_monitor(folder, networks)
    return {"healthy": not events, "events": events,
            "detectors": [n for n, c in GENERATIVE_DETECTORS.items() if record.task in c.tasks
                          and (detectors is None or n in detectors)],
            "networks": networks}
