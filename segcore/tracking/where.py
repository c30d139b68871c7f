"""Where the MLflow store is: the repository root and the tracking URI."""

from __future__ import annotations

import os
from pathlib import Path

from segcore.params import TrackingParams

DB_FILE = "mlflow.db"
"""Default store, in the repository root."""
ARTIFACTS_DIR = "mlartifacts"
"""Artifact folder beside a sqlite store (new experiments only)."""


def find_repo_root(start: str | os.PathLike[str] = ".") -> Path:
    """The nearest folder at or above ``start`` holding ``.dvc`` or ``.git`` (else ``start``)."""
    start_path = Path(start).resolve()
    for folder in (start_path, *start_path.parents):
        if (folder / ".dvc").is_dir() or (folder / ".git").exists():
            return folder
    return start_path


def resolve_tracking_uri(tracking: TrackingParams, root: str | os.PathLike[str]) -> str:
    """The tracking URI: ``MLFLOW_TRACKING_URI``, else ``tracking.tracking_uri``, else
    ``sqlite:///<root>/mlflow.db``; relative sqlite paths are made absolute against ``root``."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    uri = tracking.tracking_uri or f"sqlite:///{DB_FILE}"
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + (Path(root).resolve() / uri[len(prefix) :]).as_posix()
    return uri


def artifact_location(uri: str) -> str | None:
    """Artifacts of a sqlite store go beside the database; servers choose their own."""
    prefix = "sqlite:///"
    if uri.startswith(prefix):
        return (Path(uri[len(prefix) :]).parent / ARTIFACTS_DIR).resolve().as_uri()
    return None
