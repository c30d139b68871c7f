"""Typed parameters, one class per section of ``params.yaml``, loaded in one place.

``params.yaml`` is the only place where defaults live for a pipeline run; the classes
here mirror its sections field for field (the defaults below are what a section gets when
a key is left out). Loading validates the whole file and reports every problem at once,
each naming the key and the fix. Stage code receives these objects and never opens
``params.yaml`` itself.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal, Self, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from segcore.constants import (
    DomainHandling,
    NormalizationType,
    SerializationStrategy,
    SolverType,
    Split,
)
from segcore.errors import ParamsError

DEFAULT_PARAMS_FILE = "params.yaml"


class Section(BaseModel):
    """Base of every section: unknown keys are errors, field docstrings are the help."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True)


# --------------------------------------------------------------------------- synth


class SynthParams(Section):
    """The synthetic pill dataset (the embedded default data)."""

    out_dir: str = "data/raw/pills"
    """Folder that receives ``images/`` and ``labels/``."""
    num_images: int = Field(160, gt=0)
    """Number of image/label pairs to generate."""
    width: int = Field(256, ge=64)
    """Image width in pixels."""
    height: int = Field(256, ge=64)
    """Image height in pixels."""
    defect_free_fraction: float = Field(0.2, ge=0.0, le=1.0)
    """Share of images with no defect at all."""
    seed: int = 42
    """Random seed; the same seed gives byte-identical files."""


# --------------------------------------------------------------------------- dataset


class DatasetParams(Section):
    """Reading the dataset (HALCON: read_dl_dataset_segmentation)."""

    image_dir: str = "data/raw/pills/images"
    """Folder of images (sub-folders are searched too)."""
    segmentation_dir: str = "data/raw/pills/labels"
    """Folder of label images: one channel, pixel value = class id."""
    class_names: list[str] = ["good", "contamination", "crack"]
    """Class names, in the order of ``class_ids``."""
    class_ids: list[int] = [0, 1, 2]
    """Class ids as they appear in the label images (0..65535)."""
    label_prefix: str = ""
    """Prefix of label file names: label of ``a.png`` is ``<prefix>a<suffix>.*``."""
    label_suffix: str = ""
    """Suffix of label file names (before the extension), e.g. ``_label``."""
    ignore_unmatched: bool = False
    """Skip images without a label (and labels without an image) instead of failing."""
    out: str = "data/dataset/dataset.parquet"
    """Where the dataset table is written."""

    @model_validator(mode="after")
    def _check_classes(self) -> Self:
        problems = []
        if len(self.class_names) != len(self.class_ids):
            problems.append(
                f"class_names has {len(self.class_names)} entries but class_ids has "
                f"{len(self.class_ids)}; give one name per id"
            )
        dup_ids = sorted({i for i in self.class_ids if self.class_ids.count(i) > 1})
        if dup_ids:
            problems.append(f"class_ids has duplicates {dup_ids}; each id must appear once")
        dup_names = sorted({n for n in self.class_names if self.class_names.count(n) > 1})
        if dup_names:
            problems.append(f"class_names has duplicates {dup_names}; each name must appear once")
        bad = [i for i in self.class_ids if not 0 <= i <= 65535]
        if bad:
            problems.append(f"class_ids {bad} out of range; ids must be in 0..65535")
        if not self.class_ids:
            problems.append("class_ids is empty; list the class ids of your label images")
        if problems:
            raise ValueError("; ".join(problems))
        return self


# --------------------------------------------------------------------------- split


class SplitParams(Section):
    """Splitting into train / validation / test (HALCON: split_dl_dataset)."""

    dataset: str = "data/dataset/dataset.parquet"
    """Input dataset table."""
    out: str = "data/dataset/split.parquet"
    """Output dataset table with the ``split`` column."""
    training_percent: float = Field(70.0, ge=0.0, le=100.0)
    """Percentage of samples for training."""
    validation_percent: float = Field(15.0, ge=0.0, le=100.0)
    """Percentage of samples for validation; the rest is test."""
    seed: int = 42
    """Random seed; the same seed gives the same split."""
    overwrite: bool = False
    """Re-split a dataset that already has a split (otherwise it is kept)."""

    @model_validator(mode="after")
    def _check_sum(self) -> Self:
        if self.training_percent + self.validation_percent > 100.0:
            raise ValueError(
                f"training_percent + validation_percent = "
                f"{self.training_percent + self.validation_percent} exceeds 100; lower one of them"
            )
        return self


