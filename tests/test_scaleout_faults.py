"""An MLflow tracking server that is down loses nothing.

- down at the start of a run: the run fails within seconds, before training, saying what
  to do;
- lost during training: training goes on; the run is filled in later from the files;
- down after training: evaluate fails with the same message, while the model, history and
  measures stay on disk (and the trained stage stays recorded in DVC); once the server is
  back, ``segcore register`` logs what is missing and registers, and ``dvc repro`` agrees.

The server is a real ``mlflow server`` on a sqlite backend, stopped and started again on
the same store. MLflow's client is told to retry once only, to keep the test short (by
default it retries for minutes, which a real run wants for a short outage).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import servers
import yaml
from conftest import run_segcore
from test_pipeline import _dvc, _set, make_repo

from segcore import tracking
from segcore.params import Params, TrackingParams
from segcore.tracking_recovery import StoreUnreachableError, catch_up, check_store

FAST_FAIL_S = 30.0
"""A generous bound for failing fast: imports take most of it on a busy machine."""
QUICK_CLIENT = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0"}


def _dead_url() -> str:
    return f"http://127.0.0.1:{servers.free_port()}"


@pytest.fixture
def quick_client(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in QUICK_CLIENT.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tracking server's backend store and artifact folder, kept across restarts."""
    folder = tmp_path_factory.mktemp("faults_store")
    return {"folder": folder}


@contextlib.contextmanager
def _server(store: dict[str, Path]) -> Iterator[servers.Server]:
    folder = store["folder"]
    server = servers.mlflow_server(
        f"sqlite:///{(folder / 'mlflow.db').as_posix()}",
        folder / "artifacts",
        folder / "server.log",
    )
    try:
        yield server
    finally:
        server.stop()


def _params(uri: str, name: str) -> Params:
    return Params().model_copy(
        update={"tracking": TrackingParams(tracking_uri=uri, experiment_name=f"faults-{name}")}
    )


# --------------------------------------------------------------------------- at the start


def test_store_check_is_quick_and_names_the_fix() -> None:
    dead = _dead_url()
    start = time.monotonic()
    with pytest.raises(StoreUnreachableError) as err:
        check_store(dead, hint="Nothing was trained.")
    assert time.monotonic() - start < 5
    message = str(err.value)
    assert dead in message and "MLFLOW_TRACKING_URI" in message and "Nothing was trained" in message
    with pytest.raises(StoreUnreachableError, match=r"postgresql://segcore:\*\*\*@127"):
        check_store(f"postgresql://segcore:secret@127.0.0.1:{servers.free_port()}/mlflow")
    check_store("sqlite:////nonexistent/folder/mlflow.db")  # local stores are not checked


def test_training_against_a_dead_server_fails_fast_before_training(
    pills_preprocessed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    params_file = tmp_path / "params.yaml"
    train = {"dataset": str(pills_preprocessed), "num_epochs": 1, "out_dir": "models"}
    params_file.write_text(yaml.safe_dump({"train": train}))
    dead = _dead_url()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", dead)
    start = time.monotonic()
    done = run_segcore("train", "-p", params_file, cwd=tmp_path, timeout=120)
    assert time.monotonic() - start < FAST_FAIL_S
    assert done.returncode == 2, done.stderr
    assert dead in done.stderr and "does not answer" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "models").exists()  # nothing trained, nothing written


