"""Dataset statistics: class pixel frequencies and split sizes (HALCON's dataset display).

Counted from the dataset table's ``pixels_class_<id>`` columns, so no image is read.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from segcore.common.constants import COL_SPLIT, SPLITS
from segcore.common.errors import ParamsError
from segcore.common.io import write_json_atomic, write_text_atomic
from segcore.data.dldataset import DLDataset


@dataclass(frozen=True)
class ClassStats:
    """One class over the whole dataset.

    Attributes:
        class_id, class_name: the class.
        pixels: its pixels in all label images.
        pixel_percent: ``pixels`` as a percentage of all labelled pixels.
        images: number of samples whose label image holds the class.
        images_per_split: the same per split (empty when the dataset has no split).
    """

    class_id: int
    class_name: str
    pixels: int
    pixel_percent: float
    images: int
    images_per_split: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class DatasetStats:
    """Statistics of a dataset.

    Attributes:
        num_samples: number of samples.
        num_pixels: labelled pixels over all samples.
        classes: one entry per class id, in the dataset's class order.
        split_counts: samples per split (``train``, ``validation``, ``test``, and
            ``unassigned`` when some have none); empty when the dataset has no split.
    """

    num_samples: int
    num_pixels: int
    classes: list[ClassStats]
    split_counts: dict[str, int]


def dataset_stats(dataset: DLDataset) -> DatasetStats:
    """Count pixels and images per class (and per split) from the dataset table.

    Raises:
        DatasetError: the table lacks pixel-count columns.
    """
    counts = dataset.pixel_counts()  # (N, K)
    total = int(counts.sum())
    present = counts > 0
    split_col = dataset.samples.get(COL_SPLIT)
    split_counts: dict[str, int] = {}
    if split_col is not None:
        split_counts = {name: int((split_col == name).sum()) for name in SPLITS}
        unassigned = len(dataset) - sum(split_counts.values())
        if unassigned:
            split_counts["unassigned"] = unassigned
    classes = []
    for k, (cid, name) in enumerate(zip(dataset.class_ids, dataset.class_names, strict=True)):
        per_split = {}
        if split_col is not None:
            per_split = {s: int(present[(split_col == s).to_numpy(), k].sum()) for s in SPLITS}
        classes.append(
            ClassStats(
                class_id=int(cid),
                class_name=str(name),
                pixels=int(counts[:, k].sum()),
                pixel_percent=100.0 * float(counts[:, k].sum()) / total if total else 0.0,
                images=int(present[:, k].sum()),
                images_per_split=per_split,
            )
        )
    return DatasetStats(
        num_samples=len(dataset), num_pixels=total, classes=classes, split_counts=split_counts
    )


def print_stats(stats: DatasetStats, console: Console) -> None:
    """Print the class table and the split table."""
    has_split = bool(stats.split_counts)
    table = Table(
        title=f"Classes ({stats.num_samples} samples, {stats.num_pixels:,} pixels)",
        caption="images: samples whose label image holds the class"
        + (", in all and per split" if has_split else ""),
    )
    table.add_column("id", justify="right")
    table.add_column("class", no_wrap=True)
    for col in ("pixels", "% pixels", "images", *(SPLITS if has_split else ())):
        table.add_column(col, justify="right", no_wrap=True)
    for c in stats.classes:
        row = [str(c.class_id), c.class_name, f"{c.pixels:,}", f"{c.pixel_percent:.3f}"]
        row.append(str(c.images))
        row += [str(c.images_per_split.get(s, 0)) for s in SPLITS] if has_split else []
        table.add_row(*row)
    console.print(table)
    if not has_split:
        console.print("No split yet: run `segcore split`.")
        return
    splits = Table(title="Splits")
    splits.add_column("split")
    splits.add_column("samples", justify="right")
    splits.add_column("%", justify="right")
    for name, n in stats.split_counts.items():
        share = 100.0 * n / stats.num_samples if stats.num_samples else 0.0
        splits.add_row(name, str(n), f"{share:.1f}")
    console.print(splits)


def stats_frame(stats: DatasetStats) -> pd.DataFrame:
    """One row per class: ``class_id, class_name, pixels, pixel_percent, images,
    images_train, images_validation, images_test`` (the last three after splitting)."""
    rows = []
    for c in stats.classes:
        row = {k: v for k, v in asdict(c).items() if k != "images_per_split"}
        row.update({f"images_{s}": n for s, n in c.images_per_split.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def write_stats(stats: DatasetStats, path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write the class table as CSV to ``path`` and everything as JSON beside it.

    Returns:
        ``(csv_path, json_path)``; the JSON file has ``path``'s name with ``.json``.

    Raises:
        ParamsError: ``path`` does not end in ``.csv``.
    """
    csv_path = Path(path)
    if csv_path.suffix.lower() != ".csv":
        raise ParamsError(f"{csv_path}: the statistics file must end in .csv (JSON goes beside)")
    json_path = csv_path.with_suffix(".json")
    write_text_atomic(csv_path, stats_frame(stats).to_csv(index=False))
    write_json_atomic(json_path, asdict(stats))
    return csv_path, json_path