# --------------------------------------------------------------------------- preprocess

IMAGENET_MEAN_255 = [123.675, 116.28, 103.53]
IMAGENET_STD_255 = [58.395, 57.12, 57.375]


class PreprocessParams(Section):
    """HALCON's preprocessing parameters (create_dl_preprocess_param).

    Stored with the preprocessed dataset and in every model bundle, so inference
    preprocesses new images exactly as training did.
    """

    image_width: int = Field(256, gt=0)
    """Network input width; images are resized to it (aspect ratio not kept)."""
    image_height: int = Field(256, gt=0)
    """Network input height."""
    image_num_channels: Literal[1, 3] = 3
    """Network input channels; grey and RGB images are converted to it."""
    image_range_min: float = -127.0
    """Grey value that the darkest input maps to (normalization ``none`` on 8-bit)."""
    image_range_max: float = 128.0
    """Grey value that the brightest input maps to."""
    normalization_type: NormalizationType = "none"
    """``none``, ``first_channel``, ``all_channels`` or ``constant_values``."""
    domain_handling: DomainHandling = "full_domain"
    """``full_domain``, or ``crop_domain`` to crop to the region of interest first."""
    domain_roi: list[int] | None = None
    """Region of interest ``[row1, col1, row2, col2]`` (inclusive) for ``crop_domain``;
    per-sample rectangles may come from the dataset's ``domain_roi`` column instead."""
    ignore_class_ids: list[int] = []
    """Class ids left out of loss and measures (weight 0, never predicted)."""
    set_background_id: int | None = None
    """Merge the classes of ``class_ids_background`` into this id."""
    class_ids_background: list[int] = []
    """Class ids merged into ``set_background_id``."""
    mean_values_normalization: list[float] = IMAGENET_MEAN_255
    """Per-channel mean for ``constant_values`` (0-255 scale)."""
    deviation_values_normalization: list[float] = IMAGENET_STD_255
    """Per-channel deviation for ``constant_values`` (0-255 scale)."""

    @model_validator(mode="after")
    def _check_rules(self) -> Self:
        problems = []
        if self.image_range_min >= self.image_range_max:
            problems.append(
                f"image_range_min ({self.image_range_min}) must be below image_range_max "
                f"({self.image_range_max})"
            )
        if (self.set_background_id is None) != (not self.class_ids_background):
            problems.append(
                "set_background_id and class_ids_background come together: set both or neither"
            )
        if (
            self.set_background_id is not None
            and self.set_background_id in self.class_ids_background
        ):
            problems.append(
                f"set_background_id {self.set_background_id} is also in class_ids_background; "
                "the two must not overlap"
            )
        bg = set(self.class_ids_background) | (
            {self.set_background_id} if self.set_background_id is not None else set()
        )
        clash = sorted(bg & set(self.ignore_class_ids))
        if clash:
            problems.append(
                f"ignore_class_ids {clash} also appear in the background settings; "
                "an ignore id may not be merged into the background"
            )
        if self.normalization_type == "constant_values":
            for key in ("mean_values_normalization", "deviation_values_normalization"):
                values = getattr(self, key)
                if len(values) not in (1, self.image_num_channels):
                    problems.append(
                        f"{key} needs 1 or {self.image_num_channels} values (one per channel), "
                        f"got {len(values)}"
                    )
            if any(v <= 0 for v in self.deviation_values_normalization):
                problems.append("deviation_values_normalization must be > 0")
        if self.domain_handling == "crop_domain" and self.domain_roi is not None:
            roi = self.domain_roi
            if len(roi) != 4 or roi[0] > roi[2] or roi[1] > roi[3] or min(roi) < 0:
                problems.append(
                    f"domain_roi {roi} is not a rectangle [row1, col1, row2, col2] with "
                    "0 <= row1 <= row2 and 0 <= col1 <= col2"
                )
        if problems:
            raise ValueError("; ".join(problems))
        return self


class ClassWeightParams(Section):
    """Class weights (calculate_dl_segmentation_class_weights)."""

    max_weight: float = Field(1000.0, gt=0)
    """Upper clip of the computed class weights."""
    weights: list[float] | None = None
    """User-given weights, one per class id; they replace the computed ones."""

    @model_validator(mode="after")
    def _check_weights(self) -> Self:
        if self.weights is not None and any(w < 0 or not math.isfinite(w) for w in self.weights):
            raise ValueError(f"weights {self.weights} must be finite and >= 0")
        return self


