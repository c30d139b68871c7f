"""Bad exports: every problem is reported at once, names the file and the fix, and nothing
is written (no label folder, no temporary folder left beside it)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers.annotations import CLASSES, write_images
from PIL import Image

from segcore.annotations import import_labels
from segcore.common.errors import DatasetError, ParamsError
from segcore.common.images import read_label


def coco(tmp_path: Path, images: list[dict], annotations: list[dict]) -> Path:
    cats = [{"id": 1, "name": "dent"}, {"id": 2, "name": "scratch"}]
    for k, ann in enumerate(annotations):
        ann.setdefault("id", k + 1)
        ann.setdefault("image_id", 1)
    path = tmp_path / "coco.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": cats}))
    return path


def image(name: str = "a.png", width: int = 8, height: int = 8, id: int = 1) -> dict:
    return {"id": id, "file_name": name, "width": width, "height": height}


def failing_import(tmp_path: Path, export: Path, **kwargs: object) -> list[str]:
    """The problems of an import that must fail, after checking that nothing was written."""
    kwargs.setdefault("class_map", CLASSES)
    with pytest.raises(DatasetError) as err:
        import_labels(export, tmp_path / "images", tmp_path / "labels", **kwargs)
    assert not (tmp_path / "labels").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".labels")]
    return err.value.problems


@pytest.fixture
def images(tmp_path: Path) -> Path:
    return write_images(tmp_path / "images", {"a.png": (8, 8), "b.png": (8, 8)})


def test_annotation_of_a_missing_image(tmp_path: Path, images: Path) -> None:
    export = coco(
        tmp_path,
        [image("gone.png")],
        [{"category_id": 1, "segmentation": [[1, 1, 4, 1, 4, 4]]}],
    )
    [problem] = failing_import(tmp_path, export)
    assert problem.startswith(f"{export}: image 'gone.png' has 1 shapes but is not in {images}")
    assert "add the image, point the image folder at it" in problem


def test_image_listed_without_shapes_and_without_file_is_no_problem(
    tmp_path: Path, images: Path
) -> None:
    export = coco(tmp_path, [image("gone.png")], [])
    assert import_labels(export, images, tmp_path / "labels").written == 2


def test_shape_outside_the_image_beyond_one_pixel(tmp_path: Path, images: Path) -> None:
    export = coco(
        tmp_path,
        [image()],
        [
            {"category_id": 1, "segmentation": [[-1, -1, 9, -1, 9, 9]]},  # within 1 px: fine
            {"category_id": 1, "segmentation": [[1, 1, 12.5, 1, 1, 4]]},
        ],
    )
    [problem] = failing_import(tmp_path, export)
    assert problem.startswith(f"{export}: annotation id 2 (#1) (image 'a.png'): reaches outside")
    assert "8x8 image (x 1 to 12.5, y 1 to 4" in problem


@pytest.mark.parametrize(
    ("points", "message"),
    [
        ([1, 1, 4, 4], "polygon has 2 distinct points; it needs 3 or more"),
        ([1, 1, 4, 4, 1, 1, 4, 4], "polygon has 2 distinct points"),
        ([1, 1, 2, 2, 3, 3], "polygon has zero area (its points lie on one line)"),
    ],
)
def test_degenerate_polygons(tmp_path: Path, images: Path, points: list, message: str) -> None:
    export = coco(tmp_path, [image()], [{"category_id": 2, "segmentation": [points]}])
    [problem] = failing_import(tmp_path, export)
    assert problem.startswith(f"{export}: annotation id 1 (#0) (image 'a.png'): {message}")
    assert problem.endswith("redraw or delete it")


def test_unknown_label_names_list_the_known_ones(tmp_path: Path, images: Path) -> None:
    export = coco(
        tmp_path,
        [image()],
        [{"category_id": 2, "segmentation": [[1, 1, 4, 1, 4, 4]]}] * 2,
    )
    [problem] = failing_import(tmp_path, export, class_map={"background": 0, "dent": 1})
    assert problem == (
        f"{export}: label 'scratch' (2 shapes, e.g. annotation id 1 (#0) of image 'a.png') is "
        "not in the class map (background, dent); add it to the class map or rename the "
        "label in the labelling tool"
    )


def test_image_size_in_the_export_differs_from_the_file(tmp_path: Path, images: Path) -> None:
    export = coco(
        tmp_path, [image(width=16)], [{"category_id": 1, "segmentation": [[1, 1, 4, 1, 4, 4]]}]
    )
    [problem] = failing_import(tmp_path, export)
    assert problem.startswith(
        f"{export}: image 'a.png' is 16x8 in the export but {images / 'a.png'} is 8x8"
    )


def test_every_problem_is_reported_at_once(tmp_path: Path, images: Path) -> None:
    export = coco(
        tmp_path,
        [image(), image("b.png", height=9, id=2), image("gone.png", id=3), image(id=4)],
        [
            {"category_id": 1, "segmentation": [[1, 1, 20, 1, 1, 4]]},
            {"category_id": 1, "segmentation": [[1, 1, 2, 2]]},
            {"category_id": 2, "segmentation": [[1, 1, 4, 1, 4, 4]], "image_id": 2},
            {"category_id": 1, "segmentation": [[1, 1, 4, 1, 4, 4]], "image_id": 3},
            {"category_id": 1, "segmentation": [[1, 1, 4, 1, 4, 4]], "image_id": 4},
            {"category_id": 9, "segmentation": [[1, 1, 4, 1, 4, 4]]},
        ],
    )
    problems = failing_import(tmp_path, export, class_map={"background": 0, "dent": 1})
    assert [p.split(": ", 1)[1].split(" ")[0:3] for p in problems] == [
        ["annotation", "id", "6"],  # category 9: not in categories
        ["image", "'gone.png'", "has"],  # missing image
        ["image", "'a.png'", "is"],  # annotated twice (ids 1 and 4)
        ["image", "'b.png'", "is"],  # size
        ["annotation", "id", "1"],  # outside
        ["annotation", "id", "2"],  # degenerate
        ["label", "'scratch'", "(1"],  # unknown label
    ]
    assert "is annotated twice" in problems[2]


@pytest.mark.parametrize(
    ("element", "message"),
    [
        (
            '<mask label="dent" rle="1, 2" left="0" top="0" width="2" height="2"/>',
            "covers 3 pixels",
        ),
        ('<polygon label="dent" points="1,1;x,2;3,3"/>', "could not convert string to float"),
        ('<points label="dent" points="1,1"/>', "<points> labels no area and is not supported"),
        ('<box xtl="1" ytl="1" xbr="3" ybr="3"/>', "has no label"),
    ],
)
def test_malformed_cvat_shapes(tmp_path: Path, images: Path, element: str, message: str) -> None:
    export = tmp_path / "annotations.xml"
    export.write_text(
        f'<annotations><image id="0" name="a.png" width="8" height="8">{element}</image>'
        "</annotations>"
    )
    [problem] = failing_import(tmp_path, export)
    assert problem.startswith(f"{export}: <")
    assert "of image 'a.png'" in problem
    assert message in problem


@pytest.mark.parametrize(
    ("segmentation", "message"),
    [
        (
            {"size": [8, 8], "counts": [10, 60]},
            "RLE counts cover 70 pixels but its size 8x8 has 64",
        ),
        ({"size": [8, 8], "counts": "01"}, "RLE counts cover 1 pixels but its size 8x8"),
        ({"size": [8, 8], "counts": "0R"}, "string ends in the middle of a number"),
        ({"size": [8, 8], "counts": "0\x7f"}, "invalid character"),
        ({"size": [8], "counts": "P1"}, "RLE 'size' must be [height, width]"),
    ],
)
def test_malformed_coco_rle_never_reaches_pycocotools(
    tmp_path: Path, images: Path, segmentation: dict, message: str
) -> None:
    export = coco(tmp_path, [image()], [{"category_id": 1, "segmentation": segmentation}])
    [problem] = failing_import(tmp_path, export)
    assert problem.startswith(f"{export}: annotation id 1 (#0) (image 'a.png'): ")
    assert message in problem


def test_rle_of_another_size_than_the_image(tmp_path: Path, images: Path) -> None:
    seg = {"size": [8, 9], "counts": [72]}
    export = coco(tmp_path, [image()], [{"category_id": 1, "segmentation": seg}])
    [problem] = failing_import(tmp_path, export)
    assert "mask box (left 0, top 0, 9x8) reaches outside the 8x8 image" in problem


def test_corrupt_label_studio_brush(tmp_path: Path, images: Path) -> None:
    result = {
        "type": "brushlabels",
        "value": {"format": "rle", "rle": [0, 0, 1, 0, 7], "brushlabels": ["dent"]},
        "original_width": 8,
        "original_height": 8,
    }
    export = tmp_path / "ls.json"
    export.write_text(
        json.dumps([{"id": 3, "data": {"image": "a.png"}, "annotations": [{"result": [result]}]}])
    )
    [problem] = failing_import(tmp_path, export)
    assert problem.startswith(f"{export}: task 3 (#0) result #0 (brushlabels) (image 'a.png'): ")
    assert "brush RLE ends early (corrupt)" in problem  # the count (256 = 8 x 8 x 4) was right


def test_label_studio_task_with_two_annotations(tmp_path: Path, images: Path) -> None:
    export = tmp_path / "ls.json"
    task = {"id": 4, "data": {"image": "a.png"}, "annotations": [{"id": 1}, {"id": 2}]}
    export.write_text(json.dumps([task]))
    [problem] = failing_import(tmp_path, export)
    assert problem == (
        f"{export}: task 4 (#0) (image 'a.png') has 2 annotations (ids 1, 2); delete or "
        "cancel all but one in Label Studio, then export again"
    )


def test_ambiguous_image_name(tmp_path: Path) -> None:
    write_images(tmp_path / "images", {"x/a.png": (8, 8), "y/a.png": (8, 8)})
    export = coco(tmp_path, [image()], [{"category_id": 1, "segmentation": [[1, 1, 4, 1, 4, 4]]}])
    [problem] = failing_import(tmp_path, export)
    assert "image 'a.png' has 1 shapes but matches several images (x/a.png, y/a.png)" in problem


def test_non_empty_output_folder_needs_overwrite(tmp_path: Path, images: Path) -> None:
    export = coco(tmp_path, [image()], [{"category_id": 1, "segmentation": [[1, 1, 4, 1, 4, 4]]}])
    out = tmp_path / "labels"
    out.mkdir()
    (out / "old.png").write_bytes(b"old")
    with pytest.raises(DatasetError, match=r"folder exists and is not empty; .* set overwrite"):
        import_labels(export, images, out, class_map=CLASSES)
    assert [p.name for p in out.iterdir()] == ["old.png"]
    import_labels(export, images, out, class_map=CLASSES, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"]
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_empty_output_folder_is_used(tmp_path: Path, images: Path) -> None:
    export = coco(tmp_path, [image()], [])
    (tmp_path / "labels").mkdir()
    assert import_labels(export, images, tmp_path / "labels").written == 2


def test_output_folder_holding_the_images_is_refused(tmp_path: Path, images: Path) -> None:
    export = coco(tmp_path, [image()], [])
    with pytest.raises(DatasetError, match=r"holds the images .* choose a separate folder"):
        import_labels(export, images, tmp_path, overwrite=True)
    assert (images / "a.png").is_file()


def test_failure_while_writing_leaves_the_old_folder(
    tmp_path: Path, images: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    export = coco(tmp_path, [image()], [{"category_id": 1, "segmentation": [[1, 1, 4, 1, 4, 4]]}])
    out = tmp_path / "labels"
    out.mkdir()
    old = np.full((8, 8), 2, dtype=np.uint8)
    Image.fromarray(old).save(out / "a.png")
    calls = []

    def write_then_fail(path: Path, image: np.ndarray) -> None:
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        Image.fromarray(image).save(path)

    monkeypatch.setattr("segcore.annotations.importer.write_image_atomic", write_then_fail)
    with pytest.raises(OSError, match="disk full"):
        import_labels(export, images, out, class_map=CLASSES, overwrite=True)
    assert [p.name for p in out.iterdir()] == ["a.png"]
    np.testing.assert_array_equal(read_label(out / "a.png"), old)
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"class_map": {"dent": 1}}, "class_map: no class has background_id 0"),
        ({"unlabelled": "ignore", "ignore_id": 0}, "ignore_id: 0 equals background_id"),
        (
            {"unlabelled": "ignore", "ignore_id": 2, "class_map": CLASSES},
            "['scratch'] use ignore_id 2",
        ),
        ({"line_width": 0}, "line_width: 0 must be a whole number of pixels >= 1"),
        ({"empty_images": "drop"}, "empty_images: 'drop' is unknown; use 'keep' or 'skip'"),
        ({"background_id": 70000}, "background_id: 70000 is not a class id"),
    ],
)
def test_invalid_options(tmp_path: Path, options: dict, message: str) -> None:
    with pytest.raises(ParamsError) as err:
        import_labels(tmp_path / "x.json", tmp_path, tmp_path / "labels", **options)
    assert message in str(err.value)
