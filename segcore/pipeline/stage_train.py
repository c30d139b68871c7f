"""The ``train`` stage: params -> model bundles, checkpoint and history, tracked in MLflow."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from segcore.params import Params
from segcore.pipeline.result import StageResult, stage_path
from segcore.tracking import run as tracking
from segcore.train.launch import launch, launcher_run_id, torchrun_rank
from segcore.train.loop import train_model


def run_train(
    params: Params,
    workdir: str | os.PathLike[str] = ".",
    *,
    tags: Mapping[str, str] | None = None,
    resume: bool = False,
) -> StageResult[Any]:
    """Train (``train`` section), tracked in an MLflow run.

    ``<train.out_dir>/mlflow_run.json`` (segcore.tracking.run_file) names the run that owns
    the checkpoint: a new run is recorded there as started first thing, and as the owner
    right after its first checkpoint, so a kill before that leaves the previous run's id
    beside the previous checkpoint. Runs the file names that a killed process left
    RUNNING are marked KILLED by the next training or ``--resume``. A refused ``--resume``
    (e.g. all epochs trained already) leaves the run's status as it was.

    With ``train.nproc > 1`` (and not already under ``torchrun``) the ranks are started
    with ``torchrun``; each runs ``segcore train``, and rank 0 logs into this run. Under
    ``torchrun`` only rank 0 tracks.

    Args:
        resume: continue training from the checkpoint in ``train.out_dir``, and its
            MLflow run.
    """
    p = params.train
    out_dir = stage_path(workdir, p.out_dir)
    run_file = out_dir / tracking.RUN_FILE
    dataset = stage_path(workdir, p.dataset)
    history = stage_path(workdir, p.history)
    rank = torchrun_rank()
    if rank not in (None, 0):  # a torchrun worker: trains its share, rank 0 reports
        return StageResult(
            "", train_model(dataset, p, out_dir=out_dir, history_path=history, resume=resume)
        )
    launcher_run = launcher_run_id()
    launching = rank is None and p.nproc > 1
    start = _open_run(params, workdir, run_file, tags, resume, launcher_run)
    with start as run:
        if launching:  # the ranks train; rank 0 logs into this run
            launch(p.nproc, Path(workdir), resume, params, run.run_id)
            return StageResult(f"Train: {p.nproc} processes (torchrun) -> {p.out_dir}", None)
        result = train_model(
            dataset,
            p,
            out_dir=out_dir,
            history_path=history,
            resume=resume,
            callbacks=[run.callback(run_file)],
        )
    best = "n/a" if result.best_value is None else f"{result.best_value:.4f}"
    written = ", ".join(str(path) for path in result.bundles.values()) or "none"
    reason, epochs = result.stop.get("reason", "num_epochs"), result.stop.get("epoch", 0)
    stopped = "" if reason == "num_epochs" else f", stopped by train.{_STOP_KEYS[reason]}"
    return StageResult(
        f"Train: {epochs:g} epochs{stopped}, best {p.evaluation_comparison_key} "
        f"{best} (MLflow run {run.run_id}) -> {written}",
        result,
    )


_STOP_KEYS = {"time_budget": "time_budget", "early_stopping": "early_stopping_patience"}
"""The train key behind each early stop reason (segcore.train.stopping)."""


def _open_run(
    params: Params,
    workdir: str | os.PathLike[str],
    run_file: Path,
    tags: Mapping[str, str] | None,
    resume: bool,
    launcher_run: str | None,
) -> contextlib.AbstractContextManager[tracking.TrackedRun]:
    """The MLflow run of this training: the launcher's (a torchrun rank 0), the one in the
    run file (``--resume``; its status changes only once training starts), or a new one,
    recorded in the run file as started."""
    if resume or launcher_run:
        return tracking.resume_run(
            params,
            workdir,
            run_file,
            tags=tags,
            run_id=launcher_run,
            lazy=resume,
            close_others=launcher_run is None,
        )
    return _started(tracking.start_run(params, workdir, tags=tags, run_file=run_file), run_file)


@contextlib.contextmanager
def _started(
    start: contextlib.AbstractContextManager[tracking.TrackedRun], run_file: Path
) -> Iterator[tracking.TrackedRun]:
    with start as run:
        run.save_started(run_file)
        yield run
