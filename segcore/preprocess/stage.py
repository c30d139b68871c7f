"""The preprocess stage (HALCON: preprocess_dl_dataset with class weights and weight images).

:func:`preprocess_dataset` turns a split dataset into one sample file per sample under
``<out_dir>/samples/`` (image, label and, for train samples, the weight image; see
:mod:`segcore.data.samples`) plus ``<out_dir>/dataset.parquet``, which carries the
preprocessing parameters and the class weights.

It runs in two streaming passes over worker processes (see :mod:`segcore.preprocess.jobs`):
the first validates every label image and counts the train split's class pixels, so bad
input fails before anything is written; the class weights follow from the counts; the
second writes each sample file once. Both passes run in worker processes here, or as
shards of samples on any other executor (a :class:`~segcore.common.parallel.JobMap`, e.g. Prefect
tasks on a Dask cluster, see ``flows.cluster``); this process alone decides the class
weights and writes ``dataset.parquet``, so the files are the same wherever the samples
ran. The run is idempotent: a sample whose file was made
from the same files, parameters and class weights is skipped, files of samples no longer
in the dataset are removed, and ``dataset.parquet`` is rewritten only when its content
changes. Every file is written atomically, and ``dataset.parquet`` last: a killed run
leaves no half-written file and no table that claims to be complete, and the next run
finishes the job.

The per-image functions are shared with inference: see :mod:`segcore.preprocess.transforms`.
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np

from segcore.common.constants import (
    COL_SAMPLE_FILE,
    DATASET_FILE,
    TRAIN,
)
from segcore.common.errors import DatasetError
from segcore.common.images import DEFAULT_MAX_IMAGE_PIXELS, PixelLimit
from segcore.common.io import write_bytes_atomic
from segcore.common.parallel import JobMap, WorkerPool, resolve_workers
from segcore.data.dldataset import DLDataset
from segcore.data.samples import SAMPLE_SUFFIX
from segcore.params import ClassWeightParams, PreprocessParams
from segcore.preprocess.class_weights import calculate_class_weights, generate_weight_images
from segcore.preprocess.inputs import check_inputs, make_jobs
from segcore.preprocess.jobs import (
    JobContext,
    SampleJob,
    ScanResult,
    init_worker,
    sample_hash,
    scan_sample,
    write_sample,
)
from segcore.preprocess.transforms import preprocess_image, preprocess_label, preprocess_samples

__all__ = [
    "PreprocessResult",
    "calculate_class_weights",
    "generate_weight_images",
    "preprocess_dataset",
    "preprocess_image",
    "preprocess_label",
    "preprocess_samples",
    "run_preprocess",
]

SAMPLES_SUBDIR = "samples"

_OWN_FILE = re.compile(r"^(\d+|\.\d+\..+\.tmp)" + re.escape(SAMPLE_SUFFIX) + "$")
"""Sample files and the temporary files of interrupted writes; nothing else is removed."""

MAX_PROBLEMS_SHOWN = 20


@dataclass(frozen=True)
class PreprocessResult:
    """What a preprocess run did."""

    dataset: DLDataset
    """The preprocessed dataset, as written to :attr:`path`."""
    path: Path
    """``<out_dir>/dataset.parquet``."""
    written: int
    """Sample files (re)written."""
    skipped: int
    """Sample files already up to date."""
    removed: int
    """Files of samples no longer in the dataset (and leftovers of interrupted runs)."""
    train_pixels: np.ndarray
    """``(K,)`` int64 pixels per class id in the train split's preprocessed labels."""


