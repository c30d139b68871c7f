"""Dataset statistics: known counts, unsplit datasets, the written files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from segcore.common.errors import ParamsError
from segcore.data.dldataset import DLDataset
from segcore.data.stats import dataset_stats, print_stats, write_stats


def _dataset(split: list[str | None] | None = None) -> DLDataset:
    counts = np.array([[90, 10, 0], [100, 0, 0], [80, 0, 20]])
    samples = pd.DataFrame({f"pixels_class_{c}": counts[:, k] for k, c in enumerate([0, 1, 5])})
    if split is not None:
        samples["split"] = split
    return DLDataset(samples, Path("i"), Path("l"), ["good", "speck", "crack"], [0, 1, 5])


def test_known_counts() -> None:
    stats = dataset_stats(_dataset(["train", "test", "train"]))
    assert stats.num_samples == 3 and stats.num_pixels == 300
    assert [c.pixels for c in stats.classes] == [270, 10, 20]
    assert [c.images for c in stats.classes] == [3, 1, 1]
    assert [round(c.pixel_percent, 3) for c in stats.classes] == [90.0, 3.333, 6.667]
    assert stats.classes[2].class_id == 5 and stats.classes[2].class_name == "crack"
    assert stats.classes[0].images_per_split == {"train": 2, "validation": 0, "test": 1}
    assert stats.split_counts == {"train": 2, "validation": 0, "test": 1}


def test_unsplit_and_partly_split_datasets() -> None:
    console = Console(record=True, width=120)
    stats = dataset_stats(_dataset())
    assert stats.split_counts == {} and stats.classes[1].images_per_split == {}
    print_stats(stats, console)
    assert "No split yet" in console.export_text()
    partly = dataset_stats(_dataset(["train", None, "validation"]))
    assert partly.split_counts == {"train": 1, "validation": 1, "test": 0, "unassigned": 1}


def test_written_files(tmp_path: Path) -> None:
    stats = dataset_stats(_dataset(["train", "test", "train"]))
    csv_path, json_path = write_stats(stats, tmp_path / "reports" / "stats.csv")
    assert json_path == tmp_path / "reports" / "stats.json"
    table = pd.read_csv(csv_path)
    assert table.columns.tolist() == [
        "class_id",
        "class_name",
        "pixels",
        "pixel_percent",
        "images",
        "images_train",
        "images_validation",
        "images_test",
    ]
    assert table["pixels"].tolist() == [270, 10, 20]
    data = json.loads(json_path.read_text())
    assert data["split_counts"]["train"] == 2 and data["classes"][1]["class_name"] == "speck"
    with pytest.raises(ParamsError, match=r"must end in \.csv"):
        write_stats(stats, tmp_path / "stats.json")
