"""``import_labels``: an annotation export + its images -> segcore's label folder.

The class map turns label names into class ids. Given by the caller, several names may
share an id (aliases; the first name names the class). Built from the export, it is:
``background`` -> ``background_id``, then every other label name in sorted (code point)
order -> the smallest free ids from 0, skipping ``background_id`` (and ``ignore_id`` when
unlabelled pixels are ignored). Sorted rather than in export order, so that the same label
set always gets the same ids, whichever tool or image order produced it; a label called
``background`` is the background class.
"""

from __future__ import annotations

import numbers
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from segcore.annotations.checks import PlannedImage, check_export, label_rel
from segcore.annotations.coco import read_coco
from segcore.annotations.cvat import read_cvat
from segcore.annotations.detect import Format, check_format
from segcore.annotations.labelme import read_labelme
from segcore.annotations.labelstudio import read_labelstudio
from segcore.annotations.match import ImageIndex
from segcore.annotations.model import ParsedExport
from segcore.annotations.write import Overlap, out_dir_problems, render, staged_folder
from segcore.common.errors import DatasetError, ParamsError, Problems
from segcore.common.images import write_image_atomic

MAX_CLASS_ID = 65535
"""Largest id a 16-bit label image holds."""
BACKGROUND_NAME = "background"
"""Name of the background class in a class map built from the export."""

READERS: dict[Format, Callable[[Path], ParsedExport]] = {
    "coco": read_coco,
    "cvat": read_cvat,
    "labelme": read_labelme,
    "labelstudio": read_labelstudio,
}


@dataclass(frozen=True)
class ImportResult:
    """What :func:`import_labels` did.

    Attributes:
        format: the export format (detected or given).
        class_names, class_ids: the classes, sorted by id, for ``params.yaml``'s
            ``dataset:`` section (the ignore id is not a class; list it in
            ``preprocess.ignore_class_ids``).
        written: number of label files written.
        skipped: images (relative to the image folder) without shapes, left without a
            label file (``empty_images="skip"``).
        overlaps: per image and pair of classes, the pixels where one covered the other.
        out_dir: the label folder.
        ignore_id: the id of unlabelled pixels when they are ignored, else ``None``.
    """

    format: str
    class_names: list[str]
    class_ids: list[int]
    written: int
    skipped: list[str]
    overlaps: list[Overlap]
    out_dir: Path
    ignore_id: int | None = None


def import_labels(
    export: Path,
    image_dir: Path,
    out_dir: Path,
    *,
    format: str | None = None,
    class_map: Mapping[str, int] | None = None,
    background_id: int = 0,
    unlabelled: Literal["background", "ignore"] = "background",
    ignore_id: int = 255,
    empty_images: Literal["keep", "skip"] = "keep",
    line_width: int = 3,
    overwrite: bool = False,
) -> ImportResult:
    """Write one label image per image of ``image_dir`` from a labelling tool's export.

    Label files are one-channel PNGs of class ids (8-bit when every id fits, else 16-bit)
    at ``out_dir / <image's sub-folder> / <image's stem>.png``. Shapes are drawn by the
    pixel-centre rule (:mod:`segcore.annotations.shapes`) in the tool's z-order (CVAT) or
    export order, later on top. Every problem of the export is reported at once, and then
    nothing is written; the folder appears whole or not at all.

    Args:
        export: the export file (COCO/Label Studio JSON, CVAT XML) or LabelMe folder.
        image_dir: the folder of the labelled images (sub-folders are searched).
        out_dir: the label folder to create; must be missing or empty unless ``overwrite``.
        format: ``coco``, ``cvat``, ``labelme`` or ``labelstudio``; ``None`` detects it.
        class_map: label name -> class id; ``None`` builds it (see the module docstring).
        background_id: class id of the background (must be in ``class_map`` if given).
        unlabelled: pixels no shape covers become ``background_id`` or ``ignore_id``.
        ignore_id: class id written for unlabelled pixels when ``unlabelled="ignore"``.
        empty_images: images without shapes (in the export without any, or not in it at
            all) are defect-free samples written all ``background_id`` (``keep``), or are
            left out (``skip``).
        line_width: width in pixels of polylines/lines (thin scratches).
        overwrite: replace an existing non-empty ``out_dir``.

    Raises:
        ParamsError: invalid options.
        DatasetError: every problem of the export and the image folder, at once.
    """
    export, image_dir, out_dir = Path(export), Path(image_dir), Path(out_dir)
    ignore = unlabelled == "ignore"
    _check_options(class_map, background_id, unlabelled, ignore_id, empty_images, line_width)
    fmt = check_format(format, export)
    parsed = READERS[fmt](export)
    if class_map is None:
        labels = (s.label for e in parsed.entries for s in e.shapes)
        class_map = build_class_map(labels, background_id, ignore_id if ignore else None)
    index = ImageIndex(image_dir, exclude=[out_dir])
    plans, found = check_export(parsed, index, class_map, want_empty=empty_images == "keep")
    problems = Problems()
    if not image_dir.is_dir():
        problems.add(f"{image_dir}: image folder not found; check the path")
    elif not index.files:
        problems.add(f"{image_dir}: no images found (PNG, JPEG, TIFF, BMP); check the path")
    problems.extend(found)
    problems.extend(out_dir_problems(out_dir, image_dir, export, overwrite))
    problems.raise_if_any(DatasetError, f"{export}: {len(problems)} problems; nothing was written")
    names = class_names_by_id(class_map)
    plans = [p for p in plans if p.shapes or empty_images == "keep"]
    skipped = sorted(set(index.files) - {p.rel for p in plans})
    fill = ignore_id if ignore else background_id
    overlaps = _write(plans, out_dir, class_map, names, fill, background_id, line_width, overwrite)
    return ImportResult(
        format=fmt,
        class_names=list(names.values()),
        class_ids=list(names),
        written=len(plans),
        skipped=skipped,
        overlaps=overlaps,
        out_dir=out_dir,
        ignore_id=ignore_id if ignore else None,
    )


