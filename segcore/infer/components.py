"""Connected regions of a segmentation image (HALCON: threshold on the class id, then
``connection``): per class its 8-connected components with area, bounding box, centroid
and mean / max confidence, as :class:`Region` objects or as columns for tables."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from segcore.model.config import BundleConfig


@dataclass(frozen=True)
class Region:
    """One connected component of one class (HALCON: a region of the thresholded result).

    ``bbox`` is ``(row1, col1, row2, col2)``, inclusive, in input-image pixels;
    ``centroid`` is ``(row, col)``. ``fires``: the region passes its class's decision rule
    (:mod:`segcore.infer.decide`).
    """

    class_id: int
    class_name: str
    area: int
    bbox: tuple[int, int, int, int]
    centroid: tuple[float, float]
    mean_confidence: float
    max_confidence: float = 0.0
    fires: bool = False


REGION_COLUMNS = (
    "class_id",
    "class_name",
    "area",
    "row1",
    "col1",
    "row2",
    "col2",
    "centroid_row",
    "centroid_col",
    "mean_confidence",
    "max_confidence",
)
"""Columns of :func:`region_columns` (bounding box inclusive, centroid as row / column)."""


def region_columns(
    segmentation: np.ndarray,
    confidence: np.ndarray,
    config: BundleConfig,
    min_area: int = 1,
) -> dict[str, np.ndarray]:
    """Connected components (8-neighbourhood) of every class, as columns (one entry each).

    Ordered by class index, then by area (largest first). Vectorised: a noisy result
    with thousands of specks costs milliseconds.

    Args:
        segmentation: ``(H, W)`` class ids.
        confidence: ``(H, W)`` float32 confidences (for each region's mean).
        min_area: regions with fewer pixels are dropped.

    Returns:
        :data:`REGION_COLUMNS` -> 1-D arrays of equal length.
    """
    parts: list[dict[str, np.ndarray]] = []
    flat_conf = confidence.ravel().astype(np.float64)
    for class_id, name in zip(config.class_ids, config.class_names, strict=True):
        mask = (segmentation == class_id).view(np.uint8)
        if not mask.any():
            continue
        n, labels, stats, centroids = cv2.connectedComponentsWithStats(mask, connectivity=8)
        flat_labels = labels.ravel()
        sums = np.bincount(flat_labels, weights=flat_conf, minlength=n)[1:]
        peaks = np.zeros(n, dtype=np.float64)
        np.maximum.at(peaks, flat_labels, flat_conf)
        peaks = peaks[1:]
        stats, centroids = stats[1:], centroids[1:]
        area = stats[:, cv2.CC_STAT_AREA]
        keep = np.flatnonzero(area >= min_area)
        keep = keep[np.argsort(-area[keep], kind="stable")]
        x, y = stats[keep, cv2.CC_STAT_LEFT], stats[keep, cv2.CC_STAT_TOP]
        parts.append(
            {
                "class_id": np.full(len(keep), class_id, dtype=np.int32),
                "class_name": np.full(len(keep), name, dtype=object),
                "area": area[keep].astype(np.int64),
                "row1": y.astype(np.int32),
                "col1": x.astype(np.int32),
                "row2": (y + stats[keep, cv2.CC_STAT_HEIGHT] - 1).astype(np.int32),
                "col2": (x + stats[keep, cv2.CC_STAT_WIDTH] - 1).astype(np.int32),
                "centroid_row": centroids[keep, 1],
                "centroid_col": centroids[keep, 0],
                "mean_confidence": sums[keep] / area[keep],
                "max_confidence": peaks[keep],
            }
        )
    if not parts:
        empty = {"class_id": np.int32, "class_name": object, "area": np.int64}
        return {c: np.zeros(0, dtype=empty.get(c, np.float64)) for c in REGION_COLUMNS}
    return {c: np.concatenate([p[c] for p in parts]) for c in REGION_COLUMNS}


def find_regions(
    segmentation: np.ndarray,
    confidence: np.ndarray,
    config: BundleConfig,
    min_area: int = 1,
) -> list[Region]:
    """Connected components (8-neighbourhood) of every class in a segmentation image.

    Args:
        segmentation: ``(H, W)`` class ids.
        confidence: ``(H, W)`` float32 confidences (for each region's mean and max).
        min_area: regions with fewer pixels are dropped.

    Returns:
        the regions, ordered by class index, then by area (largest first).
    """
    return regions_from(region_columns(segmentation, confidence, config), min_area)


def regions_from(
    cols: dict[str, np.ndarray], min_area: int = 1, fires: np.ndarray | None = None
) -> list[Region]:
    """:class:`Region` objects from :func:`region_columns`, those of ``min_area`` or more.

    Args:
        fires: per row of ``cols``, whether the region passes its class's decision rule
            (``None``: none does).
    """
    fire = np.zeros(len(cols["area"]), dtype=bool) if fires is None else np.asarray(fires)
    keep = cols["area"] >= min_area
    # Python scalars in one conversion per column: a noisy result has many thousand regions.
    lists = [cols[c][keep].tolist() for c in REGION_COLUMNS] + [fire[keep].tolist()]
    return [
        Region(cid, str(name), area, (r1, c1, r2, c2), (cr, cc), mc, mx, f)
        for cid, name, area, r1, c1, r2, c2, cr, cc, mc, mx, f in zip(*lists, strict=True)
    ]
