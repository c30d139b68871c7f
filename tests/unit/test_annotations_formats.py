"""Each export format: shapes of every kind it has, image references, format detection.

The exports are written here by hand, in each tool's layout; expected masks are drawn with
numpy slicing (pixel-centre rule: a box from x0 to x1 covers columns x0 .. x1 - 1).
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from helpers.annotations import CLASSES, write_images
from PIL import Image

from segcore.annotations import detect_format, import_labels
from segcore.common.errors import DatasetError, ParamsError
from segcore.common.images import read_label


def imported(tmp_path: Path, export: Path, name: str = "a.png", **kwargs: object) -> np.ndarray:
    result = import_labels(
        export, tmp_path / "images", tmp_path / "labels", class_map=CLASSES, **kwargs
    )
    assert result.format == detect_format(export)
    return read_label(tmp_path / "labels" / name)


# --------------------------------------------------------------------------- CVAT


def test_cvat_polygon_polyline_rotated_box_and_mask(tmp_path: Path) -> None:
    write_images(tmp_path / "images", {"a.png": (12, 10)})
    export = tmp_path / "annotations.xml"
    export.write_text(
        """<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta><task><name>pills</name></task></meta>
  <image id="0" name="task_3/a.png" width="12" height="10">
    <mask label="dent" source="manual" occluded="0" rle="1, 2, 1, 4, 1, 2, 1"
          left="2" top="1" width="4" height="3" z_order="0"></mask>
    <box label="scratch" occluded="0" xtl="8" ytl="2" xbr="12" ybr="4" rotation="90"
         z_order="0"></box>
    <polygon label="dent" occluded="0" points="1,6;4,6;4,9;1,9" z_order="0">
      <attribute name="severity">high</attribute>
    </polygon>
    <polyline label="scratch" occluded="0" points="6.2,7.5;10.8,7.5" z_order="0"></polyline>
    <tag label="reviewed" source="manual"></tag>
  </image>
