"""The per-sample work of the preprocess stage, run inside worker processes.

Two passes, each job small and picklable, each result a few numbers and strings (never
an array), so memory stays flat however many samples stream through:

1. :func:`scan_sample` hashes the sample's inputs and counts the classes of its
   preprocessed label image (validating it on the way). When the sample file on disk was
   made from the same inputs, its stored counts are reused and nothing is decoded.
2. :func:`write_sample` preprocesses image and label, adds the weight image for train
   samples, and writes the sample file atomically, with the hashes in its header.

The stage skips a sample whose file already holds the hash it would write.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from safetensors import SafetensorError

from segcore.common.constants import TRAIN
from segcore.common.errors import DatasetError, SegcoreError
from segcore.common.images import DEFAULT_LIMIT, PixelLimit, quiet_opencv, read_image, read_label
from segcore.data.samples import INFO_KEY, read_metadata, save_sample
from segcore.params import PreprocessParams
from segcore.preprocess.class_weights import count_class_pixels, weight_image
from segcore.preprocess.transforms import (
    crop_to_roi,
    preprocess_image,
    preprocess_label,
    resolve_roi,
)

SAMPLE_FORMAT = "segcore.sample/1"
"""Part of every hash: bump it when the preprocessing code changes its output."""

METADATA_KEY = INFO_KEY
"""The sample file header key holding the JSON of :func:`stored_info`."""


@dataclass(frozen=True)
class SampleJob:
    """One sample to preprocess (paths absolute)."""

    image_id: int
    image_path: str
    label_path: str
    split: str
    out_path: str
    roi: tuple[int, int, int, int] | None = None
    """Per-sample region of interest (``crop_domain``); ``None`` uses the params' one."""
    image_size: tuple[int, int] | None = None
    """``(width, height)`` from the dataset table, when it has the columns."""


@dataclass(frozen=True)
class JobContext:
    """What every job of a run shares."""

    param: PreprocessParams
    class_ids: tuple[int, ...]
    overwrite: bool = False
    class_weights: tuple[float, ...] | None = None
    """Set for the write pass: one weight per class id."""
    limit: PixelLimit = DEFAULT_LIMIT
    """Largest image or label read (``dataset.max_image_pixels``)."""


@dataclass(frozen=True)
class ScanResult:
    """Pass 1: the sample's input hash and class pixel counts, or the problem found."""

    image_id: int
    input_hash: str = ""
    counts: tuple[int, ...] = ()
    stored_sample_hash: str | None = None
    """The sample hash in the existing file when that file was made from these inputs."""
    problem: str | None = None


@dataclass(frozen=True)
class WriteResult:
    """Pass 2: done, or the problem found."""

    image_id: int
    problem: str | None = None


def init_worker() -> None:
    """Worker set-up: one OpenCV thread per process (the processes are the parallelism),
    no OpenCV log lines (problems come back as results), and an allocator that keeps
    freed memory (see :func:`keep_freed_memory`)."""
    cv2.setNumThreads(1)
    quiet_opencv()
    keep_freed_memory()


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
"""glibc's ``mallopt`` parameter numbers (malloc.h)."""

GLIBC_MMAP_THRESHOLD = 32 * 2**20
"""Allocations below this come from the heap (glibc's largest allowed value)."""

GLIBC_TRIM_THRESHOLD = 64 * 2**20
"""Freed heap memory kept for reuse before it is given back to the system."""


def keep_freed_memory() -> bool:
    """Let glibc reuse freed memory instead of returning it to the system after every image.

    Each sample allocates a few MB of short-lived arrays (decoded image, resized and float
    copies). With glibc's defaults they are mapped fresh and given back for every sample,
    and the kernel zero-fills each new page: about a quarter of a worker's time went to
    those page faults. Keeping up to :data:`GLIBC_TRIM_THRESHOLD` of freed memory removes
    over 90% of them; memory stays bounded, since every sample frees what it allocated.
    Called in worker processes only (local workers, and cluster workers before a shard),
    never in the caller's process. Returns whether glibc took the settings (``False``
    without glibc: macOS, Windows, musl keep their defaults).
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, GLIBC_MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, GLIBC_TRIM_THRESHOLD)
    )


def _file_digest(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "blake2b").hexdigest()[:32]
    except OSError as err:
        raise DatasetError(
            f"{path}: cannot read ({err.strerror}); check the file and the dataset's folders"
        ) from None


def _digest(obj: object) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def input_hash(ctx: JobContext, job: SampleJob) -> str:
    """Hash of everything a sample's image and label depend on (file contents, params)."""
    return _digest(
        {
            "format": SAMPLE_FORMAT,
            "image": _file_digest(job.image_path),
            "label": _file_digest(job.label_path),
            "param": ctx.param.model_dump(),
            "class_ids": list(ctx.class_ids),
            "roi": job.roi,
            "split": job.split,
        }
    )


