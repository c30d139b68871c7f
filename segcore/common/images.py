"""Image files shared by every stage: listing, reading images and label images, writing.

Images are decoded with OpenCV (fast, 8/16-bit, gray/RGB/RGBA, PNG/JPEG/TIFF/BMP) and
returned in RGB order; label images with Pillow, so that palette PNGs give their
indices (the class ids) rather than colours.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
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

DEFAULT_MAX_IMAGE_PIXELS = 100_000_000
"""Largest image (width x height) read by default: 100 megapixels. A small compressed file
can hold a huge image (a 62 KB PNG of 4.6 GB), so the size is checked in the file's header
before anything is decoded."""


@dataclass(frozen=True)
class PixelLimit:
    """The most pixels an image may have, and the setting that raises it (named in errors)."""

    pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    key: str = "max_image_pixels"


DEFAULT_LIMIT = PixelLimit()


def quiet_opencv() -> None:
    """Stop OpenCV printing its own log lines (libpng's "IHDR chunk shall be first" and
    the like): segcore reports every unreadable file itself, naming it and the fix.

    Process-wide, so called by segcore's own entry points (the command line, worker
    processes, the pipeline flow), never at import.
    """
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


def list_images(directory: Path, suffixes: frozenset[str] = IMAGE_SUFFIXES) -> list[Path]:
    """Every image file below ``directory`` (sub-folders included), sorted, hidden files skipped.

    Every entry with an image suffix that is not a folder is listed, broken symbolic links
    and special files included, so that reading it reports it rather than the file going
    missing without a word.
    """
    return sorted(
        p
        for p in directory.rglob("*")
        if p.suffix.lower() in suffixes
        and not p.is_dir()
        and not any(part.startswith(".") for part in p.relative_to(directory).parts)
    )


def read_image(path: str | os.PathLike[str], limit: PixelLimit = DEFAULT_LIMIT) -> np.ndarray:
    """Read an image as ``(H, W, C)`` with C in {1, 3}, dtype uint8 or uint16 (or float32).

    Colour images come back in RGB order; an alpha channel is dropped.

    Raises:
        DatasetError: the file is missing, empty, not a decodable image, or larger than
            ``limit`` (checked in the header, before decoding).
    """
    path = Path(path)
    _check_file(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as err:
        raise DatasetError(
            f"{path}: cannot be read ({err.strerror or err}); check its permissions and the disk"
        ) from None
    image = decode_image(data, limit, source=str(path))
    if image is None:
        raise DatasetError(
            f"{path}: not a readable image (corrupt or unsupported format); "
            "re-export it as PNG, JPEG, TIFF or BMP"
        )
    return image


def decode_image(
    data: bytes | bytearray | np.ndarray, limit: PixelLimit = DEFAULT_LIMIT, source: str = "image"
) -> np.ndarray | None:
    """Encoded image bytes -> ``(H, W, C)`` RGB array as :func:`read_image` gives, or ``None``
    when the bytes are not a decodable image.

    Raises:
        DatasetError: the header gives more pixels than ``limit`` (nothing decoded).
    """
    buffer = data if isinstance(data, np.ndarray) else np.frombuffer(bytes(data), dtype=np.uint8)
    size = header_size(io.BytesIO(buffer.tobytes()))
    if size is not None:
        check_pixels(source, size, limit)
    image = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    if image is None:
        return None
    if image.ndim == 2:
        return image[:, :, None]
    code = cv2.COLOR_BGRA2RGB if image.shape[2] == 4 else cv2.COLOR_BGR2RGB
    return np.ascontiguousarray(cv2.cvtColor(image, code))


def header_size(file: str | os.PathLike[str] | io.BytesIO) -> tuple[int, int] | None:
    """``(width, height)`` from an image's header (nothing decoded), or ``None`` when Pillow
    does not recognise the header (OpenCV may still decode it, under its own 1-gigapixel cap)."""
    try:
        with _open(file) as img:
            return img.size
    except (OSError, ValueError, SyntaxError):
        return None


def _open(file: str | os.PathLike[str] | io.BytesIO) -> Image.Image:
    """Pillow's lazy open (header only) without its own decompression-bomb cap: segcore
    applies :func:`check_pixels` with the user's limit instead."""
    Image.MAX_IMAGE_PIXELS = None
    return Image.open(file)


def check_pixels(source: str, size: tuple[int, int], limit: PixelLimit) -> None:
    """Raise when ``size`` (width, height) has more pixels than ``limit`` allows."""
    width, height = size
    if width * height > limit.pixels:
        raise DatasetError(
            f"{source}: image is {width}x{height} ({width * height / 1e6:.1f} megapixels), "
            f"above the limit of {limit.pixels / 1e6:.1f} megapixels; raise {limit.key} "
            "to read it (decoding takes about width x height x channels bytes, and "
            "preprocessing several times that)"
        )


def read_label(path: str | os.PathLike[str], limit: PixelLimit = DEFAULT_LIMIT) -> np.ndarray:
    """Read a label image as ``(H, W)`` integer class ids (uint8 or uint16/int32).

    Accepts one-channel 8/16-bit images and palette PNGs (the palette indices are the
    class ids).

    Raises:
        DatasetError: missing, empty, unreadable or truncated file, a colour image, or
            larger than ``limit`` (checked in the header, before decoding).
    """
    path = Path(path)
    _check_file(path)
    try:
        with _open(path) as img:
            check_pixels(str(path), img.size, limit)
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
    if path.is_symlink() and not path.exists():
        raise DatasetError(
            f"{path}: broken symbolic link (to {os.readlink(path)}); restore its target or "
            "remove the link"
        )
    if not path.exists():
        raise DatasetError(f"{path}: file not found; check the path and the folder settings")
    if not path.is_file():
        raise DatasetError(
            f"{path}: not a regular file (a pipe, socket or device); replace it with the image "
            "file or remove it"
        )
    if path.stat().st_size == 0:
        raise DatasetError(f"{path}: file is empty (0 bytes); replace or remove it")


def write_image_atomic(path: str | os.PathLike[str], image: np.ndarray) -> None:
    """Write an ``(H, W)`` or ``(H, W, 3)`` RGB uint8/uint16 image (format from the suffix)."""
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), image):
            raise OSError(f"{path}: could not encode image")
