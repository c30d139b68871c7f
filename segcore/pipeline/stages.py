"""Every pipeline stage by name: params -> the stage's function -> its files (+ tracking).

Each stage's glue lives in a module of its own (``stage_synth``, ``stage_dataset``, ...,
``stage_calibrate``, ``stage_register``), so a stage loads only the code
that decides its outputs (the code deps of its ``dvc.yaml`` entry) and the CLI starts fast.

``segcore <stage>`` (what ``dvc repro`` runs) and the Prefect flow's tasks both call these,
so a stage does the same thing however it is started. Each takes all of ``params.yaml``
(a :class:`~segcore.params.Params`, with any command-line overrides already applied) and
the folder that relative paths in it refer to (the repository root), and returns a
:class:`StageResult`: a summary line and the stage function's own result.

Train, calibrate, evaluate and register share one MLflow run (see :mod:`segcore.tracking.run`); ``tags``
adds tags to it, e.g. the id of the Prefect flow run that runs the stage.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from segcore.pipeline.result import StageResult
from segcore.pipeline.stage_calibrate import run_calibrate
from segcore.pipeline.stage_dataset import run_dataset
from segcore.pipeline.stage_evaluate import run_evaluate
from segcore.pipeline.stage_preprocess import run_preprocess
from segcore.pipeline.stage_register import run_register
from segcore.pipeline.stage_split import run_split
from segcore.pipeline.stage_synth import run_synth
from segcore.pipeline.stage_train import run_train

__all__ = [
    "STAGES",
    "TRACKED_STAGES",
    "StageResult",
    "run_calibrate",
    "run_dataset",
    "run_evaluate",
    "run_preprocess",
    "run_register",
    "run_split",
    "run_synth",
    "run_train",
]

STAGES: dict[str, Callable[..., StageResult[Any]]] = {
    "synth": run_synth,
    "dataset": run_dataset,
    "split": run_split,
    "preprocess": run_preprocess,
    "train": run_train,
    "calibrate": run_calibrate,
    "evaluate": run_evaluate,
    "register": run_register,
}
"""Every stage of ``dvc.yaml``, in pipeline order."""
TRACKED_STAGES = frozenset({"train", "calibrate", "evaluate", "register"})
"""Stages that log to MLflow and so take ``tags``."""
