"""Watching a long run: one log line per epoch, and training curves on readable axes."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flows.pipeline import segcore_logs_to
from segcore.evaluate.plots import curve_groups, plot_training_curves
from segcore.params import TrainParams
from segcore.train.loop import train_model


def test_info_lines_on_the_data_and_precision_then_one_per_epoch(
    pills_preprocessed: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    params = TrainParams(
        out_dir=str(tmp_path / "models"),
        history=str(tmp_path / "history.csv"),
        model_kwargs={"base_channels": 8, "depth": 2},
        batch_size=4,
        learning_rate=0.01,
        num_epochs=2,
        device="cpu",
        num_threads=1,
    )
    with caplog.at_level(logging.INFO, logger="segcore.train"):
        train_model(pills_preprocessed, params)
    lines = [r.getMessage() for r in caplog.records if r.name == "segcore.train"]
    assert len(lines) == 4, lines
    assert lines[0].startswith("training data: in memory (data_loading auto; ")
    assert lines[1].startswith("precision: fp32")
    pattern = r"epoch {}/2: loss \d+\.\d{{4}}, val mean_iou 0\.\d{{4}}, lr 0\.01, \d+\.\d s, ETA 0h00m\d\ds"
    for epoch, line in enumerate(lines[2:], 1):
        assert re.fullmatch(pattern.format(epoch), line), line


def test_segcore_logs_reach_the_task_logger() -> None:
    target = logging.getLogger("test.task_run")
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    target.addHandler(Keep())
    target.setLevel(logging.INFO)
    with segcore_logs_to(target):
        logging.getLogger("segcore.train").info("epoch %d/%d: loss 0.5", 1, 3)
    logging.getLogger("segcore.train").info("after the task: not forwarded")
    assert seen == ["epoch 1/3: loss 0.5"]


def test_training_curves_leave_counters_out(tmp_path: Path) -> None:
    n = 40
    history = pd.DataFrame(
        {
            "epoch": np.arange(1, n + 1),
            "step": np.arange(1, n + 1) * 10,
            "loss": np.linspace(1.0, 0.2, n),
            "learning_rate": 0.01,
            "seconds": 1.5,
            "eval_seconds": 0.2,
            "val_mean_iou": np.linspace(0.1, 0.8, n),
            "val_iou_crack": np.linspace(0.0, 0.7, n),
        }
    )
    groups = curve_groups(history)
    assert groups["measures"] == ["val_mean_iou", "val_iou_crack"]
    assert all("step" not in cols and "epoch" not in cols for cols in groups.values())
    assert plot_training_curves(history, tmp_path / "curves.png")
