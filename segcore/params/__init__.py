"""Typed parameters, one class per section of ``params.yaml``, loaded in one place.

``params.yaml`` is the only place where defaults live for a pipeline run; the classes
here mirror its sections field for field (the defaults below are what a section gets when
a key is left out). Loading validates the whole file and reports every problem at once,
each naming the key and the fix. Stage code receives these objects and never opens
``params.yaml`` itself.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Self, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    ValidationError,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from segcore.common.constants import (
    DomainHandling,
    NormalizationType,
    SerializationStrategy,
    SolverType,
    Split,
)
from segcore.common.errors import ParamsError

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

    @model_validator(mode="wrap")
    @classmethod
    def _check_classes(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        return _validate_with_rules(cls, data, handler, _dataset_rules)


MAX_CLASS_ID = 65535
"""Largest class id a label image can hold (16 bit)."""


def class_list_problems(
    class_names: Sequence[str], class_ids: Sequence[int]
) -> list[tuple[str, str]]:
    """The problems of a class list as ``(key, problem)`` pairs; ``f"{key} {problem}"`` reads
    as a sentence. Checks: one name per id, no duplicates, ids in 0..65535, not empty."""
    out: list[tuple[str, str]] = []
    ids, names = list(class_ids), list(class_names)
    if len(names) != len(ids):
        out.append(
            (
                "class_names",
                f"has {len(names)} entries but class_ids has {len(ids)}; give one name per id",
            )
        )
    if not ids:
        out.append(("class_ids", "is empty; list the class ids of your label images"))
    dup_ids = sorted({i for i in ids if ids.count(i) > 1})
    if dup_ids:
        out.append(("class_ids", f"has duplicates {dup_ids}; each id must appear once"))
    dup_names = sorted({n for n in names if names.count(n) > 1})
    if dup_names:
        out.append(("class_names", f"has duplicates {dup_names}; each name must appear once"))
    bad = [
        i
        for i in ids
        if isinstance(i, bool) or not isinstance(i, numbers.Integral) or not 0 <= i <= MAX_CLASS_ID
    ]
    if bad:
        out.append(
            ("class_ids", f"has {bad} out of range; ids must be integers in 0..{MAX_CLASS_ID}")
        )
    return out


def _dataset_rules(p: DatasetParams, bad: set[str]) -> list[tuple[str, str]]:
    problems = class_list_problems(p.class_names, p.class_ids)
    if bad & {"class_names", "class_ids"}:  # an invalid list holds its default here
        return [(k, m) for k, m in problems if k not in bad and m.startswith("has duplicates")]
    return problems


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

    @model_validator(mode="wrap")
    @classmethod
    def _check_sum(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        return _validate_with_rules(cls, data, handler, _split_rules)


def _split_rules(p: SplitParams, bad: set[str]) -> list[tuple[str, str]]:
    if bad & {"training_percent", "validation_percent"}:
        return []
    total = p.training_percent + p.validation_percent
    if total > 100.0:
        return [
            (
                "validation_percent",
                f"training_percent + validation_percent = {total} exceeds 100; lower one of them",
            )
        ]
    return []


# --------------------------------------------------------------------------- preprocess

IMAGENET_MEAN_255 = [123.675, 116.28, 103.53]
IMAGENET_STD_255 = [58.395, 57.12, 57.375]

ClassId = Annotated[int, Field(ge=0, le=65535)]
"""A class id as stored in label images."""


def _validate_with_rules(
    cls: type[Section],
    data: Any,
    handler: ModelWrapValidatorHandler[Any],
    rules: Callable[[Any, set[str]], list[tuple[str, str]]],
) -> Any:
    """Field validation and cross-field ``rules`` together, so every problem shows at once.

    ``rules(values, bad)`` returns ``(key, problem)`` pairs and skips the rules that read a
    key in ``bad`` (keys whose own value is invalid).
    """
    try:
        model = handler(data)
    except ValidationError as err:
        errors = err.errors()
        if not isinstance(data, dict) or any(not e["loc"] for e in errors):
            raise
        bad = {str(e["loc"][0]) for e in errors}
        try:  # the valid keys, converted, with defaults in place of the invalid ones
            model = handler({k: v for k, v in data.items() if k not in bad})
        except ValidationError:
            raise err from None
    else:
        errors, bad = [], set()
    broken = rules(model, bad)
    if not errors and not broken:
        return model
    details: list[InitErrorDetails] = [
        {
            "type": e["type"],
            "loc": e["loc"],
            "input": e["input"],
            **({"ctx": e["ctx"]} if "ctx" in e else {}),
        }  # type: ignore[typeddict-item]
        for e in errors
    ]
    details += [
        {
            "type": PydanticCustomError("rule", "{problem}", {"problem": problem}),
            "loc": (key,),
            "input": getattr(model, key),
        }
        for key, problem in broken
    ]
    raise ValidationError.from_exception_data(cls.__name__, details)


class PreprocessParams(Section):
    """HALCON's preprocessing parameters (create_dl_preprocess_param).

    Stored with the preprocessed dataset and in every model bundle, so inference
    preprocesses new images exactly as training did. Validation reports every problem at
    once; rules that need the dataset (e.g. ``set_background_id`` must be a class id) are
    checked by the preprocess stage.
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
    domain_roi: (
        Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=4, max_length=4)] | None
    ) = None
    """Region of interest ``[row1, col1, row2, col2]`` (inclusive) for ``crop_domain``;
    per-sample rectangles may come from the dataset's ``domain_roi`` column instead (they
    win). Ignored under ``full_domain``."""
    ignore_class_ids: list[ClassId] = []
    """Class ids left out of loss and measures (weight 0, never predicted); they may be
    missing from ``class_ids`` (e.g. a 255 border)."""
    set_background_id: ClassId | None = None
    """Merge the classes of ``class_ids_background`` into this id (one of ``class_ids``)."""
    class_ids_background: list[ClassId] = []
    """Class ids merged into ``set_background_id``."""
    mean_values_normalization: list[float] = IMAGENET_MEAN_255
    """Per-channel mean for ``constant_values``, in the input's grey values (0-255 for 8-bit);
    one value serves every channel."""
    deviation_values_normalization: list[Annotated[float, Field(gt=0)]] = IMAGENET_STD_255
    """Per-channel deviation for ``constant_values`` (> 0); one value serves every channel."""

    @model_validator(mode="wrap")
    @classmethod
    def _check_rules(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        return _validate_with_rules(cls, data, handler, _preprocess_rules)


def _preprocess_rules(p: PreprocessParams, bad: set[str]) -> list[tuple[str, str]]:
    """HALCON's rules between preprocessing parameters, as ``(key, problem)`` pairs."""

    def ok(*keys: str) -> bool:
        return not bad.intersection(keys)

    out: list[tuple[str, str]] = []
    if ok("image_range_min", "image_range_max") and p.image_range_min >= p.image_range_max:
        out.append(("image_range_min", f"must be below image_range_max ({p.image_range_max})"))
    for key in ("ignore_class_ids", "class_ids_background"):
        ids = getattr(p, key)
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if ok(key) and dup:
            out.append((key, f"has duplicates {dup}; list each id once"))
    bg_id, bg = p.set_background_id, p.class_ids_background
    if ok("set_background_id", "class_ids_background"):
        if (bg_id is None) != (not bg):
            out.append(
                (
                    "set_background_id",
                    "set_background_id and class_ids_background come together: set both or neither",
                )
            )
        if bg_id is not None and bg_id in bg:
            out.append(
                (
                    "class_ids_background",
                    f"holds set_background_id {bg_id}; the two must not overlap",
                )
            )
    if ok("ignore_class_ids", "set_background_id", "class_ids_background"):
        merged = set(bg) | ({bg_id} if bg_id is not None else set())
        clash = sorted(merged & set(p.ignore_class_ids))
        if clash:
            out.append(
                (
                    "ignore_class_ids",
                    f"{clash} also appear in set_background_id / class_ids_background; an "
                    "ignore id may not be merged into the background",
                )
            )
    channels_ok = ok("normalization_type", "image_num_channels")
    if channels_ok and p.normalization_type == "constant_values":
        for key in ("mean_values_normalization", "deviation_values_normalization"):
            n = len(getattr(p, key))
            if ok(key) and n not in (1, p.image_num_channels):
                c = p.image_num_channels
                wanted = "1 value" if c == 1 else f"1 value or {c} (one per channel)"
                out.append((key, f"has {n} values but image_num_channels {c} needs {wanted}"))
    roi = p.domain_roi
    if ok("domain_roi") and roi is not None and (roi[0] > roi[2] or roi[1] > roi[3]):
        out.append(
            (
                "domain_roi",
                "is not a rectangle [row1, col1, row2, col2] with row1 <= row2 and col1 <= col2",
            )
        )
    return out


class ClassWeightParams(Section):
    """Class weights (calculate_dl_segmentation_class_weights)."""

    max_weight: float = Field(1000.0, gt=0, allow_inf_nan=False)
    """Upper clip of the computed class weights (> 0)."""
    weights: list[Annotated[float, Field(ge=0, allow_inf_nan=False)]] | None = None
    """User-given weights, one per class id (>= 0, not all 0); they replace the computed ones."""

    @model_validator(mode="after")
    def _check_weights(self) -> Self:
        if self.weights is not None and not any(w > 0 for w in self.weights):
            raise ValueError(
                f"weights {self.weights} must have at least one weight > 0 (else nothing is "
                "learned); give one weight per class id or null to compute them"
            )
        return self


class ClusterParams(Section):
    """Preprocessing on a cluster: shards of samples as Prefect tasks (the pipeline flow only).

    ``segcore preprocess`` and ``dvc repro`` always run on this machine; the files are the
    same either way, so these keys never make the stage stale.
    """

    runner: Literal["local", "dask", "ray"] = "local"
    """``local``: ``workers`` processes here; ``dask`` / ``ray``: Prefect's Dask or Ray task
    runner (``ray`` needs ``pip install prefect-ray``)."""
    address: str | None = None
    """Scheduler of a running cluster (``tcp://host:8786`` for Dask, ``ray://host:10001``
    for Ray); ``null`` starts a local cluster of ``workers`` processes for the run."""
    shard_size: int = Field(16, gt=0)
    """Samples per task."""


class PreprocessStageParams(Section):
    """The preprocess stage: HALCON's preprocess parameters plus class weights and I/O."""

    dataset: str = "data/dataset/split.parquet"
    """Input dataset table (must have a split)."""
    out_dir: str = "data/preprocessed"
    """Output folder: ``dataset.parquet`` and ``samples/`` (one file per sample)."""
    workers: int = Field(0, ge=0)
    """Worker processes; 0 means one per CPU core, 1 runs in the calling process."""
    overwrite: bool = False
    """Rewrite samples even when their inputs and parameters did not change."""
    param: PreprocessParams = PreprocessParams()
    """HALCON's preprocessing parameters."""
    class_weights: ClassWeightParams = ClassWeightParams()
    """Class weight computation."""
    cluster: ClusterParams = ClusterParams()
    """Where the samples are preprocessed when the Prefect flow runs the stage."""


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


def _change_rules(p: ChangeStrategy, bad: set[str]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
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
    """Further architecture arguments (compact/enhanced: base_channels, depth, norm)."""
    encoder: str | None = None
    """Encoder for segmentation-models-pytorch architectures (e.g. ``resnet18``)."""
    encoder_weights: str | None = None
    """Local weights file for the encoder; nothing is ever downloaded."""
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
    channels_last: bool = True
    """Run the network in channels-last memory layout (faster convolutions on CPU)."""
    nproc: int = Field(1, gt=0)
    """Processes for distributed training when launched from the flow (torchrun)."""

    @model_validator(mode="wrap")
    @classmethod
    def _check_training(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        return _validate_with_rules(cls, data, handler, _train_rules)


def _train_rules(p: TrainParams, bad: set[str]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if "device" not in bad and not _DEVICE.fullmatch(p.device):
        out.append(("device", f"{p.device!r} is unknown; use auto, cpu, cuda or cuda:N"))
    if not bad & {"serialization_strategies", "serialization_epochs", "num_epochs"}:
        has_epochs = "epochs" in p.serialization_strategies
        if has_epochs and not p.serialization_epochs:
            out.append(
                (
                    "serialization_epochs",
                    "is empty but serialization_strategies has 'epochs'; list the epochs",
                )
            )
        if p.serialization_epochs and not has_epochs:
            out.append(
                ("serialization_strategies", "lacks 'epochs' but serialization_epochs is set")
            )
        outside = [e for e in p.serialization_epochs if not 1 <= e <= p.num_epochs]
        if outside:
            out.append(
                ("serialization_epochs", f"{outside} outside 1..num_epochs ({p.num_epochs})")
            )
    if not bad & {"change_strategies", "solver_type"}:
        changed = [c.model_param for c in p.change_strategies]
        twice = sorted({c for c in changed if changed.count(c) > 1})
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
    workers: int = Field(0, ge=0)
    """Threads that decode, preprocess and write images; 0: half the CPU cores (1 to 4)."""


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
