"""The dataset fingerprint of `segcore plan` on label images drawn by hand: class
frequencies from the table, defect sizes from the label images, the bound on the work."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segcore.common.errors import DatasetError
from segcore.data.dldataset import DLDataset
from segcore.data.read import read_dataset
from segcore.data.split import split_dataset
from segcore.train.plan import fingerprint_dataset


def _write(root: Path, labels: list[np.ndarray], width: int = 40, height: int = 30) -> None:
    (root / "images").mkdir()
    (root / "labels").mkdir()
    for i, label in enumerate(labels):
        Image.fromarray(np.full((height, width, 3), 120, np.uint8)).save(root / f"images/{i}.png")
        Image.fromarray(label).save(root / f"labels/{i}.png")


def _labels() -> list[np.ndarray]:
    """Eight 40 x 30 labels: scratches (class 1, 1 x 10 px lines) on four, blobs
    (class 2, 5 x 5 squares) on the other four, and a 255 border (ignored) on all."""
    out = []
    for i in range(8):
        label = np.zeros((30, 40), np.uint8)
        label[0, :] = 255
        if i < 4:
            label[5, 2:12] = 1
            label[20, 10:20] = 1
        else:
            label[10:15, 10:15] = 2
        out.append(label)
    return out


def _hand_drawn(tmp_path: Path) -> DLDataset:
    """The images of :func:`_labels`, all in the train split; 255 is ignored."""
    _write(tmp_path, _labels())
    ds = read_dataset(
        tmp_path / "images",
        tmp_path / "labels",
        ["good", "scratch", "blob"],
        [0, 1, 2],
        ignore_class_ids=[255],
    )
    return split_dataset(ds, training_percent=100.0, validation_percent=0.0)


def test_fingerprint_of_hand_drawn_defects(tmp_path: Path) -> None:
    ds = _hand_drawn(tmp_path)
    lines: list[str] = []
    fp = fingerprint_dataset(ds, ignore_class_ids=[255], report=lines.append)
    assert (fp.width, fp.height, fp.same_size, fp.channels) == (40, 30, True, 3)
    assert fp.split_counts == {"train": 8} and fp.num_train == 8
    assert fp.background_id == 0 and fp.sampled_images == 8
    good, scratch, blob = fp.classes
    # 8 images of 40 x 39 counted pixels (the ignored border row is not a class):
    # scratch 4 x 20, blob 4 x 25, good the rest.
    total = 8 * 40 * 29
    assert (scratch.train_pixels, blob.train_pixels) == (80, 100)
    assert scratch.pixel_fraction == pytest.approx(80 / total)
    assert good.train_pixels == total - 180
    assert (scratch.train_images, blob.train_images) == (4, 4)
    assert (scratch.components, scratch.median_area, scratch.median_width) == (8, 10.0, 1.0)
    assert (blob.components, blob.median_area, blob.median_width) == (4, 25.0, 5.0)
    assert [c.name for c in fp.defects] == ["scratch", "blob"]  # rarest first
    assert "8 of 8 train label images" in lines[0]
    assert lines[1].startswith("Fingerprint: 12 defect regions measured in")


def test_the_label_images_read_are_bounded(tmp_path: Path) -> None:
    ds = _hand_drawn(tmp_path)
    fp = fingerprint_dataset(ds, ignore_class_ids=[255], max_images=2, report=lambda _: None)
    assert fp.sampled_images == 2
    # One image of each defect class, the rarest (scratch) first: both classes measured.
    assert [c.components for c in fp.defects] == [2, 1]
    fp = fingerprint_dataset(ds, ignore_class_ids=[255], max_pixels=1, report=lambda _: None)
    assert fp.sampled_images == 1  # the first image is always read
    # The counts come from the table, whatever was sampled.
    assert fp.classes[1].train_pixels == 80


def test_a_dataset_without_a_split_is_refused(tmp_path: Path) -> None:
    _write(tmp_path, _labels()[:2])
    ds = read_dataset(
        tmp_path / "images",
        tmp_path / "labels",
        ["good", "scratch"],
        [0, 1],
        ignore_class_ids=[255],
    )
    with pytest.raises(DatasetError, match="no split; run `segcore split`"):
        fingerprint_dataset(ds)
