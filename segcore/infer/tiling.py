"""Sliding-window inference for tiled models (``preprocess.param.mode: tiled``).

A tiled model was trained on tiles of ``image_width x image_height`` cut from images kept
at their native size times ``preprocess.param.scale``. At inference the whole (scaled)
image is covered by overlapping tiles; the network runs on batches of tiles, and each
tile's class probabilities are added into the image with a centre-weighted map (a
Gaussian with sigma = 1/8 of the tile, as nnU-Net and MONAI's ``sliding_window_inference``
use), then divided by the summed weights. Pixels near a tile's border, where the network
sees the least context, count least, so seams between tiles do not show; where only one
tile covers a pixel its probabilities come out unchanged.

Tile positions along each axis are spread evenly from the first to the last possible
start, with at least ``tile_overlap`` (a fraction of the tile) between neighbours, as
nnU-Net places them. An image smaller than a tile is padded (with 0 in the network's
input space) to the tile, centred, and the result cropped back.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from segcore.common.constants import DEFAULT_TILE_OVERLAP, FULL_DOMAIN, MODE_RESIZE
from segcore.common.errors import ParamsError
from segcore.params import PreprocessParams
from segcore.preprocess.transforms import Roi, crop_to_roi, preprocess_image, resolve_roi

SIGMA_SCALE = 0.125
"""Sigma of the Gaussian weight map, relative to the tile size (nnU-Net, MONAI)."""
WEIGHT_FLOOR = 1e-3
"""Smallest blending weight, relative to the centre's: border pixels still count a little,
so every pixel covered by a tile has a positive weight sum."""

__all__ = ["DEFAULT_TILE_OVERLAP", "check_overlap", "preprocess_whole_image", "sliding_window"]

Forward = Callable[[torch.Tensor], torch.Tensor]
"""``(N, C, h, w)`` float32 tiles -> ``(N, K, h, w)`` float32 class probabilities."""


def scaled_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """``(width, height)`` of an image of ``width x height`` pixels at ``scale`` (rounded)."""
    return max(1, round(width * scale)), max(1, round(height * scale))


def check_overlap(overlap: float, tile: tuple[int, int], name: str) -> None:
    """Refuse an overlap that would not move the window by at least one pixel.

    Args:
        overlap: fraction of the tile shared by neighbouring tiles.
        tile: ``(height, width)`` of a tile in pixels.
        name: the parameter, for the message (``infer.tile_overlap``, ``evaluate.tile_overlap``).

    Raises:
        ParamsError: naming ``name`` and the fix.
    """
    if not (0.0 <= overlap < 1.0) or math.isnan(overlap):
        raise ParamsError(
            f"{name}: {overlap} is not a fraction of the tile in [0, 1); an overlap of a whole "
            f"tile ({tile[1]} x {tile[0]} pixels) or more never moves the window; use e.g. "
            f"{DEFAULT_TILE_OVERLAP}"
        )
    for size in tile:
        if size - round(overlap * size) < 1:
            raise ParamsError(
                f"{name}: {overlap} of a {size}-pixel tile overlaps it by {round(overlap * size)} "
                f"pixels, so the window never moves; use a smaller overlap, e.g. "
                f"{DEFAULT_TILE_OVERLAP}"
            )


def tile_starts(length: int, tile: int, overlap: float) -> list[int]:
    """Start offsets of the tiles along one axis of ``length`` pixels.

    The first tile starts at 0 and the last ends at ``length``; between them the starts are
    spread evenly, at most ``tile - round(overlap * tile)`` pixels apart. One tile at 0
    when the axis is not longer than a tile (the image is then padded).
    """
    if length <= tile:
        return [0]
    step = tile - round(overlap * tile)
    count = math.ceil((length - tile) / step) + 1
    return np.round(np.linspace(0, length - tile, count)).astype(int).tolist()


def blend_weights(height: int, width: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """``(height, width)`` float32 Gaussian weight map: 1 at the centre, at least
    :data:`WEIGHT_FLOOR` at the border (sigma = :data:`SIGMA_SCALE` of the tile)."""

    def axis(n: int) -> torch.Tensor:
        x = torch.arange(n, dtype=torch.float64) - (n - 1) / 2.0
        return torch.exp(-0.5 * (x / (SIGMA_SCALE * n)) ** 2)

    weights = torch.outer(axis(height), axis(width))
    weights = (weights / weights.max()).clamp_(min=WEIGHT_FLOOR)
    return weights.to(device=device, dtype=torch.float32)


def sliding_window(
    image: torch.Tensor,
    tile: tuple[int, int],
    forward: Forward,
    *,
    overlap: float = DEFAULT_TILE_OVERLAP,
    batch_size: int = 8,
    name: str = "infer.tile_overlap",
) -> torch.Tensor:
    """Class probabilities of a whole image from overlapping tiles, blended.

    Args:
        image: ``(C, H, W)`` float32 network input of any size (on the network's device).
        tile: ``(height, width)`` of the network input.
        forward: runs the network on a batch of tiles (see :data:`Forward`).
        overlap: fraction of the tile shared by neighbouring tiles, in [0, 1).
        batch_size: tiles per forward pass.
        name: the overlap's parameter name for error messages.

    Returns:
        ``(K, H, W)`` float32 probabilities (on the device ``forward`` answers on).

    Raises:
        ParamsError: an overlap that never moves the window (see :func:`check_overlap`).
    """
    check_overlap(overlap, tile, name)
    _, height, width = image.shape
    th, tw = tile
    top, left = max(th - height, 0) // 2, max(tw - width, 0) // 2
    if height < th or width < tw:
        pad_h, pad_w = max(th - height, 0), max(tw - width, 0)
        image = F.pad(image, (left, pad_w - left, top, pad_h - top))
    full_h, full_w = image.shape[1:]
    starts = [
        (r, c) for r in tile_starts(full_h, th, overlap) for c in tile_starts(full_w, tw, overlap)
    ]
    weights = blend_weights(th, tw, image.device)
    total: torch.Tensor | None = None
    norm = torch.zeros((full_h, full_w), dtype=torch.float32, device=image.device)
    for first in range(0, len(starts), batch_size):
        chunk = starts[first : first + batch_size]
        probs = forward(torch.stack([image[:, r : r + th, c : c + tw] for r, c in chunk]))
        if total is None:
            weights = weights.to(probs.device)
            norm = norm.to(probs.device)
            total = torch.zeros((probs.shape[1], full_h, full_w), device=probs.device)
        probs = probs.float() * weights
        for (r, c), p in zip(chunk, probs, strict=True):
            total[:, r : r + th, c : c + tw] += p
            norm[r : r + th, c : c + tw] += weights
    assert total is not None, "an image has at least one tile"
    total /= norm
    return total[:, top : top + height, left : left + width]


def preprocess_whole_image(
    image: np.ndarray, param: PreprocessParams, roi: Roi | None = None
) -> np.ndarray:
    """One image as a tiled model sees it: cropped to its region of interest
    (``crop_domain``), resized by ``param.scale`` and normalized, with the same code that
    resize mode uses (:func:`segcore.preprocess.transforms.preprocess_image`).

    Args:
        image: ``(H, W)`` or ``(H, W, C)`` as :func:`segcore.common.images.read_image` returns.
        param: the model's preprocessing parameters (``mode: tiled``).
        roi: this image's region of interest (default: ``param.domain_roi``).

    Returns:
        ``(C, h, w)`` float32, ``(w, h)`` = :func:`scaled_size` of the (cropped) image.
    """
    cropped = crop_to_roi(image, resolve_roi(param, roi))
    width, height = scaled_size(cropped.shape[1], cropped.shape[0], param.scale)
    # The crop is done above, so the resize-mode code runs on the full domain at that size.
    whole = param.model_copy(
        update={
            "mode": MODE_RESIZE,
            "image_width": width,
            "image_height": height,
            "domain_handling": FULL_DOMAIN,
        }
    )
    return preprocess_image(cropped, whole)
