"""Launching training on several processes of this machine with ``torchrun``.

With ``train.nproc > 1`` the train stage starts ``nproc`` ranks with :func:`launch`; each
rank runs ``segcore train`` (the same stage), joins the process group
(:mod:`segcore.train.distributed`) and trains its share. Rank 0 alone writes files,
prints and tracks: it logs into the MLflow run that the launching process opened, which
:data:`RESUME_TRACKING_ENV` tells it to continue instead of starting one.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from segcore.common.errors import SegcoreError
from segcore.params import Params, dump_params

RESUME_TRACKING_ENV = "SEGCORE_RESUME_TRACKING"
"""Set for the ranks :func:`launch` starts to the launcher's MLflow run id: rank 0
continues that run (the run file names it only after the first checkpoint)."""


def torchrun_rank() -> int | None:
    """This process's rank when ``torchrun`` started it (``RANK``), else ``None``."""
    rank = os.environ.get("RANK")
    return None if rank is None else int(rank)


def is_main_process() -> bool:
    """The process that prints, writes files and tracks: rank 0, or the only one."""
    return torchrun_rank() in (None, 0)


def launcher_run_id() -> str | None:
    """Rank 0 of ranks started by :func:`launch`: the launcher's run id, to log into."""
    run_id = os.environ.get(RESUME_TRACKING_ENV) or None
    return run_id if torchrun_rank() == 0 else None


def launch(nproc: int, workdir: Path, resume: bool, params: Params, run_id: str) -> None:
    """``torchrun --standalone --nproc_per_node=N -m segcore.cli train`` in ``workdir`` (one
    machine, a free rendezvous port).

    The ranks read ``params`` (command-line overrides included) from a temporary parameter
    file, not the project's ``params.yaml``, so they train what the launcher was asked to.

    Raises:
        SegcoreError: a rank failed (its output is above).
    """
    fd, name = tempfile.mkstemp(prefix=".segcore-ranks-", suffix=".yaml", dir=workdir)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(dump_params(params))
    try:
        _run_ranks(nproc, workdir, resume, Path(name), run_id)
    finally:
        Path(name).unlink(missing_ok=True)


def _run_ranks(nproc: int, workdir: Path, resume: bool, params_file: Path, run_id: str) -> None:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "segcore.cli",
        "train",
        "--params",
        str(params_file),
        *(["--resume"] if resume else []),
    ]
    env = {**os.environ, RESUME_TRACKING_ENV: run_id}
    proc = subprocess.run(cmd, cwd=workdir, env=env, check=False)
    if proc.returncode != 0:
        raise SegcoreError(
            f"distributed training ({' '.join(cmd[2:])}) failed with exit code "
            f"{proc.returncode}; see its output above, or set train.nproc to 1"
        )
