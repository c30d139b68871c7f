"""Class weights and weight images (HALCON: calculate_dl_segmentation_class_weights,
gen_dl_segmentation_weight_images).

Class weights come from the preprocessed label images of the train split: the inverse
class frequency, so rare classes (defects) weigh more in the loss. A weight image gives
every pixel the weight of its class; pixels of weight 0 take no part in the loss.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from segcore.common.errors import DatasetError, ParamsError
from segcore.data.labels import value_counts

FREQUENCY_OFFSET = 0.0001
"""Added to each class frequency before inverting (HALCON), so no weight is infinite."""


def count_class_pixels(label: np.ndarray, class_ids: Sequence[int]) -> np.ndarray:
    """``(K,)`` int64: pixels of each class of ``class_ids`` in one ``(H, W)`` label image.

    Values that are not in ``class_ids`` are not counted.
    """
    ids = np.asarray(class_ids, dtype=np.int64)
    label = np.asarray(label)
    size = int(ids.max()) + 1
    counts = value_counts(label, minlength=size)
    if counts is None:  # negative or huge values: count only the non-negative ones
        flat = label.ravel()
        counts = np.bincount(flat[flat >= 0], minlength=size)
    return counts[ids].astype(np.int64)


def _total_counts(labels_or_counts: object, class_ids: Sequence[int]) -> np.ndarray:
    """Sum label images or count rows into ``(K,)`` int64 pixel counts."""
    k = len(class_ids)
    if isinstance(labels_or_counts, np.ndarray) and labels_or_counts.ndim in (1, 2):
        counts = labels_or_counts.reshape(-1, labels_or_counts.shape[-1])
        if counts.shape[1] != k:
            raise ValueError(
                f"pixel counts have {counts.shape[1]} columns but there are {k} class ids; "
                "pass label images as a list (or a (N, H, W) array)"
            )
        return counts.sum(axis=0).astype(np.int64)
    total = np.zeros(k, dtype=np.int64)
    for label in labels_or_counts:  # type: ignore[attr-defined]
        total += count_class_pixels(label, class_ids)
    return total


def calculate_class_weights(
    labels_or_counts: Sequence[np.ndarray] | np.ndarray,
    class_ids: Sequence[int],
    ignore_class_ids: Sequence[int] = (),
    max_weight: float = 1000.0,
    user_weights: Sequence[float] | None = None,
) -> np.ndarray:
    """Class weights from the train split's preprocessed label images (HALCON's formula).

    With ``area_c`` the pixels of class ``c`` (0 for ignore classes):
    ``freq_c = area_c / sum(area)``; ``w_c = 1 / (freq_c + 0.0001)`` where ``area_c > 0``,
    else 0; every ``w_c`` is divided by the smallest non-zero one (the most frequent class
    gets 1.0) and clipped at ``max_weight``.

    Args:
        labels_or_counts: label images (a list of ``(H, W)`` arrays or one ``(N, H, W)``
            array) or pixel counts (``(K,)`` or ``(N, K)``, columns in ``class_ids`` order).
        class_ids: the class ids, K of them.
        ignore_class_ids: classes that count 0 and get weight 0.
        max_weight: upper clip, > 0.
        user_weights: K weights that replace the computed ones (returned as given).

    Returns:
        ``(K,)`` float64, in ``class_ids`` order.

    Raises:
        ParamsError: ``max_weight`` <= 0, or ``user_weights`` of the wrong length or with
            negative / non-finite values.
        DatasetError: no pixel of a non-ignored class to count.
    """
    k = len(class_ids)
    if user_weights is not None:
        weights = np.asarray(user_weights, dtype=np.float64)
        if weights.shape != (k,) or not np.all(np.isfinite(weights)) or np.any(weights < 0):
            raise ParamsError(
                f"preprocess.class_weights.weights {list(user_weights)} must hold {k} finite "
                f"values >= 0, one per class id {list(class_ids)}"
            )
        return weights
    if not (max_weight > 0 and math.isfinite(max_weight)):
        raise ParamsError(f"preprocess.class_weights.max_weight must be > 0 (got {max_weight})")
    if isinstance(labels_or_counts, np.ndarray) and labels_or_counts.ndim == 3:
        labels_or_counts = list(labels_or_counts)
    area = _total_counts(labels_or_counts, class_ids)
    ignore = set(ignore_class_ids)
    area[[i for i, c in enumerate(class_ids) if c in ignore]] = 0
    total = int(area.sum())
    if total == 0:
        raise DatasetError(
            "the train split has no pixel of any non-ignored class, so class weights cannot "
            "be computed; check the split and ignore_class_ids, or give "
            "preprocess.class_weights.weights"
        )
    present = area > 0
    weights = np.zeros(k, dtype=np.float64)
    weights[present] = 1.0 / (area[present] / total + FREQUENCY_OFFSET)
    weights /= weights[present].min()
    return np.minimum(weights, max_weight)


def weight_image(
    label: np.ndarray,
    class_ids: Sequence[int],
    class_weights: Sequence[float],
    ignore_class_ids: Sequence[int] = (),
) -> np.ndarray:
    """The weight image of one ``(H, W)`` label image: ``(H, W)`` float32.

    Each pixel gets the weight of its class; ignore classes and values not in
    ``class_ids`` get 0.
    """
    if len(class_weights) != len(class_ids):
        raise ValueError(f"{len(class_weights)} class weights for {len(class_ids)} class ids")
    label = np.asarray(label)
    if label.size == 0:
        return np.zeros(label.shape, dtype=np.float32)
    if int(label.min()) < 0:
        raise ValueError("label images hold non-negative class ids")
    lut = np.zeros(max(int(label.max()), *class_ids) + 1, dtype=np.float32)
    lut[list(class_ids)] = np.asarray(class_weights, dtype=np.float32)
    lut[[c for c in ignore_class_ids if c < len(lut)]] = 0.0
    return lut[label]


def generate_weight_images(
    labels: Sequence[np.ndarray] | np.ndarray,
    class_ids: Sequence[int],
    class_weights: Sequence[float],
    ignore_class_ids: Sequence[int] = (),
) -> list[np.ndarray]:
    """Weight images of several label images (HALCON: gen_dl_segmentation_weight_images).

    Args:
        labels: ``(H, W)`` preprocessed label images (class ids).
        class_ids: the class ids.
        class_weights: one weight per class id (see :func:`calculate_class_weights`).
        ignore_class_ids: classes whose pixels get weight 0.

    Returns:
        One ``(H, W)`` float32 image per label image.
    """
    return [weight_image(label, class_ids, class_weights, ignore_class_ids) for label in labels]
