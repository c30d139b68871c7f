"""Two CPU processes under torchrun (gloo) train what one process trains on the same batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
import yaml

from segcore.model.bundle import load_bundle
from segcore.params import TrainParams
from segcore.train.checkpoint import CHECKPOINT_FILE
from segcore.train.loop import train_model

TORCHRUN = Path(sys.executable).parent / "torchrun"


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
    done = subprocess.run(
        [
            str(TORCHRUN),
            "--nproc_per_node=2",
            "--standalone",
            "-m",
            "segcore.cli",
            "train",
            "-p",
            str(params_file),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,  # the run's MLflow store goes here
        env={**os.environ, "SEGCORE_PROGRESS": "0", "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("Train: 1 epochs") == 1  # rank 0 alone reports and writes
    written = {p.name for p in (ddp_dir / "models").iterdir()}
    assert {"best", "final", CHECKPOINT_FILE} <= written
    assert not [name for name in written if name.startswith(".")]  # no half-written leftovers

    history = pd.read_csv(ddp_dir / "history.csv")
    assert history["loss"].iloc[0] == pytest.approx(single.history["loss"].iloc[0], rel=1e-4)
    assert history["val_mean_iou"].iloc[0] == pytest.approx(
        single.history["val_mean_iou"].iloc[0], abs=1e-3
    )
    # Float sums in another order (per-rank losses, gradient averaging) leave ~1e-5
    # differences after three steps; a wrong shard or augmentation would leave ~1e-2.
    one = load_bundle(tmp_path / "one" / "models" / "final")[0].state_dict()
    two = load_bundle(ddp_dir / "models" / "final")[0].state_dict()
    for key, value in one.items():
        torch.testing.assert_close(two[key], value, rtol=1e-3, atol=1e-4, msg=key)
