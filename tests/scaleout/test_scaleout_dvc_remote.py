"""A DVC remote: ``dvc push`` from one repository, ``dvc pull`` into a fresh clone.

The remote is a plain directory (``dvc remote add -d``), as a shared drive or NFS mount
would be; S3, GCS or SSH remotes differ only in the URL. The clone has its own empty cache,
so everything it gets comes through the remote.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.pipeline_repo import dvc, git, make_repo, set_params

pytestmark = pytest.mark.slow

RESTORED = [
    "data/raw/pills",
    "data/dataset/dataset.parquet",
    "data/dataset/split.parquet",
    "data/preprocessed",
    "models",
    "reports/train_history.csv",
]
"""Outputs of the stages up to train: raw data, dataset, preprocessed samples, models."""


def _files(root: Path, rel: str) -> dict[str, bytes]:
    path = root / rel
    if path.is_file():
        return {rel: path.read_bytes()}
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def test_push_then_pull_into_a_fresh_clone_restores_data_samples_and_models(
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path / "repo")
    set_params(repo / "params.yaml", {("train", "num_epochs"): 1})
    remote = tmp_path / "remote"
    dvc(repo, "remote", "add", "-d", "shared", str(remote))
    dvc(repo, "repro", "train", env={"MLFLOW_TRACKING_URI": ""})  # the repo's sqlite store
    assert "Cache and remote 'shared' are in sync" not in dvc(repo, "status", "--cloud")
    dvc(repo, "push")
    assert "Cache and remote 'shared' are in sync" in dvc(repo, "status", "--cloud")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "trained")

    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(repo), str(clone))
    assert not (clone / "models").exists() and not (clone / "data" / "preprocessed").exists()
    dvc(clone, "pull", "--with-deps", "train")  # the trained model and all it came from

    for rel in RESTORED:
        ours, theirs = _files(repo, rel), _files(clone, rel)
        assert ours, rel
        assert theirs.keys() == ours.keys(), rel
        assert theirs == ours, rel
    samples = list((clone / "data/preprocessed/samples").iterdir())
    assert len(samples) == 12
    assert (clone / "models/best/model.safetensors").is_file()
    assert not (clone / ".dvc" / "cache").samefile(repo / ".dvc" / "cache")
    assert "up to date" in dvc(clone, "status", "--with-deps", "train")
