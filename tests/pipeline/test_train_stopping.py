"""Stopping before num_epochs: the time budget (within one update of the limit, with a
valid best model) and early stopping's patience (kept across a resume)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
import yaml
from helpers.training import TORCHRUN, tiny_params, torchrun_train

from segcore.common.errors import ParamsError
from segcore.model.bundle import load_bundle
from segcore.params import TrainParams
from segcore.train.bundles import STAGING_DIR
from segcore.train.checkpoint import CHECKPOINT_FILE
from segcore.train.loop import train_model

BUDGET = 2.5
"""Seconds: a few epochs of the tiny pills (3 updates of ~0.1 s each, plus validation)."""


def _one_update(history: pd.DataFrame) -> float:
    """The longest mean update of any history row (seconds of updates / updates)."""
    updates = history["step"].diff().fillna(history["step"].iloc[0])
    return float((history["seconds"] / updates).max())


def test_the_time_budget_stops_within_one_update_with_a_valid_best_model(
    pills_preprocessed: Path, tmp_path: Path
) -> None:
    params = tiny_params(tmp_path, num_epochs=1000, time_budget=BUDGET)
    result = train_model(pills_preprocessed, params)

    stop, history = result.stop, result.history
    assert stop["reason"] == "time_budget" and stop["time_budget"] == BUDGET
    update = _one_update(history)
    # Stopped when the next update and the closing validation would have passed the limit.
    assert BUDGET - 2 * update - 2 * history["eval_seconds"].max() <= stop["seconds"]
    assert stop["seconds"] <= BUDGET + update
    assert 1 <= stop["epoch"] < 1000 and history["epoch"].iloc[-1] == stop["epoch"]
    assert history["val_mean_iou"].iloc[-1] == pytest.approx(result.final_measures["mean_iou"])

    models = Path(params.out_dir)
    assert not (models / STAGING_DIR).exists()  # published
    best, config = load_bundle(models / "best")
    assert config.training_summary["epoch"] == result.best_epoch
    assert result.best_value == pytest.approx(history["val_mean_iou"].max(), rel=1e-5)
    with torch.no_grad():
        assert best(torch.zeros(1, 3, 64, 64)).shape == (1, 3, 64, 64)
    final = load_bundle(models / "final")[1].training_summary
    assert final["stop"] == stop and final["epoch"] == stop["epoch"]
    written = pd.read_csv(params.history)
    # The CSV keeps 6 significant digits.
    assert written["epoch"].iloc[-1] == pytest.approx(stop["epoch"], rel=1e-5)
    # The checkpoint is that of the last whole epoch, with the best value so far.
    state = torch.load(models / CHECKPOINT_FILE, weights_only=True)
    assert state["epoch"] == math.floor(stop["epoch"])
    assert (state["best_value"], state["best_epoch"]) == (result.best_value, result.best_epoch)


def test_a_budget_shorter_than_one_epoch_is_refused(
    pills_preprocessed: Path, tmp_path: Path
) -> None:
    params = tiny_params(tmp_path, num_epochs=5, time_budget=0.001)
    with pytest.raises(ParamsError) as err:
        train_model(pills_preprocessed, params)
    text = str(err.value)
    assert text.startswith("train.time_budget 0.001 s is shorter than one epoch")
    assert "an epoch of 3 updates takes about" in text and "raise train.time_budget" in text
    models = Path(params.out_dir)
    assert not (models / "best").exists() and not (models / "final").exists()


def _frozen(tmp_path: Path, **changes: Any) -> TrainParams:
    """A rate too small to change any prediction, group norm (no running statistics): the
    validation measure stays the same, so no evaluation after the first improves."""
    values: dict[str, Any] = {
        "learning_rate": 1e-12,
        "model_kwargs": {"base_channels": 8, "depth": 2, "norm": "group"},
        "num_epochs": 10,
        "change_strategies": [],
    }
    return tiny_params(tmp_path, **(values | changes))


@pytest.mark.parametrize("patience", [1, 2])
def test_early_stopping_after_patience_evaluations_without_improvement(
    pills_preprocessed: Path, tmp_path: Path, patience: int
) -> None:
    """Epoch 1 improves (the first value), then patience evaluations in a row do not."""
    params = _frozen(tmp_path, early_stopping_patience=patience)
    result = train_model(pills_preprocessed, params)
    assert list(result.history["epoch"]) == list(range(1, patience + 2))
    assert result.history["val_mean_iou"].nunique() == 1
    assert result.stop == {"reason": "early_stopping", "epoch": patience + 1, "patience": patience}
    assert result.best_epoch == 1
    final = load_bundle(Path(params.out_dir) / "final")[1].training_summary
    assert final["stop"]["reason"] == "early_stopping"


def test_early_stopping_counts_evaluations_every_fraction_of_an_epoch(
    pills_preprocessed: Path, tmp_path: Path
) -> None:
    """Every 1/3 epoch (one update): improves at 1/3, then 2/3 and 1 do not; stops at 1."""
    params = _frozen(tmp_path, early_stopping_patience=2, evaluation_interval_epochs=1 / 3)
    result = train_model(pills_preprocessed, params)
    assert result.stop["epoch"] == 1 and list(result.history["epoch"]) == [1]
    assert result.best_epoch == pytest.approx(1 / 3)


def test_a_resumed_run_keeps_its_count_of_evaluations_without_improvement(
    pills_preprocessed: Path, tmp_path: Path
) -> None:
    """Patience 3: 2 epochs leave one stale evaluation; resumed, it stops at epoch 4 (a
    count started afresh would stop at 5)."""
    first = train_model(
        pills_preprocessed, _frozen(tmp_path, num_epochs=2, early_stopping_patience=3)
    )
    assert first.stop["reason"] == "num_epochs"
    resumed = train_model(
        pills_preprocessed, _frozen(tmp_path, early_stopping_patience=3), resume=True
    )
    assert resumed.stop["reason"] == "early_stopping"
    assert list(resumed.history["epoch"]) == [1, 2, 3, 4]


@pytest.mark.skipif(not TORCHRUN.is_file(), reason="torchrun is not installed beside python")
def test_two_processes_stop_on_the_budget_together(
    pills_preprocessed: Path, tmp_path: Path
) -> None:
    """Rank 0's clock decides for both ranks: they stop at the same update (a rank left
    waiting in the next gradient exchange would hang the run)."""
    train = tiny_params(tmp_path, batch_size=2, num_epochs=1000, time_budget=BUDGET)
    values = train.model_dump(mode="json") | {"dataset": str(pills_preprocessed)}
    values["model_kwargs"] = {"base_channels": 8, "depth": 2, "norm": "group"}
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump({"train": values}))
    done = torchrun_train(params_file, tmp_path)
    assert done.stdout.count("stopped by train.time_budget") == 1  # rank 0 reports
    summary = load_bundle(Path(train.out_dir) / "final")[1].training_summary
    assert summary["stop"]["reason"] == "time_budget" and summary["processes"] == 2
