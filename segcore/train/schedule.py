"""The learning-rate schedule (``train.lr_schedule``, ``train.warmup_epochs``), per update.

A pure function of the update index, like nanoGPT's ``get_lr(it)``: a resumed run gets
exactly the rates of an uninterrupted one, with nothing to store. With ``S`` updates per
epoch, ``T = num_epochs * S`` updates in all and ``W = warmup_epochs * S`` warm-up
updates, update ``k`` (0-based, counted from the first epoch) runs at::

    lr_k = learning_rate * warm(k) * decay(k)
    warm(k)  = min(1, (k + 1) / W)                     (1 when W = 0)
    t        = clamp((k - W) / (T - W), 0, 1)          (decay progress after the warm-up)
    decay(k) = (1 - t) ** 0.9                          poly (nnU-Net's exponent)
             = (1 + cos(pi * t)) / 2                   cosine
             = 1                                       none

So the first update after the warm-up runs at the full rate, and the last one just above 0.

How it combines with HALCON's change strategies: under ``lr_schedule: none`` the warm-up
multiplies the rate the change strategies give (``learning_rate`` before their first
epoch), so a warm-up can lead into HALCON's steps. ``poly`` and ``cosine`` own the learning
rate: a ``learning_rate`` change strategy beside them is refused when the params load.
Change strategies of ``momentum`` and ``weight_prior`` work with every schedule.
"""

from __future__ import annotations

import math

from segcore.params import TrainParams

POLY_POWER = 0.9
"""Exponent of the ``poly`` decay (nnU-Net, DeepLab)."""


def learning_rate_factor(params: TrainParams, update: int, steps_per_epoch: int) -> float:
    """The factor on the learning rate of update ``update`` (0-based, from the first epoch).

    Args:
        params: the ``train`` section (``lr_schedule``, ``warmup_epochs``, ``num_epochs``).
        update: the update's index, ``epoch * steps_per_epoch + step_in_epoch``.
        steps_per_epoch: updates per epoch (``S``), >= 1.

    Returns:
        ``warm(k) * decay(k)`` in (0, 1].
    """
    warm = params.warmup_epochs * steps_per_epoch
    factor = min(1.0, (update + 1) / warm) if warm > 0 else 1.0
    if params.lr_schedule == "none":
        return factor
    total = params.num_epochs * steps_per_epoch
    t = min(max((update - warm) / max(total - warm, 1e-9), 0.0), 1.0)
    if params.lr_schedule == "poly":
        return factor * (1.0 - t) ** POLY_POWER
    return factor * 0.5 * (1.0 + math.cos(math.pi * t))
