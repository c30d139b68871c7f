"""Inference: results at the inputs' sizes, regions, streamed folder runs, unreadable inputs."""

from __future__ import annotations

import itertools
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from helpers.cli import run_segcore
from helpers.images import huge_png
from helpers.models import make_bundle

from segcore.common.display import class_colors
from segcore.common.errors import EXIT_PARTIAL_FAILURE, SegcoreError
from segcore.common.images import read_image, write_image_atomic
from segcore.infer.apply import SegModel, apply_model, find_regions
from segcore.infer.files import _ordered_map, collect_inputs, run_inference
from segcore.model.bundle import BundleConfig

NET = 32
"""Network input size of the stand-in model."""


def make_config() -> BundleConfig:
    """Classes good (0), bright (1) and never (7: never predicted)."""
    return BundleConfig(
        architecture={"name": "conv1x1"},
        class_ids=[0, 1, 7],
        class_names=["good", "bright", "never"],
        ignore_class_ids=[],
        preprocess_param={"image_width": NET, "image_height": NET, "image_num_channels": 3},
    )


def threshold_model() -> SegModel:
    """A real 1x1 convolution: class ``bright`` (id 1) where the grey value is above 127."""
    conv = torch.nn.Conv2d(3, 3, 1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0] = -1 / 30
        conv.weight[1] = 1 / 30
        conv.bias.copy_(torch.tensor([0.0, 0.0, -1000.0]))
    return SegModel(conv, make_config())


def squares(height: int, width: int, boxes: list[tuple[int, int, int, int]]) -> np.ndarray:
    """Black ``(H, W)`` uint8 image with white rectangles ``(row1, col1, row2, col2)``."""
    image = np.zeros((height, width), np.uint8)
    for r1, c1, r2, c2 in boxes:
        image[r1 : r2 + 1, c1 : c2 + 1] = 255
    return image


def test_results_have_the_inputs_sizes_and_types() -> None:
    rng = np.random.default_rng(0)
    images = [
        squares(50, 70, [(10, 10, 30, 40)]),  # grey (H, W)
        np.repeat(squares(33, 17, [(0, 0, 20, 10)])[:, :, None], 3, axis=2),  # RGB
        (squares(64, 48, [(5, 5, 20, 20)]).astype(np.uint16) * 257)[:, :, None],  # 16-bit
        rng.random((40, 41, 3)).astype(np.float32),  # float RGB
        squares(NET, NET, []),
    ]
    results = apply_model(threshold_model(), images, batch_size=2)
    assert len(results) == len(images)
    for image, result in zip(images, results, strict=True):
        assert result.segmentation_image.shape == image.shape[:2]
        assert result.segmentation_image.dtype == np.uint16
        conf = result.segmentation_confidence
        assert conf.shape == image.shape[:2] and conf.dtype == np.float32
        assert conf.min() >= 0.0 and conf.max() <= 1.0
        assert set(np.unique(result.segmentation_image)) <= {0, 1}  # 7 is never predicted
    big = results[0].segmentation_image
    assert big[20, 25] == 1 and big[45, 65] == 0
    assert results[4].segmentation_image.max() == 0


def test_regions_area_bbox_confidence_and_min_area() -> None:
    image = squares(NET, NET, [(2, 3, 9, 12), (20, 20, 22, 22), (26, 0, 26, 0)])
    model = threshold_model()
    (result,) = apply_model(model, [image])
    bright = result.regions_of(1)
    assert [(r.area, r.bbox) for r in bright] == [
        (80, (2, 3, 9, 12)),
        (9, (20, 20, 22, 22)),
        (1, (26, 0, 26, 0)),
    ]
    assert bright[1].centroid == pytest.approx((21.0, 21.0))
    assert all(r.class_name == "bright" and 0.99 < r.mean_confidence <= 1 for r in bright)
    (good,) = result.regions_of(0)  # the background is one 8-connected region
    assert good.area == NET * NET - 90
    (filtered,) = apply_model(model, [image], min_area=9)
    assert [r.area for r in filtered.regions_of(1)] == [80, 9]
    # Mean confidence is the mean over the region's own pixels.
    seg = np.zeros((4, 4), np.uint16)
    seg[0, :2] = 1
    conf = np.full((4, 4), 0.5, np.float32)
    conf[0, 0] = 0.9
    regions = find_regions(seg, conf, make_config(), min_area=1)
    assert regions[1].class_id == 1 and regions[1].mean_confidence == pytest.approx(0.7)


