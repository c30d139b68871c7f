"""Mixed-precision training end to end on the tiny pill data (any CPU): bf16 learns as fp32
does, the precision is recorded, and determinism and resume hold in bf16."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers.cli import run_segcore
from helpers.training import Recorder, tiny_params
from mlflow import MlflowClient

from segcore.common.errors import ParamsError
from segcore.common.precision import EmulatedPrecisionWarning, native_bf16
from segcore.model.bundle import load_bundle
from segcore.model.config import trained_precision
from segcore.params import Params, TrackingParams
from segcore.tracking import run as tracking
from segcore.train.checkpoint import CHECKPOINT_FILE
from segcore.train.loop import TrainResult, train_model


def _train_bf16(dataset: Path, root: Path, resume: bool = False, **changes: Any) -> TrainResult:
    with warnings.catch_warnings():  # emulated bf16 on CPUs without it: expected here
        warnings.simplefilter("ignore", EmulatedPrecisionWarning)
        return train_model(dataset, tiny_params(root, precision="bf16", **changes), resume=resume)


def test_bf16_training_reaches_the_loss_of_fp32_and_records_its_precision(
    pills_preprocessed: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, mlflow_uri: str
) -> None:
    fp32 = train_model(pills_preprocessed, tiny_params(tmp_path / "fp32", num_epochs=4))
    recorder = Recorder()
    train = tiny_params(tmp_path / "bf16", num_epochs=4, precision="bf16")
    params = Params().model_copy(
        update={
            "train": train,
            "tracking": TrackingParams(tracking_uri=mlflow_uri, experiment_name="precision"),
        }
    )
    with (
        caplog.at_level(logging.INFO, logger="segcore.train"),
        warnings.catch_warnings(),
        tracking.start_run(params, tmp_path) as run,
    ):
        warnings.simplefilter("ignore", EmulatedPrecisionWarning)
        bf16 = train_model(pills_preprocessed, train, callbacks=[recorder, run.callback()])
    loss32, loss16 = fp32.history["loss"], bf16.history["loss"]
    assert loss16.iloc[-1] < 0.7 * loss16.iloc[0]  # it learns
    # Same seed, same data order: bf16 rounding only; the loss ends within 10 % of fp32's.
    assert loss16.iloc[-1] == pytest.approx(loss32.iloc[-1], rel=0.10)
    assert loss16.iloc[0] != loss32.iloc[0]  # the forward pass did run in bf16

    stored = MlflowClient(mlflow_uri).get_run(run.run_id).data
    assert stored.tags["train.precision"] == "bf16"  # what ran, beside the asked param
    assert stored.params["train.precision"] == "bf16"
    assert recorder.info["precision"] == "bf16"
    assert recorder.info["precision_native"] is native_bf16(torch.device("cpu"))
    assert any("precision: bf16" in r.getMessage() for r in caplog.records)
    module, config = load_bundle(tmp_path / "bf16" / "models" / "final")
    assert trained_precision(config) == "bf16"
    assert trained_precision(load_bundle(tmp_path / "fp32" / "models" / "final")[1]) == "fp32"
    assert all(
        t.dtype == torch.float32 for t in module.state_dict().values() if t.is_floating_point()
    )
    state = torch.load(tmp_path / "bf16" / "models" / CHECKPOINT_FILE, weights_only=True)
    assert state["precision"] == "bf16"
    exp_avg = [s["exp_avg"] for s in state["optimizer"]["state"].values()]
    assert exp_avg and all(t.dtype == torch.float32 for t in exp_avg)  # fp32 optimizer state


def test_bf16_is_deterministic_and_resumes_to_the_uninterrupted_weights(
    pills_preprocessed: Path, tmp_path: Path
) -> None:
    straight = _train_bf16(pills_preprocessed, tmp_path / "a", num_epochs=2)
    _train_bf16(pills_preprocessed, tmp_path / "b", num_epochs=1)
    resumed = _train_bf16(pills_preprocessed, tmp_path / "b", resume=True, num_epochs=2)
    assert list(resumed.history["loss"]) == list(straight.history["loss"])
    expected = load_bundle(tmp_path / "a" / "models" / "final")[0].state_dict()
    got = load_bundle(tmp_path / "b" / "models" / "final")[0].state_dict()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key

    # A run keeps one precision: resuming the bf16 checkpoint in fp32 is refused.
    with pytest.raises(ParamsError, match="precision"):
        train_model(pills_preprocessed, tiny_params(tmp_path / "b", num_epochs=3), resume=True)


def test_fp16_on_a_cpu_is_refused_before_training(pills_preprocessed: Path, tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match=r"fp16 needs a CUDA device.*auto"):
        train_model(pills_preprocessed, tiny_params(tmp_path, precision="fp16"))
    assert not (tmp_path / "models" / CHECKPOINT_FILE).exists()


def test_fp16_on_a_cpu_is_a_clear_error_of_the_command_line(tmp_path: Path) -> None:
    done = run_segcore(
        "infer", tmp_path / "bundle", tmp_path / "a.png", "--out", tmp_path / "out",
        "--device", "cpu", "--precision", "fp16", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2
    assert "infer.precision: fp16 needs a CUDA device" in done.stderr
    assert "Traceback" not in done.stderr
