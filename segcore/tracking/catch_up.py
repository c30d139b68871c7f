"""Catching up: a run that lost its store logs later what the files on disk hold.

:func:`catch_up` brings the run up to date from the files on disk (per-epoch history,
evaluation measures and report, the logged model); ``segcore register`` calls it before
registering. Each step first looks whether the run already has what it would log, so
repeating it changes nothing. (Store health: :mod:`segcore.tracking.store`.)
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pandas as pd

from segcore.common.constants import METRICS_FILE, REGISTRY_FILE
from segcore.params import Params
from segcore.tracking.names import history_metric_name, metric_name
from segcore.tracking.run import MODEL_NAME, TrackedRun, TrackingError

log = logging.getLogger(__name__)


def catch_up(run: TrackedRun, params: Params, root: str | os.PathLike[str]) -> list[str]:
    """Log to ``run`` what the files on disk hold and the run lacks; returns what was logged.

    1. epochs of ``train.history`` whose ``train/loss`` is not in the run;
    2. the measures of ``<evaluate.report_dir>/metrics.json`` and the report files, when the
       run has no ``<evaluate.split>/<register.comparison_key>`` yet;
    3. the bundle ``evaluate.bundle`` as the run's model, when it has none.

    Raises:
        segcore.tracking.run.TrackingError: ``metrics.json`` is older than the run (it belongs
            to an earlier model): run ``segcore evaluate`` first.
    """
    root = Path(root)
    done = []
    history = root / params.train.history
    if history.is_file():
        n = _catch_up_history(run, history)
        if n:
            done.append(f"{n} epochs of {params.train.history}")
    report_dir = root / params.evaluate.report_dir
    if _catch_up_evaluation(run, params, report_dir):
        done.append(f"the measures and report of {params.evaluate.report_dir}")
    if not _has_model(run):
        bundle = root / params.evaluate.bundle
        if bundle.is_dir():
            run.log_model(bundle)
            done.append(f"the model {params.evaluate.bundle}")
    if done:
        log.info("MLflow run %s caught up with %s", run.run_id, "; ".join(done))
    return done


def _catch_up_history(run: TrackedRun, history: Path) -> int:
    logged = {m.step for m in run.client.get_metric_history(run.run_id, "train/loss")}
    rows = pd.read_csv(history).to_dict("records")
    missing = [r for r in rows if int(r["epoch"]) not in logged]
    for row in missing:
        run.log_metrics(
            {history_metric_name(k): v for k, v in row.items() if k not in ("epoch", "step")},
            step=int(row["epoch"]),
        )
    return len(missing)


def _catch_up_evaluation(run: TrackedRun, params: Params, report_dir: Path) -> bool:
    split = params.evaluate.split
    found = run.client.get_run(run.run_id)
    metrics_file = report_dir / METRICS_FILE
    if metric_name(split, params.registry.comparison_key) in found.data.metrics:
        return False
    if not metrics_file.is_file():
        return False
    if metrics_file.stat().st_mtime * 1000 < found.info.start_time:
        raise TrackingError(
            f"{metrics_file}: older than MLflow run {run.run_id} (it measured an earlier "
            "model); run `segcore evaluate` first, then `segcore register`"
        )
    run.log_evaluation(split, json.loads(metrics_file.read_text(encoding="utf-8")))
    run.log_artifacts(
        sorted(f for f in report_dir.iterdir() if f.is_file() and f.name != REGISTRY_FILE),
        "reports",
    )
    return True


def _has_model(run: TrackedRun) -> bool:
    return bool(
        run.client.search_logged_models(
            experiment_ids=[run.experiment_id],
            filter_string=f"source_run_id = '{run.run_id}' AND name = '{MODEL_NAME}'",
            max_results=1,
        )
    )
