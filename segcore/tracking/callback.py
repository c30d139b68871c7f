"""The MLflow training callback: per-epoch metrics into a :class:`TrackedRun`."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from segcore.tracking.names import history_metric_name
from segcore.tracking.run import _TRAINING_GOES_ON, TrackedRun, _param_value
from segcore.tracking.store import unless_store_lost


class MLflowCallback:
    """Training callback (``segcore.train.loop`` protocol) that logs into a :class:`TrackedRun`.

    ``on_train_start`` marks the run RUNNING and sets the info as ``train.<key>`` tags,
    ``on_epoch_end`` logs the epoch's history row with ``step = epoch`` (names:
    :func:`history_metric_name`); the first one, which comes after the run's first
    checkpoint, names the run in ``run_file``: the file and the checkpoint agree.
    """

    def __init__(self, run: TrackedRun, run_file: str | os.PathLike[str] | None = None) -> None:
        self.run = run
        self.run_file = None if run_file is None else Path(run_file)
        self.lost: str | None = None
        """Why logging stopped: the store stopped answering (training goes on; see
        :mod:`segcore.tracking.catch_up`)."""

    def on_train_start(self, info: Mapping[str, Any]) -> None:
        self.run.mark_running()
        self._log(
            lambda: self.run.set_tags({f"train.{k}": _param_value(v) for k, v in info.items()})
        )

    def on_epoch_end(self, epoch: int, metrics: Mapping[str, float]) -> None:
        if self.run_file is not None:  # called after the epoch's checkpoint was written
            self.run.save(self.run_file)
            self.run_file = None
        row = {history_metric_name(k): v for k, v in metrics.items() if k not in ("epoch", "step")}
        self._log(lambda: self.run.log_metrics(row, step=int(epoch)))

    def _log(self, log_it: Callable[[], None]) -> None:
        """Log, unless the store was lost: a lost store ends the logging, not the training."""
        if self.lost is None:
            self.lost = unless_store_lost(log_it, _TRAINING_GOES_ON)

    def on_train_end(self, result: Any) -> None:
        """How the run ended as tags (``train.stop_reason``: ``num_epochs``, ``time_budget`` or
        ``early_stopping``; ``train.stop_epoch``), and the history row of an epoch that a stop
        cut short (no ``on_epoch_end`` for it) at step ``ceil(epoch)``. The bundles are logged
        by the evaluate stage."""
        stop = dict(getattr(result, "stop", None) or {})
        if not stop:
            return
        tags = {f"train.stop_{k}": _param_value(v) for k, v in stop.items()}
        self._log(lambda: self.run.set_tags(tags))
        history = getattr(result, "history", None)
        if history is None or history.empty or float(history["epoch"].iloc[-1]).is_integer():
            return
        row = history.iloc[-1].to_dict()
        metrics = {
            history_metric_name(k): float(v)
            for k, v in row.items()
            if k not in ("epoch", "step") and isinstance(v, int | float) and math.isfinite(v)
        }
        self._log(lambda: self.run.log_metrics(metrics, step=math.ceil(row["epoch"])))
