"""Shared fixtures: a tiny synthetic pill dataset carried through the stages once per session.

Each fixture builds on the one before (raw -> dataset with split -> preprocessed), so a
test asks only for the stage it needs. Everything runs offline on the CPU.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers.servers import prefect_api  # noqa: F401  (one `prefect server` for the scale-out tests)

os.environ.setdefault("SEGCORE_PROGRESS", "0")

TINY = {"num_images": 24, "width": 96, "height": 96, "defect_free_fraction": 0.2, "seed": 7}
TINY_SIZE = 64
"""Network input size (pixels) of the tiny preprocessed dataset."""


@pytest.fixture(scope="session")
def pills_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder with ``images/`` and ``labels/`` of 24 tiny synthetic pills."""
    from segcore.data.synth import generate_pills

    out = tmp_path_factory.mktemp("pills_raw")
    generate_pills(out, **TINY)
    return out


@pytest.fixture(scope="session")
def pills_split(pills_raw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of the split dataset table of :func:`pills_raw`."""
    from segcore.data.read import read_dataset
    from segcore.data.split import split_dataset

    ds = read_dataset(
        pills_raw / "images", pills_raw / "labels", ["good", "contamination", "crack"], [0, 1, 2]
    )
    ds = split_dataset(ds, training_percent=60, validation_percent=20, seed=1)
    return ds.save(tmp_path_factory.mktemp("pills_dataset") / "split.parquet")


@pytest.fixture(scope="session")
def pills_preprocessed(pills_split: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of the preprocessed dataset table (64 x 64 inputs, weight images for train)."""
    from segcore.data.dldataset import DLDataset
    from segcore.params import PreprocessParams
    from segcore.preprocess.stage import preprocess_dataset

    out = tmp_path_factory.mktemp("pills_preprocessed")
    param = PreprocessParams(image_width=TINY_SIZE, image_height=TINY_SIZE)
    preprocess_dataset(DLDataset.load(pills_split), param, out, workers=1)
    return out / "dataset.parquet"


TILE = 48
"""Tile size (pixels) of the tiny tiled dataset: four tiles cover a 96 x 96 pill."""


@pytest.fixture(scope="session")
def pills_tiled(pills_split: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of the tiny dataset preprocessed in tiled mode (native 96 x 96, 48 x 48 tiles)."""
    from segcore.data.dldataset import DLDataset
    from segcore.params import PreprocessParams
    from segcore.preprocess.stage import preprocess_dataset

    out = tmp_path_factory.mktemp("pills_tiled")
    param = PreprocessParams(mode="tiled", image_width=TILE, image_height=TILE)
    preprocess_dataset(DLDataset.load(pills_split), param, out, workers=1)
    return out / "dataset.parquet"


@pytest.fixture(scope="session")
def mlflow_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A sqlite MLflow store in a temporary folder, shared by the session (creating one takes
    seconds); tests keep apart through their own experiment and model names."""
    return f"sqlite:///{(tmp_path_factory.mktemp('mlflow') / 'mlflow.db').as_posix()}"
