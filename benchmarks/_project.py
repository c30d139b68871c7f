"""A temporary segcore project folder for the benchmarks that drive segcore as a user does.

:class:`Project` runs ``segcore ARGS --params PARAMS`` through ``python -m segcore.cli`` of
this checkout (its root goes first on ``PYTHONPATH``), with the given torch thread count,
no progress bars and no inherited ``MLFLOW_TRACKING_URI`` (the project's own store is
used), appending everything it prints to the project's ``segcore.log``. A failed command
raises :class:`BenchError` with the end of that log.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class BenchError(Exception):
    """Bad input or a failed stage; the message names the path (or the log) and the fix."""


class Project:
    """A project folder (created when missing) whose ``segcore`` runs are logged."""

    def __init__(self, root: Path, threads: int) -> None:
        self.root, self.log = root, root / "segcore.log"
        root.mkdir(parents=True, exist_ok=True)
        self.env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
        self.env.update(SEGCORE_PROGRESS="0", PYTHONPATH=path, OMP_NUM_THREADS=str(threads))
        self.env["MKL_NUM_THREADS"] = str(threads)

    def run(self, *args: str, params: str = "params.yaml") -> float:
        """``segcore ARGS --params PARAMS`` in the project; returns its wall seconds."""
        cmd = [sys.executable, "-m", "segcore.cli", *args, "--params", params]
        print(f"  [{self.root.name}] segcore {' '.join(args)} ...", end=" ", flush=True)
        start = time.perf_counter()
        with self.log.open("a") as log:
            log.write(f"\n$ {' '.join(cmd)}\n")
            log.flush()
            proc = subprocess.run(cmd, cwd=self.root, env=self.env, stdout=log, stderr=log)
        seconds = time.perf_counter() - start
        print(f"{seconds:.1f} s", flush=True)
        if proc.returncode != 0:
            tail = "\n".join(self.log.read_text().splitlines()[-25:])
            raise BenchError(
                f"`segcore {args[0]}` failed (exit code {proc.returncode}); the end of "
                f"{self.log}:\n{tail}"
            )
        return seconds
