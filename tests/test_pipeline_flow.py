"""The flow's wiring that needs no pipeline run: the schedule, the retry rule, stage names."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

import pytest

from flows.pipeline import is_transient_io_error
from flows.serve import build_deployment
from segcore.errors import DatasetError
from segcore.params import FlowParams, Params
from segcore.stages import STAGES


def test_served_deployment_runs_on_the_cron_of_params(tmp_path: Path) -> None:
    params = Params().model_copy(
        update={
            "flow": FlowParams(
                cron="30 2 * * 1-5", timezone="Europe/Berlin", deployment_name="weekdays"
            )
        }
    )
    deployment = build_deployment(params, tmp_path)
    assert deployment.name == "weekdays"
    (schedule,) = deployment.schedules
    assert schedule.schedule.cron == "30 2 * * 1-5"
    assert schedule.schedule.timezone == "Europe/Berlin"
    assert deployment.parameters == {"repo": str(tmp_path)}
    assert deployment.entrypoint == "flows.pipeline.segmentation_pipeline"


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (OSError(errno.EIO, "input/output error"), True),
        (TimeoutError("lock wait"), True),
        (ConnectionResetError(), True),
        (sqlite3.OperationalError("database is locked"), True),
        (FileNotFoundError(errno.ENOENT, "gone"), False),
        (PermissionError(errno.EACCES, "denied"), False),
        (DatasetError("data/x.png: not a readable image; re-export it"), False),
        (RuntimeError("a bug"), False),
        (None, False),
    ],
)
def test_only_transient_io_errors_are_retried(error: BaseException | None, retried: bool) -> None:
    assert is_transient_io_error(error) is retried


def test_io_error_behind_another_exception_is_retried() -> None:
    try:
        try:
            raise sqlite3.OperationalError("database is locked")
        except sqlite3.OperationalError as inner:
            raise RuntimeError("MLflow store failed") from inner
    except RuntimeError as outer:
        assert is_transient_io_error(outer)


def test_every_dvc_stage_has_a_segcore_function_and_existing_module_deps() -> None:
    import yaml

    dvc_yaml = yaml.safe_load((Path(__file__).resolve().parents[1] / "dvc.yaml").read_text())
    assert list(dvc_yaml["stages"]) == list(STAGES)
    root = Path(__file__).resolve().parents[1]
    for name, stage in dvc_yaml["stages"].items():
        assert stage["cmd"] == f"segcore {name}"
        modules = [d for d in stage["deps"] if d.startswith("segcore/")]
        assert modules, name
        missing = [m for m in modules if not (root / m).is_file()]
        assert not missing, f"{name}: {missing}"


def test_preprocess_goes_to_the_cluster_only_when_one_is_configured() -> None:
    from flows.cluster import preprocess_on_cluster
    from flows.pipeline import stage_function
    from segcore.params import ClusterParams

    params = Params()
    assert stage_function("preprocess", params) is STAGES["preprocess"]
    preprocess = params.preprocess.model_copy(update={"cluster": ClusterParams(runner="dask")})
    dask = params.model_copy(update={"preprocess": preprocess})
    assert stage_function("preprocess", dask) is preprocess_on_cluster
    assert stage_function("train", dask) is STAGES["train"]
