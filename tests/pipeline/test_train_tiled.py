"""Training on tiles streamed from disk (CPU, tiny): the same result as in-memory training,
exact resume and determinism in tiled mode, the choice of the data path, bad input."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pytest
import torch
from helpers.training import Recorder, tiny_params

from segcore.common.errors import ParamsError
from segcore.model.bundle import load_bundle
from segcore.train.loop import train_model

MEASURES = ["loss", "val_mean_iou", "val_pixel_accuracy", "val_iou_crack"]


def _same_weights(a: Path, b: Path) -> None:
    one, two = load_bundle(a)[0].state_dict(), load_bundle(b)[0].state_dict()
    assert one.keys() == two.keys()
    for key in one:
        assert torch.equal(one[key], two[key]), key


def test_streaming_trains_exactly_as_in_memory(
    pills_preprocessed: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Resize mode, one tile per sample: the streamed batches (read by two worker
    processes) are the in-memory ones, so weights and measures agree bit for bit."""
    caplog.set_level(logging.INFO, logger="segcore.train")
    runs = {}
    for kind in ("memory", "streaming"):
        recorder = Recorder()
        params = tiny_params(tmp_path / kind, num_epochs=2, data_loading=kind, loader_workers=2)
        runs[kind] = train_model(pills_preprocessed, params, callbacks=[recorder])
        assert recorder.info["data_loading"] == kind
    pd.testing.assert_frame_equal(
        runs["memory"].history[MEASURES], runs["streaming"].history[MEASURES]
    )
    _same_weights(
        tmp_path / "memory" / "models" / "final", tmp_path / "streaming" / "models" / "final"
    )
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("training data")]
    assert "in memory (data_loading memory" in lines[0]
    assert "streamed from disk by 2 reader processes (data_loading streaming" in lines[1]


def test_auto_keeps_small_resize_datasets_in_memory(
    pills_preprocessed: Path, tmp_path: Path
) -> None:
    recorder = Recorder()
    train_model(pills_preprocessed, tiny_params(tmp_path, num_epochs=1), callbacks=[recorder])
    assert recorder.info["data_loading"] == "memory"


def test_tiled_training_is_deterministic_and_resumes_exactly(
    pills_tiled: Path, tmp_path: Path
) -> None:
    """Tiled mode: 48 x 48 tiles of 96 x 96 samples, a third centred on defects. The same
    seed gives the same run whatever the number of reader processes, and a resumed run
    the uninterrupted one."""
    common = {"foreground_share": 0.33, "model_kwargs": {"base_channels": 8, "depth": 2}}
    recorder = Recorder()
    straight = train_model(
        pills_tiled,
        tiny_params(tmp_path / "a", num_epochs=2, loader_workers=0, **common),
        callbacks=[recorder],
    )
    assert recorder.info["data_loading"] == "streaming"
    assert recorder.info["input_size"] == [3, 48, 48]
    train_samples = recorder.info["train_samples"]
    assert recorder.info["units_per_epoch"] == 4 * train_samples  # tiles covering each once
    assert recorder.info["steps_per_epoch"] == 4 * train_samples // 4
    assert straight.history["val_mean_iou"].notna().all()

    first = train_model(
        pills_tiled, tiny_params(tmp_path / "b", num_epochs=1, loader_workers=2, **common)
    )
    assert list(first.history["epoch"]) == [1]
    resumed = train_model(
        pills_tiled,
        tiny_params(tmp_path / "b", num_epochs=2, loader_workers=2, **common),
        resume=True,
    )
    pd.testing.assert_frame_equal(resumed.history[MEASURES], straight.history[MEASURES])
    _same_weights(tmp_path / "a" / "models" / "final", tmp_path / "b" / "models" / "final")

    other = train_model(
        pills_tiled, tiny_params(tmp_path / "c", num_epochs=1, seed=7, loader_workers=0, **common)
    )
    assert other.history["loss"].iloc[0] != straight.history["loss"].iloc[0]


def test_tiled_datasets_cannot_be_held_in_memory(pills_tiled: Path, tmp_path: Path) -> None:
    with pytest.raises(
        ParamsError, match="data_loading is memory, but the dataset was preprocessed in tiled mode"
    ):
        train_model(pills_tiled, tiny_params(tmp_path, data_loading="memory"))
    assert not (tmp_path / "models").exists()
