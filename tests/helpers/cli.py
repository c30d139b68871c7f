"""The real ``segcore`` command line, run the way a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_segcore(
    *args: str,
    cwd: Path | None = None,
    timeout: float = 300,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """Run the real ``segcore`` command line in a subprocess (exit code, stdout, stderr);
    ``env``: variables to set on top of this process's."""
    return subprocess.run(
        [sys.executable, "-m", "segcore.cli", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "SEGCORE_PROGRESS": "0", "COLUMNS": "200", **(env or {})},
    )
