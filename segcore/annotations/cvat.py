"""CVAT for images 1.1 XML: polygons, polylines, boxes and masks.

``<polygon>``/``<polyline>`` carry ``points="x1,y1;x2,y2;..."``; ``<box>`` carries
``xtl ytl xbr ybr`` (and ``rotation``, degrees clockwise around its centre) and is drawn
filled; ``<mask>`` carries CVAT's own RLE: ``rle="n0, n1, ..."`` run lengths over its box
``left top width height``, row by row, starting with a run of unset pixels. Shapes are
drawn in ``z_order``, ties in document order (later on top), as CVAT shows them. Image
tags (``<tag>``) are ignored; other shapes (points, ellipses, cuboids, skeletons) are
reported, since they label no area.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import numpy as np

from segcore.annotations.detect import load_xml
from segcore.annotations.model import ImageEntry, ParsedExport, Shape, box_ring, ring

_SHAPES = frozenset({"polygon", "polyline", "box", "mask"})
_IGNORED = frozenset({"tag", "attribute"})


def read_cvat(path: Path) -> ParsedExport:
    """Parse the CVAT for images 1.1 XML ``path`` (problems are collected, not raised)."""
    root = load_xml(path)
    out = ParsedExport("cvat")
    if root.tag != "annotations":
        out.problems.append(
            f"{path}: root element <{root.tag}> is not CVAT's <annotations>; export "
            "'CVAT for images 1.1' from CVAT"
        )
        return out
    if root.find("track") is not None:
        out.problems.append(
            f"{path}: holds <track> elements (CVAT for video); export 'CVAT for images 1.1'"
        )
    for index, image in enumerate(root.findall("image")):
        name = image.get("name")
        if not name:
            out.problems.append(f"{path}: <image> #{index} has no name; export again from CVAT")
            continue
        entry = ImageEntry(name, path, _size(image))
        for order, element in enumerate(image):
            where = f"<{element.tag}> #{order} of image {name!r}"
            if element.tag in _IGNORED:
                continue
            if element.tag not in _SHAPES:
                out.problems.append(
                    f"{path}: {where}: <{element.tag}> labels no area and is not supported; "
                    "delete it or draw a polygon, polyline, box or mask instead"
                )
                continue
            try:
                entry.shapes.append(_shape(element, where))
            except (ValueError, TypeError) as err:
                out.problems.append(f"{path}: {where}: {err}; fix or delete it in CVAT")
        out.entries.append(entry)
    return out


def _size(image: ET.Element) -> tuple[int, int] | None:
    try:
        return int(image.get("width", "")), int(image.get("height", ""))
    except ValueError:
        return None


def _shape(element: ET.Element, where: str) -> Shape:
    label = element.get("label")
    if not label:
        raise ValueError("has no label")
    z = int(element.get("z_order", "0"))
    tag = element.tag
    if tag in ("polygon", "polyline"):
        points = ring([p.split(",") for p in element.get("points", "").split(";") if p])
        kind = "polygon" if tag == "polygon" else "polyline"
        return Shape(label, kind, where, (points,), z=z)
    if tag == "box":
        x0, y0, x1, y1 = (float(element.get(k, "nan")) for k in ("xtl", "ytl", "xbr", "ybr"))
        box = box_ring(x0, y0, x1, y1, float(element.get("rotation", "0")))
        return Shape(label, "polygon", where, (ring(box),), z=z)
    left, top, width, height = (int(element.get(k, "")) for k in ("left", "top", "width", "height"))
    decode = mask_decoder(element.get("rle", ""), width, height)
    return Shape(label, "mask", where, mask_box=(left, top, width, height), decode_mask=decode, z=z)


def mask_decoder(rle: str, width: int, height: int) -> Callable[[], np.ndarray]:
    """The decoder of CVAT's mask RLE (checked now, decoded when drawn).

    Raises:
        ValueError: the runs are not integers >= 0 or do not cover ``width * height``.
    """
    counts = np.array([int(v) for v in rle.replace(" ", "").split(",") if v], dtype=np.int64)
    if (counts < 0).any() or counts.sum() != width * height:
        raise ValueError(
            f"mask RLE covers {int(counts.sum())} pixels but its box {width}x{height} has "
            f"{width * height}"
        )

    def decode() -> np.ndarray:
        values = (np.arange(len(counts)) % 2).astype(bool)
        return np.repeat(values, counts).reshape(height, width)

    return decode
