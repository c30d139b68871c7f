"""LabelMe JSON: one file per image (a folder of them, sub-folders included, or one file).

Shapes: ``polygon``; ``rectangle`` (two opposite corners); ``circle`` (centre, then a point
on the circle); ``line`` and ``linestrip`` (drawn ``line_width`` wide); ``mask`` (a base64
PNG whose top-left pixel sits at the first point). ``point``/``points`` label no area and
are reported. ``imagePath`` is relative to the JSON file. LabelMe has no z-order: later
shapes are drawn on top. Note that LabelMe's own ``labelme_export_json`` treats vertices as
pixel indices; segcore's pixel-centre rule (see :mod:`segcore.annotations.shapes`) places
them on the pixel grid instead, which can move a boundary by one pixel.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from segcore.annotations.detect import labelme_files, load_json
from segcore.annotations.model import ImageEntry, ParsedExport, Shape, box_ring, ring
from segcore.common.errors import DatasetError
from segcore.common.images import decode_image

_LINES = frozenset({"line", "linestrip"})


def read_labelme(export: Path) -> ParsedExport:
    """Parse a LabelMe folder (or one LabelMe JSON file); problems are collected."""
    out = ParsedExport("labelme")
    files = labelme_files(export) if export.is_dir() else [export]
    if not files:
        out.problems.append(f"{export}: no .json files found; give the folder of LabelMe files")
    for path in files:
        try:
            data = load_json(path)
        except DatasetError as err:
            out.problems.extend(err.problems)
            continue
        entry = _entry(path, data, out.problems)
        if entry is not None:
            out.entries.append(entry)
    return out


def _entry(path: Path, data: Any, problems: list[str]) -> ImageEntry | None:
    if not isinstance(data, dict) or not isinstance(data.get("shapes"), list):
        problems.append(f"{path}: not a LabelMe file (no 'shapes' list); move it out of the folder")
        return None
    name = data.get("imagePath")
    if not isinstance(name, str) or not name:
        problems.append(f"{path}: has no 'imagePath'; open and save it again in LabelMe")
        return None
    w, h = data.get("imageWidth"), data.get("imageHeight")
    size = (w, h) if isinstance(w, int) and isinstance(h, int) else None
    entry = ImageEntry(name, path, size, base_dir=path.parent)
    for k, shape in enumerate(data["shapes"]):
        label = shape.get("label") if isinstance(shape, dict) else None
        where = f"shape #{k} ({label!r})"
        if not isinstance(label, str) or not label:
            problems.append(f"{path}: shape #{k} has no label; label or delete it in LabelMe")
            continue
        try:
            entry.shapes.append(_shape(shape, label, where))
        except (ValueError, TypeError) as err:
            problems.append(f"{path}: {where}: {err}; fix or delete it in LabelMe")
    return entry


def _shape(shape: dict[str, Any], label: str, where: str) -> Shape:
    kind = shape.get("shape_type") or "polygon"
    points = ring(shape.get("points", []))
    if kind == "polygon":
        return Shape(label, "polygon", where, (points,))
    if kind in _LINES:
        return Shape(label, "polyline", where, (points,))
    if kind in ("rectangle", "circle") and len(points) != 2:
        raise ValueError(f"a {kind} needs 2 points, got {len(points)}")
    if kind == "rectangle":
        return Shape(label, "polygon", where, (box_ring(*points[0], *points[1]),))
    if kind == "circle":
        return Shape(label, "circle", where, (points,))
    if kind == "mask":
        bitmap = _mask_bitmap(shape.get("mask"))
        left, top = (int(np.floor(v)) for v in points[0])
        box = (left, top, bitmap.shape[1], bitmap.shape[0])
        return Shape(label, "mask", where, mask_box=box, decode_mask=_constant(bitmap))
    raise ValueError(
        f"shape type {kind!r} is not supported (it labels no area); delete it or use a "
        "polygon, rectangle, circle, line or linestrip"
    )


def _mask_bitmap(data: Any) -> np.ndarray:
    if not isinstance(data, str):
        raise ValueError("mask shape has no 'mask' image")
    try:
        image = decode_image(base64.b64decode(data, validate=True))
    except (binascii.Error, ValueError):
        image = None
    if image is None:
        raise ValueError("mask shape's 'mask' is not a base64 PNG")
    return image[:, :, 0] > 0


def _constant(bitmap: np.ndarray) -> Callable[[], np.ndarray]:
    return lambda: bitmap
