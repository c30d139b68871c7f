"""Training throughput: `train_model` against a bare loop, and what speeds up the CPU.

Prints, from one run on one machine, samples/s of

- ``train_model`` (its steady-state epochs: index gather from the in-memory split,
  augmentation on the batch, schedule, loss bookkeeping, progress), and
- a bare loop over batches already in memory (same model, optimizer, loss, batch size,
  threads and memory layout; no augmentation, no bookkeeping),

and their ratio; goal: ``train_model`` >= 0.95x the bare loop. Then the bare loop over a
few settings (channels-last vs contiguous, thread count, batch size), and
``train_model`` with augmentation switched off, to show what each costs or saves.

The data are random tensors written as preprocessed samples (throughput does not depend
on their content)::

    .venv/bin/python benchmarks/bench_train.py            # 64 samples of 256 x 256
    .venv/bin/python benchmarks/bench_train.py --quick    # a smoke run in seconds
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch


def make_dataset(root: Path, n_train: int, size: int) -> Path:
    """A preprocessed dataset of random samples: ``n_train`` train, 2 validation."""
    from segcore.data.dldataset import DLDataset
    from segcore.data.samples import sample_path, save_sample
    from segcore.params import PreprocessParams

    rng = np.random.default_rng(0)
    rows = []
    for i in range(n_train + 2):
        split = "train" if i < n_train else "validation"
        label = rng.integers(0, 3, (size, size)).astype(np.uint16)
        weight = np.ones((size, size), np.float32) if split == "train" else None
        image = rng.uniform(-127, 128, (3, size, size)).astype(np.float32)
        path = sample_path(root / "samples", i)
        save_sample(path, image, label, weight)
        rows.append({"image_id": i, "split": split, "sample_file_name": path.name})
    ds = DLDataset(
        samples=pd.DataFrame(rows),
        image_dir=root,
        segmentation_dir=root,
        class_names=["good", "contamination", "crack"],
        class_ids=[0, 1, 2],
        preprocess_param=PreprocessParams(image_width=size, image_height=size).model_dump(),
        class_weights=[1.0, 1.0, 1.0],
        sample_dir=root / "samples",
    )
    return ds.save(root / "dataset.parquet")


def train_rate(dataset: Path, root: Path, params: Any) -> tuple[float, float]:
    """``train_model``: (samples/s of its best training epoch, of the whole call)."""
    from segcore.train.loop import train_model

    start = time.perf_counter()
    result = train_model(dataset, params, out_dir=root / "models", history_path=root / "h.csv")
    wall = time.perf_counter() - start
    steps_per_epoch = int(result.history["step"].iloc[0])
    per_epoch = steps_per_epoch * params.batch_size * params.batch_size_multiplier
    # The best epoch after the first (which pays one-off costs), as for the bare loop.
    best = result.history["seconds"].iloc[1:].min()
    total = int(result.history["step"].iloc[-1]) * params.batch_size
    return per_epoch / best, total / wall


def bare_rate(dataset: Path, params: Any, epochs: int, channels_last: bool, threads: int) -> float:
    """The bare loop: ready batches, forward, loss, backward, step; best epoch's samples/s."""
    from segcore.data.dldataset import DLDataset
    from segcore.model.factory import create_model
    from segcore.train.data import load_split
    from segcore.train.loss import weighted_cross_entropy
    from segcore.train.solver import make_optimizer

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        split = load_split(DLDataset.load(dataset), "train", with_weights=True, ignore_class_ids=[])
        assert split.weights is not None
        torch.manual_seed(params.seed)
        layout = torch.channels_last if channels_last else torch.contiguous_format
        model = create_model(params.model, 3, 3, **params.model_kwargs).to(memory_format=layout)
        optimizer = make_optimizer(params, model)
        b = params.batch_size
        batches = [
            (
                split.images[i : i + b].contiguous(memory_format=layout),
                split.targets[i : i + b],
                split.weights[i : i + b],
            )
            for i in range(0, len(split) - b + 1, b)
        ]
        best = float("inf")
        for _ in range(epochs):
            start = time.perf_counter()
            for x, y, w in batches:
                loss = weighted_cross_entropy(model(x), y, w)
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            best = min(best, time.perf_counter() - start)
        return len(batches) * b / best
    finally:
        torch.set_num_threads(before)


