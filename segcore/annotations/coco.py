"""COCO JSON: polygons, RLE masks (compressed and uncompressed) and bare boxes.

Every annotation is one shape per polygon (COCO's polygons of one annotation are united);
an RLE segmentation is a full-image bitmap decoded with ``pycocotools``; an annotation
with an empty segmentation but a ``bbox`` is drawn as a filled box. Label names are the
``categories``' names (their ids are not used: the class map decides the class ids). COCO
has no z-order: later annotations are drawn on top.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from segcore.annotations.detect import load_json
from segcore.annotations.model import ImageEntry, ParsedExport, Shape, box_ring, ring

_FIX = "fix it in the labelling tool and export again, or delete the annotation"


def read_coco(path: Path) -> ParsedExport:
    """Parse the COCO JSON ``path`` (problems are collected, not raised)."""
    data = load_json(path)
    out = ParsedExport("coco")
    if not isinstance(data, dict) or not all(
        isinstance(data.get(k), list) for k in ("images", "annotations", "categories")
    ):
        out.problems.append(
            f"{path}: not a COCO file (needs the lists 'images', 'annotations' and "
            "'categories'); export COCO 1.0 JSON from the labelling tool"
        )
        return out
    names = _categories(path, data["categories"], out.problems)
    by_id = _images(path, data["images"], out)
    for index, ann in enumerate(data["annotations"]):
        where = f"annotation id {ann.get('id', '?')} (#{index})" if isinstance(ann, dict) else ""
        if not isinstance(ann, dict):
            out.problems.append(f"{path}: annotation #{index} is not an object; {_FIX}")
            continue
        entry = by_id.get(_hashable(ann.get("image_id")))
        label = names.get(_hashable(ann.get("category_id")))
        if entry is None:
            out.problems.append(
                f"{path}: {where} refers to image_id {ann.get('image_id')!r}, which is not in "
                "'images'; add the image entry or delete the annotation"
            )
        if label is None:
            out.problems.append(
                f"{path}: {where} has category_id {ann.get('category_id')!r}, which is not "
                "in 'categories'; add the category or delete the annotation"
            )
        if entry is None or label is None:
            continue
        try:
            entry.shapes.extend(_shapes(ann, label, where))
        except (ValueError, TypeError, KeyError) as err:
            out.problems.append(f"{path}: {where} (image {entry.name!r}): {err}; {_FIX}")
    return out


def _hashable(value: Any) -> Any:
    return value if isinstance(value, (int, str)) else repr(value)


def _categories(path: Path, categories: list[Any], problems: list[str]) -> dict[Any, str]:
    names: dict[Any, str] = {}
    for cat in categories:
        if not isinstance(cat, dict) or not isinstance(cat.get("name"), str):
            problems.append(f"{path}: category {cat!r} has no 'name'; give every category one")
        elif _hashable(cat.get("id")) in names:
            problems.append(
                f"{path}: category id {cat.get('id')!r} appears twice; give each category its "
                "own id"
            )
        else:
            names[_hashable(cat.get("id"))] = cat["name"]
    return names


def _images(path: Path, images: list[Any], out: ParsedExport) -> dict[Any, ImageEntry]:
    by_id: dict[Any, ImageEntry] = {}
    for index, image in enumerate(images):
        if not isinstance(image, dict) or not isinstance(image.get("file_name"), str):
            out.problems.append(
                f"{path}: image #{index} has no 'file_name'; export again with file names"
            )
            continue
        key = _hashable(image.get("id"))
        if key in by_id:
            out.problems.append(
                f"{path}: image id {image.get('id')!r} appears twice ({by_id[key].name!r}, "
                f"{image['file_name']!r}); give each image its own id"
            )
            continue
        w, h = image.get("width"), image.get("height")
        size = (w, h) if isinstance(w, int) and isinstance(h, int) else None
        by_id[key] = ImageEntry(image["file_name"], path, size)
        out.entries.append(by_id[key])
    return by_id


def _shapes(ann: dict[str, Any], label: str, where: str) -> list[Shape]:
    seg = ann.get("segmentation")
    if isinstance(seg, dict):
        box, decode = rle_decoder(seg)
        return [Shape(label, "mask", where, mask_box=box, decode_mask=decode)]
    if isinstance(seg, list) and seg:
        if not all(isinstance(p, list) for p in seg):
            raise ValueError("segmentation must be a list of polygons [x1, y1, x2, y2, ...]")
        return [
            Shape(label, "polygon", where + (f", polygon {k}" if len(seg) > 1 else ""), (ring(p),))
            for k, p in enumerate(seg)
        ]
    bbox = ann.get("bbox")
    if not isinstance(bbox, list) or len(bbox) != 4:
        raise ValueError("has neither a segmentation nor a bbox [x, y, width, height]")
    x, y, w, h = (float(v) for v in bbox)
    return [Shape(label, "polygon", where + " (bbox)", (box_ring(x, y, x + w, y + h),))]


def rle_decoder(seg: dict[str, Any]) -> tuple[tuple[int, int, int, int], Callable[[], np.ndarray]]:
    """``(mask_box, decode)`` of a COCO RLE; the counts are checked here, decoded later.

    Raises:
        ValueError: malformed size or counts (checked before ``pycocotools`` sees them,
            because its decoder trusts the counts to fill exactly ``height * width`` pixels).
    """
    size = seg.get("size")
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) for v in size)):
        raise ValueError(f"RLE 'size' must be [height, width], got {size!r}")
    h, w = size
    counts = seg.get("counts")
    if isinstance(counts, str):
        values = compressed_counts(counts)
        rle = {"size": [h, w], "counts": counts.encode("ascii")}
    elif isinstance(counts, list) and all(isinstance(c, int) for c in counts):
        values = counts
        rle = mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    else:
        raise ValueError("RLE 'counts' must be a string (compressed) or a list of integers")
    if any(c < 0 for c in values) or sum(values) != h * w:
        raise ValueError(f"RLE counts cover {sum(values)} pixels but its size {w}x{h} has {h * w}")
    return (0, 0, w, h), lambda: _decode(rle)


def _decode(rle: dict[str, Any]) -> np.ndarray:
    with warnings.catch_warnings():  # pycocotools' own use of numpy 2's __array__ protocol
        warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
        return mask_utils.decode(rle).astype(bool)


def compressed_counts(text: str) -> list[int]:
    """The run lengths of a compressed COCO RLE string (``pycocotools``' LEB128-like code:
    5 bits per character from ``'0'``, a continuation bit, sign extension, and counts after
    the second stored as differences to the count two before)."""
    counts: list[int] = []
    pos = 0
    while pos < len(text):
        value, shift, more = 0, 0, True
        while more:
            if pos >= len(text):
                raise ValueError("RLE 'counts' string ends in the middle of a number")
            c = ord(text[pos]) - 48
            if not 0 <= c < 64:
                raise ValueError(f"RLE 'counts' has the invalid character {text[pos]!r}")
            value |= (c & 0x1F) << shift
            more, pos, shift = bool(c & 0x20), pos + 1, shift + 5
            if not more and c & 0x10:
                value |= -1 << shift
        counts.append(value + counts[-2] if len(counts) > 2 else value)
    return counts
