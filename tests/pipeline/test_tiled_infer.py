"""Sliding-window inference of tiled models: the library call, `segcore infer`, the served
model; results at each image's own size, native resolution kept."""

from __future__ import annotations

import base64
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from helpers.cli import run_segcore
from helpers.models import TILE_SIZE, make_tiled_bundle

from segcore.common.errors import ParamsError
from segcore.common.images import read_image, write_image_atomic
from segcore.infer.apply import SegModel, apply_model, load_model
from segcore.infer.files import run_inference
from segcore.model.bundle import BundleConfig
from segcore.params import PreprocessParams


def threshold_model(mode: str) -> SegModel:
    """A 1x1 convolution: class 1 where the grey value is above 127, else class 0; its
    network input is 32 x 32 (a tile in tiled mode, the whole image in resize mode)."""
    conv = torch.nn.Conv2d(3, 2, 1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0] = -1 / 30
        conv.weight[1] = 1 / 30
        conv.bias.zero_()
    param = PreprocessParams(mode=mode, image_width=32, image_height=32)
    config = BundleConfig(
        architecture={"name": "conv1x1"},
        class_ids=[0, 1],
        class_names=["good", "hairline"],
        ignore_class_ids=[],
        preprocess_param=param.model_dump(),
    )
    return SegModel(conv, config)


