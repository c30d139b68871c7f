"""Data augmentation on whole batches (HALCON: the augmentation of create_dl_train_param).

A random ``augmentation_percentage`` of the samples of a batch get one distortion each,
chosen at random among the enabled ones. Geometric distortions (mirror, rotate) act
identically on image, target and weight image; photometric ones (brightness, spot,
contrast, saturation) on the image only. Everything is a tensor operation on the batch,
so the cost is a few memory passes; all randomness comes from the given generator, so a
seed (and its saved state) reproduces it exactly.

Brightness values are given on the 0-255 grey-value scale of the original images and
converted to network-input units with :func:`grey_value_scale`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from segcore.common.constants import NORM_CONSTANT_VALUES
from segcore.params import AugmentationParams

_LUMA = (0.299, 0.587, 0.114)
"""RGB weights of the grey image that saturation changes blend with."""


def grey_value_scale(preprocess_param: dict[str, Any] | None, channels: int) -> torch.Tensor:
    """``(C,)`` network-input units per grey value (0-255 scale) of each channel.

    ``none`` / ``first_channel`` / ``all_channels`` map 255 grey values onto
    ``image_range_max - image_range_min``; ``constant_values`` divides by the deviation.
    """
    p = preprocess_param or {}
    if p.get("normalization_type") == NORM_CONSTANT_VALUES:
        dev = torch.as_tensor(p["deviation_values_normalization"], dtype=torch.float32)
        return (1.0 / dev).expand(channels).clone() if dev.numel() == 1 else 1.0 / dev
    span = float(p.get("image_range_max", 128.0)) - float(p.get("image_range_min", -127.0))
    return torch.full((channels,), span / 255.0)


def enabled_distortions(params: AugmentationParams, channels: int) -> list[str]:
    """Names of the distortions that are switched on (one is drawn per sample)."""
    ops = []
    if params.mirror != "off":
        ops.append("mirror")
    if params.rotate:
        ops.append("rotate")
    if params.brightness_variation > 0:
        ops.append("brightness")
    if params.brightness_variation_spot > 0:
        ops.append("spot")
    if params.contrast_variation > 0:
        ops.append("contrast")
    if params.saturation_variation > 0 and channels == 3:
        ops.append("saturation")
    return ops


def _on(
    mask: torch.Tensor,
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *tensors: torch.Tensor,
) -> None:
    """Replace, in place, the samples selected by ``mask`` (N,) with ``fn(samples, idx)``.

    ``idx`` are the selected sample positions (CPU), for per-sample random values.
    """
    idx = mask.nonzero().squeeze(1)
    if idx.numel():
        where = idx.to(tensors[0].device)
        for t in tensors:
            t[where] = fn(t[where], idx)


def augment_batch(
    image: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor,
    params: AugmentationParams,
    generator: torch.Generator,
    grey_scale: torch.Tensor,
    *,
    global_batch: int | None = None,
    offset: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Distort a random share of a batch, in place; returns the three tensors.

    Args:
        image: ``(N, C, H, W)`` float network input.
        target: ``(N, H, W)`` class indices.
        weight: ``(N, H, W)`` float weight image.
        params: which distortions and how strong.
        generator: CPU generator; the same state gives the same distortions.
        grey_scale: ``(C,)`` from :func:`grey_value_scale`.
        global_batch: random values are drawn for this many samples (default N) and
            the batch takes rows ``offset .. offset + N - 1`` of them: the ranks of a
            distributed run together distort exactly as one process would.
        offset: see ``global_batch``.
    """
    n, c, h, w = image.shape
    ops = enabled_distortions(params, c)
    if not ops or params.augmentation_percentage <= 0 or n == 0:
        return image, target, weight
    if "rotate" in ops and params.rotate == 90 and h != w:
        raise ValueError(f"90 degree rotation needs square inputs, got {h}x{w}")
    draws = _draw(generator, ops, params, n, global_batch or n, offset)
    unit = grey_scale.to(image.device, image.dtype).view(1, c, 1, 1)
    _mirror(draws, params, image, target, weight)
    _rotate(draws, params, image, target, weight)
    _photometric(draws, params, image, unit)
    return image, target, weight


@dataclass(frozen=True)
class _Draws:
    """The random values of one batch: the ``n`` rows that belong to it."""

    ops: list[str]
    n: int
    chosen: torch.Tensor
    """``(n,)`` bool: the sample gets a distortion."""
    op: torch.Tensor
    """``(n,)`` index into ``ops``: which one."""
    kind: torch.Tensor
    """``(n,)`` 0-2: mirror rows / columns / both; rotate by 1-3 quarter turns."""
    signed: torch.Tensor
    """``(n,)`` in [-1, 1): strength and sign of the photometric distortions."""
    spot: torch.Tensor
    """``(n, 3)`` in [0, 1): spot centre (row, column) and size."""

    def selected(self, name: str) -> torch.Tensor:
        """``(n,)`` bool: the samples that get the distortion ``name``."""
        if name not in self.ops:
            return torch.zeros(self.n, dtype=bool)
        return self.chosen & (self.op == self.ops.index(name))


