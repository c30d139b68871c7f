"""Reading images and label images into a dataset (HALCON: read_dl_dataset_segmentation).

Images and labels are paired by their path relative to their folder, without the
extension: ``images/lot1/a.png`` pairs with ``labels/lot1/<prefix>a<suffix>.png``.
Every file is decoded once (in a thread pool; the decoders release the GIL), so a
truncated or corrupt file is caught here and not halfway through training. Every
problem found is reported at once in one :class:`~segcore.common.errors.DatasetError`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from segcore.common.constants import (
    COL_IMAGE_ID,
)
from segcore.common.errors import DatasetError, Problems
from segcore.common.images import (
    DEFAULT_MAX_IMAGE_PIXELS,
    IMAGE_SUFFIXES,
    PixelLimit,
    list_images,
)
from segcore.data.dldataset import DLDataset
from segcore.data.pairs import Pair, Reading, read_pairs
from segcore.params import class_list_problems

_MAX_LISTED = 50
"""Unmatched files listed one by one before the rest is summed up in one line."""


def read_dataset(
    image_dir: str | os.PathLike[str],
    segmentation_dir: str | os.PathLike[str],
    class_names: Sequence[str],
    class_ids: Sequence[int],
    *,
    label_prefix: str = "",
    label_suffix: str = "",
    ignore_unmatched: bool = False,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    ignore_class_ids: Sequence[int] = (),
) -> DLDataset:
    """Pair images with label images, check them, and count pixels per class.

    Args:
        image_dir: folder of images (PNG, JPEG, TIFF, BMP; 8/16 bit; grey, RGB, RGBA);
            sub-folders are searched too.
        segmentation_dir: folder of label images: one channel, pixel value = class id
            (8/16-bit PNG, TIFF or BMP, or a palette PNG whose indices are the class ids).
        class_names: class names, in the order of ``class_ids``.
        class_ids: class ids as stored in the label images (0..65535).
        label_prefix, label_suffix: the label of ``sub/a.png`` is
            ``sub/<label_prefix>a<label_suffix>.<ext>``.
        ignore_unmatched: skip images without a label and labels without an image.
        max_image_pixels: largest image or label (width x height), checked in the header
            before decoding (``dataset.max_image_pixels``).
        ignore_class_ids: label values allowed besides ``class_ids``
            (``preprocess.param.ignore_class_ids``, HALCON's ignore classes such as a 255
            border); their pixels outside the class ids are counted in ``pixels_ignored``.

    Returns:
        The dataset, one sample per pair in sorted image path order, with columns
        ``image_id`` (0..N-1), ``image_file_name``, ``segmentation_file_name`` (relative,
        posix), ``image_width``, ``image_height`` (pixels), ``image_num_channels`` (1 or 3),
        ``image_bit_depth``, ``pixels_class_<id>`` (pixel count per class id) and
        ``pixels_ignored`` (pixels of ignore ids outside the class ids, when there are such
        ignore ids).

    Raises:
        DatasetError: with every problem found (folders, pairing, unreadable files, sizes,
            label values, class lists), each naming the file or setting and the fix.
    """
    problems = Problems()
    problems.extend(
        f"{key} {problem}" for key, problem in class_list_problems(class_names, class_ids)
    )
    known_ids = None if problems else [int(c) for c in class_ids]
    image_root, label_root = Path(image_dir), Path(segmentation_dir)
    limit = PixelLimit(max_image_pixels, "dataset.max_image_pixels")
    reading = Reading(known_ids, limit, tuple(int(i) for i in ignore_class_ids))
    rows = _collect_rows(
        image_root, label_root, label_prefix, label_suffix, ignore_unmatched, reading, problems
    )
    problems.raise_if_any(DatasetError, f"the dataset cannot be read ({len(problems)} problems)")
    return _to_dataset(rows, image_root, label_root, class_names, class_ids)


def _collect_rows(
    image_root: Path,
    label_root: Path,
    prefix: str,
    suffix: str,
    ignore_unmatched: bool,
    reading: Reading,
    problems: Problems,
) -> list[dict]:
    """Check both folders, pair their files and read each pair into a row; problems collect."""
    folder_problems = _folder_problems(image_root, label_root)
    problems.extend(folder_problems)
    if folder_problems:
        return []
    pairs = _pair_files(image_root, label_root, prefix, suffix, ignore_unmatched, problems)
    return read_pairs(pairs, reading, problems)


def _to_dataset(
    rows: list[dict],
    image_root: Path,
    label_root: Path,
    class_names: Sequence[str],
    class_ids: Sequence[int],
) -> DLDataset:
    """The dataset of the read rows, numbered ``image_id`` 0..N-1 in row order."""
    samples = pd.DataFrame(rows)
    samples.insert(0, COL_IMAGE_ID, np.arange(len(samples), dtype=np.int64))
    return DLDataset(
        samples=samples,
        image_dir=image_root.resolve(),
        segmentation_dir=label_root.resolve(),
        class_names=[str(n) for n in class_names],
        class_ids=[int(c) for c in class_ids],
    )


def _folder_problems(image_root: Path, label_root: Path) -> list[str]:
    """One problem for each of the two roots that is not a folder."""
    found = []
    for key, folder in (("image_dir", image_root), ("segmentation_dir", label_root)):
        if not folder.is_dir():
            what = "is not a folder" if folder.exists() else "does not exist"
            found.append(f"{folder}: {key} {what}; set dataset.{key} to the folder of your files")
    return found


def _key(rel: Path) -> str:
    return rel.with_suffix("").as_posix()


def _label_key(rel: Path, prefix: str, suffix: str) -> str | None:
    """The image key a label file belongs to, or ``None`` if its name lacks prefix/suffix."""
    stem = rel.stem
    if not (stem.startswith(prefix) and stem.endswith(suffix)):
        return None
    core = stem[len(prefix) : len(stem) - len(suffix)]
    if not core:
        return None
    return (rel.parent / core).as_posix()


def _group(files: list[Path], keys: list[str | None]) -> dict[str, list[Path]]:
    grouped: dict[str, list[Path]] = {}
    for path, key in zip(files, keys, strict=True):
        if key is not None:
            grouped.setdefault(key, []).append(path)
    return grouped


def _pair_files(
    image_root: Path,
    label_root: Path,
    prefix: str,
    suffix: str,
    ignore_unmatched: bool,
    problems: Problems,
) -> list[Pair]:
    """Pairs in sorted image order; pairing problems go to ``problems``."""
    found = _find_files(image_root, label_root, prefix, suffix, problems)
    if found is None:
        return []
    image_files, label_files, label_keys = found
    images = _group(image_files, [_key(p.relative_to(image_root)) for p in image_files])
    labels = _group(label_files, label_keys)
    problems.extend(_duplicate_problems(images, labels))
    if not ignore_unmatched:
        problems.extend(
            _unlabelled_problems(images, labels, image_root, label_root, prefix, suffix)
        )
        problems.extend(
            _orphan_label_problems(images, label_files, label_keys, image_root, prefix, suffix)
        )
    pairs = [
        Pair(
            image=images[k][0],
            label=labels[k][0],
            image_rel=images[k][0].relative_to(image_root).as_posix(),
            label_rel=labels[k][0].relative_to(label_root).as_posix(),
        )
        for k in sorted(images)
        if k in labels
    ]
    if not pairs:
        problems.add(
            f"{image_root}, {label_root}: no image has a label image; labels must have the "
            f"image's name (with label_prefix {prefix!r} and label_suffix {suffix!r}) in the "
            "same sub-folder"
        )
    return pairs


def _duplicate_problems(images: dict[str, list[Path]], labels: dict[str, list[Path]]) -> list[str]:
    """One problem per name that several images (or several label images) share."""
    found = []
    for group, kind in ((images, "images"), (labels, "label images")):
        for key, paths in group.items():
            if len(paths) > 1:
                names = ", ".join(str(p) for p in paths)
                found.append(f"{names}: several {kind} for the name {key!r}; keep only one")
    return found


def _unlabelled_problems(
    images: dict[str, list[Path]],
    labels: dict[str, list[Path]],
    image_root: Path,
    label_root: Path,
    prefix: str,
    suffix: str,
) -> list[str]:
    """One problem per image without a label image (capped), naming the label it expects."""
    unlabelled = [paths[0] for key, paths in images.items() if key not in labels]
    return _capped(
        f"{path}: image without a label image (expected "
        f"{_expected_label(label_root, path.relative_to(image_root), prefix, suffix)}"
        ".png, .tif or .bmp); add the label, fix dataset.label_prefix/label_suffix, "
        "or set dataset.ignore_unmatched"
        for path in unlabelled
    )


def _orphan_label_problems(
    images: dict[str, list[Path]],
    label_files: list[Path],
    label_keys: list[str | None],
    image_root: Path,
    prefix: str,
    suffix: str,
) -> list[str]:
    """One problem per label image without an image (capped), saying what it lacks."""
    return _capped(
        f"{path}: label image without an image ("
        + (
            f"expected {image_root / key}.*"
            if key is not None
            else f"its name lacks label_prefix {prefix!r} / label_suffix {suffix!r}"
        )
        + "); add the image, remove the label, or set dataset.ignore_unmatched"
        for path, key in zip(label_files, label_keys, strict=True)
        if key not in images
    )


def _find_files(
    image_root: Path, label_root: Path, prefix: str, suffix: str, problems: Problems
) -> tuple[list[Path], list[Path], list[str | None]] | None:
    """``(image_files, label_files, label_keys)``, or ``None`` (with problems) if either is
    missing."""
    same = image_root.resolve() == label_root.resolve()
    if same and not prefix and not suffix:
        problems.add(
            f"{image_root}: image_dir and segmentation_dir are the same folder; set "
            "dataset.label_suffix (e.g. _label) or label_prefix so labels can be told apart"
        )
        return None
    # One folder may hold the other (images/ and images/labels/): keep the lists apart.
    image_files = _list_outside(image_root, label_root)
    label_files = _list_outside(label_root, image_root)
    label_keys = [_label_key(p.relative_to(label_root), prefix, suffix) for p in label_files]
    if same:  # one folder: the labels are the files whose names carry the prefix/suffix
        label_files = [p for p, k in zip(label_files, label_keys, strict=True) if k is not None]
        label_keys = [k for k in label_keys if k is not None]
        is_label = set(label_files)
        image_files = [p for p in image_files if p not in is_label]
    if not image_files:
        problems.add(
            f"{image_root}: no images found; put PNG, JPEG, TIFF or BMP files there "
            "(sub-folders are searched) or set dataset.image_dir"
        )
    if not label_files:
        problems.add(
            f"{label_root}: no label images found; put one PNG/TIFF/BMP label per image "
            "there or set dataset.segmentation_dir"
        )
    if not image_files or not label_files:
        return None
    return image_files, label_files, label_keys


def _expected_label(label_root: Path, image_rel: Path, prefix: str, suffix: str) -> Path:
    """The label path (without extension) that the image ``image_rel`` looks for."""
    return label_root / image_rel.parent / f"{prefix}{image_rel.stem}{suffix}"


def _list_outside(root: Path, other: Path) -> list[Path]:
    """Image files below ``root``, without those below ``other`` when it lies inside ``root``."""
    files = list_images(root, IMAGE_SUFFIXES)
    root_r, other_r = root.resolve(), other.resolve()
    if other_r == root_r or not other_r.is_relative_to(root_r):
        return files
    return [p for p in files if not p.resolve().is_relative_to(other_r)]


def _capped(messages: Iterable[str]) -> list[str]:
    """The first ``_MAX_LISTED`` messages, then one line that counts the rest."""
    out = list(messages)
    if len(out) > _MAX_LISTED:
        out[_MAX_LISTED:] = [f"... and {len(out) - _MAX_LISTED} more files like these"]
    return out
