"""What every format reader produces: the images of an export and their shapes.

Coordinates are continuous pixel coordinates as labelling tools use them: ``x`` to the
right, ``y`` down, ``(0, 0)`` is the top-left corner of the top-left pixel and
``(width, height)`` the bottom-right corner of the image, so pixel ``(row r, column c)``
covers ``[c, c + 1) x [r, r + 1)`` and its centre is ``(c + 0.5, r + 0.5)``. Readers only
parse; checks against the image files and rasterisation come later, so that every problem
of an export can be reported at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

ShapeKind = Literal["polygon", "polyline", "circle", "mask"]
"""``polygon``: filled rings (rectangles and boxes become 4-point polygons); ``polyline``: a
line of the import's ``line_width``; ``circle``: centre and radius; ``mask``: a bitmap."""


@dataclass(frozen=True)
class Shape:
    """One labelled shape of one image.

    Attributes:
        label: the label name as written in the export.
        kind: how :mod:`segcore.annotations.shapes` rasterises it.
        where: where the shape is in the export, for messages (e.g. ``annotation id 7``).
        rings: ``polygon``: one or more ``(N, 2)`` float arrays of ``(x, y)`` vertices in
            pixels, filled together by the even-odd rule; ``polyline``: one ``(N, 2)`` array;
            ``circle``: one ``(2, 2)`` array, centre then a point on the circle.
        mask_box: ``mask``: ``(left, top, width, height)`` of the bitmap in pixels.
        decode_mask: ``mask``: returns the ``(height, width)`` bool bitmap; decoded only when
            drawn, so a large export does not hold every bitmap in memory at once.
        z: drawing order; higher is drawn later (on top). Equal ``z`` keeps export order.
    """

    label: str
    kind: ShapeKind
    where: str
    rings: tuple[np.ndarray, ...] = ()
    mask_box: tuple[int, int, int, int] | None = None
    decode_mask: Callable[[], np.ndarray] | None = None
    z: int = 0


@dataclass
class ImageEntry:
    """One image of an export with its shapes.

    Attributes:
        name: the image reference as written in the export (file name, path or URL).
        source: the export file that holds the entry, for messages.
        size: ``(width, height)`` in pixels as the export states it, or ``None`` when the
            export states none (then the image file's size is used).
        shapes: the shapes in export order.
        base_dir: the folder a relative ``name`` is relative to (LabelMe: the JSON's folder),
            or ``None`` when names are only matched against the image folder.
    """

    name: str
    source: Path
    size: tuple[int, int] | None = None
    shapes: list[Shape] = field(default_factory=list)
    base_dir: Path | None = None


@dataclass
class ParsedExport:
    """Everything a reader found: the images, and the problems met while parsing.

    Attributes:
        format: the format name (``coco``, ``cvat``, ``labelme``, ``labelstudio``).
        entries: one entry per image in the export, in export order.
        problems: one message per malformed item, naming the file, the item and the fix.
    """

    format: str
    entries: list[ImageEntry] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def ring(values: object) -> np.ndarray:
    """``(N, 2)`` float64 array from ``[[x, y], ...]`` or a flat ``[x1, y1, x2, y2, ...]``.

    Raises:
        ValueError: not numbers, an odd count, or not finite (the caller names the shape).
    """
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 1:
        if array.size % 2:
            raise ValueError(f"has an odd number of coordinates ({array.size})")
        array = array.reshape(-1, 2)
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(f"points must be (x, y) pairs, got an array of shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError("has coordinates that are not finite numbers")
    return array


def box_ring(x0: float, y0: float, x1: float, y1: float, rotation_deg: float = 0.0) -> np.ndarray:
    """The 4 corners of the box ``(x0, y0)``-``(x1, y1)`` (any corner order), turned by
    ``rotation_deg`` clockwise on screen (``y`` points down) around the box centre."""
    xa, xb, ya, yb = min(x0, x1), max(x0, x1), min(y0, y1), max(y0, y1)
    corners = np.array([[xa, ya], [xb, ya], [xb, yb], [xa, yb]], dtype=np.float64)
    if rotation_deg:
        centre = np.array([(xa + xb) / 2, (ya + yb) / 2])
        corners = rotate(corners, centre, rotation_deg)
    return corners


def rotate(points: np.ndarray, centre: np.ndarray, degrees: float) -> np.ndarray:
    """``points`` turned by ``degrees`` clockwise on screen around ``centre``."""
    angle = np.deg2rad(degrees)
    cos, sin = np.cos(angle), np.sin(angle)
    d = points - centre
    return centre + np.stack([d[:, 0] * cos - d[:, 1] * sin, d[:, 0] * sin + d[:, 1] * cos], 1)
