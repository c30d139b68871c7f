"""Segmentation measures (HALCON: evaluate_dl_model), counted then derived.

Pixels are counted into one confusion matrix over everything evaluated (never averaged
per batch); every measure is a pure function of that matrix. Orientation as in HALCON:
**rows are the predicted class, columns the ground-truth class**. Pixels whose target is
:data:`~segcore.common.constants.IGNORE_INDEX` (ignore classes, unknown label values) are
removed before counting.

A class ``c`` is *valid* when ``GT_c = TP_c + FN_c > 0``; per-class values of invalid
classes are ``-1`` and are left out of the means.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from segcore.common.constants import IGNORE_INDEX

INVALID = -1.0
"""Per-class value reported for classes without ground-truth pixels."""

ALL_MEASURES = (
    "pixel_accuracy",
    "class_pixel_accuracy",
    "mean_accuracy",
    "class_iou",
    "mean_iou",
    "frequency_weighted_iou",
    "pixel_confusion_matrix",
)
ALL = "all"


class ConfusionMatrix:
    """Accumulates a ``(K, K)`` pixel confusion matrix (rows predicted, columns truth).

    Args:
        num_classes: K, the number of class indices (``len(class_ids)``).
        device: where counting happens (the device of the predictions).
    """

    def __init__(self, num_classes: int, device: torch.device | str = "cpu") -> None:
        self.num_classes = num_classes
        self.mat = torch.zeros((num_classes, num_classes), dtype=torch.int64, device=device)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Count one batch.

        Args:
            pred: ``(N, H, W)`` predicted class indices.
            target: ``(N, H, W)`` true class indices; ``IGNORE_INDEX`` pixels are skipped.
        """
        k = self.num_classes
        target = target.to(self.mat.device)
        pred = pred.to(self.mat.device)
        keep = (target >= 0) & (target < k)
        flat = pred[keep].to(torch.int64) * k + target[keep].to(torch.int64)
        self.mat += torch.bincount(flat, minlength=k * k).reshape(k, k)

    def reset(self) -> None:
        self.mat.zero_()

    def reduce_from_all_processes(self) -> None:
        """Sum the matrices of all DistributedDataParallel ranks (no-op when not distributed)."""
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(self.mat)

    def numpy(self) -> np.ndarray:
        """The matrix as ``(K, K)`` int64 numpy array."""
        return self.mat.cpu().numpy()

    def compute(self, measures: Iterable[str] = (ALL,)) -> dict[str, object]:
        """The requested measures (see :func:`compute_measures`)."""
        return compute_measures(self.numpy(), measures)


def _counts(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    m = np.asarray(matrix, dtype=np.float64)
    tp = np.diag(m)
    gt = m.sum(axis=0)  # column sums: ground-truth pixels per class = TP + FN
    fp = m.sum(axis=1) - tp  # row sums minus TP: predicted as c but truth differs
    return tp, gt, fp


def class_pixel_accuracy(matrix: np.ndarray) -> np.ndarray:
    """``TP_c / GT_c`` per class; -1 for invalid classes."""
    tp, gt, _ = _counts(matrix)
    return np.where(gt > 0, tp / np.maximum(gt, 1), INVALID)


def class_iou(matrix: np.ndarray) -> np.ndarray:
    """``TP_c / (GT_c + FP_c)`` per class; -1 for invalid classes."""
    tp, gt, fp = _counts(matrix)
    return np.where(gt > 0, tp / np.maximum(gt + fp, 1), INVALID)


def pixel_accuracy(matrix: np.ndarray) -> float:
    """``sum TP / sum GT`` (0 when nothing was counted)."""
    tp, gt, _ = _counts(matrix)
    total = gt.sum()
    return float(tp.sum() / total) if total > 0 else 0.0


def _valid_mean(values: np.ndarray, valid: np.ndarray) -> float:
    return float(values[valid].mean()) if valid.any() else 0.0


def mean_accuracy(matrix: np.ndarray) -> float:
    """Mean of class_pixel_accuracy over valid classes."""
    _, gt, _ = _counts(matrix)
    return _valid_mean(class_pixel_accuracy(matrix), gt > 0)


def mean_iou(matrix: np.ndarray) -> float:
    """Mean of class_iou over valid classes."""
    _, gt, _ = _counts(matrix)
    return _valid_mean(class_iou(matrix), gt > 0)


def frequency_weighted_iou(matrix: np.ndarray) -> float:
    """``sum over valid c of (GT_c / sum GT) * class_iou_c``."""
    _, gt, _ = _counts(matrix)
    total = gt.sum()
    if total == 0:
        return 0.0
    valid = gt > 0
    return float(((gt[valid] / total) * class_iou(matrix)[valid]).sum())


_MEASURES = {
    "pixel_accuracy": pixel_accuracy,
    "class_pixel_accuracy": lambda m: class_pixel_accuracy(m).tolist(),
    "mean_accuracy": mean_accuracy,
    "class_iou": lambda m: class_iou(m).tolist(),
    "mean_iou": mean_iou,
    "frequency_weighted_iou": frequency_weighted_iou,
    "pixel_confusion_matrix": lambda m: np.asarray(m, dtype=np.int64).tolist(),
}


def resolve_measures(measures: Iterable[str]) -> list[str]:
    """Expand ``all`` and check names.

    Raises:
        ValueError: an unknown measure name (the message lists the valid ones).
    """
    names: list[str] = []
    for name in measures:
        if name == ALL:
            names.extend(n for n in ALL_MEASURES if n not in names)
        elif name in _MEASURES:
            if name not in names:
                names.append(name)
        else:
            raise ValueError(f"unknown measure {name!r}; valid: {', '.join((ALL, *ALL_MEASURES))}")
    return names


def compute_measures(matrix: np.ndarray, measures: Iterable[str] = (ALL,)) -> dict[str, object]:
    """Measures from a ``(K, K)`` confusion matrix (rows predicted, columns truth).

    Scalars are floats; ``class_*`` values are lists in class-index order (-1 for invalid
    classes); ``pixel_confusion_matrix`` is a nested list.
    """
    return {name: _MEASURES[name](matrix) for name in resolve_measures(measures)}


def confusion_matrix_np(pred: np.ndarray, target: np.ndarray, num_classes: int) -> np.ndarray:
    """Numpy twin of :meth:`ConfusionMatrix.update` for one image or a batch."""
    keep = (target != IGNORE_INDEX) & (target >= 0) & (target < num_classes)
    flat = pred[keep].astype(np.int64) * num_classes + target[keep].astype(np.int64)
    return np.bincount(flat, minlength=num_classes**2).reshape(num_classes, num_classes)
