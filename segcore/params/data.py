"""The data sections of ``params.yaml``: ``synth``, ``dataset`` and ``split``."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any, Self

from pydantic import Field, ModelWrapValidatorHandler, model_validator

from segcore.params.base import (
    MAX_CLASS_ID,
    Problem,
    Section,
    duplicates,
    validate_with_rules,
)

__all__ = [
    "MAX_CLASS_ID",
    "DatasetParams",
    "SplitParams",
    "SynthParams",
    "class_list_problems",
]


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
    defect_scale: float | None = Field(None, gt=0.0, allow_inf_nan=False)
    """Width of cracks and size of contamination relative to a 256-pixel image; ``null``
    scales them with the image. ``1.0`` with width 2048 and height 1536 gives the
    large-image demo: hairline cracks 2-3 px wide and pits a few pixels across."""


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
    max_image_pixels: int = Field(100_000_000, gt=0)
    """Largest image or label (width x height), checked in the file header before decoding."""

    @model_validator(mode="wrap")
    @classmethod
    def _check_classes(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        return validate_with_rules(cls, data, handler, _dataset_rules)


def class_list_problems(class_names: Sequence[str], class_ids: Sequence[int]) -> list[Problem]:
    """The problems of a class list as ``(key, problem)`` pairs; ``f"{key} {problem}"`` reads
    as a sentence. Checks: one name per id, no duplicates, ids in 0..65535, not empty.

    Shared by the ``dataset`` section and by datasets read from other sources, which must
    obey the same rules.
    """
    out: list[Problem] = []
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
    dup_ids = duplicates(ids)
    if dup_ids:
        out.append(("class_ids", f"has duplicates {dup_ids}; each id must appear once"))
    dup_names = duplicates(names)
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


def _dataset_rules(p: DatasetParams, bad: set[str]) -> list[Problem]:
    problems = class_list_problems(p.class_names, p.class_ids)
    if bad & {"class_names", "class_ids"}:  # an invalid list holds its default here
        return [(k, m) for k, m in problems if k not in bad and m.startswith("has duplicates")]
    return problems


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
        return validate_with_rules(cls, data, handler, _split_rules)


def _split_rules(p: SplitParams, bad: set[str]) -> list[Problem]:
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
