"""Where predictions meet the ground truth in evaluation: network or original resolution.

- ``network`` (HALCON's evaluate_dl_model): the preprocessed label images of the samples.
  For a resize model that is ``image_width x image_height``; for a tiled model the stored
  samples' size (native size times ``scale``).
- ``original``: the original label files, read through the dataset table
  (``segmentation_dir`` / ``segmentation_file_name``) and mapped as preprocessing maps them
  (cropped to the region of interest under ``crop_domain``, background classes merged,
  ignore classes left out), at their own size. The class probabilities are resized
  bilinearly to that size before the argmax, exactly as ``segcore infer`` does, so the
  measures describe the results a user receives.
- ``auto``: ``original`` for tiled models, ``network`` for resize models.

Tiled models run as a sliding window over each whole sample (:mod:`segcore.infer.tiling`).
The measures themselves (one confusion matrix, HALCON's definitions) do not change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from segcore.common.constants import COL_DOMAIN_ROI, COL_LABEL_FILE, DEFAULT_TILE_OVERLAP
from segcore.common.errors import DatasetError, ParamsError
from segcore.common.images import DEFAULT_LIMIT, PixelLimit, read_label
from segcore.data.dldataset import DLDataset
from segcore.infer.apply import SegModel, class_map
from segcore.params import PreprocessParams
from segcore.preprocess.transforms import background_lut, crop_to_roi, resolve_roi

NETWORK = "network"
ORIGINAL = "original"
AUTO = "auto"
RESOLUTIONS = (AUTO, NETWORK, ORIGINAL)
DISPLAY_SIDE = 512
"""Longest side (pixels) of the samples kept for the report's figure; larger samples are
shrunk for display only (the measures use every pixel)."""

Batch = list[tuple[dict[str, Any], dict[str, np.ndarray]]]
"""``(dataset table row, loaded sample)`` pairs."""


def resolve_resolution(resolution: str, model: SegModel) -> str:
    """``network`` or ``original`` for ``resolution`` (``auto``: original for tiled models).

    Raises:
        ParamsError: an unknown value.
    """
    if resolution not in RESOLUTIONS:
        raise ParamsError(
            f"evaluate.resolution: unknown {resolution!r}; use one of {', '.join(RESOLUTIONS)}"
        )
    if resolution == AUTO:
        return ORIGINAL if model.tiled else NETWORK
    return resolution


@dataclass(frozen=True)
class OriginalLabels:
    """Reads a sample's original label file and maps it as preprocessing did."""

    segmentation_dir: Path
    param: PreprocessParams
    limit: PixelLimit = DEFAULT_LIMIT

    @classmethod
    def of(cls, dataset: DLDataset, model: SegModel) -> OriginalLabels:
        """For ``dataset``, with its preprocessing parameters (else the model's).

        Raises:
            DatasetError: the dataset table does not name the label files.
        """
        if COL_LABEL_FILE not in dataset.samples:
            raise DatasetError(
                f"the dataset table has no {COL_LABEL_FILE} column, so the original label "
                "files are unknown; evaluate a table made by `segcore dataset` / `segcore "
                "preprocess`, or set evaluate.resolution: network"
            )
        param = dataset.preprocess_param or model.config.preprocess_param
        return cls(Path(dataset.segmentation_dir), PreprocessParams.model_validate(param))

    def label(self, row: dict[str, Any]) -> np.ndarray:
        """``(H, W)`` uint16 class ids of the row's label file: cropped to its region of
        interest (``crop_domain``), background classes merged.

        Raises:
            DatasetError: the file is missing or unreadable, or the region lies outside it.
        """
        path = self.segmentation_dir / str(row[COL_LABEL_FILE])
        try:
            label = read_label(path, self.limit)
        except DatasetError as err:
            raise DatasetError(
                f"{err.render()}; evaluation at original resolution reads the original label "
                "files: restore them, or set evaluate.resolution: network"
            ) from None
        try:
            label = crop_to_roi(label, resolve_roi(self.param, _row_roi(row)))
        except DatasetError as err:
            raise DatasetError(f"{path}: {err.render()}") from None
        lut = background_lut(self.param)
        label = label.astype(np.uint16, copy=False)
        return label if lut is None else lut[label]


