"""The Prefect flows over segcore's stages: the pipeline, ``make run``, the schedule and
deployments to work pools.

This folder installs as ``segcore.flows`` (``python -m segcore.flows.run`` in a project that
``segcore init`` wrote); in this repository it also runs as ``python -m flows.run``. The
modules import each other relatively, so the same files work under both names.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def tool(name: str) -> str:
    """The command ``name`` (``dvc``, ``prefect``) beside this Python, as a user types it:
    relative to the working folder when it lies inside it (``.venv/bin/dvc``); where the
    environment has no such script, ``<python> -m <name>``."""
    path = Path(sys.executable).parent / name
    if not path.is_file():
        return f"{sys.executable} -m {name}"
    try:
        return path.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return os.fspath(path)
