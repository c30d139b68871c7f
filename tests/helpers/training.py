"""Tiny training runs: small quick train params and a callback that records a run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