class PreprocessStageParams(Section):
    """The preprocess stage: HALCON's preprocess parameters plus class weights and I/O."""

    dataset: str = "data/dataset/split.parquet"
    """Input dataset table (must have a split)."""
    out_dir: str = "data/preprocessed"
    """Output folder: ``dataset.parquet`` and ``samples/`` (one file per sample)."""
    workers: int = Field(0, ge=0)
    """Worker processes; 0 means one per CPU core."""
    overwrite: bool = False
    """Rewrite samples even when their inputs and parameters did not change."""
    param: PreprocessParams = PreprocessParams()
    """HALCON's preprocessing parameters."""
    class_weights: ClassWeightParams = ClassWeightParams()
    """Class weight computation."""


# --------------------------------------------------------------------------- train


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
    """Set a model parameter to given values at given epochs (HALCON's change strategy)."""

    model_param: Literal["learning_rate", "momentum", "weight_prior"] = "learning_rate"
    """Parameter that changes."""
    epochs: list[float]
    """Epochs at which the values take effect (increasing)."""
    values: list[float]
    """New values, one per epoch."""

    @model_validator(mode="after")
    def _check_lengths(self) -> Self:
        if len(self.epochs) != len(self.values):
            raise ValueError(
                f"epochs ({len(self.epochs)}) and values ({len(self.values)}) need the same length"
            )
        if list(self.epochs) != sorted(self.epochs):
            raise ValueError(f"epochs {self.epochs} must be increasing")
        return self


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
    encoder: str | None = None
    """Encoder for segmentation-models-pytorch architectures (e.g. ``resnet18``)."""
    encoder_weights: str | None = None
    """Local weights file for the encoder; nothing is ever downloaded."""
    batch_size: int = Field(8, gt=0)
    """Samples per step."""
    batch_size_multiplier: int = Field(1, gt=0)
    """Steps whose gradients are accumulated before one update."""
    solver_type: SolverType = "adam"
    """``sgd`` or ``adam``."""
    learning_rate: float = Field(0.002, gt=0)
    """Initial learning rate."""
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    """SGD momentum (Adam: beta1)."""
    weight_prior: float = Field(0.0001, ge=0.0)
    """L2 regularization factor."""
    num_epochs: int = Field(30, gt=0)
    """Number of epochs."""
    evaluation_interval_epochs: float = Field(1.0, gt=0)
    """Evaluate on the validation split every this many epochs (may be fractional)."""
    evaluation_comparison_key: str = "mean_iou"
    """Measure that decides the ``best`` model; higher is better."""
    change_strategies: list[ChangeStrategy] = []
    """Scheduled changes of model parameters."""
    serialization_strategies: list[SerializationStrategy] = ["best", "final"]
    """Which bundles to write: ``best``, ``final``, ``epochs``, ``current``."""
    serialization_epochs: list[int] = []
    """Epochs whose bundle is kept under the ``epochs`` strategy."""
    augmentation: AugmentationParams = AugmentationParams()
    """Data augmentation."""
    seed: int = 42
    """Random seed (weights, shuffling, augmentation)."""
    device: str = "auto"
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``."""
    num_threads: int = Field(0, ge=0)
    """CPU threads for torch; 0 keeps torch's default."""
    nproc: int = Field(1, gt=0)
    """Processes for distributed training when launched from the flow (torchrun)."""


# --------------------------------------------------------------------------- evaluate


class EvaluateParams(Section):
    """Evaluation and report (HALCON: evaluate_dl_model)."""

    bundle: str = "models/best"
    """Model bundle to evaluate."""
    dataset: str = "data/preprocessed/dataset.parquet"
    """Preprocessed dataset table."""
    split: Split = "test"
    """Split to evaluate."""
    measures: list[str] = ["all"]
    """Measures to compute; ``all`` gives every one."""
    batch_size: int = Field(8, gt=0)
    """Samples per forward pass."""
    worst_k: int = Field(6, ge=0)
    """Number of worst samples (by per-image mean IoU) shown in the report."""
    report_dir: str = "reports"
    """Folder for metrics.json, plots and the report."""
    device: str = "auto"
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""


# --------------------------------------------------------------------------- infer


class InferParams(Section):
    """Inference on new images (HALCON: apply_dl_model)."""

    batch_size: int = Field(8, gt=0)
    """Images per forward pass."""
    min_area: int = Field(1, ge=1)
    """Regions smaller than this many pixels are left out of the regions table."""
    backend: Literal["torch", "onnx"] = "torch"
    """``torch`` (the bundle's weights) or ``onnx`` (onnxruntime on ``model.onnx``)."""
    device: str = "auto"
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""


