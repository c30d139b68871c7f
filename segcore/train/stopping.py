"""When training stops before ``num_epochs``: the time budget and early stopping.

``train.time_budget`` (seconds of wall-clock time, counted from the first update of the
process, after the data is loaded; a resumed run counts afresh): after every update the loop
asks :meth:`Stopper.after_update`, which stops when the next update (and, once one has been
timed, the closing validation) would end past the limit, so a run ends within about one
update of it. The first updates are timed: when one epoch would not fit into the budget,
training refuses to go on (a run that cannot complete one epoch has seen only part of its
data) with an error naming the key and the fix.

``train.early_stopping_patience``: after every validation, :meth:`Stopper.after_evaluation`
counts the evaluations in a row without improvement of the comparison key, and stops at
``patience``. The count is part of the checkpoint, so a resumed run keeps it.

Either way the run ends as at its last epoch: a closing validation of the current weights
when the last one was not at this update (so ``best`` considers them), then the ``final``
bundle; the reason is in the training summary, the result and the log. A stop within an
epoch adds a history row with a fractional epoch; the checkpoint stays at the last whole
epoch (``--resume`` continues from there), with the best value so far.

Under DistributedDataParallel rank 0's clock decides and every rank follows.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from segcore.common.errors import ParamsError
from segcore.params import TrainParams
from segcore.train import distributed

NUM_EPOCHS = "num_epochs"
"""Stop reason: every epoch trained."""
TIME_BUDGET = "time_budget"
"""Stop reason: ``train.time_budget`` reached."""
EARLY_STOPPING = "early_stopping"
"""Stop reason: ``train.early_stopping_patience`` evaluations without improvement."""

TIMED_UPDATES = 3
"""Updates timed before checking that one epoch fits into the budget (the first one, which
includes one-off costs, is left out of the estimate when there are more)."""

_CONTINUE, _STOP, _TOO_SHORT = 0.0, 1.0, 2.0


@dataclass
class Stopper:
    """The stopping rules of one training process.

    Args:
        time_budget: seconds, or ``None``.
        patience: evaluations without improvement, or ``None``.
        steps_per_epoch: updates per epoch (for the one-epoch check).
        ctx: the process's place among the ranks (rank 0 decides on the budget).
        stale_evaluations: evaluations without improvement so far (from a checkpoint).
    """

    time_budget: float | None
    patience: int | None
    steps_per_epoch: int
    ctx: distributed.DistContext
    stale_evaluations: int = 0
    reason: str | None = None
    """Why training stopped; ``None`` while it goes on."""
    stopped_after: float | None = None
    """Seconds from the first update to the stop decision (a budget stop)."""
    started: float = field(default_factory=time.perf_counter)
    updates: int = 0
    """Updates timed by this process."""
    eval_seconds: float = 0.0
    """Seconds spent in validation so far."""
    last_eval_seconds: float = 0.0
    first_update_seconds: float = 0.0

    @classmethod
    def of(
        cls, p: TrainParams, steps_per_epoch: int, ctx: distributed.DistContext, run: Any
    ) -> Stopper:
        """The rules of ``p`` for a run (``run.stale_evaluations``: from its checkpoint)."""
        return cls(
            p.time_budget,
            p.early_stopping_patience,
            steps_per_epoch,
            ctx,
            stale_evaluations=run.stale_evaluations,
        )

    def start(self) -> None:
        """Start the clock (the first update starts now)."""
        self.started = time.perf_counter()

    def elapsed(self) -> float:
        """Seconds since :meth:`start`."""
        return time.perf_counter() - self.started

    def after_evaluation(self, improved: bool, seconds: float) -> bool:
        """Count an evaluation; ``True`` when patience ran out (the reason is then set)."""
        self.eval_seconds += seconds
        self.last_eval_seconds = seconds
        self.stale_evaluations = 0 if improved else self.stale_evaluations + 1
        if self.patience is not None and self.stale_evaluations >= self.patience:
            self.reason = self.reason or EARLY_STOPPING
        return self.reason is not None

    def after_update(self) -> bool:
        """Time an update; ``True`` when the run must stop (the reason is then set).

        Raises:
            ParamsError: while this process's first epoch runs, when it would not fit the
                budget.
        """
        self.updates += 1
        if self.time_budget is None:
            return self.reason is not None
        elapsed = self.elapsed()
        if self.updates == 1:
            self.first_update_seconds = elapsed - self.eval_seconds
        decision = self._decide(elapsed) if self.ctx.is_main else _CONTINUE
        if self.ctx.distributed:
            shared = torch.tensor(decision, device=self.ctx.device)
            decision = float(distributed.all_reduce_sum(shared))  # rank 0's decision
        if decision == _TOO_SHORT:
            raise ParamsError(self._too_short_message(elapsed))
        if decision == _STOP and self.reason is None:
            self.reason, self.stopped_after = TIME_BUDGET, elapsed
        return self.reason is not None

    def update_seconds(self, elapsed: float) -> float:
        """Mean seconds of one update (with the epochs' bookkeeping), the first update left
        out once there are others: it carries one-off costs."""
        training = elapsed - self.eval_seconds
        if self.updates > 1:
            return max(training - self.first_update_seconds, 0.0) / (self.updates - 1)
        return training

    def _decide(self, elapsed: float) -> float:
        """Stop when the next update and the closing validation would end past the budget;
        within this process's first epoch that, or an epoch estimated past it, is an error."""
        assert self.time_budget is not None
        per_update = self.update_seconds(elapsed)
        stop = elapsed + per_update + self.last_eval_seconds > self.time_budget
        if self.updates >= self.steps_per_epoch:
            return _STOP if stop else _CONTINUE
        epoch = per_update * self.steps_per_epoch + self.last_eval_seconds
        timed = self.updates >= min(TIMED_UPDATES, self.steps_per_epoch)
        return _TOO_SHORT if stop or (timed and epoch > self.time_budget) else _CONTINUE

    def _too_short_message(self, elapsed: float) -> str:
        per_update = self.update_seconds(elapsed)
        epoch = per_update * self.steps_per_epoch + self.last_eval_seconds
        need = math.ceil(1.5 * epoch)
        return (
            f"train.time_budget {self.time_budget:g} s is shorter than one epoch: the first "
            f"{self.updates} updates took {per_update:.2f} s each, so an epoch of "
            f"{self.steps_per_epoch} updates takes about {epoch:.1f} s; raise "
            f"train.time_budget to at least {need} s (or null for no limit), or shorten the "
            "epoch (fewer training samples, a smaller preprocess.param.image_width/height, "
            "a smaller model)"
        )


def stop_summary(stopper: Stopper, epoch: float, p: TrainParams) -> dict[str, Any]:
    """How a run ended, for the training summary, the result and the tracking tags."""
    out: dict[str, Any] = {"reason": stopper.reason or NUM_EPOCHS, "epoch": epoch}
    if stopper.reason == TIME_BUDGET:
        out |= {"time_budget": p.time_budget, "seconds": round(stopper.stopped_after or 0.0, 3)}
    if stopper.reason == EARLY_STOPPING:
        out["patience"] = p.early_stopping_patience
    return out


def stop_line(
    stop: dict[str, Any], p: TrainParams, best_value: float | None, best_epoch: float | None
) -> str:
    """``stopped at epoch 7.33 of 40: train.time_budget 600 s reached after 598.2 s; best ...``."""
    if stop["reason"] == TIME_BUDGET:
        why = f"train.time_budget {p.time_budget:g} s reached after {stop['seconds']:.1f} s"
    else:
        why = (
            f"no better val {p.evaluation_comparison_key} in {p.early_stopping_patience} "
            "evaluations (train.early_stopping_patience)"
        )
    best = "-" if best_value is None else f"{best_value:.4f} at epoch {best_epoch:g}"
    return (
        f"stopped at epoch {stop['epoch']:g} of {p.num_epochs}: {why}; "
        f"best val {p.evaluation_comparison_key} {best}"
    )
