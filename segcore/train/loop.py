"""Training (HALCON: train_dl_model): read top to bottom, with one epoch of updates in
segcore.train.epoch, it is the whole loop.

Per epoch the train split is reshuffled with a seeded generator and cut into
``floor(N / (batch_size * batch_size_multiplier * processes))`` updates; each update
accumulates ``batch_size_multiplier`` batches of the loss (``train.loss``, segcore.train.loss)
at the rate of the schedule (segcore.train.schedule). Augmentation runs on the batch as
tensor ops. The validation split is evaluated every ``evaluation_interval_epochs`` and at the end; the ``best`` bundle is
written when the comparison measure improves. Bundles are staged in ``<out_dir>/.staging``
and published when training ends (segcore.train.bundles), so an interrupted run never
replaces the bundles of the previous one. A time budget or early stopping may end the run
sooner, within an epoch too (segcore.train.stopping). After every epoch the history file and
the checkpoint are rewritten (then the callbacks are called), so ``resume=True`` continues exactly where a run stopped.
Under ``torchrun`` every rank trains its slice of each global batch
(DistributedDataParallel); rank 0 alone writes and calls the callbacks.

Training code imports no tracking library: trackers plug in as :class:`TrainCallback`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

import pandas as pd
import torch
from rich.progress import Progress, TaskID, TextColumn

from segcore.common.errors import SegcoreError
from segcore.common.io import write_text_atomic
from segcore.common.progress import make_progress
from segcore.data.dldataset import DLDataset
from segcore.params import TrainParams
from segcore.train import distributed
from segcore.train.bundles import (
    bundles_on_disk,
    epoch_bundle,
    prepare_staging,
    publish_staged,
    save_staged,
)
from segcore.train.checkpoint import CHECKPOINT_FILE, save_checkpoint, update_checkpoint
from segcore.train.epoch import train_epoch
from segcore.train.setup import Run, prepare
from segcore.train.stopping import Stopper, stop_line, stop_summary
from segcore.train.validation import history_measures, validation_measures

log = logging.getLogger("segcore.train")
"""One INFO line per epoch (rank 0): what a flow's log or a log file shows of a long run."""


class TrainingError(SegcoreError):
    """Training stopped: the loss stopped being a finite number."""


class TrainCallback(Protocol):
    """Receives the numbers of a run (rank 0 only); trackers such as MLflow implement it.
    Optional: ``on_evaluation(epoch: float, measures)`` after every validation."""

    def on_train_start(self, info: dict[str, Any]) -> None: ...

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None: ...

    def on_train_end(self, result: TrainResult) -> None: ...


@dataclass
class TrainResult:
    """What a run produced.

    Attributes:
        bundles: written bundles by name (``best``, ``final``, ``current``, ``epoch_005``).
        best_value: best validation value of the comparison key (``None``: no evaluation).
        best_epoch: the (possibly fractional) epoch of ``best_value``.
        history: one row per epoch: epoch, step, loss, learning_rate, seconds,
            eval_seconds and the ``val_*`` measures.
        final_measures: validation measures at the end (see segcore.evaluate.metrics).
        checkpoint: the checkpoint file (rank 0), else ``None``.
        history_path: the history CSV (rank 0), else ``None``.
        stop: how the run ended: ``reason`` (``num_epochs``, ``time_budget`` or
            ``early_stopping``), ``epoch`` (fractional when within an epoch), and for a
            budget stop ``seconds`` (from the first update to the stop) and ``time_budget``.
    """

    bundles: dict[str, Path]
    best_value: float | None
    best_epoch: float | None
    history: pd.DataFrame
    final_measures: dict[str, Any]
    checkpoint: Path | None
    history_path: Path | None
    stop: dict[str, Any] = dataclasses.field(default_factory=dict)


def train_model(
    dataset: DLDataset | str | Path,
    params: TrainParams,
    *,
    out_dir: str | Path | None = None,
    history_path: str | Path | None = None,
    resume: bool = False,
    callbacks: Sequence[TrainCallback] = (),
) -> TrainResult:
    """Train a segmentation model on the train split of a preprocessed dataset.

    Args:
        dataset: the preprocessed dataset (or its ``dataset.parquet``).
        params: the ``train`` section.
        out_dir: bundles and checkpoint (default ``params.out_dir``).
        history_path: per-epoch CSV (default ``params.history``).
        resume: continue from ``<out_dir>/checkpoint.pt``.
        callbacks: called on rank 0 at start, after every epoch and at the end.

    Raises:
        DatasetError, ParamsError: problems found before training (all listed at once).
        TrainingError: the loss became NaN or infinite.
    """
    out = Path(params.out_dir if out_dir is None else out_dir)
    history_file = Path(params.history if history_path is None else history_path)
    ctx = distributed.setup(params.device)
    rng_devices = [ctx.device] if ctx.device.type == "cuda" else []
    try:
        with _torch_threads(params.num_threads), torch.random.fork_rng(devices=rng_devices):
            run = prepare(dataset, params, ctx, out / CHECKPOINT_FILE if resume else None)
            return _fit(run, params, ctx, out, history_file, callbacks)
    finally:
        distributed.teardown(ctx)


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _fit(
    run: Run,
    p: TrainParams,
    ctx: distributed.DistContext,
    out: Path,
    history_file: Path,
    callbacks: Sequence[TrainCallback],
) -> TrainResult:
    loop = _Loop(run, p, ctx, out, history_file, callbacks if ctx.is_main else ())
    loop.start()
    progress = make_progress(TextColumn("loss {task.fields[loss]:.4f}"))
    progress.disable = progress.disable or not ctx.is_main
    with progress:
        steps = run.steps_per_epoch
        loop.progress = progress
        loop.bar = progress.add_task(
            "train", total=(p.num_epochs - run.epoch) * steps, loss=math.nan
        )
        for epoch in range(run.epoch, p.num_epochs):
            loop.epoch(epoch)
            if loop.stopper.reason:
                break
    return loop.finish()


