"""The dataset fingerprint: what a training plan needs to know about the data.

Read from the split dataset table (image sizes, channels, per-class pixel counts, the
split), plus the sizes of the defects themselves: the connected components of every
class in a bounded sample of the train split's label images, at original resolution.
The table alone answers most questions without reading an image; the label images are
read only for the defect sizes, and at most ``max_images`` of them (or ``max_pixels``
pixels), chosen among the images that hold each class.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from segcore.common.constants import COL_CHANNELS, COL_HEIGHT, COL_LABEL_FILE, COL_WIDTH, TRAIN
from segcore.common.errors import DatasetError
from segcore.common.images import PixelLimit, read_label
from segcore.common.progress import track
from segcore.data.dldataset import DLDataset

log = logging.getLogger(__name__)

MAX_LABEL_IMAGES = 200
"""Label images read at most for the defect sizes."""
MAX_LABEL_PIXELS = 200_000_000
"""Label pixels read at most (about 65 images of 3 megapixels)."""
MIN_IMAGES_PER_CLASS = 8
"""Images per class read at least (when the dataset has them), so a rare class is measured."""


@dataclass(frozen=True)
class ClassFingerprint:
    """One class of the dataset, as the plan sees it.

    Attributes:
        class_id, name: the class.
        train_pixels: its pixels in the train split's label images.
        pixel_fraction: ``train_pixels`` over all train pixels of the (non-ignored) classes.
        train_images: train images that hold the class.
        components: connected components (8-connected) measured in the sampled images.
        median_area: their median area in pixels, at original resolution (``None``: none
            measured).
        median_width: their median width in pixels at the thickest point (twice the
            largest distance to the component's border, minus one), at original resolution.
        small_area: the 10th percentile of the areas (the small tenth of the defects).
    """

    class_id: int
    name: str
    train_pixels: int
    pixel_fraction: float
    train_images: int
    components: int = 0
    median_area: float | None = None
    median_width: float | None = None
    small_area: float | None = None


@dataclass(frozen=True)
class DatasetFingerprint:
    """The dataset as the plan sees it: sizes, classes, defect sizes, sample counts.

    Attributes:
        num_samples: samples in all splits.
        split_counts: samples per split.
        width, height: median image size in pixels.
        min_side, max_side: shortest and longest image side over all images.
        same_size: whether all images share one size.
        channels: the most channels any image has (1 grey, 3 colour).
        background_id: the class with the most train pixels (the good surface).
        classes: one entry per (non-ignored) class, in ``class_ids`` order.
        sampled_images: label images read for the defect sizes.
        ignore_class_ids: classes left out (``preprocess.param.ignore_class_ids``).
    """

    num_samples: int
    split_counts: dict[str, int]
    width: int
    height: int
    min_side: int
    max_side: int
    same_size: bool
    channels: int
    background_id: int
    classes: list[ClassFingerprint]
    sampled_images: int = 0
    ignore_class_ids: list[int] = field(default_factory=list)

    @property
    def num_train(self) -> int:
        return self.split_counts.get(TRAIN, 0)

    @property
    def defects(self) -> list[ClassFingerprint]:
        """The classes other than the background, rarest first."""
        others = [c for c in self.classes if c.class_id != self.background_id]
        return sorted(others, key=lambda c: c.pixel_fraction)


def fingerprint_dataset(
    dataset: DLDataset,
    *,
    ignore_class_ids: Sequence[int] = (),
    max_images: int = MAX_LABEL_IMAGES,
    max_pixels: int = MAX_LABEL_PIXELS,
    seed: int = 0,
    limit: PixelLimit | None = None,
    report: Callable[[str], None] | None = None,
) -> DatasetFingerprint:
    """Fingerprint a split dataset: sizes and class frequencies from the table, defect
    sizes from a bounded sample of the train split's label images.

    Args:
        dataset: a dataset with a split (``segcore split``).
        ignore_class_ids: classes left out of frequencies and defect sizes.
        max_images, max_pixels: at most this many label images / pixels are read.
        seed: chooses the sampled images (the same seed reads the same images).
        limit: the largest label image read (``dataset.max_image_pixels``).
        report: receives one line before the label images are read (default: the log).

    Raises:
        DatasetError: the dataset has no split or no train sample, or a label image
            cannot be read.
    """
    samples = dataset.samples
    train = _train_split(dataset)
    ignore = {int(i) for i in ignore_class_ids}
    keep = [k for k, c in enumerate(dataset.class_ids) if c not in ignore]
    counts = dataset.pixel_counts(train)[:, keep]  # (N_train, K')
    ids = [int(dataset.class_ids[k]) for k in keep]
    names = [str(dataset.class_names[k]) for k in keep]
    background = ids[int(np.argmax(counts.sum(axis=0)))]
    rows = _sample_rows(counts, ids, background, max_images, max_pixels, seed)
    say = report or log.info
    say(
        f"Fingerprint: measuring defect sizes in {len(rows)} of {len(train)} train label images"
        f" (at most {max_images} images / {max_pixels / 1e6:.0f} megapixels)"
    )
    started = time.perf_counter()
    sizes = _measure_components(dataset, train.iloc[rows], ids, background, limit)
    regions = sum(len(areas) for areas, _ in sizes.values())
    say(f"Fingerprint: {regions} defect regions measured in {time.perf_counter() - started:.1f} s")
    total = max(int(counts.sum()), 1)
    classes = [
        _class_fingerprint(cid, name, counts[:, k], total, sizes.get(cid, ([], [])))
        for k, (cid, name) in enumerate(zip(ids, names, strict=True))
    ]
    return DatasetFingerprint(
        **_size_fields(samples),
        background_id=background,
        classes=classes,
        sampled_images=len(rows),
        ignore_class_ids=sorted(ignore),
    )


def _train_split(dataset: DLDataset) -> pd.DataFrame:
    """The train split's samples; no split or an empty one is a ``DatasetError``."""
    if not dataset.has_split:
        raise DatasetError(
            "the dataset has no split; run `segcore split` and plan on its output (split.out)"
        )
    train = dataset.split(TRAIN)
    if train.empty:
        raise DatasetError(
            "the train split is empty; raise split.training_percent and run `segcore split "
            "--overwrite`"
        )
    return train


def _size_fields(samples: pd.DataFrame) -> dict[str, Any]:
    """The fingerprint's sample counts, image sizes and channels, from the table."""
    widths, heights = samples[COL_WIDTH].to_numpy(), samples[COL_HEIGHT].to_numpy()
    channels = int(samples[COL_CHANNELS].max()) if COL_CHANNELS in samples else 3
    return {
        "num_samples": len(samples),
        "split_counts": {str(k): int(v) for k, v in samples["split"].value_counts().items()},
        "width": int(np.median(widths)),
        "height": int(np.median(heights)),
        "min_side": int(min(widths.min(), heights.min())),
        "max_side": int(max(widths.max(), heights.max())),
        "same_size": bool((widths == widths[0]).all() and (heights == heights[0]).all()),
        "channels": channels,
    }


def _sample_rows(
    counts: np.ndarray,
    ids: list[int],
    background: int,
    max_images: int,
    max_pixels: int,
    seed: int,
) -> list[int]:
    """Positions of the train samples to read: images of each defect class in turn (rarest
    class first), in a seeded random order, until ``max_images`` or ``max_pixels``."""
    rng = np.random.default_rng(seed)
    pixels = counts.sum(axis=1)
    order = [k for k in np.argsort(counts.sum(axis=0)) if ids[k] != background]
    queues = [list(rng.permutation(np.flatnonzero(counts[:, k] > 0))) for k in order]
    chosen: list[int] = []
    seen: set[int] = set()
    used = 0
    while any(queues) and len(chosen) < max_images:
        for queue in queues:
            while queue and queue[0] in seen:
                queue.pop(0)
            if not queue:
                continue
            row = int(queue.pop(0))
            if chosen and used + int(pixels[row]) > max_pixels:
                return sorted(chosen)
            seen.add(row)
            chosen.append(row)
            used += int(pixels[row])
            if len(chosen) >= max_images:
                break
    return sorted(chosen)


def _measure_components(
    dataset: DLDataset,
    rows: pd.DataFrame,
    ids: list[int],
    background: int,
    limit: PixelLimit | None,
) -> dict[int, tuple[list[float], list[float]]]:
    """Per class id: the areas and widths of its connected components in ``rows``."""
    out: dict[int, tuple[list[float], list[float]]] = {c: ([], []) for c in ids if c != background}
    files = list(rows[COL_LABEL_FILE])
    for name in track(files, "Fingerprint: label images"):
        path = Path(dataset.segmentation_dir) / name
        label = read_label(path) if limit is None else read_label(path, limit)
        for cid, (areas, widths) in out.items():
            a, w = component_sizes(label == cid)
            areas += a
            widths += w
    return out


def component_sizes(mask: np.ndarray) -> tuple[list[float], list[float]]:
    """Areas and widths of the 8-connected components of a boolean ``(H, W)`` mask.

    The width of a component is measured at its thickest point: ``2 * d - 1`` with ``d``
    the largest Euclidean distance of one of its pixels to the nearest pixel outside
    (a 1-pixel line has width 1, a 3-pixel line 3, a 5 x 5 square 5).
    """
    if not mask.any():
        return [], []
    m = np.ascontiguousarray(mask, dtype=np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    # Pad so that the image border counts as outside the component.
    dist = cv2.distanceTransform(np.pad(m, 1), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
    inside = labels > 0
    deepest = np.zeros(n, dtype=np.float64)
    np.maximum.at(deepest, labels[inside], dist[inside])
    areas = stats[1:, cv2.CC_STAT_AREA].astype(float).tolist()
    widths = np.maximum(2.0 * np.round(deepest[1:]) - 1.0, 1.0).tolist()
    return areas, widths


def _class_fingerprint(
    cid: int, name: str, counts: np.ndarray, total: int, sizes: tuple[list[float], list[float]]
) -> ClassFingerprint:
    areas, widths = sizes
    return ClassFingerprint(
        class_id=cid,
        name=name,
        train_pixels=int(counts.sum()),
        pixel_fraction=float(counts.sum()) / total,
        train_images=int((counts > 0).sum()),
        components=len(areas),
        median_area=float(np.median(areas)) if areas else None,
        median_width=float(np.median(widths)) if widths else None,
        small_area=float(np.percentile(areas, 10)) if areas else None,
    )