def hairline_image(height: int = 150, width: int = 230) -> np.ndarray:
    """Black image with a one-pixel bright diagonal line and a one-pixel bright row."""
    image = np.zeros((height, width), np.uint8)
    rows = np.arange(min(height, width))
    image[rows, rows] = 255
    image[height // 3, 5:-5] = 255
    return image


def test_tiled_model_keeps_one_pixel_defects_at_native_resolution() -> None:
    image = hairline_image()
    (tiled,) = apply_model(threshold_model("tiled"), [image], batch_size=4, tile_overlap=0.25)
    assert tiled.segmentation_image.shape == image.shape
    np.testing.assert_array_equal(tiled.segmentation_image, (image > 127).astype(np.uint16))
    # the same network in resize mode sees the image squashed to 32 x 32: lines are lost
    (resized,) = apply_model(threshold_model("resize"), [image])
    assert (resized.segmentation_image == (image > 127)).mean() < 1.0
    assert tiled.regions_of(1) and sum(r.area for r in tiled.regions_of(1)) == (image > 127).sum()


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_tiled_bundle_results_at_each_images_own_size(tmp_path: Path, scale: float) -> None:
    model = load_model(make_tiled_bundle(tmp_path / "b", scale=scale), device="cpu")
    rng = np.random.default_rng(0)
    shapes = [(90, 70, 3), (20, 25, 3), (TILE_SIZE, TILE_SIZE), (41, 130, 3)]
    images = [rng.integers(0, 256, s, dtype=np.uint8) for s in shapes]
    results = apply_model(model, images, batch_size=3)
    for result, image in zip(results, images, strict=True):
        assert result.segmentation_image.shape == image.shape[:2]
        assert result.segmentation_confidence.shape == image.shape[:2]
        assert set(np.unique(result.segmentation_image)) <= {0, 1, 2}  # 9 is ignored
        assert ((result.segmentation_confidence > 0) & (result.segmentation_confidence <= 1)).all()


def test_one_tile_image_equals_one_forward_pass(tmp_path: Path) -> None:
    model = load_model(make_tiled_bundle(tmp_path / "b"), device="cpu")
    x = np.random.default_rng(1).normal(0, 50, (3, TILE_SIZE, TILE_SIZE)).astype(np.float32)
    np.testing.assert_allclose(
        model.window_probabilities(x), model.probabilities(x[None])[0], rtol=1e-5, atol=1e-6
    )
    with pytest.raises(ParamsError, match=r"infer\.tile_overlap"):
        model.window_probabilities(x, overlap=1.0)


def test_segcore_infer_on_a_tiled_bundle(tmp_path: Path) -> None:
    bundle = make_tiled_bundle(tmp_path / "bundle")
    rng = np.random.default_rng(2)
    inputs = tmp_path / "in"
    sizes = {"big.png": (100, 150), "small.png": (20, 17)}
    for name, (h, w) in sizes.items():
        write_image_atomic(inputs / name, rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    out = tmp_path / "out"
    done = run_segcore(
        "infer", bundle, inputs, "--out", out, "--batch-size", "2", "--tile-overlap", "0.5"
    )
    assert done.returncode == 0, done.stderr
    want = apply_model(
        load_model(bundle, device="cpu"),
        [read_image(inputs / name) for name in sizes],
        tile_overlap=0.5,
    )
    for (name, size), result in zip(sizes.items(), want, strict=True):
        seg = cv2.imread(str(out / f"{Path(name).stem}_segmentation.png"), cv2.IMREAD_UNCHANGED)
        assert seg.shape == size
        np.testing.assert_array_equal(seg, result.segmentation_image)
    regions = pd.read_parquet(out / "regions.parquet")
    assert set(regions["file"].map(lambda f: Path(f).name)) <= set(sizes)


def test_segcore_infer_refuses_an_overlap_of_a_whole_tile(tmp_path: Path) -> None:
    bundle = make_tiled_bundle(tmp_path / "bundle")
    write_image_atomic(tmp_path / "in" / "a.png", np.zeros((40, 40, 3), np.uint8))
    out = tmp_path / "out"
    bad = run_segcore("infer", bundle, tmp_path / "in", "--out", out, "--tile-overlap", "1.0")
    assert bad.returncode != 0
    assert "--tile-overlap: 1.0 is not a fraction of the tile" in bad.stderr
    assert "use e.g. 0.25" in bad.stderr and "Traceback" not in bad.stderr
    assert not out.exists()
    # the same from params.yaml names the key
    params = tmp_path / "params.yaml"
    params.write_text("infer:\n  tile_overlap: 1.5\n", encoding="utf-8")
    bad = run_segcore("infer", bundle, tmp_path / "in", "--out", out, "--params", params)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "tile_overlap" in bad.stderr and "1.5 is not a fraction" in bad.stderr
    assert not out.exists()
    # the library call refuses it before it creates the output folder, too
    with pytest.raises(ParamsError, match=r"infer\.tile_overlap"):
        run_inference(load_model(bundle, device="cpu"), [tmp_path / "in"], out, tile_overlap=0.99)
    assert not out.exists()


def test_served_tiled_model_answers_at_the_images_size(
    tmp_path: Path, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)

    from segcore.params import Params, TrackingParams
    from segcore.tracking import run as tracking

    bundle = make_tiled_bundle(tmp_path / "bundle", scale=0.5)
    params = Params().model_copy(
        update={
            "tracking": TrackingParams(tracking_uri=mlflow_uri, experiment_name="test-tiled-serve")
        }
    )
    with tracking.start_run(params, tmp_path) as run:
        run.log_model(bundle)
    mlflow.set_tracking_uri(mlflow_uri)
    try:
        served = mlflow.pyfunc.load_model(f"runs:/{run.run_id}/model")
    finally:
        mlflow.set_tracking_uri(None)
    image = np.random.default_rng(3).integers(0, 256, (75, 110, 3), dtype=np.uint8)
    png = cv2.imencode(".png", image)[1].tobytes()
    out = served.predict(pd.DataFrame({"image": [png]}), params={"tile_overlap": 0.5})
    seg = cv2.imdecode(
        np.frombuffer(base64.b64decode(out.loc[0, "segmentation_image"]), np.uint8),
        cv2.IMREAD_UNCHANGED,
    )
    assert seg.shape == (75, 110)
    (want,) = apply_model(
        load_model(bundle, device="cpu"), [cv2.cvtColor(image, cv2.COLOR_BGR2RGB)], tile_overlap=0.5
    )
    np.testing.assert_array_equal(seg, want.segmentation_image)
    with pytest.raises(MlflowException, match="tile_overlap"):
        served.predict(pd.DataFrame({"image": [png]}), params={"tile_overlap": 1.0})
