"""Rasterisation: shapes in pixel coordinates -> the pixels they label.

One rule for every format, the **pixel-centre rule**: a pixel belongs to a shape when its
centre ``(c + 0.5, r + 0.5)`` lies inside the shape (coordinates as in
:mod:`segcore.annotations.model`: ``(0, 0)`` is the image's top-left corner). The area of
a labelled region therefore matches the area drawn, a box from ``(2, 3)`` to ``(5, 7)``
labels columns 2-4 and rows 3-6, and a shape's label does not depend on the image size.

- Polygons (and boxes, rectangles) are filled by the even-odd rule over all their rings.
  A centre exactly on an edge is decided by the **top-left rule**: inside on a left or top
  edge, outside on a right or bottom edge, so shapes that share an edge never both claim a
  pixel. Away from such ties ``pycocotools`` rasterises COCO polygons the same way.
- A circle labels the centres inside it; of the centres exactly on it, those on its left
  half and its top point count (the same top-left rule).
- A line of width ``w`` labels the pixels whose centres lie in the ``w``-wide band around
  each segment or in the circle of diameter ``w`` round each vertex (round joins and caps:
  the ends reach ``w / 2`` beyond the end points), boundaries by the top-left rule. A
  horizontal or vertical line of width ``w`` is exactly ``w`` pixels thick wherever it lies.
- Bitmaps (RLE masks, brush strokes) label their set pixels as they are.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from segcore.annotations.model import Shape

OUTSIDE_TOLERANCE_PX = 1.0
"""How far (pixels) a point may lie outside the image before it is reported: tools let a
vertex be dropped a little past the border; more than that means the wrong image or size."""

_MAX_CELLS = 4_000_000
"""Rows x edges evaluated at once when filling a polygon (bounds the memory used)."""


@dataclass(frozen=True)
class Patch:
    """The pixels of one shape inside its bounding box, clipped to the image.

    Attributes:
        mask: ``(h, w)`` bool, True where the shape labels the pixel.
        top: image row of ``mask[0]``.
        left: image column of ``mask[:, 0]``.
    """

    mask: np.ndarray
    top: int
    left: int


def rasterise(shape: Shape, height: int, width: int, line_width: float) -> Patch:
    """The pixels ``shape`` labels in a ``height`` x ``width`` image (pixel-centre rule).

    Args:
        shape: a validated shape (see :func:`shape_problems`).
        height, width: image size in pixels.
        line_width: width in pixels of ``polyline`` shapes.
    """
    if shape.kind == "mask":
        return _mask_patch(shape, height, width)
    points = np.concatenate(shape.rings)
    if shape.kind == "circle":
        (cx, cy), edge = shape.rings[0][0], shape.rings[0][1]
        radius = float(np.hypot(*(edge - (cx, cy))))
        patch = _blank(points[:1] - radius, points[:1] + radius, height, width)
        _disc_into(patch, cx, cy, radius)
        return patch
    if shape.kind == "polyline":
        half = line_width / 2
        patch = _blank(points - half, points + half, height, width)
        _stroke_into(patch, shape.rings[0], half)
        return patch
    return fill_patch(shape.rings, height, width)


def fill_patch(rings: Sequence[np.ndarray], height: int, width: int) -> Patch:
    """The pixels of the polygon with these ``(N, 2)`` x/y rings (even-odd rule) in a
    ``height`` x ``width`` image."""
    points = np.concatenate(rings)
    patch = _blank(points, points, height, width)
    _fill_into(patch, rings)
    return patch


def _blank(low: np.ndarray, high: np.ndarray, height: int, width: int) -> Patch:
    """An empty patch covering the points ``low`` .. ``high`` (``(N, 2)`` x/y), clipped."""
    x0, y0 = np.floor(low.min(axis=0)).astype(np.int64)
    x1, y1 = np.ceil(high.max(axis=0)).astype(np.int64)
    top, left = int(np.clip(y0, 0, height)), int(np.clip(x0, 0, width))
    bottom, right = int(np.clip(y1 + 1, 0, height)), int(np.clip(x1 + 1, 0, width))
    return Patch(np.zeros((bottom - top, right - left), dtype=bool), top, left)


def _fill_into(patch: Patch, rings: Sequence[np.ndarray]) -> None:
    """Set the pixels of the even-odd polygon ``rings`` in ``patch`` (scanline fill).

    Each pixel row is sampled at its centre line ``y = r + 0.5``; an edge counts on the rows
    with ``y_low <= y < y_high`` and a span ``[x_in, x_out)`` takes the columns whose centre
    ``c + 0.5`` lies in it: that half-open sampling is the top-left rule.
    """
    edges = np.concatenate([np.concatenate([r, np.roll(r, -1, axis=0)], axis=1) for r in rings])
    edges = edges[edges[:, 1] != edges[:, 3]]  # horizontal edges cross no centre line
    h, w = patch.mask.shape
    if not len(edges) or not h or not w:
        return
    # Every edge from its upper end, so that an edge drawn there and back (the cut joining
    # a hole to its outline) gives bit-identical crossings, which cancel exactly.
    down = edges[:, 1] > edges[:, 3]
    edges[down] = edges[down][:, [2, 3, 0, 1]]
    x0, y_low, x1, y_high = edges.T
    slope = (x1 - x0) / (y_high - y_low)
    chunk = max(1, _MAX_CELLS // len(edges))
    for start in range(0, h, chunk):
        yc = np.arange(patch.top + start, patch.top + min(h, start + chunk))[:, None] + 0.5
        crosses = (y_low <= yc) & (yc < y_high)
        xs = np.sort(np.where(crosses, x0 + (yc - y_low) * slope, np.inf), axis=1)
        xs = xs[:, : int(crosses.sum(axis=1).max())]
        x_in, x_out = xs[:, 0::2], xs[:, 1::2]
        rows, k = np.nonzero(np.isfinite(x_in))
        c_in = np.clip(np.ceil(x_in[rows, k] - 0.5) - patch.left, 0, w).astype(np.int64)
        c_out = np.clip(np.ceil(x_out[rows, k] - 0.5) - patch.left, 0, w).astype(np.int64)
        steps = np.zeros((len(yc), w + 1), dtype=np.int32)
        np.add.at(steps, (rows, c_in), 1)
        np.add.at(steps, (rows, c_out), -1)
        patch.mask[start : start + len(yc)] |= np.cumsum(steps, axis=1)[:, :w] > 0


def _disc_into(patch: Patch, cx: float, cy: float, radius: float) -> None:
    """Set the pixels whose centres lie inside the circle; a centre on the circle counts on
    its left half and at its top (the top-left rule: inside after a tiny step right, then
    down), as on a polygon's edges."""
    h, w = patch.mask.shape
    dy = np.arange(patch.top, patch.top + h)[:, None] + 0.5 - cy
    dx = np.arange(patch.left, patch.left + w)[None, :] + 0.5 - cx
    d2, r2 = dx**2 + dy**2, radius**2
    patch.mask[...] |= (d2 < r2) | ((d2 == r2) & ((dx < 0) | ((dx == 0) & (dy < 0))))


