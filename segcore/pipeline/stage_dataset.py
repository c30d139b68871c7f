"""The ``dataset`` stage: params -> the dataset table (read_dl_dataset_segmentation)."""

from __future__ import annotations

import os
from typing import Any

from segcore.data.read import read_dataset
from segcore.params import Params
from segcore.pipeline.result import StageResult, stage_path


def run_dataset(params: Params, workdir: str | os.PathLike[str] = ".") -> StageResult[Any]:
    """Read images and labels into the dataset table (``dataset`` section; label values of
    ``preprocess.param.ignore_class_ids`` are allowed, as the preprocess stage allows them)."""
    p = params.dataset
    ds = read_dataset(
        stage_path(workdir, p.image_dir),
        stage_path(workdir, p.segmentation_dir),
        p.class_names,
        p.class_ids,
        label_prefix=p.label_prefix,
        label_suffix=p.label_suffix,
        ignore_unmatched=p.ignore_unmatched,
        max_image_pixels=p.max_image_pixels,
        ignore_class_ids=params.preprocess.param.ignore_class_ids,
    )
    path = ds.save(stage_path(workdir, p.out))
    return StageResult(
        f"Dataset: {len(ds)} samples, {len(ds.class_ids)} classes -> {p.out}", (ds, path)
    )
