"""Inference over files and folders: ``segcore infer BUNDLE INPUT... --out DIR``.

Streams: a thread pool decodes and preprocesses the next images while the model runs on
the current batch, and postprocesses / writes the previous ones; at most a few batches
are in memory whatever the folder holds. Per image it writes

- ``<name>_segmentation.png``: class ids at the input's size (8-bit, 16-bit above id 255),
- ``<name>_confidence.tif``: float32 probability of the chosen class, 0-1,
- ``<name>_overlay.png``: the image with the classes tinted in their fixed colours,

and for the whole run ``regions.parquet`` and ``regions.csv`` (one row per connected
region: file, class, area, bounding box, centroid, mean confidence). ``<name>`` is the
file's stem, with its sub-folder kept for folder inputs. An unreadable input is reported
and skipped; the others go on.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from rich.progress import Progress, TaskID

from segcore.common.display import overlay
from segcore.common.errors import SegcoreError
from segcore.common.images import IMAGE_SUFFIXES, list_images, read_image, write_image_atomic
from segcore.common.io import atomic_path
from segcore.common.progress import make_progress
from segcore.infer.apply import SegModel, region_columns, roi_of, to_result
from segcore.params import PreprocessParams
from segcore.preprocess.transforms import preprocess_image

REGIONS_SCHEMA = pa.schema(
    [
        ("file", pa.string()),
        ("class_id", pa.int32()),
        ("class_name", pa.string()),
        ("area", pa.int64()),
        ("row1", pa.int32()),
        ("col1", pa.int32()),
        ("row2", pa.int32()),
        ("col2", pa.int32()),
        ("centroid_row", pa.float64()),
        ("centroid_col", pa.float64()),
        ("mean_confidence", pa.float64()),
    ]
)
"""Columns of the regions table (bounding box inclusive, in input pixels)."""

_READ_ERRORS = (SegcoreError, OSError, ValueError, cv2.error)
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class InputFile:
    """One input image and the name its outputs get (relative to the output folder)."""

    path: Path
    name: str


@dataclass
class InferenceSummary:
    """What a run did: counts, failures (file, reason), outputs and time."""

    out_dir: Path
    num_inputs: int = 0
    num_done: int = 0
    num_regions: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    regions_parquet: Path | None = None
    regions_csv: Path | None = None

    @property
    def images_per_second(self) -> float:
        return self.num_done / self.seconds if self.seconds > 0 else 0.0

    def render(self) -> str:
        """A few lines for the terminal."""
        lines = [
            f"Inference: {self.num_done} of {self.num_inputs} images in {self.seconds:.1f} s "
            f"({self.images_per_second:.1f} images/s), {self.num_regions} regions -> {self.out_dir}"
        ]
        if self.failed:
            lines.append(f"{len(self.failed)} input(s) failed and were skipped:")
            lines.extend(f"  {f}: {reason}" for f, reason in self.failed)
        return "\n".join(lines)


def collect_inputs(inputs: Sequence[str | os.PathLike[str]]) -> tuple[list[InputFile], list]:
    """Expand files and folders (searched recursively) into input files with unique names.

    Returns:
        the input files, and ``(path, reason)`` for every path that does not exist.
    """
    files: list[InputFile] = []
    missing: list[tuple[str, str]] = []
    taken: set[str] = set()
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            found = [(p, p.relative_to(path).with_suffix("").as_posix()) for p in list_images(path)]
        elif path.is_file():
            found = [(path, path.stem)]
        else:
            missing.append((str(path), "no such file or folder"))
            continue
        for p, name in found:
            unique = name if name not in taken else f"{name}_{p.suffix.lstrip('.').lower()}"
            n = 1
            while unique in taken:
                n += 1
                unique = f"{name}_{n}"
            taken.add(unique)
            files.append(InputFile(p, unique))
    return files, missing


def check_out_dir(out_dir: str | os.PathLike[str]) -> Path:
    """``out_dir`` as a Path, after checking it can be a folder.

    Raises:
        SegcoreError: it is an existing file, or lies under one.
    """
    out = Path(out_dir)
    for folder in (out, *out.parents):
        if folder.exists():
            if not folder.is_dir():
                where = "is a file" if folder == out else f"lies under the file {folder}"
                raise SegcoreError(
                    f"--out {out}: {where}, not a folder; pass a folder path for the outputs "
                    "(it is created when missing)"
                )
            break
    return out


def run_inference(
    model: SegModel,
    inputs: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    batch_size: int = 8,
    min_area: int = 1,
    workers: int | None = None,
) -> InferenceSummary:
    """Segment every image of ``inputs`` (files or folders) and write the outputs.

    Args:
        model: from :func:`segcore.infer.apply.load_model`.
        inputs: image files (any format OpenCV reads) and folders (PNG, JPEG, TIFF, BMP).
        out_dir: output folder (created).
        batch_size: images per forward pass.
        min_area: regions smaller than this many pixels are left out of the table.
        workers: threads for decoding, preprocessing and writing (default: half the CPU
            cores, 1 to 4).

    Raises:
        SegcoreError: no input image found at all, or ``out_dir`` is a file.
    """
    out = check_out_dir(out_dir)
    files, missing = collect_inputs(inputs)
    summary = InferenceSummary(out, num_inputs=len(files) + len(missing), failed=list(missing))
    if not files:
        raise SegcoreError(
            f"no images found in {', '.join(map(str, inputs))}; pass image files or folders "
            f"holding {', '.join(sorted(IMAGE_SUFFIXES))} files"
        )
    out.mkdir(parents=True, exist_ok=True)
    # The model uses every core on a CPU: half of them (1 to 4) decode and write beside it.
    workers = workers or max(1, min(4, (os.cpu_count() or 2) // 2))
    outputs = _Outputs.of(model, out, min_area)
    start = time.perf_counter()
    paths = (out / "regions.parquet", out / "regions.csv")
    with (
        ThreadPoolExecutor(workers, thread_name_prefix="segcore-infer") as pool,
        _regions_writer(*paths) as table,
        make_progress() as progress,
    ):
        task = progress.add_task("Inference", total=len(files))
        stream = _Stream(table, summary, progress, task)
        _stream_files(pool, outputs, stream, files, batch_size)
        summary.num_regions = table.rows
    summary.seconds = time.perf_counter() - start
    summary.regions_parquet, summary.regions_csv = paths
    return summary


@dataclass(frozen=True)
class _Outputs:
    """How one input is read and its outputs written: the same for every file of a run."""

    model: SegModel
    param: PreprocessParams
    out: Path
    roi: tuple[int, int, int, int] | None
    seg_dtype: type[np.unsignedinteger]
    min_area: int

    @classmethod
    def of(cls, model: SegModel, out: Path, min_area: int) -> _Outputs:
        """The settings for ``model``: its preprocessing, ROI and segmentation image dtype."""
        param = model.preprocess
        roi = roi_of(param)
        seg_dtype = np.uint8 if max(model.config.class_ids) <= 255 else np.uint16
        return cls(model, param, out, roi, seg_dtype, min_area)

    def load(self, item: InputFile) -> tuple[np.ndarray, np.ndarray]:
        """The decoded image and its preprocessed network input."""
        image = read_image(item.path)
        return image, preprocess_image(image, self.param)

    def finish(self, item: InputFile, image: np.ndarray, probs: np.ndarray) -> pa.Table:
        """Write one image's segmentation, confidence and overlay; returns its region rows."""
        config = self.model.config
        result = to_result(probs, image.shape[:2], config, self.roi, with_regions=False)
        base = self.out / item.name
        write_image_atomic(
            f"{base}_segmentation.png", result.segmentation_image.astype(self.seg_dtype)
        )
        write_image_atomic(f"{base}_confidence.tif", result.segmentation_confidence)
        write_image_atomic(
            f"{base}_overlay.png", overlay(image, result.segmentation_image, config.class_ids)
        )
        cols = region_columns(
            result.segmentation_image, result.segmentation_confidence, config, self.min_area
        )
        files = np.full(len(cols["area"]), str(item.path), dtype=object)
        return pa.Table.from_pydict({"file": files, **cols}, schema=REGIONS_SCHEMA)


