"""`segcore init` on small generated datasets: the project it writes, and bad input that
leaves nothing behind (the whole pipeline in such a project: test_init_wheel.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from segcore.common.images import read_label
from segcore.params import load_params
from segcore.pipeline.code import CODE_FILE, code_fingerprints
from segcore.project.init import PROJECT_STAGES

CLASSES = ["--class", "0=good", "--class", "1=contamination", "--class", "2=crack"]


def segcore(*args: str, cwd: Path, path: str | None = None) -> subprocess.CompletedProcess[str]:
    """The real ``segcore`` command line, not in a terminal (no questions asked)."""
    env = {**os.environ, "SEGCORE_PROGRESS": "0", "COLUMNS": "200"}
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        [sys.executable, "-m", "segcore.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=300,
    )


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    """12 synthetic pills of 48 x 48 pixels: images/ and labels/ (class ids 0, 1, 2)."""
    from segcore.data.synth import generate_pills

    generate_pills(tmp_path / "raw", num_images=12, width=48, height=48, seed=5)
    return tmp_path / "raw"


def _nothing_left(parent: Path, name: str = "proj") -> None:
    assert not (parent / name).exists()
    assert sorted(p.name for p in parent.glob(f".{name}*")) == []


def test_init_writes_a_committed_project_with_the_classes_of_the_labels(
    raw: Path, tmp_path: Path
) -> None:
    (tmp_path / "proj").mkdir()  # an empty folder is fine
    proc = segcore("init", "proj", "--images", str(raw / "images"), "--labels",
                   str(raw / "labels"), *CLASSES, "--ignore-class-id", "255", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    project = tmp_path / "proj"
    assert "Project written" in proc.stdout and "make run" in proc.stdout
    for name in ("params.yaml", "dvc.yaml", CODE_FILE, "Makefile", "README.md", ".gitignore",
                 ".dvcignore", ".dvc/config", "data/raw/images.dvc", "data/raw/labels.dvc"):  # fmt: skip
        assert (project / name).is_file(), name
    params = load_params(project / "params.yaml")
    assert params.dataset.class_names == ["good", "contamination", "crack"]
    assert params.dataset.class_ids == [0, 1, 2]
    assert (params.dataset.image_dir, params.dataset.segmentation_dir) == (
        "data/raw/images",
        "data/raw/labels",
    )
    assert params.preprocess.param.ignore_class_ids == [255]
    assert params.preprocess.param.image_num_channels == 3  # the pills are colour images
    assert params.registry.model_name == params.tracking.experiment_name == "proj"
    copied = sorted(p.name for p in (project / "data/raw/labels").iterdir())
    assert copied == sorted(p.name for p in (raw / "labels").iterdir())
    recorded = yaml.safe_load((project / CODE_FILE).read_text())["stages"]
    assert recorded == code_fingerprints(PROJECT_STAGES)
    assert f"PYTHON ?= {sys.executable}" in (project / "Makefile").read_text()
    git = ["git", "-C", str(project)]
    assert (
        subprocess.run([*git, "status", "--porcelain"], capture_output=True, text=True).stdout == ""
    )
    log = subprocess.run([*git, "log", "--oneline"], capture_output=True, text=True).stdout
    assert len(log.splitlines()) == 1
    # DVC knows the data and sees every stage as never run.
    status = subprocess.run([sys.executable, "-m", "dvc", "status", "--json"], cwd=project,
                            capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert set(json.loads(status)) == set(PROJECT_STAGES)


def test_existing_non_empty_folder_is_refused_untouched(raw: Path, tmp_path: Path) -> None:
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "notes.txt").write_text("mine")
    proc = segcore("init", "proj", "--images", str(raw / "images"), "--labels",
                   str(raw / "labels"), *CLASSES, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 2
    assert "exists and is not empty" in proc.stderr and "Traceback" not in proc.stderr
    assert [p.name for p in (tmp_path / "proj").iterdir()] == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.glob(".proj*")) == []


def test_images_without_labels_are_named_and_nothing_is_created(raw: Path, tmp_path: Path) -> None:
    labels = sorted((raw / "labels").iterdir())
    for label in labels[:2]:
        label.unlink()
    proc = segcore("init", "proj", "--images", str(raw / "images"), "--labels",
                   str(raw / "labels"), *CLASSES, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 2
    text = " ".join(proc.stderr.split())
    for label in labels[:2]:
        assert f"{raw / 'images' / label.name}: image without a label image" in text
    assert "Traceback" not in proc.stderr
    _nothing_left(tmp_path)


def test_label_ids_outside_the_given_names_are_listed(raw: Path, tmp_path: Path) -> None:
    crack = [p.name for p in sorted((raw / "labels").iterdir()) if 2 in read_label(p)]
    assert crack  # the data holds class 2
    proc = segcore("init", "proj", "--images", str(raw / "images"), "--labels",
                   str(raw / "labels"), "--class", "0=good", "--class", "1=contamination",
                   cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 2
    text = " ".join(proc.stderr.split())
    assert f"value 2 in {len(crack)} label images ({crack[0]}" in text
    assert "add --class 2=NAME" in text and "--ignore-class-id 2" in text
    _nothing_left(tmp_path)


def test_classes_must_be_named_when_no_terminal_can_ask(raw: Path, tmp_path: Path) -> None:
    proc = segcore("init", "proj", "--images", str(raw / "images"), "--labels",
                   str(raw / "labels"), cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 2
    text = " ".join(proc.stderr.split())
    assert "hold class ids [0, 1, 2]" in text
    assert "--class 0=NAME --class 1=NAME --class 2=NAME" in text
    _nothing_left(tmp_path)


def test_a_failure_after_the_data_is_copied_leaves_nothing(raw: Path, tmp_path: Path) -> None:
    """Without git on PATH init fails at its last steps: the temporary project goes too."""
    proc = segcore("init", "proj", "--images", str(raw / "images"), "--labels",
                   str(raw / "labels"), *CLASSES, cwd=tmp_path, path=str(tmp_path / "no-bin"))  # fmt: skip
    assert proc.returncode == 2
    assert "git is not installed" in proc.stderr
    _nothing_left(tmp_path)


def test_init_from_a_coco_export_takes_its_label_names(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(np.zeros((10, 10, 3), dtype=np.uint8)).save(images / name)
    coco = {
        "images": [
            {"id": 1, "file_name": "a.png", "width": 10, "height": 10},
            {"id": 2, "file_name": "b.png", "width": 10, "height": 10},
        ],
        "categories": [{"id": 7, "name": "scratch"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 7, "iscrowd": 0,
             "segmentation": [[2, 2, 6, 2, 6, 6, 2, 6]]},
        ],
    }  # fmt: skip
    (tmp_path / "export.json").write_text(json.dumps(coco))
    proc = segcore("init", "proj", "--images", str(images), "--export",
                   str(tmp_path / "export.json"), cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    project = tmp_path / "proj"
    params = load_params(project / "params.yaml")
    assert (params.dataset.class_names, params.dataset.class_ids) == (
        ["background", "scratch"],
        [0, 1],
    )
    assert params.preprocess.param.image_num_channels == 3
    assert params.import_labels.export == "data/annotations/export.json"
    assert (project / "data/annotations/export.json").is_file()
    # Pixel centres inside the square (2,2)-(6,6): columns and rows 2..5, 16 pixels.
    label = read_label(project / "data/raw/labels/a.png")
    assert int((label == 1).sum()) == 16 and label[2:6, 2:6].min() == 1
    assert int(read_label(project / "data/raw/labels/b.png").max()) == 0


def test_names_are_asked_for_every_class_id_found(raw: Path, tmp_path: Path) -> None:
    """What a terminal does: ``ask`` gets the ids found (the ignore id aside)."""
    from segcore.project.init import DataSource, init_project

    asked: list[list[int]] = []

    def ask(ids: list[int]) -> dict[int, str]:
        asked.append(list(ids))
        return {cid: f"c{cid}" for cid in ids}

    steps: list[str] = []
    source = DataSource(images=raw / "images", labels=raw / "labels", ignore_class_ids=[2])
    result = init_project(tmp_path / "asked", source, ask=ask, say=steps.append)
    assert asked == [[0, 1]]
    assert result.classes == {0: "c0", 1: "c1"}
    assert result.committed
    params = load_params(result.project / "params.yaml")
    assert params.dataset.class_names == ["c0", "c1"]
    assert params.preprocess.param.ignore_class_ids == [2]
    assert any("checking every image and label" in step for step in steps)


def test_labels_beside_their_images_are_told_apart_by_suffix(raw: Path, tmp_path: Path) -> None:
    for label in (raw / "labels").iterdir():
        label.rename(raw / "images" / f"{label.stem}_label.png")
    proc = segcore("init", "proj", "--images", str(raw / "images"), "--labels",
                   str(raw / "images"), "--label-suffix", "_label", *CLASSES, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    project = tmp_path / "proj"
    params = load_params(project / "params.yaml")
    assert params.dataset.segmentation_dir == params.dataset.image_dir == "data/raw/images"
    assert not (project / "data/raw/labels").exists()
    dataset = segcore("dataset", cwd=project)  # the project's own first stage reads it
    assert dataset.returncode == 0, dataset.stderr
    assert "Dataset: 12 samples, 3 classes" in dataset.stdout