@dataclass
class _Loop:
    """The state of the loop between updates: evaluation schedule, progress, this epoch's
    validation measures and the seconds spent on them."""

    run: Run
    p: TrainParams
    ctx: distributed.DistContext
    out: Path
    history_file: Path
    callbacks: Sequence[TrainCallback]
    progress: Progress | None = None
    bar: TaskID | None = None
    eval_seconds: float = 0.0
    measures: dict[str, Any] | None = None
    started: float = 0.0
    last_eval_update: int = -1

    def __post_init__(self) -> None:
        self.net: torch.nn.Module = self.run.model  # on its device, in its memory layout
        if self.ctx.distributed:
            ids = [self.ctx.device.index] if self.ctx.device.type == "cuda" else None
            self.net = torch.nn.parallel.DistributedDataParallel(self.run.model, device_ids=ids)
        # Evaluate after update k when k crosses a multiple of the interval (in updates;
        # exact fractions, so 0.3 epochs of 10 updates is 3 updates, not 3.0000000000000004).
        self.eval_every = (
            Fraction(str(self.p.evaluation_interval_epochs)) * self.run.steps_per_epoch
        )
        self.stopper = Stopper.of(self.p, self.run.steps_per_epoch, self.ctx, self.run)

    def eval_due(self, k: int) -> bool:
        """Whether update ``k`` (1-based, counted from the first epoch) ends with an evaluation."""
        return (
            k == self.p.num_epochs * self.run.steps_per_epoch
            or k // self.eval_every > (k - 1) // self.eval_every
        )

    def start(self) -> None:
        self.started = time.perf_counter()
        self.stopper.start()
        if self.ctx.is_main:
            log.info("precision: %s", self.run.precision.describe())
            prepare_staging(self.out, resume=self.run.first_epoch > 0)
            for cb in self.callbacks:
                cb.on_train_start(self.run.info)

    def evaluate(self, epoch: float) -> None:
        """Validation measures at ``epoch``; a better comparison value writes ``best``."""
        run, p = self.run, self.p
        t = time.perf_counter()
        self.measures = validation_measures(run.model, run, self.ctx, p)
        seconds = time.perf_counter() - t
        self.eval_seconds += seconds
        self.last_eval_update = round(epoch * run.steps_per_epoch)
        hooks = [getattr(cb, "on_evaluation", None) for cb in self.callbacks]
        for hook in filter(None, hooks if self.ctx.is_main else []):
            hook(epoch, self.measures)
        value = self.measures.get(p.evaluation_comparison_key, math.nan)
        improved = math.isfinite(value) and (run.best_value is None or value > run.best_value)
        if improved:
            run.best_value, run.best_epoch = float(value), epoch
            if "best" in p.serialization_strategies:
                save_staged(self.out, "best", run, p, epoch, self.measures, self.ctx)
        self.stopper.after_evaluation(improved, seconds)
        run.stale_evaluations = self.stopper.stale_evaluations

    def after_update(self, step: int, running_loss: torch.Tensor) -> bool:
        """Progress, a fractional-interval evaluation; ``True`` when the run must stop."""
        steps = self.run.steps_per_epoch
        assert self.progress is not None and self.bar is not None
        if not self.progress.disable and step % 5 == 4:  # .item() waits for the device
            done = step + 1 - self.run.first_epoch * steps
            self.progress.update(self.bar, completed=done, loss=running_loss.item())
        if (step + 1) % steps and self.eval_due(step + 1):  # a fractional interval
            self.evaluate((step + 1) / steps)
        return self.stopper.after_update()

    def epoch(self, epoch: int) -> None:
        """Train one epoch, evaluate when due, record the history row, save (rank 0)."""
        run, p, ctx, steps = self.run, self.p, self.ctx, self.run.steps_per_epoch
        t0, self.eval_seconds, self.measures = time.perf_counter(), 0.0, None
        loss_sum, values, done = train_epoch(run, self.net, p, ctx, epoch, self.after_update)
        seconds = time.perf_counter() - t0 - self.eval_seconds
        calls = done * p.batch_size_multiplier * ctx.world_size
        loss = float(distributed.all_reduce_sum(loss_sum) / calls)
        if not math.isfinite(loss):
            raise TrainingError(_nan_message(epoch + 1, loss, p))
        k = epoch * steps + done  # updates done; a stop may end the epoch early
        if self.last_eval_update != k and (self.eval_due(k) or self.stopper.reason):
            self.evaluate(k / steps)
        partial = done < steps
        run.epoch = epoch + (not partial)
        run.final_measures = self.measures or run.final_measures
        run.history.append(
            {
                "epoch": round(k / steps, 6) if partial else run.epoch,
                "step": k,
                "loss": loss,
                "learning_rate": values["learning_rate"],
                "seconds": seconds,
                "eval_seconds": self.eval_seconds,
                **history_measures(self.measures, run.config.class_names),
            }
        )
        assert self.progress is not None and self.bar is not None
        self.progress.update(self.bar, completed=k - run.first_epoch * steps, loss=loss)
        if ctx.is_main:
            log.info(_epoch_line(run, p, time.perf_counter() - self.started))
            if partial:  # the checkpoint stays at the last whole epoch, with the best so far
                _write_history(self.history_file, run.history)
                if run.epoch > 0:  # else the checkpoint on disk is not this run's
                    update_checkpoint(self.out / CHECKPOINT_FILE, **run.best_state())
            else:
                _end_epoch(run, p, ctx, self.out, self.history_file, self.measures, self.callbacks)

    def finish(self) -> TrainResult:
        """The ``final`` bundle, then the result (the bundles on disk, rank 0) to callbacks."""
        run, p, ctx, out = self.run, self.p, self.ctx, self.out
        last = run.history[-1]["epoch"] if run.history else run.epoch  # fractional: a stop
        run.stop = stop_summary(self.stopper, last, p)
        if ctx.is_main and self.stopper.reason:
            log.info(stop_line(run.stop, p, run.best_value, run.best_epoch))
        if "final" in p.serialization_strategies:
            save_staged(out, "final", run, p, last, run.final_measures, ctx)
        if ctx.is_main:
            publish_staged(out)
        distributed.barrier()
        result = TrainResult(
            bundles=bundles_on_disk(out, p, run.epoch) if ctx.is_main else {},
            best_value=run.best_value,
            best_epoch=run.best_epoch,
            history=pd.DataFrame(run.history),
            final_measures=run.final_measures,
            checkpoint=out / CHECKPOINT_FILE if ctx.is_main else None,
            history_path=self.history_file if ctx.is_main else None,
            stop=dict(run.stop),
        )
        for cb in self.callbacks:
            cb.on_train_end(result)
        return result


