"""int8 ONNX export (any CPU): calibrated on training samples, checked against fp32, its
validation measure change reported; clear errors without calibration samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from helpers.cli import run_segcore
from helpers.training import tiny_params

from segcore.common.constants import ONNX_FILE
from segcore.data.dldataset import DLDataset
from segcore.infer.apply import load_model
from segcore.infer.onnx import OnnxError, export_module, open_session
from segcore.infer.quantize import (
    META_QUANTIZATION,
    check_quantization,
    export_int8,
    quantize_int8,
    split_images,
)
from segcore.model.bundle import load_bundle
from segcore.train.loop import train_model


@pytest.fixture(scope="module")
def trained(pills_preprocessed: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny compact model trained for a few epochs on the pills (the final bundle)."""
    root = tmp_path_factory.mktemp("int8")
    train_model(
        pills_preprocessed, tiny_params(root, num_epochs=4, serialization_strategies=["final"])
    )
    return root / "models" / "final"


def test_int8_export_is_quantized_agrees_with_fp32_and_reports_the_measure_change(
    trained: Path, pills_preprocessed: Path
) -> None:
    done = run_segcore(
        "export-onnx", trained, "--quantize", "int8", "--dataset", pills_preprocessed,
        "--calibration-samples", "4",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "int8 vs fp32 on" in done.stdout and "validation samples" in done.stdout
    assert "measure change, validation mean_iou: fp32 torch" in done.stdout

    model = onnx.load(str(trained / ONNX_FILE))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    int8_weights = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert int8_weights  # the convolution weights are stored as int8
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta[META_QUANTIZATION] == "int8" and "segcore.weights_sha256" in meta

    # The onnx backend runs the int8 file (its weights hash still matches the bundle) and
    # picks the classes of the fp32 network on nearly every validation pixel.
    open_session(trained)
    config = load_bundle(trained)[1]
    images = np.stack(split_images(pills_preprocessed, "validation", 8, config))
    torch_classes = load_model(trained, device="cpu").predict(images)[0]
    onnx_classes = load_model(trained, device="cpu", backend="onnx").predict(images)[0]
    agreement = (torch_classes == onnx_classes).mean()
    assert agreement >= 0.95
    reported = float(done.stdout.split("same class on ")[1].split("%")[0]) / 100
    assert reported == pytest.approx(agreement, abs=0.002)  # the same validation images


def test_the_parity_check_refuses_a_badly_calibrated_graph(
    trained: Path, pills_preprocessed: Path, tmp_path: Path
) -> None:
    module, config = load_bundle(trained)
    fp32 = tmp_path / "fp32.onnx"
    export_module(module, config, fp32)
    check = split_images(pills_preprocessed, "validation", 4, config)
    # Ranges measured on blank images clip every real activation.
    blank = [np.zeros_like(check[0])]
    with pytest.raises(OnnxError, match="int8 quantization changes the model too much"):
        quantize_int8(fp32, tmp_path / "int8.onnx", blank, check, "validation")
    assert not (tmp_path / "int8.onnx").exists()
    with pytest.raises(OnnxError, match="needs calibration samples"):
        quantize_int8(fp32, tmp_path / "int8.onnx", [], check)


def test_int8_without_calibration_samples_is_a_clear_error(
    trained: Path, pills_preprocessed: Path, tmp_path: Path
) -> None:
    out = tmp_path / "model.onnx"
    done = run_segcore(
        "export-onnx", trained, "--quantize", "int8", "--out", out,
        "--dataset", tmp_path / "missing.parquet",
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "missing.parquet: no dataset there, so no calibration samples" in done.stderr
    assert "--dataset" in done.stderr and "Traceback" not in done.stderr

    ds = DLDataset.load(pills_preprocessed)
    assert ds.sample_dir is not None
    no_train = ds.with_samples(ds.samples[ds.samples["split"] != "train"].reset_index(drop=True))
    empty = no_train.save(ds.sample_dir.parent / "no_train.parquet")
    with pytest.raises(OnnxError, match="the train split has no samples to calibrate on"):
        export_int8(trained, empty, out)
    with pytest.raises(OnnxError, match="--calibration-samples is 0"):
        export_int8(trained, pills_preprocessed, out, calibration_samples=0)
    with pytest.raises(OnnxError, match="unknown 'int4'; use int8"):
        check_quantization("int4")
    assert not out.exists()