def _stroke_into(patch: Patch, points: np.ndarray, half: float) -> None:
    """Set the pixels of the polyline ``points`` drawn ``2 * half`` wide with round joins."""
    for p, q in itertools.pairwise(points):
        length = math.hypot(*(q - p))
        if length == 0:
            continue
        normal = np.array([p[1] - q[1], q[0] - p[0]]) * (half / length)
        _fill_into(patch, [np.stack([p + normal, q + normal, q - normal, p - normal])])
    for x, y in points:
        _disc_into(patch, x, y, half)


def _mask_patch(shape: Shape, height: int, width: int) -> Patch:
    assert shape.mask_box is not None and shape.decode_mask is not None
    left, top, w, h = shape.mask_box
    bitmap = shape.decode_mask()
    top_c, left_c = max(top, 0), max(left, 0)
    bottom, right = min(top + h, height), min(left + w, width)
    if bottom <= top_c or right <= left_c:
        return Patch(np.zeros((0, 0), dtype=bool), 0, 0)
    crop = bitmap[top_c - top : bottom - top, left_c - left : right - left]
    return Patch(crop.astype(bool, copy=False), top_c, left_c)


def shape_problems(shape: Shape, width: int, height: int) -> list[str]:
    """What is wrong with ``shape`` in a ``width`` x ``height`` image, each with the fix.

    Reports degenerate shapes (polygons with fewer than 3 distinct points or no area, lines
    with fewer than 2 points, circles without radius) and shapes reaching more than
    :data:`OUTSIDE_TOLERANCE_PX` outside the image (bitmaps must lie wholly inside).
    """
    if shape.kind == "mask":
        return _mask_box_problems(shape, width, height)
    out = [p for r in shape.rings for p in _degenerate(shape, r)]
    points = np.concatenate(shape.rings)
    if shape.kind == "circle":
        radius = float(np.hypot(*(points[1] - points[0])))
        points = np.stack([points[0] - radius, points[0] + radius])
    tol = OUTSIDE_TOLERANCE_PX
    (x_min, y_min), (x_max, y_max) = points.min(axis=0), points.max(axis=0)
    if x_min < -tol or y_min < -tol or x_max > width + tol or y_max > height + tol:
        out.append(
            f"reaches outside the {width}x{height} image (x {x_min:g} to {x_max:g}, y "
            f"{y_min:g} to {y_max:g}; allowed -{tol:g} to width/height + {tol:g}); move it "
            "inside, or check that the export belongs to these image files"
        )
    return out


def _degenerate(shape: Shape, points: np.ndarray) -> list[str]:
    distinct = len(np.unique(points, axis=0))
    if shape.kind == "polygon":
        if distinct < 3:
            return [
                f"polygon has {distinct} distinct points; it needs 3 or more: redraw or delete it"
            ]
        if _collinear(points):
            return ["polygon has zero area (its points lie on one line); redraw or delete it"]
    elif shape.kind == "polyline" and distinct < 2:
        return [f"line has {distinct} distinct points; it needs 2 or more: redraw or delete it"]
    elif shape.kind == "circle" and distinct < 2:
        return ["circle has zero radius; redraw or delete it"]
    return []


def _collinear(points: np.ndarray) -> bool:
    """True when every point lies on one line (exact: a polygon of such points has no area)."""
    d = points - points[0]
    moved = d[np.any(d != 0, axis=1)]
    if not len(moved):
        return True
    return bool(np.all(moved[0, 0] * d[:, 1] - moved[0, 1] * d[:, 0] == 0))


def _mask_box_problems(shape: Shape, width: int, height: int) -> list[str]:
    assert shape.mask_box is not None
    left, top, w, h = shape.mask_box
    if w <= 0 or h <= 0:
        return [f"mask has an empty box ({w}x{h} pixels); redraw or delete it"]
    if left < 0 or top < 0 or left + w > width or top + h > height:
        return [
            f"mask box (left {left}, top {top}, {w}x{h}) reaches outside the {width}x{height} "
            "image; check that the export belongs to these image files"
        ]
    return []