def test_class_colors_are_fixed_and_distinct() -> None:
    colors = class_colors(24)
    assert colors.shape == (24, 3) and colors.dtype == np.uint8
    np.testing.assert_array_equal(class_colors(3), colors[:3])
    assert len({tuple(c) for c in colors.tolist()}) == 24


def _write_inputs(folder: Path) -> dict[str, tuple[int, int]]:
    """Good images of several formats and sizes, plus a corrupt and an empty file."""
    (folder / "sub").mkdir(parents=True)
    write_image_atomic(folder / "a.png", squares(40, 60, [(5, 5, 20, 30), (30, 50, 35, 55)]))
    rgb = np.repeat(squares(37, 29, [(3, 3, 15, 15)])[:, :, None], 3, axis=2)
    write_image_atomic(folder / "sub" / "b.jpg", rgb)
    write_image_atomic(folder / "sub" / "a.tif", squares(20, 24, [(1, 1, 8, 8)]).astype(np.uint16))
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    (folder / "empty.bmp").write_bytes(b"")
    return {"a": (40, 60), "sub/b": (37, 29), "sub/a": (20, 24)}


def test_folder_run_writes_outputs_and_skips_unreadable_inputs(tmp_path: Path) -> None:
    sizes = _write_inputs(tmp_path / "in")
    out = tmp_path / "out"
    summary = run_inference(
        threshold_model(), [tmp_path / "in", tmp_path / "nothing.png"], out, batch_size=2
    )
    assert summary.num_inputs == 6 and summary.num_done == 3
    failed = dict(summary.failed)
    assert set(failed) == {
        str(tmp_path / "in" / "broken.png"),
        str(tmp_path / "in" / "empty.bmp"),
        str(tmp_path / "nothing.png"),
    }
    assert "not a readable image" in failed[str(tmp_path / "in" / "broken.png")]
    assert "empty" in failed[str(tmp_path / "in" / "empty.bmp")]
    for name, size in sizes.items():
        seg = cv2.imread(str(out / f"{name}_segmentation.png"), cv2.IMREAD_UNCHANGED)
        conf = cv2.imread(str(out / f"{name}_confidence.tif"), cv2.IMREAD_UNCHANGED)
        overlay = read_image(out / f"{name}_overlay.png")
        assert seg.shape == size and seg.dtype == np.uint8
        assert conf.shape == size and conf.dtype == np.float32
        assert conf.min() >= 0 and conf.max() <= 1
        assert overlay.shape == (*size, 3)
    seg_a = cv2.imread(str(out / "a_segmentation.png"), cv2.IMREAD_UNCHANGED)
    assert seg_a[10, 10] == 1 and seg_a[0, 0] == 0
    assert not list(out.rglob("*.tmp*"))

    table = pd.read_parquet(out / "regions.parquet")
    assert table.equals(pd.read_csv(out / "regions.csv").astype(table.dtypes.to_dict()))
    assert len(table) == summary.num_regions
    a = table[(table["file"] == str(tmp_path / "in" / "a.png")) & (table["class_id"] == 1)]
    # 40 x 60 -> 32 x 32 network -> 40 x 60 again: areas close to the drawn 6 x 6 and 16 x 26
    assert sorted(a["area"]) == pytest.approx([36, 416], rel=0.2)
    assert set(table["class_name"]) == {"good", "bright"}

    small = run_inference(threshold_model(), [tmp_path / "in" / "a.png"], out, min_area=40)
    assert small.failed == [] and small.num_done == 1
    table = pd.read_parquet(out / "regions.parquet")
    assert (table["area"] >= 40).all() and list(table["class_id"]).count(1) == 1


