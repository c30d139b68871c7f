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

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from helpers import servers
from helpers.cli import run_segcore
from helpers.pipeline_repo import dvc, dvc_process, make_repo, set_params

from segcore.params import Params, TrackingParams
from segcore.tracking import run as tracking
from segcore.tracking.catch_up import catch_up
from segcore.tracking.store import StoreUnreachableError, check_store

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


# --------------------------------------------------------------------------- later on


def _dvc_may_fail(repo: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return dvc_process(repo, *args, env={**QUICK_CLIENT, **env})


def _server(folder: Path) -> servers.Server:
    """A tracking server on the store in ``folder``, on a new port each time."""
    return servers.mlflow_server(
        f"sqlite:///{(folder / 'mlflow.db').as_posix()}",
        folder / "artifacts",
        folder / "server.log",
    )


@pytest.fixture(scope="module")
def outage(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The server goes down in the middle of things; what was left behind.

    With the server up: an in-process run logs its first epoch (as training does), and
    ``dvc repro train`` trains a tiny model. Then the server stops: the in-process run logs
    its second epoch and ends; ``dvc repro`` goes on to evaluate and fails.
    """
    base = tmp_path_factory.mktemp("outage")
    repo = make_repo(base / "repo")
    set_params(repo / "params.yaml", {("train", "num_epochs"): 1})
    lost = base / "lost"
    history = lost / "reports" / "train_history.csv"
    history.parent.mkdir(parents=True)
    history.write_text("epoch,step,loss,val_mean_iou\n1,2,0.9,0.3\n2,4,0.7,0.4\n")
    server = _server(base)
    try:
        with pytest.MonkeyPatch.context() as mp:
            for key, value in QUICK_CLIENT.items():
                mp.setenv(key, value)
            mp.delenv("MLFLOW_TRACKING_URI", raising=False)
            with tracking.start_run(_params(server.url, "lost"), lost) as run:
                run.save(lost / "models" / tracking.RUN_FILE)
                callback = run.callback()
                callback.on_epoch_end(1, {"epoch": 1, "loss": 0.9, "val_mean_iou": 0.3})
                dvc(repo, "repro", "train", env={**QUICK_CLIENT, "MLFLOW_TRACKING_URI": server.url})
                server.stop()
                # The store is gone: training goes on, neither the epoch nor the end raises.
                callback.on_epoch_end(2, {"epoch": 2, "loss": 0.7, "val_mean_iou": 0.4})
        start = time.monotonic()
        failed = _dvc_may_fail(repo, "repro", env={"MLFLOW_TRACKING_URI": server.url})
        seconds = time.monotonic() - start
    finally:
        server.stop()
    return {
        "base": base,
        "repo": repo,
        "lost": lost,
        "lost_run": run.run_id,
        "callback": callback,
        "failed": failed,
        "failed_seconds": seconds,
        "train_run": json.loads((repo / "models" / tracking.RUN_FILE).read_text())["run_id"],
    }


@pytest.fixture(scope="module")
def back(outage: dict) -> Iterator[str]:
    """The server up again on the same store (another port); its URL."""
    server = _server(outage["base"])
    try:
        yield server.url
    finally:
        server.stop()


@pytest.mark.slow
def test_server_down_after_training_fails_fast_and_keeps_every_file(outage: dict) -> None:
    repo, failed = outage["repo"], outage["failed"]
    assert failed.returncode != 0
    assert outage["failed_seconds"] < 2 * FAST_FAIL_S
    output = failed.stdout + failed.stderr
    assert "does not answer" in output and "segcore register" in output
    for kept in ("models/best/model.safetensors", "reports/train_history.csv"):
        assert (repo / kept).is_file(), kept
    # calibrate, the first stage after train, wrote its files before it tried to log
    assert (repo / "calibrated/model.json").is_file()
    assert (repo / "reports/calibration/calibration.json").is_file()
    assert "up to date" in dvc(repo, "status", "--with-deps", "train")  # training recorded
    assert outage["callback"].lost is not None


@pytest.mark.slow
def test_run_lost_during_training_is_filled_in_from_the_history_file(
    outage: dict, back: str, quick_client: None
) -> None:
    lost, run_id = outage["lost"], outage["lost_run"]
    params = _params(back, "lost")
    with tracking.resume_run(params, lost, lost / "models" / tracking.RUN_FILE) as run:
        assert run.run_id == run_id
        assert run.client.get_run(run_id).info.status == "RUNNING"  # left open at the end
        assert catch_up(run, params, lost) == ["1 epochs of reports/train_history.csv"]
        assert catch_up(run, params, lost) == []  # nothing twice
    losses = run.client.get_metric_history(run_id, "train/loss")
    assert [(m.step, m.value) for m in losses] == [(1, 0.9), (2, 0.7)]
    assert run.client.get_run(run_id).info.status == "FINISHED"


@pytest.mark.slow
def test_register_later_logs_what_is_missing_and_the_pipeline_agrees(
    outage: dict, back: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    repo, run_id = outage["repo"], outage["train_run"]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", back)
    # The stages the outage stopped: calibrate (it failed to log) and evaluate, run again.
    for stage in ("calibrate", "evaluate"):
        done = run_segcore(stage, cwd=repo, timeout=300)
        assert done.returncode == 0, done.stderr
    registered = run_segcore("register", cwd=repo, timeout=300)
    assert registered.returncode == 0, registered.stderr
    registry = json.loads((repo / "reports/registry.json").read_text())
    assert registry["run_id"] == run_id and registry["version"] == "1"
    client = MlflowClient(back)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    metrics = json.loads((repo / "reports/metrics.json").read_text())
    assert run.data.metrics["test/mean_iou"] == pytest.approx(metrics["mean_iou"])
    assert client.get_model_version_by_alias("segcore-pills", "champion").run_id == run_id

    # The pipeline agrees: evaluate and register run again, with no second version.
    dvc(repo, "repro", env={"MLFLOW_TRACKING_URI": back})
    assert json.loads((repo / "reports/registry.json").read_text())["version"] == "1"
    assert "up to date" in dvc(repo, "status")
