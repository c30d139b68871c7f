"""Evaluation at original resolution: the original label files, mapped as preprocessing maps
them, against the predictions at their size; hand-computed confusion matrices.

The model is a real 1x1 convolution: class ``defect`` (id 1) where the network input is
above 0, else ``good`` (id 0); class ``spot`` (id 3) is merged into ``good`` by the
preprocessing (``set_background_id``) and never predicted. The original label files are
32 x 48 pixels: ``defect`` in rows 0-14, columns 0-19; ``spot`` (3) in rows 20-31,
columns 30-39; the ignore value 255 in column 47. The images are bright in rows 0-9.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from segcore.common.errors import DatasetError, ParamsError
from segcore.common.images import write_image_atomic
from segcore.data.dldataset import DLDataset
from segcore.data.samples import save_sample
from segcore.evaluate.evaluation import evaluate_model
from segcore.evaluate.report import write_evaluation_report
from segcore.infer.apply import SegModel
from segcore.model.bundle import BundleConfig
from segcore.params import PreprocessParams

HEIGHT, WIDTH = 32, 48
CLASS_IDS = [0, 1, 3]
NAMES = ["good", "defect", "spot"]

# Rows predicted, columns truth (good, defect, spot), column 47 (ignore) left out:
# predicted defect: rows 0-9 x 47 columns = 470 px, of which truth defect 10 x 20 = 200;
# predicted good: rows 10-31 x 47 = 1034 px, of which truth defect rows 10-14 x 20 = 100;
# spot pixels are good after the merge.
ORIGINAL = np.array([[934, 100, 0], [270, 200, 0], [0, 0, 0]])


def threshold_model(param: PreprocessParams) -> SegModel:
    conv = torch.nn.Conv2d(3, 3, 1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0] = -1 / 30
        conv.weight[1] = 1 / 30
        conv.bias.copy_(torch.tensor([0.0, 0.0, -1000.0]))
    config = BundleConfig(
        architecture={"name": "conv1x1"},
        class_ids=CLASS_IDS,
        class_names=NAMES,
        ignore_class_ids=[255],
        preprocess_param=param.model_dump(),
    )
    return SegModel(conv, config)


def original_label() -> np.ndarray:
    label = np.zeros((HEIGHT, WIDTH), np.uint8)
    label[0:15, 0:20] = 1
    label[20:32, 30:40] = 3
    label[:, 47] = 255
    return label


def bright_rows(height: int, width: int, rows: int) -> np.ndarray:
    """A network input: +128 in the first ``rows`` rows, -127 elsewhere."""
    image = np.full((3, height, width), -127.0, np.float32)
    image[:, :rows] = 128.0
    return image


def write_dataset(root: Path, param: PreprocessParams, sample_shape: tuple[int, int]) -> Path:
    """Two identical test samples whose stored labels are all ``good`` (so only the
    original files hold the defects) and whose original label files are as above."""
    labels, samples = root / "labels", root / "samples"
    rows = []
    h, w = sample_shape
    for i in range(2):
        write_image_atomic(labels / f"part{i}.png", original_label())
        name = f"{i:06d}.safetensors"
        save_sample(samples / name, bright_rows(h, w, h * 10 // HEIGHT), np.zeros((h, w)))
        rows.append(
            {
                "image_id": i,
                "image_file_name": f"part{i}.png",
                "segmentation_file_name": f"part{i}.png",
                "split": "test",
                "sample_file_name": name,
            }
        )
    ds = DLDataset(
        pd.DataFrame(rows),
        root / "images",
        labels,
        NAMES,
        CLASS_IDS,
        preprocess_param=param.model_dump(),
        sample_dir=samples,
    )
    return ds.save(root / "dataset.parquet")


BACKGROUND = {"set_background_id": 0, "class_ids_background": [3], "ignore_class_ids": [255]}
TILED = PreprocessParams(mode="tiled", image_width=32, image_height=32, **BACKGROUND)
RESIZED = PreprocessParams(image_width=16, image_height=16, **BACKGROUND)


def test_tiled_model_is_measured_on_the_original_labels_by_default(tmp_path: Path) -> None:
    path = write_dataset(tmp_path, TILED, (HEIGHT, WIDTH))
    result = evaluate_model(threshold_model(TILED), path, tile_overlap=0.5, batch_size=3)
    assert result.resolution == "original"
    np.testing.assert_array_equal(result.confusion_matrix, 2 * ORIGINAL)
    assert result.measures["class_iou"][1] == pytest.approx(200 / (200 + 100 + 270))
    assert result.worst and result.worst[0].label.shape == (HEIGHT, WIDTH)
    # network resolution: the stored (all good) labels at the samples' size, no ignore column
    network = evaluate_model(threshold_model(TILED), path, resolution="network")
    assert network.resolution == "network"
    np.testing.assert_array_equal(
        network.confusion_matrix, 2 * np.array([[22 * 48, 0, 0], [10 * 48, 0, 0], [0, 0, 0]])
    )


def test_report_predicts_more_worst_samples_the_same_way(tmp_path: Path) -> None:
    """Worst samples the evaluation did not keep are predicted again by the report, with
    the same sliding window and at the same resolution."""
    path = write_dataset(tmp_path, TILED, (HEIGHT, WIDTH))
    model = threshold_model(TILED)
    kept = evaluate_model(model, path, keep_worst=2, tile_overlap=0.5)
    result = evaluate_model(model, path, keep_worst=0, tile_overlap=0.5)
    assert not result.worst
    write_evaluation_report(result, path, tmp_path / "reports", worst_k=2, model=model)
    assert (tmp_path / "reports" / "worst_samples.png").is_file()
    from segcore.evaluate.report import _worst_samples

    again = _worst_samples(result, path, 2, model)
    assert [s.image_id for s in again] == [s.image_id for s in kept.worst]
    for a, b in zip(again, kept.worst, strict=True):
        assert a.label.shape == (HEIGHT, WIDTH)
        np.testing.assert_array_equal(a.label, b.label)
        np.testing.assert_array_equal(a.prediction, b.prediction)


def test_resize_model_offers_both_resolutions(tmp_path: Path) -> None:
    path = write_dataset(tmp_path, RESIZED, (16, 16))
    model = threshold_model(RESIZED)
    # auto keeps HALCON's: the preprocessed 16 x 16 labels (all good)
    auto = evaluate_model(model, path)
    assert auto.resolution == "network"
    np.testing.assert_array_equal(
        auto.confusion_matrix, 2 * np.array([[11 * 16, 0, 0], [5 * 16, 0, 0], [0, 0, 0]])
    )
    # original: 16 x 16 probabilities resized bilinearly to 32 x 48; the edge between
    # network rows 4 and 5 lands between original rows 9 and 10
    original = evaluate_model(model, path, resolution="original", batch_size=2)
    assert original.resolution == "original"
    np.testing.assert_array_equal(original.confusion_matrix, 2 * ORIGINAL)
    report = write_evaluation_report(original, path, tmp_path / "reports", worst_k=1, model=model)
    metrics = json.loads((tmp_path / "reports" / "metrics.json").read_text())
    assert metrics["resolution"] == "original"
    assert "Measured at original resolution" in report.read_text()
    assert "original resolution" in (tmp_path / "reports" / "report.md").read_text()


def test_missing_original_label_file_is_named(tmp_path: Path) -> None:
    path = write_dataset(tmp_path, RESIZED, (16, 16))
    (tmp_path / "labels" / "part1.png").unlink()
    with pytest.raises(DatasetError, match=r"part1\.png.*evaluate\.resolution: network"):
        evaluate_model(threshold_model(RESIZED), path, resolution="original")


def test_table_without_label_files_is_refused_at_original_resolution(tmp_path: Path) -> None:
    path = write_dataset(tmp_path, RESIZED, (16, 16))
    ds = DLDataset.load(path)
    ds.with_samples(ds.samples.drop(columns=["segmentation_file_name"])).save(path)
    with pytest.raises(DatasetError, match="no segmentation_file_name column"):
        evaluate_model(threshold_model(RESIZED), path, resolution="original")
    assert evaluate_model(threshold_model(RESIZED), path).resolution == "network"


def test_bad_resolution_and_overlap_are_refused(tmp_path: Path) -> None:
    path = write_dataset(tmp_path, TILED, (HEIGHT, WIDTH))
    with pytest.raises(ParamsError, match=r"evaluate\.resolution"):
        evaluate_model(threshold_model(TILED), path, resolution="native")
    with pytest.raises(ParamsError, match=r"evaluate\.tile_overlap.*0\.25"):
        evaluate_model(threshold_model(TILED), path, tile_overlap=1.0)


def test_a_resize_dataset_is_refused_for_a_tiled_model(tmp_path: Path) -> None:
    path = write_dataset(tmp_path, RESIZED, (16, 16))
    with pytest.raises(DatasetError, match="mode: dataset has 'resize'"):
        evaluate_model(threshold_model(TILED), path)


def test_evaluate_stage_says_which_resolution_in_metrics_and_mlflow(
    tmp_path: Path, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from helpers.models import make_tiled_bundle
    from mlflow import MlflowClient

    from segcore.params import EvaluateParams, Params, TrackingParams
    from segcore.pipeline.stage_evaluate import run_evaluate

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    bundle = make_tiled_bundle(tmp_path / "models" / "best")
    param = PreprocessParams.model_validate(
        json.loads((bundle / "model.json").read_text())["preprocess_param"]
    )
    rng = np.random.default_rng(0)
    rows = []
    for i in range(2):
        label = rng.choice(np.array([0, 1, 2, 9], np.uint8), (40, 70))
        write_image_atomic(tmp_path / "labels" / f"p{i}.png", label)
        image = rng.normal(0, 50, (3, 40, 70)).astype(np.float32)
        save_sample(tmp_path / "samples" / f"{i}.safetensors", image, label)
        rows.append(
            {
                "image_id": i,
                "image_file_name": f"p{i}.png",
                "segmentation_file_name": f"p{i}.png",
                "split": "test",
                "sample_file_name": f"{i}.safetensors",
            }
        )
    DLDataset(
        pd.DataFrame(rows),
        tmp_path / "images",
        tmp_path / "labels",
        ["good", "contamination", "crack", "unknown"],
        [0, 1, 2, 9],
        preprocess_param=param.model_dump(),
        sample_dir=tmp_path / "samples",
    ).save(tmp_path / "dataset.parquet")
    params = Params().model_copy(
        update={
            "evaluate": EvaluateParams(
                bundle="models/best", dataset="dataset.parquet", worst_k=1, device="cpu"
            ),
            "tracking": TrackingParams(tracking_uri=mlflow_uri, experiment_name="test-eval-res"),
        }
    )
    stage = run_evaluate(params, tmp_path)
    assert "at original resolution" in stage.summary
    metrics = json.loads((tmp_path / "reports" / "metrics.json").read_text())
    assert metrics["resolution"] == "original" and metrics["num_images"] == 2
    client = MlflowClient(mlflow_uri)
    experiment = client.get_experiment_by_name("test-eval-res")
    (stored,) = client.search_runs([experiment.experiment_id])
    assert stored.data.tags["test/resolution"] == "original"
    assert "test/mean_iou" in stored.data.metrics
