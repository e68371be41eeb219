"""The layer-level health monitor inside generative training: one recorder per network.

Classification runs attach one :class:`~archlab.diagnose.monitor.HealthRecorder` to the model
through the Lightning callback :class:`~archlab.diagnose.callback.HealthMonitor`, which assumes
automatic optimisation: one loss, one backward, one optimizer step per batch. A GAN steps two
networks with two optimisers per batch (manual optimisation), the generator possibly only every
``d_steps`` batches. :class:`GenerativeHealth` drives one recorder per network through the same
public calls (``begin_step``, ``after_loss``, ``before_optimizer_step``, ``end_step``), placed
by the Lightning hooks that manual optimisation also calls:

* ``on_train_batch_start``: ``begin_step`` of every network that steps in this batch (its forward
  hooks are installed before the module's ``training_step`` runs any forward pass);
* ``on_before_backward(loss)``: the loss is kept; ``on_before_optimizer_step(optimizer)``: the
  network that optimizer updates gets ``after_loss`` with the loss of the backward just before
  and ``before_optimizer_step`` (its gradients come from that backward alone);
* ``on_train_batch_end``: ``end_step`` (update ratios from the change its optimizer made).

Each network writes its own record to ``health/<network>/`` (``generator``, ``discriminator``;
``vae``, ``autoencoder``), as the monitor writes ``health/`` of a classification run;
:func:`archlab.diagnose.generative.assess_run` merges their verdicts, named by network, with the
generative detectors' into ``health/events.jsonl``, so ``archlab diagnose RUN`` shows both.

Which detectors run: the layer-level ones (:data:`LAYER_DETECTORS`). The loss rules compare the
loss with a know-nothing level; adversarial losses have none (a healthy generator's loss rises
while its discriminator improves), so for networks trained against a discriminator the loss
parts of ``exploding_gradients`` and ``lr_too_high`` are switched off (thresholds at infinity);
their gradient and update-ratio parts, and the non-finite check, stay. The network's output
activation (the generator's tanh, the decoder's sigmoid) is not judged for saturation: the
images it must produce lie mostly at the range's ends (an MNIST background pixel is -1 or 0).
Every network gets the same layer detectors: what a discriminator's inputs and loss do to them
is handled inside the detectors, for any network. The affine test behind
``missing_nonlinearity`` refuses a probe whose examples are near-copies (generated images early
in training: too alike to tell a piecewise-linear network from an affine one), and
``vanishing_gradients`` leaves out the steps on which the loss itself gave an exactly zero
gradient (a hinge loss whose every margin is met).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from lightning.pytorch.callbacks import Callback
from torch import nn

# the monitor's detectors that read layers (gradients, activations, updates), not the loss level
LAYER_DETECTORS = ("nan_inf", "exploding_gradients", "vanishing_gradients", "dying_relu",
                   "saturated_activations", "lr_too_high", "frozen_layers", "missing_nonlinearity",
                   "batchnorm_small_batch", "unscaled_inputs", "lr_schedule_decayed")
# loss-level parts off for adversarial losses (no know-nothing level to compare with)
ADVERSARIAL_THRESHOLDS = {"exploding_gradients": {"loss_factor": math.inf},
                          "lr_too_high": {"rise_factor": math.inf}}
OUTPUT_KINDS = ("sigmoid", "tanh", "hardsigmoid", "hardtanh", "relu", "relu6")


def split_options(options: dict | None) -> tuple[dict, list[str] | None, dict]:
    """archlab train's monitor options -> (recorder options, generative detector names or None
    for all, generative thresholds). ``detectors`` and ``thresholds`` may name detectors of
    either kind; each goes to its own side."""
    from ...diagnose.detectors import DETECTORS
    from ...diagnose.generative import GENERATIVE_DETECTORS
    from ...errors import UsageError, unknown_name

    options = dict(options or {})
    names = options.pop("detectors", None)
    thresholds = options.pop("thresholds", None) or {}
    for key in list(thresholds) + list(names or []):
        if key not in DETECTORS and key not in GENERATIVE_DETECTORS:
            raise UsageError(unknown_name("detector", key, {**DETECTORS, **GENERATIVE_DETECTORS}))
    layer = [n for n in (names or LAYER_DETECTORS) if n in DETECTORS]
    options["detectors"] = layer
    options["thresholds"] = {k: v for k, v in thresholds.items() if k in DETECTORS}
    generative = None if names is None else [n for n in names if n in GENERATIVE_DETECTORS]
    return options, generative, {k: v for k, v in thresholds.items() if k in GENERATIVE_DETECTORS}


class NetworkWatch:
    """One network's recorder and what it needs from the loop (its optimizer, its last input)."""

    def __init__(self, name: str, network: nn.Module, options: dict, adversarial: bool) -> None:
        from ...diagnose.detectors import DETECTORS
        from ...diagnose.monitor import HealthRecorder

        self.name, self.network = name, network
        opts = dict(options)
        thresholds = {k: dict(v) for k, v in (opts.pop("thresholds", None) or {}).items()}
        if adversarial:
            for det, values in ADVERSARIAL_THRESHOLDS.items():
                known = DETECTORS.get(det)
                for key, value in values.items():
                    if known is not None and key in known.thresholds:
                        thresholds.setdefault(det, {}).setdefault(key, value)
        opts["detectors"] = [n for n in opts.get("detectors") or LAYER_DETECTORS
                             if n in DETECTORS]
        self.recorder = HealthRecorder(thresholds=thresholds, **opts)
        self.recorder.attach(network)
        path, kind = _output_activation(network)
        if kind in OUTPUT_KINDS:   # the images' range, not a fault (see the module docstring)
            self.recorder.state.act_kinds.pop(path, None)
        self.active = False
        self.batches: list[int] = []      # the run's batch number of each of this network's steps
        self._input = None
        self._handle = network.register_forward_pre_hook(self._keep_input)

    def _keep_input(self, module, args) -> None:
        if self.active and self._input is None and args:
            self._input = args[0]

    def begin(self, batch: int) -> None:
        self.active, self._input = True, None
        self.batches.append(batch)
        self.recorder.begin_step()

    def stepped(self, loss) -> bool:
        """The network's backward is done and its optimizer is about to step."""
        ok = True
        if loss is not None:
            ok = self.recorder.after_loss(loss, replay=self._replay)
        self.recorder.before_optimizer_step()
        return ok

    def end(self) -> None:
        if self.active:
            self.recorder.end_step()
        self.active, self._input = False, None

    def _replay(self) -> None:
        if self._input is not None:
            self.network(self._input)

    def finish(self, folder: Path | None) -> None:
        self._handle.remove()
        self.recorder.finish(folder)
        if folder is not None:
            (folder / "batches.json").write_text(json.dumps(self.batches))


