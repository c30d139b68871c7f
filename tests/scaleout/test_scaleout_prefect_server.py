"""The pipeline flow deployed to a Prefect server and run by a worker, scaled out inside.

A real ``prefect server start`` on loopback, a ``process`` work pool made with the CLI, the
real ``segmentation_pipeline`` deployed with ``python -m flows.deploy``, a ``prefect worker`` that
picks up the triggered run and runs it in a process of its own, on a tiny repository whose
params preprocess as sample shards on a local Dask cluster and train with ``torchrun``
in two processes (gloo on the CPU).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest
import yaml
from helpers import servers
from helpers.pipeline_repo import dvc, git, make_repo, set_params

from segcore.tracking import run as tracking

pytestmark = pytest.mark.slow

POOL = "segcore-test"
DEPLOYMENT = "nightly"
"""``flow.deployment_name`` of params.yaml."""
RUN_TIMEOUT_S = 540
SHARD_SIZE = 4
SCALED_OUT = {
    ("train", "num_epochs"): 1,
    ("train", "batch_size"): 2,
    ("train", "nproc"): 2,
    ("preprocess", "workers"): 2,
    ("preprocess", "cluster", "runner"): "dask",
    ("preprocess", "cluster", "shard_size"): SHARD_SIZE,
}


@pytest.fixture(scope="module")
def worker_run(prefect_api: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Deploy, trigger, let a worker run it; the repo, the flow run and the worker's log."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    base = tmp_path_factory.mktemp("prefect_worker")
    repo = make_repo(base / "repo")
    shutil.copytree(
        servers.ROOT / "flows", repo / "flows", ignore=shutil.ignore_patterns("__pycache__")
    )
    set_params(repo / "params.yaml", SCALED_OUT)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "scaled out")
    env = servers.prefect_env(base / "home", prefect_api)
    for cmd in (
        [str(servers.BIN / "prefect"), "work-pool", "create", POOL, "--type", "process"],
        [sys.executable, "-m", "flows.deploy", "--pool", POOL, "--no-schedule"],  # the README's
    ):
        done = subprocess.run(
            cmd,
            cwd=repo,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
    with temporary_settings(updates={PREFECT_API_URL: prefect_api}):
        flow_run = run_deployment(f"segmentation_pipeline/{DEPLOYMENT}", timeout=0)
        worker = servers.spawn(
            "prefect worker",
            [
                str(servers.BIN / "prefect"),
                "worker",
                "start",
                "--pool",
                POOL,
                "--type",
                "process",
                "--install-policy",
                "never",
            ],
            base / "worker.log",
            env={**env, "MLFLOW_TRACKING_URI": None},  # the repository's own sqlite store
        )
        try:
            deadline = time.monotonic() + RUN_TIMEOUT_S
            with get_client(sync_client=True) as client:
                while time.monotonic() < deadline:
                    flow_run = client.read_flow_run(flow_run.id)
                    if flow_run.state is not None and flow_run.state.is_final():
                        break
                    time.sleep(2)
                subflows = [
                    r
                    for r in client.read_flow_runs()
                    if r.parent_task_run_id is not None and r.id != flow_run.id
                ]
                shard_tasks = [
                    t
                    for t in client.read_task_runs()
                    if t.name.startswith("preprocess-shard")
                    and t.flow_run_id in {r.id for r in subflows}
                ]
        finally:
            worker.stop()
    return {
        "repo": repo,
        "flow_run": flow_run,
        "shard_tasks": shard_tasks,
        "worker_log": worker.log_tail(6000),
    }


def test_worker_runs_the_deployed_flow_to_completion(worker_run: dict) -> None:
    flow_run, repo = worker_run["flow_run"], worker_run["repo"]
    assert flow_run.state is not None, worker_run["worker_log"]
    assert flow_run.state.is_completed(), worker_run["worker_log"]
    assert flow_run.work_pool_name == POOL and flow_run.deployment_id is not None
    assert "up to date" in dvc(repo, "status")
    assert (repo / "reports/registry.json").is_file()
    assert (repo / "models/best/model.safetensors").is_file()


def test_train_task_ran_torchrun_with_two_processes(worker_run: dict) -> None:
    from mlflow import MlflowClient

    repo = worker_run["repo"]
    config = json.loads((repo / "models/best/model.json").read_text())
    assert config["training_summary"]["processes"] == 2
    client = MlflowClient(f"sqlite:///{repo.resolve().as_posix()}/mlflow.db")
    run_id = json.loads((repo / "models" / tracking.RUN_FILE).read_text())["run_id"]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["train.processes"] == "2"
    assert run.data.tags[tracking.TAG_FLOW_RUN] == str(worker_run["flow_run"].id)
    # Rank 0 alone logged: one value per epoch.
    assert [m.step for m in client.get_metric_history(run_id, "train/loss")] == [1]


def test_preprocess_task_sent_sample_shards_to_dask(worker_run: dict) -> None:
    repo = worker_run["repo"]
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert lock["stages"]["preprocess"]["outs"][0]["path"] == "data/preprocessed"
    samples = len(list((repo / "data/preprocessed/samples").iterdir()))
    shards = -(-samples // SHARD_SIZE)
    tasks = worker_run["shard_tasks"]
    assert len(tasks) == 2 * shards  # check pass and write pass
    assert all(t.state is not None and t.state.is_completed() for t in tasks)


def test_image_deployment_for_docker_or_kubernetes_pools(prefect_api: str) -> None:
    """What ``python -m flows.deploy --image ...`` records for a container pool (a pool with
    an ``image`` job variable, as Docker and Kubernetes pools have; no container runs)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.deploy import ENTRYPOINT, deploy
    from segcore.params import load_params

    template = {
        "job_configuration": {"image": "{{ image }}", "env": "{{ env }}"},
        "variables": {
            "type": "object",
            "properties": {"image": {"type": "string"}, "env": {"type": "object"}},
        },
    }
    params = load_params(servers.ROOT / "params.yaml")
    with temporary_settings(updates={PREFECT_API_URL: prefect_api}):
        with get_client(sync_client=True) as client:
            client.create_work_pool(
                WorkPoolCreate(name="containers", type="docker", base_job_template=template)
            )
        env = {"MLFLOW_TRACKING_URI": "http://mlflow.example:5000"}
        deployment_id = deploy(
            params,
            servers.ROOT,
            "containers",
            image="registry.example/segcore:1",
            repo="/app",
            env=env,
        )
        with get_client(sync_client=True) as client:
            deployment = client.read_deployment(deployment_id)
    assert deployment.entrypoint == ENTRYPOINT and not deployment.pull_steps
    assert deployment.job_variables == {"image": "registry.example/segcore:1", "env": env}
    assert deployment.parameters == {"repo": "/app"}
    (schedule,) = deployment.schedules
    assert schedule.schedule.cron == params.flow.cron