@pytest.mark.slow
def test_flow_against_a_dead_server_fails_before_any_stage(
    prefect_api: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.pipeline import segmentation_pipeline

    repo = make_repo(tmp_path / "repo")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", _dead_url())
    with temporary_settings(updates={PREFECT_API_URL: prefect_api}):
        state = segmentation_pipeline(repo=str(repo), return_state=True)
    assert state.is_failed()
    assert "does not answer" in str(state.result(raise_on_failure=False))
    assert not (repo / "data" / "raw").exists() and not (repo / "dvc.lock").exists()


# --------------------------------------------------------------------------- during training


@pytest.mark.slow
def test_server_lost_during_training_then_the_run_is_filled_in_from_disk(
    store: dict[str, Path], tmp_path: Path, quick_client: None
) -> None:
    history = tmp_path / "reports" / "train_history.csv"
    history.parent.mkdir()
    history.write_text("epoch,step,loss,val_mean_iou\n1,2,0.9,0.3\n2,4,0.7,0.4\n")
    run_file = tmp_path / "models" / tracking.RUN_FILE
    with _server(store) as server:
        params = _params(server.url, "lost")
        with tracking.start_run(params, tmp_path) as run:
            run.save(run_file)
            callback = run.callback()
            callback.on_epoch_end(1, {"epoch": 1, "loss": 0.9, "val_mean_iou": 0.3})
            server.stop()
            # The store is gone: training must go on, neither the epoch nor the end raises.
            callback.on_epoch_end(2, {"epoch": 2, "loss": 0.7, "val_mean_iou": 0.4})
    assert callback.lost is not None

    with _server(store) as server:  # back, on another port, with the same store
        params = _params(server.url, "lost")
        with tracking.resume_run(params, tmp_path, run_file) as again:
            assert again.run_id == run.run_id
            assert again.client.get_run(run.run_id).info.status == "RUNNING"  # left open
            done = catch_up(again, params, tmp_path)
            assert done == ["1 epochs of reports/train_history.csv"]
            assert catch_up(again, params, tmp_path) == []  # nothing twice
        losses = again.client.get_metric_history(run.run_id, "train/loss")
        assert [(m.step, m.value) for m in losses] == [(1, 0.9), (2, 0.7)]
        assert again.client.get_run(run.run_id).info.status == "FINISHED"


# --------------------------------------------------------------------------- after training


def _dvc_may_fail(repo: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    full = {**os.environ, **QUICK_CLIENT, **env}
    full["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{full['PATH']}"
    return subprocess.run(
        [sys.executable, "-m", "dvc", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        env=full,
        timeout=600,
        check=False,
    )


@pytest.mark.slow
def test_server_down_after_training_then_register_later_loses_nothing(
    store: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    repo = make_repo(tmp_path / "repo")
    _set(repo / "params.yaml", {("train", "num_epochs"): 1})
    with _server(store) as server:
        env = {"MLFLOW_TRACKING_URI": server.url}
        _dvc(repo, "repro", "train", env={**QUICK_CLIENT, **env})
    run_id = json.loads((repo / "models" / tracking.RUN_FILE).read_text())["run_id"]

    start = time.monotonic()
    failed = _dvc_may_fail(repo, "repro", env=env)  # the server is down now
    assert failed.returncode != 0
    assert time.monotonic() - start < 2 * FAST_FAIL_S
    output = failed.stdout + failed.stderr
    assert "does not answer" in output and "segcore register" in output
    for kept in ("models/best/model.safetensors", "reports/train_history.csv"):
        assert (repo / kept).is_file(), kept
    assert (repo / "reports/metrics.json").is_file()  # evaluated before it tried to log
    assert "up to date" in _dvc(repo, "status", "--with-deps", "train")

    with _server(store) as server:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
        registered = run_segcore("register", cwd=repo, timeout=300)
        assert registered.returncode == 0, registered.stderr
        registry = json.loads((repo / "reports/registry.json").read_text())
        assert registry["run_id"] == run_id and registry["version"] == "1"
        client = MlflowClient(server.url)
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED"
        metrics = json.loads((repo / "reports/metrics.json").read_text())
        assert run.data.metrics["test/mean_iou"] == pytest.approx(metrics["mean_iou"])
        assert client.get_model_version_by_alias("segcore-pills", "champion").run_id == run_id

        # The pipeline agrees: evaluate and register run again, with no second version.
        _dvc(repo, "repro", env={"MLFLOW_TRACKING_URI": server.url})
        assert json.loads((repo / "reports/registry.json").read_text())["version"] == "1"
        assert "up to date" in _dvc(repo, "status")
