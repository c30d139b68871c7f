"""The solver (HALCON's solver_type) and the change strategies of its parameters.

HALCON's SGD keeps the learning rate inside the velocity::

    v_t = momentum * v_(t-1) - lr_t * g_t        w_t = w_(t-1) + v_t

and when a change strategy alters the learning rate it rescales the momentum for one
step by ``lr_new / lr_old``, so the velocity gathered at the old rate continues at the
new one. ``torch.optim.SGD`` keeps the rate outside (``b_t = momentum * b_(t-1) + g_t``,
``w_t = w_(t-1) - lr_t * b_t``); written in HALCON's terms its velocity ``-lr_t * b_t``
is ``momentum * (lr_t / lr_(t-1)) * v_(t-1) - lr_t * g_t``: exactly HALCON's one-step
rescale, with no extra code (tests/unit/test_train_solver.py checks the equivalence).

The learning-rate schedule and warm-up (``lr_schedule``, ``warmup_epochs``) scale the
learning rate of every update on top (segcore.train.schedule).

``weight_prior`` is L2 regularisation: ``weight_prior * w`` is added to the gradient
(``weight_decay`` of both torch solvers).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from segcore.params import ChangeStrategy, TrainParams
from segcore.train.schedule import learning_rate_factor

SCHEDULED = ("learning_rate", "momentum", "weight_prior")
"""Model parameters that change strategies may set."""


def scheduled_value(
    base: float, name: str, strategies: Iterable[ChangeStrategy], epoch: float
) -> float:
    """The value of ``name`` at (fractional) ``epoch``: the last change at or before it.

    Args:
        base: the value before the first change (from the ``train`` section).
        name: ``learning_rate``, ``momentum`` or ``weight_prior``.
        strategies: the change strategies.
        epoch: epochs done so far, e.g. 2.5 halfway through the third epoch.
    """
    value = base
    for strategy in strategies:
        if strategy.model_param == name:
            for at, new in zip(strategy.epochs, strategy.values, strict=True):
                if epoch >= at:
                    value = new
    return value


def solver_values(params: TrainParams, epoch: float, steps_per_epoch: int = 1) -> dict[str, float]:
    """``{"learning_rate": ..., "momentum": ..., "weight_prior": ...}`` of the update that
    starts at (fractional) ``epoch``: the change strategies' values, the learning rate times
    the schedule's factor (segcore.train.schedule) for ``steps_per_epoch`` updates an epoch."""
    values = {
        name: scheduled_value(getattr(params, name), name, params.change_strategies, epoch)
        for name in SCHEDULED
    }
    update = round(epoch * steps_per_epoch)
    values["learning_rate"] *= learning_rate_factor(params, update, steps_per_epoch)
    return values


def make_optimizer(params: TrainParams, model: torch.nn.Module) -> torch.optim.Optimizer:
    """SGD (with momentum) or Adam over every parameter, at the epoch-0 values."""
    values = solver_values(params, 0.0)
    if params.solver_type == "sgd":
        return torch.optim.SGD(
            model.parameters(),
            lr=values["learning_rate"],
            momentum=values["momentum"],
            weight_decay=values["weight_prior"],
        )
    return torch.optim.Adam(
        model.parameters(),
        lr=values["learning_rate"],
        betas=(params.adam_beta1, params.adam_beta2),
        eps=params.adam_epsilon,
        weight_decay=values["weight_prior"],
    )


def apply_values(optimizer: torch.optim.Optimizer, values: dict[str, float]) -> None:
    """Set learning rate, weight decay and (SGD) momentum on every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = values["learning_rate"]
        group["weight_decay"] = values["weight_prior"]
        if "momentum" in group:
            group["momentum"] = values["momentum"]
