"""MLflow run records of the train stage against a real sqlite store: a refused resume
keeps the run FINISHED, killed runs become KILLED when found, and the run file names the
run that owns the checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

from segcore.common.errors import ParamsError
from segcore.params import Params, TrackingParams, TrainParams, dump_params
from segcore.pipeline.stage_train import run_train
from segcore.tracking import run as tracking


@pytest.fixture(autouse=True)
def _no_env_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def _params(uri: str, dataset: Path, tmp_path: Path, **train: Any) -> Params:
    values: dict[str, Any] = {
        "dataset": str(dataset),
        "out_dir": str(tmp_path / "models"),
        "history": str(tmp_path / "reports" / "train_history.csv"),
        "model_kwargs": {"base_channels": 8, "depth": 2},
        "batch_size": 4,
        "learning_rate": 0.01,
        "num_epochs": 1,
        "device": "cpu",
        "num_threads": 1,
    }
    tracking_params = TrackingParams(tracking_uri=uri, experiment_name="test-train-runs")
    return Params().model_copy(
        update={"tracking": tracking_params, "train": TrainParams(**(values | train))}
    )


def _kill_train_once_started(
    params: Params, tmp_path: Path, sig: signal.Signals = signal.SIGKILL
) -> str:
    """Start `segcore train` in a process and send it ``sig`` as soon as it names its new
    run (before its first checkpoint); returns that run's id."""
    run_file = tmp_path / "models" / tracking.RUN_FILE
    before = run_file.read_text() if run_file.exists() else ""
    params_file = tmp_path / "params-kill.yaml"
    params_file.write_text(dump_params(params))
    proc = subprocess.Popen(
        [sys.executable, "-m", "segcore.cli", "train", "--params", str(params_file)],
        cwd=tmp_path,
        env={**os.environ, "SEGCORE_PROGRESS": "0"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (
            not run_file.exists() or run_file.read_text() == before
        ):
            assert proc.poll() is None, "training ended before it could be killed"
            time.sleep(0.005)
        proc.send_signal(sig)
        assert proc.wait(timeout=60) == (143 if sig == signal.SIGTERM else -sig)
    finally:
        proc.kill()
        proc.wait()
    ref = json.loads(run_file.read_text())
    return str(ref.get("started_run_id") or ref["run_id"])


def test_refused_resume_kills_and_run_file_consistency(
    mlflow_uri: str, pills_preprocessed: Path, tmp_path: Path
) -> None:
    client = MlflowClient(mlflow_uri)
    params = _params(mlflow_uri, pills_preprocessed, tmp_path)
    checkpoint = tmp_path / "models" / "checkpoint.pt"
    run_file = tmp_path / "models" / tracking.RUN_FILE
    first = run_train(params, tmp_path).value
    owner = json.loads(run_file.read_text())["run_id"]
    assert first is not None and client.get_run(owner).info.status == "FINISHED"

    with pytest.raises(ParamsError, match="already trained 1 of num_epochs 1"):
        run_train(params, tmp_path, resume=True)
    assert client.get_run(owner).info.status == "FINISHED"  # the champion's run stays

    slow = _params(
        mlflow_uri, pills_preprocessed, tmp_path, num_epochs=5, model_kwargs={"base_channels": 32}
    )
    stamp = checkpoint.read_bytes()
    killed = _kill_train_once_started(slow, tmp_path)
    assert killed != owner
    assert client.get_run(killed).info.status == "RUNNING"
    assert checkpoint.read_bytes() == stamp  # killed before its first checkpoint...
    assert json.loads(run_file.read_text())["run_id"] == owner  # ...so the owner stays

    resumed = _params(mlflow_uri, pills_preprocessed, tmp_path, num_epochs=2)
    result = run_train(resumed, tmp_path, resume=True).value
    assert list(result.history["epoch"]) == [1, 2]
    assert client.get_run(killed).info.status == "KILLED"
    assert client.get_run(owner).info.status == "FINISHED"
    assert json.loads(run_file.read_text()) == {
        "run_id": owner,
        "experiment_id": client.get_run(owner).info.experiment_id,
    }

    killed_again = _kill_train_once_started(slow, tmp_path)
    assert client.get_run(killed_again).info.status == "RUNNING"
    run_train(params, tmp_path)  # a new training finds the killed run
    assert client.get_run(killed_again).info.status == "KILLED"
    new_owner = json.loads(run_file.read_text())["run_id"]
    assert new_owner not in (owner, killed_again)
    assert client.get_run(new_owner).info.status == "FINISHED"


def test_sigterm_marks_the_run_killed(
    mlflow_uri: str, pills_preprocessed: Path, tmp_path: Path
) -> None:
    slow = _params(
        mlflow_uri, pills_preprocessed, tmp_path, num_epochs=5, model_kwargs={"base_channels": 32}
    )
    killed = _kill_train_once_started(slow, tmp_path, signal.SIGTERM)
    assert MlflowClient(mlflow_uri).get_run(killed).info.status == "KILLED"
