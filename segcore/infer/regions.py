"""The tables of an inference run: ``regions.parquet`` and ``regions.csv`` in the output
folder, one row per connected region of every image the run segmented, and
``images.parquet`` and ``images.csv``, one row per image with its OK/NG verdict.

Rows stream into temporary files beside the tables; :meth:`RegionsTable.publish` renames
them into place at the end. Tables of an earlier run are removed when a run starts, so
the tables always describe exactly the images of the latest run (or are absent when it
could not write them), never an older run beside newer images.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from types import TracebackType

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

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
        ("max_confidence", pa.float64()),
        ("fires", pa.bool_()),
    ]
)
"""Columns of the regions table (bounding box inclusive, in input pixels; ``fires``: the
region passes its class's decision rule)."""

TABLE_NAMES = ("regions.parquet", "regions.csv")
"""File names of the regions table in the output folder."""

IMAGES_SCHEMA = pa.schema(
    [
        ("file", pa.string()),
        ("verdict", pa.string()),
        ("fired_classes", pa.string()),
        ("reason", pa.string()),
        ("num_regions", pa.int64()),
        ("num_firing_regions", pa.int64()),
    ]
)
"""Columns of the images table: ``verdict`` OK or NG, ``fired_classes`` the classes whose
rule fired (``;``-separated), ``reason`` the rule that fired per class, the numbers of
regions (of at least ``infer.min_area`` pixels) and of regions that pass their rule."""

IMAGE_TABLE_NAMES = ("images.parquet", "images.csv")
"""File names of the images table in the output folder."""


def _temp_beside(path: Path) -> Path:
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}"
    )
    os.close(fd)
    return Path(tmp)


class RegionsTable:
    """Collects per-image rows (regions, or the images table with ``IMAGE_TABLE_NAMES`` and
    ``IMAGES_SCHEMA``) and appends them to both files in chunks.

    A write error (disk full) stops the table, not the run: it is reported by
    :meth:`publish` and no table is published.
    """

    FLUSH_ROWS = 10_000

    def __init__(
        self,
        out: Path,
        names: tuple[str, str] = TABLE_NAMES,
        schema: pa.Schema = REGIONS_SCHEMA,
    ) -> None:
        self.paths = tuple(out / name for name in names)
        for path in self.paths:
            if path.is_file() or path.is_symlink():
                path.unlink()  # an earlier run's table must not describe this run's images
        self.rows = 0
        self.error: str | None = None
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._tmp = [_temp_beside(p) for p in self.paths]
        options = pa_csv.WriteOptions(quoting_style="needed")
        self._parquet = pq.ParquetWriter(self._tmp[0], schema)
        self._csv = pa_csv.CSVWriter(str(self._tmp[1]), schema, write_options=options)

    def __enter__(self) -> RegionsTable:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._close()
        for tmp in self._tmp:
            tmp.unlink(missing_ok=True)

    def add(self, table: pa.Table) -> None:
        self._pending.append(table)
        self._pending_rows += table.num_rows
        self.rows += table.num_rows
        if self._pending_rows >= self.FLUSH_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self._pending and self.error is None:
            try:
                table = pa.concat_tables(self._pending)
                self._parquet.write_table(table)
                self._csv.write_table(table)
            except OSError as err:
                self.error = f"{type(err).__name__}: {err}"
        self._pending, self._pending_rows = [], 0

    def _close(self) -> None:
        for writer in (self._parquet, self._csv):
            try:
                writer.close()
            except OSError as err:
                self.error = self.error or f"{type(err).__name__}: {err}"

    def publish(self) -> list[tuple[str, str]]:
        """Write what is left and rename both files into place; ``(path, reason)`` for each
        table that could not be written (it is then absent)."""
        self._flush()
        self._close()
        if self.error is not None:
            return [(str(p), self.error) for p in self.paths]
        failed = []
        for tmp, path in zip(self._tmp, self.paths, strict=True):
            try:
                os.replace(tmp, path)
            except OSError as err:
                failed.append((str(path), f"{type(err).__name__}: {err}"))
        return failed
