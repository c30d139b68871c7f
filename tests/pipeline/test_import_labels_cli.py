"""`segcore import-labels` and `segcore export-coco` through the real command line: labels
from a COCO export, the classes written into params.yaml with its comments kept, and the
labels exported and imported back unchanged."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import yaml
from helpers.cli import run_segcore
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]


def _project(tmp_path: Path) -> Path:
    """Two 20 x 16 images and a COCO export with one 'scratch' rectangle on the first."""
    (tmp_path / "images").mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(np.full((16, 20, 3), 90, np.uint8)).save(tmp_path / "images" / name)
    coco = {
        "images": [
            {"id": 1, "file_name": "a.png", "width": 20, "height": 16},
            {"id": 2, "file_name": "b.png", "width": 20, "height": 16},
        ],
        "categories": [{"id": 7, "name": "scratch"}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 7,
                "segmentation": [[2, 3, 6, 3, 6, 7, 2, 7]],
                "area": 16,
                "bbox": [2, 3, 4, 4],
                "iscrowd": 0,
            }
        ],
    }
    (tmp_path / "export.json").write_text(json.dumps(coco))
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    return tmp_path


def _import(project: Path, out_dir: str, export: str, *extra: str):
    return run_segcore(
        "import-labels",
        "--export",
        export,
        "--image-dir",
        "images",
        "--out-dir",
        out_dir,
        *extra,
        cwd=project,
    )


def test_import_writes_labels_and_the_classes_into_params(tmp_path: Path) -> None:
    project = _project(tmp_path)
    proc = _import(project, "labels", "export.json", "--write")
    assert proc.returncode == 0, proc.stderr
    expected = np.zeros((16, 20), np.uint8)
    expected[3:7, 2:6] = 1  # pixel centres inside x 2..6, y 3..7; background is 0
    assert np.array_equal(np.array(Image.open(project / "labels" / "a.png")), expected)
    assert not np.array(Image.open(project / "labels" / "b.png")).any()  # a defect-free part
    text = (project / "params.yaml").read_text()
    params = yaml.safe_load(text)
    assert params["dataset"]["class_names"] == ["background", "scratch"]
    assert params["dataset"]["class_ids"] == [0, 1]
    assert params["dataset"]["segmentation_dir"] == "labels"
    assert "# Reading the dataset (HALCON: read_dl_dataset_segmentation)." in text
    assert "# Random seed; the same seed gives byte-identical files." in text

    # The labels go out as COCO and come back identical (the pre-labelling loop).
    proc = run_segcore(
        "export-coco", "labels", "--out", "back.json", "--images", "images", cwd=project
    )
    assert proc.returncode == 0, proc.stderr
    proc = _import(project, "labels_again", "back.json")
    assert proc.returncode == 0, proc.stderr
    for name in ("a.png", "b.png"):
        again = np.array(Image.open(project / "labels_again" / name))
        assert np.array_equal(again, np.array(Image.open(project / "labels" / name)))


def test_a_bad_export_names_the_problem_and_writes_nothing(tmp_path: Path) -> None:
    project = _project(tmp_path)
    coco = json.loads((project / "export.json").read_text())
    coco["images"].append({"id": 3, "file_name": "missing.png", "width": 20, "height": 16})
    coco["annotations"].append({**coco["annotations"][0], "id": 2, "image_id": 3})
    (project / "export.json").write_text(json.dumps(coco))
    before = (project / "params.yaml").read_text()
    proc = _import(project, "labels", "export.json", "--write")
    assert proc.returncode == 2
    assert "missing.png" in proc.stderr and "Traceback" not in proc.stderr
    assert not (project / "labels").exists()
    assert (project / "params.yaml").read_text() == before
