"""Small models and datasets the tests build themselves: a 1x1-convolution "oracle" whose
prediction is drawn into the image, a dataset of samples for it, and a small compact
U-Net bundle with an ignore class."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from segcore.data.dldataset import DLDataset
from segcore.data.samples import save_sample
from segcore.infer.apply import SegModel
from segcore.model.bundle import BundleConfig, save_bundle
from segcore.model.factory import architecture, create_model
from segcore.params import PreprocessParams

CLASS_IDS = [0, 1, 2, 5]
CLASS_NAMES = ["good", "contamination", "crack", "border"]
IGNORE = [5]
ORACLE_SIZE = 16
"""Sample size (pixels) of :func:`make_dataset`."""


def make_config(**changes: Any) -> BundleConfig:
    """The bundle config of the stand-in model (the module itself is built in the test)."""
    preprocess = {
        "image_width": ORACLE_SIZE,
        "image_height": ORACLE_SIZE,
        "image_num_channels": 3,
        "ignore_class_ids": list(IGNORE),
    }
    fields = {
        "architecture": {"name": "conv1x1"},
        "class_ids": list(CLASS_IDS),
        "class_names": list(CLASS_NAMES),
        "ignore_class_ids": list(IGNORE),
        "preprocess_param": preprocess,
    }
    return BundleConfig(**(fields | changes))


def oracle_model() -> SegModel:
    """Predicts the argmax of image channels 0..2; the ignore class has the largest logit."""
    conv = torch.nn.Conv2d(3, len(CLASS_IDS), 1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        for k in range(3):
            conv.weight[k, k] = 1.0
        conv.bias[3] = 1000.0  # would win everywhere if ignore classes were not masked
    return SegModel(conv, make_config())


def make_dataset(root: Path, n: int = 7, seed: int = 0) -> tuple[Path, list[np.ndarray], list]:
    """Samples of ORACLE_SIZE x ORACLE_SIZE with labels and images that predict them with some errors.

    Returns:
        the dataset path, the labels, and the class ids the oracle model predicts.
    """
    rng = np.random.default_rng(seed)
    (root / "samples").mkdir(parents=True)
    rows, labels, preds = [], [], []
    for i in range(n):
        label = np.zeros((ORACLE_SIZE, ORACLE_SIZE), np.uint16)
        label[2 : 4 + i, 3:9] = 1
        if i % 2 == 0:
            label[10:13, 2 : 4 + i] = 2
        label[:, -1] = 5  # an ignore-class border
        label[0, 0] = 9  # a value that is no class id
        pred = np.where(
            rng.random((ORACLE_SIZE, ORACLE_SIZE)) < 0.15 * (i + 1) / n, rng.integers(0, 3), label
        )
        pred = np.where(pred > 2, 0, pred).astype(np.int64)
        image = np.stack([(pred == k) * 10.0 for k in range(3)]).astype(np.float32)
        name = f"{i:06d}.safetensors"
        save_sample(root / "samples" / name, image, label)
        split = "validation" if i == n - 1 else "test"
        rows.append(
            {
                "image_id": i,
                "image_file_name": f"img{i}.png",
                "split": split,
                "sample_file_name": name,
            }
        )
        if split == "test":
            labels.append(label)
            preds.append(pred)
    ds = DLDataset(
        pd.DataFrame(rows),
        root,
        root,
        list(CLASS_NAMES),
        list(CLASS_IDS),
        preprocess_param=make_config().preprocess_param,
        sample_dir=root / "samples",
    )
    return ds.save(root / "dataset.parquet"), labels, preds


BUNDLE_SIZE = 32
"""Network input size (pixels) of :func:`make_bundle`."""


def make_bundle(directory: Path, seed: int = 0, **preprocess: Any) -> Path:
    """A small compact U-Net with random weights, 32 x 32 inputs; class id 9 is an ignore
    class. ``preprocess`` changes its preprocessing parameters."""
    torch.manual_seed(seed)
    kwargs = {"base_channels": 4, "depth": 2}
    module = create_model("compact", 4, 3, **kwargs)
    param = {"image_width": BUNDLE_SIZE, "image_height": BUNDLE_SIZE, "ignore_class_ids": [9]}
    config = BundleConfig(
        architecture=architecture("compact", 4, 3, **kwargs),
        class_ids=[0, 1, 2, 9],
        class_names=["good", "contamination", "crack", "unknown"],
        ignore_class_ids=[9],
        preprocess_param=PreprocessParams(**(param | preprocess)).model_dump(),
    )
    return save_bundle(directory, module, config)


TILE_SIZE = 32
"""Tile size (pixels) of :func:`make_tiled_bundle`."""


def make_tiled_bundle(directory: Path, scale: float = 1.0, seed: int = 0) -> Path:
    """:func:`make_bundle` of a tiled model (``mode: tiled``, 32 x 32 tiles at ``scale``)."""
    size = {"image_width": TILE_SIZE, "image_height": TILE_SIZE}
    return make_bundle(directory, seed, mode="tiled", scale=scale, **size)
