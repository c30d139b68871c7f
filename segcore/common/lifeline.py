"""Processes that die with their parent: worker pools leave nothing behind when killed.

:func:`die_with_parent` asks Linux to send this process SIGKILL when its parent dies
(``prctl(PR_SET_PDEATHSIG)``, through ctypes), and exits at once if the parent is already
gone. Worker processes call it first thing (:class:`segcore.common.parallel.WorkerPool`'s
initializer); the ``forkserver`` that forks them imports :mod:`segcore.common.forkserver_guard`,
which calls it too. So a SIGKILL of the main process takes the forkserver with it, the
forkserver takes the workers, and the resource tracker, whose pipe they all held, then
ends on its own. Elsewhere than Linux nothing is set (the workers still stop once their
job queue breaks).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal

PARENT_ENV = "SEGCORE_POOL_PARENT"
"""The pid of the process that started a worker pool, inherited by its forkserver."""

_PR_SET_PDEATHSIG = 1


def die_with_parent(expected_parent: int | None = None) -> bool:
    """SIGKILL this process when its parent dies; exit now if ``expected_parent`` (or,
    when ``None``, any parent but init) is already gone.

    Returns:
        whether the kernel accepted the request (``False`` off Linux).
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        ok = libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False
    parent = os.getppid()
    if parent == 1 or (expected_parent is not None and parent != expected_parent):
        os._exit(1)  # the parent died before the request was in place
    return ok


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
