"""The training configuration: one frozen, typed record, saved with every run (``config.yaml``).

Defaults follow deep-learning-designs (DD, principle C14): Adam with lr 1e-3, betas 0.9/0.999,
eps 1e-8 "often do well"; AdamW when weight decay is wanted; SGD with Nesterov momentum 0.9 as
the alternative. Options map one to one onto the ``archlab train`` flags.
"""

from __future__ import annotations

import secrets
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import UsageError, closest
from .prepare import AugmentSpec

# A split must hold something out: validation picks the kept epoch and early stopping, test gives
# the final figures (C9). One of them may be 0 (docs/training.md#splits says what then happens).
NOTHING_HELD_OUT = ("the split holds nothing out: with no validation and no test samples no "
                    "figure of the run would measure data the network has not trained on")
SPLIT_FIX = ("keep a validation or a test part, e.g. 0.8,0.1,0.1 (or 0.9,0.1,0 for validation "
             "only, 0.9,0,0.1 for a test split only)")


class TrainConfig(BaseModel):
    """Everything that decides how a run trains. Unknown options are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # task and loss
    task: Literal["classification", "regression", "segmentation", "gan", "vae", "autoencoder",
                  "image-to-image"] | None = Field(None, description="None = the data's natural task")
    loss: Literal["ce", "dice", "mse", "bce", "l1"] | None = Field(None, description="None = the task's default")
    # schedule of work
    epochs: int = Field(10, gt=0, description="passes over the training split")
    batch: int = Field(64, gt=0, description="samples per optimiser step")
    # optimiser (C14)
    optimizer: Literal["adam", "adamw", "sgd"] = Field("adam", description="adam | adamw | sgd (Nesterov)")
    lr: float = Field(1e-3, gt=0, description="learning rate; Adam's default 1e-3")
    betas: tuple[float, float] = Field((0.9, 0.999), description="Adam/AdamW moment decay rates")
    eps: float = Field(1e-8, gt=0, description="Adam/AdamW denominator guard")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD Nesterov momentum")
    schedule: Literal["constant", "cosine", "onecycle"] = Field(
        "constant", description="lr schedule, stepped per batch")
    # regularisation (C4) and clipping (C6)
    l2: float = Field(0.0, ge=0, description="weight decay on conv/linear weights (decoupled for adamw)")
    l1: float = Field(0.0, ge=0, description="L1 penalty on conv/linear weights, added to the loss")
    kl_weight: float = Field(1.0, ge=0, description="weight of variational blocks' KL term, if any")
    aux_weight: float = Field(0.3, ge=0, description="loss weight of extra outputs (auxiliary heads, "
                              "Szegedy et al. 2015: 0.3); used in training only")
    clip: float | None = Field(None, gt=0, description="gradient clipping threshold; None = off")
    clip_by: Literal["norm", "value"] = Field("norm", description="clip the global norm or each value")
    # early stopping on the validation metric
    patience: int | None = Field(None, gt=0, description="epochs without improvement before stopping")
    # data handling (C7, C9)
    split: tuple[float, float, float] = Field((0.7, 0.2, 0.1), description="train/val/test fractions")
    stratify: bool = Field(True, description="stratify splits by class (classification)")
    scale: bool = Field(True, description="standardise inputs with training-split statistics")
    scale_targets: bool = Field(True, description="regression: standardise targets with training-split "
                                "statistics (metrics and predictions stay in the data's units)")
    augment: AugmentSpec = Field(AugmentSpec(), description="image augmentation of training batches")
    workers: int = Field(0, ge=0, description="data-loader processes; 0 = in-process (data is in memory)")
    # reproducibility (C13)
    seed: int | Literal["random"] = Field(0, description="one seed for python/numpy/torch/workers")
    deterministic: bool = Field(False, description="force deterministic algorithms (slower)")
    # transfer (C15)
    init_from: str | None = Field(None, description="run folder or checkpoint to take matching weights from")
    freeze: tuple[str, ...] = Field((), description="node-path glob patterns whose weights stay fixed")
    # scale-out: passed to lightning.Trainer unchanged
    accelerator: str = Field("auto", description="cpu | gpu | auto ...")
    devices: int | str = Field(1, description="devices per node, or 'auto'")
    num_nodes: int = Field(1, gt=0, description="machines")
    strategy: str = Field("auto", description="auto | ddp | ddp_spawn | fsdp ...")
    precision: str = Field("32-true", description="32-true | bf16-mixed | 16-mixed ...")
    loop: Literal["auto", "lightning"] = Field(
        "auto", description="auto: archlab's own loop for one process on the CPU in 32-bit precision "
        "(lightning.Trainer otherwise); lightning: always lightning.Trainer")
    # generative tasks (archlab.train.generative; docs/training.md#generative-tasks)
    discriminator: str | None = Field(None, description="gan, image-to-image: the discriminator design")
    d_variables: dict[str, int | float | str | bool] = Field({}, description="discriminator design variables")
    gan_loss: Literal["ns", "hinge", "wgan-gp"] = Field("ns", description="ns (non-saturating) | hinge | wgan-gp")
    d_lr: float | None = Field(None, gt=0, description="discriminator lr; None = lr (TTUR: d_lr > lr)")
    d_steps: int = Field(1, gt=0, description="discriminator steps per generator step")
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="one-sided: real targets 1 - s (ns loss)")
    gp_weight: float = Field(10.0, ge=0, description="wgan-gp: gradient penalty weight (Gulrajani 2017)")
    g_ema: float = Field(0.999, ge=0, lt=1, description="gan: decay of the generator's weight average "
                         "that samples come from (Yazici et al. 2019); 0 = off")
    r1: float = Field(0.0, ge=0, description="gan: R1 weight on real images, r1 / 2 x E|grad_x D(x)|^2 "
                      "(Mescheder et al. 2018); 0 = off")
    adversarial: float = Field(0.01, ge=0, description="image-to-image: adversarial loss weight with a discriminator")
    corrupt: str | None = Field(None, description="autoencoder/image-to-image input corruption: mask=0.5, noise=0.3, "
                                "blur=1.5, erase=0.4")
    judge: bool = Field(True, description="gan, vae: judge samples with a classifier trained on the data")
    judge_samples: int = Field(1000, gt=0, description="samples generated to judge a generator")
    judge_cache: str | None = Field(None, description="gan, vae: folder of the cached judge classifiers; "
                                    "None = ~/.cache/archlab/judges/")
    # output
    out: str = Field("runs", description="folder that holds run folders")
    name: str | None = Field(None, description="run folder name; None = design-data-time")
    progress: bool = Field(True, description="show a progress bar")
    health: bool = Field(True, description="record training health in health/ (archlab.diagnose)")
    save_every: int = Field(1, gt=0, description="write the resumable checkpoint every N epochs")
    checkpoint_interval: float = Field(
        10.0, ge=0, description="archlab's loop: write the checkpoints at the end of an epoch once this "
        "many seconds have passed since the last write (exact copies are kept in memory meanwhile; "
        "always written after the last epoch, on Ctrl-C and on errors); 0 = every epoch")

    @field_validator("split")
    @classmethod
    def _split(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(f < 0 for f in v) or abs(sum(v) - 1.0) > 1e-6 or v[0] <= 0:
            raise ValueError(f"split fractions must be >= 0, sum to 1 and train > 0; got {v}")
        if v[1] == 0 and v[2] == 0:
            raise ValueError(NOTHING_HELD_OUT)
        return v

    @model_validator(mode="after")
    def _loss_fits(self) -> TrainConfig:
        if self.loss == "dice" and self.task not in (None, "segmentation"):
            raise ValueError("loss 'dice' is for segmentation")
        return self

    def resolved_seed(self) -> TrainConfig:
        """``seed: random`` picks one now, so the run records the seed it actually used."""
        if self.seed == "random":
            return self.model_copy(update={"seed": secrets.randbelow(2**31 - 1)})
        return self


def make_config(options: dict) -> TrainConfig:
    """Options (from the API or the CLI) -> TrainConfig, with errors in archlab's format."""
    try:
        return TrainConfig(**options)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "options"
        if err["type"] == "extra_forbidden":
            best = closest(field, TrainConfig.model_fields)
            raise UsageError(f"unknown training option '{field}'",
                             path=f"--{field.split('.')[0].replace('_', '-')}",
                             fix=f"did you mean '{best}'?" if best else
                             "valid options: " + ", ".join(TrainConfig.model_fields)) from None
        name = field.split(".")[0]
        message = str(err["msg"]).removeprefix("Value error, ")  # pydantic's prefix for our checks
        raise UsageError(f"training option '{field}': {message}; received {err.get('input')!r}",
                         path=f"--{name.replace('_', '-')}",
                         fix=SPLIT_FIX if name == "split" else TrainConfig.model_fields[name].description
                         if name in TrainConfig.model_fields else None) from None