def sample_hash(input_hash_: str, split: str, class_weights: tuple[float, ...]) -> str:
    """Hash of the whole sample file: its inputs plus, for train samples, the class weights."""
    weights = list(class_weights) if split == TRAIN else None
    return _digest({"input": input_hash_, "class_weights": weights})


def stored_info(path: str | Path) -> dict[str, Any] | None:
    """What :func:`write_sample` stored in a sample file's header (hashes, class counts, split);
    ``None`` when the file is missing or unreadable (it will be rewritten)."""
    if not Path(path).is_file():
        return None
    try:
        return json.loads(read_metadata(path)[METADATA_KEY])
    except (OSError, SafetensorError, KeyError, ValueError):
        return None


def _read_pair(
    ctx: JobContext, job: SampleJob, *, with_image: bool
) -> tuple[np.ndarray | None, np.ndarray]:
    label = read_label(job.label_path, ctx.limit)
    image = read_image(job.image_path, ctx.limit) if with_image else None
    size = (image.shape[1], image.shape[0]) if image is not None else job.image_size
    if size is not None and (label.shape[1], label.shape[0]) != tuple(size):
        raise DatasetError(
            f"{job.image_path}: image is {size[0]} x {size[1]} pixels but its label image "
            f"{job.label_path} is {label.shape[1]} x {label.shape[0]}; they must match"
        )
    return image, label


def _label(ctx: JobContext, job: SampleJob, label: np.ndarray) -> np.ndarray:
    try:
        crop_to_roi(label, resolve_roi(ctx.param, job.roi))
    except DatasetError as err:
        raise DatasetError(f"{job.image_path}: {err}") from None
    try:
        return preprocess_label(label, ctx.param, ctx.class_ids, job.roi)
    except DatasetError as err:
        raise DatasetError(f"{job.label_path}: {err}") from None


def scan_sample(ctx: JobContext, job: SampleJob) -> ScanResult:
    """Pass 1 for one sample: hash, validate and count (see the module docstring)."""
    try:
        hash_ = input_hash(ctx, job)
        info = None if ctx.overwrite else stored_info(job.out_path)
        if info is not None and info.get("input_hash") == hash_:
            counts = tuple(int(c) for c in info["class_counts"])
            return ScanResult(job.image_id, hash_, counts, info["sample_hash"])
        _, label = _read_pair(ctx, job, with_image=False)
        counts = tuple(count_class_pixels(_label(ctx, job, label), ctx.class_ids).tolist())
        return ScanResult(job.image_id, hash_, counts)
    except SegcoreError as err:
        return ScanResult(job.image_id, problem=str(err))


def write_sample(ctx: JobContext, item: tuple[SampleJob, str]) -> WriteResult:
    """Pass 2 for one sample: preprocess and write its file. ``item`` = (job, input hash)."""
    job, hash_ = item
    assert ctx.class_weights is not None, "the write pass needs the class weights"
    try:
        image, label = _read_pair(ctx, job, with_image=True)
        assert image is not None
        try:
            x = preprocess_image(image, ctx.param, job.roi)
        except DatasetError as err:
            raise DatasetError(f"{job.image_path}: {err}") from None
        y = _label(ctx, job, label)
        weight = None
        if job.split == TRAIN:
            weight = weight_image(y, ctx.class_ids, ctx.class_weights, ctx.param.ignore_class_ids)
        info = {
            "format": SAMPLE_FORMAT,
            "input_hash": hash_,
            "sample_hash": sample_hash(hash_, job.split, ctx.class_weights),
            "class_counts": count_class_pixels(y, ctx.class_ids).tolist(),
            "split": job.split,
        }
        # One header key: safetensors writes several in random order (files would differ).
        save_sample(job.out_path, x, y, weight, {METADATA_KEY: json.dumps(info, sort_keys=True)})
        return WriteResult(job.image_id)
    except SegcoreError as err:
        return WriteResult(job.image_id, problem=str(err))
