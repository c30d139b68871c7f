"""Inference runs through the real command line: per-image write failures, tables that
describe exactly one run, the input folder as output folder, one run per output folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from filelock import FileLock
from helpers.cli import run_segcore
from helpers.models import make_bundle

from segcore.common.errors import EXIT_PARTIAL_FAILURE, EXIT_USER_ERROR
from segcore.common.images import write_image_atomic


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
