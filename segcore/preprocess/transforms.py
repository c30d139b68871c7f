"""Per-image preprocessing (HALCON: preprocess_dl_samples), shared by training and inference.

Pure functions on arrays: no files, no dataset. The preprocess stage and inference both
call :func:`preprocess_image` (and the stage :func:`preprocess_label`), so a model sees
exactly the same input at training and at inference time.

Order of operations, as in HALCON: crop to the region of interest (``crop_domain``),
resize in the image's own pixel type, convert to float32, convert the channels
(grey <-> RGB), normalize. Label images are cropped the same way, checked, resized with
nearest neighbour only, and their background classes merged.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from segcore.common.constants import (
    CROP_DOMAIN,
    MODE_TILED,
    NORM_ALL_CHANNELS,
    NORM_CONSTANT_VALUES,
    NORM_FIRST_CHANNEL,
    NORM_NONE,
)
from segcore.common.errors import DatasetError, ParamsError
from segcore.data.labels import check_label_values
from segcore.params import MAX_CLASS_ID, PreprocessParams

Roi = Sequence[int]
"""A rectangle ``[row1, col1, row2, col2]``, corners inclusive, in pixels."""

_RESIZE_DTYPES = (np.uint8, np.uint16, np.int16, np.float32, np.float64)
"""Pixel types OpenCV resizes with area / bilinear filtering; others go through float32."""


# --------------------------------------------------------------------------- region of interest


def resolve_roi(param: PreprocessParams, roi: Roi | None = None) -> tuple[int, ...] | None:
    """The rectangle to crop to: ``roi`` (per sample) first, else ``param.domain_roi``.

    Returns ``None`` under ``full_domain`` (nothing is cropped).

    Raises:
        ParamsError: ``crop_domain`` without any region of interest.
    """
    if param.domain_handling != CROP_DOMAIN:
        return None
    chosen = roi if roi is not None else param.domain_roi
    if chosen is None:
        raise ParamsError(
            "preprocess.param.domain_handling is crop_domain but no region of interest is "
            "given; set preprocess.param.domain_roi: [row1, col1, row2, col2], or give each "
            "image a <stem>.roi.json beside it (see segcore.data.roi)"
        )
    return tuple(int(v) for v in chosen)


def crop_to_roi(array: np.ndarray, roi: Roi | None) -> np.ndarray:
    """``array[row1:row2+1, col1:col2+1]`` (a view); ``roi=None`` returns ``array``.

    Raises:
        DatasetError: the rectangle is malformed or reaches outside the image.
    """
    if roi is None:
        return array
    height, width = array.shape[:2]
    if len(roi) != 4:
        raise DatasetError(
            f"region of interest {list(roi)} needs 4 values [row1, col1, row2, col2]"
        )
    row1, col1, row2, col2 = (int(v) for v in roi)
    if not (0 <= row1 <= row2 < height and 0 <= col1 <= col2 < width):
        raise DatasetError(
            f"region of interest [{row1}, {col1}, {row2}, {col2}] lies outside the image of "
            f"{width} x {height} pixels (rows 0..{height - 1}, columns 0..{width - 1}); "
            "fix domain_roi"
        )
    return array[row1 : row2 + 1, col1 : col2 + 1]


# --------------------------------------------------------------------------- sizes


def stored_size(param: PreprocessParams, width: int, height: int) -> tuple[int, int]:
    """``(width, height)`` of the preprocessed sample of a ``width x height`` image.

    Resize mode: the network input ``image_width x image_height``. Tiled mode: the image's
    own size (after any region-of-interest crop) times ``scale``, rounded, at least 1.
    """
    if param.mode != MODE_TILED:
        return param.image_width, param.image_height
    return max(1, round(width * param.scale)), max(1, round(height * param.scale))


# --------------------------------------------------------------------------- images


def resize_image(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize ``(H, W, C)`` to ``(height, width, C)`` without keeping the aspect ratio.

    Area averaging when shrinking (no aliasing), bilinear when enlarging; the pixel type
    is kept (float32 for types OpenCV cannot filter).
    """
    if image.dtype.type not in _RESIZE_DTYPES:
        image = image.astype(np.float32)
    h, w, c = image.shape
    if (h, w) == (height, width):
        return image
    shrink = width <= w and height <= h
    interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    out = cv2.resize(image, (width, height), interpolation=interpolation)
    return out.reshape(height, width, c)


