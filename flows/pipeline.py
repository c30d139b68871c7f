"""The pipeline as a Prefect flow: one task per stage of ``dvc.yaml``, each run only when DVC
calls it stale, and recorded in DVC's lock and cache as ``dvc repro`` would.

The flow holds DVC's repository lock from start to end (one pipeline run at a time per
repository), runs the stages in ``dvc.yaml`` order through :mod:`segcore.pipeline.stages`, tags
the MLflow run with the flow run id, and publishes two artifacts: the evaluation measures
as a table and the evaluation report as markdown. Tasks retry only on transient I/O
errors; training never retries. All computation lives in segcore.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from segcore.common.images import quiet_opencv
from segcore.params import Params, load_params
from segcore.pipeline.code import refresh_code_file
from segcore.pipeline.dvc_stage import (
    DvcPipeline,
    PipelineDefinitionError,
    StageOutcome,
    open_pipeline,
)
from segcore.pipeline.results import PipelineResults
from segcore.pipeline.stages import STAGES, TRACKED_STAGES, StageResult
from segcore.tracking.run import TAG_FLOW_RUN, find_repo_root, resolve_tracking_uri
from segcore.tracking.store import check_store

FLOW_NAME = "segmentation_pipeline"
NO_RETRY_STAGES = frozenset({"train"})
"""Stages never retried: training is long and is not repeated on a hunch."""
RETRIES = 2
RETRY_DELAY_S = 10

_PERMANENT_ERRNOS = {errno.ENOENT, errno.EEXIST, errno.EISDIR, errno.ENOTDIR, errno.EACCES}


def is_transient_io_error(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or an exception it was raised from) is I/O that may pass on retry:
    an ``OSError`` other than missing / existing / wrong-type / forbidden paths, or a
    locked SQLite database (the MLflow store under concurrent writers)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno not in _PERMANENT_ERRNOS:
            return not isinstance(exc, FileNotFoundError | PermissionError)
        if isinstance(exc, sqlite3.OperationalError) or "database is locked" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _retry_on_io(task: Any, task_run: Any, state: Any) -> bool:
    return is_transient_io_error(state.result(raise_on_failure=False))


def stage_function(stage: str, params: Params) -> Callable[..., StageResult[Any]]:
    """The segcore function of a stage; preprocess goes to a cluster when
    ``preprocess.cluster.runner`` is ``dask`` or ``ray`` (see :mod:`flows.cluster`)."""
    if stage == "preprocess" and params.preprocess.cluster.runner != "local":
        from .cluster import preprocess_on_cluster

        return preprocess_on_cluster
    return STAGES[stage]


class _Forward(logging.Handler):
    """Hands records of segcore's loggers to the task's run logger."""

    def __init__(self, target: logging.Logger | logging.LoggerAdapter) -> None:
        super().__init__(logging.INFO)
        self.target = target

    def emit(self, record: logging.LogRecord) -> None:
        self.target.log(record.levelno, "%s", record.getMessage())


@contextlib.contextmanager
def segcore_logs_to(target: logging.Logger | logging.LoggerAdapter) -> Iterator[None]:
    """While the body runs, segcore's INFO records (e.g. ``segcore.train``'s line per epoch)
    go to ``target``, the task's run logger: the flow run's log in Prefect's UI shows them.

    A handler bridge rather than Prefect's ``PREFECT_LOGGING_EXTRA_LOGGERS``, which is read
    once when Prefect sets up logging and so depends on the environment the worker had.
    """
    segcore_logger = logging.getLogger("segcore")
    handler, level = _Forward(target), segcore_logger.level
    propagate, segcore_logger.propagate = segcore_logger.propagate, False  # shown once
    segcore_logger.addHandler(handler)
    if segcore_logger.getEffectiveLevel() > logging.INFO:
        segcore_logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        segcore_logger.removeHandler(handler)
        segcore_logger.setLevel(level)
        segcore_logger.propagate = propagate


@task(
    cache_policy=NO_CACHE,
    persist_result=False,
    retries=RETRIES,
    retry_delay_seconds=RETRY_DELAY_S,
    retry_condition_fn=_retry_on_io,
)
def run_stage(
    pipeline: DvcPipeline, stage: str, params: Params, tags: dict[str, str]
) -> StageOutcome:
    """Run one stage when DVC calls it stale (see :meth:`DvcPipeline.run`)."""
    logger = get_run_logger()
    fn = stage_function(stage, params)
    kwargs = {"tags": tags} if stage in TRACKED_STAGES else {}
    with segcore_logs_to(logger):
        outcome, result = pipeline.run(stage, lambda: fn(params, pipeline.root, **kwargs))
    if outcome.status == "skipped":
        logger.info("%s: up to date, skipped", stage)
    else:
        logger.info(
            "%s: %s in %.1f s because %s",
            stage,
            outcome.status,
            outcome.seconds,
            "; ".join(outcome.reasons) or "it never ran",
        )
    if result is not None:
        logger.info("%s", result.summary)
    return outcome


@task(cache_policy=NO_CACHE, persist_result=False)
def publish_artifacts(params: Params, root: Path, outcomes: list[StageOutcome]) -> None:
    """The measures table and the markdown report, from the files the stages wrote."""
    results = PipelineResults.load(params, root)
    if results.measures:
        create_table_artifact(
            results.measure_rows(),
            key="segcore-evaluation-measures",
            description=f"{params.evaluate.split} measures (metrics.json)",
        )
    create_markdown_artifact(
        results.markdown(outcomes), key="segcore-report", description="Stages and report"
    )


def _check_stages(names: list[str], root: Path) -> None:
    unknown = [n for n in names if n not in STAGES]
    if unknown:
        raise PipelineDefinitionError(
            f"{root / 'dvc.yaml'}: stages {unknown} have no segcore stage function; the flow "
            f"runs only {list(STAGES)} (use `dvc repro` for other stages)"
        )


@flow(name=FLOW_NAME)
def segmentation_pipeline(repo: str = ".") -> dict[str, str]:
    """Run every stale stage of the repository's pipeline, in ``dvc.yaml`` order.

    Args:
        repo: a folder inside the repository (its DVC/git root is used).

    Returns:
        ``{stage: "ran" | "restored" | "skipped"}``.
    """
    quiet_opencv()  # unreadable files are reported by the stages, naming them
    root = find_repo_root(repo)
    # A project of `segcore init`: DVC must see the installed code's fingerprints.
    refresh_code_file(root)
    params = load_params(root / "params.yaml")
    # A tracking server that is down fails the run now, not after hours of work.
    check_store(resolve_tracking_uri(params.tracking, root), hint="No stage ran.")
    tags = {TAG_FLOW_RUN: str(flow_run.id)} if flow_run.id else {}
    outcomes: list[StageOutcome] = []
    with open_pipeline(root) as pipeline:
        names = pipeline.stage_names()
        _check_stages(names, root)
        for name in names:
            outcomes.append(
                run_stage.with_options(
                    name=name, retries=(0 if name in NO_RETRY_STAGES else RETRIES)
                )(pipeline, name, params, tags)
            )
    publish_artifacts(params, root, outcomes)
    return {o.stage: o.status for o in outcomes}
