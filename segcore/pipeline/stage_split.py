"""The ``split`` stage: params -> the dataset table with its split (split_dl_dataset)."""

from __future__ import annotations

import os
from typing import Any

from segcore.common.constants import SPLITS
from segcore.data.dldataset import DLDataset
from segcore.data.split import split_dataset
from segcore.params import Params
from segcore.pipeline.result import StageResult, stage_path


def run_split(params: Params, workdir: str | os.PathLike[str] = ".") -> StageResult[Any]:
    """Split into train / validation / test (``split`` section)."""
    p = params.split
    loaded = DLDataset.load(stage_path(workdir, p.dataset))
    ds = split_dataset(
        loaded,
        training_percent=p.training_percent,
        validation_percent=p.validation_percent,
        seed=p.seed,
        overwrite=p.overwrite,
    )
    path = ds.save(stage_path(workdir, p.out))
    counts = ds.samples["split"].value_counts()
    parts = ", ".join(f"{name} {counts.get(name, 0)}" for name in SPLITS)
    kept = loaded.has_split and not p.overwrite
    note = f"{p.dataset} already has a split: kept it (overwrite re-splits).\n" if kept else ""
    return StageResult(f"{note}Split: {parts} -> {p.out}", (ds, path))
