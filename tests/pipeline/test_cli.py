"""The command line: help texts, and synth -> dataset -> split -> stats end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import typer
from helpers.cli import run_segcore
from typer.testing import CliRunner

from segcore.cli import app
from segcore.data.dldataset import DLDataset

COMMANDS = sorted(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


def test_top_level_help_lists_the_stages() -> None:
    result = run_segcore("--help")
    assert result.returncode == 0, result.stderr
    assert "Stages in order" in result.stdout
    for stage in ("synth", "dataset", "split", "stats"):
        assert stage in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str) -> None:
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert f"Usage: segcore {command}" in " ".join(result.output.split())
    assert typer.main.get_command(app).commands[command].help  # type: ignore[attr-defined]


def test_data_stages_end_to_end(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text(
        "synth: {num_images: 12, width: 64, height: 64, seed: 3}\n"
    )
    synth = run_segcore("synth", cwd=tmp_path)
    assert synth.returncode == 0, synth.stderr
    assert "Synthetic pills: 12 images of 64x64" in synth.stdout
    assert len(list((tmp_path / "data/raw/pills/labels").glob("*.png"))) == 12

    dataset = run_segcore("dataset", cwd=tmp_path)
    assert dataset.returncode == 0, dataset.stderr
    assert "Dataset: 12 samples, 3 classes" in dataset.stdout
    assert len(DLDataset.load(tmp_path / "data/dataset/dataset.parquet")) == 12

    split = run_segcore("split", cwd=tmp_path)
    assert split.returncode == 0, split.stderr
    ds = DLDataset.load(tmp_path / "data/dataset/split.parquet")
    assert ds.has_split and ds.image_dir == (tmp_path / "data/raw/pills/images").resolve()

    stats = run_segcore("stats", cwd=tmp_path)
    assert stats.returncode == 0, stats.stderr
    assert "contamination" in stats.stdout and "validation" in stats.stdout
    table = pd.read_csv(tmp_path / "reports/dataset_stats.csv")
    assert table["class_name"].tolist() == ["good", "contamination", "crack"]
    assert table["images"].tolist()[0] == 12
    assert table["pixels"].sum() == 12 * 64 * 64
    summary = json.loads((tmp_path / "reports/dataset_stats.json").read_text())
    assert summary["num_samples"] == 12 and sum(summary["split_counts"].values()) == 12
    assert summary["split_counts"] == ds.samples["split"].value_counts().to_dict()

    (tmp_path / "again.yaml").write_text(
        "split: {dataset: data/dataset/split.parquet, out: data/dataset/again.parquet, "
        "training_percent: 10, validation_percent: 10}\n"
    )
    kept = run_segcore("split", "--params", "again.yaml", cwd=tmp_path)
    assert kept.returncode == 0, kept.stderr
    assert "already has a split: kept it" in " ".join(kept.stdout.split())
    again = DLDataset.load(tmp_path / "data/dataset/again.parquet")
    assert again.samples["split"].tolist() == ds.samples["split"].tolist()


def test_invalid_params_exit_2_with_every_key_and_write_nothing(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text(
        "dataset:\n  class_names: [a, a]\n  class_ids: [0, 0]\n  colour: red\n"
    )
    result = run_segcore("dataset", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    stderr = " ".join(result.stderr.split())
    assert "params.yaml is invalid" in stderr
    assert "dataset.class_ids: has duplicates [0]" in stderr
    assert "dataset.class_names: has duplicates ['a']" in stderr
    assert "dataset.colour: unknown key" in stderr
    assert not (tmp_path / "data").exists()
