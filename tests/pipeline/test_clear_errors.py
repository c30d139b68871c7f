"""User mistakes through the real command line: exit code 2 and a message that names the
file or key and the fix, never a traceback."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from helpers.cli import run_segcore
from helpers.models import make_bundle

from segcore.common.images import write_image_atomic
from segcore.data.dldataset import DLDataset
from segcore.params import PreprocessParams
from segcore.preprocess.stage import preprocess_dataset


def _user_error(result: Any, *needles: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    text = " ".join(result.stderr.split())
    for needle in needles:
        assert needle in text, text


@pytest.fixture(scope="module")
def bundle_and_image(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("errors")
    image = root / "a.png"
    write_image_atomic(image, np.zeros((40, 40, 3), np.uint8))
    return make_bundle(root / "bundle"), image


def test_infer_out_that_is_a_file(bundle_and_image: tuple[Path, Path], tmp_path: Path) -> None:
    bundle, image = bundle_and_image
    existing = tmp_path / "out.txt"
    existing.write_text("x")
    _user_error(run_segcore("infer", bundle, image, "--out", existing), str(existing), "is a file")
    under = existing / "sub"
    _user_error(
        run_segcore("infer", bundle, image, "--out", under), f"lies under the file {existing}"
    )


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"preprocess_param": {"image_width": "wide"}}, "preprocess_param is not valid"),
        ({"preprocess_param": {"bogus_key": 1}}, "bogus_key"),
        ({"class_ids": ["0", 1, 2, 9]}, "class_ids must be a non-empty list of integers"),
        ({"class_names": ["good", "crack"]}, "2 class_names for 4 class_ids"),
    ],
)
def test_bundle_with_invalid_model_json(
    bundle_and_image: tuple[Path, Path], tmp_path: Path, change: dict[str, Any], needle: str
) -> None:
    _, image = bundle_and_image
    bundle = make_bundle(tmp_path / "bundle")
    meta = json.loads((bundle / "model.json").read_text())
    (bundle / "model.json").write_text(json.dumps(meta | change))
    result = run_segcore("infer", bundle, image, "--out", tmp_path / "out")
    _user_error(result, str(bundle / "model.json"), needle)


def _train_params(tmp_path: Path, dataset: Path, mlflow_uri: str, **train: Any) -> Path:
    params = {
        "train": {
            "dataset": str(dataset),
            "out_dir": str(tmp_path / "models"),
            "history": str(tmp_path / "history.csv"),
            "model_kwargs": {"base_channels": 8, "depth": 2},
            "batch_size": 4,
            "num_epochs": 1,
            "device": "cpu",
            **train,
        },
        "tracking": {"tracking_uri": mlflow_uri, "experiment_name": "test-clear-errors"},
    }
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_planted_pickle_checkpoint(
    pills_preprocessed: Path, mlflow_uri: str, tmp_path: Path
) -> None:
    params = _train_params(tmp_path, pills_preprocessed, mlflow_uri)
    (tmp_path / "models").mkdir()
    checkpoint = tmp_path / "models" / "checkpoint.pt"
    checkpoint.write_bytes(pickle.dumps({"format": np.float64(1.0)}))  # a global: not weights
    result = run_segcore("train", "-p", params, "--resume", cwd=tmp_path)
    _user_error(result, str(checkpoint), "not a segcore checkpoint")
    assert "weights_only=False" not in result.stderr


def test_input_size_the_model_cannot_take_is_refused_before_reading_samples(
    pills_split: Path, mlflow_uri: str, tmp_path: Path
) -> None:
    out = tmp_path / "pre"
    param = PreprocessParams(image_width=7, image_height=64)
    preprocess_dataset(DLDataset.load(pills_split), param, out, workers=1)
    for sample in (out / "samples").iterdir():  # reading any sample would fail now
        sample.unlink()
    params = _train_params(tmp_path, out / "dataset.parquet", mlflow_uri)
    result = run_segcore("train", "-p", params, cwd=tmp_path)
    _user_error(result, "input size 7x64", "multiples of 4", "image_width")
