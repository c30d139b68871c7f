"""evaluate_model: one confusion matrix over the split, ignore pixels removed, per-image ranking.

The model here is a real 1x1 convolution whose prediction is the argmax of the image's
first three channels, so each test decides exactly what is predicted by drawing the image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers.models import CLASS_IDS, IGNORE, make_config, make_dataset, oracle_model
from helpers.models import ORACLE_SIZE as SIZE

from segcore.common.errors import DatasetError, ParamsError
from segcore.data.dldataset import DLDataset
from segcore.data.samples import label_to_index, load_sample
from segcore.evaluate.evaluation import evaluate_model
from segcore.evaluate.metrics import compute_measures, confusion_matrix_np, mean_iou
from segcore.infer.apply import SegModel
from segcore.model.bundle import BundleConfig, save_bundle


@pytest.fixture
def dataset(tmp_path: Path) -> tuple[Path, list[np.ndarray], list]:
    return make_dataset(tmp_path / "ds")


def test_one_confusion_matrix_over_the_split(dataset: tuple) -> None:
    path, labels, preds = dataset
    expected = sum(
        confusion_matrix_np(p, label_to_index(lab, CLASS_IDS, IGNORE), len(CLASS_IDS))
        for lab, p in zip(labels, preds, strict=True)
    )
    for batch_size in (1, 4):
        result = evaluate_model(oracle_model(), path, batch_size=batch_size)
        np.testing.assert_array_equal(result.confusion_matrix, expected)
        assert result.measures == compute_measures(expected, ["all"])
    # The ignore class is never predicted and its pixels (and value 9) are not counted.
    assert result.confusion_matrix[3].sum() == 0
    assert result.confusion_matrix.sum() == len(labels) * (SIZE * (SIZE - 1) - 1)
    assert result.measures["class_iou"][3] == -1
    assert result.ignore_class_ids == IGNORE
    assert result.num_images == len(labels) == 6
    assert result.per_class("class_iou")["border"] == -1


def test_per_image_ranking_and_worst_samples(dataset: tuple) -> None:
    path, labels, preds = dataset
    result = evaluate_model(oracle_model(), path, keep_worst=3)
    k = len(CLASS_IDS)
    want = [
        mean_iou(confusion_matrix_np(p, label_to_index(lab, CLASS_IDS, IGNORE), k))
        for lab, p in zip(labels, preds, strict=True)
    ]
    assert result.per_image["mean_iou"].tolist() == pytest.approx(want)
    assert list(result.per_image["name"]) == [f"img{i}.png" for i in range(6)]
    worst = [s.mean_iou for s in result.worst]
    assert worst == sorted(want)[:3]
    sample = result.worst[0]
    assert sample.prediction.dtype == np.uint16 and sample.prediction.shape == (SIZE, SIZE)
    assert set(np.unique(sample.prediction)) <= {0, 1, 2}
    assert sample.confidence.dtype == np.float32
    assert ((sample.confidence > 0.33) & (sample.confidence <= 1)).all()


def test_selected_measures_and_other_split(dataset: tuple) -> None:
    path, _, _ = dataset
    result = evaluate_model(oracle_model(), path, split="validation", measures=["mean_iou"])
    assert list(result.measures) == ["mean_iou"]
    assert result.num_images == 1
    with pytest.raises(ParamsError, match="valid: all, pixel_accuracy"):
        evaluate_model(oracle_model(), path, measures=["iou"])


def test_errors_name_the_fix(dataset: tuple, tmp_path: Path) -> None:
    path, _, _ = dataset
    with pytest.raises(DatasetError, match="split 'train' has no samples"):
        evaluate_model(oracle_model(), path, split="train")
    other = SegModel(oracle_model().module, make_config(class_ids=[0, 1, 2, 6]))
    with pytest.raises(DatasetError, match="class_ids"):
        evaluate_model(other, path)
    smaller = make_config()
    smaller.preprocess_param["image_width"] = 32
    with pytest.raises(DatasetError, match="image_width"):
        evaluate_model(SegModel(oracle_model().module, smaller), path)
    ds = DLDataset.load(path)
    raw = ds.with_samples(ds.samples.drop(columns=["sample_file_name"]), sample_dir=None)
    with pytest.raises(DatasetError, match="segcore preprocess"):
        evaluate_model(oracle_model(), raw)


def test_bundle_on_the_preprocessed_pills(pills_preprocessed: Path, tmp_path: Path) -> None:
    """A saved bundle evaluated on real preprocessed samples: every test pixel is counted."""
    from segcore.evaluate.report import write_evaluation_report
    from segcore.model.factory import architecture, create_model

    ds = DLDataset.load(pills_preprocessed)
    kwargs = {"base_channels": 4, "depth": 2}
    config = BundleConfig(
        architecture=architecture("compact", 3, 3, **kwargs),
        class_ids=ds.class_ids,
        class_names=ds.class_names,
        ignore_class_ids=[],
        preprocess_param=ds.preprocess_param,
    )
    bundle = save_bundle(tmp_path / "bundle", create_model("compact", 3, 3, **kwargs), config)
    result = evaluate_model(bundle, pills_preprocessed, split="test", device="cpu", batch_size=3)
    test = ds.split("test")
    assert result.num_images == len(test) > 0
    size = ds.preprocess_param["image_width"] * ds.preprocess_param["image_height"]
    assert result.confusion_matrix.sum() == len(test) * size
    labels = [load_sample(ds.sample_dir / f)["label"] for f in test["sample_file_name"]]
    truth = np.bincount(np.concatenate([lab.ravel() for lab in labels]), minlength=3)
    np.testing.assert_array_equal(result.confusion_matrix.sum(axis=0), truth)
    report = write_evaluation_report(result, ds, tmp_path / "reports", worst_k=2)
    assert report.is_file() and (tmp_path / "reports" / "worst_samples.png").is_file()
