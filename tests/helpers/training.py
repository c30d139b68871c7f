"""Tiny training runs: small quick train params, a callback that records a run, and two
processes under torchrun."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch

from segcore.model.bundle import load_bundle
from segcore.params import TrainParams
from segcore.train.loop import TrainResult

TINY_MODEL = {"base_channels": 8, "depth": 2}


def tiny_params(tmp_path: Path, **changes: Any) -> TrainParams:
    """Small and quick: a narrow compact model, batch 4, 3 epochs, one CPU thread."""
    values: dict[str, Any] = {
        "out_dir": str(tmp_path / "models"),
        "history": str(tmp_path / "reports" / "train_history.csv"),
        "model_kwargs": TINY_MODEL,
        "batch_size": 4,
        "learning_rate": 0.01,
        "num_epochs": 3,
        "device": "cpu",
        "num_threads": 1,
    }
    return TrainParams(**(values | changes))


class Recorder:
    """A callback that keeps what it is given."""

    def __init__(self) -> None:
        self.info: dict[str, Any] = {}
        self.epochs: list[tuple[int, dict[str, float]]] = []
        self.evaluations: list[tuple[float, dict[str, Any]]] = []
        self.result: TrainResult | None = None

    def on_train_start(self, info: dict[str, Any]) -> None:
        self.info = info

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        self.epochs.append((epoch, metrics))

    def on_train_end(self, result: TrainResult) -> None:
        self.result = result

    def on_evaluation(self, epoch: float, measures: dict[str, Any]) -> None:
        self.evaluations.append((epoch, measures))


TORCHRUN = Path(sys.executable).parent / "torchrun"


def torchrun_train(params_file: Path, cwd: Path) -> subprocess.CompletedProcess:
    """``segcore train -p PARAMS_FILE`` in two CPU processes under torchrun (gloo), one
    thread each; fails the test when it fails."""
    command = [str(TORCHRUN), "--nproc_per_node=2", "--standalone", "-m", "segcore.cli"]
    done = subprocess.run(
        [*command, "train", "-p", str(params_file)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,  # the run's MLflow store goes here
        env={**os.environ, "SEGCORE_PROGRESS": "0", "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def assert_trained_alike(
    history: Path, models: Path, single: TrainResult, single_models: Path
) -> None:
    """The run of ``history`` / ``models`` trained what ``single`` did: the same first loss
    and validation mean IoU, and final weights equal up to the order of float sums."""
    ran = pd.read_csv(history)
    assert ran["loss"].iloc[0] == pytest.approx(single.history["loss"].iloc[0], rel=1e-4)
    assert ran["val_mean_iou"].iloc[0] == pytest.approx(
        single.history["val_mean_iou"].iloc[0], abs=1e-3
    )
    one = load_bundle(single_models / "final")[0].state_dict()
    two = load_bundle(models / "final")[0].state_dict()
    for key, value in one.items():
        torch.testing.assert_close(two[key], value, rtol=1e-3, atol=1e-4, msg=key)
