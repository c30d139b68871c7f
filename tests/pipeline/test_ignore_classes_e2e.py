"""Ignore classes end to end (HALCON semantics), through the real command line.

With ``preprocess.param.ignore_class_ids: [2]`` the crack pixels, still present in the
labels, take no part in the loss (class weight 0) nor in the measures, and crack is never
predicted: not by evaluate, not by infer with torch, not by infer with onnxruntime.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers.cli import run_segcore
from helpers.pipeline_repo import ROOT, set_params

from segcore.common.images import read_label
from segcore.data.dldataset import DLDataset
from segcore.data.samples import load_sample
from segcore.infer.apply import load_model

pytestmark = pytest.mark.slow

CRACK = 2
"""The ignored class id (class index 2 as well: class_ids are [0, 1, 2])."""
SIZE = 64
"""Network input size, as in the ``pills_preprocessed`` fixture."""


def _project(folder: Path, split: Path) -> Path:
    """A project folder with this repository's params.yaml, made tiny, crack ignored."""
    folder.mkdir()
    params = folder / "params.yaml"
    shutil.copy(ROOT / "params.yaml", params)
    set_params(
        params,
        {
            ("preprocess", "dataset"): str(split),
            ("preprocess", "out_dir"): "preprocessed",
            ("preprocess", "workers"): 1,
            ("preprocess", "param", "image_width"): SIZE,
            ("preprocess", "param", "image_height"): SIZE,
            ("preprocess", "param", "ignore_class_ids"): [CRACK],
            ("train", "dataset"): "preprocessed/dataset.parquet",
            ("train", "out_dir"): "models",
            ("train", "history"): "reports/train_history.csv",
            ("train", "model"): "compact",
            ("train", "model_kwargs"): {"base_channels": 8, "depth": 3},
            ("train", "num_epochs"): 2,
            ("train", "batch_size"): 4,
            ("train", "change_strategies"): [],
            ("train", "num_threads"): 1,
            ("train", "device"): "cpu",
            ("evaluate", "bundle"): "models/best",
            ("evaluate", "dataset"): "preprocessed/dataset.parquet",
            ("evaluate", "split"): "test",
            ("evaluate", "worst_k"): 2,
            ("evaluate", "report_dir"): "reports",
            ("evaluate", "device"): "cpu",
            ("infer", "device"): "cpu",
            ("infer", "workers"): 1,
        },
    )
    return folder


def _ok(*args: object, cwd: Path) -> str:
    done = run_segcore(*map(str, args), cwd=cwd)
    assert done.returncode == 0, f"segcore {args[0]} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _segmentations(out: Path, count: int) -> dict[str, np.ndarray]:
    found = {p.name: read_label(p) for p in sorted(out.glob("*_segmentation.png"))}
    assert len(found) == count
    return found


def test_ignore_classes_train_evaluate_infer_onnx(
    pills_raw: Path, pills_split: Path, tmp_path: Path
) -> None:
    project = _project(tmp_path / "project", pills_split)

    # Preprocess: crack pixels stay in the labels but get class weight 0.
    _ok("preprocess", cwd=project)
    ds = DLDataset.load(project / "preprocessed" / "dataset.parquet")
    assert ds.class_ids == [0, 1, CRACK]
    assert (ds.preprocess_param or {})["ignore_class_ids"] == [CRACK]
    assert ds.class_weights is not None and len(ds.class_weights) == 3
    assert ds.class_weights[CRACK] == 0.0
    assert all(w > 0 for w in ds.class_weights[:CRACK])
    assert ds.sample_dir is not None
    train = [load_sample(ds.sample_dir / f) for f in ds.split("train")["sample_file_name"]]
    labels = np.stack([s["label"] for s in train])
    weights = np.stack([s["weight"] for s in train])
    assert (labels == CRACK).any(), "the tiny dataset should hold crack pixels to ignore"
    assert (weights[labels == CRACK] == 0).all()
    assert (weights[labels != CRACK] > 0).all()

    # Train: the bundle carries the ignore ids.
    _ok("train", cwd=project)
    bundle = project / "models" / "best"
    config = json.loads((bundle / "model.json").read_text(encoding="utf-8"))
    assert config["ignore_class_ids"] == [CRACK]
    assert config["class_ids"] == [0, 1, CRACK]

    # Evaluate: crack is not evaluated (its pixels are removed) and never predicted.
    _ok("evaluate", cwd=project)
    metrics = json.loads((project / "reports" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["class_iou"]["crack"] == -1
    assert metrics["class_pixel_accuracy"]["crack"] == -1
    assert metrics["num_images"] == len(ds.split("test"))
    matrix = pd.read_csv(project / "reports" / "confusion_matrix.csv", index_col=0)
    assert list(matrix.index) == list(matrix.columns) == ["good", "contamination", "crack"]
    assert (matrix.loc["crack"] == 0).all(), "crack was predicted (rows are predictions)"
    test = [load_sample(ds.sample_dir / f) for f in ds.split("test")["sample_file_name"]]
    test_labels = np.stack([s["label"] for s in test])
    assert (test_labels == CRACK).any(), "the test split should hold crack pixels to ignore"
    assert (matrix["crack"] == 0).all(), "crack pixels were counted (columns are truth)"
    assert matrix.to_numpy().sum() == (test_labels != CRACK).sum()

    # The probabilities themselves: crack at exactly 0 in both backends, trained or not.
    _ok("export-onnx", bundle, cwd=project)
    test_images = np.stack([s["image"] for s in test])
    for backend in ("torch", "onnx"):
        probs = load_model(bundle, device="cpu", backend=backend).probabilities(test_images)
        assert probs.shape[1] == 3
        assert probs[:, CRACK].max() == 0.0, backend

    # Infer on the raw images, torch then onnx: no pixel and no region of crack.
    images = pills_raw / "images"
    count = len(list(images.iterdir()))
    outputs = {}
    for backend in ("torch", "onnx"):
        out = project / f"infer_{backend}"
        stdout = _ok("infer", bundle, images, "--out", out, "--backend", backend, cwd=project)
        assert f"{count} of {count} images" in stdout
        outputs[backend] = _segmentations(out, count)
        for name, seg in outputs[backend].items():
            assert seg.shape == (96, 96), name
            assert not (seg == CRACK).any(), f"{backend}: crack predicted in {name}"
        regions = pd.read_parquet(out / "regions.parquet")
        assert len(regions) > 0
        assert CRACK not in set(regions["class_id"])
        assert "crack" not in set(regions["class_name"])

    # Both backends agree on nearly every pixel.
    torch_segs, onnx_segs = outputs["torch"], outputs["onnx"]
    assert torch_segs.keys() == onnx_segs.keys()
    same = np.mean([(torch_segs[k] == onnx_segs[k]).mean() for k in torch_segs])
    assert same >= 0.999
