"""Lineage of a run: the git commit and the DVC hashes of the data it saw.

Read from git and from ``dvc.lock`` (what DVC recorded for each stage's deps and outs),
never from DVC's Python API, so it works while ``dvc repro`` or the flow holds DVC's lock.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path, PurePosixPath

import yaml

from segcore.params import Params


def _git(root: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def _lock_hashes(root: Path) -> dict[str, str]:
    """``{path: md5}`` of every dep and out recorded in ``dvc.lock``."""
    lock = root / "dvc.lock"
    if not lock.is_file():
        return {}
    data = yaml.safe_load(lock.read_text(encoding="utf-8")) or {}
    hashes: dict[str, str] = {}
    for stage in (data.get("stages") or {}).values():
        for entry in [*(stage.get("deps") or []), *(stage.get("outs") or [])]:
            if "path" in entry and "md5" in entry:
                hashes[PurePosixPath(entry["path"]).as_posix()] = str(entry["md5"])
    return hashes


def _relative(path: str, root: Path) -> str:
    p = Path(path)
    if p.is_absolute():
        with contextlib.suppress(ValueError):
            p = p.resolve().relative_to(root)
    return PurePosixPath(os.path.normpath(p.as_posix())).as_posix()


def lineage_tags(params: Params, root: str | os.PathLike[str]) -> dict[str, str]:
    """Where the data and code of a run came from.

    ``mlflow.source.git.commit`` and ``git.dirty`` (tracked files changed since the commit),
    and the DVC hashes recorded in ``dvc.lock`` of the raw images and labels, the split
    dataset table and the preprocessed data (``dvc.<name>.md5``); a tag is left out when
    its source is unavailable (no git, no ``dvc.lock`` entry yet).
    """
    root_path = Path(root).resolve()
    tags: dict[str, str] = {}
    commit = _git(root_path, "rev-parse", "HEAD")
    if commit:
        tags["mlflow.source.git.commit"] = commit
        status = _git(root_path, "status", "--porcelain", "--untracked-files=no")
        if status is not None:
            tags["git.dirty"] = str(bool(status)).lower()
    hashes = _lock_hashes(root_path)
    for name, path in (
        ("raw_images", params.dataset.image_dir),
        ("raw_labels", params.dataset.segmentation_dir),
        ("dataset", params.split.out),
        ("preprocessed", params.preprocess.out_dir),
    ):
        md5 = hashes.get(_relative(path, root_path))
        if md5:
            tags[f"dvc.{name}.md5"] = md5
    return tags