def _write(
    plans: list[PlannedImage],
    out_dir: Path,
    class_map: Mapping[str, int],
    names: Mapping[int, str],
    fill: int,
    background_id: int,
    line_width: int,
    overwrite: bool,
) -> list[Overlap]:
    """Write every label file into a staged folder, then put it in place."""
    dtype = np.uint8 if max([*class_map.values(), fill, background_id]) <= 255 else np.uint16
    rows: list[Overlap] = []
    with staged_folder(out_dir, overwrite) as tmp:
        for plan in plans:
            # An image without shapes is a defect-free sample: background, not unknown.
            label, counts = render(
                plan, class_map, fill if plan.shapes else background_id, dtype, line_width
            )
            target = tmp / label_rel(plan.rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            write_image_atomic(target, label)
            rows += _overlap_rows(plan.rel, counts, names)
    return rows


def _overlap_rows(
    image: str, counts: Counter[tuple[int, int]], names: Mapping[int, str]
) -> list[Overlap]:
    return [
        Overlap(image, names.get(top, str(top)), names.get(under, str(under)), n)
        for (top, under), n in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    ]


def build_class_map(
    labels: Iterable[str], background_id: int = 0, reserved: int | None = None
) -> dict[str, int]:
    """The class map of an export's ``labels``: ``background`` -> ``background_id``, then
    the other names sorted, numbered from 0 skipping ``background_id`` and ``reserved``."""
    labels = sorted(set(labels) - {BACKGROUND_NAME})
    taken = {background_id} | ({reserved} if reserved is not None else set())
    out = {BACKGROUND_NAME: background_id}
    next_id = 0
    for name in labels:
        while next_id in taken:
            next_id += 1
        out[name] = next_id
        taken.add(next_id)
    return out


def class_names_by_id(class_map: Mapping[str, int]) -> dict[int, str]:
    """Class id -> name, sorted by id; of several names for one id the first one wins."""
    out: dict[int, str] = {}
    for name, class_id in class_map.items():
        out.setdefault(class_id, name)
    return dict(sorted(out.items()))


def _check_options(
    class_map: Mapping[str, int] | None,
    background_id: int,
    unlabelled: str,
    ignore_id: int,
    empty_images: str,
    line_width: int,
) -> None:
    problems = Problems()
    for key, value in (("background_id", background_id), ("ignore_id", ignore_id)):
        if not _is_class_id(value):
            problems.add(f"{key}: {value!r} is not a class id; use an integer 0..{MAX_CLASS_ID}")
    if unlabelled not in ("background", "ignore"):
        problems.add(f"unlabelled: {unlabelled!r} is unknown; use 'background' or 'ignore'")
    if empty_images not in ("keep", "skip"):
        problems.add(f"empty_images: {empty_images!r} is unknown; use 'keep' or 'skip'")
    if isinstance(line_width, bool) or not isinstance(line_width, int) or line_width < 1:
        problems.add(f"line_width: {line_width!r} must be a whole number of pixels >= 1")
    if unlabelled == "ignore" and ignore_id == background_id:
        problems.add(
            f"ignore_id: {ignore_id} equals background_id; give unlabelled pixels their own id"
        )
    if class_map is not None:
        problems.extend(_class_map_problems(class_map, background_id, unlabelled, ignore_id))
    problems.raise_if_any(ParamsError, "import_labels options are invalid")


def _class_map_problems(
    class_map: Mapping[str, int], background_id: int, unlabelled: str, ignore_id: int
) -> list[str]:
    out = []
    bad = {n: i for n, i in class_map.items() if not _is_class_id(i)}
    if bad:
        out.append(f"class_map: {bad} are not class ids; use integers 0..{MAX_CLASS_ID}")
    if background_id not in class_map.values():
        out.append(
            f"class_map: no class has background_id {background_id}; add the background "
            f"class (e.g. {{'{BACKGROUND_NAME}': {background_id}, ...}}) or set background_id"
        )
    if unlabelled == "ignore" and ignore_id in class_map.values():
        names = sorted(n for n, i in class_map.items() if i == ignore_id)
        out.append(
            f"class_map: {names} use ignore_id {ignore_id}; choose another ignore_id or class id"
        )
    return out


def _is_class_id(value: object) -> bool:
    return (
        isinstance(value, numbers.Integral)
        and not isinstance(value, bool)
        and 0 <= int(value) <= MAX_CLASS_ID
    )
