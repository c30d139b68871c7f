"""Preprocessing on a cluster: shards of samples as Prefect tasks on a Dask or Ray task runner.

With ``preprocess.cluster.runner: dask`` (or ``ray``) in params.yaml, the pipeline flow runs
the preprocess stage as the subflow :func:`preprocess_shards`, whose task runner sends the
stage's per-sample jobs, cut into shards of ``preprocess.cluster.shard_size``, to the
cluster at ``preprocess.cluster.address`` (or to a local cluster of ``preprocess.workers``
processes started for the run). Both passes of the stage go there; this process alone
computes the class weights and writes ``dataset.parquet`` at the end, so the files are
byte-identical to a local run (see :mod:`segcore.preprocess.stage`). The cluster's workers need
segcore installed and the data paths mounted where this process sees them.

(Not ``flows/distributed.py``: were ``flows/pipeline.py`` ever loaded by its path, ``flows/``
would be on ``sys.path``, where such a module would shadow Dask's ``distributed``.)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import TaskRunner

from segcore.common.errors import ParamsError
from segcore.common.parallel import JobMap, resolve_workers, run_shard, shards
from segcore.common.progress import make_progress
from segcore.params import ClusterParams, Params
from segcore.pipeline.stages import StageResult
from segcore.pipeline.stages import run_preprocess as preprocess_stage
from segcore.preprocess.jobs import init_worker

J = TypeVar("J")
R = TypeVar("R")

SUBFLOW_NAME = "preprocess-shards"


@task(name="preprocess-shard", cache_policy=NO_CACHE, persist_result=False)
def shard_task(
    fn: Callable[[J], R], shard: Sequence[J], initializer: Callable[[], None] | None = None
) -> list[R]:
    """One shard of jobs on a cluster worker (:func:`segcore.common.parallel.run_shard`)."""
    return run_shard(fn, shard, initializer)


def task_job_map(shard_size: int, initializer: Callable[[], None] | None = init_worker) -> JobMap:
    """A :class:`~segcore.common.parallel.JobMap` that submits shards of ``shard_size`` jobs as
    :func:`shard_task` runs to the task runner of the flow it is called in."""

    def map_jobs(fn: Callable[[J], R], jobs: Sequence[J], description: str) -> Iterator[R]:
        futures = [shard_task.submit(fn, shard, initializer) for shard in shards(jobs, shard_size)]
        with make_progress() as progress:
            bar = progress.add_task(description, total=len(jobs))
            for future in futures:
                results = future.result()
                yield from results
                progress.advance(bar, len(results))

    return map_jobs


def cluster_task_runner(cluster: ClusterParams, workers: int) -> TaskRunner:
    """The task runner for ``preprocess.cluster``: Dask or Ray, at ``address`` or local.

    A local Dask cluster has ``workers`` processes (0: one per CPU core) of one thread
    each, listening on loopback only, without a dashboard; a local Ray instance gets
    ``workers`` CPUs (so as many shards at once), without a dashboard.

    Raises:
        ParamsError: ``runner`` is ``local`` (nothing to run on), or ``ray`` without
            prefect-ray installed.
    """
    if cluster.runner == "dask":
        from prefect_dask import DaskTaskRunner

        if cluster.address:
            return DaskTaskRunner(address=cluster.address)
        return DaskTaskRunner(
            cluster_class="distributed.LocalCluster",
            cluster_kwargs={
                "n_workers": resolve_workers(workers),
                "processes": True,
                "threads_per_worker": 1,
                "host": "127.0.0.1",
                "dashboard_address": None,
            },
        )
    if cluster.runner == "ray":
        try:
            from prefect_ray import RayTaskRunner  # type: ignore[import-not-found]
        except ImportError:
            raise ParamsError(
                "preprocess.cluster.runner is ray but prefect-ray is not installed; run "
                "`.venv/bin/pip install prefect-ray` or use runner: dask"
            ) from None
        if cluster.address:
            return RayTaskRunner(address=cluster.address)
        return RayTaskRunner(
            init_kwargs={"num_cpus": resolve_workers(workers), "include_dashboard": False}
        )
    raise ParamsError(
        "preprocess.cluster.runner is local: the stage runs in local worker processes; "
        "set it to dask or ray to use a cluster"
    )


@flow(name=SUBFLOW_NAME, persist_result=False, validate_parameters=False)
def preprocess_shards(params: Params, root: str) -> StageResult[Any]:
    """The preprocess stage with its sample jobs as shards on this flow's task runner
    (set by :func:`preprocess_on_cluster`)."""
    map_jobs = task_job_map(params.preprocess.cluster.shard_size)
    return preprocess_stage(params, root, map_jobs=map_jobs)


def preprocess_on_cluster(params: Params, workdir: str | Path = ".") -> StageResult[Any]:
    """Run the preprocess stage on the cluster of ``preprocess.cluster``: the stage function
    the pipeline flow uses in place of :func:`segcore.pipeline.stages.run_preprocess`."""
    runner = cluster_task_runner(params.preprocess.cluster, params.preprocess.workers)
    with _outside_task_run():
        return preprocess_shards.with_options(task_runner=runner)(params, str(workdir))


@contextlib.contextmanager
def _outside_task_run() -> Iterator[None]:
    """Hide the calling task's run context (the pipeline's stage task) while the subflow
    runs: task runners send that context along with every shard, and its parameters (the
    open DVC repository) cannot travel to other processes. The subflow stays a child of
    the pipeline's flow run."""
    from prefect.context import TaskRunContext

    token = TaskRunContext.__var__.set(None)
    try:
        yield
    finally:
        TaskRunContext.__var__.reset(token)
