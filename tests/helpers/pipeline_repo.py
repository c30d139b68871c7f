"""A throw-away repository holding the pipeline, for the tests that run it end to end.

:func:`make_repo` copies this project's ``dvc.yaml``, ``params.yaml`` (made tiny by
:data:`TINY`) and the segcore sources (the stages' deps) into a new git + DVC repository;
the stages themselves run the installed segcore.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]

TINY = {
    ("synth", "num_images"): 12,
    ("synth", "width"): 64,
    ("synth", "height"): 64,
    ("preprocess", "workers"): 1,
    ("preprocess", "param", "image_width"): 32,
    ("preprocess", "param", "image_height"): 32,
    ("train", "num_epochs"): 2,
    ("train", "batch_size"): 4,
    ("train", "num_threads"): 1,
    ("evaluate", "worst_k"): 2,
}
"""params.yaml keys for a pipeline that runs in seconds."""


def set_params(params_file: Path, values: dict[tuple[str, ...], object]) -> None:
    """Set nested keys of a params file, e.g. ``{("train", "num_epochs"): 1}``."""
    params = yaml.safe_load(params_file.read_text())
    for keys, value in values.items():
        node = params
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))


def git(repo: Path, *args: str) -> str:
    """``git *args`` in ``repo`` (with a committer identity); its stdout."""
    cmd = ["git", "-c", "user.email=test@segcore", "-c", "user.name=test", *args]
    return subprocess.run(cmd, cwd=repo, check=True, capture_output=True, text=True).stdout


def dvc_process(
    repo: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``dvc *args`` in ``repo`` with this venv's tools on PATH, whatever its exit code."""
    full = {**os.environ, **(env or {})}
    full["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{full['PATH']}"
    return subprocess.run(
        [sys.executable, "-m", "dvc", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        env=full,
        timeout=600,
        check=False,
    )


def dvc(repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """``dvc *args`` in ``repo``, which must succeed; its stdout."""
    proc = dvc_process(repo, *args, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def make_repo(dest: Path) -> Path:
    """A git + DVC repository with the pipeline, tiny params and the segcore sources."""
    dest.mkdir(parents=True)
    for name in ("dvc.yaml", "params.yaml", ".gitignore", ".dvcignore"):
        shutil.copy2(ROOT / name, dest / name)
    shutil.copytree(
        ROOT / "segcore", dest / "segcore", ignore=shutil.ignore_patterns("__pycache__")
    )
    set_params(dest / "params.yaml", TINY)
    git(dest, "init", "-q")
    dvc(dest, "init", "-q")
    git(dest, "add", "-A")
    git(dest, "commit", "-qm", "tiny pipeline")
    return dest
