"""Validation during training: the measures of the validation split, and their history
columns (``val_mean_iou``, ``val_iou_<class>``, ...)."""

from __future__ import annotations

import math
from typing import Any

import torch

from segcore.evaluate.metrics import ConfusionMatrix
from segcore.model.outputs import mask_ignored_logits
from segcore.params import TrainParams
from segcore.train import distributed
from segcore.train.amp import forward
from segcore.train.setup import Run

SCALAR_MEASURES = ("pixel_accuracy", "mean_accuracy", "mean_iou", "frequency_weighted_iou")
VAL_PREFIX = "val_"
"""History columns of validation measures: ``val_mean_iou``, ``val_iou_<class>``, ..."""


@torch.no_grad()
def validation_measures(
    model: torch.nn.Module, run: Run, ctx: distributed.DistContext, p: TrainParams
) -> dict[str, Any]:
    """Validation measures (segcore.evaluate.metrics) over every rank's share of the split.

    In-memory splits are whole samples; streamed ones are read as a grid of
    non-overlapping tiles that covers every validation image once (padding ignored), so
    the measures are those of whole images, without blending across tile borders.

    Runs the plain module, not the DistributedDataParallel wrapper: ranks may hold
    different numbers of validation batches, and only the confusion matrix is shared."""
    model.eval()
    matrix = ConfusionMatrix(len(run.config.class_names), ctx.device)
    for x, y, _ in run.feed.val_batches(ctx.rank, ctx.world_size, p.batch_size):
        logits = mask_ignored_logits(
            forward(model, x.to(ctx.device), run.precision), run.ignore_indices
        )
        matrix.update(logits.argmax(1), y)
    matrix.reduce_from_all_processes()
    model.train()
    return matrix.compute() if run.feed.val_units else {}


def history_measures(measures: dict[str, Any] | None, class_names: list[str]) -> dict[str, Any]:
    """``val_<measure>`` scalars and ``val_iou_<class>``; NaN where nothing was evaluated."""
    m = measures or {}
    row = {f"{VAL_PREFIX}{k}": float(m.get(k, math.nan)) for k in SCALAR_MEASURES}
    ious = m.get("class_iou") or [math.nan] * len(class_names)
    row |= {f"{VAL_PREFIX}iou_{_safe(n)}": float(v) for n, v in zip(class_names, ious, strict=True)}
    return row


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
