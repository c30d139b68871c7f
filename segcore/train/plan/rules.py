"""The planner: a dataset fingerprint, a machine and a time budget -> training parameters,
each choice with its reason (the way nnU-Net configures itself from a fingerprint).

Pure rules, except for the one measurement they need: ``measure(height, width, batch)``
returns what a training sample costs on this machine at that input size
(:func:`segcore.train.plan.machine.measure_step` in real use). Keys are the flat names of
``params.yaml`` (``train.batch_size``); the plan proposes every key it has a rule for,
whether or not the running version has it (the caller writes only the ones it has).
"""

from __future__ import annotations

from collections.abc import Collection

from segcore.params import Params
from segcore.train.plan.choice import Measure, Plan
from segcore.train.plan.fingerprint import DatasetFingerprint
from segcore.train.plan.machine import Machine
from segcore.train.plan.size import (
    choose_batch,
    choose_epochs,
    choose_foreground_share,
    choose_geometry,
)
from segcore.train.plan.solver import (
    choose_augmentation,
    choose_class_weight_cap,
    choose_loss,
    choose_lr_schedule,
)


def plan_training(
    fp: DatasetFingerprint,
    machine: Machine,
    budget: float,
    measure: Measure,
    params: Params,
    *,
    multiple: int = 1,
    supported: Collection[str] | None = None,
) -> Plan:
    """Plan a training run of ``params.train.model`` on ``fp`` within ``budget`` seconds.

    Args:
        fp: the dataset fingerprint.
        machine: where training runs.
        budget: seconds of training (wall time).
        measure: measures a training sample's cost at an input size and batch.
        params: the current parameters (model, solver and change strategies are kept).
        multiple: input sides must be multiples of this (the model's).
        supported: the flat keys the running version has (``None``: every key); decides
            between a learning-rate schedule and a change strategy (without
            ``train.lr_schedule``).

    Raises:
        ParamsError: the budget is too short for one epoch.
    """
    geo, geo_choice = choose_geometry(fp, machine, multiple)
    choices = [geo_choice]
    if geo.mode == "tiled":
        choices.append(choose_foreground_share(fp))
    units = fp.num_train * geo.tiles_per_image
    _, cost, batch_choice = choose_batch(machine, geo, units, measure)
    choices.append(batch_choice)
    epochs, epoch_s, schedule = choose_epochs(fp, geo, units, budget, cost)
    choices += schedule
    choices.append(choose_lr_schedule(params, epochs, supported))
    choices.append(choose_class_weight_cap(fp, params))
    choices.append(choose_loss(fp))
    choices.append(choose_augmentation(fp, geo))
    return Plan(choices=choices, budget=budget, cost=cost, epoch_seconds=epoch_s)
