"""Two CPU processes under torchrun (gloo) train what one process trains on the same batch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers.training import TORCHRUN, assert_trained_alike, torchrun_train

from segcore.params import TrainParams
from segcore.train.checkpoint import CHECKPOINT_FILE
from segcore.train.loop import train_model


def _params(tmp_path: Path, batch_size: int) -> dict[str, Any]:
    return {
        "out_dir": str(tmp_path / "models"),
        "history": str(tmp_path / "history.csv"),
        # Group norm: batch statistics would differ between 2 x 2 and 1 x 4 samples.
        "model_kwargs": {"base_channels": 8, "depth": 2, "norm": "group"},
        "batch_size": batch_size,
        "batch_size_multiplier": 1,
        "solver_type": "sgd",
        "learning_rate": 0.02,
        "momentum": 0.9,
        "num_epochs": 1,
        "evaluation_interval_epochs": 0.5,
        "device": "cpu",
        "num_threads": 1,
    }


@pytest.mark.skipif(not TORCHRUN.is_file(), reason="torchrun is not installed beside python")
def test_two_processes_match_one_process_on_the_same_global_batch(
    pills_preprocessed: Path, tmp_path: Path
) -> None:
    single = train_model(pills_preprocessed, TrainParams(**_params(tmp_path / "one", 4)))

    ddp_dir = tmp_path / "two"
    params_file = tmp_path / "params.yaml"
    train = _params(ddp_dir, 2) | {"dataset": str(pills_preprocessed)}
    params_file.write_text(yaml.safe_dump({"train": train}))
    done = torchrun_train(params_file, tmp_path)
    assert done.stdout.count("Train: 1 epochs") == 1  # rank 0 alone reports and writes
    written = {p.name for p in (ddp_dir / "models").iterdir()}
    assert {"best", "final", CHECKPOINT_FILE} <= written
    assert not [name for name in written if name.startswith(".")]  # no half-written leftovers

    # Float sums in another order (per-rank losses, gradient averaging) leave ~1e-5
    # differences after three steps; a wrong shard or augmentation would leave ~1e-2.
    assert_trained_alike(
        ddp_dir / "history.csv", ddp_dir / "models", single, tmp_path / "one" / "models"
    )
