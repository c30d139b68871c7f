"""Per-image regions of interest (HALCON's domain for ``crop_domain``), given beside the image.

A file ``<image stem>.roi.json`` next to an image holds its region of interest as
``[row1, col1, row2, col2]`` (inclusive pixel rows and columns), or ``{"domain_roi": [...]}``.
The dataset stage reads it into the ``domain_roi`` column, so training crops each sample
to its own region; ``segcore infer`` and the served model read the same convention, so an
image is cropped the same way at inference. Without such a file the bundle's
``preprocess.param.domain_roi`` applies.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from segcore.common.errors import DatasetError

ROI_SUFFIX = ".roi.json"
"""Suffix of a region-of-interest file: ``part_001.roi.json`` for ``part_001.png``."""

Roi = tuple[int, int, int, int]


def roi_file(image: str | Path) -> Path:
    """The region-of-interest file of ``image`` (it may not exist)."""
    image = Path(image)
    return image.with_name(image.stem + ROI_SUFFIX)


def parse_roi(value: Any, where: str, size: tuple[int, int] | None = None) -> Roi | None:
    """A region of interest from JSON-like ``value`` (``None``/NaN: none given).

    Args:
        value: ``[row1, col1, row2, col2]``, ``{"domain_roi": [...]}``, its JSON text, or
            ``None``.
        where: the file or column named in errors.
        size: ``(width, height)`` of the image: the region must lie inside it.

    Raises:
        DatasetError: not four whole pixel coordinates of a rectangle inside the image.
    """
    if isinstance(value, str) and not value.strip():
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise DatasetError(
                f"{where}: not JSON ({err}); write [row1, col1, row2, col2]"
            ) from None
    if isinstance(value, dict):
        value = value.get("domain_roi")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    coords = list(value) if isinstance(value, list | tuple) else None
    if (
        coords is None
        or len(coords) != 4
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in coords)
        or min(coords) < 0
        or coords[0] > coords[2]
        or coords[1] > coords[3]
    ):
        raise DatasetError(
            f"{where}: {value!r} is not a region of interest [row1, col1, row2, col2] of whole "
            "pixels with 0 <= row1 <= row2 and 0 <= col1 <= col2; fix it"
        )
    r1, c1, r2, c2 = coords
    if size is not None and (r2 >= size[1] or c2 >= size[0]):
        raise DatasetError(
            f"{where}: region of interest {coords} reaches outside the {size[0]}x{size[1]} "
            "image (rows 0..height-1, columns 0..width-1); fix it"
        )
    return (r1, c1, r2, c2)


def read_roi(image: str | Path, size: tuple[int, int] | None = None) -> Roi | None:
    """The region of interest given beside ``image``, or ``None`` when it has no file.

    Raises:
        DatasetError: the file is unreadable or holds no valid region (see :func:`parse_roi`).
    """
    path = roi_file(image)
    if not path.is_file():
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path}: not readable ({err}); fix or remove it") from None
    return parse_roi(text, str(path), size)
