"""The ``train`` section: model, solver, schedule, augmentation and their rules."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any, Literal, Self

from pydantic import Field, ModelWrapValidatorHandler, model_validator

from segcore.common.constants import (
    LossName,
    LrSchedule,
    Precision,
    SerializationStrategy,
    SolverType,
)
from segcore.params.base import Problem, Section, duplicates, validate_with_rules


class AugmentationParams(Section):
    """Data augmentation (HALCON: augmentation in create_dl_train_param)."""

    augmentation_percentage: float = Field(50.0, ge=0.0, le=100.0)
    """Share of samples that get one randomly chosen distortion."""
    mirror: Literal["off", "r", "c", "rc"] = "rc"
    """Mirror rows (``r``), columns (``c``), or both."""
    rotate: Literal[0, 90, 180] = 90
    """Rotation step in degrees (90 only for square inputs); 0 is off."""
    brightness_variation: float = Field(20.0, ge=0.0, le=255.0)
    """Brightness offset range +-value on the 0-255 scale; 0 is off."""
    brightness_variation_spot: float = Field(0.0, ge=0.0, le=255.0)
    """Peak of a bright or dark Gaussian spot on the 0-255 scale; 0 is off."""
    contrast_variation: float = Field(0.2, ge=0.0, le=1.0)
    """Contrast factor range 1 +- value; 0 is off."""
    saturation_variation: float = Field(0.0, ge=0.0, le=1.0)
    """Saturation factor range 1 +- value (RGB only); 0 is off."""


class ChangeStrategy(Section):
    """Set a model parameter to given values at given epochs (HALCON's change strategy).

    The value before the first listed epoch is the one of the ``train`` section. With
    SGD a learning-rate change rescales the momentum for one step (HALCON); see
    ``segcore.train.solver``.
    """

    model_param: Literal["learning_rate", "momentum", "weight_prior"] = "learning_rate"
    """Parameter that changes."""
    epochs: list[float]
    """Epochs at which the values take effect (increasing; may be fractional)."""
    values: list[float]
    """New values, one per epoch."""

    @model_validator(mode="after")
    def _check_lengths(self) -> Self:
        # One ValueError with every problem: a nested section may not raise custom
        # error types through the parent's rule check.
        problems = _change_rules(self, set())
        if problems:
            raise ValueError("; ".join(f"{key} {problem}" for key, problem in problems))
        return self


_CHANGE_LIMITS: dict[str, tuple[Callable[[float], bool], str]] = {
    "learning_rate": (lambda v: v > 0, "> 0"),
    "momentum": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "weight_prior": (lambda v: v >= 0, ">= 0"),
}


def _change_rules(p: ChangeStrategy, bad: set[str]) -> list[Problem]:
    """Epochs and values pair up, epochs increase, values suit the changed parameter."""
    out: list[Problem] = []
    if not bad & {"epochs", "values"} and len(p.epochs) != len(p.values):
        out.append(
            ("values", f"has {len(p.values)} entries but epochs has {len(p.epochs)}; give one each")
        )
    if "epochs" not in bad and (
        list(p.epochs) != sorted(set(p.epochs)) or any(e < 0 for e in p.epochs)
    ):
        out.append(("epochs", f"{p.epochs} must be >= 0 and strictly increasing"))
    if not bad & {"values", "model_param"}:
        ok, rule = _CHANGE_LIMITS[p.model_param]
        wrong = [v for v in p.values if not (math.isfinite(v) and ok(v))]
        if wrong:
            out.append(("values", f"{wrong} must be {rule} for {p.model_param}"))
    return out


_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


class TrainParams(Section):
    """Model and training (HALCON: set_dl_model_param, create_dl_train_param)."""

    dataset: str = "data/preprocessed/dataset.parquet"
    """Preprocessed dataset table."""
    out_dir: str = "models"
    """Folder for model bundles (``best/``, ``final/``, ...) and the checkpoint."""
    history: str = "reports/train_history.csv"
    """Per-epoch history (loss, learning rate, measures, seconds); a DVC plot."""
    model: str = "compact"
    """``compact``, ``enhanced``, or a segmentation-models-pytorch architecture name."""
    model_kwargs: dict[str, Any] = {}
    """Further architecture arguments (compact/enhanced: base_channels, depth, norm, residual)."""
    encoder: str | None = None
    """Encoder for segmentation-models-pytorch architectures (e.g. ``resnet18``)."""
    encoder_weights: str | None = None
    """Encoder weights: null (random), a local weights file, or a name smp knows for the
    encoder (e.g. ``imagenet``), downloaded once into the Hugging Face cache."""
    loss: LossName = "ce"
    """``ce`` (HALCON's cross-entropy weighted by the weight images), ``ce+dice`` or ``focal``."""
    dice_weight: float = Field(1.0, ge=0.0)
    """Loss ``ce+dice``: loss = ce + dice_weight * dice (1: nnU-Net's equal parts)."""
    focal_gamma: float = Field(2.0, ge=0.0)
    """Loss ``focal``: the focusing exponent (0 gives ``ce``)."""
    batch_size: int = Field(4, gt=0)
    """Samples per step and process."""
    batch_size_multiplier: int = Field(1, gt=0)
    """Steps whose gradients are accumulated before one update."""
    solver_type: SolverType = "adam"
    """``sgd`` or ``adam``."""
    learning_rate: float = Field(0.003, gt=0)
    """Initial learning rate."""
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    """SGD momentum (segmentation often wants a high one, e.g. 0.99)."""
    adam_beta1: float = Field(0.9, ge=0.0, lt=1.0)
    """Adam: decay of the running gradient mean."""
    adam_beta2: float = Field(0.999, ge=0.0, lt=1.0)
    """Adam: decay of the running squared-gradient mean."""
    adam_epsilon: float = Field(1e-8, gt=0)
    """Adam: added to the denominator for stability."""
    weight_prior: float = Field(0.0001, ge=0.0)
    """L2 regularization factor (added to the gradient as weight_prior * w)."""
    num_epochs: int = Field(15, gt=0)
    """Number of epochs."""
    evaluation_interval_epochs: float = Field(1.0, gt=0)
    """Evaluate on the validation split every this many epochs (may be fractional)."""
    evaluation_comparison_key: Literal[
        "mean_iou", "pixel_accuracy", "mean_accuracy", "frequency_weighted_iou"
    ] = "mean_iou"
    """Validation measure that decides the ``best`` model; higher is better."""
    change_strategies: list[ChangeStrategy] = []
    """Scheduled changes of model parameters."""
    lr_schedule: LrSchedule = "none"
    """Learning-rate decay per update: ``none`` (the change strategies alone), ``poly``
    or ``cosine`` (to 0 at num_epochs; no learning_rate change strategy with them)."""
    warmup_epochs: float = Field(0.0, ge=0.0)
    """Linear learning-rate warm-up over this many epochs (may be fractional); 0 is off."""
    time_budget: float | None = Field(None, gt=0)
    """Wall-clock seconds for the training loop; it stops within one update of the limit
    and keeps the best model. null: no limit."""
    early_stopping_patience: int | None = Field(None, gt=0)
    """Stop after this many evaluations without improvement of the comparison key; null: never."""
    serialization_strategies: list[SerializationStrategy] = ["best", "final"]
    """Which bundles to write: ``best``, ``final``, ``epochs``, ``current``."""
    serialization_epochs: list[int] = []
    """Epochs whose bundle is kept under the ``epochs`` strategy."""
    augmentation: AugmentationParams = AugmentationParams()
    """Data augmentation."""
    foreground_share: float = Field(0.33, ge=0.0, le=1.0, allow_inf_nan=False)
    """Tiled mode: share of the training tiles centred on a pixel of a rare class (every
    class but the background and the ignore classes), nnU-Net's foreground oversampling;
    the other tiles lie at random. Resize mode trains on whole images and ignores it."""
    data_loading: Literal["auto", "memory", "streaming"] = "auto"
    """``memory``: the splits are read into memory once (resize mode only); ``streaming``:
    batches are read from the sample files by worker processes, memory does not grow with
    the dataset; ``auto``: memory for resize-mode splits up to 2 GiB, else streaming."""
    loader_workers: int = Field(0, ge=0)
    """Streaming: processes that read tiles beside training; 0 reads them in the training
    process (memory-mapped: enough when the CPU trains); on a GPU give 2-8 so reading
    overlaps the steps. The result does not depend on it."""
    seed: int = 42
    """Random seed (weights, shuffling, augmentation)."""
    device: str = "auto"
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``."""
    num_threads: int = Field(0, ge=0)
    """CPU threads for torch; 0 keeps torch's default (one per core). The thread count
    changes the float rounding of the weights: give one to repeat a run on a machine with
    another core count."""
    channels_last: bool = True
    """Run the network in channels-last memory layout (faster convolutions on CPU)."""
    precision: Precision = "fp32"
    """``fp32``; ``bf16`` or ``fp16``: mixed precision (autocast forward pass, float32 weights,
    optimizer state and loss; bf16 is native on CPUs with AMX / AVX-512 BF16 and on recent
    GPUs, emulated and slow on other CPUs; fp16 needs CUDA and scales the loss); ``auto``:
    bf16 where the hardware runs it natively, else fp32."""
    nproc: int = Field(1, gt=0)
    """Processes for distributed training when launched from the flow (torchrun)."""

    @model_validator(mode="wrap")
    @classmethod
    def _check_training(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        return validate_with_rules(cls, data, handler, _train_rules)


def _train_rules(p: TrainParams, bad: set[str]) -> list[Problem]:
    """The rules between training keys; each skips when a key it reads is invalid."""
    out: list[Problem] = []
    if "device" not in bad and not _DEVICE.fullmatch(p.device):
        out.append(("device", f"{p.device!r} is unknown; use auto, cpu, cuda or cuda:N"))
    if not bad & {"serialization_strategies", "serialization_epochs", "num_epochs"}:
        out += _serialization_rules(p)
    if not bad & {"change_strategies", "solver_type"}:
        out += _change_strategy_rules(p)
    if not bad & {"change_strategies", "lr_schedule", "warmup_epochs", "num_epochs"}:
        out += _schedule_rules(p)
    return out


def _schedule_rules(p: TrainParams) -> list[Problem]:
    """A decaying schedule owns the learning rate; the warm-up ends before the last epoch."""
    out: list[Problem] = []
    changed = [c.model_param for c in p.change_strategies]
    if p.lr_schedule != "none" and "learning_rate" in changed:
        out.append(
            (
                "lr_schedule",
                f"{p.lr_schedule} sets the learning rate at every update, and so does the "
                "learning_rate change strategy in train.change_strategies; remove that change "
                "strategy (in params.yaml), or set lr_schedule none",
            )
        )
    if p.warmup_epochs and p.warmup_epochs >= p.num_epochs:
        out.append(
            (
                "warmup_epochs",
                f"{p.warmup_epochs} is not below num_epochs ({p.num_epochs}); the warm-up "
                "must end before training does: lower it (e.g. to a tenth of num_epochs)",
            )
        )
    return out


def _serialization_rules(p: TrainParams) -> list[Problem]:
    """``serialization_epochs`` is set exactly when the ``epochs`` strategy is, within range."""
    out: list[Problem] = []
    has_epochs = "epochs" in p.serialization_strategies
    if has_epochs and not p.serialization_epochs:
        out.append(
            (
                "serialization_epochs",
                "is empty but serialization_strategies has 'epochs'; list the epochs",
            )
        )
    if p.serialization_epochs and not has_epochs:
        out.append(("serialization_strategies", "lacks 'epochs' but serialization_epochs is set"))
    outside = [e for e in p.serialization_epochs if not 1 <= e <= p.num_epochs]
    if outside:
        out.append(("serialization_epochs", f"{outside} outside 1..num_epochs ({p.num_epochs})"))
    return out


def _change_strategy_rules(p: TrainParams) -> list[Problem]:
    """One strategy per parameter, and none for a parameter the solver does not use."""
    out: list[Problem] = []
    changed = [c.model_param for c in p.change_strategies]
    twice = duplicates(changed)
    if twice:
        out.append(("change_strategies", f"change {twice} twice; merge them into one"))
    if p.solver_type == "adam" and "momentum" in changed:
        out.append(
            (
                "change_strategies",
                "change momentum, which only solver_type sgd uses; remove it or use sgd",
            )
        )
    return out
