"""The ``calibrate`` stage: the decision thresholds chosen on the validation split, written
into a copy of the bundle, and logged to the training's MLflow run."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from typing import Any

from segcore.data.dldataset import DLDataset
from segcore.evaluate.calibration import (
    CalibrationWarning,
    calibrate_decisions,
    write_calibration,
)
from segcore.infer.apply import load_model
from segcore.params import Params
from segcore.pipeline.result import StageResult, stage_path
from segcore.tracking import run as tracking


def run_calibrate(
    params: Params,
    workdir: str | os.PathLike[str] = ".",
    *,
    tags: Mapping[str, str] | None = None,
) -> StageResult[Any]:
    """Calibrate the decision rules (``decision`` section) of ``decision.calibration.bundle``
    on its split; write the calibrated bundle and the curves, and log the operating point,
    its rates and the thresholds (``calibration/*``) and the curves to the MLflow run."""
    d = params.decision
    c = d.calibration
    bundle = stage_path(workdir, c.bundle)
    model = load_model(bundle, device=c.device)
    ds = DLDataset.load(stage_path(workdir, c.dataset))
    with warnings.catch_warnings():  # the result lists them; the summary prints them
        warnings.simplefilter("ignore", CalibrationWarning)
        result = calibrate_decisions(model, ds, d)
    report_dir = stage_path(workdir, c.report_dir)
    out = write_calibration(result, d, bundle, stage_path(workdir, c.out_bundle), report_dir)
    run_file = stage_path(workdir, params.train.out_dir) / tracking.RUN_FILE
    with tracking.resume_run(params, workdir, run_file, tags=tags) as run:
        run.log_metrics(result.metrics())
        run.set_tags(
            {
                "calibration.target": c.target,
                "calibration.target_met": str(result.point.reachable).lower(),
                "calibration.split": c.split,
            }
        )
        run.log_artifacts(sorted(f for f in report_dir.iterdir() if f.is_file()), "calibration")
    return StageResult(f"{result.render()}\nCalibrated bundle: {out}", result)