def convert_channels(image: np.ndarray, num_channels: int) -> np.ndarray:
    """``(H, W, C)`` float32 with C in {1, 3} -> ``(H, W, num_channels)``.

    Grey -> RGB repeats the channel; RGB -> grey is the luma 0.299 R + 0.587 G + 0.114 B
    (HALCON's rgb1_to_gray).
    """
    c = image.shape[2]
    if c == num_channels:
        return image
    if c == 1 and num_channels == 3:
        return np.repeat(image, 3, axis=2)
    assert c == 3 and num_channels == 1, f"cannot convert {c} channels to {num_channels}"
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[:, :, None]


def normalize(image: np.ndarray, param: PreprocessParams, source_dtype: np.dtype) -> np.ndarray:
    """Map grey values of ``(C, H, W)`` float32 to the network's range, in place; returns it.

    - ``none``: 8-bit sources map linearly from [0, 255] to [range_min, range_max]; other
      pixel types are left as they are.
    - ``first_channel``: the first channel's min/max (HALCON's min_max_gray, which reads
      the first channel) stretches every channel with the same linear map.
    - ``all_channels``: each channel's own min/max stretches it to the range.
    - ``constant_values``: ``(x - mean_c) / deviation_c`` per channel, in the source's grey
      value scale (0-255 for 8-bit images).

    A constant channel (nothing to stretch) is shifted so that it lands in the middle of
    the range.
    """
    lo, hi = param.image_range_min, param.image_range_max
    kind = param.normalization_type
    if kind == NORM_NONE:
        if source_dtype == np.uint8:
            image *= (hi - lo) / 255.0
            image += lo
    elif kind == NORM_FIRST_CHANNEL:
        _stretch(image, *cv2.minMaxLoc(image[0])[:2], lo, hi)
    elif kind == NORM_ALL_CHANNELS:
        for plane in image:
            _stretch(plane, *cv2.minMaxLoc(plane)[:2], lo, hi)
    elif kind == NORM_CONSTANT_VALUES:
        image -= _per_channel(param.mean_values_normalization, image.shape[0])
        image /= _per_channel(param.deviation_values_normalization, image.shape[0])
    else:  # pragma: no cover - PreprocessParams admits only the four types
        raise AssertionError(f"unknown normalization_type {kind!r}")
    return image


def _stretch(values: np.ndarray, vmin: float, vmax: float, lo: float, hi: float) -> None:
    """In place: ``vmin -> lo``, ``vmax -> hi`` linearly (constant input -> middle)."""
    if vmax > vmin:
        scale = (hi - lo) / (vmax - vmin)
        values -= vmin
        values *= scale
        values += lo
    else:
        values += (lo + hi) / 2.0 - vmin


def _per_channel(values: Sequence[float], channels: int) -> np.ndarray:
    """``(C, 1, 1)`` float32, to broadcast over a ``(C, H, W)`` image."""
    return np.broadcast_to(np.asarray(values, dtype=np.float32), (channels,))[:, None, None]


def preprocess_image(
    image: np.ndarray, param: PreprocessParams, roi: Roi | None = None
) -> np.ndarray:
    """One image as the network sees it.

    Args:
        image: ``(H, W, C)`` or ``(H, W)``, C in {1, 3}, uint8 / uint16 / float (as
            :func:`segcore.common.images.read_image` returns it).
        param: the preprocessing parameters.
        roi: this image's region of interest ``[row1, col1, row2, col2]`` under
            ``crop_domain`` (default: ``param.domain_roi``); ignored under ``full_domain``.

    Returns:
        ``(C, H, W)`` float32, C = ``param.image_num_channels``; ``H x W`` is
        ``image_height x image_width`` in resize mode, the image's own size times ``scale``
        in tiled mode (see :func:`stored_size`).

    Raises:
        DatasetError: unsupported shape or channel count, region outside the image.
        ParamsError: ``crop_domain`` without a region of interest.
    """
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3):
        raise DatasetError(
            f"image of shape {image.shape} is neither (H, W) nor (H, W, C) with C in {{1, 3}}; "
            "give grey or RGB images"
        )
    source_dtype = image.dtype
    image = crop_to_roi(image, resolve_roi(param, roi))
    x = resize_image(image, *stored_size(param, image.shape[1], image.shape[0]))
    if x.shape[2] != param.image_num_channels:
        x = convert_channels(x.astype(np.float32), param.image_num_channels)
    # One copy, cast and transposed at once; normalizing it never touches the caller's array.
    chw = np.empty((x.shape[2], x.shape[0], x.shape[1]), dtype=np.float32)
    chw[...] = x.transpose(2, 0, 1)
    return normalize(chw, param, source_dtype)


