"""The training losses (``train.loss``), each honouring HALCON's weight images.

Every loss takes ``(logits, target, weight)``: logits ``(N, K, H, W)``, target ``(N, H, W)``
class indices with :data:`~segcore.common.constants.IGNORE_INDEX` on ignored pixels, and the
weight images ``(N, H, W)`` (class weight per pixel, 0 for ignore classes and unknown label
values). A pixel of weight 0 or target ``IGNORE_INDEX`` contributes nothing, in every loss.

- ``ce``: HALCON's weighted cross-entropy (:func:`weighted_cross_entropy`), the default.
- ``ce+dice``: ``ce + dice_weight * dice``, the Dice loss of segmentation-models-pytorch
  (``smp.losses.DiceLoss``, soft Dice per class over the batch, ``1 - dice`` averaged over the
  classes; a class without pixels in the batch adds 0). smp's Dice takes no weight images, but
  it takes an ignore index: pixels of weight 0 become ignored pixels, and ignore classes'
  output channels are left out of the class average. Dice is balanced across classes by
  construction, so the class weights act through the ``ce`` part only.
- ``focal``: :func:`weighted_focal`, the softmax focal loss of Lin et al. with the weight
  images as the per-pixel ``alpha``. smp's ``FocalLoss`` does not fit: it takes no per-pixel
  weights, and for several classes it sums one-vs-rest sigmoid losses, which neither matches
  the softmax the model's predictions and confidences come from nor reduces to ``ce`` at
  ``gamma = 0``; this one does both.

``ce`` and ``focal`` divide by the pixel count (not the weight sum), so gradient accumulation
and DistributedDataParallel give exactly the loss of one big batch. Dice is a ratio over the
batch: with ``batch_size_multiplier`` or several processes it is the Dice of each
micro-batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch
import torch.nn.functional as F

from segcore.common.constants import IGNORE_INDEX
from segcore.params import TrainParams

LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""``loss(logits, target, weight)`` -> a scalar tensor."""

LOSSES = ("ce", "ce+dice", "focal")
"""The names ``train.loss`` takes."""


def weighted_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor
) -> torch.Tensor:
    """Mean over all pixels of ``weight * cross_entropy``.

    ``loss = sum_p w_p * CE_p / (N * H * W)``. The denominator is the pixel count, not
    the sum of the weights: it is the same for every batch of a given shape, so
    gradient accumulation (``batch_size_multiplier``) and DistributedDataParallel
    (which averages the ranks' gradients) give exactly the loss of one big batch, and
    a weight keeps its meaning (a weight-2 pixel counts twice a weight-1 pixel) whatever
    else is in the batch. With all weights 1 (and no ignored pixel) this is
    ``F.cross_entropy(logits, target)``. Pixels with weight 0 or target
    :data:`~segcore.common.constants.IGNORE_INDEX` contribute nothing, not even a gradient.

    Args:
        logits: ``(N, K, H, W)`` float.
        target: ``(N, H, W)`` int64 class indices (``IGNORE_INDEX`` allowed).
        weight: ``(N, H, W)`` float, >= 0.

    Returns:
        A scalar tensor.
    """
    ce = F.cross_entropy(logits, target, reduction="none", ignore_index=IGNORE_INDEX)
    return (ce * weight).sum() / target.numel()


_TINY = 1e-12
"""Floor of ``1 - p_t`` in the focal term: keeps its gradient finite for ``gamma < 1``
where ``p_t`` is 1 (ignored pixels, saturated logits)."""


def weighted_focal(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, gamma: float = 2.0
) -> torch.Tensor:
    """Softmax focal loss weighted by the weight images, averaged over all pixels.

    ``loss = sum_p w_p * (1 - p_t)^gamma * (-log p_t) / (N * H * W)`` with ``p_t`` the
    softmax probability of the pixel's true class. ``gamma = 0`` is
    :func:`weighted_cross_entropy`; a larger ``gamma`` lowers the share of pixels the model
    already gets right. Shapes and ignored pixels as in :func:`weighted_cross_entropy`.
    """
    ce = F.cross_entropy(logits, target, reduction="none", ignore_index=IGNORE_INDEX)
    miss = (-torch.expm1(-ce)).clamp_min(_TINY)  # 1 - p_t, without cancellation
    return (miss.pow(gamma) * ce * weight).sum() / target.numel()


def weighted_dice(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor,
    ignore_channels: Sequence[int] = (),
) -> torch.Tensor:
    """smp's multiclass Dice loss over the pixels of weight > 0 and the classes that count.

    Args:
        logits: ``(N, K, H, W)`` float.
        target: ``(N, H, W)`` int64 class indices (``IGNORE_INDEX`` allowed).
        weight: ``(N, H, W)`` float, >= 0; only whether it is 0 matters here.
        ignore_channels: output channels of ignore classes, left out of the class average.

    Returns:
        ``mean_c (1 - dice_c) * [class c has pixels in the batch]`` over the counted classes.
    """
    from segmentation_models_pytorch.losses import DiceLoss

    num_classes = logits.shape[1]
    counted = [k for k in range(num_classes) if k not in set(ignore_channels)]
    dice = DiceLoss(
        "multiclass",
        classes=counted if len(counted) < num_classes else None,
        from_logits=True,
        ignore_index=IGNORE_INDEX,
    )
    kept = torch.where(weight > 0, target, torch.full_like(target, IGNORE_INDEX))
    return dice(logits.float(), kept)


def ce_dice(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor,
    ignore_channels: Sequence[int] = (),
    dice_weight: float = 1.0,
) -> torch.Tensor:
    """``weighted_cross_entropy + dice_weight * weighted_dice`` (nnU-Net's pairing)."""
    ce = weighted_cross_entropy(logits, target, weight)
    if dice_weight == 0:
        return ce
    return ce + dice_weight * weighted_dice(logits, target, weight, ignore_channels)


def make_loss(params: TrainParams, ignore_channels: Sequence[int] = ()) -> LossFn:
    """The loss ``params.loss`` names, with its knobs (``dice_weight``, ``focal_gamma``).

    Args:
        params: the ``train`` section.
        ignore_channels: output channels of ignore classes (for Dice's class average).

    Raises:
        ValueError: an unknown name (the params validation refuses it first).
    """
    if params.loss == "ce":
        return weighted_cross_entropy
    if params.loss == "ce+dice":
        import segmentation_models_pytorch.losses  # noqa: F401  (imported now, not in step 1)

        return partial(
            ce_dice, ignore_channels=tuple(ignore_channels), dice_weight=params.dice_weight
        )
    if params.loss == "focal":
        return partial(weighted_focal, gamma=params.focal_gamma)
    raise ValueError(f"train.loss {params.loss!r} is unknown; use one of {', '.join(LOSSES)}")
