"""Training on tiles streamed from disk (CPU, tiny): the same result as in-memory training,
exact resume and determinism in tiled mode, the choice of the data path, bad input."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from helpers.training import TORCHRUN, Recorder, assert_trained_alike, tiny_params, torchrun_train

from segcore.common.errors import ParamsError
from segcore.data.dldataset import DLDataset
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


@pytest.mark.skipif(not TORCHRUN.is_file(), reason="torchrun is not installed beside python")
def test_two_processes_stream_the_tiles_one_process_reads(
    pills_tiled: Path, tmp_path: Path
) -> None:
    """Under torchrun each rank reads its own half of every global batch of tiles; together
    they train what one process trains on the whole batch (group norm, so the split of the
    batch changes nothing but the order of float sums: ~3e-7 after the 7 updates here)."""
    common = {
        "model_kwargs": {"base_channels": 8, "depth": 2, "norm": "group"},
        "solver_type": "sgd",
        "learning_rate": 0.002,
        "momentum": 0.9,
        "num_epochs": 1,
        "loader_workers": 1,
    }
    single = train_model(pills_tiled, tiny_params(tmp_path / "one", batch_size=8, **common))
    two = tmp_path / "two"
    train = tiny_params(two, batch_size=4, **common).model_dump(mode="json")
    (tmp_path / "params.yaml").write_text(
        yaml.safe_dump({"train": train | {"dataset": str(pills_tiled)}})
    )
    torchrun_train(tmp_path / "params.yaml", tmp_path)
    history = two / "reports" / "train_history.csv"
    assert_trained_alike(history, two / "models", single, tmp_path / "one" / "models")


def test_images_of_other_sizes_and_smaller_than_the_tile_train(tmp_path: Path) -> None:
    """Tiled mode takes images of any size; a tile larger than an image is padded (label
    ignored), so a dataset of 20 x 12 to 40 x 28 images trains on 24 x 24 tiles."""
    from segcore.common.images import write_image_atomic
    from segcore.params import PreprocessParams
    from segcore.preprocess.stage import preprocess_dataset

    rng = np.random.default_rng(0)
    rows = []
    for i, (h, w) in enumerate([(12, 20), (28, 40), (16, 16), (20, 36), (24, 24), (30, 18)]):
        label = np.zeros((h, w), np.uint8)
        label[h // 3 : h // 3 + 2, 2 : w - 2] = 1 + i % 2
        write_image_atomic(
            tmp_path / "raw" / "images" / f"{i}.png",
            rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
        )
        write_image_atomic(tmp_path / "raw" / "labels" / f"{i}.png", label)
        split = "validation" if i == 4 else "train"
        rows.append(
            {
                "image_id": i,
                "image_file_name": f"{i}.png",
                "segmentation_file_name": f"{i}.png",
                "split": split,
            }
        )
    ds = DLDataset(
        pd.DataFrame(rows),
        tmp_path / "raw" / "images",
        tmp_path / "raw" / "labels",
        ["good", "dent", "scratch"],
        [0, 1, 2],
    )
    param = PreprocessParams(mode="tiled", image_width=24, image_height=24)
    preprocess_dataset(ds, param, tmp_path / "pre", workers=1)
    recorder = Recorder()
    result = train_model(
        tmp_path / "pre" / "dataset.parquet",
        tiny_params(tmp_path, num_epochs=2, batch_size=2, loader_workers=1),
        callbacks=[recorder],
    )
    # tiles per epoch: 1 + 2 x 2 + 1 + 1 x 2 + 2 x 1 (the 24 x 24 sample validates)
    assert recorder.info["units_per_epoch"] == 10 and recorder.info["input_size"] == [3, 24, 24]
    assert result.history["loss"].notna().all() and result.history["val_mean_iou"].notna().all()


def test_streaming_reports_a_train_sample_without_weight_image(
    pills_tiled: Path, tmp_path: Path
) -> None:
    from segcore.common.errors import DatasetError
    from segcore.data.samples import load_sample, save_sample

    shutil.copytree(pills_tiled.parent, tmp_path / "pre")
    ds = DLDataset.load(tmp_path / "pre" / "dataset.parquet")
    name = ds.samples.loc[ds.samples["split"] == "train", "sample_file_name"].iloc[0]
    broken = Path(ds.sample_dir) / name
    sample = load_sample(broken)
    save_sample(broken, sample["image"], sample["label"])  # without the weight image
    with pytest.raises(DatasetError, match=f"1 train samples have no weight image \\({broken}\\)"):
        train_model(ds, tiny_params(tmp_path))
    assert not (tmp_path / "models").exists()
