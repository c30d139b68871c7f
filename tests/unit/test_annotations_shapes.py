"""Pixel-exact rasterisation through ``import_labels``: every expected mask is drawn by hand.

The rule under test (segcore.annotations.shapes): a pixel is labelled when its centre
``(c + 0.5, r + 0.5)`` lies inside the shape; centres on an edge follow the top-left rule;
a line of width w covers the centres within w/2 of it (round joins and caps).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers.annotations import CLASSES, write_images

from segcore.annotations import Overlap, import_labels
from segcore.common.images import read_label


def coco(tmp_path: Path, images: list[dict], annotations: list[dict]) -> Path:
    cats = [{"id": i, "name": n} for n, i in CLASSES.items() if i]
    for k, ann in enumerate(annotations):
        ann.setdefault("id", k + 1)
        ann.setdefault("image_id", 1)
        ann.setdefault("iscrowd", 0)
    path = tmp_path / "coco.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": cats}))
    return path


def run(tmp_path: Path, export: Path, **kwargs: object) -> np.ndarray:
    """Import with :data:`CLASSES` and return the label image of ``a.png``."""
    result = import_labels(
        export, tmp_path / "images", tmp_path / "labels", class_map=CLASSES, **kwargs
    )
    assert result.written >= 1
    return read_label(tmp_path / "labels" / "a.png")


def test_triangle_takes_the_pixels_whose_centres_are_inside(tmp_path: Path) -> None:
    write_images(tmp_path / "images", {"a.png": (8, 8)})
    export = coco(
        tmp_path,
        [{"id": 1, "file_name": "a.png", "width": 8, "height": 8}],
        [{"category_id": 1, "segmentation": [[0, 0, 6, 0, 0, 6]]}],
    )
    # The hypotenuse x + y = 6 passes through the centres (5.5, 0.5), (4.5, 1.5), ...: a
    # right edge, so those pixels stay out (top-left rule); area 15 for a drawn area of 18.
    expected = np.array(
        [
            [1, 1, 1, 1, 1, 0, 0, 0],
            [1, 1, 1, 1, 0, 0, 0, 0],
            [1, 1, 1, 0, 0, 0, 0, 0],
            [1, 1, 0, 0, 0, 0, 0, 0],
            [1, 0, 0, 0, 0, 0, 0, 0],
            [0, 0, 0, 0, 0, 0, 0, 0],
            [0, 0, 0, 0, 0, 0, 0, 0],
            [0, 0, 0, 0, 0, 0, 0, 0],
        ],
        dtype=np.uint8,
    )
    np.testing.assert_array_equal(run(tmp_path, export), expected)


def test_box_from_2_3_to_5_7_takes_columns_2_to_4_and_rows_3_to_6(tmp_path: Path) -> None:
    write_images(tmp_path / "images", {"a.png": (8, 9)})
    export = coco(
        tmp_path,
        [{"id": 1, "file_name": "a.png", "width": 8, "height": 9}],
        [{"category_id": 2, "segmentation": [], "bbox": [2, 3, 3, 4]}],  # bbox only
    )
    expected = np.zeros((9, 8), dtype=np.uint8)
    expected[3:7, 2:5] = 2
    np.testing.assert_array_equal(run(tmp_path, export), expected)


def test_polygon_with_a_hole_joined_by_a_cut_leaves_the_hole_empty(tmp_path: Path) -> None:
    """One COCO ring: the outline, a cut along the diagonal (through the centres of pixels
    (1, 1) and (2, 2)) to the hole, round the hole, and back: the cut labels nothing."""
    write_images(tmp_path / "images", {"a.png": (8, 8)})
    ring = [1, 1, 7, 1, 7, 7, 1, 7, 1, 1, 3, 3, 3, 5, 5, 5, 5, 3, 3, 3]
    export = coco(
        tmp_path,
        [{"id": 1, "file_name": "a.png", "width": 8, "height": 8}],
        [{"category_id": 1, "segmentation": [ring]}],
    )
    expected = np.zeros((8, 8), dtype=np.uint8)
    expected[1:7, 1:7] = 1
    expected[3:5, 3:5] = 0
    np.testing.assert_array_equal(run(tmp_path, export), expected)


def test_ring_from_a_compressed_coco_rle_is_exact(tmp_path: Path) -> None:
    from pycocotools import mask as mask_utils

    ring = np.zeros((7, 9), dtype=np.uint8)
    ring[1:6, 2:8] = 1
    ring[2:5, 4:6] = 0
    rle = mask_utils.encode(np.asfortranarray(ring))
    write_images(tmp_path / "images", {"a.png": (9, 7)})
    export = coco(
        tmp_path,
        [{"id": 1, "file_name": "a.png", "width": 9, "height": 7}],
        [{"category_id": 2, "segmentation": {"size": [7, 9], "counts": rle["counts"].decode()}}],
    )
    np.testing.assert_array_equal(run(tmp_path, export), ring * 2)


def test_uncompressed_coco_rle_runs_down_the_columns(tmp_path: Path) -> None:
    write_images(tmp_path / "images", {"a.png": (3, 2)})
    # Column-major runs over 2 rows x 3 columns: 1 unset, 3 set, 2 unset.
    export = coco(
        tmp_path,
        [{"id": 1, "file_name": "a.png", "width": 3, "height": 2}],
        [{"category_id": 1, "segmentation": {"size": [2, 3], "counts": [1, 3, 2]}}],
    )
    expected = np.array([[0, 1, 0], [1, 1, 0]], dtype=np.uint8)
    np.testing.assert_array_equal(run(tmp_path, export), expected)


def cvat(tmp_path: Path, body: str, size: tuple[int, int] = (10, 8)) -> Path:
    path = tmp_path / "annotations.xml"
    path.write_text(
        "<?xml version='1.0' encoding='utf-8'?>\n<annotations><version>1.1</version>"
        f'<image id="0" name="a.png" width="{size[0]}" height="{size[1]}">{body}</image>'
        "</annotations>"
    )
    return path


def test_cvat_z_order_beats_document_order_and_the_overlap_is_reported(tmp_path: Path) -> None:
    write_images(tmp_path / "images", {"a.png": (10, 8)})
    export = cvat(
        tmp_path,
        '<box label="scratch" xtl="0" ytl="0" xbr="6" ybr="4" z_order="1" occluded="0"/>'
        '<polygon label="dent" points="4,2;10,2;10,8;4,8" z_order="0" occluded="0"/>',
    )
    result = import_labels(export, tmp_path / "images", tmp_path / "labels", class_map=CLASSES)
    expected = np.zeros((8, 10), dtype=np.uint8)
    expected[2:8, 4:10] = 1
    expected[0:4, 0:6] = 2  # z_order 1: on top although it comes first
    np.testing.assert_array_equal(read_label(tmp_path / "labels" / "a.png"), expected)
    assert result.overlaps == [Overlap(image="a.png", top="scratch", under="dent", pixels=4)]


def labelme(tmp_path: Path, shapes: list[dict], size: tuple[int, int] = (10, 10)) -> Path:
    folder = tmp_path / "labelme"
    folder.mkdir(exist_ok=True)
    data = {"version": "5.4.1", "flags": {}, "shapes": shapes, "imagePath": "../images/a.png"}
    data |= {"imageData": None, "imageWidth": size[0], "imageHeight": size[1]}
    (folder / "a.json").write_text(json.dumps(data))
    return folder


def shape(label: str, kind: str, points: list[list[float]]) -> dict:
    return {"label": label, "points": points, "shape_type": kind, "group_id": None, "flags": {}}


def test_without_z_order_the_later_shape_is_on_top(tmp_path: Path) -> None:
    write_images(tmp_path / "images", {"a.png": (10, 10)})
    export = labelme(
        tmp_path,
        [
            shape("dent", "rectangle", [[1, 1], [6, 6]]),
            shape("scratch", "rectangle", [[4, 4], [9, 9]]),
            shape("dent", "rectangle", [[8, 8], [10, 10]]),
        ],
    )
    result = import_labels(export, tmp_path / "images", tmp_path / "labels", class_map=CLASSES)
    expected = np.zeros((10, 10), dtype=np.uint8)
    expected[1:6, 1:6] = 1
    expected[4:9, 4:9] = 2
    expected[8:10, 8:10] = 1
    np.testing.assert_array_equal(read_label(tmp_path / "labels" / "a.png"), expected)
    assert result.overlaps == [
        Overlap("a.png", top="scratch", under="dent", pixels=4),
        Overlap("a.png", top="dent", under="scratch", pixels=1),
    ]


def test_two_pixel_polyline_is_two_pixels_thick_with_round_ends(tmp_path: Path) -> None:
    write_images(tmp_path / "images", {"a.png": (10, 10)})
    export = labelme(tmp_path, [shape("scratch", "linestrip", [[1, 2], [7, 2], [7, 7]])])
    expected = np.zeros((10, 10), dtype=np.uint8)
    expected[1:3, 0:8] = 2  # the band y 1..3 plus the caps reaching 1 pixel past x = 1, 7
    expected[3:8, 6:8] = 2  # the band x 6..8 down to the cap below y = 7
    np.testing.assert_array_equal(run(tmp_path, export, line_width=2), expected)


@pytest.mark.parametrize(("y", "rows"), [(4.0, [3]), (4.5, [4]), (4.9, [4])])
def test_one_pixel_line_is_one_pixel_thick_wherever_it_lies(
    tmp_path: Path, y: float, rows: list[int]
) -> None:
    write_images(tmp_path / "images", {"a.png": (10, 10)})
    export = labelme(tmp_path, [shape("scratch", "line", [[2.5, y], [6.5, y]])])
    expected = np.zeros((10, 10), dtype=np.uint8)
    expected[rows, 2:7] = 2
    np.testing.assert_array_equal(run(tmp_path, export, line_width=1), expected)


def test_circle_takes_the_centres_closer_than_its_radius(tmp_path: Path) -> None:
    write_images(tmp_path / "images", {"a.png": (8, 8)})
    export = labelme(tmp_path, [shape("dent", "circle", [[4, 4], [6, 4]])], size=(8, 8))
    expected = np.zeros((8, 8), dtype=np.uint8)
    expected[2:6, 2:6] = 1
    expected[[2, 2, 5, 5], [2, 5, 2, 5]] = 0  # corner centres lie 2.12 px from (4, 4)
    np.testing.assert_array_equal(run(tmp_path, export), expected)