class GenerativeHealth(Callback):
    """Drives a :class:`NetworkWatch` per network of a generative module (see the module
    docstring). ``networks``: name -> module, in the module's optimizer order; ``steps_now``:
    name -> callable(module) saying whether that network steps in the coming batch."""

    def __init__(self, folder: str | Path, networks: dict[str, nn.Module], *, adversarial: bool,
                 options: dict | None = None, steps_now: dict | None = None) -> None:
        self.folder = Path(folder)
        self.networks = dict(networks)
        self.adversarial = adversarial
        self.options = dict(options or {})
        self.steps_now = dict(steps_now or {})
        self.watches: dict[str, NetworkWatch] = {}
        self._by_optimizer: dict[int, NetworkWatch] = {}
        self._loss = None
        self._batch = -1
        self._finished = False
        self._writes = True

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage != "fit":
            return
        self.watches = {name: NetworkWatch(name, net, self.options, self.adversarial)
                        for name, net in self.networks.items()}
        for w in self.watches.values():
            w.recorder.on_event = lambda v, w=w: self._on_event(w, v)
        self._writes = trainer.is_global_zero
        self._finished = False
        if self._writes:
            for name in self.watches:
                (self.folder / name).mkdir(parents=True, exist_ok=True)
                (self.folder / name / "events.jsonl").write_text("")

    def on_train_start(self, trainer, pl_module) -> None:
        # a resumed run starts after the batches its per-step record already holds
        self._batch = len(getattr(pl_module, "history", [])) - 1
        self._by_optimizer = {}
        for opt in trainer.optimizers:
            ids = {id(p) for g in opt.param_groups for p in g["params"]}
            for w in self.watches.values():
                if any(id(p) in ids for p in w.network.parameters()):
                    w.recorder.set_optimizer(opt)
                    self._by_optimizer[id(opt)] = w
                    break

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._batch += 1
        self._loss = None
        for name, w in self.watches.items():
            rule = self.steps_now.get(name)
            if rule is None or rule(pl_module):
                w.begin(self._batch)

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        self._loss = loss

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        w = self._by_optimizer.get(id(optimizer))
        if w is None or not w.active:
            return
        ok = w.stepped(self._loss)
        self._loss = None
        if not ok:
            trainer.should_stop = True

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        for w in self.watches.values():
            w.end()

    def on_train_end(self, trainer, pl_module) -> None:
        self._finish()

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._finish()

    def _finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        for name, w in self.watches.items():
            w.finish(self.folder / name if self._writes else None)

    def _on_event(self, watch: NetworkWatch, verdict) -> None:
        if self._writes:
            with open(self.folder / watch.name / "events.jsonl", "a") as fh:
                fh.write(json.dumps(verdict.to_dict()) + "\n")


def _output_activation(network: nn.Module) -> tuple[str, str]:
    from .pair import final_activation_kind

    try:
        return final_activation_kind(network)
    except Exception:   # a user's module the walk cannot read: judge every layer
        return ("", "none")


def health_callback(setup, folder: Path, options: dict | None) -> GenerativeHealth:
    """The callback for a prepared generative run (networks named by their role)."""
    module = setup.module
    if setup.task == "gan":
        networks = {"generator": module.generator, "discriminator": module.discriminator}
        d_steps = max(1, int(setup.config.d_steps))
        steps_now = {"generator": lambda m: getattr(m, "_batches", 0) % d_steps == 0}
        return GenerativeHealth(folder, networks, adversarial=True, options=options,
                                steps_now=steps_now)
    if setup.task == "image-to-image":
        networks = {"generator": module.generator}
        if module.discriminator is not None:
            networks["discriminator"] = module.discriminator
        return GenerativeHealth(folder, networks, adversarial=module.discriminator is not None,
                                options=options)
    return GenerativeHealth(folder, {setup.task: module.model}, adversarial=False, options=options)
