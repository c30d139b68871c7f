"""Inference over files and folders: ``segcore infer BUNDLE INPUT... --out DIR``.

Streams: a thread pool decodes and preprocesses the next images while the model runs on
the current batch, and postprocesses / writes the previous ones; at most a few batches
are in memory whatever the folder holds. A tiled model runs on one image at a time, its
tiles in batches (:mod:`segcore.infer.tiling`), with two images read ahead. Per image it
writes

- ``<name>_segmentation.png``: class ids at the input's size (8-bit, 16-bit above id 255),
- ``<name>_confidence.tif``: float32 probability of the chosen class, 0-1,
- ``<name>_overlay.png``: the image with the classes tinted in their fixed colours,

and for the whole run ``regions.parquet`` and ``regions.csv`` (one row per connected
region: file, class, area, bounding box, centroid, mean and max confidence, whether it
fires its class's decision rule; see :mod:`segcore.infer.regions`) and ``images.parquet``
and ``images.csv`` (one row per image: its OK/NG verdict and the rules that fired, by the
bundle's decision rules, :mod:`segcore.infer.decide`). The overlay shows the verdict. ``<name>`` is the file's stem, with its sub-folder kept for
folder inputs. Every per-image failure (unreadable input, too large, no memory, disk
full while writing its outputs) is reported and skipped; the others go on, and the
regions table describes exactly the images of this run.

The inputs are listed before anything is written, and segcore's own outputs inside the
output folder are never taken as inputs, so the input folder may be the output folder.
One run at a time writes into an output folder (a lock file, ``.segcore-infer.lock``);
a second run into the same folder is refused.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import pyarrow as pa
from rich.progress import Progress, TaskID

from segcore.common.constants import CROP_DOMAIN
from segcore.common.display import overlay, stamp_verdict
from segcore.common.errors import DatasetError, SegcoreError
from segcore.common.images import (
    DEFAULT_MAX_IMAGE_PIXELS,
    IMAGE_SUFFIXES,
    PixelLimit,
    read_image,
    write_image_atomic,
)
from segcore.common.progress import make_progress
from segcore.data.roi import Roi, read_roi, roi_file
from segcore.infer.apply import SegModel, roi_of, to_result
from segcore.infer.components import region_columns
from segcore.infer.decide import Verdict, decide
from segcore.infer.depth import match_bit_depth
from segcore.infer.folders import (
    OUTPUT_SUFFIXES,
    InputFile,
    check_out_dir,
    collect_inputs,
    out_lock,
)
from segcore.infer.regions import (
    IMAGE_TABLE_NAMES,
    IMAGES_SCHEMA,
    REGIONS_SCHEMA,
    RegionsTable,
)
from segcore.infer.summary import InferenceSummary, rules_source
from segcore.infer.tiling import DEFAULT_TILE_OVERLAP, check_overlap, preprocess_whole_image
from segcore.params import PreprocessParams
from segcore.preprocess.transforms import preprocess_image

_IMAGE_ERRORS = (Exception,)
"""Errors of one image (unreadable, too large, out of memory, disk full): reported, skipped."""
T = TypeVar("T")
R = TypeVar("R")


def run_inference(
    model: SegModel,
    inputs: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    batch_size: int = 8,
    min_area: int = 1,
    workers: int | None = None,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    tile_overlap: float = DEFAULT_TILE_OVERLAP,
) -> InferenceSummary:
    """Segment every image of ``inputs`` (files or folders) and write the outputs.

    Args:
        model: from :func:`segcore.infer.apply.load_model`.
        inputs: image files (any format OpenCV reads) and folders (PNG, JPEG, TIFF, BMP).
        out_dir: output folder (created).
        batch_size: images per forward pass (tiled models: tiles per forward pass).
        min_area: regions smaller than this many pixels are left out of the table.
        workers: threads for decoding, preprocessing and writing (default: half the CPU
            cores, 1 to 4).
        max_image_pixels: larger inputs (checked in their header, before decoding) are
            reported and skipped (``infer.max_image_pixels``).
        tile_overlap: tiled models: fraction of a tile shared by neighbouring tiles, [0, 1).

    Raises:
        SegcoreError: no input image found at all, ``out_dir`` is a file, another run
            writes into ``out_dir``, or a ``tile_overlap`` that never moves the window
            (before anything is written).
    """
    out = check_out_dir(out_dir)
    files, missing = _inputs(model, inputs, out, tile_overlap)
    summary = InferenceSummary(out, num_inputs=len(files) + len(missing), failed=list(missing))
    summary.rules = rules_source(model)
    out.mkdir(parents=True, exist_ok=True)
    # The model uses every core on a CPU: half of them (1 to 4) decode and write beside it.
    workers = workers or max(1, min(4, (os.cpu_count() or 2) // 2))
    outputs = _Outputs.of(model, out, min_area, max_image_pixels, tile_overlap)
    start = time.perf_counter()
    with (
        out_lock(out),
        ThreadPoolExecutor(workers, thread_name_prefix="segcore-infer") as pool,
        RegionsTable(out) as table,
        RegionsTable(out, IMAGE_TABLE_NAMES, IMAGES_SCHEMA) as images,
        make_progress() as progress,
    ):
        task = progress.add_task("Inference", total=len(files))
        stream = _Stream(table, images, summary, progress, task)
        _stream_files(pool, outputs, stream, files, batch_size)
        summary.num_regions = table.rows
        summary.not_written = table.publish() + images.publish()
        summary.notes = sorted(outputs.notes)
    summary.seconds = time.perf_counter() - start
    if not summary.not_written:
        summary.regions_parquet, summary.regions_csv = table.paths
        summary.images_parquet, summary.images_csv = images.paths
    return summary


def _inputs(
    model: SegModel,
    inputs: Sequence[str | os.PathLike[str]],
    out: Path,
    tile_overlap: float,
) -> tuple[list[InputFile], list]:
    """The input files and the missing inputs, after the checks that come before any
    write: the tile overlap (tiled models) and at least one image found."""
    if model.tiled:
        param = model.preprocess
        check_overlap(tile_overlap, (param.image_height, param.image_width), "infer.tile_overlap")
    files, missing = collect_inputs(inputs, out)
    if not files:
        raise SegcoreError(
            f"no images found in {', '.join(map(str, inputs))}; pass image files or folders "
            f"holding {', '.join(sorted(IMAGE_SUFFIXES))} files"
        )
    return files, missing


@dataclass(frozen=True)
class _Outputs:
    """How one input is read and its outputs written: the same for every file of a run."""

    model: SegModel
    param: PreprocessParams
    out: Path
    roi: tuple[int, int, int, int] | None
    seg_dtype: type[np.unsignedinteger]
    min_area: int
    limit: PixelLimit
    tile_overlap: float = DEFAULT_TILE_OVERLAP
    notes: set[str] = field(default_factory=set)
    """Bit depth conversions done (added from the reading threads)."""
    rois: dict[Path, Roi | None] = field(default_factory=dict)
    """Each read image's region of interest, from :meth:`load` to :meth:`finish`."""

    @classmethod
    def of(
        cls, model: SegModel, out: Path, min_area: int, max_pixels: int, tile_overlap: float
    ) -> _Outputs:
        """The settings for ``model``: its preprocessing, ROI and segmentation image dtype."""
        param = model.preprocess
        default = param.domain_roi if param.domain_handling == CROP_DOMAIN else None
        roi = None if default is None else roi_of(param)
        seg_dtype = np.uint8 if max(model.config.class_ids) <= 255 else np.uint16
        limit = PixelLimit(max_pixels, "infer.max_image_pixels")
        return cls(model, param, out, roi, seg_dtype, min_area, limit, tile_overlap)

    def load(self, item: InputFile) -> tuple[np.ndarray, np.ndarray]:
        """The decoded image and its preprocessed network input."""
        image = read_image(item.path, self.limit)
        converted, note = match_bit_depth(image, self.model.config, str(item.path))
        if note is not None:
            self.notes.add(note)
        roi = self._roi(item.path, image)
        self.rois[item.path] = roi
        if self.model.tiled:
            return image, preprocess_whole_image(converted, self.param, roi)
        return image, preprocess_image(converted, self.param, roi)

    def predict(self, inputs: list[np.ndarray], batch_size: int) -> list[np.ndarray]:
        """``(K, h, w)`` probabilities of each preprocessed input: one forward pass over the
        stacked inputs, or for a tiled model a sliding window over each."""
        if self.model.tiled:
            return [
                self.model.window_probabilities(x, self.tile_overlap, batch_size) for x in inputs
            ]
        return list(self.model.probabilities(np.stack(inputs)))

    def _roi(self, path: Path, image: np.ndarray) -> Roi | None:
        """The image's own region of interest (its ``.roi.json``), else the bundle's."""
        if self.param.domain_handling != CROP_DOMAIN:
            return None
        roi = read_roi(path, (image.shape[1], image.shape[0])) or self.roi
        if roi is None:
            raise DatasetError(
                f"{path}: the model crops to a region of interest (crop_domain) but none is "
                f"given for this image; write {roi_file(path).name} beside it "
                "([row1, col1, row2, col2]) or train with preprocess.param.domain_roi"
            )
        return roi

    def finish(
        self, item: InputFile, image: np.ndarray, probs: np.ndarray
    ) -> tuple[pa.Table, pa.Table, Verdict]:
        """Write one image's segmentation, confidence and overlay; returns its region rows,
        its row of the images table and its verdict.

        On an error none of the image's outputs is left (no half set, no older one)."""
        config = self.model.config
        roi = self.rois.pop(item.path, self.roi)
        result = to_result(probs, image.shape[:2], config, roi, with_regions=False)
        cols = region_columns(result.segmentation_image, result.segmentation_confidence, config)
        verdict, fires = decide(cols, self.model.rules)
        boxes = [
            tuple(int(cols[k][i]) for k in ("row1", "col1", "row2", "col2"))
            for i in np.flatnonzero(fires)
        ]
        shown = overlay(image, result.segmentation_image, config.class_ids)
        banner = verdict.label + (f": {', '.join(verdict.classes)}" if verdict.classes else "")
        paths = [Path(f"{self.out / item.name}{suffix}") for suffix in OUTPUT_SUFFIXES]
        try:
            write_image_atomic(paths[0], result.segmentation_image.astype(self.seg_dtype))
            write_image_atomic(paths[1], result.segmentation_confidence)
            write_image_atomic(paths[2], stamp_verdict(shown, verdict.label, banner, boxes))
        except BaseException:
            for path in paths:
                if path.is_file():
                    path.unlink()
            raise
        keep = cols["area"] >= self.min_area
        cols = {k: v[keep] for k, v in cols.items()} | {"fires": fires[keep]}
        files = np.full(int(keep.sum()), str(item.path), dtype=object)
        regions = pa.Table.from_pydict({"file": files, **cols}, schema=REGIONS_SCHEMA)
        row = {
            "file": [str(item.path)],
            "verdict": [verdict.label],
            "fired_classes": [";".join(verdict.classes)],
            "reason": [verdict.describe()],
            "num_regions": [int(keep.sum())],
            "num_firing_regions": [int(fires.sum())],
        }
        return regions, pa.Table.from_pydict(row, schema=IMAGES_SCHEMA), verdict


