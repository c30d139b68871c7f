"""Training end to end on the tiny pill data (CPU): files, falling loss, resume, determinism."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from helpers.training import TINY_MODEL, Recorder, tiny_params

from segcore.common.constants import BUNDLE_CONFIG, BUNDLE_WEIGHTS
from segcore.common.errors import ParamsError
from segcore.data.dldataset import DLDataset
from segcore.model.bundle import load_bundle
from segcore.model.factory import create_model
from segcore.train.checkpoint import CHECKPOINT_FILE
from segcore.train.loop import train_model


def _weights(bundle: Path) -> dict[str, torch.Tensor]:
    return load_bundle(bundle)[0].state_dict()


def test_training_writes_bundles_history_checkpoint_and_the_loss_falls(
    pills_preprocessed: Path, tmp_path: Path
) -> None:
    params = tiny_params(
        tmp_path,
        num_epochs=6,
        serialization_strategies=["best", "final", "current", "epochs"],
        serialization_epochs=[2],
    )
    recorder = Recorder()
    result = train_model(pills_preprocessed, params, callbacks=[recorder])

    models = tmp_path / "models"
    assert sorted(p.name for p in models.iterdir()) == sorted(
        ["best", "final", "current", "epoch_002", CHECKPOINT_FILE]
    )
    for name in ("best", "final", "current", "epoch_002"):
        assert sorted(p.name for p in (models / name).iterdir()) == [BUNDLE_CONFIG, BUNDLE_WEIGHTS]
        assert result.bundles[name] == models / name
    history = pd.read_csv(tmp_path / "reports" / "train_history.csv")
    assert list(history["epoch"]) == [1, 2, 3, 4, 5, 6]
    for column in ("loss", "learning_rate", "seconds", "val_mean_iou", "val_iou_crack"):
        assert column in history and history[column].notna().all(), column
    assert history["loss"].iloc[-1] < 0.7 * history["loss"].iloc[0]
    pd.testing.assert_frame_equal(history, result.history, check_exact=False, rtol=1e-5)

    best_epoch = int(history["val_mean_iou"].idxmax()) + 1
    assert result.best_epoch == best_epoch
    assert result.best_value == pytest.approx(history["val_mean_iou"].max(), rel=1e-5)
    _, config = load_bundle(models / "best")
    assert config.class_names == ["good", "contamination", "crack"]
    assert config.training_summary["epoch"] == best_epoch
    assert config.preprocess_param == DLDataset.load(pills_preprocessed).preprocess_param
    assert config.input_bit_depth == 8  # the pills are 8-bit PNGs
    final = load_bundle(models / "final")[1]
    assert final.training_summary["measures"]["mean_iou"] == pytest.approx(
        result.final_measures["mean_iou"]
    )

    state = torch.load(models / CHECKPOINT_FILE, weights_only=True)  # no pickled objects
    assert state["epoch"] == 6 and state["params"] == params.model_dump(mode="json")
    assert {"model", "optimizer", "rng", "step", "solver", "history"} <= state.keys()
    assert state["rng"]["data"].dtype == torch.uint8

    assert recorder.info["train_samples"] > 0 and recorder.info["model"] == "compact"
    assert [e for e, _ in recorder.epochs] == [1, 2, 3, 4, 5, 6]
    assert recorder.epochs[-1][1]["loss"] == pytest.approx(history["loss"].iloc[-1], rel=1e-5)
    assert recorder.result is result


def test_same_seed_same_metrics_and_resume_gives_the_uninterrupted_weights(
    pills_preprocessed: Path, tmp_path: Path
) -> None:
    straight = train_model(pills_preprocessed, tiny_params(tmp_path / "a"))
    again = train_model(pills_preprocessed, tiny_params(tmp_path / "b"))
    measures = [c for c in straight.history if c.startswith("val_") or c == "loss"]
    pd.testing.assert_frame_equal(straight.history[measures], again.history[measures])

    interrupted = tiny_params(tmp_path / "c", num_epochs=2)
    first = train_model(pills_preprocessed, interrupted)
    assert list(first.history["epoch"]) == [1, 2]
    resumed = train_model(
        pills_preprocessed, tiny_params(tmp_path / "c", num_epochs=3), resume=True
    )
    assert list(resumed.history["epoch"]) == [1, 2, 3]
    pd.testing.assert_frame_equal(resumed.history[measures], straight.history[measures])
    expected = _weights(tmp_path / "a" / "models" / "final")
    got = _weights(tmp_path / "c" / "models" / "final")
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
    history = pd.read_csv(tmp_path / "c" / "reports" / "train_history.csv")
    assert list(history["epoch"]) == [1, 2, 3]


def test_resume_refuses_other_params_and_finished_runs(
    pills_preprocessed: Path, tmp_path: Path
) -> None:
    train_model(pills_preprocessed, tiny_params(tmp_path, num_epochs=1))
    with pytest.raises(ParamsError) as err:
        train_model(
            pills_preprocessed,
            tiny_params(tmp_path, num_epochs=1, learning_rate=0.5),
            resume=True,
        )
    text = str(err.value)
    assert "train.learning_rate is 0.5 but the checkpoint was trained with 0.01" in text
    assert "already trained 1 of num_epochs 1; raise --epochs" in text
    with pytest.raises(Exception, match="no checkpoint to resume from"):
        train_model(pills_preprocessed, tiny_params(tmp_path / "other"), resume=True)


def test_fractional_evaluation_interval_and_sgd_with_change_strategy(
    pills_preprocessed: Path, tmp_path: Path
) -> None:
    params = tiny_params(
        tmp_path,
        num_epochs=2,
        solver_type="sgd",
        momentum=0.9,
        evaluation_interval_epochs=0.5,
        change_strategies=[{"model_param": "learning_rate", "epochs": [1], "values": [0.001]}],
        augmentation={"augmentation_percentage": 0},
    )
    result = train_model(pills_preprocessed, params)
    assert list(result.history["learning_rate"]) == [0.01, 0.001]
    assert result.history["val_mean_iou"].notna().all()


def test_a_fractional_interval_evaluates_within_the_epoch(
    pills_preprocessed: Path, tmp_path: Path
) -> None:
    """The tiny train split makes 3 updates per epoch: every 0.5 epochs is after update 2
    (epoch 2/3), 3 (1), 5 (5/3) and 6 (2); whole epochs evaluate at 1 and 2 only."""
    quick = {"num_epochs": 2, "augmentation": {"augmentation_percentage": 0}}
    seen = {}
    for interval in (0.5, 1.0, 0.25):
        recorder = Recorder()
        params = tiny_params(tmp_path / str(interval), evaluation_interval_epochs=interval, **quick)
        result = train_model(pills_preprocessed, params, callbacks=[recorder])
        seen[interval] = [round(e, 6) for e, _ in recorder.evaluations]
        assert result.best_epoch in [e for e, _ in recorder.evaluations]
    assert recorder.info["steps_per_epoch"] == 3
    assert seen[0.5] == [round(2 / 3, 6), 1.0, round(5 / 3, 6), 2.0]
    assert seen[1.0] == [1.0, 2.0]
    assert seen[0.25] == [round(k / 3, 6) for k in range(1, 7)]


def test_gradient_accumulation_equals_one_larger_batch(
    pills_preprocessed: Path, tmp_path: Path
) -> None:
    """batch 2 x multiplier 2 and batch 4 see the same samples per update (same shuffle);
    with group norm the batch split changes nothing, so the weights after the updates agree."""
    common = {
        "num_epochs": 1,
        "solver_type": "sgd",
        "momentum": 0.9,
        "learning_rate": 0.05,
        "model_kwargs": TINY_MODEL | {"norm": "group"},
        "augmentation": {"augmentation_percentage": 0},
        "change_strategies": [],
        "serialization_strategies": ["final"],
    }
    runs = {}
    for name, batch, multiplier in (("big", 4, 1), ("accumulated", 2, 2)):
        params = tiny_params(
            tmp_path / name, batch_size=batch, batch_size_multiplier=multiplier, **common
        )
        train_model(pills_preprocessed, params)
        runs[name] = _weights(tmp_path / name / "models" / "final")
    torch.manual_seed(tiny_params(tmp_path).seed)  # the initial weights, as training makes them
    initial = create_model("compact", 3, 3, **common["model_kwargs"]).state_dict()
    moved = 0.0
    for key, big in runs["big"].items():
        torch.testing.assert_close(runs["accumulated"][key], big, rtol=1e-4, atol=1e-5)
        moved = max(moved, (big - initial[key]).abs().max().item())
    assert moved > 1e-2  # the updates changed the weights far beyond the tolerance
