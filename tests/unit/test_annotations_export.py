"""Predictions -> COCO -> label images gives back the very same pixels (RLE and polygons)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segcore.annotations import export_coco, import_labels
from segcore.common.errors import DatasetError
from segcore.common.images import read_label

NAMES, IDS = ["good", "crack", "spot"], [0, 1, 2]


def hand_drawn() -> np.ndarray:
    """20 x 24 class ids: holes, an island in a hole, diagonal steps, thin lines, borders."""
    seg = np.zeros((20, 24), dtype=np.uint8)
    seg[2:10, 2:12] = 1  # a ring of crack ...
    seg[4:8, 5:9] = 0  # ... round a hole ...
    seg[5:7, 6:8] = 2  # ... with a spot inside it
    seg[[12, 13, 14], [2, 3, 4]] = 1  # pixels touching at corners only
    seg[15, 15] = 2
    seg[18, 5:21] = 2  # one pixel wide
    seg[0:2, 20:24] = 1  # on the image border
    seg[10:17, 18:20] = 2  # an L ...
    seg[15:17, 14:18] = 2
    seg[12:14, 8:12] = 1  # a second hole in one region: a frame with two windows
    seg[11:15, 7:13] = 1
    seg[12, 8] = seg[12, 11] = 0
    return seg


def write_predictions(tmp_path: Path, segs: dict[str, np.ndarray]) -> tuple[Path, Path]:
    """``segcore infer``'s layout: ``<name>_segmentation.png`` plus an RGB overlay, and the
    images as JPEG."""
    preds, images = tmp_path / "predictions", tmp_path / "images"
    for name, seg in segs.items():
        for folder in (preds, images):
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(seg).save(preds / f"{name}_segmentation.png")
        Image.fromarray(np.zeros((*seg.shape, 3), dtype=np.uint8)).save(
            preds / f"{name}_overlay.png"
        )
        Image.fromarray(np.zeros(seg.shape, dtype=np.uint8)).save(images / f"{name}.jpg")
    return preds, images


def round_trip(tmp_path: Path, segs: dict[str, np.ndarray], encoding: str) -> dict:
    preds, images = write_predictions(tmp_path, segs)
    out = export_coco(preds, images, tmp_path / "coco.json", NAMES, IDS, encoding=encoding)
    result = import_labels(
        out, images, tmp_path / "labels", class_map=dict(zip(NAMES, IDS, strict=True))
    )
    assert (result.format, result.written, result.overlaps) == ("coco", len(segs), [])
    for name, seg in segs.items():
        np.testing.assert_array_equal(read_label(tmp_path / "labels" / f"{name}.png"), seg, name)
    return json.loads(out.read_text())


@pytest.mark.parametrize("encoding", ["rle", "polygon"])
def test_hand_drawn_prediction_round_trips_exactly(tmp_path: Path, encoding: str) -> None:
    coco = round_trip(tmp_path, {"x": hand_drawn(), "sub/y": hand_drawn()[::-1, ::-1]}, encoding)
    assert coco["categories"] == [
        {"id": 1, "name": "crack", "supercategory": ""},
        {"id": 2, "name": "spot", "supercategory": ""},
    ]
    assert [(i["file_name"], i["width"], i["height"]) for i in coco["images"]] == [
        ("sub/y.jpg", 24, 20),
        ("x.jpg", 24, 20),
    ]


def test_random_predictions_round_trip_exactly_as_polygons(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    segs = {
        f"r{k}": rng.choice(3, size=(9, 11), p=[0.5, 0.3, 0.2]).astype(np.uint8) for k in range(25)
    }
    round_trip(tmp_path, segs, "polygon")


def test_polygons_are_one_ring_per_region_with_holes_cut_in(tmp_path: Path) -> None:
    seg = np.zeros((8, 10), dtype=np.uint8)
    seg[1:7, 1:7] = 1
    seg[3:5, 3:5] = 0
    seg[2, 8] = 2
    preds, images = write_predictions(tmp_path, {"x": seg})
    coco = json.loads(
        export_coco(preds, images, tmp_path / "c.json", NAMES, IDS, encoding="polygon").read_text()
    )
    ring, spot = coco["annotations"]
    assert (ring["category_id"], ring["area"], ring["bbox"], ring["iscrowd"]) == (
        1,
        32,
        [1, 1, 6, 6],
        0,
    )
    assert (spot["category_id"], spot["area"], spot["bbox"]) == (2, 1, [8, 2, 1, 1])
    # A quarter pixel inside the pixel boundary of (row 2, column 8).
    corners = sorted(zip(spot["segmentation"][0][0::2], spot["segmentation"][0][1::2], strict=True))
    assert corners == [(8.25, 2.25), (8.25, 2.75), (8.75, 2.25), (8.75, 2.75)]
    [points] = ring["segmentation"]
    # Outline (4 corners), cut in, the hole (traced on the pixels round it: its corners are
    # cut diagonally, 8 vertices), and back out.
    assert len(points) == 2 * (4 + 1 + 8 + 1)
    # The outline turns clockwise on screen (positive shoelace area with y down), the hole
    # the other way (for tools using the non-zero rule): the ring's area is the outline's
    # (5.5 x 5.5) minus the hole's (2.5 x 2.5 less 4 corners of 1/8), not their sum.
    x, y = np.array(points[0::2]), np.array(points[1::2])
    assert (np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2 == 30.25 - 5.75


def test_rle_is_one_annotation_per_class(tmp_path: Path) -> None:
    preds, images = write_predictions(tmp_path, {"x": hand_drawn()})
    coco = json.loads(export_coco(preds, images, tmp_path / "c.json", NAMES, IDS).read_text())
    assert [a["category_id"] for a in coco["annotations"]] == [1, 2]
    assert [a["area"] for a in coco["annotations"]] == [
        int((hand_drawn() == 1).sum()),
        int((hand_drawn() == 2).sum()),
    ]


def test_label_folder_without_images_uses_its_own_names(tmp_path: Path) -> None:
    labels = tmp_path / "labels"
    labels.mkdir()
    Image.fromarray(hand_drawn()).save(labels / "a.png")
    coco = json.loads(export_coco(labels, None, tmp_path / "c.json", NAMES, IDS).read_text())
    assert [i["file_name"] for i in coco["images"]] == ["a.png"]


def test_bad_predictions_are_reported_together_and_nothing_is_written(tmp_path: Path) -> None:
    seg = hand_drawn()
    seg[0, 0] = 7
    preds, images = write_predictions(
        tmp_path, {"bad": seg, "small": hand_drawn(), "lone": hand_drawn()}
    )
    Image.fromarray(np.zeros((5, 5), dtype=np.uint8)).save(images / "small.jpg")
    (images / "lone.jpg").unlink()
    with pytest.raises(DatasetError) as err:
        export_coco(preds, images, tmp_path / "c.json", NAMES, IDS)
    assert err.value.problems == [
        f"{preds / 'bad_segmentation.png'}: pixel values [7] are not class ids ([0, 1, 2]); "
        "give the classes of the model that made it",
        f"{preds / 'lone_segmentation.png'}: no image named lone.* in the image folder; give "
        "the folder of the images it was made from, or remove it",
        f"{preds / 'small_segmentation.png'}: is 24x20 but its image {images / 'small.jpg'} is "
        "5x5; segment that image again",
    ]
    assert not (tmp_path / "c.json").exists()
