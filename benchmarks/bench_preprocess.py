"""Benchmark of the preprocess stage; every number is a ratio against a baseline of the same run.

1. Throughput: images/s with worker processes vs a single-process loop (``workers=1``)
   over the same images (goal: >= 1.7x on 2 cores), and vs the same loop in one worker
   process (what running in parallel alone gains). Each run is timed in a fresh process
   writing a fresh output folder after ``sync`` (so no run pays for writing back the
   previous run's files); the three are interleaved for a few rounds, and the medians
   are compared.
2. Loading a preprocessed sample vs decoding its image (the sample must be far cheaper).
3. Peak memory (RSS of the process tree) for 100 and 1,000 images: it should stay flat,
   because samples stream through the workers.

Inputs are synthetic RGB PNGs of 256..512 px with label images, made in a temporary
folder. Usage::

    .venv/bin/python benchmarks/bench_preprocess.py            # full run (a few minutes)
    .venv/bin/python benchmarks/bench_preprocess.py --quick    # smoke run (seconds)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

# Heavy imports live inside the functions: worker processes import this script again as
# their main module, and should not pay for pandas or psutil.
if TYPE_CHECKING:
    from segcore.data.dldataset import DLDataset
    from segcore.params import PreprocessParams

SPLITS = ("train", "train", "train", "validation", "test")


def make_images(root: Path, n: int, min_px: int, max_px: int, seed: int = 0) -> list[str]:
    """``n`` textured RGB images with a few discs as defects, and their label images."""
    import cv2
    import numpy as np

    from segcore.common.images import write_image_atomic

    rng = np.random.default_rng(seed)
    names = []
    for i in range(n):
        h, w = (int(v) for v in rng.integers(min_px, max_px + 1, size=2))
        yy, xx = np.mgrid[0:h, 0:w]
        base = (80 + 60 * np.sin(xx / 17.0) * np.cos(yy / 23.0)).astype(np.float32)
        image = np.stack([base, base * 0.9, base * 1.1], axis=2)
        image += rng.normal(0, 8, image.shape).astype(np.float32)
        label = np.zeros((h, w), np.uint8)
        for cls in (1, 2):
            for _ in range(int(rng.integers(0, 3))):
                cy, cx, r = (
                    int(rng.integers(0, h)),
                    int(rng.integers(0, w)),
                    int(rng.integers(4, 30)),
                )
                cv2.circle(label, (cx, cy), r, cls, -1)
                cv2.circle(image, (cx, cy), r, (200.0, 40.0 * cls, 30.0), -1)
        name = f"img_{i:04d}.png"
        write_image_atomic(root / "images" / name, np.clip(image, 0, 255).astype(np.uint8))
        write_image_atomic(root / "labels" / name, label)
        names.append(name)
    return names


def make_dataset(root: Path, names: list[str], n: int) -> DLDataset:
    """A dataset of ``n`` samples cycling over the image files ``names``."""
    import pandas as pd

    from segcore.data.dldataset import DLDataset

    rows = [
        {
            "image_id": i,
            "image_file_name": names[i % len(names)],
            "segmentation_file_name": names[i % len(names)],
            "split": SPLITS[i % len(SPLITS)],
        }
        for i in range(n)
    ]
    return DLDataset(
        pd.DataFrame(rows), root / "images", root / "labels", ["good", "a", "b"], [0, 1, 2]
    )


def throughput(table: Path, out: Path, workers: int, *, in_worker: bool = False) -> float:
    """Images per second of a complete run into an empty folder (both passes), timed
    inside a fresh process, as ``segcore preprocess`` runs (a process that has already
    worked on big arrays allocates faster: reusing this one would flatter later runs).

    ``workers=1`` runs the jobs in that process, as ``segcore preprocess --workers 1``
    does; with ``in_worker`` they run in one worker process instead (set up like every
    worker: one OpenCV thread, see :func:`segcore.preprocess.jobs.init_worker`), which
    separates what the workers' set-up gains from what running in parallel gains.
    """
    shutil.rmtree(out, ignore_errors=True)
    os.sync()  # start with no dirty pages: each run pays only for its own writes
    mode = "worker" if in_worker else str(workers)
    cmd = [sys.executable, __file__, "--time-run", str(table), str(out), mode]
    env = {**os.environ, "SEGCORE_PROGRESS": "0"}
    run = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"timed run failed: {cmd}\n{run.stderr}")
    return float(run.stdout.split()[-1])


def time_child(table: str, out: str, mode: str) -> None:
    """``--time-run``: one timed run in this fresh process; prints images/s."""
    from segcore.common.parallel import WorkerPool
    from segcore.data.dldataset import DLDataset
    from segcore.preprocess.jobs import init_worker
    from segcore.preprocess.stage import run_preprocess

    ds = DLDataset.load(table)
    start = time.perf_counter()
    if mode == "worker":  # the stage's own pool, made to use its one worker process
        with WorkerPool(1, init_worker, in_process=False) as pool:
            result = run_preprocess(ds, _param(), out, overwrite=True, map_jobs=pool.map)
    else:
        result = run_preprocess(ds, _param(), out, workers=int(mode), overwrite=True)
    assert result.written == len(ds)
    print(len(ds) / (time.perf_counter() - start))


def load_vs_decode(ds: DLDataset, sample_dir: Path, n: int) -> tuple[float, float]:
    """Mean seconds to decode an image and to load its preprocessed sample."""
    from segcore.common.images import read_image
    from segcore.data.samples import load_sample, sample_path

    rows = ds.samples.head(n)
    t0 = time.perf_counter()
    for name in rows["image_file_name"]:
        read_image(ds.image_dir / name)
    t1 = time.perf_counter()
    for image_id in rows["image_id"]:
        load_sample(sample_path(sample_dir, image_id))
    t2 = time.perf_counter()
    return (t1 - t0) / len(rows), (t2 - t1) / len(rows)


def peak_rss_of(cmd: list[str]) -> int:
    """Run ``cmd``; the peak summed RSS (bytes) of it and its children, sampled every 10 ms."""
    import psutil

    proc = psutil.Popen(cmd, env={**os.environ, "SEGCORE_PROGRESS": "0"})
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            try:
                procs = [proc, *proc.children(recursive=True)]
                total = 0
                for p in procs:
                    with contextlib.suppress(psutil.NoSuchProcess):
                        total += p.memory_info().rss
                peak = max(peak, total)
            except psutil.NoSuchProcess:
                return
            time.sleep(0.01)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    rc = proc.wait()
    done.set()
    thread.join()
    if rc != 0:
        raise SystemExit(f"memory run failed: {cmd}")
    return peak


def memory_child(dataset: str, out: str, workers: int) -> None:
    """``--memory-run``: preprocess one dataset in a fresh process (measured from outside)."""
    from segcore.data.dldataset import DLDataset
    from segcore.preprocess.stage import run_preprocess

    run_preprocess(DLDataset.load(dataset), _param(), out, workers=workers, overwrite=True)


def _runs(values: list[float]) -> str:
    return "(runs: " + ", ".join(f"{v:.1f}" for v in values) + ")"


def _param() -> PreprocessParams:
    from segcore.params import PreprocessParams

    return PreprocessParams(image_width=256, image_height=256)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--workers", type=int, default=0, help="worker processes (0: one per core)")
    parser.add_argument("--rounds", type=int, default=3, help="timed runs of each (median)")
    parser.add_argument("--memory-run", nargs=2, metavar=("DATASET", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--time-run", nargs=3, metavar=("DATASET", "OUT", "MODE"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    from segcore.common.parallel import resolve_workers

    args.workers = resolve_workers(args.workers)
    if args.memory_run:
        memory_child(*args.memory_run, workers=args.workers)
        return
    if args.time_run:
        time_child(*args.time_run)
        return

    n_files, n_bench, sizes = (24, 48, (20, 60)) if args.quick else (100, 1000, (100, 1000))
    min_px, max_px = (96, 160) if args.quick else (256, 512)
    with tempfile.TemporaryDirectory(prefix="bench_preprocess_") as tmp:
        root = Path(tmp)
        print(f"Generating {n_files} images of {min_px}..{max_px} px in {root} ...", flush=True)
        names = make_images(root, n_files, min_px, max_px)
        ds = make_dataset(root, names, n_bench)
        table = ds.save(root / "ds_bench.parquet")

        loops, processes, pools = [], [], []
        for _ in range(args.rounds):
            loops.append(throughput(table, root / "out1", workers=1))
            processes.append(throughput(table, root / "outP", workers=1, in_worker=True))
            pools.append(throughput(table, root / "outN", workers=args.workers))
        loop, process, pool = (statistics.median(v) for v in (loops, processes, pools))
        print(
            f"\nThroughput over {n_bench} images ({os.cpu_count()} CPUs), median of {args.rounds}"
        )
        print(f"  single-process loop       : {loop:7.1f} images/s   {_runs(loops)}")
        print(f"  1 worker process          : {process:7.1f} images/s   {_runs(processes)}")
        print(f"  {args.workers} worker processes        : {pool:7.1f} images/s   {_runs(pools)}")
        print(
            f"  speed-up vs the loop      : {pool / loop:7.2f}x   "
            "(goal >= 1.7x on 2 cores; `--workers N` vs `--workers 1`)"
        )
        print(
            f"  speed-up vs 1 worker      : {pool / process:7.2f}x   (from running in parallel alone)"
        )

        decode, load = load_vs_decode(ds, root / "outN" / "samples", min(n_bench, 50))
        print("\nReading one sample")
        print(f"  decode image (PNG)  : {decode * 1e3:8.2f} ms")
        print(f"  load sample file    : {load * 1e3:8.2f} ms")
        print(f"  decode / load       : {decode / load:8.1f}x")

        print(f"\nPeak memory, process tree, {args.workers} workers")
        peaks = []
        for n in sizes:
            table = make_dataset(root, names, n).save(root / f"ds_{n}.parquet")
            cmd = [sys.executable, __file__, "--workers", str(args.workers)]
            peak = peak_rss_of([*cmd, "--memory-run", str(table), str(root / f"mem_{n}")])
            peaks.append(peak)
            print(f"  {n:5d} images        : {peak / 2**20:8.1f} MiB")
        print(f"  {sizes[1]} vs {sizes[0]} images : {peaks[1] / peaks[0]:8.2f}x   (flat is ~1.0x)")


if __name__ == "__main__":
    main()
