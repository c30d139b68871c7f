"""The ``register`` stage: the champion gate in the MLflow registry."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from segcore.common.constants import REGISTRY_FILE
from segcore.common.io import write_json_atomic
from segcore.params import Params
from segcore.pipeline.result import StageResult, stage_path
from segcore.tracking import run as tracking
from segcore.tracking.catch_up import catch_up
from segcore.tracking.register import register_model


def run_register(
    params: Params,
    workdir: str | os.PathLike[str] = ".",
    *,
    tags: Mapping[str, str] | None = None,
) -> StageResult[Any]:
    """Register the evaluated model and apply the champion gate (``register`` section);
    the decision goes to ``<evaluate.report_dir>/registry.json`` too. What the MLflow run
    lacks because its store was down (epochs, measures, model) is logged from the files
    first, so ``segcore register`` completes a run once the store is back."""
    run_file = stage_path(workdir, params.train.out_dir) / tracking.RUN_FILE
    with tracking.resume_run(params, workdir, run_file, tags=tags) as run:
        catch_up(run, params, workdir)
        result = register_model(run, params.registry, split=params.evaluate.split)
    write_json_atomic(
        stage_path(workdir, params.evaluate.report_dir) / REGISTRY_FILE,
        {**result.to_dict(), "run_id": run.run_id},
    )
    return StageResult(result.render(), result)
