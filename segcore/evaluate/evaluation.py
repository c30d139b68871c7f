"""Evaluation of a model on one split of the preprocessed dataset (HALCON: evaluate_dl_model).

Predictions are compared with the preprocessed label images at network resolution, as
HALCON does on preprocessed samples, or with the original label files at their own size
(``evaluate.resolution``; the default for tiled models, see
:mod:`segcore.evaluate.resolution`). Every pixel of the split is counted into one
``(K, K)`` confusion matrix (rows predicted class, columns ground truth; ignore-class
pixels and unknown label values removed), and every measure is derived from it with
:mod:`segcore.evaluate.metrics` — never averaged per batch. A per-image mean IoU ranks the
samples, and the worst ones are kept for the report. Beside the pixel measures, every
image is decided OK or NG by the model's decision rules and counted into the image- and
region-level measures of :mod:`segcore.evaluate.decisions`; escapes and false rejects are
kept for the report.
"""

from __future__ import annotations

import heapq
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from segcore.common.constants import (
    COL_IMAGE_FILE,
    COL_IMAGE_ID,
    COL_SAMPLE_FILE,
    DEFAULT_TILE_OVERLAP,
    MODE_RESIZE,
    MODE_TILED,
)
from segcore.common.errors import DatasetError, ParamsError, Problems
from segcore.common.progress import track
from segcore.data.dldataset import DLDataset
from segcore.data.samples import label_to_index, load_sample
from segcore.evaluate.decisions import (
    ImageDecision,
    decision_measures,
    input_scale,
    judge_image,
)
from segcore.evaluate.metrics import (
    ALL,
    compute_measures,
    confusion_matrix_np,
    mean_iou,
    pixel_accuracy,
    resolve_measures,
)
from segcore.evaluate.resolution import (
    AUTO,
    ORIGINAL,
    Batch,
    Counted,
    Predictor,
    display_copy,
)
from segcore.evaluate.result import EvaluatedSample, EvaluationResult
from segcore.infer.apply import SegModel, load_model
from segcore.infer.decide import DecisionRules
from segcore.infer.tiling import check_overlap

_PREPROCESS_KEYS_THAT_MUST_MATCH = (
    "image_width",
    "image_height",
    "image_num_channels",
    "image_range_min",
    "image_range_max",
    "normalization_type",
    "domain_handling",
)


