"""Drawing the label images and putting the label folder in place all at once.

Label files go into a hidden temporary folder beside the output folder, which is renamed
into place only when every file is written: readers (a running pipeline, DVC) see the old
folder or the new one, never half of one. An existing non-empty output folder is replaced
only with ``overwrite``; it is moved aside, the new one renamed in, and the old one
deleted (should the second rename fail, the old folder is moved back).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segcore.annotations.checks import PlannedImage
from segcore.annotations.shapes import rasterise
from segcore.common.io import umask_mode


@dataclass(frozen=True)
class Overlap:
    """Pixels of one image where a shape of one class covers a shape of another class.

    Attributes:
        image: the image's path relative to the image folder.
        top: the class drawn on top, which keeps the pixels.
        under: the class it covers.
        pixels: how many pixels changed class.
    """

    image: str
    top: str
    under: str
    pixels: int


def render(
    plan: PlannedImage,
    class_map: Mapping[str, int],
    fill: int,
    dtype: type[np.unsignedinteger],
    line_width: float,
) -> tuple[np.ndarray, Counter[tuple[int, int]]]:
    """The ``(height, width)`` label image of ``plan`` and its overlaps.

    Shapes are drawn in ``plan.shapes`` order, each over the ones before; pixels no shape
    labels keep ``fill``. The counter maps ``(top id, covered id)`` to the pixels where a
    shape covered an earlier shape of another class.
    """
    width, height = plan.size
    label = np.full((height, width), fill, dtype=dtype)
    painted = np.zeros((height, width), dtype=bool)
    overlaps: Counter[tuple[int, int]] = Counter()
    for shape in plan.shapes:
        class_id = class_map[shape.label]
        patch = rasterise(shape, height, width, line_width)
        rows = slice(patch.top, patch.top + patch.mask.shape[0])
        cols = slice(patch.left, patch.left + patch.mask.shape[1])
        region, done = label[rows, cols], painted[rows, cols]
        covered = region[patch.mask & done]
        ids, counts = np.unique(covered[covered != class_id], return_counts=True)
        for under, n in zip(ids.tolist(), counts.tolist(), strict=True):
            overlaps[(class_id, under)] += n
        region[patch.mask] = class_id
        done |= patch.mask
    return label, overlaps


def out_dir_problems(out_dir: Path, image_dir: Path, export: Path, overwrite: bool) -> list[str]:
    """Why ``out_dir`` cannot receive the labels (empty list when it can)."""
    out = out_dir.resolve()
    if out.exists() and not out.is_dir():
        return [f"{out_dir}: exists and is not a folder; choose another output folder"]
    for other, what in ((image_dir, "the images"), (export, "the export")):
        if other.resolve().is_relative_to(out):
            return [
                f"{out_dir}: holds {what} ({other}), which replacing the folder would delete; "
                "choose a separate folder for the labels"
            ]
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        return [
            f"{out_dir}: folder exists and is not empty; choose a new folder, empty it, or "
            "set overwrite to replace it"
        ]
    return []


@contextlib.contextmanager
def staged_folder(out_dir: Path, overwrite: bool) -> Iterator[Path]:
    """Yield a new hidden folder beside ``out_dir``; when the block succeeds it becomes
    ``out_dir`` (replacing an existing non-empty one only if ``overwrite``), when it fails
    it is deleted and ``out_dir`` is untouched."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.", suffix=".tmp"))
    tmp.chmod(umask_mode(0o777))  # mkdtemp makes 0700: readers need what mkdir gives
    try:
        yield tmp
        _put_in_place(tmp, out_dir, overwrite)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _put_in_place(tmp: Path, out_dir: Path, overwrite: bool) -> None:
    if out_dir.is_dir() and not any(out_dir.iterdir()):
        out_dir.rmdir()
    if not out_dir.exists():
        os.rename(tmp, out_dir)
        return
    if not overwrite:  # filled by someone else since the checks ran
        raise FileExistsError(f"{out_dir}: folder appeared while writing; nothing was written")
    old = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.", suffix=".old"))
    os.rename(out_dir, old / "labels")
    try:
        os.rename(tmp, out_dir)
    except BaseException:
        os.rename(old / "labels", out_dir)
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)
