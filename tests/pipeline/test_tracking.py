"""segcore.tracking.run against a real sqlite MLflow store in a temporary folder."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from segcore.params import Params, TrackingParams, flatten
from segcore.tracking import run as tracking
from segcore.tracking.lineage import lineage_tags


@pytest.fixture(autouse=True)
def _no_env_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def _params(uri: str, experiment: str) -> Params:
    return Params().model_copy(
        update={"tracking": TrackingParams(tracking_uri=uri, experiment_name=experiment)}
    )


def test_tracking_uri_default_is_absolute_sqlite_in_the_repo_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = tracking.resolve_tracking_uri(TrackingParams(), tmp_path)
    assert uri == f"sqlite:///{tmp_path.resolve().as_posix()}/mlflow.db"
    relative = TrackingParams(tracking_uri="sqlite:///stores/runs.db")
    assert tracking.resolve_tracking_uri(relative, tmp_path) == (
        f"sqlite:///{tmp_path.resolve().as_posix()}/stores/runs.db"
    )
    server = TrackingParams(tracking_uri="http://mlflow:5000")
    assert tracking.resolve_tracking_uri(server, tmp_path) == "http://mlflow:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://elsewhere:5000")
    assert tracking.resolve_tracking_uri(relative, tmp_path) == "http://elsewhere:5000"


def test_repo_root_is_found_from_a_subfolder(tmp_path: Path) -> None:
    (tmp_path / ".dvc").mkdir()
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    assert tracking.find_repo_root(sub) == tmp_path.resolve()


def test_params_are_logged_under_their_yaml_keys() -> None:
    logged = tracking.params_to_log(Params())
    assert logged["register.model_name"] == "segcore-pills"
    assert logged["train.augmentation.mirror"] == "rc"
    assert logged["preprocess.param.image_width"] == 256
    assert len(logged) == len(flatten(Params()))
    assert not any(k.startswith("registry.") for k in logged)


def test_lineage_tags_come_from_git_and_dvc_lock(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "dvc.lock").write_text(
        yaml.safe_dump(
            {
                "schema": "2.0",
                "stages": {
                    "dataset": {
                        "deps": [
                            {"path": "data/raw/pills/images", "md5": "aaa.dir"},
                            {"path": "data/raw/pills/labels", "md5": "bbb.dir"},
                        ],
                        "outs": [{"path": "data/dataset/dataset.parquet", "md5": "ccc"}],
                    },
                    "split": {"outs": [{"path": "data/dataset/split.parquet", "md5": "ddd"}]},
                    "preprocess": {"outs": [{"path": "data/preprocessed", "md5": "eee.dir"}]},
                },
            }
        )
    )
    subprocess.run(
        [
            "git",
            "-c",
            "user.email=t@e",
            "-c",
            "user.name=t",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "x",
        ],
        cwd=tmp_path,
        check=True,
    )
    tags = lineage_tags(Params(), tmp_path)
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert tags == {
        "mlflow.source.git.commit": head,
        "git.dirty": "false",
        "dvc.raw_images.md5": "aaa.dir",
        "dvc.raw_labels.md5": "bbb.dir",
        "dvc.dataset.md5": "ddd",
        "dvc.preprocessed.md5": "eee.dir",
    }


def test_a_run_holds_params_epoch_metrics_tags_and_resumes(mlflow_uri: str, tmp_path: Path) -> None:
    params = _params(mlflow_uri, "test-tracking-run")
    run_file = tmp_path / "models" / tracking.RUN_FILE
    with tracking.start_run(params, tmp_path, tags={tracking.TAG_FLOW_RUN: "flow-1"}) as run:
        callback = run.callback()
        callback.on_train_start({"device": "cpu", "num_train": 10})
        for epoch in (1, 2, 3):
            metrics = {"epoch": epoch, "loss": 1.0 / epoch, "val_mean_iou": 0.1, "val_iou_a b": 0.2}
            callback.on_epoch_end(epoch, metrics)
        run.save(run_file)
    client = MlflowClient(mlflow_uri)
    stored = client.get_run(run.run_id)
    assert stored.info.status == "FINISHED"
    assert stored.info.run_name.startswith("compact-")
    assert stored.data.params["train.num_epochs"] == str(params.train.num_epochs)
    assert stored.data.params["dataset.class_names"] == '["good", "contamination", "crack"]'
    assert stored.data.tags[tracking.TAG_FLOW_RUN] == "flow-1"
    assert stored.data.tags["train.device"] == "cpu"
    history = client.get_metric_history(run.run_id, "train/loss")
    assert [(m.step, m.value) for m in history] == [(1, 1.0), (2, 0.5), (3, 1.0 / 3)]
    assert set(stored.data.metrics) == {
        "train/loss",
        "validation/mean_iou",
        "validation/class_iou/a b",
    }

    measures = {"mean_iou": 0.8, "class_iou": {"good": 0.9, "crack (thin)": 0.7, "none": -1.0}}
    with tracking.resume_run(params, tmp_path, run_file, tags={tracking.TAG_FLOW_RUN: "x"}) as same:
        logged = same.log_evaluation("test", measures)
    assert same.run_id == run.run_id
    assert logged == {
        "test/mean_iou": 0.8,
        "test/class_iou/good": 0.9,
        "test/class_iou/crack _thin_": 0.7,
    }
    stored = client.get_run(run.run_id)
    assert stored.data.metrics["test/class_iou/crack _thin_"] == 0.7
    assert stored.data.tags[tracking.TAG_FLOW_RUN] == "flow-1"  # the training's flow run stays


def test_resume_without_run_file_starts_a_new_run_and_failures_are_marked(
    mlflow_uri: str, tmp_path: Path
) -> None:
    params = _params(mlflow_uri, "test-tracking-resume")
    missing = tmp_path / "missing.json"
    with (
        pytest.raises(RuntimeError, match="boom"),
        tracking.resume_run(params, tmp_path, missing) as run,
    ):
        raise RuntimeError("boom")
    stored = MlflowClient(mlflow_uri).get_run(run.run_id)
    assert stored.info.status == "FAILED"
    assert stored.data.tags["segcore.resumed"] == "false"
    assert stored.data.params["train.model"] == "compact"
    (tmp_path / "stale.json").write_text(json.dumps({"run_id": "0123456789abcdef"}))
    with tracking.resume_run(params, tmp_path, tmp_path / "stale.json") as other:
        pass
    assert other.run_id not in (run.run_id, "0123456789abcdef")
