"""The preprocess stage's inputs: parameters checked against the dataset before any work,
and one job per sample (with its region of interest under ``crop_domain``)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from segcore.common.constants import (
    COL_DOMAIN_ROI,
    COL_HEIGHT,
    COL_IMAGE_FILE,
    COL_IMAGE_ID,
    COL_LABEL_FILE,
    COL_SPLIT,
    COL_WIDTH,
    CROP_DOMAIN,
)
from segcore.common.errors import DatasetError, ParamsError, Problems
from segcore.data.dldataset import DLDataset
from segcore.data.samples import sample_path
from segcore.params import ClassWeightParams, PreprocessParams
from segcore.preprocess.jobs import SampleJob


def check_inputs(
    dataset: DLDataset, param: PreprocessParams, class_weights: ClassWeightParams
) -> None:
    """Parameters against the dataset, and the dataset's shape; raises before any work."""
    if len(dataset) == 0:
        raise DatasetError("the dataset has no samples; check the dataset stage's folders")
    if not dataset.has_split:
        raise DatasetError(
            "the dataset has no split (every sample needs split train, validation or test); "
            "run `segcore split` first and pass its output (preprocess.dataset)"
        )
    ids = dataset.samples[COL_IMAGE_ID]
    if ids.duplicated().any():
        dup = sorted(ids[ids.duplicated()].unique().tolist())[:10]
        raise DatasetError(f"image_id values {dup} appear more than once; ids must be unique")
    problems = Problems()
    class_ids = set(dataset.class_ids)
    if param.set_background_id is not None and param.set_background_id not in class_ids:
        problems.add(
            f"preprocess.param.set_background_id {param.set_background_id} is not one of the "
            f"dataset's class_ids {dataset.class_ids}; choose one of them"
        )
    unknown_bg = [c for c in param.class_ids_background if c not in class_ids]
    if unknown_bg:
        problems.add(
            f"preprocess.param.class_ids_background {unknown_bg} are not in the dataset's "
            f"class_ids {dataset.class_ids}; remove them"
        )
    k = len(dataset.class_ids)
    if class_weights.weights is not None and len(class_weights.weights) != k:
        problems.add(
            f"preprocess.class_weights.weights has {len(class_weights.weights)} values but the "
            f"dataset has {k} class ids {dataset.class_ids}; give one weight per class id"
        )
    if (
        param.domain_handling == CROP_DOMAIN
        and param.domain_roi is None
        and (
            COL_DOMAIN_ROI not in dataset.samples
            or dataset.samples[COL_DOMAIN_ROI].map(_is_missing).any()
        )
    ):
        problems.add(
            "preprocess.param.domain_handling is crop_domain but some samples have no region "
            "of interest; set preprocess.param.domain_roi: [row1, col1, row2, col2] or fill "
            "the dataset's domain_roi column"
        )
    problems.raise_if_any(ParamsError, "preprocess parameters do not fit the dataset")


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _row_roi(value: object, image_file: str) -> tuple[int, int, int, int] | None:
    if _is_missing(value):
        return None
    roi = np.asarray(value).ravel()
    if (
        roi.size != 4
        or not np.all(np.equal(np.mod(roi, 1), 0))
        or roi.min() < 0
        or roi[0] > roi[2]
        or roi[1] > roi[3]
    ):
        raise DatasetError(
            f"{image_file}: domain_roi {roi.tolist()} is not a rectangle [row1, col1, row2, "
            "col2] of whole pixels with 0 <= row1 <= row2 and 0 <= col1 <= col2"
        )
    r1, c1, r2, c2 = (int(v) for v in roi)
    return (r1, c1, r2, c2)


def make_jobs(dataset: DLDataset, param: PreprocessParams, sample_dir: Path) -> list[SampleJob]:
    df = dataset.samples
    n = len(df)
    crop = param.domain_handling == CROP_DOMAIN
    rois = df[COL_DOMAIN_ROI].tolist() if crop and COL_DOMAIN_ROI in df else [None] * n
    has_size = COL_WIDTH in df and COL_HEIGHT in df
    widths = df[COL_WIDTH].tolist() if has_size else [None] * n
    heights = df[COL_HEIGHT].tolist() if has_size else [None] * n
    jobs, problems = [], Problems()
    for image_id, image_file, label_file, split, roi, w, h in zip(
        df[COL_IMAGE_ID].tolist(),
        df[COL_IMAGE_FILE].tolist(),
        df[COL_LABEL_FILE].tolist(),
        df[COL_SPLIT].tolist(),
        rois,
        widths,
        heights,
        strict=True,
    ):
        image_path = dataset.image_dir / image_file
        try:
            row_roi = _row_roi(roi, str(image_path))
        except DatasetError as err:
            problems.add(str(err))
            continue
        size = None if _is_missing(w) or _is_missing(h) else (int(w), int(h))
        jobs.append(
            SampleJob(
                image_id=int(image_id),
                image_path=str(image_path),
                label_path=str(dataset.segmentation_dir / label_file),
                split=str(split),
                out_path=str(sample_path(sample_dir, int(image_id))),
                roi=row_roi,
                image_size=size,
            )
        )
    problems.raise_if_any(DatasetError, "invalid regions of interest in the dataset")
    return jobs