def _row_roi(row: dict[str, Any]) -> tuple[int, ...] | None:
    value = row.get(COL_DOMAIN_ROI)
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return tuple(int(v) for v in np.asarray(value).ravel())


@dataclass(frozen=True)
class Counted:
    """One sample's prediction and ground truth, at the evaluated resolution.

    Attributes:
        prediction: ``(H, W)`` int64 class indices.
        confidence: ``(H, W)`` float32 probability of the predicted class.
        label: ``(H, W)`` uint16 ground-truth class ids.
        image: ``(C, h, w)`` float32 network input (for display).
    """

    prediction: np.ndarray
    confidence: np.ndarray
    label: np.ndarray
    image: np.ndarray


@dataclass(frozen=True)
class Predictor:
    """How a model is run on the samples of an evaluation and compared with the labels."""

    model: SegModel
    resolution: str
    batch_size: int = 8
    tile_overlap: float = DEFAULT_TILE_OVERLAP
    labels: OriginalLabels | None = None
    """Set for ``original`` resolution."""

    @classmethod
    def of(
        cls,
        model: SegModel,
        dataset: DLDataset,
        resolution: str,
        batch_size: int = 8,
        tile_overlap: float = DEFAULT_TILE_OVERLAP,
    ) -> Predictor:
        """For ``resolution`` (``auto``, ``network`` or ``original``)."""
        chosen = resolve_resolution(resolution, model)
        labels = OriginalLabels.of(dataset, model) if chosen == ORIGINAL else None
        return cls(model, chosen, batch_size, tile_overlap, labels)

    @property
    def samples_per_batch(self) -> int:
        """Samples loaded at once: a tiled model's batch is the tiles of one sample."""
        return 1 if self.model.tiled else self.batch_size

    def run(self, batch: Batch) -> list[Counted]:
        """Predict a batch of samples of one size; each sample's prediction and labels."""
        images = [sample["image"] for _, sample in batch]
        if self.model.tiled:
            probs: Sequence[np.ndarray] = [
                self.model.window_probabilities(
                    x, self.tile_overlap, self.batch_size, "evaluate.tile_overlap"
                )
                for x in images
            ]
        elif self.labels is None:  # resize model at network size: the argmax on the device
            pred, conf = self.model.predict(np.stack(images))
            return [
                Counted(p, c, s["label"], s["image"])
                for (_, s), p, c in zip(batch, pred, conf, strict=True)
            ]
        else:
            probs = self.model.probabilities(np.stack(images))
        out = []
        for (row, sample), p in zip(batch, probs, strict=True):
            label = sample["label"] if self.labels is None else self.labels.label(row)
            index, conf = class_map(p, label.shape)
            out.append(Counted(index, conf, label, sample["image"]))
        return out


def display_copy(counted: Counted, class_ids: np.ndarray) -> tuple[np.ndarray, ...]:
    """``(image, label, prediction ids, confidence)`` of one sample at one size for display:
    the label's size, shrunk to at most :data:`DISPLAY_SIDE` pixels (image and confidence
    area-averaged, classes nearest neighbour)."""
    height, width = counted.label.shape
    factor = min(1.0, DISPLAY_SIDE / max(height, width))
    size = (max(1, round(width * factor)), max(1, round(height * factor)))

    def smooth(a: np.ndarray) -> np.ndarray:
        if a.shape[:2] == (size[1], size[0]):
            return a
        out = cv2.resize(a, size, interpolation=cv2.INTER_AREA)
        return out.reshape(size[1], size[0], *a.shape[2:])

    def nearest(a: np.ndarray) -> np.ndarray:
        if a.shape == (size[1], size[0]):
            return a
        return cv2.resize(a, size, interpolation=cv2.INTER_NEAREST_EXACT)

    image = smooth(np.ascontiguousarray(counted.image.transpose(1, 2, 0))).transpose(2, 0, 1)
    prediction = class_ids[counted.prediction].astype(np.uint16)
    return (
        np.ascontiguousarray(image, np.float32),
        nearest(counted.label),
        nearest(prediction),
        smooth(counted.confidence.astype(np.float32)),
    )