@dataclass
class _Stream:
    """The images being written (in input order) and where their results go."""

    table: RegionsTable
    images: RegionsTable
    summary: InferenceSummary
    progress: Progress
    task: TaskID
    pending: deque[tuple[InputFile, Future]] = field(default_factory=deque)

    def loaded(
        self, batch: list[tuple[InputFile, tuple[np.ndarray, np.ndarray] | BaseException]]
    ) -> list[tuple[InputFile, tuple[np.ndarray, np.ndarray]]]:
        """The batch's inputs that were read; the others are counted as failed."""
        good = []
        for item, value in batch:
            if isinstance(value, BaseException):
                self.summary.failed.append((str(item.path), _reason(value)))
                self.progress.advance(self.task)
            else:
                good.append((item, value))
        return good

    def drain(self, keep: int) -> None:
        """Collect finished images, oldest first, until at most ``keep`` are pending."""
        while len(self.pending) > keep:
            item, fut = self.pending.popleft()
            try:
                regions, row, verdict = fut.result()
                self.table.add(regions)
                self.images.add(row)
                self.summary.count(verdict)
                self.summary.num_done += 1
            except _IMAGE_ERRORS as err:
                self.summary.failed.append((str(item.path), _reason(err)))
            self.progress.advance(self.task)


def _stream_files(
    pool: ThreadPoolExecutor,
    outputs: _Outputs,
    stream: _Stream,
    files: list[InputFile],
    batch_size: int,
) -> None:
    """Read ahead, predict batch by batch and write behind, with a few batches in flight."""
    images = 1 if outputs.model.tiled else batch_size  # a tiled model's batch is its tiles
    loaded = _ordered_map(pool, outputs.load, files, ahead=2 * images)
    for batch in _batches(loaded, images):
        good = stream.loaded(batch)
        if not good:
            continue
        probs = outputs.predict([tensor for _, (_, tensor) in good], batch_size)
        for (item, (image, _)), p in zip(good, probs, strict=True):
            stream.pending.append((item, pool.submit(outputs.finish, item, image, p)))
        stream.drain(keep=2 * images)
    stream.drain(keep=0)


def _reason(err: BaseException) -> str:
    text = err.render() if isinstance(err, SegcoreError) else f"{type(err).__name__}: {err}"
    return " ".join(text.split())


def _ordered_map(
    pool: ThreadPoolExecutor, fn: Callable[[T], R], items: Iterable[T], ahead: int
) -> Iterator[tuple[T, R | BaseException]]:
    """``(item, fn(item))`` in order, at most ``ahead`` computed in advance; errors returned."""
    queue: deque[tuple[T, Future]] = deque()
    iterator = iter(items)

    def fill() -> None:
        while len(queue) < ahead:
            try:
                item = next(iterator)
            except StopIteration:
                return
            queue.append((item, pool.submit(fn, item)))

    fill()
    while queue:
        item, fut = queue.popleft()
        fill()
        try:
            yield item, fut.result()
        except _IMAGE_ERRORS as err:
            yield item, err


def _batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