def evaluate_model(
    model_or_bundle: SegModel | str | os.PathLike[str],
    dataset: DLDataset | str | os.PathLike[str],
    *,
    split: str = "test",
    measures: Sequence[str] = (ALL,),
    batch_size: int = 8,
    device: str = "auto",
    keep_worst: int = 6,
    resolution: str = AUTO,
    tile_overlap: float = DEFAULT_TILE_OVERLAP,
) -> EvaluationResult:
    """Evaluate a model on one split of a preprocessed dataset (HALCON: evaluate_dl_model).

    Args:
        model_or_bundle: a loaded model or a bundle directory.
        dataset: the preprocessed dataset (or its Parquet file).
        split: ``train``, ``validation`` or ``test``.
        measures: measure names (see :data:`segcore.evaluate.metrics.ALL_MEASURES`); ``all`` is every one.
        batch_size: samples per forward pass (tiled models: tiles per forward pass).
        device: for a bundle: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        keep_worst: how many of the lowest-ranked samples to keep for display.
        resolution: ``network``, ``original`` or ``auto`` (see
            :mod:`segcore.evaluate.resolution`).
        tile_overlap: tiled models: fraction of a tile shared by neighbouring tiles, [0, 1).

    Raises:
        DatasetError: the dataset is not preprocessed, the split is empty, the dataset's
            classes or preprocessing differ from the model's, or (original resolution) a
            label file is missing.
        ParamsError: an unknown measure name or resolution, an overlap of a whole tile.
    """
    names = _measure_names(measures)
    ds = dataset if isinstance(dataset, DLDataset) else DLDataset.load(dataset)
    model = (
        model_or_bundle
        if isinstance(model_or_bundle, SegModel)
        else load_model(model_or_bundle, device=device)
    )
    samples = _check(ds, model, split)
    rules = model.rules
    ignore = _ignore_ids(ds, model)
    class_ids = list(model.config.class_ids)
    predictor = Predictor.of(model, ds, resolution, batch_size, tile_overlap)
    if model.tiled:
        tile = (model.preprocess.image_height, model.preprocess.image_width)
        check_overlap(tile_overlap, tile, "evaluate.tile_overlap")
    start = time.perf_counter()
    tally = _Tally(class_ids, ignore, keep_worst, rules, ds.preprocess_param)
    tally.original = predictor.resolution == ORIGINAL
    per_batch = predictor.samples_per_batch
    batches = _batches(ds, samples, per_batch)
    label = f"Evaluating {split} ({predictor.resolution} resolution)"
    for batch in track(batches, label, total=-(-len(samples) // per_batch)):
        for (row, _), counted in zip(batch, predictor.run(batch), strict=True):
            tally.add(row, counted)
    result = tally.result(split, names, list(model.config.class_names), start)
    result.resolution, result.tile_overlap = predictor.resolution, tile_overlap
    return result


def _ignore_ids(ds: DLDataset, model: SegModel) -> list[int]:
    """The class ids left out of the measures: the model's and the preprocessing's."""
    return sorted(
        set(model.config.ignore_class_ids)
        | set((ds.preprocess_param or {}).get("ignore_class_ids", []))
    )


def _measure_names(measures: Sequence[str]) -> list[str]:
    """The measure names that ``measures`` stands for; an unknown one is a ``ParamsError``."""
    try:
        return resolve_measures(measures)
    except ValueError as err:
        raise ParamsError(f"evaluate.measures: {err}") from None


PER_IMAGE_COLUMNS = [
    "image_id",
    "name",
    "mean_iou",
    "pixel_accuracy",
    "pixels",
    "truth",
    "verdict",
    "outcome",
    "fired",
]
"""Columns of ``EvaluationResult.per_image``; ``truth`` / ``verdict``: OK or NG, ``outcome``:
``escape``, ``false_reject``, ``correct_ng`` or ``correct_ok``, ``fired``: the rules that fired."""
MAX_PANELS = 12
"""Escapes and false rejects kept for the report, each."""


@dataclass
class _Tally:
    """Sums over the batches: the confusion matrix, per-image rows and the worst samples."""

    class_ids: list[int]
    ignore: list[int]
    keep_worst: int
    rules: DecisionRules
    preprocess_param: dict[str, Any] | None
    decisions: list[ImageDecision] = field(default_factory=list)
    escapes: list[EvaluatedSample] = field(default_factory=list)
    false_rejects: list[EvaluatedSample] = field(default_factory=list)
    original: bool = False
    """Predictions are compared at the original label size (else the network's)."""
    total: np.ndarray = field(init=False)
    """``(K, K)`` int64 pixel counts of every sample so far."""
    ids: np.ndarray = field(init=False)
    """``(K,)`` uint16 class id per class index."""
    rows: list[dict[str, Any]] = field(default_factory=list)
    worst: list[tuple[float, int, EvaluatedSample]] = field(default_factory=list)

    def __post_init__(self) -> None:
        """Start from an empty matrix."""
        k = len(self.class_ids)
        self.total = np.zeros((k, k), dtype=np.int64)
        self.ids = np.asarray(self.class_ids, dtype=np.uint16)

    def add(self, row: dict[str, Any], counted: Counted) -> None:
        """Count one sample's prediction against its ground truth."""
        target = label_to_index(counted.label, self.class_ids, self.ignore)
        m = confusion_matrix_np(counted.prediction, target, len(self.class_ids))
        self.total += m
        pixels = int(m.sum())
        miou = mean_iou(m) if pixels else float("nan")
        name = str(row.get(COL_IMAGE_FILE, row[COL_SAMPLE_FILE]))
        image_id = int(row.get(COL_IMAGE_ID, len(self.rows)))
        pred = self.ids[counted.prediction]
        # Rules count pixels of the input image: the original labels are at its size.
        scale = 1.0 if self.original else input_scale(row, pred.shape, self.preprocess_param)
        decision = judge_image(
            pred,
            counted.confidence,
            counted.label,
            self.rules,
            scale=scale,
            image_id=image_id,
            name=name,
        )
        self.decisions.append(decision)
        self.rows.append(
            {
                "image_id": image_id,
                "name": name,
                "mean_iou": miou,
                "pixel_accuracy": pixel_accuracy(m) if pixels else float("nan"),
                "pixels": pixels,
                "truth": "NG" if decision.defective else "OK",
                "verdict": decision.verdict.label,
                "outcome": decision.outcome,
                "fired": decision.verdict.describe(),
            }
        )
        panels = {"escape": self.escapes, "false_reject": self.false_rejects}.get(decision.outcome)
        keep_panel = panels is not None and len(panels) < MAX_PANELS
        keep_worst = self.keep_worst > 0 and pixels
        if not (keep_panel or keep_worst):
            return
        kept = EvaluatedSample(image_id, name, miou, *display_copy(counted, self.ids))
        if keep_panel:
            panels.append(kept)
        if keep_worst:
            self._keep((-miou, -len(self.rows), kept))

    def _keep(self, entry: tuple[float, int, EvaluatedSample]) -> None:
        """Keep ``entry`` while among the ``keep_worst`` lowest mean IoUs; ties keep the earlier."""
        if len(self.worst) < self.keep_worst:
            heapq.heappush(self.worst, entry)
        elif entry > self.worst[0]:
            heapq.heapreplace(self.worst, entry)

    def result(
        self, split: str, names: list[str], class_names: list[str], start: float
    ) -> EvaluationResult:
        """The measures ``names`` of everything counted; ``seconds`` since ``start``."""
        return EvaluationResult(
            split=split,
            measures=compute_measures(self.total, names),
            class_ids=self.class_ids,
            class_names=class_names,
            ignore_class_ids=self.ignore,
            confusion_matrix=self.total,
            per_image=pd.DataFrame(self.rows, columns=PER_IMAGE_COLUMNS),
            worst=[e[2] for e in sorted(self.worst, key=lambda e: (-e[0], -e[1]))],
            seconds=time.perf_counter() - start,
            rules=self.rules,
            decisions=self.decisions,
            decision_measures=decision_measures(self.decisions, self.rules),
            escapes=self.escapes,
            false_rejects=self.false_rejects,
        )


def _check(ds: DLDataset, model: SegModel, split: str) -> pd.DataFrame:
    """The split's samples, after checking that dataset and model fit together."""
    problems = Problems()
    if ds.sample_dir is None or COL_SAMPLE_FILE not in ds.samples:
        raise DatasetError(
            "the dataset is not preprocessed (no sample files); run `segcore preprocess` "
            "and evaluate its dataset.parquet"
        )
    if list(ds.class_ids) != list(model.config.class_ids):
        problems.add(
            f"the dataset's class_ids {ds.class_ids} differ from the model's "
            f"{list(model.config.class_ids)}; evaluate a model trained on this dataset"
        )
    theirs = ds.preprocess_param or {}
    ours = model.config.preprocess_param or {}
    mode = (theirs.get("mode", MODE_RESIZE), ours.get("mode", MODE_RESIZE))
    if mode[0] != mode[1]:
        problems.add(
            f"preprocess_param mode: dataset has {mode[0]!r}, the model expects {mode[1]!r}; "
            "preprocess the data with the model's parameters"
        )
    elif mode[0] == MODE_TILED and theirs.get("scale", 1.0) != ours.get("scale", 1.0):
        problems.add(
            f"preprocess_param scale: dataset has {theirs.get('scale', 1.0)!r}, the model "
            f"expects {ours.get('scale', 1.0)!r}; preprocess the data with the model's parameters"
        )
    for key in _PREPROCESS_KEYS_THAT_MUST_MATCH:
        if key in theirs and key in ours and theirs[key] != ours[key]:
            problems.add(
                f"preprocess_param {key}: dataset has {theirs[key]!r}, the model expects "
                f"{ours[key]!r}; preprocess the data with the model's parameters"
            )
    problems.raise_if_any(DatasetError, "dataset and model do not fit together")
    samples = ds.split(split)
    if samples.empty:
        counts = ds.samples["split"].value_counts().to_dict()
        raise DatasetError(
            f"split {split!r} has no samples (the dataset has {counts}); choose another split "
            "or split again with other percentages"
        )
    return samples


def _batches(ds: DLDataset, samples: pd.DataFrame, batch_size: int) -> Iterator[Batch]:
    """Batches of ``(table row, loaded sample)``; a new batch starts when the size changes."""
    assert ds.sample_dir is not None
    batch: Batch = []
    for row in samples.to_dict("records"):
        sample = load_sample(Path(ds.sample_dir) / row[COL_SAMPLE_FILE])
        if batch and (
            len(batch) == batch_size or batch[0][1]["image"].shape != sample["image"].shape
        ):
            yield batch
            batch = []
        batch.append((row, sample))
    if batch:
        yield batch
