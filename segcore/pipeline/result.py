"""What every stage returns, and how stages read the paths of ``params.yaml``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class StageResult(Generic[T]):
    """What a stage did: one line for logs and terminals, and the stage function's result."""

    summary: str
    value: T


def stage_path(workdir: str | os.PathLike[str], path: str | os.PathLike[str]) -> Path:
    """``path`` from params.yaml, relative to ``workdir`` unless absolute."""
    return Path(workdir) / path