</annotations>
"""
    )
    expected = np.zeros((10, 12), dtype=np.uint8)
    expected[1:4, 2:6] = [[0, 1, 1, 0], [1, 1, 1, 1], [0, 1, 1, 0]]  # RLE row by row
    expected[1:5, 9:11] = 2  # the 4x2 box turned upright around its centre (10, 3)
    expected[6:9, 1:4] = 1
    expected[7, 6:11] = 2  # 1 pixel wide
    np.testing.assert_array_equal(imported(tmp_path, export, line_width=1), expected)


# --------------------------------------------------------------------------- LabelMe


def png_base64(bitmap: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(bitmap.astype(np.uint8) * 255).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_labelme_json_beside_the_images_with_polygon_and_mask(tmp_path: Path) -> None:
    """LabelMe's usual layout: ``lot1/a.json`` next to ``lot1/a.png``, naming it ``a.png``
    (relative to the JSON, so not ``lot2/a.png``)."""
    images = write_images(tmp_path / "images", {"lot1/a.png": (9, 8), "lot2/a.png": (9, 8)})
    bitmap = np.array([[1, 0, 1], [1, 1, 1]])
    shapes = [
        {"label": "dent", "points": [[1, 1], [4, 1], [4, 3], [1, 3]], "shape_type": "polygon"},
        {
            "label": "scratch",
            "points": [[5, 5], [7, 6]],
            "shape_type": "mask",
            "mask": png_base64(bitmap),
        },
    ]
    data = {"version": "5.5.0", "shapes": shapes, "imagePath": "a.png"}
    (images / "lot1" / "a.json").write_text(json.dumps(data | {"imageWidth": 9, "imageHeight": 8}))
    result = import_labels(images, images, tmp_path / "labels", class_map=CLASSES)
    assert result.format == "labelme"
    expected = np.zeros((8, 9), dtype=np.uint8)
    expected[1:3, 1:4] = 1
    expected[5:7, 5:8] = bitmap * 2
    np.testing.assert_array_equal(read_label(tmp_path / "labels" / "lot1" / "a.png"), expected)
    # The other lot has no JSON: a defect-free sample, all background.
    assert not read_label(tmp_path / "labels" / "lot2" / "a.png").any()


# --------------------------------------------------------------------------- Label Studio


def brush_rle(flat: np.ndarray) -> list[int]:
    """Label Studio's brush RLE of a flat uint8 array, written from the format: 32-bit count,
    word size - 1 (5 bits), four run-length sizes - 1 (4 bits each: 3, 4, 8, 16), then a run
    block per repeated value and literal blocks (up to 8 words) for values that differ."""
    bits = [f"{len(flat):032b}", f"{8 - 1:05b}", *(f"{s - 1:04b}" for s in (3, 4, 8, 16))]
    runs: list[tuple[int, int]] = []  # (value, length)
    for value in flat.tolist():
        if runs and runs[-1][0] == value and runs[-1][1] < 2**16:
            runs[-1] = (value, runs[-1][1] + 1)
        else:
            runs.append((value, 1))
    pending: list[int] = []  # single values, written as one literal block of up to 8

    def flush() -> None:
        if pending:
            words = "".join(f"{v:08b}" for v in pending)
            bits.append(f"0{0:02b}{len(pending) - 1:03b}{words}")  # literal, size index 0
            pending.clear()

    for value, length in runs:
        if length == 1:
            pending.append(value)
            if len(pending) == 8:
                flush()
        else:
            flush()
            bits.append(f"1{3:02b}{length - 1:016b}{value:08b}")  # run, size index 3
    flush()
    text = "".join(bits)
    text += "0" * (-len(text) % 8)
    return [int(text[k : k + 8], 2) for k in range(0, len(text), 8)]


def ls_result(kind: str, value: dict, size: tuple[int, int] = (20, 10), **extra: str) -> dict:
    return {
        "type": kind,
        "value": value,
        "original_width": size[0],
        "original_height": size[1],
        "image_rotation": 0,
        "from_name": "tag",
        "to_name": "image",
        **extra,
    }


def test_labelstudio_polygon_rectangle_and_brush_in_percent(tmp_path: Path) -> None:
    write_images(tmp_path / "images", {"a.png": (20, 10), "b.png": (20, 10)})
    brush = np.zeros((10, 20), dtype=bool)
    brush[7:9, 15:19] = True
    # Green strokes: alpha marks them, and RGBA values differ, so runs and literals both occur.
    rgba = np.where(brush[:, :, None], [0, 255, 0, 200], 0).astype(np.uint8)
    results = [
        ls_result(
            "polygonlabels",
            {"points": [[10, 20], [30, 20], [30, 50], [10, 50]], "polygonlabels": ["dent"]},
        ),
        ls_result(
            "rectanglelabels",
            {"x": 50, "y": 10, "width": 25, "height": 40, "rotation": 0},
            id="r1",
        ),
        ls_result("labels", {"labels": ["scratch"]}, id="r1"),  # a separate <Labels> tag
        ls_result(
            "brushlabels",
            {"format": "rle", "rle": brush_rle(rgba.ravel())} | {"brushlabels": ["dent"]},
        ),
        {"type": "choices", "value": {"choices": ["ok"]}},
    ]
    square = ls_result(
        "polygonlabels", {"points": [[0, 0], [10, 0], [10, 20], [0, 20]], "polygonlabels": ["dent"]}
    )
    tasks = [
        {
            "id": 7,
            "data": {"image": "/data/upload/2/1a2b3c4d-a.png"},
            "annotations": [
                {"id": 1, "was_cancelled": True, "result": []},
                {"id": 2, "was_cancelled": False, "result": results},
            ],
            "predictions": [],
        },
        {
            "id": 8,
            "data": {"image": "/data/local-files/?d=images/b.png"},
            "annotations": [{"id": 3, "result": [square]}],
        },
    ]
    export = tmp_path / "project.json"
    export.write_text(json.dumps(tasks))
    expected = np.zeros((10, 20), dtype=np.uint8)
    expected[2:5, 2:6] = 1  # x 10-30 % of 20, y 20-50 % of 10
    expected[1:5, 10:15] = 2  # x 50-75 %, y 10-50 %
    expected[7:9, 15:19] = 1
    np.testing.assert_array_equal(imported(tmp_path, export), expected)
    expected_b = np.zeros((10, 20), dtype=np.uint8)
    expected_b[0:2, 0:2] = 1
    np.testing.assert_array_equal(read_label(tmp_path / "labels" / "b.png"), expected_b)


def test_labelstudio_rectangle_turns_clockwise_around_its_top_left_corner(tmp_path: Path) -> None:
    write_images(tmp_path / "images", {"a.png": (20, 10)})
    rect = {"x": 50, "y": 20, "width": 10, "height": 40, "rotation": 90}
    result = ls_result("rectanglelabels", rect | {"rectanglelabels": ["scratch"]})
    export = tmp_path / "project.json"
    task = {"id": 1, "data": {"image": "a.png"}, "annotations": [{"id": 1, "result": [result]}]}
    export.write_text(json.dumps([task]))
    # The 2 x 4 pixel box at (10, 2) turned a quarter clockwise on screen around (10, 2):
    # its right side now points down, its lower side left, so it spans x 6..10, y 2..4.
    expected = np.zeros((10, 20), dtype=np.uint8)
    expected[2:4, 6:10] = 2
    np.testing.assert_array_equal(imported(tmp_path, export), expected)


# --------------------------------------------------------------------------- detection


def test_format_is_detected_from_the_content(tmp_path: Path) -> None:
    coco = tmp_path / "x.json"
    coco.write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    studio = tmp_path / "y.json"
    studio.write_text(json.dumps([{"id": 1, "data": {"image": "a.png"}}]))
    cvat = tmp_path / "z.xml"
    cvat.write_text("<annotations><version>1.1</version></annotations>")
    folder = tmp_path / "lm"
    folder.mkdir()
    (folder / "a.json").write_text(json.dumps({"shapes": [], "imagePath": "a.png"}))
    assert detect_format(coco) == "coco"
    assert detect_format(studio) == "labelstudio"
    assert detect_format(cvat) == "cvat"
    assert detect_format(folder) == "labelme"
    assert detect_format(folder / "a.json") == "labelme"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("x.json", '{"info": {}}', "keys info, not COCO"),
        ("x.json", '"text"', "a JSON str, not a known export"),
        ("x.json", "{", "not valid JSON (line 1"),
        ("x.xml", "<dataset/>", "root <dataset>, not CVAT's <annotations>"),
    ],
)
def test_unknown_exports_name_the_file_and_what_was_found(
    tmp_path: Path, name: str, content: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DatasetError) as err:
        detect_format(path)
    assert str(path) in str(err.value)
    assert message in str(err.value)


def test_named_format_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="format 'yolo' is unknown; use one of coco, cvat"):
        import_labels(tmp_path, tmp_path, tmp_path / "out", format="yolo")