# --------------------------------------------------------------------------- register


class RegisterParams(Section):
    """Model registry (MLflow)."""

    model_name: str = "segcore-pills"
    """Registered model name."""
    comparison_key: str = "mean_iou"
    """Test-split measure that must not get worse for ``champion`` to move."""
    champion_alias: str = "champion"
    """Alias of the best model so far."""
    challenger_alias: str = "challenger"
    """Alias of the newest registered model."""


# --------------------------------------------------------------------------- tracking / flow


class TrackingParams(Section):
    """MLflow tracking."""

    experiment_name: str = "segcore"
    """Experiment that every pipeline run logs to."""
    tracking_uri: str | None = None
    """Store; ``null`` means ``sqlite:///<repo>/mlflow.db`` (``MLFLOW_TRACKING_URI`` wins)."""


class FlowParams(Section):
    """Prefect flow and its schedule."""

    cron: str = "0 3 * * *"
    """Cron schedule of ``make serve``."""
    timezone: str = "UTC"
    """Time zone of the schedule."""
    deployment_name: str = "nightly"
    """Name of the served deployment."""


# --------------------------------------------------------------------------- the file


class Params(Section):
    """All of ``params.yaml``."""

    model_config = ConfigDict(
        extra="forbid", use_attribute_docstrings=True, frozen=True, validate_by_name=True
    )

    synth: SynthParams = SynthParams()
    dataset: DatasetParams = DatasetParams()
    split: SplitParams = SplitParams()
    preprocess: PreprocessStageParams = PreprocessStageParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    infer: InferParams = InferParams()
    registry: RegisterParams = Field(RegisterParams(), alias="register")
    """The ``register:`` section (``registry`` in Python: ``register`` is taken by pydantic)."""
    tracking: TrackingParams = TrackingParams()
    flow: FlowParams = FlowParams()


def _format_errors(err: ValidationError, where: str, prefix: str = "") -> list[str]:
    problems = []
    for e in err.errors():
        key = prefix + ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key; check its spelling (see params.yaml for the valid keys)"
        elif e["type"] == "missing":
            msg = "required key is missing; add it"
        elif "input" in e and not isinstance(e["input"], dict):
            msg = f"{msg} (got {e['input']!r})"
        problems.append(f"{where}: {key}: {msg}" if key else f"{where}: {msg}")
    return problems


def load_params(path: str | Path = DEFAULT_PARAMS_FILE) -> Params:
    """Read and validate ``params.yaml``; every problem is reported at once.

    Raises:
        ParamsError: the file is missing, not YAML, or has invalid keys or values.
    """
    path = Path(path)
    if not path.is_file():
        raise ParamsError(
            f"{path}: parameter file not found; run from the project root or pass --params PATH"
        )
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: must be a mapping of sections (synth:, dataset:, ...)")
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        raise ParamsError(_format_errors(err, str(path)), title=f"{path} is invalid") from None


S = TypeVar("S", bound=Section)


def override(section: S, option_names: dict[str, str] | None = None, **values: Any) -> S:
    """A copy of ``section`` with the non-``None`` ``values`` replaced, validated again.

    Args:
        section: the loaded section.
        option_names: maps field name to the CLI option that set it, for error messages.
        values: new values; ``None`` means "keep the one from params.yaml".
    """
    updates = {k: v for k, v in values.items() if v is not None}
    if not updates:
        return section
    data = section.model_dump() | updates
    try:
        return type(section).model_validate(data)
    except ValidationError as err:
        names = option_names or {}
        problems = []
        for e in err.errors():
            field = str(e["loc"][0]) if e["loc"] else ""
            label = names.get(field, f"--{field.replace('_', '-')}" if field in updates else field)
            msg = e["msg"].removeprefix("Value error, ")
            problems.append(f"{label}: {msg}")
        raise ParamsError(problems, title="invalid options") from None


def flatten(params: BaseModel, prefix: str = "") -> dict[str, Any]:
    """``{"train.batch_size": 8, ...}``: every leaf of the params, for tracking."""
    out: dict[str, Any] = {}
    for name in type(params).model_fields:
        value = getattr(params, name)
        key = f"{prefix}{name}"
        if isinstance(value, BaseModel):
            out.update(flatten(value, key + "."))
        elif isinstance(value, list) and value and isinstance(value[0], BaseModel):
            out[key] = [v.model_dump() for v in value]
        else:
            out[key] = value
    return out
