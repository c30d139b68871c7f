"""Per-image regions of interest (``<stem>.roi.json`` beside the image) under crop_domain:
read into the dataset table for training, and used by inference for each image."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from segcore.common.errors import DatasetError
from segcore.data.read import read_dataset
from segcore.data.roi import parse_roi, read_roi
from segcore.infer.apply import apply_model, load_model
from segcore.infer.files import run_inference
from segcore.model.bundle import BundleConfig, save_bundle
from segcore.model.factory import architecture, create_model
from segcore.params import PreprocessParams

SIZE = 16


def _crop_bundle(directory: Path) -> Path:
    """A tiny compact U-Net that crops to [0, 0, 15, 15] unless an image gives its own."""
    torch.manual_seed(0)
    kwargs = {"base_channels": 4, "depth": 2}
    param = PreprocessParams(
        image_width=SIZE,
        image_height=SIZE,
        domain_handling="crop_domain",
        domain_roi=[0, 0, SIZE - 1, SIZE - 1],
    )
    config = BundleConfig(
        architecture=architecture("compact", 3, 3, **kwargs),
        class_ids=[0, 1, 2],
        class_names=["good", "contamination", "crack"],
        ignore_class_ids=[],
        preprocess_param=param.model_dump(),
    )
    return save_bundle(directory, create_model("compact", 3, 3, **kwargs), config)


def _image(path: Path, roi: list[int] | None = None) -> None:
    rng = np.random.default_rng(1)
    cv2.imwrite(str(path), rng.integers(0, 255, (40, 40, 3), dtype=np.uint8))
    if roi is not None:
        path.with_name(path.stem + ".roi.json").write_text(json.dumps(roi))


def _inside(conf: np.ndarray) -> tuple[int, int, int, int]:
    """The rows and columns where the model answered (confidence > 0 only inside the ROI)."""
    rows, cols = np.nonzero(conf > 0)
    return int(rows.min()), int(cols.min()), int(rows.max()), int(cols.max())


def test_region_files_are_parsed_and_checked(tmp_path: Path) -> None:
    image = tmp_path / "a.png"
    assert read_roi(image) is None  # no file: the bundle's domain_roi applies
    image.with_name("a.roi.json").write_text('{"domain_roi": [1, 2, 3, 4]}')
    assert read_roi(image, (10, 10)) == (1, 2, 3, 4)
    assert parse_roi("[0, 0, 5, 5]", "x") == (0, 0, 5, 5)
    assert parse_roi(float("nan"), "x") is None
    for bad in ("[1, 2, 3]", "[3, 0, 1, 5]", "[0, 0, 1.5, 2]", "{not json"):
        image.with_name("a.roi.json").write_text(bad)
        with pytest.raises(DatasetError, match=r"a\.roi\.json"):
            read_roi(image, (10, 10))
    image.with_name("a.roi.json").write_text("[0, 0, 9, 10]")
    with pytest.raises(DatasetError, match="outside the 10x10 image"):
        read_roi(image, (10, 10))


def test_inference_crops_each_image_to_its_own_region(tmp_path: Path) -> None:
    bundle = _crop_bundle(tmp_path / "bundle")
    inputs = tmp_path / "in"
    inputs.mkdir()
    _image(inputs / "a.png")  # the bundle's region
    _image(inputs / "b.png", [10, 12, 39, 30])  # its own
    _image(inputs / "c.png", [0, 0, 99, 99])  # outside the image: reported, skipped
    summary = run_inference(load_model(bundle, device="cpu"), [inputs], tmp_path / "out")
    conf = {
        name: cv2.imread(str(tmp_path / "out" / f"{name}_confidence.tif"), cv2.IMREAD_UNCHANGED)
        for name in ("a", "b")
    }
    assert _inside(conf["a"]) == (0, 0, SIZE - 1, SIZE - 1)
    assert _inside(conf["b"]) == (10, 12, 39, 30)
    assert [Path(p).name for p, _ in summary.failed] == ["c.png"]
    assert "c.roi.json" in summary.failed[0][1]
    assert not (tmp_path / "out" / "c_segmentation.png").exists()

    # The same regions through the library call (as the served model's domain_roi column).
    image = cv2.cvtColor(cv2.imread(str(inputs / "b.png")), cv2.COLOR_BGR2RGB)
    model = load_model(bundle, device="cpu")
    own, default = apply_model(model, [image, image], rois=[(10, 12, 39, 30), None])
    assert _inside(own.segmentation_confidence) == (10, 12, 39, 30)
    assert _inside(default.segmentation_confidence) == (0, 0, SIZE - 1, SIZE - 1)


def test_the_dataset_stage_reads_the_regions_beside_the_images(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    for name, roi in (("a", [2, 3, 20, 30]), ("b", None)):
        _image(tmp_path / "images" / f"{name}.png", roi)
        cv2.imwrite(str(tmp_path / "labels" / f"{name}.png"), np.zeros((40, 40), np.uint8))
    ds = read_dataset(tmp_path / "images", tmp_path / "labels", ["good"], [0])
    rois = dict(zip(ds.samples["image_file_name"], ds.samples["domain_roi"], strict=True))
    assert list(rois["a.png"]) == [2, 3, 20, 30]
    assert rois["b.png"] is None or np.isnan(rois["b.png"])
    (tmp_path / "images" / "b.roi.json").write_text("[0, 0, 50, 50]")
    with pytest.raises(DatasetError, match=r"b\.roi\.json.*outside the 40x40 image"):
        read_dataset(tmp_path / "images", tmp_path / "labels", ["good"], [0])
