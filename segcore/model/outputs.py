"""What a network's outputs mean: output channel k is class ``class_ids[k]``; ignore classes
are never predicted (their logits are masked before the softmax or argmax)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def ignore_indices(class_ids: Sequence[int], ignore_class_ids: Sequence[int]) -> list[int]:
    """Output channels (positions in ``class_ids``) that belong to ignore classes."""
    ignore = set(ignore_class_ids)
    return [k for k, cid in enumerate(class_ids) if cid in ignore]


def mask_ignored_logits(logits: torch.Tensor, ignore: Any) -> torch.Tensor:
    """Set the logits of ignore classes to ``-inf`` so they are never predicted.

    Args:
        logits: ``(N, K, H, W)``.
        ignore: a :class:`~segcore.model.bundle.BundleConfig` (anything with ``class_ids`` and
            ``ignore_class_ids``) or a sequence of channel indices.

    Returns:
        ``logits`` itself when nothing is ignored, else a masked copy.
    """
    if hasattr(ignore, "ignore_class_ids"):
        ignore = ignore_indices(ignore.class_ids, ignore.ignore_class_ids)
    indices = list(ignore)
    if not indices:
        return logits
    out = logits.clone()
    out[:, indices] = float("-inf")
    return out


def masked_probabilities(logits: torch.Tensor, ignore: Sequence[int]) -> torch.Tensor:
    """``(N, K, H, W)`` logits -> softmax probabilities; ignore classes get probability 0."""
    return torch.softmax(mask_ignored_logits(logits, ignore).float(), dim=1)
