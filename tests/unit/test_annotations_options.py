"""Import options: empty images, unlabelled pixels, the class map, 16-bit labels, params."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers.annotations import write_images
from pydantic import ValidationError

from segcore.annotations import build_class_map, import_labels
from segcore.common.images import read_label
from segcore.params import ImportLabelsParams


@pytest.fixture
def export(tmp_path: Path) -> Path:
    """COCO: a.png with a dent box and a scratch box, c.png listed without shapes; b.png in
    the image folder is not in the export at all."""
    write_images(tmp_path / "images", {"a.png": (6, 4), "b.png": (6, 4), "c.jpg": (6, 4)})
    images = [
        {"id": 1, "file_name": "a.png", "width": 6, "height": 4},
        {"id": 2, "file_name": "c.jpg", "width": 6, "height": 4},
    ]
    annotations = [
        {"id": 1, "image_id": 1, "category_id": 5, "segmentation": [], "bbox": [0, 0, 2, 2]},
        {"id": 2, "image_id": 1, "category_id": 3, "segmentation": [], "bbox": [4, 2, 2, 2]},
    ]
    categories = [{"id": 3, "name": "scratch"}, {"id": 5, "name": "dent"}]
    path = tmp_path / "coco.json"
    path.write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )
    return path


def labels(folder: Path) -> dict[str, np.ndarray]:
    return {p.relative_to(folder).as_posix(): read_label(p) for p in sorted(folder.rglob("*.png"))}


def test_built_class_map_is_background_then_sorted_names(tmp_path: Path, export: Path) -> None:
    result = import_labels(export, tmp_path / "images", tmp_path / "labels")
    assert (result.class_names, result.class_ids) == (["background", "dent", "scratch"], [0, 1, 2])
    expected = np.zeros((4, 6), dtype=np.uint8)
    expected[0:2, 0:2] = 1  # dent, although its COCO category id is 5
    expected[2:4, 4:6] = 2
    np.testing.assert_array_equal(read_label(tmp_path / "labels" / "a.png"), expected)


def test_built_class_map_skips_background_and_ignore_ids() -> None:
    assert build_class_map(["b", "a", "background", "c"], background_id=1, reserved=2) == {
        "background": 1,
        "a": 0,
        "b": 3,
        "c": 4,
    }


def test_empty_images_are_kept_as_background(tmp_path: Path, export: Path) -> None:
    result = import_labels(export, tmp_path / "images", tmp_path / "labels", background_id=0)
    assert (result.written, result.skipped) == (3, [])
    found = labels(tmp_path / "labels")
    assert sorted(found) == ["a.png", "b.png", "c.png"]
    assert not found["b.png"].any() and not found["c.png"].any()
    assert found["c.png"].shape == (4, 6)


def test_empty_images_can_be_skipped(tmp_path: Path, export: Path) -> None:
    result = import_labels(export, tmp_path / "images", tmp_path / "labels", empty_images="skip")
    assert (result.written, result.skipped) == (1, ["b.png", "c.jpg"])
    assert sorted(labels(tmp_path / "labels")) == ["a.png"]


def test_unlabelled_pixels_can_be_ignored(tmp_path: Path, export: Path) -> None:
    result = import_labels(
        export,
        tmp_path / "images",
        tmp_path / "labels",
        class_map={"background": 0, "dent": 1, "scratch": 2},
        unlabelled="ignore",
        ignore_id=255,
    )
    assert result.ignore_id == 255 and 255 not in result.class_ids
    expected = np.full((4, 6), 255, dtype=np.uint8)
    expected[0:2, 0:2] = 1
    expected[2:4, 4:6] = 2
    found = labels(tmp_path / "labels")
    np.testing.assert_array_equal(found["a.png"], expected)
    assert not found["b.png"].any()  # an image without shapes is a defect-free sample


def test_ids_above_255_give_16_bit_labels(tmp_path: Path, export: Path) -> None:
    result = import_labels(
        export,
        tmp_path / "images",
        tmp_path / "labels",
        class_map={"background": 0, "dent": 300, "scratch": 2, "Scratch": 2},
    )
    assert (result.class_names, result.class_ids) == (
        ["background", "scratch", "dent"],
        [0, 2, 300],
    )
    label = read_label(tmp_path / "labels" / "a.png")
    assert label.dtype == np.uint16
    assert label[0, 0] == 300 and label[3, 5] == 2


def test_labels_keep_the_images_sub_folders(tmp_path: Path) -> None:
    write_images(tmp_path / "images", {"lot 1/a.jpg": (4, 4), "lot 2/a.jpg": (4, 4)})
    export = tmp_path / "annotations.xml"
    export.write_text(
        '<annotations><image id="0" name="lot 2/a.jpg" width="4" height="4">'
        '<box label="dent" xtl="0" ytl="0" xbr="1" ybr="1"/></image></annotations>'
    )
    import_labels(export, tmp_path / "images", tmp_path / "labels")
    found = labels(tmp_path / "labels")
    assert sorted(found) == ["lot 1/a.png", "lot 2/a.png"]
    assert found["lot 2/a.png"][0, 0] == 1 and found["lot 2/a.png"].sum() == 1
    assert not found["lot 1/a.png"].any()


def test_params_section_documents_every_field_and_maps_to_import_labels() -> None:
    assert all(field.description for field in ImportLabelsParams.model_fields.values())
    params = ImportLabelsParams(
        format="cvat",
        class_names=["good", "dent"],
        class_ids=[0, 1],
        unlabelled="ignore",
        line_width=2,
    )
    kwargs = params.import_kwargs()
    assert kwargs["class_map"] == {"good": 0, "dent": 1}
    assert kwargs["format"] == "cvat" and kwargs["line_width"] == 2
    assert ImportLabelsParams().import_kwargs()["format"] is None
    assert ImportLabelsParams().class_map is None


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"class_names": ["a"], "class_ids": [0, 1]},
            "class_names has 1 entries but class_ids has 2",
        ),
        ({"class_names": ["a", "a"], "class_ids": [0, 1]}, "class_names has duplicates ['a']"),
        ({"class_names": ["a"], "class_ids": [1]}, "background_id 0 is not one of class_ids"),
        ({"unlabelled": "ignore", "ignore_id": 0}, "ignore_id 0 is also a class id"),
        ({"line_width": 0}, "greater than or equal to 1"),
        ({"format": "yolo"}, "'auto', 'coco', 'cvat', 'labelme' or 'labelstudio'"),
        ({"exports": "x.json"}, "Extra inputs are not permitted"),
    ],
)
def test_params_section_rejects_bad_values(values: dict, message: str) -> None:
    with pytest.raises(ValidationError) as err:
        ImportLabelsParams(**values)
    assert message in str(err.value)