def _end_epoch(
    run: Run,
    p: TrainParams,
    ctx: distributed.DistContext,
    out: Path,
    history_file: Path,
    measures: dict[str, Any] | None,
    callbacks: Sequence[TrainCallback],
) -> None:
    """Rank 0 after each epoch: history file, bundles, the checkpoint, then callbacks (so
    a callback sees the epoch's checkpoint on disk)."""
    _write_history(history_file, run.history)
    if "current" in p.serialization_strategies:
        save_staged(out, "current", run, p, run.epoch, measures, ctx)
    if run.epoch in p.serialization_epochs:
        save_staged(out, epoch_bundle(run.epoch), run, p, run.epoch, measures, ctx)
    save_checkpoint(out / CHECKPOINT_FILE, run.checkpoint_state(p))
    row = run.history[-1]
    for cb in callbacks:
        cb.on_epoch_end(run.epoch, {k: v for k, v in row.items() if _is_number(v)})


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _write_history(path: Path, rows: list[dict[str, Any]]) -> None:
    write_text_atomic(path, pd.DataFrame(rows).to_csv(index=False, float_format="%.6g"))


def _epoch_line(run: Run, p: TrainParams, elapsed: float) -> str:
    """``epoch 3/40: loss 0.4123, val mean_iou 0.6012, lr 0.001, 12.3 s, ETA 7m24s``."""
    row = run.history[-1]
    key = p.evaluation_comparison_key
    value = row.get(f"val_{key}")
    measure = f"val {key} {value:.4f}" if _is_number(value) else f"val {key} -"
    done = run.epoch - run.first_epoch
    eta = round(elapsed / max(done, 1) * (p.num_epochs - run.epoch))
    return (
        f"epoch {row['epoch']:g}/{p.num_epochs}: loss {row['loss']:.4f}, {measure}, "
        f"lr {row['learning_rate']:.3g}, {row['seconds'] + row['eval_seconds']:.1f} s, "
        f"ETA {eta // 3600}h{eta // 60 % 60:02d}m{eta % 60:02d}s"
    )


def _nan_message(epoch: int, loss: float, p: TrainParams) -> str:
    return (
        f"epoch {epoch}: the training loss became {loss} (not a finite number). Likely causes: "
        f"learning_rate {p.learning_rate} is too high for solver {p.solver_type} (try a "
        "tenth of it); class weights too large (lower preprocess.class_weights.max_weight); "
        "or a change strategy that raises the learning rate. The published bundles are the "
        "previous run's (this run's are in out_dir/.staging); fix the parameter and train again"
    )
