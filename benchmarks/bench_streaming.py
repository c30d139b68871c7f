"""Training on tiles streamed from disk: memory against dataset size, speed against memory.

Prints, from one run on one machine:

1. **Peak memory against the number of samples.** Tiled-mode datasets of ``--small``
   (default 1,000) and ``--large`` (default 10,000) samples of 512 x 512 pixels, each
   trained for ``--steps`` updates on 256 x 256 tiles streamed from disk
   (``train.data_loading: streaming``; ``--memory-workers`` reader processes, default 2),
   each in a fresh process. Printed: the peak resident memory of the training process and
   of its reader processes, and the ratio large / small (goal <= 1.2). Every sample is its
   own file, listed in the dataset table, indexed from its header and read through its own
   path; to keep the disk use small the files are hard links to ``--distinct`` (default
   64) distinct preprocessed synthetic pills, so the page cache, which is no process's
   memory, stays small as well.
2. **Speed on the pill demo.** The demo's 160 pills at 256 x 256 in resize mode, trained
   ``--epochs`` epochs with the default ``train`` params, once from memory and once
   streamed from the sample files (``--workers`` reader processes, default 0);
   samples/s over the training epochs (validation time left out) and the ratio
   streaming / memory (goal >= 0.9); then the data path alone (three epochs of batches,
   nothing trained): the in-memory gather and the streamed reads, in the training process
   and by 2 reader processes.

Everything is generated into a temporary folder and deleted afterwards::

    .venv/bin/python benchmarks/bench_streaming.py              # full size
    .venv/bin/python benchmarks/bench_streaming.py --quick      # a smoke run
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

SEGCORE_ENV = {**os.environ, "SEGCORE_PROGRESS": "0"}


def _pills(root: Path, num: int, size: int, mode: str, tile: int) -> Path:
    """Synthetic pills, read, split and preprocessed; returns the preprocessed table."""
    from segcore.data.read import read_dataset
    from segcore.data.split import split_dataset
    from segcore.data.synth import CLASS_NAMES, generate_pills
    from segcore.params import ClassWeightParams, PreprocessParams
    from segcore.preprocess.stage import preprocess_dataset

    generate_pills(root / "raw", num_images=num, width=size, height=size, seed=42)
    ds = read_dataset(
        root / "raw" / "images", root / "raw" / "labels", list(CLASS_NAMES), [0, 1, 2]
    )
    ds = split_dataset(ds, training_percent=70, validation_percent=15, seed=42)
    param = PreprocessParams(mode=mode, image_width=tile, image_height=tile)
    out = root / "pre"
    weights = ClassWeightParams(max_weight=10.0)
    preprocess_dataset(ds, param, out, class_weights=weights, workers=2)
    return out / "dataset.parquet"


def _linked(base: Path, root: Path, n: int) -> Path:
    """A dataset of ``n`` samples whose files are hard links to the base dataset's train
    samples (which carry weight images): 90 % train, 10 % validation."""
    from segcore.data.dldataset import DLDataset

    ds = DLDataset.load(base)
    assert ds.sample_dir is not None
    files = list(ds.samples.loc[ds.samples["split"] == "train", "sample_file_name"])
    (root / "samples").mkdir(parents=True)
    rows = []
    for i in range(n):
        name = f"{i:06d}.safetensors"
        os.link(Path(ds.sample_dir) / files[i % len(files)], root / "samples" / name)
        split = "validation" if i % 10 == 9 else "train"
        rows.append({"image_id": i, "image_file_name": name, "segmentation_file_name": name})
        rows[-1] |= {"split": split, "sample_file_name": name}
    linked = ds.with_samples(pd.DataFrame(rows), sample_dir=root / "samples")
    return linked.save(root / "dataset.parquet")


def _train_params(out: Path, **changes: Any) -> Any:
    from segcore.params import TrainParams

    values = {"out_dir": str(out / "models"), "history": str(out / "history.csv"), "device": "cpu"}
    return TrainParams(**(values | changes))


def child_memory(dataset: str, steps: int, workers: int) -> dict[str, Any]:
    """``steps`` updates of the training loop on streamed tiles; peak memory."""
    import torch

    from segcore.train import distributed
    from segcore.train.epoch import augment
    from segcore.train.loss import weighted_cross_entropy
    from segcore.train.setup import prepare

    p = _train_params(Path(dataset).parent, data_loading="streaming", loader_workers=workers)
    ctx = distributed.setup("cpu")
    run = prepare(dataset, p, ctx, None)
    # The epoch's whole plan and batch list, as the training loop builds them; then the
    # first ``steps`` updates.
    plan = run.feed.epoch_plan(run.generator, 0)
    positions = list(torch.arange(run.steps_per_epoch * p.batch_size).split(p.batch_size))
    start = time.perf_counter()
    for batch in itertools.islice(run.feed.train_batches(plan, positions), steps):
        x, y, w = augment(run, batch, p, p.batch_size, 0)
        weighted_cross_entropy(run.model(x), y, w).backward()
        run.optimizer.step()
        run.optimizer.zero_grad(set_to_none=True)
    seconds = time.perf_counter() - start
    return {
        "samples": run.feed.train_samples + run.feed.val_samples,
        "tiles_per_epoch": run.feed.units,
        "main_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "readers_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "tiles_per_s": steps * p.batch_size / seconds,
    }


def child_speed(dataset: str, kind: str, epochs: int, workers: int) -> dict[str, Any]:
    """Train ``epochs`` epochs with the default params; samples/s of the training epochs."""
    from segcore.train.loop import train_model

    out = Path(dataset).parent / kind
    p = _train_params(out, data_loading=kind, loader_workers=workers, num_epochs=epochs)
    result = train_model(dataset, p)
    steps = int(result.history["step"].iloc[0])
    return {
        "samples_per_s": steps * p.batch_size * epochs / float(result.history["seconds"].sum()),
        "loss": float(result.history["loss"].iloc[-1]),
    }


def child_read(dataset: str, kind: str, epochs: int, workers: int) -> dict[str, Any]:
    """The data path alone: samples/s of ``epochs`` epochs of batches, nothing trained."""
    import torch

    from segcore.train import distributed
    from segcore.train.setup import prepare

    p = _train_params(Path(dataset).parent / f"read_{kind}", data_loading=kind)
    p = p.model_copy(update={"loader_workers": workers})
    run = prepare(dataset, p, distributed.setup("cpu"), None)
    positions = list(torch.arange(run.steps_per_epoch * p.batch_size).split(p.batch_size))
    start, n = time.perf_counter(), 0
    for epoch in range(epochs):
        for x, _, _ in run.feed.train_batches(run.feed.epoch_plan(run.generator, epoch), positions):
            n += len(x)
    return {"samples_per_s": n / (time.perf_counter() - start)}


def _child(*args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", *args],
        capture_output=True,
        text=True,
        env=SEGCORE_ENV,
        check=False,
    )
    if done.returncode:
        raise SystemExit(f"child {args} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def memory_part(root: Path, args: argparse.Namespace) -> dict[int, dict[str, Any]]:
    t = time.perf_counter()
    base = _pills(root / "base", args.distinct, 512, "tiled", 256)
    print(
        f"base: {args.distinct} pills of 512 x 512 preprocessed in {time.perf_counter() - t:.0f} s"
    )
    out = {}
    for n in (args.small, args.large):
        table = _linked(base, root / f"n{n}", n)
        out[n] = _child("memory", str(table), str(args.steps), str(args.memory_workers))
        r = out[n]
        print(
            f"{n:>6} samples ({r['tiles_per_epoch']} tiles per epoch): training process "
            f"{r['main_mib']:.0f} MiB, reader processes {r['readers_mib']:.0f} MiB peak, "
            f"{r['tiles_per_s']:.1f} tiles/s"
        )
    return out


def speed_part(root: Path, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    table = _pills(root / "demo", args.demo_images, 256, "resize", 256)
    out = {}
    for kind in ("memory", "streaming"):
        out[kind] = _child("speed", str(table), kind, str(args.epochs), str(args.workers))
        print(f"pill demo training, {kind:>9}: {out[kind]['samples_per_s']:.2f} samples/s")
    for kind, workers in (("memory", 0), ("streaming", 0), ("streaming", 2)):
        got = _child("read", str(table), kind, "3", str(workers))["samples_per_s"]
        print(f"pill demo data path alone, {kind:>9}, {workers} readers: {got:.0f} samples/s")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=10000)
    parser.add_argument("--distinct", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10, help="updates per memory run")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per speed run")
    parser.add_argument("--demo-images", type=int, default=160)
    parser.add_argument("--workers", type=int, default=0, help="loader_workers, speed runs")
    parser.add_argument(
        "--memory-workers", type=int, default=2, help="loader_workers of the memory runs"
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: tiny sizes")
    parser.add_argument("--only", choices=["memory", "speed"], help="run one part only")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "memory":
            result = child_memory(rest[0], int(rest[1]), int(rest[2]))
        elif kind == "read":
            result = child_read(rest[0], rest[1], int(rest[2]), int(rest[3]))
        else:
            result = child_speed(rest[0], rest[1], int(rest[2]), int(rest[3]))
        print(json.dumps(result))
        return
    if args.quick:
        args.small, args.large, args.distinct, args.steps = 20, 200, 8, 3
        args.epochs, args.demo_images = 1, 24
    with tempfile.TemporaryDirectory(prefix="bench_streaming_") as tmp:
        memory = memory_part(Path(tmp), args) if args.only != "speed" else None
        speed = speed_part(Path(tmp), args) if args.only != "memory" else None
    print()
    if memory:
        small, large = memory[args.small], memory[args.large]
        ratio = large["main_mib"] / small["main_mib"]
        readers = large["readers_mib"] / small["readers_mib"]
        print(
            f"peak memory, {args.large} vs {args.small} samples: training process "
            f"{ratio:.2f}x, reader processes {readers:.2f}x (goal <= 1.2)"
        )
    if speed:
        speed_ratio = speed["streaming"]["samples_per_s"] / speed["memory"]["samples_per_s"]
        print(f"pill demo samples/s, streaming vs memory: {speed_ratio:.2f}x (goal >= 0.9)")


if __name__ == "__main__":
    main()
