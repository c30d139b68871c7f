"""Bad input stops training with clear messages, before any training step or file."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from helpers.cli import run_segcore

from segcore.common.errors import DatasetError, ParamsError
from segcore.data.dldataset import DLDataset
from segcore.data.samples import load_sample, save_sample
from segcore.params import TrainParams
from segcore.train.loop import TrainingError, train_model


def _params(tmp_path: Path, **changes: Any) -> TrainParams:
    values: dict[str, Any] = {
        "out_dir": str(tmp_path / "models"),
        "history": str(tmp_path / "history.csv"),
        "model_kwargs": {"base_channels": 4, "depth": 2},
        "batch_size": 4,
        "num_epochs": 1,
        "device": "cpu",
    }
    return TrainParams(**(values | changes))


def _copy(pills_preprocessed: Path, tmp_path: Path) -> DLDataset:
    """The preprocessed pills with their own copy of the sample files (free to break)."""
    ds = DLDataset.load(pills_preprocessed)
    assert ds.sample_dir is not None
    samples = shutil.copytree(ds.sample_dir, tmp_path / "samples")
    return ds.with_samples(ds.samples, sample_dir=samples)


def _train_files(ds: DLDataset) -> list[Path]:
    assert ds.sample_dir is not None
    rows = ds.split("train")
    return [ds.sample_dir / name for name in rows["sample_file_name"]]


def _fails_before_training(ds: DLDataset | Path, params: TrainParams, error: type) -> str:
    with pytest.raises(error) as err:
        train_model(ds, params)
    assert not Path(params.out_dir).exists()
    assert not Path(params.history).exists()
    return str(err.value)


def test_empty_train_split(pills_preprocessed: Path, tmp_path: Path) -> None:
    ds = DLDataset.load(pills_preprocessed)
    samples = ds.samples.assign(split=ds.samples["split"].replace("train", "test"))
    text = _fails_before_training(ds.with_samples(samples), _params(tmp_path), DatasetError)
    assert "the train split is empty; run `segcore split`" in text


def test_missing_weight_image_and_unknown_class_ids_are_reported_together(
    pills_preprocessed: Path, tmp_path: Path
) -> None:
    ds = _copy(pills_preprocessed, tmp_path)
    broken = _train_files(ds)[0]
    sample = load_sample(broken)
    save_sample(broken, sample["image"], sample["label"])  # without the weight image
    fewer = ds.with_samples(ds.samples, class_ids=[0, 1], class_names=["good", "contamination"])
    text = _fails_before_training(fewer, _params(tmp_path), DatasetError)
    assert f"1 train samples have no weight image ({broken})" in text
    assert "label values [2]" in text and "are not among class_ids [0, 1]" in text
    assert "class list does not match the dataset" in text


def test_a_batch_larger_than_the_train_split(pills_preprocessed: Path, tmp_path: Path) -> None:
    params = _params(tmp_path, batch_size=8, batch_size_multiplier=8)
    text = _fails_before_training(pills_preprocessed, params, DatasetError)
    assert "fewer than one update takes (batch_size 8 x batch_size_multiplier 8" in text
    assert "lower train.batch_size" in text


def test_non_finite_pixels(pills_preprocessed: Path, tmp_path: Path) -> None:
    ds = _copy(pills_preprocessed, tmp_path)
    broken = _train_files(ds)[1]
    sample = load_sample(broken)
    sample["image"][0, 3, 3] = np.nan
    save_sample(broken, sample["image"], sample["label"], sample["weight"])
    text = _fails_before_training(ds, _params(tmp_path), DatasetError)
    assert "hold NaN or infinite pixel values" in text and broken.name in text


def test_input_size_the_architecture_cannot_take(pills_preprocessed: Path, tmp_path: Path) -> None:
    params = _params(tmp_path, model_kwargs={"base_channels": 2, "depth": 7})
    text = _fails_before_training(pills_preprocessed, params, ParamsError)
    assert "input size 64x64" in text and "multiples of 128, e.g. 128x128" in text


def test_unknown_model_name_lists_the_valid_ones(pills_preprocessed: Path, tmp_path: Path) -> None:
    text = _fails_before_training(pills_preprocessed, _params(tmp_path, model="unte"), ParamsError)
    assert "unknown model 'unte'; valid names: compact, enhanced, unet" in text


def test_a_diverging_loss_stops_with_the_epoch_and_likely_cause(
    pills_preprocessed: Path, tmp_path: Path
) -> None:
    params = _params(tmp_path, solver_type="sgd", learning_rate=1e9, num_epochs=3)
    with pytest.raises(TrainingError) as err:
        train_model(pills_preprocessed, params)
    text = str(err.value)
    assert text.startswith("epoch 1: the training loss became nan")
    assert "learning_rate 1000000000.0 is too high" in text


def test_cli_trains_and_turns_bad_input_into_a_message(
    pills_preprocessed: Path, tmp_path: Path
) -> None:
    params_file = tmp_path / "params.yaml"
    train = _params(tmp_path).model_dump(mode="json") | {"dataset": str(pills_preprocessed)}
    params_file.write_text(yaml.safe_dump({"train": train}))
    done = run_segcore("train", "-p", params_file, "--epochs", "2", "--seed", "3", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Train: 2 epochs, best mean_iou" in done.stdout
    assert (tmp_path / "models" / "best" / "model.safetensors").is_file()
    again = run_segcore(
        "train", "-p", params_file, "--resume", "--epochs", "3", "--seed", "3", cwd=tmp_path
    )
    assert again.returncode == 0, again.stderr
    assert "Train: 3 epochs" in again.stdout
    bad = run_segcore("train", "-p", params_file, "--epochs", "0", "--device", "gpu", cwd=tmp_path)
    assert bad.returncode == 2
    assert "--epochs: Input should be greater than 0" in bad.stderr
    assert "Traceback" not in bad.stderr
