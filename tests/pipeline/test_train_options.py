"""The training options beside HALCON's: the losses, the learning-rate schedule across a
resume, the stop reason in MLflow, and named encoder weights offline (the CLI)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
import yaml
from helpers import training
from helpers.cli import run_segcore
from mlflow import MlflowClient

from segcore.common.errors import ParamsError
from segcore.model.bundle import load_bundle
from segcore.params import Params, TrackingParams, TrainParams
from segcore.pipeline.stage_train import run_train
from segcore.train.loop import train_model


def tiny_params(tmp_path: Path, **changes: Any) -> TrainParams:
    """The shared tiny parameters, 2 epochs, no augmentation."""
    values = {"num_epochs": 2, "augmentation": {"augmentation_percentage": 0}}
    return training.tiny_params(tmp_path, **(values | changes))


def test_every_loss_trains_and_is_recorded_in_the_bundle(
    pills_preprocessed: Path, tmp_path: Path
) -> None:
    """Same start, same batches: focal weighs the pixels down ((1 - p)^2 < 1), ce+dice adds
    a positive Dice term to the cross-entropy."""
    first_loss = {}
    for name in ("ce", "focal", "ce+dice"):
        params = tiny_params(tmp_path / name.replace("+", "_"), loss=name)
        result = train_model(pills_preprocessed, params)
        assert result.history["loss"].notna().all() and result.best_value is not None
        first_loss[name] = result.history["loss"].iloc[0]
        summary = load_bundle(Path(params.out_dir) / "final")[1].training_summary
        assert summary["params"]["loss"] == name
    assert first_loss["focal"] < first_loss["ce"] < first_loss["ce+dice"]


class Interrupt(Exception):
    """Stands for a kill after an epoch's checkpoint."""


class InterruptAfter:
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_start(self, info: dict[str, Any]) -> None: ...

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        if epoch == self.epoch:
            raise Interrupt

    def on_train_end(self, result: Any) -> None: ...


def test_a_resumed_run_continues_the_schedule_exactly(
    pills_preprocessed: Path, tmp_path: Path
) -> None:
    """3 updates per epoch, warm-up 1 epoch, cosine over 3 epochs (T = 9, W = 3): the last
    update of each epoch (k = 2, 5, 8) runs at lr * 1, (1 + cos(pi/3))/2, (1 + cos(5pi/6))/2."""
    schedule = {"num_epochs": 3, "lr_schedule": "cosine", "warmup_epochs": 1.0}
    schedule |= {"change_strategies": []}
    straight = train_model(pills_preprocessed, tiny_params(tmp_path / "a", **schedule))
    expected = [0.01, 0.01 * 0.75, 0.01 * (1 - 3**0.5 / 2) / 2]
    assert list(straight.history["learning_rate"]) == pytest.approx(expected)

    with pytest.raises(Interrupt):
        train_model(
            pills_preprocessed,
            tiny_params(tmp_path / "b", **schedule),
            callbacks=[InterruptAfter(2)],
        )
    resumed = train_model(pills_preprocessed, tiny_params(tmp_path / "b", **schedule), resume=True)
    columns = ["epoch", "loss", "learning_rate", "val_mean_iou"]
    pd.testing.assert_frame_equal(resumed.history[columns], straight.history[columns])
    for name, a in load_bundle(tmp_path / "a" / "models" / "final")[0].state_dict().items():
        b = load_bundle(tmp_path / "b" / "models" / "final")[0].state_dict()[name]
        assert torch.equal(a, b), name

    longer = tiny_params(tmp_path / "b", **(schedule | {"num_epochs": 5}))
    with pytest.raises(ParamsError, match="under lr_schedule cosine, whose decay spans num_epochs"):
        train_model(pills_preprocessed, longer, resume=True)


def test_the_stop_reason_and_the_new_params_reach_mlflow(
    pills_preprocessed: Path, tmp_path: Path, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Patience 1, evaluated every update, nothing improves after the first: stops at 2/3 of
    the first epoch; the cut-short epoch's row is logged at step 1."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    train = tiny_params(
        tmp_path,
        dataset=str(pills_preprocessed),
        learning_rate=1e-12,
        model_kwargs={"base_channels": 8, "depth": 2, "norm": "group"},
        change_strategies=[],
        early_stopping_patience=1,
        evaluation_interval_epochs=1 / 3,
        loss="focal",
    )
    tracking = TrackingParams(tracking_uri=mlflow_uri, experiment_name="test-train-stop")
    stage = run_train(Params().model_copy(update={"train": train, "tracking": tracking}), tmp_path)
    assert "0.666667 epochs, stopped by train.early_stopping_patience" in stage.summary
    client = MlflowClient(mlflow_uri)
    experiment = client.get_experiment_by_name("test-train-stop")
    assert experiment is not None
    (stored,) = client.search_runs([experiment.experiment_id])
    run_id = stored.info.run_id
    assert stored.data.tags["train.stop_reason"] == "early_stopping"
    assert stored.data.tags["train.stop_epoch"] == "0.666667"
    for key, value in (("loss", "focal"), ("lr_schedule", "none"), ("time_budget", "null")):
        assert stored.data.params[f"train.{key}"] == value, key
    steps = client.get_metric_history(run_id, "train/loss")
    assert [m.step for m in steps] == [1]


def _params_file(path: Path, train: TrainParams, dataset: Path, **raw: Any) -> Path:
    values = train.model_dump(mode="json") | {"dataset": str(dataset)} | raw
    path.write_text(yaml.safe_dump({"train": values}))
    return path


def test_cli_refuses_named_weights_offline_and_a_too_short_budget(
    pills_preprocessed: Path, tmp_path: Path
) -> None:
    """Both before a model is written; the weights before any training step."""
    named = tiny_params(tmp_path, model="unet", encoder="resnet18", encoder_weights="imagenet")
    small = {"model_kwargs": {"decoder_channels": [16, 16, 8, 8, 8]}}
    params_file = _params_file(tmp_path / "named.yaml", named, pills_preprocessed, **small)
    hub = tmp_path / "hf"
    offline = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(hub), "HF_HUB_CACHE": str(hub / "hub")}
    done = run_segcore("train", "-p", params_file, cwd=tmp_path, env=offline)
    assert done.returncode == 2, done.stderr
    message = " ".join(done.stderr.split())  # the CLI wraps long lines
    assert "train.encoder_weights 'imagenet'" in message
    assert "cannot be downloaded (HF_HUB_OFFLINE is set)" in message
    assert "set train.encoder_weights to its path" in message
    assert "Traceback" not in message
    assert not (tmp_path / "models" / "final").exists()
    assert not (tmp_path / "reports").exists()  # no epoch ran

    params_file = _params_file(tmp_path / "short.yaml", tiny_params(tmp_path), pills_preprocessed)
    short = run_segcore("train", "-p", params_file, "--time-budget", "0.001", cwd=tmp_path)
    assert short.returncode == 2, short.stderr
    assert "train.time_budget 0.001 s is shorter than one epoch" in " ".join(short.stderr.split())
    assert not (tmp_path / "models" / "final").exists()
