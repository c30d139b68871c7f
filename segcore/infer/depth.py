"""Inputs of another bit depth than the training images: converted where the
normalization defines how, refused otherwise.

A model sees grey values as its training normalization made them. With ``none`` and
``constant_values`` the network input depends on the source's grey value scale (8-bit
0-255, 16-bit 0-65535), so a 16-bit image into a model trained on 8-bit images gives
silently wrong results. Integer images are therefore scaled to the training bit depth
(16 -> 8 bit: x 255/65535, rounded; 8 -> 16 bit: x 65535/255, exact), and a note says
so. ``first_channel`` and ``all_channels`` stretch every image to its own range, so the
bit depth does not matter. Float images into an integer model (or the reverse) have no
defined scale: they are refused.
"""

from __future__ import annotations

import numpy as np

from segcore.common.constants import NORM_ALL_CHANNELS, NORM_FIRST_CHANNEL
from segcore.common.errors import SegcoreError
from segcore.model.config import BundleConfig

_INTEGER_DEPTHS = {8: np.uint8, 16: np.uint16}


def bit_depth(image: np.ndarray) -> int:
    """Bits per channel of an image array (8, 16; 32 for float32)."""
    return int(image.dtype.itemsize * 8)


def match_bit_depth(
    image: np.ndarray, config: BundleConfig, source: str = "image"
) -> tuple[np.ndarray, str | None]:
    """``image`` at the training images' bit depth, and a note when it was converted.

    Raises:
        SegcoreError: the depths differ and the normalization does not define a conversion.
    """
    trained = config.input_bit_depth
    depth = bit_depth(image)
    norm = config.preprocess_param.get("normalization_type", "none")
    if trained is None or depth == trained or norm in (NORM_FIRST_CHANNEL, NORM_ALL_CHANNELS):
        return image, None
    target = _INTEGER_DEPTHS.get(trained)
    if target is None or image.dtype.type not in (np.uint8, np.uint16):
        raise SegcoreError(
            f"{source}: a {depth}-bit {image.dtype} image, but the model was trained on "
            f"{trained}-bit images with normalization {norm}, which defines no conversion; "
            f"convert the image to {trained}-bit, or train with normalization_type "
            "first_channel or all_channels (every image stretched to its own range)"
        )
    if trained == 8:  # round(x * 255 / 65535) = round(x / 257)
        converted = ((image.astype(np.uint32) + 128) // 257).astype(np.uint8)
    else:
        converted = image.astype(np.uint16) * np.uint16(257)
    note = (
        f"{depth}-bit inputs were scaled to the model's {trained}-bit range "
        f"(x {(2**trained - 1) / (2**depth - 1):.6g}, normalization {norm})"
    )
    return converted, note
