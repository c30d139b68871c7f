"""The train stage's run file, ``<train.out_dir>/mlflow_run.json``.

``run_id`` / ``experiment_id`` name the MLflow run that owns the checkpoint beside it:
a training names its run there right after its first checkpoint, so a kill in the
first seconds leaves the previous run's id beside the previous checkpoint and ``--resume``
continues the right run. ``started_run_id`` names the newest run started (written first
thing), so that a run killed before its first checkpoint is still found and closed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segcore.tracking.store import is_store_unreachable

if TYPE_CHECKING:
    from mlflow import MlflowClient


def read_run_file(path: Path) -> dict[str, Any] | None:
    """The run file's content, or ``None`` when missing or not a JSON object."""
    try:
        ref = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return ref if isinstance(ref, dict) else None


def close_abandoned(
    client: MlflowClient, run_file: str | os.PathLike[str], keep: str | None = None
) -> list[str]:
    """Mark KILLED the runs ``run_file`` names (``run_id``, ``started_run_id``) that are
    still RUNNING: their process was killed (SIGKILL, SIGTERM) before it could close them.

    Returns:
        the runs marked.
    """
    from mlflow.exceptions import MlflowException

    ref = read_run_file(Path(run_file)) or {}
    closed = []
    for key in ("run_id", "started_run_id"):
        rid = ref.get(key)
        if not isinstance(rid, str) or rid in (keep, *closed):
            continue
        try:
            if client.get_run(rid).info.status == "RUNNING":
                client.set_terminated(rid, "KILLED")
                closed.append(rid)
        except MlflowException as err:
            if is_store_unreachable(err):
                raise
    return closed
