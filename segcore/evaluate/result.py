"""What an evaluation produces (:func:`segcore.evaluate.evaluation.evaluate_model`): the
measures of one split, the confusion matrix, the per-image ranking and decisions, and the
samples kept for the report."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from segcore.common.constants import DEFAULT_TILE_OVERLAP
from segcore.evaluate.decisions import ImageDecision
from segcore.evaluate.metrics import compute_measures
from segcore.evaluate.resolution import NETWORK
from segcore.infer.decide import DecisionRules


@dataclass
class EvaluatedSample:
    """One evaluated sample at the evaluated resolution, kept for display (shrunk to at most
    :data:`~segcore.evaluate.resolution.DISPLAY_SIDE` pixels).

    Attributes:
        image_id: the dataset's ``image_id``.
        name: the image file name (or the sample file name).
        mean_iou: mean IoU over the classes present in its ground truth.
        image: ``(C, H, W)`` float32 network input (resized to the label's size).
        label: ``(H, W)`` uint16 ground-truth class ids.
        prediction: ``(H, W)`` uint16 predicted class ids.
        confidence: ``(H, W)`` float32 probability of the predicted class.
    """

    image_id: int
    name: str
    mean_iou: float
    image: np.ndarray
    label: np.ndarray
    prediction: np.ndarray
    confidence: np.ndarray


@dataclass
class EvaluationResult:
    """Measures of one split, the confusion matrix, and the per-image ranking.

    Attributes:
        split: the evaluated split.
        measures: measure name -> value (scalars as float; ``class_*`` as lists in class
            order with -1 for classes without ground truth; ``pixel_confusion_matrix``
            as a nested list).
        class_ids: class ids, in the order of the matrix rows / columns.
        class_names: their names.
        ignore_class_ids: class ids whose pixels were left out.
        confusion_matrix: ``(K, K)`` int64 pixel counts, rows predicted, columns truth.
        per_image: one row per image: ``image_id``, ``name``, ``mean_iou``,
            ``pixel_accuracy``, ``pixels`` (evaluated pixels); ``mean_iou`` is NaN
            where an image has no evaluated pixel.
        worst: the lowest-ranked samples (ascending mean IoU), for the report.
        seconds: wall time of the evaluation.
        rules: the decision rules the images were judged by.
        decisions: one :class:`ImageDecision` per image, in evaluation order.
        decision_measures: image- and region-level measures
            (:func:`segcore.evaluate.decisions.decision_measures`).
        escapes / false_rejects: such samples (at most
            :data:`~segcore.evaluate.evaluation.MAX_PANELS` each), for the report.
        resolution: ``network`` (preprocessed labels) or ``original`` (original label files).
        tile_overlap: the sliding window's overlap (tiled models).
    """

    split: str
    measures: dict[str, Any]
    class_ids: list[int]
    class_names: list[str]
    ignore_class_ids: list[int]
    confusion_matrix: np.ndarray
    per_image: pd.DataFrame
    worst: list[EvaluatedSample] = field(default_factory=list)
    seconds: float = 0.0
    rules: DecisionRules | None = None
    decisions: list[ImageDecision] = field(default_factory=list)
    decision_measures: dict[str, Any] = field(default_factory=dict)
    escapes: list[EvaluatedSample] = field(default_factory=list)
    false_rejects: list[EvaluatedSample] = field(default_factory=list)
    resolution: str = NETWORK
    tile_overlap: float = DEFAULT_TILE_OVERLAP

    @property
    def num_images(self) -> int:
        return len(self.per_image)

    def scalar_measures(self) -> dict[str, float]:
        """The scalar measures (``pixel_accuracy``, ``mean_iou``, ...)."""
        return {k: float(v) for k, v in self.measures.items() if isinstance(v, int | float)}

    def per_class(self, measure: str) -> dict[str, float]:
        """``class_iou`` or ``class_pixel_accuracy`` as ``{class name: value}`` (-1: no GT)."""
        values = compute_measures(self.confusion_matrix, [measure])[measure]
        return dict(zip(self.class_names, values, strict=True))

    def render(self) -> str:
        """A few lines for the terminal."""
        head = (
            f"Evaluation on {self.num_images} {self.split} images at {self.resolution} "
            f"resolution ({self.seconds:.1f} s):"
        )
        lines = [head] + [f"  {k}: {v:.4f}" for k, v in self.scalar_measures().items()]
        for measure in ("class_iou", "class_pixel_accuracy"):
            if measure in self.measures:
                pairs = ", ".join(f"{n} {v:.4f}" for n, v in self.per_class(measure).items())
                lines.append(f"  {measure}: {pairs}")
        d = self.decision_measures
        if d:
            rate = lambda k: f"{d[k]:.4f}" if k in d else "n/a"  # noqa: E731
            lines.append(
                f"  decisions: escape_rate {rate('escape_rate')} ({d['escapes']} of "
                f"{d['num_defective']} defective), false_reject_rate "
                f"{rate('false_reject_rate')} ({d['false_rejects']} of "
                f"{d['num_defect_free']} defect-free), false_alarm_regions "
                f"{d['false_alarm_regions']}"
            )
        return "\n".join(lines)
