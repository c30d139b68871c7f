"""ONNX export: a valid file with dynamic batch and size, and onnxruntime agreeing with torch."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from helpers.cli import run_segcore
from helpers.models import BUNDLE_SIZE as SIZE
from helpers.models import make_bundle

from segcore.common.images import write_image_atomic
from segcore.infer.apply import apply_model, load_model
from segcore.infer.onnx import OnnxError, describe, export_onnx, open_session


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = make_bundle(tmp_path_factory.mktemp("onnx") / "bundle")
    export_onnx(path)
    return path


def test_export_is_valid_with_dynamic_batch_and_size(bundle: Path) -> None:
    model = onnx.load(str(bundle / "model.onnx"))
    onnx.checker.check_model(model)
    assert describe(bundle / "model.onnx").startswith(
        "image batchx3xheightxwidth -> probabilities batchx4xheightxwidth"
    )
    session = open_session(bundle)
    for shape in [(1, 3, SIZE, SIZE), (3, 3, SIZE * 2, SIZE + 8)]:
        x = np.random.default_rng(0).normal(0, 40, shape).astype(np.float32)
        probs = session.run(None, {"image": x})[0]
        assert probs.shape == (shape[0], 4, *shape[2:])
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
        assert probs[:, 3].max() == 0.0  # the ignore class is never predicted


def test_both_backends_agree(bundle: Path) -> None:
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(32, 32), (50, 70)]]
    images.append(rng.integers(0, 65536, (45, 40), dtype=np.uint16))
    eager = apply_model(load_model(bundle, device="cpu"), images, batch_size=2)
    ort = apply_model(load_model(bundle, device="cpu", backend="onnx"), images, batch_size=2)
    for a, b, image in zip(eager, ort, images, strict=True):
        assert a.segmentation_image.shape == b.segmentation_image.shape == image.shape[:2]
        same = (a.segmentation_image == b.segmentation_image).mean()
        assert same >= 0.999
        np.testing.assert_allclose(
            a.segmentation_confidence, b.segmentation_confidence, atol=1e-3, rtol=0
        )


def test_stale_or_missing_export_is_refused(bundle: Path, tmp_path: Path) -> None:
    other = make_bundle(tmp_path / "other", seed=1)
    with pytest.raises(OnnxError, match="segcore export-onnx"):
        load_model(other, device="cpu", backend="onnx")
    shutil.copy(bundle / "model.onnx", other / "model.onnx")
    with pytest.raises(OnnxError, match="other weights"):
        open_session(other)


def test_cli_export_and_onnx_inference(tmp_path: Path) -> None:
    path = make_bundle(tmp_path / "bundle", seed=2)
    done = run_segcore("export-onnx", path)
    assert done.returncode == 0, done.stderr
    assert (path / "model.onnx").is_file() and "batchx3xheightxwidth" in done.stdout
    write_image_atomic(tmp_path / "in" / "a.png", np.full((40, 30), 200, np.uint8))
    done = run_segcore(
        "infer", path, "in", "--out", "out", "--backend", "onnx", "--device", "cpu", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "a_segmentation.png").is_file()
    assert "1 of 1 images" in done.stdout


def test_both_backends_agree_on_sliding_windows(tmp_path: Path) -> None:
    from helpers.models import make_tiled_bundle

    bundle = make_tiled_bundle(tmp_path / "tiled", scale=0.5)
    export_onnx(bundle)
    rng = np.random.default_rng(2)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(150, 110), (40, 30)]]
    eager = load_model(bundle, device="cpu")
    ort = load_model(bundle, device="cpu", backend="onnx")
    # batches of 5 tiles: a full batch, then the rest (the batch axis is dynamic)
    a_all = apply_model(eager, images, batch_size=5, tile_overlap=0.5)
    b_all = apply_model(ort, images, batch_size=5, tile_overlap=0.5)
    for a, b, image in zip(a_all, b_all, images, strict=True):
        assert a.segmentation_image.shape == b.segmentation_image.shape == image.shape[:2]
        assert (a.segmentation_image == b.segmentation_image).mean() >= 0.999
        np.testing.assert_allclose(
            a.segmentation_confidence, b.segmentation_confidence, atol=1e-3, rtol=0
        )
