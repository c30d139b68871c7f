"""MLflow as a tracking server on PostgreSQL: the pipeline logs and registers as with sqlite.

A scratch PostgreSQL server (scripts/start_postgres.sh, installed from the OS packages when
missing) is the backend store of a real ``mlflow server`` on loopback, which keeps the
artifacts in a local folder and serves them. The tiny pipeline runs under ``dvc repro`` with
``MLFLOW_TRACKING_URI`` pointing at the server. Skipped only where PostgreSQL cannot be
installed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from helpers import servers
from helpers.pipeline_repo import dvc, git, make_repo, set_params

from segcore.params import load_params
from segcore.tracking import run as tracking

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def postgres_uri() -> Iterator[str]:
    try:
        with servers.postgres() as uri:
            yield uri
    except servers.PostgresUnavailable as err:
        pytest.skip(f"PostgreSQL cannot be installed on this machine: {err}")


@pytest.fixture(scope="module")
def mlflow_on_postgres(
    postgres_uri: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict]:
    """The server (starting: its first start sets up the database), its artifact folder,
    its backend URI and a tiny pipeline repository preprocessed meanwhile."""
    folder = tmp_path_factory.mktemp("mlflow_server")
    server = servers.mlflow_server(
        postgres_uri, folder / "artifacts", folder / "server.log", wait=False
    )
    try:
        repo = make_repo(folder / "repo")
        set_params(repo / "params.yaml", {("train", "num_epochs"): 1})
        dvc(repo, "repro", "preprocess")  # no tracking yet
        yield {
            "url": server.url,
            "artifacts": folder / "artifacts",
            "backend": postgres_uri,
            "repo": repo,
            "server": server,
        }
    finally:
        server.stop()


@pytest.fixture(scope="module")
def pipeline_repo(mlflow_on_postgres: dict) -> Path:
    """The tiny pipeline repository after ``dvc repro`` against the server."""
    servers.wait_healthy(mlflow_on_postgres["server"], f"{mlflow_on_postgres['url']}/health")
    repo = mlflow_on_postgres["repo"]
    dvc(repo, "repro", env={"MLFLOW_TRACKING_URI": mlflow_on_postgres["url"]})
    return repo


def _run(repo: Path, url: str) -> tuple[object, str]:
    from mlflow import MlflowClient

    client = MlflowClient(url)
    run_id = json.loads((repo / "models" / tracking.RUN_FILE).read_text())["run_id"]
    return client, run_id


def test_pipeline_logs_params_metrics_lineage_and_reports_to_the_server(
    pipeline_repo: Path, mlflow_on_postgres: dict
) -> None:
    repo, url = pipeline_repo, mlflow_on_postgres["url"]
    params = load_params(repo / "params.yaml")
    client, run_id = _run(repo, url)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")  # served by the server
    assert set(run.data.params) == set(tracking.params_to_log(params))
    assert [m.step for m in client.get_metric_history(run_id, "train/loss")] == [1]
    assert [m.step for m in client.get_metric_history(run_id, "validation/mean_iou")] == [1]
    metrics = json.loads((repo / "reports/metrics.json").read_text())
    assert run.data.metrics["test/mean_iou"] == pytest.approx(metrics["mean_iou"])
    for name, value in metrics["class_iou"].items():
        if value >= 0:
            assert run.data.metrics[f"test/class_iou/{name}"] == pytest.approx(value)
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert run.data.tags["mlflow.source.git.commit"] == git(repo, "rev-parse", "HEAD").strip()
    assert run.data.tags["dvc.preprocessed.md5"] == lock["stages"]["preprocess"]["outs"][0]["md5"]
    assert run.data.tags["train.processes"] == "1"
    listed = {a.path for a in client.list_artifacts(run_id, "reports")}
    assert {"reports/report.html", "reports/metrics.json"} <= listed
    # The server stored the uploaded files in its own artifact folder.
    stored = {p.name for p in mlflow_on_postgres["artifacts"].rglob("*") if p.is_file()}
    assert {"report.html", "metrics.json", "model.safetensors"} <= stored


def test_registry_lives_in_postgres_and_the_champion_is_served(
    pipeline_repo: Path, mlflow_on_postgres: dict
) -> None:
    import mlflow.pyfunc
    import pandas as pd
    import psycopg

    repo, url = pipeline_repo, mlflow_on_postgres["url"]
    params = load_params(repo / "params.yaml")
    client, run_id = _run(repo, url)
    registry = json.loads((repo / "reports/registry.json").read_text())
    assert registry["version"] == "1" and registry["promoted"] is True
    champion = client.get_model_version_by_alias(params.registry.model_name, "champion")
    assert champion.run_id == run_id
    (model,) = client.search_logged_models([client.get_run(run_id).info.experiment_id])
    assert model.source_run_id == run_id
    # The records are rows of the PostgreSQL database, not of some local file.
    with psycopg.connect(mlflow_on_postgres["backend"]) as conn:
        status = conn.execute("SELECT status FROM runs WHERE run_uuid = %s", (run_id,)).fetchone()
        names = [r[0] for r in conn.execute("SELECT name FROM registered_models").fetchall()]
    assert status == ("FINISHED",)
    assert names == [params.registry.model_name]
    assert not (repo / tracking.DB_FILE).exists()

    mlflow.set_tracking_uri(url)
    try:
        served = mlflow.pyfunc.load_model(f"models:/{params.registry.model_name}@champion")
    finally:
        mlflow.set_tracking_uri(None)
    image = sorted((repo / "data/raw/pills/images").glob("*.png"))[0].read_bytes()
    out = served.predict(pd.DataFrame({"image": [image]}))
    pixels = out[["pixels_good", "pixels_contamination", "pixels_crack"]].sum(axis=1)
    assert pixels.tolist() == [64 * 64]
