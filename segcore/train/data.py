"""Preprocessed samples as in-memory tensors for training and validation.

A split is read once (one memory copy per sample file, no decoding) into contiguous
tensors; batches are then index gathers, so the data path costs far less than a
training step. The default pill data (112 x 3 x 256 x 256 float32) takes ~90 MB.
Everything wrong with the data is collected and raised at once, before training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from segcore.common.constants import COL_SAMPLE_FILE, COL_SPLIT
from segcore.common.errors import DatasetError, Problems
from segcore.data.dldataset import DLDataset
from segcore.data.samples import class_index_lut, load_sample

_MAX_LISTED = 5
"""File names listed per problem before the rest are counted."""


@dataclass(frozen=True)
class SplitData:
    """One split in memory.

    Attributes:
        images: ``(N, C, H, W)`` float32 network inputs.
        targets: ``(N, H, W)`` int64 class indices (ignore / unknown -> IGNORE_INDEX).
        weights: ``(N, H, W)`` float32 weight images (train split), else ``None``.
    """

    images: torch.Tensor
    targets: torch.Tensor
    weights: torch.Tensor | None

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def image_size(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of every sample."""
        c, h, w = self.images.shape[1:]
        return c, h, w


def _listed(names: list[str]) -> str:
    more = len(names) - _MAX_LISTED
    return ", ".join(names[:_MAX_LISTED]) + (f" and {more} more" if more > 0 else "")


def check_preprocessed(dataset: DLDataset, where: str) -> None:
    """The dataset has a split, sample files and preprocessing parameters.

    Raises:
        DatasetError: names ``where`` (the dataset file) and the stage to run.
    """
    problems = Problems()
    if not dataset.has_split:
        problems.add(f"{where}: the dataset has no split; run `segcore split` first")
    if COL_SAMPLE_FILE not in dataset.samples or dataset.sample_dir is None:
        problems.add(
            f"{where}: not a preprocessed dataset (no sample files); run `segcore preprocess` "
            "and pass its dataset.parquet"
        )
    if not dataset.preprocess_param:
        problems.add(f"{where}: no preprocessing parameters; run `segcore preprocess` again")
    problems.raise_if_any(DatasetError, f"{where} cannot be used for training")


def load_split(
    dataset: DLDataset, split: str, *, with_weights: bool, ignore_class_ids: list[int]
) -> SplitData:
    """Read every sample of ``split`` into tensors (see :class:`SplitData`).

    Label values outside ``class_ids`` (and the ignore ids) are an error: the dataset's
    class list does not match its label images.

    Raises:
        DatasetError: missing or unreadable sample files, missing weight images, sizes
            that differ, non-finite pixel values, label values not in ``class_ids``;
            all listed at once.
    """
    assert dataset.sample_dir is not None
    rows = dataset.samples[dataset.samples[COL_SPLIT] == split]
    paths = [Path(dataset.sample_dir) / name for name in rows[COL_SAMPLE_FILE]]
    problems = Problems()
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        problems.add(
            f"{len(missing)} {split} sample files are missing ({_listed(missing)}); "
            "run `segcore preprocess` again"
        )
        problems.raise_if_any(DatasetError)
    samples = [load_sample(p) for p in paths]
    if with_weights:
        unweighted = [str(p) for p, s in zip(paths, samples, strict=True) if "weight" not in s]
        if unweighted:
            problems.add(
                f"{len(unweighted)} {split} samples have no weight image ({_listed(unweighted)}); "
                "run `segcore preprocess` with the split that marks them as train"
            )
    shapes = {tuple(s["image"].shape) for s in samples}
    if len(shapes) > 1:
        problems.add(
            f"{split} samples differ in size {sorted(shapes)}; preprocess them all to one "
            "image_width x image_height"
        )
    problems.raise_if_any(DatasetError, f"the {split} split cannot be used for training")

    images = torch.from_numpy(np.stack([s["image"] for s in samples])) if samples else None
    labels = np.stack([s["label"] for s in samples]) if samples else None
    if images is None or labels is None:
        return SplitData(torch.empty(0, 1, 1, 1), torch.empty(0, 1, 1, dtype=torch.int64), None)
    _check_values(images, labels, dataset, split, paths, ignore_class_ids, problems)
    weights = None
    if with_weights:
        weights = torch.from_numpy(np.stack([s["weight"] for s in samples]))
        if not (torch.isfinite(weights).all() and (weights >= 0).all()):
            problems.add(
                f"{split} weight images hold negative or non-finite values; preprocess again"
            )
    problems.raise_if_any(DatasetError, f"the {split} split cannot be used for training")
    lut = torch.from_numpy(class_index_lut(dataset.class_ids, ignore_class_ids))
    targets = lut[torch.from_numpy(labels.astype(np.int64))]
    return SplitData(images, targets, weights)


def _check_values(
    images: torch.Tensor,
    labels: np.ndarray,
    dataset: DLDataset,
    split: str,
    paths: list[Path],
    ignore_class_ids: list[int],
    problems: Problems,
) -> None:
    finite = torch.isfinite(images).flatten(1).all(1)
    if not finite.all():
        bad = [str(p) for p, ok in zip(paths, finite.tolist(), strict=True) if not ok]
        problems.add(
            f"{len(bad)} {split} samples hold NaN or infinite pixel values ({_listed(bad)}); "
            "check the images and the normalization parameters"
        )
    known = set(dataset.class_ids) | set(ignore_class_ids)
    present = np.flatnonzero(np.bincount(labels.reshape(-1)))
    unknown = sorted(int(v) for v in present if int(v) not in known)
    if unknown:
        per_sample = [
            str(p) for p, lab in zip(paths, labels, strict=True) if np.isin(lab, unknown).any()
        ]
        problems.add(
            f"label values {unknown} in {len(per_sample)} {split} samples ({_listed(per_sample)}) "
            f"are not among class_ids {dataset.class_ids}: the class list does not match the "
            "dataset; add the ids to dataset.class_ids (or ignore_class_ids) and run the "
            "dataset and preprocess stages again"
        )