@dataclass
class _Stream:
    """The images being written (in input order) and where their results go."""

    table: _Regions
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
                self.table.add(fut.result())
                self.summary.num_done += 1
            except _READ_ERRORS as err:
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
    loaded = _ordered_map(pool, outputs.load, files, ahead=2 * batch_size)
    for batch in _batches(loaded, batch_size):
        good = stream.loaded(batch)
        if not good:
            continue
        probs = outputs.model.probabilities(np.stack([tensor for _, (_, tensor) in good]))
        for (item, (image, _)), p in zip(good, probs, strict=True):
            stream.pending.append((item, pool.submit(outputs.finish, item, image, p)))
        stream.drain(keep=2 * batch_size)
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
        except _READ_ERRORS as err:
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


class _Regions:
    """Collects per-image region tables and appends them to both files in chunks."""

    FLUSH_ROWS = 10_000

    def __init__(self, parquet: pq.ParquetWriter, csv_writer: pa_csv.CSVWriter) -> None:
        self.parquet = parquet
        self.csv = csv_writer
        self.rows = 0
        self._pending: list[pa.Table] = []
        self._pending_rows = 0

    def add(self, table: pa.Table) -> None:
        self._pending.append(table)
        self._pending_rows += table.num_rows
        self.rows += table.num_rows
        if self._pending_rows >= self.FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            table = pa.concat_tables(self._pending)
            self.parquet.write_table(table)
            self.csv.write_table(table)
            self._pending, self._pending_rows = [], 0


@contextlib.contextmanager
def _regions_writer(parquet_path: Path, csv_path: Path) -> Iterator[_Regions]:
    """Streams region rows into both tables; they appear (atomically) only on success."""
    options = pa_csv.WriteOptions(quoting_style="needed")
    with atomic_path(parquet_path) as pq_tmp, atomic_path(csv_path) as csv_tmp:
        parquet = pq.ParquetWriter(pq_tmp, REGIONS_SCHEMA)
        csv_writer = pa_csv.CSVWriter(str(csv_tmp), REGIONS_SCHEMA, write_options=options)
        try:
            regions = _Regions(parquet, csv_writer)
            yield regions
            regions.flush()
        finally:
            parquet.close()
            csv_writer.close()
