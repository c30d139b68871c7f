"""The registry gate and the served model, on a real sqlite MLflow store.

The model is a real bundle of an untrained compact network (registration and serving do
not depend on its weights); the test measures are set on the runs directly.
"""

from __future__ import annotations

import base64
import threading
import warnings
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import pytest
from helpers.images import huge_png
from mlflow import MlflowClient

from segcore.params import Params, PreprocessParams, RegisterParams, TrackingParams
from segcore.tracking import run as tracking
from segcore.tracking.register import RegistryError, register_model

CLASSES = ["good", "contamination", "crack"]


@pytest.fixture(autouse=True)
def _no_env_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture(scope="session")
def untrained_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A compact model bundle (random weights) for 48 x 48 RGB inputs and three classes."""
    from segcore.model.bundle import BundleConfig, save_bundle
    from segcore.model.factory import architecture, create_from_architecture

    arch = architecture("compact", len(CLASSES), 3, base_channels=4, depth=2)
    config = BundleConfig(
        architecture=arch,
        class_ids=[0, 1, 2],
        class_names=CLASSES,
        ignore_class_ids=[],
        preprocess_param=PreprocessParams(image_width=48, image_height=48).model_dump(),
    )
    return save_bundle(
        tmp_path_factory.mktemp("bundle") / "best", create_from_architecture(arch), config
    )


def _params(uri: str, name: str) -> Params:
    return Params().model_copy(
        update={
            "tracking": TrackingParams(tracking_uri=uri, experiment_name=f"test-{name}"),
            "registry": RegisterParams(model_name=f"test-{name}"),
        }
    )


def _run_with_model(params: Params, root: Path, bundle: Path, mean_iou: float | None) -> str:
    with tracking.start_run(params, root) as run:
        if mean_iou is not None:
            run.log_evaluation("test", {"mean_iou": mean_iou})
        run.log_model(bundle)
    return run.run_id


def _register(params: Params, root: Path, run_id: str):
    run_file = root / f"{run_id}.json"
    run_file.write_text(f'{{"run_id": "{run_id}"}}')
    with tracking.resume_run(params, root, run_file) as run:
        return register_model(run, params.registry)


def test_champion_moves_only_for_a_model_at_least_as_good(
    mlflow_uri: str, tmp_path: Path, untrained_bundle: Path
) -> None:
    params = _params(mlflow_uri, "gate")
    name = params.registry.model_name
    first, better, worse, equal = (
        _run_with_model(params, tmp_path, untrained_bundle, v) for v in (0.5, 0.7, 0.6, 0.7)
    )
    r1 = _register(params, tmp_path, first)
    assert (r1.version, r1.promoted, r1.previous_champion) == ("1", True, None)
    r2 = _register(params, tmp_path, better)
    assert (r2.version, r2.promoted, r2.previous_champion, r2.previous_value) == (
        "2",
        True,
        "1",
        0.5,
    )
    r3 = _register(params, tmp_path, worse)
    assert (r3.version, r3.promoted, r3.champion, r3.value) == ("3", False, "2", 0.6)
    client = MlflowClient(mlflow_uri)
    assert str(client.get_model_version_by_alias(name, "champion").version) == "2"
    assert str(client.get_model_version_by_alias(name, "challenger").version) == "3"
    # The decision and both numbers are on the run.
    logged = client.get_run(worse).data
    assert logged.tags["register.decision"] == "kept"
    assert logged.metrics["register/candidate_test_mean_iou"] == 0.6
    assert logged.metrics["register/champion_test_mean_iou"] == 0.7
    # A tie moves the champion ("at least as good"); registering a run again adds no version.
    assert _register(params, tmp_path, equal).promoted
    again = _register(params, tmp_path, equal)
    assert again.version == "4" and len(client.search_model_versions(f"name = '{name}'")) == 4


def test_champion_by_escape_rate_moves_only_for_a_lower_one(
    mlflow_uri: str, tmp_path: Path, untrained_bundle: Path
) -> None:
    params = _params(mlflow_uri, "escape")
    params = params.model_copy(
        update={"registry": params.registry.model_copy(update={"comparison_key": "escape_rate"})}
    )
    runs = []
    for value in (0.2, 0.1, 0.3):
        with tracking.start_run(params, tmp_path) as run:
            run.log_evaluation("test", {"escape_rate": value, "mean_iou": 0.5})
            run.log_model(untrained_bundle)
        runs.append(run.run_id)
    first, lower, higher = (_register(params, tmp_path, r) for r in runs)
    assert first.promoted and first.direction == "lower"
    assert lower.promoted and lower.previous_value == 0.2
    assert not higher.promoted and higher.champion == lower.version
    assert "lower is better" in higher.render()
    # an explicit direction wins over auto
    explicit = params.registry.model_copy(update={"comparison_direction": "higher"})
    from segcore.tracking.register import comparison_direction

    assert comparison_direction(explicit) == "higher"
    assert comparison_direction(RegisterParams()) == "higher"


def test_measures_at_different_resolutions_keep_the_champion(
    mlflow_uri: str, tmp_path: Path, untrained_bundle: Path
) -> None:
    """A tiled model measured at original resolution is not compared with a champion
    measured at network resolution, however much higher its number: it stays challenger,
    and the reason is returned, rendered and logged."""
    params = _params(mlflow_uri, "resolution")
    runs = []
    for value, resolution in ((0.5, "network"), (0.9, "original"), (0.6, "network"), (0.95, None)):
        with tracking.start_run(params, tmp_path) as run:
            measures = {"mean_iou": value} | ({"resolution": resolution} if resolution else {})
            run.log_evaluation("test", measures)
            run.log_model(untrained_bundle)
        runs.append(run.run_id)
    first, other, same, untagged = (_register(params, tmp_path, r) for r in runs)
    assert first.promoted and first.incomparable is None
    assert not other.promoted and other.champion == first.version
    assert "at original resolution, the champion's at network resolution" in other.render()
    tags = MlflowClient(mlflow_uri).get_run(runs[1]).data.tags
    assert tags["register.decision"] == "kept" and "resolution" in tags["register.incomparable"]
    # The same resolution compares as before; a run without the tag was measured at network
    # resolution (it predates the tag).
    assert same.promoted and same.previous_value == 0.5
    assert untagged.promoted and untagged.incomparable is None


def test_a_run_without_test_measure_is_refused(
    mlflow_uri: str, tmp_path: Path, untrained_bundle: Path
) -> None:
    params = _params(mlflow_uri, "nometric")
    run_id = _run_with_model(params, tmp_path, untrained_bundle, None)
    with pytest.raises(RegistryError, match="test/mean_iou"):
        _register(params, tmp_path, run_id)


def test_concurrent_registrations_keep_the_registry_consistent(
    mlflow_uri: str, tmp_path: Path, untrained_bundle: Path
) -> None:
    params = _params(mlflow_uri, "concurrent")
    runs = [_run_with_model(params, tmp_path, untrained_bundle, v) for v in (0.4, 0.9, 0.6)]
    results: list = []
    errors: list[BaseException] = []

    def register(run_id: str) -> None:
        try:
            results.append(_register(params, tmp_path, run_id))
        except BaseException as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=register, args=(r,)) for r in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(r.version for r in results) == ["1", "2", "3"]
    champion = MlflowClient(mlflow_uri).get_model_version_by_alias(
        params.registry.model_name, "champion"
    )
    assert champion.run_id == runs[1]


def test_champion_model_serves_predictions_for_an_image(
    mlflow_uri: str, tmp_path: Path, untrained_bundle: Path, pills_raw: Path
) -> None:
    import mlflow.pyfunc
    from mlflow.pyfunc import scoring_server
    from starlette.testclient import TestClient

    params = _params(mlflow_uri, "serve")
    _register(params, tmp_path, _run_with_model(params, tmp_path, untrained_bundle, 0.5))
    mlflow.set_tracking_uri(mlflow_uri)
    try:
        model = mlflow.pyfunc.load_model(f"models:/{params.registry.model_name}@champion")
    finally:
        mlflow.set_tracking_uri(None)
    png = next((pills_raw / "images").glob("*.png")).read_bytes()
    height, width = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED).shape[:2]
    out = model.predict(pd.DataFrame({"image": [png]}))
    assert list(out.columns[:2]) == ["segmentation_image", "mean_confidence"]
    seg = cv2.imdecode(
        np.frombuffer(base64.b64decode(out.loc[0, "segmentation_image"]), np.uint8),
        cv2.IMREAD_UNCHANGED,
    )
    assert seg.shape == (height, width)
    assert out.loc[0, [f"pixels_{c}" for c in CLASSES]].sum() == height * width
    assert set(np.unique(seg)) <= {0, 1, 2}
    # The same request as `mlflow models serve` gets over HTTP (base64 in dataframe_split).
    client = TestClient(scoring_server.init(model))
    body = {"dataframe_split": {"columns": ["image"], "data": [[base64.b64encode(png).decode()]]}}
    response = client.post("/invocations", json=body)
    assert response.status_code == 200, response.text
    (prediction,) = response.json()["predictions"]
    assert prediction["segmentation_image"] == out.loc[0, "segmentation_image"]
    bad = client.post(
        "/invocations", json={"dataframe_split": {"columns": ["image"], "data": [["aGk="]]}}
    )
    assert bad.status_code >= 400
    # The verdict is the one segcore infer's code gives with the bundle's rules.
    from segcore.infer.apply import apply_model, load_model
    from segcore.tracking.served_model import decode_image

    image = decode_image(png)
    local = apply_model(load_model(untrained_bundle, device="cpu"), [image])[0]
    assert (prediction["verdict"], prediction["fired"]) == (
        local.verdict.label,
        local.verdict.describe(),
    )


def test_served_model_decides_by_the_rules_in_its_bundle(
    mlflow_uri: str, tmp_path: Path, untrained_bundle: Path, pills_raw: Path
) -> None:
    import json
    import shutil

    import mlflow.pyfunc

    strict = tmp_path / "strict"
    shutil.copytree(untrained_bundle, strict)
    meta = json.loads((strict / "model.json").read_text())
    never = {"min_area": 10**9, "min_confidence": 0.0}
    meta["decision"] = {
        "background_classes": ["good"],
        "rules": {"contamination": never, "crack": never},
        "calibration": {"split": "validation"},
    }
    (strict / "model.json").write_text(json.dumps(meta))
    params = _params(mlflow_uri, "rules")
    _register(params, tmp_path, _run_with_model(params, tmp_path, strict, 0.5))
    mlflow.set_tracking_uri(mlflow_uri)
    try:
        model = mlflow.pyfunc.load_model(f"models:/{params.registry.model_name}@champion")
    finally:
        mlflow.set_tracking_uri(None)
    pngs = [p.read_bytes() for p in sorted((pills_raw / "images").glob("*.png"))[:3]]
    out = model.predict(pd.DataFrame({"image": pngs}))
    assert list(out["verdict"]) == ["OK"] * 3 and list(out["fired"]) == ["OK"] * 3
    regions = [r for row in out["regions"] for r in json.loads(row)]
    assert regions and not any(r["fires"] for r in regions)


def _post_image(client: Any, data: bytes) -> Any:
    body = {"dataframe_split": {"columns": ["image"], "data": [[base64.b64encode(data).decode()]]}}
    return client.post("/invocations", json=body)


def test_served_model_refuses_huge_images_with_its_message_only(
    mlflow_uri: str, tmp_path: Path, untrained_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow.pyfunc
    from mlflow.pyfunc import scoring_server
    from starlette.testclient import TestClient

    params = _params(mlflow_uri, "serve-limits")
    run_id = _run_with_model(params, tmp_path, untrained_bundle, 0.5)
    mlflow.set_tracking_uri(mlflow_uri)
    try:
        model = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    finally:
        mlflow.set_tracking_uri(None)
    client = TestClient(scoring_server.init(model))
    huge = _post_image(client, huge_png(30000, 30000))  # a 1 KB request of 900 megapixels
    assert huge.status_code == 400, huge.text
    answer = huge.json()
    assert answer["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "30000x30000 (900.0 megapixels)" in answer["message"]
    assert "SEGCORE_SERVE_MAX_IMAGE_PIXELS" in answer["message"]
    assert "stack_trace" not in answer and "Traceback" not in huge.text
    bad = _post_image(client, b"hi")
    assert bad.status_code == 400 and "stack_trace" not in bad.json()
    assert "not a decodable image" in bad.json()["message"]
    png = cv2.imencode(".png", np.zeros((60, 50), np.uint8))[1].tobytes()
    monkeypatch.setenv("SEGCORE_SERVE_MAX_IMAGE_BYTES", str(len(png) - 1))
    big = _post_image(client, png)
    assert big.status_code == 400 and "SEGCORE_SERVE_MAX_IMAGE_BYTES" in big.json()["message"]
    monkeypatch.setenv("SEGCORE_SERVE_MAX_IMAGE_BYTES", str(len(png)))
    monkeypatch.setenv("SEGCORE_SERVE_MAX_IMAGE_PIXELS", "2999")
    assert "50x60" in _post_image(client, png).json()["message"]
    monkeypatch.setenv("SEGCORE_SERVE_MAX_IMAGE_PIXELS", "3000")
    assert _post_image(client, png).status_code == 200


def test_served_model_runs_in_the_precision_of_its_environment(
    mlflow_uri: str,
    tmp_path: Path,
    untrained_bundle: Path,
    pills_raw: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import mlflow.pyfunc

    from segcore.common.errors import ParamsError
    from segcore.common.precision import EmulatedPrecisionWarning

    run_id = _run_with_model(_params(mlflow_uri, "serve-bf16"), tmp_path, untrained_bundle, 0.5)
    monkeypatch.setenv("SEGCORE_SERVE_DEVICE", "cpu")
    monkeypatch.setenv("SEGCORE_SERVE_PRECISION", "bf16")
    mlflow.set_tracking_uri(mlflow_uri)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", EmulatedPrecisionWarning)
            model = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
        monkeypatch.setenv("SEGCORE_SERVE_PRECISION", "fp16")
        with pytest.raises(ParamsError, match="fp16 needs a CUDA device"):
            mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    finally:
        mlflow.set_tracking_uri(None)
    assert model.unwrap_python_model()._model.precision.name == "bf16"
    png = next((pills_raw / "images").glob("*.png")).read_bytes()
    out = model.predict(pd.DataFrame({"image": [png]}))
    assert len(out) == 1 and 0.0 < out.loc[0, "mean_confidence"] <= 1.0
