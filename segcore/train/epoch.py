"""One epoch of updates (HALCON: the inner loop of train_dl_model), for :mod:`segcore.train.loop`.

Each update accumulates ``batch_size_multiplier`` batches of the feed, distorted by the
augmentation, at the learning rate of the schedule; under DistributedDataParallel the
gradients are averaged across ranks once per update.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch

from segcore.params import TrainParams
from segcore.train import distributed
from segcore.train.amp import backward, forward, optimizer_step
from segcore.train.augment import augment_batch
from segcore.train.setup import Run
from segcore.train.solver import apply_values, solver_values


def train_epoch(
    run: Run,
    net: torch.nn.Module,
    p: TrainParams,
    ctx: distributed.DistContext,
    epoch: int,
    after_update: Callable[[int, torch.Tensor], bool],
) -> tuple[torch.Tensor, dict[str, float], int]:
    """One epoch of updates on a fresh shuffle, until done or ``after_update`` says stop;
    returns the summed batch losses (this rank), the solver values of the last update and
    the number of updates."""
    net.train()
    micro, steps = p.batch_size_multiplier, run.steps_per_epoch
    global_batch = p.batch_size * ctx.world_size
    plan = run.feed.epoch_plan(run.generator, epoch)  # the same on every rank
    positions = [
        distributed.rank_slice(torch.arange(start, start + global_batch), ctx.rank, ctx.world_size)
        for start in range(0, steps * micro * global_batch, global_batch)
    ]
    batches = run.feed.train_batches(plan, positions)
    loss_sum = torch.zeros((), device=ctx.device)
    values: dict[str, float] = {}
    for it in range(steps):
        step = epoch * steps + it
        values = solver_values(p, step / steps, steps)
        apply_values(run.optimizer, values)
        for m in range(micro):
            x, y, w = augment(run, next(batches), p, global_batch, ctx.rank * p.batch_size)
            sync = contextlib.nullcontext()
            if ctx.distributed and m < micro - 1:
                sync = net.no_sync()  # gradients are averaged across ranks once per update
            with sync:
                loss = run.loss(forward(net, x, run.precision), y, w)
                backward(loss / micro, run.scaler)
            loss_sum += loss.detach()
        optimizer_step(run.optimizer, run.scaler)
        if after_update(step, loss_sum / ((it + 1) * micro)):
            return loss_sum, values, it + 1
    return loss_sum, values, steps


def augment(
    run: Run,
    batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    p: TrainParams,
    global_batch: int,
    offset: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Distort a batch of the feed (already on the training device, in the network's
    memory layout); rows ``offset ..`` of the global batch's random draws."""
    x, y, w = batch
    return augment_batch(
        x,
        y,
        w,
        p.augmentation,
        run.generator,
        run.grey_scale,
        global_batch=global_batch,
        offset=offset,
    )
