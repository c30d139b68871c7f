"""Reading one image/label pair of the dataset into its table row (thread pool)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segcore.common.constants import (
    COL_BIT_DEPTH,
    COL_CHANNELS,
    COL_DOMAIN_ROI,
    COL_HEIGHT,
    COL_IGNORED_PIXELS,
    COL_IMAGE_FILE,
    COL_LABEL_FILE,
    COL_WIDTH,
    PIXEL_COUNT_PREFIX,
)
from segcore.common.errors import DatasetError, Problems
from segcore.common.images import LABEL_SUFFIXES, PixelLimit, read_image, read_label
from segcore.common.progress import track
from segcore.data.labels import value_counts
from segcore.data.roi import read_roi
from segcore.params import MAX_CLASS_ID


@dataclass(frozen=True)
class Reading:
    """How every pair is read: the known class ids (``None``: only check), the ignore class
    ids also allowed in labels (``preprocess.param.ignore_class_ids``) and the size limit."""

    class_ids: list[int] | None
    limit: PixelLimit
    ignore_ids: tuple[int, ...] = ()

    @property
    def ignored_only(self) -> list[int]:
        """Ignore ids that are not class ids: allowed in labels, counted apart."""
        return sorted(set(self.ignore_ids) - set(self.class_ids or []))


@dataclass(frozen=True)
class Pair:
    image: Path
    label: Path
    image_rel: str
    label_rel: str


def read_pairs(pairs: list[Pair], reading: Reading, problems: Problems) -> list[dict]:
    """Decode every pair (thread pool) into one row each; problems go to ``problems``.

    With ``reading.class_ids`` ``None`` the files are only checked, not counted.
    """
    if not pairs:
        return []
    workers = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(
            track(pool.map(lambda p: _read_pair(p, reading), pairs), "dataset", len(pairs))
        )
    rows = []
    for row, errors in results:
        problems.extend(errors)
        if row is not None:
            rows.append(row)
    return rows


def _read_files(
    pair: Pair, reading: Reading, errors: list[str]
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The image and the label image of ``pair`` (``None`` where unreadable); their
    problems go to ``errors``."""
    image = label = None
    try:
        image = read_image(pair.image, reading.limit)
    except DatasetError as err:
        errors.extend(err.problems)
    if pair.label.suffix.lower() not in LABEL_SUFFIXES:
        errors.append(
            f"{pair.label}: label images must be lossless (JPEG changes class ids); save it "
            "as PNG, TIFF or BMP"
        )
    else:
        try:
            label = read_label(pair.label, reading.limit)
        except DatasetError as err:
            errors.extend(err.problems)
    return image, label


def _read_pair(pair: Pair, reading: Reading) -> tuple[dict | None, list[str]]:
    """One sample's row, or the problems of its two files."""
    errors: list[str] = []
    class_ids = reading.class_ids
    image, label = _read_files(pair, reading, errors)
    if image is None or label is None:
        return None, errors
    height, width = image.shape[:2]
    if label.shape != (height, width):
        errors.append(
            f"{pair.label}: label image is {label.shape[1]}x{label.shape[0]} but its image "
            f"{pair.image} is {width}x{height}; a label must have its image's size"
        )
    if class_ids is None:  # the class list itself is invalid (reported once, elsewhere)
        return None, errors
    ignored = reading.ignored_only
    counts = value_counts(label, minlength=max(class_ids + ignored) + 1)
    if counts is None:
        unknown = np.unique(label[(label < 0) | (label > MAX_CLASS_ID)])
    else:
        unknown = np.setdiff1d(np.flatnonzero(counts), class_ids + ignored)
    if unknown.size:
        shown = ", ".join(str(v) for v in unknown[:20]) + (" ..." if unknown.size > 20 else "")
        errors.append(
            f"{pair.label}: label values {shown} are not in class_ids {class_ids} (nor in "
            f"ignore_class_ids {ignored}); add them to dataset.class_ids/class_names or "
            "preprocess.param.ignore_class_ids, or fix the label image"
        )
    try:
        roi = read_roi(pair.image, (width, height))
    except DatasetError as err:
        errors.extend(err.problems)
    if errors or counts is None:
        return None, errors
    row = {
        COL_IMAGE_FILE: pair.image_rel,
        COL_LABEL_FILE: pair.label_rel,
        COL_WIDTH: int(width),
        COL_HEIGHT: int(height),
        COL_CHANNELS: int(image.shape[2]),
        COL_BIT_DEPTH: int(image.dtype.itemsize * 8),
    }
    row.update({f"{PIXEL_COUNT_PREFIX}{c}": int(counts[c]) for c in class_ids})
    if ignored:
        row[COL_IGNORED_PIXELS] = int(sum(counts[c] for c in ignored))
    if roi is not None:  # only images with a region file: a demo without any keeps its table
        row[COL_DOMAIN_ROI] = list(roi)
    return row, []