def test_no_images_at_all_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(SegcoreError, match="no images found"):
        run_inference(threshold_model(), [tmp_path / "empty"], tmp_path / "out")


def test_output_names_are_unique(tmp_path: Path) -> None:
    for name in ("x.png", "x.jpg", "d/x.png"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"1")
    files, missing = collect_inputs([tmp_path, tmp_path / "x.png"])
    names = [f.name for f in files]
    assert len(names) == len(set(names)) == 4 and missing == []
    assert "d/x" in names


def test_streaming_reads_a_bounded_number_ahead() -> None:
    pulled = itertools.count()
    lock = threading.Lock()

    def source() -> Any:
        for i in range(1000):
            with lock:
                next(pulled)
            yield i

    with ThreadPoolExecutor(2) as pool:
        stream = _ordered_map(pool, lambda i: i * 2, source(), ahead=5)
        first = [next(stream) for _ in range(10)]
        with lock:
            ahead = next(pulled) - 10
    assert [v for _, v in first] == list(range(0, 20, 2))
    assert ahead <= 5  # never more than `ahead` items beyond what was consumed


def test_cli_reports_a_corrupt_input_and_exits_with_partial_failure(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "bundle")
    write_image_atomic(tmp_path / "in" / "a.png", squares(40, 30, [(5, 5, 9, 9)]))
    write_image_atomic(tmp_path / "in" / "b.png", squares(64, 80, []))
    png = cv2.imencode(".png", squares(64, 80, []))[1].tobytes()
    (tmp_path / "in" / "c.png").write_bytes(png[:20])  # a PNG cut off after its signature
    done = run_segcore(
        "infer", bundle, "in", "--out", "out", "--device", "cpu", "--min-area", "2", cwd=tmp_path
    )
    assert done.returncode == EXIT_PARTIAL_FAILURE, done.stderr
    assert "2 of 3 images" in done.stdout
    assert "c.png" in done.stdout and "not a readable image" in done.stdout
    assert "grfmt_png" not in done.stderr  # OpenCV's own log lines stay quiet
    for name, size in (("a", (40, 30)), ("b", (64, 80))):
        seg = cv2.imread(str(tmp_path / "out" / f"{name}_segmentation.png"), cv2.IMREAD_UNCHANGED)
        assert seg.shape == size
    regions = pd.read_parquet(tmp_path / "out" / "regions.parquet")
    assert (regions["area"] >= 2).all()
    assert set(regions["file"]) <= {"in/a.png", "in/b.png"}


def test_cli_checks_the_pixel_limit_in_the_header_before_decoding(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "bundle")
    write_image_atomic(tmp_path / "in" / "a.png", squares(40, 30, [(5, 5, 9, 9)]))
    write_image_atomic(tmp_path / "in" / "b.png", squares(100, 100, []))
    (tmp_path / "in" / "huge.png").write_bytes(huge_png(30000, 30000))  # 900 megapixels
    done = run_segcore("infer", bundle, "in", "--out", "out", "--device", "cpu", cwd=tmp_path)
    assert done.returncode == EXIT_PARTIAL_FAILURE, done.stderr
    text = " ".join(done.stdout.split())
    assert "2 of 3 images" in text
    assert "huge.png: image is 30000x30000 (900.0 megapixels)" in text
    assert "raise infer.max_image_pixels" in text
    # The limit is a setting: 40 x 30 = 1200 pixels pass, 100 x 100 do not.
    done = run_segcore(
        "infer", bundle, "in/a.png", "in/b.png", "--out", "out2", "--device", "cpu",
        "--max-image-pixels", "5000", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == EXIT_PARTIAL_FAILURE, done.stderr
    assert "1 of 2 images" in done.stdout and "b.png: image is 100x100" in done.stdout
    assert (tmp_path / "out2" / "a_segmentation.png").is_file()