def data_path_ms(dataset: Path, params: Any, threads: int, repeats: int = 50) -> float:
    """Mean milliseconds of what ``train_model`` adds per batch: index gather + augmentation."""
    from segcore.data.dldataset import DLDataset
    from segcore.train.augment import augment_batch, grey_value_scale
    from segcore.train.data import load_split

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        ds = DLDataset.load(dataset)
        split = load_split(ds, "train", with_weights=True, ignore_class_ids=[])
        assert split.weights is not None
        images = split.images.contiguous(memory_format=torch.channels_last)
        generator = torch.Generator().manual_seed(0)
        scale = grey_value_scale(ds.preprocess_param, images.shape[1])
        start = time.perf_counter()
        for _ in range(repeats):
            idx = torch.randperm(len(split), generator=generator)[: params.batch_size]
            x, y, w = images[idx], split.targets[idx], split.weights[idx]
            augment_batch(x, y, w, params.augmentation, generator, scale)
        return (time.perf_counter() - start) / repeats * 1000
    finally:
        torch.set_num_threads(before)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke run")
    parser.add_argument("--samples", type=int, default=64, help="train samples")
    parser.add_argument("--size", type=int, default=256, help="image size (px)")
    parser.add_argument("--batch-size", type=int, default=4, help="as params.yaml")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--model", default="compact")
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0: all cores")
    args = parser.parse_args()
    if args.quick:
        args.samples, args.size, args.epochs = 16, 64, 2
    threads = args.threads or os.cpu_count() or 1
    os.environ.setdefault("SEGCORE_PROGRESS", "0")

    from segcore.params import TrainParams

    def params(**changes: Any) -> TrainParams:
        values = {
            "model": args.model,
            "batch_size": args.batch_size,
            "num_epochs": args.epochs,
            "device": "cpu",
            "num_threads": threads,
            "serialization_strategies": ["final"],
        }
        return TrainParams(**(values | changes))

    with tempfile.TemporaryDirectory(prefix="segcore-bench-") as tmp:
        root = Path(tmp)
        dataset = make_dataset(root, args.samples, args.size)
        p = params()
        # Interleaved, so that a busy machine slows both sides alike.
        bare = bare_rate(dataset, p, args.epochs, True, threads)
        steady, whole = train_rate(dataset, root / "a", p)
        bare = max(bare, bare_rate(dataset, p, args.epochs, True, threads))
        data_ms = data_path_ms(dataset, p, threads)
        no_aug, _ = train_rate(
            dataset, root / "b", params(augmentation={"augmentation_percentage": 0})
        )
        settings = {
            f"channels-last, {threads} threads": bare,
            f"contiguous (NCHW), {threads} threads": bare_rate(
                dataset, p, args.epochs, False, threads
            ),
            "channels-last, 1 thread": bare_rate(dataset, p, args.epochs, True, 1),
        }
        for b in sorted({max(2, args.batch_size // 2), args.batch_size * 2}):
            pb = params(batch_size=b)
            settings[f"channels-last, batch {b}"] = bare_rate(
                dataset, pb, args.epochs, True, threads
            )

    ratio = steady / bare
    step_ms = 1000 * args.batch_size / bare
    print(
        f"bench_train: {args.samples} train samples {args.size}x{args.size}, model {args.model}, "
        f"batch {args.batch_size}, {threads} threads, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}"
    )
    rows = {
        "bare loop (ready tensors)": bare,
        "train_model, training epochs": steady,
        "train_model, without augmentation": no_aug,
        "train_model, whole call (setup, eval, IO)": whole,
    }
    for name, rate in rows.items():
        print(f"  {name:42s} {rate:8.2f} samples/s  {rate / bare:5.2f}x bare")
    print(
        f"  data path per batch (gather + augmentation): {data_ms:.2f} ms = "
        f"{data_ms / step_ms:.1%} of a bare step ({step_ms:.0f} ms)"
    )
    verdict = "met" if ratio >= 0.95 else "NOT met"
    print(f"  train_model / bare loop: {ratio:.2f}x (goal >= 0.95x: {verdict})")
    print("  bare loop by setting:")
    for name, rate in settings.items():
        print(f"    {name:38s} {rate:8.2f} samples/s  {rate / bare:5.2f}x")


if __name__ == "__main__":
    main()
