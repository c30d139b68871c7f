"""Image-level and region-level measures of the OK/NG decision, beside HALCON's pixel ones.

Per evaluated image (:func:`judge_image`): the verdict by the model's decision rules
(:mod:`segcore.infer.decide`), its ground truth, and the regions. Definitions:

- an image is *defective* (truly NG) when its label image holds any pixel of a defect
  class (a class that is neither background nor ignore class); else *defect-free*;
- an *escape* is a defective image judged OK; a *false reject* a defect-free image judged
  NG. ``escape_rate`` = escapes / defective images, ``false_reject_rate`` = false rejects /
  defect-free images (a rate is left out when its denominator is 0);
- regions are 8-connected components per class. A ground-truth region is *found* when a
  predicted region of its class that fires its rule overlaps it; ``region_recall`` = found
  / ground-truth regions, ``region_precision`` = firing predicted regions that overlap a
  ground-truth region of their class / firing predicted regions (-1: none to count);
- ``false_alarm_regions``: firing predicted regions on defect-free images.

Areas are compared with the rules in input-image pixels: the evaluation counts at network
resolution, so each image's areas are multiplied by its ``scale`` (input pixels per
network pixel). Counts first, measures derived (:func:`decision_measures`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from segcore.infer.decide import DecisionRules, Verdict, decide

INVALID = -1.0
"""Per-class value when there is nothing to count (no ground-truth or predicted region)."""


@dataclass(frozen=True)
class ClassRegions:
    """The predicted regions of one defect class in one image, for calibration.

    Attributes:
        area: ``(R,)`` areas in input-image pixels.
        mean_confidence: ``(R,)`` mean confidence of each region.
        max_confidence: ``(R,)`` max confidence of each region.
    """

    area: np.ndarray
    mean_confidence: np.ndarray
    max_confidence: np.ndarray

    def confidence(self, stat: str) -> np.ndarray:
        return self.mean_confidence if stat == "mean" else self.max_confidence

    @property
    def total_area(self) -> float:
        return float(self.area.sum())


@dataclass(frozen=True)
class ImageDecision:
    """The decision on one image and its ground truth.

    Attributes:
        truth_classes: defect class ids present in the label image.
        verdict: by the rules.
        gt_regions / gt_found: per defect class id, ground-truth regions and those found.
        fired_regions / fired_true: per defect class id, predicted regions that fire, and
            those of them that overlap a ground-truth region of their class.
        candidates: per defect class id, all its predicted regions (for calibration).
    """

    image_id: int
    name: str
    truth_classes: tuple[int, ...]
    verdict: Verdict
    gt_regions: dict[int, int]
    gt_found: dict[int, int]
    fired_regions: dict[int, int]
    fired_true: dict[int, int]
    candidates: dict[int, ClassRegions] = field(default_factory=dict, repr=False)

    @property
    def defective(self) -> bool:
        return bool(self.truth_classes)

    @property
    def outcome(self) -> str:
        """``escape``, ``false_reject``, ``correct_ng`` or ``correct_ok``."""
        if self.defective:
            return "escape" if self.verdict.ok else "correct_ng"
        return "correct_ok" if self.verdict.ok else "false_reject"


def _components(mask: np.ndarray) -> tuple[int, np.ndarray]:
    n, labels = cv2.connectedComponents(mask.view(np.uint8), connectivity=8)
    return n - 1, labels


def _region_stats(labels: np.ndarray, n: int, conf: np.ndarray) -> tuple[np.ndarray, ...]:
    """Area, mean and max confidence of components ``1..n`` of ``labels``."""
    flat, c = labels.ravel(), conf.ravel().astype(np.float64)
    area = np.bincount(flat, minlength=n + 1)[1:].astype(np.float64)
    sums = np.bincount(flat, weights=c, minlength=n + 1)[1:]
    peak = np.zeros(n + 1)
    np.maximum.at(peak, flat, c)
    return area, sums / np.maximum(area, 1), peak[1:]


def judge_image(
    prediction: np.ndarray,
    confidence: np.ndarray,
    label: np.ndarray,
    rules: DecisionRules,
    *,
    scale: float = 1.0,
    image_id: int = 0,
    name: str = "",
) -> ImageDecision:
    """Decide one image and count its regions against the ground truth.

    Args:
        prediction: ``(H, W)`` predicted class ids.
        confidence: ``(H, W)`` float32 probability of the predicted class.
        label: ``(H, W)`` ground-truth class ids (ignore classes and unknown values count
            as no defect).
        rules: the decision rules (their classes are the defect classes).
        scale: input-image pixels per pixel of these images.
    """
    labels_of: dict[int, np.ndarray] = {}
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("class_id", "area", "mean", "max")}
    candidates: dict[int, ClassRegions] = {}
    for cid in rules.defect_ids:
        n, labels = _components(prediction == cid)
        area, mean, peak = _region_stats(labels, n, confidence)
        labels_of[cid] = labels
        candidates[cid] = ClassRegions(area * scale, mean, peak)
        cols["class_id"].append(np.full(n, cid))
        for key, values in (("area", area), ("mean", mean), ("max", peak)):
            cols[key].append(values)
    joined = {k: np.concatenate(v) if v else np.zeros(0) for k, v in cols.items()}
    verdict, fires = decide(
        {
            "class_id": joined["class_id"],
            "area": joined["area"],
            "mean_confidence": joined["mean"],
            "max_confidence": joined["max"],
        },
        rules,
        scale,
    )
    counts = _region_counts(label, labels_of, fires, rules.defect_ids)
    truth = tuple(c for c in rules.defect_ids if counts[0][c] > 0)
    return ImageDecision(image_id, name, truth, verdict, *counts, candidates=candidates)


def _region_counts(
    label: np.ndarray,
    labels_of: dict[int, np.ndarray],
    fires: np.ndarray,
    defect_ids: Sequence[int],
) -> tuple[dict[int, int], dict[int, int], dict[int, int], dict[int, int]]:
    """Per class: ground-truth regions, found ones, firing predicted regions, true ones."""
    gt, found, fired, true = {}, {}, {}, {}
    offset = 0
    for cid in defect_ids:
        pred_labels = labels_of[cid]
        n_pred = int(pred_labels.max(initial=0))
        firing_ids = np.flatnonzero(fires[offset : offset + n_pred]) + 1
        offset += n_pred
        firing = np.isin(pred_labels, firing_ids)
        n_gt, gt_labels = _components(label == cid)
        gt[cid] = n_gt
        found[cid] = len(np.unique(gt_labels[firing & (gt_labels > 0)]))
        fired[cid] = len(firing_ids)
        true[cid] = len(np.unique(pred_labels[firing & (gt_labels > 0)]))
    return gt, found, fired, true


def _rate(num: int, den: int) -> float | None:
    return num / den if den else None


def decision_measures(images: Sequence[ImageDecision], rules: DecisionRules) -> dict[str, Any]:
    """Image-level and region-level measures (see the module docstring) of ``images``.

    Returns:
        ``image_confusion`` (``{ok_as_ok, ok_as_ng, ng_as_ok, ng_as_ng}``, truth first),
        ``num_defective``, ``num_defect_free``, ``escapes``, ``false_rejects``,
        ``escape_rate`` and ``false_reject_rate`` (absent when undefined),
        ``image_accuracy``, ``region_recall`` / ``region_precision`` /
        ``false_alarm_regions_by_class`` as ``{class name: value}``, ``false_alarm_regions``.
    """
    outcomes = [im.outcome for im in images]
    n = {o: outcomes.count(o) for o in ("escape", "false_reject", "correct_ng", "correct_ok")}
    defective = n["escape"] + n["correct_ng"]
    free = n["false_reject"] + n["correct_ok"]
    out: dict[str, Any] = {
        "image_confusion": {
            "ok_as_ok": n["correct_ok"],
            "ok_as_ng": n["false_reject"],
            "ng_as_ok": n["escape"],
            "ng_as_ng": n["correct_ng"],
        },
        "num_defective": defective,
        "num_defect_free": free,
        "escapes": n["escape"],
        "false_rejects": n["false_reject"],
    }
    for key, value in (
        ("escape_rate", _rate(n["escape"], defective)),
        ("false_reject_rate", _rate(n["false_reject"], free)),
        ("image_accuracy", _rate(n["correct_ok"] + n["correct_ng"], len(images))),
    ):
        if value is not None:
            out[key] = value
    recall, precision, alarms = {}, {}, {}
    for rule in rules.rules:
        cid = rule.class_id
        gt = sum(im.gt_regions[cid] for im in images)
        fired = sum(im.fired_regions[cid] for im in images)
        recall[rule.class_name] = sum(im.gt_found[cid] for im in images) / gt if gt else INVALID
        precision[rule.class_name] = (
            sum(im.fired_true[cid] for im in images) / fired if fired else INVALID
        )
        alarms[rule.class_name] = sum(im.fired_regions[cid] for im in images if not im.defective)
    out["region_recall"] = recall
    out["region_precision"] = precision
    out["false_alarm_regions_by_class"] = alarms
    out["false_alarm_regions"] = sum(alarms.values())
    return out


def input_scale(
    row: dict[str, Any], size: tuple[int, int], preprocess_param: dict[str, Any] | None
) -> float:
    """Input-image pixels per pixel of a preprocessed sample, to compare its region areas
    with rules given in pixels of the images ``segcore infer`` receives.

    Args:
        row: the sample's row of the dataset table (``image_width``, ``image_height``,
            optionally ``domain_roi``).
        size: ``(H, W)`` of the preprocessed sample.
        preprocess_param: the preprocessing parameters (``mode``, ``scale``,
            ``domain_handling``, ``domain_roi``).
    """
    param = preprocess_param or {}
    if param.get("mode") == "tiled":
        return 1.0 / float(param.get("scale", 1.0)) ** 2
    width, height = row.get("image_width"), row.get("image_height")
    if not width or not height:
        return 1.0
    area = float(width) * float(height)
    if param.get("domain_handling") == "crop_domain":
        roi = row.get("domain_roi")
        roi = roi if roi is not None and len(roi) == 4 else param.get("domain_roi")
        if roi is not None:
            r1, c1, r2, c2 = (int(v) for v in roi)
            area = float(min(r2, height - 1) - r1 + 1) * float(min(c2, width - 1) - c1 + 1)
    return area / float(size[0] * size[1])
