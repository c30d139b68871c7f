"""Image files shared by every stage: listing, reading images and label images, writing.

Images are decoded with OpenCV (fast, 8/16-bit, gray/RGB/RGBA, PNG/JPEG/TIFF/BMP) and
returned in RGB order; label images with Pillow, so that palette PNGs give their
indices (the class ids) rather than colours.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from segcore.common.errors import DatasetError
from segcore.common.io import atomic_path

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"})
"""File name suffixes read as images (case-insensitive)."""

LABEL_SUFFIXES = frozenset({".png", ".tif", ".tiff", ".bmp"})
"""Label images must be lossless: JPEG would corrupt class ids."""


def quiet_opencv() -> None:
    """Stop OpenCV printing its own log lines (libpng's "IHDR chunk shall be first" and
    the like): segcore reports every unreadable file itself, naming it and the fix.

    Process-wide, so called by segcore's own entry points (the command line, worker
    processes, the pipeline flow), never at import.
    """
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


def list_images(directory: Path, suffixes: frozenset[str] = IMAGE_SUFFIXES) -> list[Path]:
    """Every image file below ``directory`` (sub-folders included), sorted, hidden files skipped."""
    return sorted(
        p
        for p in directory.rglob("*")
        if p.is_file()
        and p.suffix.lower() in suffixes
        and not any(part.startswith(".") for part in p.relative_to(directory).parts)
    )


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image as ``(H, W, C)`` with C in {1, 3}, dtype uint8 or uint16 (or float32).

    Colour images come back in RGB order; an alpha channel is dropped.

    Raises:
        DatasetError: the file is missing, empty, or not a decodable image.
    """
    path = Path(path)
    _check_file(path)
    image = decode_image(np.fromfile(path, dtype=np.uint8))
    if image is None:
        raise DatasetError(
            f"{path}: not a readable image (corrupt or unsupported format); "
            "re-export it as PNG, JPEG, TIFF or BMP"
        )
    return image


def decode_image(data: bytes | bytearray | np.ndarray) -> np.ndarray | None:
    """Encoded image bytes -> ``(H, W, C)`` RGB array as :func:`read_image` gives, or ``None``
    when the bytes are not a decodable image."""
    buffer = data if isinstance(data, np.ndarray) else np.frombuffer(bytes(data), dtype=np.uint8)
    image = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    if image is None:
        return None
    if image.ndim == 2:
        return image[:, :, None]
    code = cv2.COLOR_BGRA2RGB if image.shape[2] == 4 else cv2.COLOR_BGR2RGB
    return np.ascontiguousarray(cv2.cvtColor(image, code))


def read_label(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a label image as ``(H, W)`` integer class ids (uint8 or uint16/int32).

    Accepts one-channel 8/16-bit images and palette PNGs (the palette indices are the
    class ids).

    Raises:
        DatasetError: missing, empty, unreadable or truncated file, or a colour image.
    """
    path = Path(path)
    _check_file(path)
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode in ("RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV", "LA", "PA"):
                raise DatasetError(
                    f"{path}: label image has colour mode {mode}; a label image must have one "
                    "channel whose pixel values are class ids (8/16-bit grey or a palette PNG)"
                )
            array = np.asarray(img)
    except DatasetError:
        raise
    except (OSError, ValueError, SyntaxError) as err:
        raise DatasetError(
            f"{path}: not a readable label image ({err}); re-export it as a lossless "
            "one-channel PNG or TIFF"
        ) from None
    if array.ndim != 2:
        raise DatasetError(f"{path}: label image must be 2-D, got shape {array.shape}")
    if array.dtype == bool:
        array = array.astype(np.uint8)
    if not np.issubdtype(array.dtype, np.integer):
        raise DatasetError(
            f"{path}: label image has non-integer pixel type {array.dtype}; "
            "save class ids as 8- or 16-bit integers"
        )
    return array


def image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """``(width, height)`` of an image file, read from its header only."""
    with Image.open(path) as img:
        return img.size


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise DatasetError(f"{path}: file not found; check the path and the folder settings")
    if path.stat().st_size == 0:
        raise DatasetError(f"{path}: file is empty (0 bytes); replace or remove it")


def write_image_atomic(path: str | os.PathLike[str], image: np.ndarray) -> None:
    """Write an ``(H, W)`` or ``(H, W, 3)`` RGB uint8/uint16 image (format from the suffix)."""
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), image):
            raise OSError(f"{path}: could not encode image")
