"""Map a function over many small jobs in worker processes, streaming, with a progress bar.

Jobs go to the workers in chunks, with only a few chunks in flight at once, and results
come back as soon as a chunk is done. Jobs and results should be small (paths, hashes,
counts): big arrays stay inside the workers, so memory does not grow with the number of
jobs.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import TypeVar

from segcore.progress import make_progress

J = TypeVar("J")
R = TypeVar("R")

CHUNKS_IN_FLIGHT_PER_WORKER = 2
"""Chunks queued per worker: enough to keep every worker busy, few enough to stay small."""


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


def _run_chunk(fn: Callable[[J], R], chunk: Sequence[J]) -> list[R]:
    return [fn(job) for job in chunk]


def map_jobs(
    fn: Callable[[J], R],
    jobs: Sequence[J],
    *,
    workers: int,
    description: str,
    initializer: Callable[[], None] | None = None,
    chunk_size: int | None = None,
) -> Iterator[R]:
    """Yield ``fn(job)`` for every job, in completion order (not job order).

    Args:
        fn: a module-level function (or ``functools.partial`` of one): it is pickled.
        jobs: small, picklable job descriptions.
        workers: worker processes; 0 means one per CPU core, 1 runs in this process.
        description: the progress bar's label.
        initializer: run once in every worker process before its first job.
        chunk_size: jobs per task sent to a worker (default: a few chunks per worker).
    """
    workers = min(resolve_workers(workers), max(len(jobs), 1))
    if workers == 1:
        with make_progress() as progress:
            task = progress.add_task(description, total=len(jobs))
            for job in jobs:
                yield fn(job)
                progress.advance(task)
        return
    size = chunk_size or max(1, min(16, len(jobs) // (workers * 4)))
    chunks = [jobs[i : i + size] for i in range(0, len(jobs), size)]
    executor = ProcessPoolExecutor(workers, mp_context=_context(), initializer=initializer)
    pending: set[Future[list[R]]] = set()
    next_chunk = 0

    def submit() -> None:
        nonlocal next_chunk
        limit = workers * CHUNKS_IN_FLIGHT_PER_WORKER
        while next_chunk < len(chunks) and len(pending) < limit:
            pending.add(executor.submit(_run_chunk, fn, chunks[next_chunk]))
            next_chunk += 1

    try:
        submit()  # starts the workers before the progress bar starts its thread
        with make_progress() as progress:
            task = progress.add_task(description, total=len(jobs))
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                submit()
                for future in done:
                    results = future.result()
                    yield from results
                    progress.advance(task, len(results))
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def _context() -> multiprocessing.context.BaseContext:
    """``fork`` (workers start in milliseconds) while this process runs no other thread;
    ``forkserver`` otherwise (forking a process with threads can deadlock the child)."""
    if "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("forkserver")
