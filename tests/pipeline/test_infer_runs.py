"""Inference runs through the real command line: per-image write failures, tables that
describe exactly one run, the input folder as output folder, one run per output folder."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from filelock import FileLock
from helpers.cli import run_segcore
from helpers.models import make_bundle

from segcore.common.errors import EXIT_PARTIAL_FAILURE, EXIT_USER_ERROR
from segcore.common.images import write_image_atomic
from segcore.model.bundle import BundleConfig, save_bundle
from segcore.model.factory import architecture, create_model
from segcore.params import PreprocessParams


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("bundle") / "best")


def _image(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    write_image_atomic(path, rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))


def _infer(bundle: Path, cwd: Path, *args: str):
    return run_segcore("infer", bundle, *args, "--device", "cpu", "--workers", "1", cwd=cwd)


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_a_failed_write_skips_one_image_and_the_tables_hold_exactly_this_run(
    bundle: Path, tmp_path: Path
) -> None:
    _image(tmp_path / "first" / "a.png", 0)
    assert _infer(bundle, tmp_path, "first", "--out", "out").returncode == 0
    assert set(pd.read_parquet(tmp_path / "out" / "regions.parquet")["file"]) == {"first/a.png"}
    _image(tmp_path / "second" / "b.png", 1)
    _image(tmp_path / "second" / "c.png", 2)
    (tmp_path / "out" / "c_overlay.png").mkdir()  # c's outputs cannot be written
    (tmp_path / "out" / "regions.csv").unlink()
    (tmp_path / "out" / "regions.csv").mkdir()  # nor can the CSV table
    done = _infer(bundle, tmp_path, "second", "--out", "out")
    assert done.returncode == EXIT_PARTIAL_FAILURE, done.stderr
    assert "Traceback" not in done.stderr
    text = _flat(done.stdout)
    assert "1 of 2 images" in text and "second/c.png" in text
    assert "1 table(s) could not be written" in text and "regions.csv" in text
    assert (tmp_path / "out" / "b_segmentation.png").is_file()
    assert not (tmp_path / "out" / "c_segmentation.png").exists()  # no half set of outputs
    # The first run's table is gone: what is left describes the second run only.
    table = pd.read_parquet(tmp_path / "out" / "regions.parquet")
    assert set(table["file"]) == {"second/b.png"}
    assert not list((tmp_path / "out").glob(".*.tmp*"))


def test_the_input_folder_can_be_the_output_folder(bundle: Path, tmp_path: Path) -> None:
    for seed, name in enumerate(("a.png", "sub/b.png")):
        _image(tmp_path / "in" / name, seed)
    for _ in range(2):
        done = _infer(bundle, tmp_path, "in", "--out", "in")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "2 of 2 images" in done.stdout
    table = pd.read_parquet(tmp_path / "in" / "regions.parquet")
    assert set(table["file"]) == {"in/a.png", "in/sub/b.png"}
    assert not list((tmp_path / "in").rglob("*_overlay_*"))


def test_a_second_run_into_the_same_folder_is_refused(bundle: Path, tmp_path: Path) -> None:
    _image(tmp_path / "in" / "a.png", 0)
    (tmp_path / "out").mkdir()
    with FileLock(tmp_path / "out" / ".segcore-infer.lock"):  # as a running `segcore infer`
        done = _infer(bundle, tmp_path, "in", "--out", "out")
    assert done.returncode == EXIT_USER_ERROR, done.stderr
    assert "another segcore infer is writing into this folder" in _flat(done.stderr)
    assert not (tmp_path / "out" / "a_segmentation.png").exists()
    assert _infer(bundle, tmp_path, "in", "--out", "out").returncode == 0


def test_a_broken_link_in_an_input_folder_is_a_failed_input(bundle: Path, tmp_path: Path) -> None:
    _image(tmp_path / "in" / "a.png", 0)
    (tmp_path / "in" / "b.png").symlink_to(tmp_path / "gone.png")
    done = _infer(bundle, tmp_path, "in", "--out", "out")
    assert done.returncode == EXIT_PARTIAL_FAILURE, done.stderr
    text = _flat(done.stdout)
    assert "1 of 2 images" in text and "in/b.png: broken symbolic link" in text


def _bundle_of_8bit_training(directory: Path) -> Path:
    """A compact U-Net (random weights) trained, as its model.json says, on 8-bit images."""
    torch.manual_seed(3)
    kwargs = {"base_channels": 4, "depth": 2}
    config = BundleConfig(
        architecture=architecture("compact", 3, 3, **kwargs),
        class_ids=[0, 1, 2],
        class_names=["good", "contamination", "crack"],
        ignore_class_ids=[],
        preprocess_param=PreprocessParams(image_width=32, image_height=32).model_dump(),
        input_bit_depth=8,
    )
    return save_bundle(directory, create_model("compact", 3, 3, **kwargs), config)


def test_16_bit_inputs_to_an_8_bit_model_give_the_8_bit_results(tmp_path: Path) -> None:
    bundle = _bundle_of_8bit_training(tmp_path / "bundle")
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    write_image_atomic(tmp_path / "in" / "a8.png", image)
    write_image_atomic(tmp_path / "in" / "a16.png", image.astype(np.uint16) * 257)
    write_image_atomic(tmp_path / "in" / "f.tif", image.astype(np.float32) / 255)
    done = _infer(bundle, tmp_path, "in", "--out", "out")
    assert done.returncode == EXIT_PARTIAL_FAILURE, done.stderr
    text = _flat(done.stdout)
    assert "2 of 3 images" in text
    assert "Warning: 16-bit inputs were scaled to the model's 8-bit range" in text
    assert "in/f.tif: a 32-bit float32 image" in text
    assert "train with normalization_type first_channel or all_channels" in text
    out = tmp_path / "out"
    for kind in ("segmentation.png", "confidence.tif"):
        a8 = cv2.imread(str(out / f"a8_{kind}"), cv2.IMREAD_UNCHANGED)
        a16 = cv2.imread(str(out / f"a16_{kind}"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_allclose(a16, a8, atol=1e-6)


def test_crop_domain_fills_the_outside_with_the_first_class_that_is_not_ignored(
    tmp_path: Path,
) -> None:
    kwargs = {"base_channels": 4, "depth": 2}
    param = PreprocessParams(
        image_width=16,
        image_height=16,
        domain_handling="crop_domain",
        domain_roi=[4, 6, 19, 21],
        ignore_class_ids=[255],
    )
    config = BundleConfig(
        architecture=architecture("compact", 3, 3, **kwargs),
        class_ids=[255, 3, 4],  # the ignore class first, as HALCON's border class
        class_names=["border", "good", "defect"],
        ignore_class_ids=[255],
        preprocess_param=param.model_dump(),
    )
    bundle = save_bundle(tmp_path / "bundle", create_model("compact", 3, 3, **kwargs), config)
    _image(tmp_path / "in" / "a.png", 0)
    done = _infer(bundle, tmp_path, "in", "--out", "out")
    assert done.returncode == 0, done.stdout + done.stderr
    seg = cv2.imread(str(tmp_path / "out" / "a_segmentation.png"), cv2.IMREAD_UNCHANGED)
    inside = np.zeros(seg.shape, bool)
    inside[4:20, 6:22] = True
    assert (seg[~inside] == 3).all()  # never the ignore class 255
    assert set(np.unique(seg[inside])) <= {3, 4}
