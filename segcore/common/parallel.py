"""Worker processes for many small jobs: streaming, bounded, with a progress bar.

Jobs go to the workers in chunks, with only a few chunks in flight at once, and results
come back as soon as a chunk is done. Jobs and results should be small (paths, hashes,
counts): big arrays stay inside the workers, so memory does not grow with the number of
jobs.

Workers are started with ``forkserver`` (``spawn`` where that is missing), never with a
plain ``fork``: forking a process whose OpenCV, OpenMP or Python threads have run can
deadlock the child. They start once per :class:`WorkerPool` and serve every ``map``.

Workers die with the process that started them: a SIGTERM (``timeout``, Docker,
Kubernetes, Prefect cancellation) of that process, when it uses the pool from its main
thread, stops the workers and exits with 143; a SIGKILL takes the forkserver and the
workers down through a parent-death signal (segcore.common.lifeline), and the resource
tracker ends once they are gone.

Stages that accept a :class:`JobMap` can run their jobs elsewhere instead: ``pool.map`` is
one, and a cluster is another (``flows.cluster`` sends :func:`shards` of the jobs as
Prefect tasks to Dask or Ray, each running :func:`run_shard`).
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from types import FrameType, TracebackType
from typing import Any, Protocol, Self, TypeVar

from segcore.common.lifeline import PARENT_ENV, alive, die_with_parent
from segcore.common.progress import make_progress

J = TypeVar("J")
R = TypeVar("R")

CHUNKS_IN_FLIGHT_PER_WORKER = 2
"""Chunks queued per worker: enough to keep every worker busy, few enough to stay small."""

MAX_CHUNK_SIZE = 16
"""Upper bound of jobs per chunk, so the progress bar moves and the load stays balanced."""


def default_workers() -> int:
    """The number of CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def resolve_workers(workers: int) -> int:
    """``workers``, with 0 meaning one per CPU core."""
    if workers < 0:
        raise ValueError(f"workers must be >= 0 (got {workers})")
    return workers or default_workers()


class JobMap(Protocol):
    """Runs ``fn`` on every job, anywhere (worker processes, a cluster), and yields the
    results in any order; ``description`` labels its progress. :meth:`WorkerPool.map` is one.

    ``fn`` is a module-level function or a ``functools.partial`` of one, and jobs and
    results are small and picklable, so they can travel to other processes and machines.
    """

    def __call__(
        self, fn: Callable[[J], R], jobs: Sequence[J], description: str, /
    ) -> Iterable[R]: ...


def shards(jobs: Sequence[J], shard_size: int) -> list[Sequence[J]]:
    """``jobs`` cut into consecutive shards of ``shard_size`` (the last may be shorter)."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1 (got {shard_size})")
    return [jobs[i : i + shard_size] for i in range(0, len(jobs), shard_size)]


def run_shard(
    fn: Callable[[J], R], shard: Sequence[J], initializer: Callable[[], None] | None = None
) -> list[R]:
    """``[fn(job) for job in shard]``, after ``initializer()`` when given: one task's work."""
    if initializer is not None:
        initializer()
    return [fn(job) for job in shard]


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    """SIGTERM in the pool's process: unwind (the pool stops its workers), exit 143."""
    raise SystemExit(128 + signum)


def _worker_start(main_pid: int, initializer: Callable[[], None] | None) -> None:
    """First thing in a worker: die with its parent, and not outlive the pool's process."""
    die_with_parent()
    if not alive(main_pid):
        os._exit(1)
    if initializer is not None:
        initializer()


class WorkerPool:
    """Worker processes (started on first use); ``workers=1`` runs jobs in this process.

    Args:
        workers: worker processes; 0 means one per CPU core.
        initializer: run once in every worker process before its first job.
        in_process: ``False`` sends jobs to worker processes even with one worker (to
            compare like with like); by default one worker, or one job, runs here.

    Use as a context manager; the workers stop when it exits::

        with WorkerPool(4) as pool:
            for result in pool.map(fn, jobs, "Working"):
                ...
    """

    def __init__(
        self,
        workers: int,
        initializer: Callable[[], None] | None = None,
        *,
        in_process: bool | None = None,
    ) -> None:
        self.workers = resolve_workers(workers)
        self._initializer = initializer
        self._in_process = in_process
        self._executor: ProcessPoolExecutor | None = None
        self._previous_sigterm: Any = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._executor is not None:
            interrupted = exc_type is not None and not issubclass(exc_type, Exception)
            if interrupted:  # SIGTERM, Ctrl-C: stop the workers instead of waiting for them
                for process in list(getattr(self._executor, "_processes", {}).values()):
                    process.terminate()
            self._executor.shutdown(wait=not interrupted, cancel_futures=True)
            self._executor = None
        if self._previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self._previous_sigterm)
            self._previous_sigterm = None

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            methods = multiprocessing.get_all_start_methods()
            method = "forkserver" if "forkserver" in methods else "spawn"
            context = multiprocessing.get_context(method)
            os.environ[PARENT_ENV] = str(os.getpid())
            if method == "forkserver":
                context.set_forkserver_preload(["__main__", "segcore.common.forkserver_guard"])
            if threading.current_thread() is threading.main_thread():
                self._previous_sigterm = signal.signal(signal.SIGTERM, _exit_on_sigterm)
            self._executor = ProcessPoolExecutor(
                self.workers,
                mp_context=context,
                initializer=functools.partial(_worker_start, os.getpid(), self._initializer),
            )
        return self._executor

    def map(
        self,
        fn: Callable[[J], R],
        jobs: Sequence[J],
        description: str,
        chunk_size: int | None = None,
    ) -> Iterator[R]:
        """Yield ``fn(job)`` for every job, in completion order (not job order).

        Args:
            fn: a module-level function (or ``functools.partial`` of one): it is pickled.
            jobs: small, picklable job descriptions.
            description: the progress bar's label.
            chunk_size: jobs per task sent to a worker (default: a few chunks per worker).
        """
        with make_progress() as progress:
            task = progress.add_task(description, total=len(jobs))
            in_process = self._in_process
            if in_process is None:
                in_process = self.workers == 1 or len(jobs) <= 1
            if in_process:
                for job in jobs:
                    yield fn(job)
                    progress.advance(task)
                return
            size = chunk_size or max(1, min(MAX_CHUNK_SIZE, len(jobs) // (self.workers * 4)))
            chunks = shards(jobs, size)
            pool = self._pool()
            limit = self.workers * CHUNKS_IN_FLIGHT_PER_WORKER
            pending: set[Future[list[R]]] = set()
            next_chunk = 0
            try:
                while next_chunk < len(chunks) or pending:
                    while next_chunk < len(chunks) and len(pending) < limit:
                        pending.add(pool.submit(run_shard, fn, chunks[next_chunk]))
                        next_chunk += 1
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        results = future.result()
                        yield from results
                        progress.advance(task, len(results))
            finally:
                for future in pending:
                    future.cancel()
