"""The training loss: per-pixel cross-entropy weighted by HALCON's weight images."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from segcore.common.constants import IGNORE_INDEX


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