def preprocess_dataset(
    dataset: DLDataset,
    param: PreprocessParams,
    out_dir: str | Path,
    *,
    class_weights: ClassWeightParams = ClassWeightParams(),
    workers: int = 0,
    overwrite: bool = False,
    map_jobs: JobMap | None = None,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> DLDataset:
    """Preprocess every sample, compute class weights and weight images, write the dataset.

    Args:
        dataset: a dataset with a split (``train`` / ``validation`` / ``test`` per sample);
            an optional ``domain_roi`` column gives per-sample regions for ``crop_domain``.
        param: HALCON's preprocessing parameters.
        out_dir: receives ``samples/<image_id:06d>.safetensors`` and ``dataset.parquet``.
        class_weights: ``max_weight`` and optional user-given weights.
        workers: worker processes; 0 means one per CPU core, 1 runs in this process.
            Workers start fresh (forkserver / spawn), so a script that calls this with
            ``workers != 1`` needs the usual ``if __name__ == "__main__":`` guard.
        overwrite: rewrite every sample file even when it is up to date.
        map_jobs: runs the per-sample jobs elsewhere (e.g. shards on a cluster) instead of
            in ``workers`` local processes; see :class:`~segcore.common.parallel.JobMap`.
        max_image_pixels: largest image or label read (``dataset.max_image_pixels``).

    Returns:
        The dataset as written: ``sample_file_name`` column, ``sample_dir``,
        ``preprocess_param`` and ``class_weights`` (one per class id).

    Raises:
        ParamsError: parameters that do not fit the dataset (nothing is written).
        DatasetError: no split, unreadable files, label values outside the class ids,
            regions of interest outside their images (found before anything is written).
    """
    return run_preprocess(
        dataset,
        param,
        out_dir,
        class_weights=class_weights,
        workers=workers,
        overwrite=overwrite,
        map_jobs=map_jobs,
        max_image_pixels=max_image_pixels,
    ).dataset


def run_preprocess(
    dataset: DLDataset,
    param: PreprocessParams,
    out_dir: str | Path,
    *,
    class_weights: ClassWeightParams = ClassWeightParams(),
    workers: int = 0,
    overwrite: bool = False,
    map_jobs: JobMap | None = None,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> PreprocessResult:
    """:func:`preprocess_dataset`, also reporting what was written, skipped and removed."""
    out_dir = Path(out_dir)
    sample_dir = out_dir / SAMPLES_SUBDIR
    table_path = out_dir / DATASET_FILE
    check_inputs(dataset, param, class_weights)
    jobs = make_jobs(dataset, param, sample_dir)
    limit = PixelLimit(max_image_pixels, "dataset.max_image_pixels")
    ctx = JobContext(
        param=param, class_ids=tuple(dataset.class_ids), overwrite=overwrite, limit=limit
    )

    with contextlib.ExitStack() as stack:
        if map_jobs is None:
            n = min(resolve_workers(workers), len(jobs))
            map_jobs = stack.enter_context(WorkerPool(n, init_worker)).map
        # Pass 1: validate and count (labels only; unchanged samples cost a header read).
        scans, train_counts, weights = _scan(map_jobs, ctx, jobs, dataset, class_weights)

        # Pass 2: write what is missing or out of date.
        todo = _out_of_date(jobs, scans, weights, overwrite)
        stale = _stale_files(sample_dir, {Path(j.out_path).name for j in jobs})
        if todo or stale:
            table_path.unlink(missing_ok=True)  # the table is valid only once every sample is
        write_ctx = replace(ctx, class_weights=weights)
        problems = [
            r.problem for r in map_jobs(partial(write_sample, write_ctx), todo, "Preprocessing")
        ]
    _raise_problems(
        problems, "samples could not be written; the others are done, run again after fixing"
    )
    for path in stale:
        path.unlink(missing_ok=True)
    result = _written_dataset(dataset, jobs, sample_dir, param, weights)
    _save_if_changed(result, table_path)
    return PreprocessResult(
        dataset=result,
        path=table_path,
        written=len(todo),
        skipped=len(jobs) - len(todo),
        removed=len(stale),
        train_pixels=train_counts.sum(axis=0),
    )


def _scan(
    map_jobs: JobMap,
    ctx: JobContext,
    jobs: list[SampleJob],
    dataset: DLDataset,
    class_weights: ClassWeightParams,
) -> tuple[dict[int, ScanResult], np.ndarray, tuple[float, ...]]:
    """Pass 1 (raises on any problem): scans by image id, train pixel counts, class weights."""
    scans = {r.image_id: r for r in map_jobs(partial(scan_sample, ctx), jobs, "Checking labels")}
    _raise_problems(
        [scans[j.image_id].problem for j in jobs],
        "samples cannot be preprocessed; nothing was written",
    )
    train_counts = np.array(
        [scans[j.image_id].counts for j in jobs if j.split == TRAIN], dtype=np.int64
    ).reshape(-1, len(dataset.class_ids))
    return scans, train_counts, _class_weights(train_counts, dataset, ctx.param, class_weights)


def _out_of_date(
    jobs: list[SampleJob],
    scans: dict[int, ScanResult],
    weights: tuple[float, ...],
    overwrite: bool,
) -> list[tuple[SampleJob, str]]:
    """The jobs (with their input hash) whose sample file is missing or out of date."""
    return [
        (j, scans[j.image_id].input_hash)
        for j in jobs
        if overwrite
        or scans[j.image_id].stored_sample_hash
        != sample_hash(scans[j.image_id].input_hash, j.split, weights)
    ]


def _written_dataset(
    dataset: DLDataset,
    jobs: list[SampleJob],
    sample_dir: Path,
    param: PreprocessParams,
    weights: tuple[float, ...],
) -> DLDataset:
    """The dataset as ``dataset.parquet`` holds it: sample files, parameters, class weights."""
    samples = dataset.samples.copy()
    samples[COL_SAMPLE_FILE] = [Path(j.out_path).name for j in jobs]
    return dataset.with_samples(
        samples,
        sample_dir=sample_dir,
        preprocess_param=param.model_dump(),
        class_weights=list(weights),
    )


def _class_weights(
    train_counts: np.ndarray,
    dataset: DLDataset,
    param: PreprocessParams,
    class_weights: ClassWeightParams,
) -> tuple[float, ...]:
    """HALCON's class weights from the ``(N_train, K)`` pixel counts (or the user's)."""
    if len(train_counts) == 0 and class_weights.weights is None:
        raise DatasetError(
            "the dataset has no train samples, so class weights cannot be computed; "
            "split with training_percent > 0 or give preprocess.class_weights.weights"
        )
    weights = calculate_class_weights(
        train_counts,
        dataset.class_ids,
        param.ignore_class_ids,
        max_weight=class_weights.max_weight,
        user_weights=class_weights.weights,
    )
    return tuple(float(w) for w in weights)


def _raise_problems(problems: Sequence[str | None], what: str) -> None:
    found = [p for p in problems if p is not None]
    if not found:
        return
    shown = found[:MAX_PROBLEMS_SHOWN]
    if len(found) > len(shown):
        shown.append(f"... and {len(found) - len(shown)} more")
    raise DatasetError(shown, title=f"{len(found)} {what}")


# --------------------------------------------------------------------------- files


def _stale_files(sample_dir: Path, expected: set[str]) -> list[Path]:
    """Sample files not in the dataset and temporary files of interrupted writes."""
    if not sample_dir.is_dir():
        return []
    return sorted(
        p
        for p in sample_dir.iterdir()
        if p.is_file() and _OWN_FILE.match(p.name) and p.name not in expected
    )


def _save_if_changed(dataset: DLDataset, path: Path) -> None:
    """Write the table atomically unless the file already holds exactly these bytes."""
    buffer = io.BytesIO()
    dataset.to_frame(path.parent).to_parquet(buffer, index=False)
    data = buffer.getvalue()
    if path.is_file() and path.read_bytes() == data:
        return
    write_bytes_atomic(path, data)
