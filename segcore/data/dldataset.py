"""The dataset (HALCON's DLDataset): a table of samples plus dataset-level metadata.

Kept as one Parquet file. The samples are its rows; the metadata lives in the table's
``attrs`` (pandas keeps them in the Parquet file), so plain pandas reads both::

    df = pd.read_parquet("data/dataset/split.parquet")
    df.attrs["class_names"], df["split"].value_counts()

Folder paths in the metadata are stored relative to the Parquet file's folder, so a
dataset keeps working when the repository is cloned elsewhere; :meth:`DLDataset.load`
returns them resolved.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from segcore.common.constants import COL_SPLIT, PIXEL_COUNT_PREFIX, SPLITS
from segcore.common.errors import DatasetError
from segcore.common.io import atomic_path

_PATH_KEYS = ("image_dir", "segmentation_dir", "sample_dir")


@dataclass(frozen=True)
class DLDataset:
    """Samples (one row each) and the dataset-level metadata.

    Attributes:
        samples: columns ``image_id``, ``image_file_name``, ``segmentation_file_name``
            (relative to ``image_dir`` / ``segmentation_dir``), ``image_width``,
            ``image_height``, ``image_num_channels``, ``pixels_class_<id>`` per class,
            and after splitting ``split``; after preprocessing ``sample_file_name``
            (relative to ``sample_dir``).
        image_dir: folder of the images.
        segmentation_dir: folder of the label images.
        class_names: class names, in the order of ``class_ids``.
        class_ids: class ids as stored in the label images.
        preprocess_param: the preprocessing parameters used (after preprocessing).
        class_weights: one weight per class id (after preprocessing).
        sample_dir: folder of the preprocessed samples (after preprocessing).
        extra: further metadata (free-form, JSON-serialisable).
    """

    samples: pd.DataFrame
    image_dir: Path
    segmentation_dir: Path
    class_names: list[str]
    class_ids: list[int]
    preprocess_param: dict[str, Any] | None = None
    class_weights: list[float] | None = None
    sample_dir: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ views

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def has_split(self) -> bool:
        """Whether every sample has a split."""
        return COL_SPLIT in self.samples and bool(self.samples[COL_SPLIT].isin(SPLITS).all())

    def split(self, name: str) -> pd.DataFrame:
        """The samples of one split (``train``, ``validation`` or ``test``)."""
        if not self.has_split:
            raise DatasetError(
                "the dataset has no split; run `segcore split` (split_dataset) first"
            )
        return self.samples[self.samples[COL_SPLIT] == name]

    def pixel_counts(self, samples: pd.DataFrame | None = None) -> np.ndarray:
        """``(N, K)`` int64 pixel counts per sample and class, in ``class_ids`` order."""
        df = self.samples if samples is None else samples
        cols = [f"{PIXEL_COUNT_PREFIX}{c}" for c in self.class_ids]
        missing = [c for c in cols if c not in df]
        if missing:
            raise DatasetError(f"dataset table lacks pixel-count columns {missing}")
        return df[cols].to_numpy(dtype=np.int64)

    def with_samples(self, samples: pd.DataFrame, **changes: Any) -> DLDataset:
        """A copy with new samples (and any other field changed)."""
        return replace(self, samples=samples.reset_index(drop=True), **changes)

    # ------------------------------------------------------------------ files

    def to_frame(self, base: Path) -> pd.DataFrame:
        """The samples with the metadata in ``attrs``; paths relative to ``base``."""
        df = self.samples.reset_index(drop=True).copy()
        attrs: dict[str, Any] = {
            "format": "segcore.DLDataset/1",
            "class_names": list(self.class_names),
            "class_ids": [int(c) for c in self.class_ids],
            "preprocess_param": self.preprocess_param,
            "class_weights": self.class_weights,
            **self.extra,
        }
        for key in _PATH_KEYS:
            value = getattr(self, key)
            attrs[key] = None if value is None else _relative(Path(value), base)
        df.attrs = attrs
        return df

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the dataset atomically to ``path`` (Parquet); returns the path."""
        path = Path(path)
        df = self.to_frame(path.parent)
        with atomic_path(path) as tmp:
            df.to_parquet(tmp, index=False)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> DLDataset:
        """Read a dataset written by :meth:`save`.

        Raises:
            DatasetError: the file is missing or is not a segcore dataset.
        """
        path = Path(path)
        if not path.is_file():
            raise DatasetError(
                f"{path}: dataset file not found; run the stage that writes it first "
                "(`segcore dataset`, `segcore split`, `segcore preprocess`)"
            )
        try:
            df = pd.read_parquet(path)
        except (OSError, ValueError) as err:
            raise DatasetError(f"{path}: not a readable Parquet file ({err})") from None
        attrs = dict(df.attrs)
        if not str(attrs.get("format", "")).startswith("segcore.DLDataset"):
            raise DatasetError(
                f"{path}: not a segcore dataset (no dataset metadata); create it with "
                "`segcore dataset`"
            )
        df.attrs = {}
        base = path.parent
        paths = {
            k: (None if attrs.get(k) is None else (base / attrs[k]).resolve()) for k in _PATH_KEYS
        }
        known = {"format", "class_names", "class_ids", "preprocess_param", "class_weights"}
        return cls(
            samples=df,
            image_dir=paths["image_dir"],
            segmentation_dir=paths["segmentation_dir"],
            class_names=list(attrs["class_names"]),
            class_ids=[int(c) for c in attrs["class_ids"]],
            preprocess_param=attrs.get("preprocess_param"),
            class_weights=attrs.get("class_weights"),
            sample_dir=paths["sample_dir"],
            extra={k: v for k, v in attrs.items() if k not in known and k not in _PATH_KEYS},
        )


def _relative(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` when both are on one drive, else absolute."""
    try:
        return Path(os.path.relpath(path.resolve(), base.resolve())).as_posix()
    except ValueError:
        return path.resolve().as_posix()
