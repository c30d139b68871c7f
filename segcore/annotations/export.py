"""``export_coco``: segcore's segmentation images -> a COCO JSON to correct in a labelling tool.

Two encodings:

- ``rle``: one annotation per class and image, a compressed COCO RLE made by
  ``pycocotools``. Exact.
- ``polygon``: one annotation per connected region (8-connected) of a class. Its outline
  runs along the pixel boundary, a quarter pixel inside (traced with ``cv2.findContours``
  on the mask enlarged 2x), so that the pixel-centre rule of
  :mod:`segcore.annotations.shapes` gives back exactly the same pixels: no pixel centre lies
  on it. COCO polygons cannot have holes, so each hole is joined to the outline by a
  zero-width cut (there and back along one segment): under the even-odd rule the cut
  labels nothing and the hole stays empty. Also exact when imported with
  :func:`~segcore.annotations.import_labels`; tools that rasterise differently may move a
  boundary by a pixel, and show the cuts as thin lines.

Categories are the classes (id and name) minus ``skip_ids``; annotations have
``iscrowd`` 0, an ``area`` in pixels and a ``bbox`` ``[x, y, width, height]``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from segcore.annotations.checks import capped
from segcore.annotations.shapes import fill_patch
from segcore.common.errors import DatasetError, ParamsError, Problems
from segcore.common.images import (
    IMAGE_SUFFIXES,
    LABEL_SUFFIXES,
    image_size,
    list_images,
    read_label,
)
from segcore.common.io import write_json_atomic

PREDICTION_SUFFIX = "_segmentation"
"""``segcore infer`` writes ``<name>_segmentation.png``; the image is ``<name>.*``."""


def export_coco(
    seg_dir: Path,
    image_dir: Path | None,
    out_json: Path,
    class_names: Sequence[str],
    class_ids: Sequence[int],
    *,
    encoding: Literal["rle", "polygon"] = "rle",
    skip_ids: Iterable[int] = (0,),
    label_suffix: str | None = None,
) -> Path:
    """Write the segmentation images of ``seg_dir`` as a COCO JSON at ``out_json``.

    Args:
        seg_dir: segmentation images (one channel, pixel = class id): ``segcore infer``
            output (``<name>_segmentation.png``) or a label folder (``<name>.png``).
        image_dir: the images; their paths relative to it become the COCO ``file_name``s
            (what the labelling tool knows them by), and their sizes are checked. ``None``:
            the segmentation files' names stand in (``<name>.png``).
        out_json: the COCO file to write (atomically).
        class_names, class_ids: the classes (``params.yaml`` ``dataset:``).
        encoding: ``rle`` (exact masks) or ``polygon`` (editable outlines, exact too).
        skip_ids: class ids not exported (the background).
        label_suffix: the part of a segmentation file's stem after the image's stem;
            ``None``: ``_segmentation`` if such files exist, else none.

    Returns:
        ``out_json``.

    Raises:
        ParamsError: invalid options.
        DatasetError: every problem with the files, at once; then nothing is written.
    """
    seg_dir, out_json = Path(seg_dir), Path(out_json)
    ids = _check_options(class_names, class_ids, encoding)
    skip = {int(i) for i in skip_ids}
    problems = Problems()
    files = _segmentation_files(seg_dir, label_suffix, problems)
    images = _image_files(Path(image_dir), problems) if image_dir is not None else None
    coco: dict[str, Any] = {
        "info": {"description": "segcore segmentation images"},
        "licenses": [],
        "images": [],
        "annotations": [],
        "categories": [
            {"id": i, "name": n, "supercategory": ""}
            for n, i in zip(class_names, ids, strict=True)
            if i not in skip
        ],
    }
    for key, path in files:
        found = _find_image(key, path, images, problems)
        label = _read(path, found[1] if found else None, set(ids), problems)
        if label is not None and found is not None:
            _add_image(coco, found[0], label, skip, encoding)
    problems.items[:] = capped(problems.items)
    problems.raise_if_any(DatasetError, f"{seg_dir}: {len(problems)} problems; nothing was written")
    write_json_atomic(out_json, coco)
    return out_json


def _add_image(
    coco: dict[str, Any], file_name: str, label: np.ndarray, skip: set[int], encoding: str
) -> None:
    """Append the image and one annotation per class (rle) or region (polygon)."""
    image_id = len(coco["images"]) + 1
    height, width = label.shape
    coco["images"].append(
        {"id": image_id, "file_name": file_name, "width": width, "height": height}
    )
    for class_id in sorted(set(np.unique(label).tolist()) - skip):
        mask = label == class_id
        for body in [_rle(mask)] if encoding == "rle" else mask_polygons(mask):
            ann = {"id": len(coco["annotations"]) + 1, "image_id": image_id}
            coco["annotations"].append(ann | {"category_id": class_id} | body)


def _check_options(names: Sequence[str], ids: Sequence[int], encoding: str) -> list[int]:
    problems = Problems()
    if len(names) != len(ids) or not ids:
        problems.add(
            f"class_names: {len(names)} names for {len(ids)} class_ids; give one name per id"
        )
    if len(set(ids)) != len(ids):
        problems.add(f"class_ids: {list(ids)} has duplicates; each id must appear once")
    if encoding not in ("rle", "polygon"):
        problems.add(f"encoding: {encoding!r} is unknown; use 'rle' (exact masks) or 'polygon'")
    problems.raise_if_any(ParamsError, "export_coco options are invalid")
    return [int(i) for i in ids]


def _segmentation_files(
    seg_dir: Path, suffix: str | None, problems: Problems
) -> list[tuple[str, Path]]:
    """``(key, file)`` pairs; key: the path below ``seg_dir`` without suffix and extension."""
    files = list_images(seg_dir, LABEL_SUFFIXES) if seg_dir.is_dir() else []
    if suffix is None:
        found = any(p.stem.endswith(PREDICTION_SUFFIX) for p in files)
        suffix = PREDICTION_SUFFIX if found else ""
    pairs = [
        ((p.relative_to(seg_dir).parent / p.stem[: len(p.stem) - len(suffix)]).as_posix(), p)
        for p in files
        if p.stem.endswith(suffix) and len(p.stem) > len(suffix)
    ]
    if not pairs:
        problems.add(
            f"{seg_dir}: no segmentation images (PNG/TIFF/BMP named <image>{suffix}.png); "
            "give the folder segcore infer wrote, or a label folder"
        )
    return pairs


def _image_files(image_dir: Path, problems: Problems) -> dict[str, tuple[str, list[Path]]]:
    """Image key (path below ``image_dir`` without extension) -> files with that key."""
    images: dict[str, list[Path]] = {}
    for path in list_images(image_dir, IMAGE_SUFFIXES) if image_dir.is_dir() else []:
        images.setdefault(path.relative_to(image_dir).with_suffix("").as_posix(), []).append(path)
    if not images:
        problems.add(f"{image_dir}: no images found; give the folder of the segmented images")
    return {k: (image_dir.as_posix(), paths) for k, paths in images.items()}


def _find_image(
    key: str,
    path: Path,
    images: dict[str, tuple[str, list[Path]]] | None,
    problems: Problems,
) -> tuple[str, Path | None] | None:
    """The COCO ``file_name`` of the segmentation ``path`` (its image's relative path) and
    the image file, or ``None`` (with a problem) when no single image matches."""
    if images is None:
        return key + path.suffix, None
    root, found = images.get(key, ("", []))
    if len(found) == 1:
        return found[0].relative_to(root).as_posix(), found[0]
    why = "no image" if not found else f"several images ({', '.join(map(str, found))})"
    problems.add(
        f"{path}: {why} named {key}.* in the image folder; give the folder of the images "
        "it was made from, or remove it"
    )
    return None


def _read(path: Path, image: Path | None, ids: set[int], problems: Problems) -> np.ndarray | None:
    """The segmentation image, checked against the class ids and its image's size."""
    try:
        label = read_label(path)
    except DatasetError as err:
        problems.extend(err.problems)
        return None
    unknown = sorted(set(np.unique(label).tolist()) - ids)
    if unknown:
        problems.add(
            f"{path}: pixel values {unknown[:10]} are not class ids ({sorted(ids)}); "
            "give the classes of the model that made it"
        )
        return None
    if image is not None and (size := image_size(image)) != label.shape[::-1]:
        problems.add(
            f"{path}: is {label.shape[1]}x{label.shape[0]} but its image {image} is "
            f"{size[0]}x{size[1]}; segment that image again"
        )
        return None
    return label


def _rle(mask: np.ndarray) -> dict[str, Any]:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {
        "segmentation": {"size": list(mask.shape), "counts": rle["counts"].decode("ascii")},
        "area": int(mask.sum()),
        "bbox": [int(v) for v in mask_utils.toBbox(rle).tolist()],
        "iscrowd": 0,
    }


def mask_polygons(mask: np.ndarray) -> list[dict[str, Any]]:
    """COCO annotation bodies (segmentation, area, bbox, iscrowd) of the bool ``(H, W)``
    ``mask``: one single-ring polygon per 8-connected region, holes joined by cuts."""
    doubled = np.kron(mask.astype(np.uint8), np.ones((2, 2), dtype=np.uint8))
    contours, hierarchy = cv2.findContours(doubled, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return []
    # Doubled pixel (i, j) has its centre at ((j + 0.5) / 2, (i + 0.5) / 2) in the original.
    rings = [(c.reshape(-1, 2) + 0.5) / 2 for c in contours]
    links = hierarchy[0]  # per contour: next, previous, first child, parent
    out = []
    for k in np.flatnonzero(links[:, 3] == -1):
        holes, child = [], links[k][2]
        while child != -1:
            holes.append(_oriented(rings[child], -1))
            child = links[child][0]
        outline = bridge(_oriented(rings[k], 1), holes)
        patch = fill_patch([outline], *mask.shape)
        rows, cols = np.nonzero(patch.mask)
        out.append(
            {
                "segmentation": [outline.ravel().tolist()],
                "area": len(rows),
                "bbox": [
                    patch.left + int(cols.min()),
                    patch.top + int(rows.min()),
                    int(cols.max() - cols.min()) + 1,
                    int(rows.max() - rows.min()) + 1,
                ],
                "iscrowd": 0,
            }
        )
    return out


def bridge(outline: np.ndarray, holes: Sequence[np.ndarray]) -> np.ndarray:
    """One ring of ``outline`` with every hole joined in by a cut there and back.

    Each hole is entered at its top-left vertex from the nearest vertex of the ring so far,
    walked round, and left the same way, so the cut is one segment drawn twice.
    """
    path = outline
    for hole in holes:
        j = int(np.lexsort((hole[:, 0], hole[:, 1]))[0])
        i = int(np.argmin(((path - hole[j]) ** 2).sum(axis=1)))
        hole = np.roll(hole, -j, axis=0)
        path = np.concatenate([path[: i + 1], hole, hole[:1], path[i:]])
    return path


def _oriented(ring: np.ndarray, sign: int) -> np.ndarray:
    """``ring`` in the turning direction whose shoelace area has ``sign`` (holes turn the
    other way than outlines, so the non-zero rule of other tools sees the holes too)."""
    x, y = ring[:, 0], ring[:, 1]
    area = np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))
    return ring if area * sign >= 0 else ring[::-1]
