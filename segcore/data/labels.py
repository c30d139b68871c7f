"""Label images as counts and value sets: pixel histograms, distinct values, the check that
every value is a known class or ignore id."""

from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np

from segcore.common.errors import DatasetError
from segcore.params import MAX_CLASS_ID

_EXACT_HISTOGRAM_PIXELS = 2**24
"""OpenCV counts in float32, exact up to 2**24 per bin: larger images use ``np.bincount``."""


def value_counts(label: np.ndarray, minlength: int = 0) -> np.ndarray | None:
    """``counts[v]`` = pixels of value ``v`` in a label image, for ``v`` in ``0..max``
    (at least ``minlength`` entries, int64); ``None`` when it holds negative values or
    values above ``MAX_CLASS_ID``.

    8- and 16-bit images are counted by OpenCV without a copy; ``np.bincount`` would first
    widen every pixel to int64 (8x the image's memory, for every image).
    """
    if label.size == 0:
        return np.zeros(minlength, dtype=np.int64)
    if label.dtype in (np.uint8, np.uint16) and label.size < _EXACT_HISTOGRAM_PIXELS:
        plane = np.ascontiguousarray(label).reshape(label.shape[0], -1)
        bins = max(int(cv2.minMaxLoc(plane)[1]) + 1, minlength)
        hist = cv2.calcHist([plane], [0], None, [bins], [0, bins])
        return hist.ravel().astype(np.int64)
    lo, hi = int(label.min()), int(label.max())
    if lo < 0 or hi > MAX_CLASS_ID:
        return None
    return np.bincount(label.ravel(), minlength=max(hi + 1, minlength)).astype(np.int64)


def label_values(label: np.ndarray) -> np.ndarray:
    """The distinct values of an integer label image, sorted (int64)."""
    counts = value_counts(label)
    if counts is not None:
        return np.flatnonzero(counts)
    return np.unique(label).astype(np.int64)


def check_label_values(label: np.ndarray, allowed: Iterable[int]) -> None:
    """Raise if ``label`` holds a value outside ``allowed``.

    Raises:
        DatasetError: naming the unknown values and how to fix them.
    """
    allowed_set = {int(v) for v in allowed}
    bad = [int(v) for v in label_values(label) if int(v) not in allowed_set]
    if bad:
        shown = ", ".join(map(str, bad[:10])) + (", ..." if len(bad) > 10 else "")
        raise DatasetError(
            f"label values [{shown}] are neither class_ids nor ignore_class_ids "
            f"(allowed: {sorted(allowed_set)}); fix the label image or add the ids to "
            "dataset.class_ids or preprocess.param.ignore_class_ids"
        )
