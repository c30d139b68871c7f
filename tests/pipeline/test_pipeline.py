"""The whole pipeline on tiny data with the real components: the Prefect flow (in Prefect's
test harness), DVC in a temporary git repository, MLflow in that repository's sqlite store.

The repository holds this project's dvc.yaml, a tiny params.yaml and the segcore sources
(the stage deps); the stages run the installed segcore. One flow run is shared by the
tests, which run in file order: later ones change the repository.
"""

from __future__ import annotations

import json
import time

import pytest
import yaml
from helpers.pipeline_repo import dvc, git, make_repo, set_params

from segcore.params import load_params
from segcore.tracking import run as tracking

pytestmark = pytest.mark.slow

STAGES = [
    "synth",
    "dataset",
    "split",
    "preprocess",
    "train",
    "calibrate",
    "evaluate",
    "register",
]


@pytest.fixture(scope="module")
def harness() -> object:
    """Prefect's temporary API server (about 15-25 s to start) and a clean environment."""
    from prefect.testing.utilities import prefect_test_harness

    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)  # the repository's own sqlite store
        mp.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        with prefect_test_harness(server_startup_timeout=120):
            yield


@pytest.fixture(scope="module")
def flow_run(harness: object, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The first flow run on a fresh repository: its repo, statuses and Prefect id."""
    from flows.pipeline import segmentation_pipeline

    repo = make_repo(tmp_path_factory.mktemp("pipeline") / "repo")
    state = segmentation_pipeline(repo=str(repo), return_state=True)
    return {
        "repo": repo,
        "statuses": state.result(),
        "flow_run_id": str(state.state_details.flow_run_id),
    }


def test_flow_runs_every_stage_and_leaves_dvc_clean(flow_run: dict) -> None:
    repo = flow_run["repo"]
    assert flow_run["statuses"] == dict.fromkeys(STAGES, "ran")
    assert "up to date" in dvc(repo, "status")
    for path in (
        "data/raw/pills/images",
        "data/preprocessed/dataset.parquet",
        "models/best/model.safetensors",
        "reports/train_history.csv",
        "reports/report.html",
        "reports/registry.json",
    ):
        assert (repo / path).exists(), path
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert list(lock["stages"]) == STAGES
    assert lock["stages"]["train"]["params"]["params.yaml"]["train"]["num_epochs"] == 2
    metrics = json.loads((repo / "reports/metrics.json").read_text())
    assert set(metrics["class_iou"]) == {"good", "contamination", "crack"}
    # calibrate wrote the rules into its copy of the bundle; evaluate judged by them
    decision = json.loads((repo / "calibrated/model.json").read_text())["decision"]
    assert set(decision["rules"]) == {"contamination", "crack"}
    assert decision["calibration"]["split"] == "validation"
    assert "false_reject_rate" in metrics or "escape_rate" in metrics
    assert set(metrics["image_confusion"]) == {"ok_as_ok", "ok_as_ng", "ng_as_ok", "ng_as_ng"}
    shown = dvc(repo, "metrics", "show", "--json")
    assert json.loads(shown)[""]["data"]["reports/metrics.json"]["data"] == metrics
    plots = json.loads(dvc(repo, "plots", "show", "--json"))["data"]
    assert {"training loss", "validation IoU", "per-class IoU"} <= set(plots)
    assert "reports/confusion_matrix.png" in plots


def test_flow_publishes_measures_table_and_report(flow_run: dict) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run["flow_run_id"]])
            )
        )
    by_key = {a.key: a for a in artifacts}
    assert by_key["segcore-evaluation-measures"].type == "table"
    assert "mean_iou" in str(by_key["segcore-evaluation-measures"].data)
    report = str(by_key["segcore-report"].data)
    assert "| train | ran |" in report and "Evaluation on the test split" in report


def test_flow_log_shows_one_line_per_training_epoch(flow_run: dict) -> None:
    import asyncio
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()  # logs go to the API in batches

    async def read() -> list:
        ids = LogFilterFlowRunId(any_=[UUID(flow_run["flow_run_id"])])
        async with get_client() as client:
            return await client.read_logs(LogFilter(flow_run_id=ids))

    deadline = time.monotonic() + 30
    epochs: list[str] = []
    num_epochs = load_params(flow_run["repo"] / "params.yaml").train.num_epochs
    while len(epochs) < num_epochs and time.monotonic() < deadline:
        epochs = [log.message for log in asyncio.run(read()) if log.message.startswith("epoch ")]
        time.sleep(0.5)
    assert [m.split(":")[0] for m in epochs] == [
        f"epoch {e}/{num_epochs}" for e in range(1, num_epochs + 1)
    ]
    assert all("loss" in m and "ETA" in m for m in epochs)


def test_mlflow_run_holds_params_epoch_metrics_model_and_lineage(flow_run: dict) -> None:
    from mlflow import MlflowClient

    repo = flow_run["repo"]
    params = load_params(repo / "params.yaml")
    uri = tracking.resolve_tracking_uri(params.tracking, repo)
    assert uri == f"sqlite:///{repo.resolve().as_posix()}/mlflow.db"
    client = MlflowClient(uri)
    run_id = json.loads((repo / "models" / tracking.RUN_FILE).read_text())["run_id"]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert set(run.data.params) == set(tracking.params_to_log(params))
    assert run.data.params["train.num_epochs"] == "2"
    assert run.data.params["preprocess.param.image_width"] == "32"
    losses = client.get_metric_history(run_id, "train/loss")
    assert [m.step for m in losses] == [1, 2]
    assert [m.step for m in client.get_metric_history(run_id, "validation/mean_iou")] == [1, 2]
    metrics = json.loads((repo / "reports/metrics.json").read_text())
    assert run.data.metrics["test/mean_iou"] == pytest.approx(metrics["mean_iou"])
    for name, value in metrics["class_iou"].items():
        assert run.data.metrics[f"test/class_iou/{name}"] == pytest.approx(value)
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    preprocessed = lock["stages"]["preprocess"]["outs"][0]["md5"]
    tags = run.data.tags
    assert tags["mlflow.source.git.commit"] == git(repo, "rev-parse", "HEAD").strip()
    assert tags["dvc.preprocessed.md5"] == preprocessed
    assert tags["dvc.dataset.md5"] == lock["stages"]["split"]["outs"][0]["md5"]
    assert tags[tracking.TAG_FLOW_RUN] == flow_run["flow_run_id"]
    artifacts = {a.path for a in client.list_artifacts(run_id, "reports")}
    assert {"reports/report.html", "reports/metrics.json"} <= artifacts
    # the calibration's operating point and curves, and the test split's decision measures
    calibration = json.loads((repo / "reports/calibration/calibration.json").read_text())
    assert run.data.metrics["calibration/escape_rate"] == calibration["escape_rate"]
    assert tags["calibration.split"] == "validation"
    assert "calibration/tradeoff.png" in {
        a.path for a in client.list_artifacts(run_id, "calibration")
    }
    assert (
        run.data.metrics["test/image_confusion/ng_as_ok"] == metrics["image_confusion"]["ng_as_ok"]
    )
    (model,) = client.search_logged_models([run.info.experiment_id])
    assert model.source_run_id == run_id
    champion = client.get_model_version_by_alias(params.registry.model_name, "champion")
    assert champion.run_id == run_id
    assert tags["register.decision"] == "promoted"


def test_champion_from_the_flow_predicts_on_an_image(flow_run: dict) -> None:
    import mlflow.pyfunc
    import pandas as pd

    repo = flow_run["repo"]
    params = load_params(repo / "params.yaml")
    mlflow.set_tracking_uri(tracking.resolve_tracking_uri(params.tracking, repo))
    try:
        model = mlflow.pyfunc.load_model(f"models:/{params.registry.model_name}@champion")
    finally:
        mlflow.set_tracking_uri(None)
    image = sorted((repo / "data/raw/pills/images").glob("*.png"))[0].read_bytes()
    out = model.predict(pd.DataFrame({"image": [image, image]}))
    assert len(out) == 2
    pixels = out[["pixels_good", "pixels_contamination", "pixels_crack"]].sum(axis=1)
    assert pixels.tolist() == [64 * 64, 64 * 64]
    assert 0.0 <= out.loc[0, "mean_confidence"] <= 1.0


def test_second_flow_run_skips_every_stage(flow_run: dict) -> None:
    from flows.pipeline import segmentation_pipeline

    repo = flow_run["repo"]
    watched = [repo / "models/best/model.safetensors", repo / "reports/metrics.json"]
    before = [p.stat().st_mtime_ns for p in watched]
    assert segmentation_pipeline(repo=str(repo)) == dict.fromkeys(STAGES, "skipped")
    assert [p.stat().st_mtime_ns for p in watched] == before


def test_a_failing_run_changes_nothing_and_the_next_run_recovers(flow_run: dict) -> None:
    from flows.pipeline import segmentation_pipeline

    repo = flow_run["repo"]
    params_file = repo / "params.yaml"
    original, lock = params_file.read_text(), (repo / "dvc.lock").read_text()
    set_params(params_file, {("evaluate", "measures"): ["no_such_measure"]})
    state = segmentation_pipeline(repo=str(repo), return_state=True)
    assert state.is_failed()
    assert "no_such_measure" in str(state.result(raise_on_failure=False))
    assert (repo / "dvc.lock").read_text() == lock
    params_file.write_text(original)
    statuses = segmentation_pipeline(repo=str(repo))
    # The failed stage had cleared its outputs; DVC's cache gives them back.
    assert statuses == {**dict.fromkeys(STAGES, "skipped"), "evaluate": "restored"}
    assert "up to date" in dvc(repo, "status")


def test_make_run_prints_where_to_look(flow_run: dict) -> None:
    from flows.run import where_to_look

    text = where_to_look(flow_run["repo"], flow_run["statuses"], 12.0)
    assert "train ran" in text and "test mean_iou" in text and "OK/NG:" in text
    assert "segcore infer calibrated" in text
    for hint in ("report.html", "make ui", "dvc metrics show", "dvc plots show", "@champion"):
        assert hint in text


def test_dvc_repro_in_a_fresh_clone_agrees_with_the_flow(
    flow_run: dict, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A clone sharing the flow's DVC cache and MLflow store: `dvc repro` finds the flow's
    records valid for its own stages (run cache) and gives the same outputs."""
    repo = flow_run["repo"]
    assert "didn't change" in dvc(repo, "repro")  # nothing to do after the flow
    clone = tmp_path_factory.mktemp("clone") / "repo"
    git(repo.parent, "clone", "-q", str(repo), str(clone))
    dvc(clone, "cache", "dir", str(repo / ".dvc" / "cache"))
    store = {"MLFLOW_TRACKING_URI": f"sqlite:///{repo.resolve().as_posix()}/mlflow.db"}
    out = dvc(clone, "repro", env=store)
    for stage in ("synth", "dataset", "split", "train", "calibrate", "evaluate"):
        assert f"Stage '{stage}' is cached - skipping run" in out, out
    ours = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    theirs = yaml.safe_load((clone / "dvc.lock").read_text())["stages"]
    assert list(theirs) == STAGES
    for stage in STAGES[:-1]:
        assert theirs[stage]["outs"] == ours[stage]["outs"], stage
    assert (clone / "reports/metrics.json").read_text() == (
        repo / "reports/metrics.json"
    ).read_text()
    registry = json.loads((clone / "reports/registry.json").read_text())
    assert registry["version"] == "1"  # the same run: no second version
    assert "up to date" in dvc(clone, "status")


def test_one_param_change_reruns_only_the_stage_that_reads_it(flow_run: dict) -> None:
    """Under `dvc repro`, whose stages run as separate `segcore` commands."""
    from mlflow import MlflowClient

    repo = flow_run["repo"]
    set_params(repo / "params.yaml", {("evaluate", "worst_k"): 1})
    assert "evaluate.worst_k" in dvc(repo, "params", "diff")
    out = dvc(repo, "repro")
    assert "Running stage 'evaluate'" in out
    for stage in ("synth", "dataset", "split", "preprocess", "train", "calibrate", "register"):
        assert f"Stage '{stage}' didn't change, skipping" in out, out
    assert "up to date" in dvc(repo, "status")
    # `segcore evaluate` resumed the training's run in its own process.
    params = load_params(repo / "params.yaml")
    client = MlflowClient(tracking.resolve_tracking_uri(params.tracking, repo))
    run_id = json.loads((repo / "models" / tracking.RUN_FILE).read_text())["run_id"]
    experiment = client.get_run(run_id).info.experiment_id
    assert len(client.search_logged_models([experiment])) == 2
    assert len(client.search_runs([experiment])) == 1


def test_flow_trains_with_torchrun_when_nproc_is_two(flow_run: dict) -> None:
    from mlflow import MlflowClient

    from flows.pipeline import segmentation_pipeline

    repo = flow_run["repo"]
    set_params(repo / "params.yaml", {("train", "nproc"): 2})
    statuses = segmentation_pipeline(repo=str(repo))
    assert statuses["train"] == "ran" and statuses["preprocess"] == "skipped"
    assert "up to date" in dvc(repo, "status")
    params = load_params(repo / "params.yaml")
    client = MlflowClient(tracking.resolve_tracking_uri(params.tracking, repo))
    run_id = json.loads((repo / "models" / tracking.RUN_FILE).read_text())["run_id"]
    run = client.get_run(run_id)
    assert run.data.tags["train.processes"] == "2"  # rank 0 logged into the flow's run
    assert run.data.tags[tracking.TAG_FLOW_RUN]
    assert [m.step for m in client.get_metric_history(run_id, "train/loss")] == [1, 2]
    assert "test/mean_iou" in run.data.metrics
