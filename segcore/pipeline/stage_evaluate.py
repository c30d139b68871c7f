"""The ``evaluate`` stage: params -> measures and report, logged to the training's run."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from segcore.common.constants import METRICS_FILE, REGISTRY_FILE
from segcore.data.dldataset import DLDataset
from segcore.evaluate.evaluation import evaluate_model
from segcore.evaluate.report import write_evaluation_report
from segcore.infer.apply import load_model
from segcore.params import Params
from segcore.pipeline.result import StageResult, stage_path
from segcore.tracking import run as tracking


def run_evaluate(
    params: Params,
    workdir: str | os.PathLike[str] = ".",
    *,
    tags: Mapping[str, str] | None = None,
) -> StageResult[Any]:
    """Evaluate the bundle on a split and write the report (``evaluate`` section); log the
    measures, the report files and the bundle (as a servable model) to the training's run."""
    p = params.evaluate
    ds = DLDataset.load(stage_path(workdir, p.dataset))
    bundle = stage_path(workdir, p.bundle)
    # The bundle's decision rules; a bundle without them is judged by the decision section.
    model = load_model(bundle, device=p.device, decision=params.decision)
    result = evaluate_model(
        model,
        ds,
        split=p.split,
        measures=p.measures,
        batch_size=p.batch_size,
        device=p.device,
        keep_worst=p.worst_k,
        resolution=p.resolution,
        tile_overlap=p.tile_overlap,
    )
    report_dir = stage_path(workdir, p.report_dir)
    report = write_evaluation_report(
        result,
        ds,
        report_dir,
        history_path=stage_path(workdir, params.train.history),
        worst_k=p.worst_k,
        model=model,
    )
    run_file = stage_path(workdir, params.train.out_dir) / tracking.RUN_FILE
    with tracking.resume_run(params, workdir, run_file, tags=tags) as run:
        measures = json.loads((report_dir / METRICS_FILE).read_text(encoding="utf-8"))
        run.log_evaluation(result.split, measures)
        run.log_artifacts(
            sorted(f for f in report_dir.iterdir() if f.is_file() and f.name != REGISTRY_FILE),
            "reports",
        )
        run.log_model(bundle)
    return StageResult(f"{result.render()}\nReport: {report}", result)
