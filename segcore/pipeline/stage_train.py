"""The ``train`` stage: params -> model bundles, checkpoint and history, tracked in MLflow."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from segcore.params import Params
from segcore.pipeline.result import StageResult, stage_path
from segcore.tracking import run as tracking
from segcore.train.launch import continues_launcher_run, launch, torchrun_rank
from segcore.train.loop import train_model


def run_train(
    params: Params,
    workdir: str | os.PathLike[str] = ".",
    *,
    tags: Mapping[str, str] | None = None,
    resume: bool = False,
) -> StageResult[Any]:
    """Train (``train`` section), tracked in an MLflow run whose id goes to
    ``<train.out_dir>/mlflow_run.json`` first thing.

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
    continued = resume or continues_launcher_run()
    start = (
        tracking.resume_run(params, workdir, run_file, tags=tags)
        if continued
        else tracking.start_run(params, workdir, tags=tags)
    )
    with start as run:
        run.save(run_file)
        if rank is None and p.nproc > 1:
            launch(p.nproc, Path(workdir), resume, params)
            return StageResult(f"Train: {p.nproc} processes (torchrun) -> {p.out_dir}", None)
        result = train_model(
            dataset,
            p,
            out_dir=out_dir,
            history_path=history,
            resume=resume,
            callbacks=[run.callback()],
        )
    best = "n/a" if result.best_value is None else f"{result.best_value:.4f}"
    written = ", ".join(str(path) for path in result.bundles.values()) or "none"
    return StageResult(
        f"Train: {len(result.history)} epochs, best {p.evaluation_comparison_key} {best} "
        f"(MLflow run {run.run_id}) -> {written}",
        result,
    )