def _draw(
    generator: torch.Generator,
    ops: list[str],
    params: AugmentationParams,
    n: int,
    total: int,
    offset: int,
) -> _Draws:
    """The batch's rows ``offset .. offset + n - 1`` of random values drawn for ``total``."""
    # Draw every random number for every sample, used or not: the generator advances
    # by the same amount whatever the batch holds.
    g, rows = generator, slice(offset, offset + n)
    chosen = (torch.rand(total, generator=g) < params.augmentation_percentage / 100.0)[rows]
    op = torch.randint(len(ops), (total,), generator=g)[rows]
    kind = torch.randint(3, (total,), generator=g)[rows]
    signed = (torch.rand(total, generator=g) * 2 - 1)[rows]
    spot = torch.rand(total, 3, generator=g)[rows]
    return _Draws(ops, n, chosen, op, kind, signed, spot)


def _mirror(
    draws: _Draws,
    params: AugmentationParams,
    image: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor,
) -> None:
    """Flip the selected samples' rows and/or columns, in place."""
    sel = draws.selected("mirror")
    if params.mirror == "rc":
        rows, cols = sel & (draws.kind != 1), sel & (draws.kind != 0)
    else:
        rows, cols = sel & (params.mirror == "r"), sel & (params.mirror == "c")
    _on(rows, lambda t, _: t.flip(-2), image, target, weight)
    _on(cols, lambda t, _: t.flip(-1), image, target, weight)


def _rotate(
    draws: _Draws,
    params: AugmentationParams,
    image: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor,
) -> None:
    """Turn the selected samples by 1-3 quarter turns (180 degrees unless ``rotate`` is 90)."""
    turns = draws.kind + 1 if params.rotate == 90 else torch.full_like(draws.kind, 2)
    for k in (1, 2, 3):
        _on(
            draws.selected("rotate") & (turns == k),
            lambda t, _, k=k: t.rot90(k, (-2, -1)),
            image,
            target,
            weight,
        )


def _photometric(
    draws: _Draws, params: AugmentationParams, image: torch.Tensor, unit: torch.Tensor
) -> None:
    """Brightness, contrast, saturation and spot; ``unit`` is grey value -> input units."""
    h, w = image.shape[-2:]
    signed = draws.signed
    offset = signed * params.brightness_variation
    _on(draws.selected("brightness"), lambda t, i: t + _per_sample(offset, i, image) * unit, image)

    contrast = 1 + signed * params.contrast_variation
    _on(
        draws.selected("contrast"),
        lambda t, i: _scale_around(t, _per_sample(contrast, i, image)),
        image,
    )

    saturation = 1 + signed * params.saturation_variation
    _on(
        draws.selected("saturation"),
        lambda t, i: _saturate(t, _per_sample(saturation, i, image)),
        image,
    )

    peak = signed * params.brightness_variation_spot
    _on(
        draws.selected("spot"),
        lambda t, i: t + _spot(draws.spot[i], peak[i], h, w).to(t) * unit,
        image,
    )


def _per_sample(values: torch.Tensor, idx: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``values[idx]`` as ``(n, 1, 1, 1)`` on the device and in the dtype of ``like``."""
    return values[idx].to(like.device, like.dtype).view(-1, 1, 1, 1)


def _scale_around(t: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Contrast: stretch ``(n, C, H, W)`` around each sample's mean by ``factor`` (n,1,1,1)."""
    mean = t.mean((1, 2, 3), keepdim=True)
    return (t - mean) * factor + mean


def _saturate(t: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Saturation: blend RGB ``(n, 3, H, W)`` with its grey image by ``factor``."""
    luma = torch.tensor(_LUMA, device=t.device, dtype=t.dtype).view(1, 3, 1, 1)
    grey = (t * luma).sum(1, keepdim=True)
    return grey + factor * (t - grey)


def _spot(draws: torch.Tensor, peak: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """``(n, 1, H, W)`` Gaussian spots of height ``peak`` (n,); centre and size from
    ``draws`` (n, 3) in [0, 1)."""
    cy, cx = draws[:, 0] * h, draws[:, 1] * w
    sigma = (0.05 + 0.2 * draws[:, 2]) * min(h, w)  # 5 % to 25 % of the shorter side
    ys = torch.arange(h, dtype=torch.float32)
    xs = torch.arange(w, dtype=torch.float32)
    gy = torch.exp(-((ys[None] - cy[:, None]) ** 2) / (2 * sigma[:, None] ** 2))
    gx = torch.exp(-((xs[None] - cx[:, None]) ** 2) / (2 * sigma[:, None] ** 2))
    return peak.view(-1, 1, 1, 1) * (gy[:, None, :, None] * gx[:, None, None, :])
