"""The ``preprocess`` section: HALCON's preprocessing parameters and their rules, class
weights, and where the samples are preprocessed."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import Field, ModelWrapValidatorHandler, model_validator

from segcore.common.constants import MODE_TILED, DomainHandling, NormalizationType
from segcore.params.base import ClassId, Problem, Section, duplicates, validate_with_rules

IMAGENET_MEAN_255 = [123.675, 116.28, 103.53]
IMAGENET_STD_255 = [58.395, 57.12, 57.375]


class PreprocessParams(Section):
    """HALCON's preprocessing parameters (create_dl_preprocess_param).

    Stored with the preprocessed dataset and in every model bundle, so inference
    preprocesses new images exactly as training did. Validation reports every problem at
    once; rules that need the dataset (e.g. ``set_background_id`` must be a class id) are
    checked by the preprocess stage.
    """

    mode: Literal["resize", "tiled"] = "resize"
    """``resize`` (HALCON's): every image is resized to ``image_width x image_height``.
    ``tiled``: samples keep their native size times ``scale``; the network sees tiles of
    ``image_width x image_height`` cut from them (training) or slid over them (inference)."""
    scale: float = Field(1.0, gt=0.0, le=1.0, allow_inf_nan=False)
    """Tiled mode: size of the stored samples relative to the original images (1.0: native
    resolution); must stay 1.0 in resize mode."""
    image_width: int = Field(256, gt=0)
    """Network input width; resize mode: images are resized to it (aspect ratio not kept);
    tiled mode: the tile width."""
    image_height: int = Field(256, gt=0)
    """Network input height (tiled mode: the tile height)."""
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
        return validate_with_rules(cls, data, handler, _preprocess_rules)


def _preprocess_rules(p: PreprocessParams, bad: set[str]) -> list[Problem]:
    """HALCON's rules between preprocessing parameters, as ``(key, problem)`` pairs.

    Each rule runs only when none of the keys it reads is invalid on its own (``bad``),
    so a wrong value is reported once, not again through every rule that reads it.
    """

    def ok(*keys: str) -> bool:
        return not bad.intersection(keys)

    out: list[Problem] = []
    if ok("image_range_min", "image_range_max") and p.image_range_min >= p.image_range_max:
        out.append(("image_range_min", f"must be below image_range_max ({p.image_range_max})"))
    for key in ("ignore_class_ids", "class_ids_background"):
        dup = duplicates(getattr(p, key))
        if ok(key) and dup:
            out.append((key, f"has duplicates {dup}; list each id once"))
    if ok("set_background_id", "class_ids_background"):
        out += _background_rules(p)
    if ok("ignore_class_ids", "set_background_id", "class_ids_background"):
        out += _ignore_rules(p)
    if ok("normalization_type", "image_num_channels"):
        out += [(k, m) for k, m in _normalization_rules(p) if ok(k)]
    if ok("mode", "scale") and p.mode != MODE_TILED and p.scale != 1.0:
        out.append(
            (
                "scale",
                f"is {p.scale} but only tiled mode stores samples at a scale (resize mode "
                "resizes to image_width x image_height); set mode: tiled, or scale: 1.0",
            )
        )
    roi = p.domain_roi
    if ok("domain_roi") and roi is not None and (roi[0] > roi[2] or roi[1] > roi[3]):
        out.append(
            (
                "domain_roi",
                "is not a rectangle [row1, col1, row2, col2] with row1 <= row2 and col1 <= col2",
            )
        )
    return out


def _background_rules(p: PreprocessParams) -> list[Problem]:
    """``set_background_id`` and ``class_ids_background`` come as a pair and are disjoint."""
    out: list[Problem] = []
    bg_id, bg = p.set_background_id, p.class_ids_background
    if (bg_id is None) != (not bg):
        out.append(
            (
                "set_background_id",
                "set_background_id and class_ids_background come together: set both or neither",
            )
        )
    if bg_id is not None and bg_id in bg:
        out.append(
            ("class_ids_background", f"holds set_background_id {bg_id}; the two must not overlap")
        )
    return out


def _ignore_rules(p: PreprocessParams) -> list[Problem]:
    """An ignored class takes no part in training, so it cannot be merged into another."""
    bg_id, bg = p.set_background_id, p.class_ids_background
    merged = set(bg) | ({bg_id} if bg_id is not None else set())
    clash = sorted(merged & set(p.ignore_class_ids))
    if not clash:
        return []
    return [
        (
            "ignore_class_ids",
            f"{clash} also appear in set_background_id / class_ids_background; an "
            "ignore id may not be merged into the background",
        )
    ]


def _normalization_rules(p: PreprocessParams) -> list[Problem]:
    """``constant_values`` needs one mean and deviation, or one per channel."""
    if p.normalization_type != "constant_values":
        return []
    out: list[Problem] = []
    for key in ("mean_values_normalization", "deviation_values_normalization"):
        n = len(getattr(p, key))
        if n not in (1, p.image_num_channels):
            c = p.image_num_channels
            wanted = "1 value" if c == 1 else f"1 value or {c} (one per channel)"
            out.append((key, f"has {n} values but image_num_channels {c} needs {wanted}"))
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