def preprocess_samples(
    images: Sequence[np.ndarray], param: PreprocessParams, rois: Sequence[Roi | None] | None = None
) -> np.ndarray:
    """A batch of images for inference (HALCON: preprocess_dl_samples).

    Args:
        images: ``(H, W, C)`` arrays as returned by :func:`segcore.common.images.read_image`; sizes
            may differ.
        param: the preprocessing parameters the model was trained with.
        rois: per-image regions of interest under ``crop_domain`` (default
            ``param.domain_roi`` for every image).

    Returns:
        ``(N, C, image_height, image_width)`` float32, identical to what the preprocess
        stage stores for the same images.

    Raises:
        ValueError: ``param.mode`` is ``tiled``: samples keep their own sizes there and do not
            stack; call :func:`preprocess_image` per image.
    """
    if rois is not None and len(rois) != len(images):
        raise ValueError(f"{len(rois)} regions of interest for {len(images)} images")
    if param.mode == MODE_TILED:
        raise ValueError(
            "preprocess_samples stacks images of the network input size (resize mode); in "
            "tiled mode samples keep their own size: call preprocess_image per image"
        )
    out = np.empty(
        (len(images), param.image_num_channels, param.image_height, param.image_width),
        dtype=np.float32,
    )
    for i, image in enumerate(images):
        out[i] = preprocess_image(image, param, None if rois is None else rois[i])
    return out


# --------------------------------------------------------------------------- label images


def resize_label(label: np.ndarray, width: int, height: int) -> np.ndarray:
    """Nearest-neighbour resize of ``(H, W)`` uint16 class ids (only existing ids come out).

    Uses pixel-centre sampling (``INTER_NEAREST_EXACT``), so the label stays aligned with
    the area / bilinear resized image.
    """
    if label.shape == (height, width):
        return label
    return cv2.resize(label, (width, height), interpolation=cv2.INTER_NEAREST_EXACT)


def background_lut(param: PreprocessParams) -> np.ndarray | None:
    """uint16 lookup table merging ``class_ids_background`` into ``set_background_id``."""
    if param.set_background_id is None:
        return None
    lut = np.arange(MAX_CLASS_ID + 1, dtype=np.uint16)
    lut[list(param.class_ids_background)] = param.set_background_id
    return lut


def preprocess_label(
    label: np.ndarray, param: PreprocessParams, class_ids: Sequence[int], roi: Roi | None = None
) -> np.ndarray:
    """One label image as the training targets (HALCON's preprocessed segmentation image).

    Args:
        label: ``(H, W)`` integer class ids (as :func:`segcore.common.images.read_label` returns).
        param: the preprocessing parameters.
        class_ids: the dataset's class ids; together with ``param.ignore_class_ids`` the
            only values allowed in ``label``.
        roi: region of interest under ``crop_domain`` (default ``param.domain_roi``).

    Returns:
        ``(H, W)`` uint16 class ids, background classes merged; the size of the image's
        sample (:func:`stored_size`).

    Raises:
        DatasetError: not 2-D, region outside the image, values outside the class ids.
    """
    if label.ndim != 2:
        raise DatasetError(f"label image of shape {label.shape} is not 2-D (H, W)")
    label = crop_to_roi(label, resolve_roi(param, roi))
    check_label_values(label, [*class_ids, *param.ignore_class_ids])
    size = stored_size(param, label.shape[1], label.shape[0])
    out = resize_label(label.astype(np.uint16, copy=False), *size)
    lut = background_lut(param)
    return np.ascontiguousarray(out if lut is None else lut[out])
