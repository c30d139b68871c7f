"""The ``preprocess`` stage: params -> preprocessed samples, class weights, weight images."""

from __future__ import annotations

import os
from typing import Any

from segcore.common.parallel import JobMap
from segcore.data.dldataset import DLDataset
from segcore.params import Params
from segcore.pipeline.result import StageResult, stage_path
from segcore.preprocess.stage import run_preprocess as preprocess


def run_preprocess(
    params: Params, workdir: str | os.PathLike[str] = ".", *, map_jobs: JobMap | None = None
) -> StageResult[Any]:
    """Preprocess samples, class weights and weight images (``preprocess`` section).

    Args:
        map_jobs: runs the per-sample jobs elsewhere (shards on a cluster, see
            ``flows.cluster``); default: ``preprocess.workers`` local processes.
    """
    p = params.preprocess
    result = preprocess(
        DLDataset.load(stage_path(workdir, p.dataset)),
        p.param,
        stage_path(workdir, p.out_dir),
        class_weights=p.class_weights,
        workers=p.workers,
        overwrite=p.overwrite,
        map_jobs=map_jobs,
        max_image_pixels=params.dataset.max_image_pixels,
    )
    return StageResult(
        f"Preprocess: {len(result.dataset)} samples: {result.written} written, "
        f"{result.skipped} up to date, {result.removed} stale files removed -> {p.out_dir}",
        result,
    )
