"""Reading the dataset: pairing rules, image formats, and every kind of bad input."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from helpers.cli import run_segcore
from helpers.images import huge_png
from PIL import Image

from segcore.common.constants import COL_IMAGE_FILE, COL_IMAGE_ID, COL_LABEL_FILE
from segcore.common.errors import DatasetError
from segcore.data.read import read_dataset

CLASSES = (["good", "contamination", "crack"], [0, 1, 2])


def _write(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)
    return path


def _image(h: int = 10, w: int = 12, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _label(h: int = 10, w: int = 12, values: tuple[int, ...] = (0, 1)) -> np.ndarray:
    label = np.zeros((h, w), np.uint16 if max(values) > 255 else np.uint8)
    label.ravel()[: len(values)] = values
    return label


def _pair(root: Path, name: str, label_name: str | None = None, **label_kw) -> None:
    _write(root / "images" / name, _image())
    _write(root / "labels" / (label_name or name), _label(**label_kw))


def _read(root: Path, **kwargs) -> object:
    return read_dataset(root / "images", root / "labels", *CLASSES, **kwargs)


def _flat(text: str) -> str:
    """Whitespace-normalised text (the terminal wraps long lines)."""
    return " ".join(text.split())


def test_reads_the_pill_dataset(pills_raw: Path) -> None:
    ds = _read(pills_raw)
    df = ds.samples
    assert list(df.columns) == [
        "image_id",
        "image_file_name",
        "segmentation_file_name",
        "image_width",
        "image_height",
        "image_num_channels",
        "image_bit_depth",
        "pixels_class_0",
        "pixels_class_1",
        "pixels_class_2",
    ]
    assert df[COL_IMAGE_ID].tolist() == list(range(24))
    assert df[COL_IMAGE_FILE].tolist() == sorted(df[COL_IMAGE_FILE])
    assert (df[COL_IMAGE_FILE] == df[COL_LABEL_FILE]).all()
    assert (df[["image_width", "image_height"]] == 96).all().all()
    assert (df["image_num_channels"] == 3).all() and (df["image_bit_depth"] == 8).all()
    label = cv2.imread(str(pills_raw / "labels" / df[COL_LABEL_FILE][5]), cv2.IMREAD_UNCHANGED)
    assert ds.pixel_counts()[5].tolist() == np.bincount(label.ravel(), minlength=3).tolist()
    assert ds.image_dir == (pills_raw / "images").resolve() and ds.class_ids == [0, 1, 2]


def test_pairs_by_name_with_label_prefix_and_suffix(tmp_path: Path) -> None:
    _pair(tmp_path, "b.png", "lbl_b_mask.png")
    _write(tmp_path / "images" / "a.jpg", _image())
    _write(tmp_path / "labels" / "lbl_a_mask.png", _label(values=(2, 2, 1)))
    ds = _read(tmp_path, label_prefix="lbl_", label_suffix="_mask")
    assert ds.samples[COL_IMAGE_FILE].tolist() == ["a.jpg", "b.png"]
    assert ds.samples[COL_LABEL_FILE].tolist() == ["lbl_a_mask.png", "lbl_b_mask.png"]
    assert ds.samples["pixels_class_2"].tolist() == [2, 0]


def test_sub_folders_pair_by_their_relative_path(tmp_path: Path) -> None:
    _pair(tmp_path, "lot1/a.png")
    _pair(tmp_path, "lot2/a.png", values=(2,))
    _write(tmp_path / "labels" / "lot3" / "a.png", _label())
    with pytest.raises(DatasetError) as err:
        _read(tmp_path)
    assert len(err.value.problems) == 1
    assert "lot3/a.png" in err.value.problems[0] and "without an image" in err.value.problems[0]
    ds = _read(tmp_path, ignore_unmatched=True)
    assert ds.samples[COL_IMAGE_FILE].tolist() == ["lot1/a.png", "lot2/a.png"]
    assert ds.samples["pixels_class_2"].tolist() == [0, 1]


def test_ignore_unmatched_skips_images_and_labels_without_partner(tmp_path: Path) -> None:
    _pair(tmp_path, "a.png")
    _write(tmp_path / "images" / "no_label.png", _image())
    _write(tmp_path / "labels" / "no_image.png", _label())
    with pytest.raises(DatasetError) as err:
        _read(tmp_path)
    text = "\n".join(err.value.problems)
    assert "no_label.png: image without a label image" in text
    assert "no_image.png: label image without an image" in text
    assert "ignore_unmatched" in text
    assert _read(tmp_path, ignore_unmatched=True).samples[COL_IMAGE_FILE].tolist() == ["a.png"]


def test_image_formats_bit_depths_and_palette_labels(tmp_path: Path) -> None:
    img, lbl = tmp_path / "images", tmp_path / "labels"
    _write(img / "gray16.png", (np.arange(120, dtype=np.uint16) * 500).reshape(10, 12))
    _write(img / "rgba.png", np.dstack([_image(), np.full((10, 12), 255, np.uint8)]))
    _write(img / "rgb.tif", _image())
    _write(img / "gray.bmp", _image()[:, :, 0])
    _write(img / "photo.jpeg", _image())
    for name in ("gray16", "rgba", "photo"):
        _write(lbl / f"{name}.png", _label(values=(1, 300 if name == "gray16" else 2)))
    _write(lbl / "rgb.tif", _label().astype(np.uint16))
    palette = Image.fromarray(_label(values=(2, 2, 2)), mode="P")
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9))
    palette.save(lbl / "gray.png")  # indices are the class ids, not the colours
    ds = read_dataset(img, lbl, ["good", "a", "b", "c"], [0, 1, 2, 300])
    df = ds.samples.set_index(COL_IMAGE_FILE)
    assert df.loc["gray16.png", ["image_num_channels", "image_bit_depth"]].tolist() == [1, 16]
    assert df.loc["rgba.png", ["image_num_channels", "image_bit_depth"]].tolist() == [3, 8]
    assert df.loc["gray.bmp", "image_num_channels"] == 1
    assert df.loc["gray16.png", "pixels_class_300"] == 1
    assert df.loc["gray.bmp", "pixels_class_2"] == 3 and df.loc["gray.bmp", "pixels_class_0"] == 117
    assert df.loc["photo.jpeg", COL_LABEL_FILE] == "photo.png"


def test_labels_in_the_image_folder_or_below_it(tmp_path: Path) -> None:
    folder = tmp_path / "both"
    _write(folder / "a.png", _image())
    _write(folder / "a_label.png", _label())
    ds = read_dataset(folder, folder, *CLASSES, label_suffix="_label")
    assert ds.samples[[COL_IMAGE_FILE, COL_LABEL_FILE]].values.tolist() == [
        ["a.png", "a_label.png"]
    ]
    with pytest.raises(DatasetError, match="same folder"):
        read_dataset(folder, folder, *CLASSES)
    nested = tmp_path / "nested"
    _write(nested / "a.png", _image())
    _write(nested / "labels" / "a.png", _label())
    ds = read_dataset(nested, nested / "labels", *CLASSES)
    assert ds.samples[COL_IMAGE_FILE].tolist() == ["a.png"]


def test_names_that_never_match_get_a_hint(tmp_path: Path) -> None:
    _pair(tmp_path, "a.png", "a_label.png")
    with pytest.raises(DatasetError) as err:
        _read(tmp_path)
    assert any("no image has a label image" in p for p in err.value.problems)


def test_class_lists_are_checked_when_called_directly(pills_raw: Path) -> None:
    with pytest.raises(DatasetError) as err:
        read_dataset(pills_raw / "images", pills_raw / "labels", ["a", "a"], [0, 0, 70000])
    text = "\n".join(err.value.problems)
    assert "class_names has 2 entries but class_ids has 3" in text
    assert "class_ids has duplicates [0]" in text
    assert "class_names has duplicates ['a']" in text
    assert "[70000] out of range" in text


def test_empty_folders(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    with pytest.raises(DatasetError) as err:
        _read(tmp_path)
    text = "\n".join(err.value.problems)
    assert "images: no images found" in text and "labels: no label images found" in text


def _bad_dataset(root: Path) -> dict[str, str]:
    """Image/label folders with one problem per file; returns file name -> expected text."""
    img, lbl = root / "images", root / "labels"
    _pair(root, "good.png")
    _write(img / "only_image.png", _image())
    _write(lbl / "only_label.png", _label())
    for name, data in (("garbage.png", b"not an image at all"), ("empty_image.png", b"")):
        (img / name).write_bytes(data)
        _write(lbl / name, _label())
    ok_png = cv2.imencode(".png", _image(seed=3))[1].tobytes()
    (img / "truncated.png").write_bytes(ok_png[: len(ok_png) // 2])
    _write(lbl / "truncated.png", _label())
    _write(img / "empty_label.png", _image())
    (lbl / "empty_label.png").write_bytes(b"")
    _write(img / "truncated_label.png", _image())
    ok_label = cv2.imencode(".png", np.random.default_rng(0).integers(0, 3, (10, 12), np.uint8))
    (lbl / "truncated_label.png").write_bytes(ok_label[1].tobytes()[:-30])
    _pair(root, "size.png")
    _write(lbl / "size.png", _label(h=8, w=8))
    _pair(root, "colour.png")
    _write(lbl / "colour.png", _image())
    _pair(root, "values.png", values=(7, 9, 1))
    _pair(root, "jpeg_label.png", "jpeg_label.jpg")
    _write(img / "big.png", _image())
    Image.fromarray(_label().astype(np.int32) * 70000).save(lbl / "big.tif")
    return {
        "only_image.png": "image without a label",
        "only_label.png": "without an image",
        "garbage.png": "not a readable image",
        "truncated.png": "not a readable image",
        "empty_image.png": "0 bytes",
        "empty_label.png": "0 bytes",
        "truncated_label.png": "not a readable label image",
        "size.png": "label image is 8x8 but its image",
        "colour.png": "colour mode RGB",
        "values.png": "label values 7, 9 are not in class_ids",
        "jpeg_label.jpg": "lossless",
        "big.tif": "label values 70000",
    }


def test_every_bad_file_is_reported_at_once(tmp_path: Path) -> None:
    expected = _bad_dataset(tmp_path)
    with pytest.raises(DatasetError) as err:
        _read(tmp_path)
    problems = err.value.problems
    assert len(problems) == len(expected)
    for name, text in expected.items():
        assert any(f"/{name}: " in p and text in p for p in problems), (name, problems)


def test_bad_files_via_cli_exit_2_name_every_file_and_write_nothing(tmp_path: Path) -> None:
    expected = _bad_dataset(tmp_path)
    (tmp_path / "params.yaml").write_text(
        "dataset:\n  image_dir: images\n  segmentation_dir: labels\n"
    )
    result = run_segcore("dataset", "--out", "out/dataset.parquet", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    stderr = _flat(result.stderr)
    assert f"the dataset cannot be read ({len(expected)} problems)" in stderr
    for name, text in expected.items():
        assert f"/{name}: " in stderr and text in stderr, name
    assert not (tmp_path / "out").exists()


def test_missing_folders_via_cli(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text("")
    (tmp_path / "afile").write_text("x")
    result = run_segcore(
        "dataset", "--image-dir", "nowhere", "--segmentation-dir", "afile", cwd=tmp_path
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    stderr = _flat(result.stderr)
    assert "nowhere: image_dir does not exist" in stderr
    assert "afile: segmentation_dir is not a folder" in stderr
    assert not (tmp_path / "data").exists()


def test_images_and_labels_above_the_pixel_limit_are_refused_from_their_header(
    tmp_path: Path,
) -> None:
    _pair(tmp_path, "a.png")  # 12 x 10 = 120 pixels
    (tmp_path / "images" / "huge.png").write_bytes(huge_png(30000, 30000))
    (tmp_path / "labels" / "huge.png").write_bytes(huge_png(30000, 30000))
    (tmp_path / "params.yaml").write_text(
        "dataset:\n  image_dir: images\n  segmentation_dir: labels\n"
    )
    result = run_segcore("dataset", "--out", "out/dataset.parquet", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    stderr = _flat(result.stderr)
    for folder in ("images", "labels"):
        assert f"{folder}/huge.png: image is 30000x30000 (900.0 megapixels)" in stderr
    assert "raise dataset.max_image_pixels" in stderr
    with pytest.raises(DatasetError, match=r"a.png: image is 12x10 .* dataset.max_image_pixels"):
        _read(tmp_path, max_image_pixels=100, ignore_unmatched=True)
    (tmp_path / "images" / "huge.png").unlink()
    (tmp_path / "labels" / "huge.png").unlink()
    assert len(_read(tmp_path, max_image_pixels=120)) == 1


def test_broken_links_and_special_files_are_reported_not_skipped(tmp_path: Path) -> None:
    import os

    _pair(tmp_path, "a.png")
    _pair(tmp_path, "b.png")
    _pair(tmp_path, "c.png")
    (tmp_path / "images" / "b.png").unlink()
    (tmp_path / "images" / "b.png").symlink_to(tmp_path / "gone.png")  # dangling
    (tmp_path / "labels" / "c.png").unlink()
    os.mkfifo(tmp_path / "labels" / "c.png")  # would block whoever reads it
    for kwargs in ({}, {"ignore_unmatched": True}):
        with pytest.raises(DatasetError) as err:
            _read(tmp_path, **kwargs)
        text = _flat(err.value.render())
        assert "images/b.png: broken symbolic link" in text
        assert "labels/c.png: not a regular file" in text


def test_ignore_class_ids_of_preprocess_are_valid_label_values(tmp_path: Path) -> None:
    _pair(tmp_path, "a.png", values=(0, 1, 255, 255, 255))  # a 255 border, HALCON style
    _pair(tmp_path, "b.png", values=(0, 2))
    params = tmp_path / "params.yaml"
    params.write_text("dataset:\n  image_dir: images\n  segmentation_dir: labels\n")
    refused = run_segcore("dataset", "--out", "out/dataset.parquet", cwd=tmp_path)
    assert refused.returncode == 2 and "preprocess.param.ignore_class_ids" in refused.stderr
    params.write_text(params.read_text() + "preprocess:\n  param:\n    ignore_class_ids: [255]\n")
    done = run_segcore("dataset", "--out", "out/dataset.parquet", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    samples = pd.read_parquet(tmp_path / "out" / "dataset.parquet")
    assert list(samples["pixels_ignored"]) == [3, 0]
    assert list(samples["pixels_class_0"]) == [10 * 12 - 4, 10 * 12 - 1]
