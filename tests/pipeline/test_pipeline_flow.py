"""The flow's wiring that needs no pipeline run: the schedule, the retry rule, stage names."""

from __future__ import annotations

import ast
import errno
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from flows.pipeline import is_transient_io_error
from flows.serve import build_deployment
from segcore.common.errors import DatasetError
from segcore.params import FlowParams, Params
from segcore.pipeline.code import NOT_OUTPUT_CODE as CODE_EXCLUDED
from segcore.pipeline.code import STAGE_MODULE, stage_code_files
from segcore.pipeline.stages import STAGES


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


ROOT = Path(__file__).resolve().parents[2]

NOT_OUTPUT_CODE = {
    f"segcore/{p.relative_to(ROOT / 'segcore').as_posix()}"
    for pattern in CODE_EXCLUDED
    for p in (ROOT / "segcore").glob(pattern)
}
"""Modules stages load that never decide the content of a stage's outputs (the list that
segcore's code fingerprints of a project's stages leave out too)."""


def _loaded_files(modules: list[str]) -> set[str]:
    """The segcore source files a fresh interpreter has loaded after importing ``modules``."""
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print('\\n'.join(m.__file__ for n, m in sys.modules.items() if n.startswith('segcore.')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    files = {Path(f).resolve().relative_to(ROOT).as_posix() for f in out.split()}
    return {f for f in files if not _only_docstring(ROOT / f)}


def _only_docstring(path: Path) -> bool:
    """A package's ``__init__.py`` that holds only its docstring decides nothing."""
    body = ast.parse(path.read_text()).body
    return len(body) == 1 and isinstance(body[0], ast.Expr)


def test_every_dvc_stage_runs_its_segcore_function() -> None:
    dvc_yaml = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    assert list(dvc_yaml["stages"]) == list(STAGES)
    for name, stage in dvc_yaml["stages"].items():
        assert stage["cmd"] == f"segcore {name}"


@pytest.mark.parametrize("stage", list(STAGES))
def test_dvc_stage_deps_are_the_code_that_decides_its_outputs(stage: str) -> None:
    """A module a stage loads but does not list would change its outputs without DVC
    noticing (a stale stage reported up to date); a listed module it does not load would
    re-run it for nothing."""
    deps = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][stage]["deps"]
    listed = {d for d in deps if d.startswith("segcore/")}
    loaded = _loaded_files([STAGES[stage].__module__])
    assert sorted(loaded - NOT_OUTPUT_CODE - listed) == [], "add these to the stage's deps"
    assert sorted(listed - loaded) == [], "the stage does not load these"
    assert all((ROOT / m).is_file() for m in listed)


@pytest.mark.parametrize("stage", list(STAGES))
def test_project_code_fingerprint_covers_the_stage_deps(stage: str) -> None:
    """A project of `segcore init` fingerprints, per stage, the modules this repository's
    dvc.yaml lists (found from the imports, without loading them)."""
    assert STAGES[stage].__module__ == STAGE_MODULE.format(stage)
    deps = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][stage]["deps"]
    listed = sorted(d.removeprefix("segcore/") for d in deps if d.startswith("segcore/"))
    assert stage_code_files(stage, ROOT / "segcore") == listed


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
