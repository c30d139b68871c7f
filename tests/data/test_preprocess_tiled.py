"""The preprocess stage in tiled mode: samples at native size times ``scale``, images of
different sizes, 16-bit and RGBA inputs, class weights and weight images at the stored
resolution (against hand-computed values), memory-mapped reads."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from segcore.common.errors import DatasetError, ParamsError
from segcore.common.images import write_image_atomic
from segcore.data.dldataset import DLDataset
from segcore.data.samples import load_sample, map_sample
from segcore.params import PreprocessParams, load_params
from segcore.preprocess.class_weights import FREQUENCY_OFFSET
from segcore.preprocess.stage import preprocess_dataset
from segcore.preprocess.transforms import preprocess_samples

TILED_HALF = PreprocessParams(mode="tiled", scale=0.5, image_width=8, image_height=8)


def _labels() -> dict[str, np.ndarray]:
    """Label images whose 2 x 2 blocks are uniform, so halving them is exact."""
    a = np.zeros((20, 40), np.uint8)  # 40 x 20 -> 20 x 10 = 200 pixels at scale 0.5
    a[0:4, 0:8] = 1  # -> 2 x 4 = 8 pixels
    a[4:6, 10:14] = 2  # -> 1 x 2 = 2 pixels
    b = np.zeros((20, 20), np.uint8)  # 20 x 20 -> 10 x 10 = 100 pixels
    b[0:2, 0:2] = 1  # -> 1 pixel
    c = np.zeros((30, 50), np.uint8)  # validation, another size
    c[10:20, 10:20] = 2
    return {"a": a, "b": b, "c": c}


def _dataset(root: Path) -> DLDataset:
    """Three samples of three sizes: ``a`` RGB 8-bit, ``b`` RGBA 16-bit, ``c`` grey 8-bit."""
    rng = np.random.default_rng(3)
    images = {
        "a": rng.integers(0, 256, (20, 40, 3), dtype=np.uint8),
        "b": rng.integers(0, 65536, (20, 20, 4), dtype=np.uint16),
        "c": rng.integers(0, 256, (30, 50), dtype=np.uint8),
    }
    rows = []
    for i, (name, label) in enumerate(_labels().items()):
        image = images[name]
        if image.ndim == 3 and image.shape[2] == 4:  # RGBA: OpenCV writes BGRA
            cv2.imwrite(str(root / "images" / f"{name}.png"), image)
        else:
            write_image_atomic(root / "images" / f"{name}.png", image)
        write_image_atomic(root / "labels" / f"{name}.png", label)
        split = "validation" if name == "c" else "train"
        rows.append(
            {
                "image_id": i,
                "image_file_name": f"{name}.png",
                "segmentation_file_name": f"{name}.png",
                "split": split,
            }
        )
    (root / "images").mkdir(parents=True, exist_ok=True)
    return DLDataset(
        pd.DataFrame(rows), root / "images", root / "labels", ["good", "dent", "scratch"], [0, 1, 2]
    )


@pytest.fixture
def ds(tmp_path: Path) -> DLDataset:
    (tmp_path / "raw" / "images").mkdir(parents=True)
    return _dataset(tmp_path / "raw")


def test_tiled_samples_keep_their_own_size_times_scale(ds: DLDataset, tmp_path: Path) -> None:
    out = preprocess_dataset(ds, TILED_HALF, tmp_path / "pre", workers=1)
    assert out.sample_dir is not None
    files = [Path(out.sample_dir) / f for f in out.samples["sample_file_name"]]
    shapes = [load_sample(f)["image"].shape for f in files]
    # RGB, RGBA 16-bit (alpha dropped) and grey all become 3 channels; sizes differ.
    assert shapes == [(3, 10, 20), (3, 10, 10), (3, 15, 25)]
    labels = [load_sample(f)["label"] for f in files]
    for label, raw in zip(labels, _labels().values(), strict=True):
        expected = cv2.resize(raw, label.shape[::-1], interpolation=cv2.INTER_NEAREST_EXACT)
        np.testing.assert_array_equal(label, expected)
    assert "weight" not in load_sample(files[2])  # validation: no weight image
    assert out.preprocess_param["mode"] == "tiled"


def test_class_weights_and_weight_images_at_the_stored_resolution(
    ds: DLDataset, tmp_path: Path
) -> None:
    out = preprocess_dataset(ds, TILED_HALF, tmp_path / "pre", workers=1)
    # Train pixels at scale 0.5, counted by hand: a 190/8/2 of 200, b 99/1/0 of 100.
    area = np.array([190 + 99, 8 + 1, 2 + 0], dtype=np.float64)
    raw = 1.0 / (area / 300 + FREQUENCY_OFFSET)
    expected = raw / raw.min()
    np.testing.assert_allclose(out.class_weights, expected, rtol=1e-12)
    assert out.class_weights[0] == 1.0 and out.class_weights[2] > out.class_weights[1] > 1.0

    assert out.sample_dir is not None
    sample = load_sample(Path(out.sample_dir) / out.samples["sample_file_name"][0])
    lut = np.asarray(out.class_weights, dtype=np.float32)
    np.testing.assert_array_equal(sample["weight"], lut[sample["label"]])
    assert sample["weight"].shape == (10, 20)


def test_native_scale_keeps_every_pixel(ds: DLDataset, tmp_path: Path) -> None:
    param = PreprocessParams(mode="tiled", image_width=8, image_height=8)
    out = preprocess_dataset(ds, param, tmp_path / "pre", workers=1)
    assert out.sample_dir is not None
    first = load_sample(Path(out.sample_dir) / out.samples["sample_file_name"][0])
    np.testing.assert_array_equal(first["label"], _labels()["a"])
    # none normalization on 8-bit: [0, 255] -> [-127, 128], pixel for pixel.
    raw = cv2.cvtColor(cv2.imread(str(ds.image_dir / "a.png")), cv2.COLOR_BGR2RGB)
    np.testing.assert_allclose(first["image"], raw.transpose(2, 0, 1) - 127.0, atol=1e-4)


def test_samples_can_be_memory_mapped(ds: DLDataset, tmp_path: Path) -> None:
    out = preprocess_dataset(ds, TILED_HALF, tmp_path / "pre", workers=1)
    assert out.sample_dir is not None
    path = Path(out.sample_dir) / out.samples["sample_file_name"][0]
    mapped, loaded = map_sample(path), load_sample(path)
    assert sorted(mapped) == sorted(loaded)
    for key, value in loaded.items():
        assert not mapped[key].flags.writeable and mapped[key].dtype == value.dtype
        np.testing.assert_array_equal(mapped[key], value)
    (tmp_path / "junk.safetensors").write_bytes(b"\x10\x00")
    with pytest.raises(DatasetError, match=r"junk\.safetensors: not a readable"):
        map_sample(tmp_path / "junk.safetensors")


def test_batch_preprocessing_refuses_tiled_mode() -> None:
    images = [np.zeros((10, 10, 3), np.uint8), np.zeros((12, 10, 3), np.uint8)]
    with pytest.raises(ValueError, match="preprocess_image per image"):
        preprocess_samples(images, TILED_HALF)


def test_a_scale_outside_tiled_mode_is_refused_naming_the_key_and_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("preprocess:\n  param:\n    scale: 0.5\n")
    with pytest.raises(ParamsError) as err:
        load_params(path)
    assert "preprocess.param.scale" in str(err.value)
    assert "set mode: tiled, or scale: 1.0" in str(err.value)
    assert PreprocessParams(mode="tiled", scale=0.5).scale == 0.5
