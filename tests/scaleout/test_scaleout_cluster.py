"""Preprocessing as sample shards over Prefect's Dask and Ray task runners gives the local
run's files.

The preprocess stage runs once in this process and once through
:func:`flows.cluster.preprocess_on_cluster` on a local cluster of two workers (Dask
worker processes, or a Ray instance with two CPUs; each shard a Prefect task, reported to
a real ``prefect server``); every file under the two output folders must be byte for byte
the same.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from segcore.common.errors import ParamsError
from segcore.common.parallel import shards
from segcore.params import ClusterParams, Params, PreprocessParams, PreprocessStageParams

SHARD_SIZE = 5


def _params(dataset: Path, out_dir: str, cluster: ClusterParams, workers: int) -> Params:
    return Params(
        preprocess=PreprocessStageParams(
            dataset=str(dataset),
            out_dir=out_dir,
            workers=workers,
            param=PreprocessParams(image_width=48, image_height=48),
            cluster=cluster,
        )
    )


def _tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


@pytest.mark.slow
@pytest.mark.parametrize("runner", ["dask", "ray"])
def test_shards_on_a_local_cluster_write_the_same_bytes_as_a_local_run(
    runner: str,
    pills_split: Path,
    prefect_api: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        TaskRunFilter,
        TaskRunFilterFlowRunId,
    )
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect_dask import DaskTaskRunner
    from prefect_ray import RayTaskRunner

    from flows.cluster import SUBFLOW_NAME, cluster_task_runner, preprocess_on_cluster
    from segcore.pipeline.stages import run_preprocess

    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")  # the test machine stays offline
    local = run_preprocess(_params(pills_split, "local", ClusterParams(), 1), tmp_path)
    cluster = ClusterParams(runner=runner, shard_size=SHARD_SIZE)
    params = _params(pills_split, runner, cluster, 2)
    expected_runner = {"dask": DaskTaskRunner, "ray": RayTaskRunner}[runner]
    assert isinstance(cluster_task_runner(cluster, 2), expected_runner)
    with temporary_settings(updates={PREFECT_API_URL: prefect_api}):
        result = preprocess_on_cluster(params, tmp_path)
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[SUBFLOW_NAME]))
            )
            (subflow,) = [r for r in runs if r.parameters.get("root") == str(tmp_path)]
            tasks = client.read_task_runs(
                task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[subflow.id]))
            )
    n = len(local.value.dataset)
    assert result.value.written == n and local.value.written == n
    # Both passes (check labels, write samples) went out in shards, each a task.
    shard_runs = [t for t in tasks if t.name.startswith("preprocess-shard")]
    assert len(shard_runs) == 2 * len(shards(range(n), SHARD_SIZE))
    assert all(t.state is not None and t.state.is_completed() for t in shard_runs)
    ours, theirs = _tree(tmp_path / "local"), _tree(tmp_path / runner)
    assert len(ours) == n + 1  # the samples and dataset.parquet
    assert theirs.keys() == ours.keys()
    assert [name for name in ours if ours[name] != theirs[name]] == []


def test_shards_cut_jobs_in_order() -> None:
    assert shards(list(range(7)), 3) == [[0, 1, 2], [3, 4, 5], [6]]
    assert shards([], 3) == []
    with pytest.raises(ValueError, match="shard_size"):
        shards([1], 0)


def test_cluster_runner_settings_that_cannot_run_say_what_to_do(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from flows.cluster import cluster_task_runner

    with pytest.raises(ParamsError, match="set it to dask or ray"):
        cluster_task_runner(ClusterParams(), 1)
    monkeypatch.setitem(sys.modules, "prefect_ray", None)  # as if it were not installed
    with pytest.raises(ParamsError, match="pip install prefect-ray"):
        cluster_task_runner(ClusterParams(runner="ray"), 1)
