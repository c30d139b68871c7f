"""Sliding-window inference throughput: `apply_model` on a tiled model against a bare loop.

Prints, from one run on one machine, megapixels/s of

- ``apply_model`` on a tiled bundle (``preprocess.param.mode: tiled``): preprocessing the
  decoded image, overlapping tiles in batches, Gaussian blending, argmax and confidence at
  the image's size, and the regions of every class;
- a bare loop over the same preprocessed tensor: the same tiles cut by slicing, the same
  network and softmax in batches of the same size, the same Gaussian weights summed into
  the image and divided, and the argmax;

and their ratio (goal: >= 0.9). It builds its own bundle (the compact model, random
weights: throughput does not depend on them) and random images::

    .venv/bin/python benchmarks/bench_sliding_window.py                # 2 images of 1024 x 768
    .venv/bin/python benchmarks/bench_sliding_window.py --width 2048 --height 1536 --device cuda
    .venv/bin/python benchmarks/bench_sliding_window.py --quick        # a smoke run in seconds
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch


def _best_seconds(fns: list[Callable[[], object]], repeats: int) -> list[tuple[float, float]]:
    """Best wall time and best CPU time of this process for each function over ``repeats``
    rounds (after one warm-up round); the functions take turns within a round, so a change
    in the machine's load affects them alike. CPU time counts the work done whatever else
    runs on the machine (with one torch thread it is the fairest measure on a shared CPU)."""
    for fn in fns:
        fn()
    best = [(float("inf"), float("inf"))] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            best[i] = (min(best[i][0], wall), min(best[i][1], cpu))
    return best


def _inspection_image(height: int, width: int, seed: int) -> np.ndarray:
    """A grey plate with a brightness gradient, mild noise, dark hairlines and pits: the
    kind of image the model would see (pure noise would give a noise result with tens of
    thousands of specks, whose region table is not what is measured here)."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:height, 0:width]
    plate = 120 + 40 * cols / width + 10 * np.sin(rows / 50) + rng.normal(0, 4, (height, width))
    for _ in range(6):
        r, c, angle = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(0, np.pi)
        distance = np.abs((rows - r) * np.cos(angle) - (cols - c) * np.sin(angle))
        plate[distance < 1.2] -= 70
    for _ in range(20):
        r, c = rng.uniform(0, height), rng.uniform(0, width)
        plate[(rows - r) ** 2 + (cols - c) ** 2 < 4] -= 60
    grey = np.clip(plate, 0, 255).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def _bare_loop(
    module: torch.nn.Module,
    image: torch.Tensor,
    tile: int,
    starts: list[tuple[int, int]],
    weights: torch.Tensor,
    batch_size: int,
) -> np.ndarray:
    """The baseline: the same tiles, forward passes and blending, nothing else."""
    _, height, width = image.shape
    total = torch.zeros((3, height, width), device=image.device)
    norm = torch.zeros((height, width), device=image.device)
    with torch.inference_mode():
        for first in range(0, len(starts), batch_size):
            chunk = starts[first : first + batch_size]
            tiles = torch.stack([image[:, r : r + tile, c : c + tile] for r, c in chunk])
            probs = torch.softmax(module(tiles).float(), dim=1) * weights
            for (r, c), p in zip(chunk, probs, strict=True):
                total[:, r : r + tile, c : c + tile] += p
                norm[r : r + tile, c : c + tile] += weights
        total /= norm
        return total.argmax(dim=0).cpu().numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke run")
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--width", type=int, default=1024, help="image width (px)")
    parser.add_argument("--height", type=int, default=768, help="image height (px)")
    parser.add_argument("--tile", type=int, default=256, help="tile size (px)")
    parser.add_argument("--overlap", type=float, default=0.25, help="infer.tile_overlap")
    parser.add_argument("--batch-size", type=int, default=8, help="tiles per forward pass")
    parser.add_argument("--model", default="compact")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0: default")
    args = parser.parse_args()
    if args.quick:
        args.images, args.width, args.height, args.tile, args.repeats = 1, 200, 150, 64, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("SEGCORE_PROGRESS", "0")

    from segcore.infer.apply import apply_model, load_model
    from segcore.infer.tiling import blend_weights, preprocess_whole_image, tile_starts
    from segcore.model.bundle import BundleConfig, save_bundle
    from segcore.model.factory import architecture, create_model
    from segcore.params import PreprocessParams

    param = PreprocessParams(mode="tiled", image_width=args.tile, image_height=args.tile)
    images = [_inspection_image(args.height, args.width, seed) for seed in range(args.images)]
    with tempfile.TemporaryDirectory(prefix="segcore-bench-") as tmp:
        config = BundleConfig(
            architecture=architecture(args.model, 3, 3),
            class_ids=[0, 1, 2],
            class_names=["good", "scratch", "pit"],
            ignore_class_ids=[],
            preprocess_param=param.model_dump(),
            training_summary={},
        )
        bundle = save_bundle(Path(tmp) / "bundle", create_model(args.model, 3, 3), config)
        model = load_model(bundle, device=args.device)
    assert model.module is not None
    device = model.device
    tensors = [torch.from_numpy(preprocess_whole_image(im, param)).to(device) for im in images]
    starts = [
        (r, c)
        for r in tile_starts(args.height, args.tile, args.overlap)
        for c in tile_starts(args.width, args.tile, args.overlap)
    ]
    weights = blend_weights(args.tile, args.tile, device)

    regions = [0]

    def segcore_run() -> None:
        results = apply_model(model, images, batch_size=args.batch_size, tile_overlap=args.overlap)
        regions[0] = sum(len(r.regions) for r in results)

    def bare_run() -> None:
        for x in tensors:
            _bare_loop(model.module, x, args.tile, starts, weights, args.batch_size)

    megapixels = args.images * args.width * args.height / 1e6
    (bare_wall, bare_cpu), (ours_wall, ours_cpu) = _best_seconds(
        [bare_run, segcore_run], args.repeats
    )
    bare, ours = megapixels / bare_wall, megapixels / ours_wall
    print(
        f"{args.images} images of {args.width} x {args.height}, tiles {args.tile} px, overlap "
        f"{args.overlap} ({len(starts)} tiles per image), batch {args.batch_size}, "
        f"{args.model} on {device}, {torch.get_num_threads()} threads"
    )
    print(f"bare loop (same tiles, forward, blending, argmax): {bare:8.3f} megapixels/s")
    print(
        f"apply_model (sliding window, whole result):        {ours:8.3f} megapixels/s "
        f"({regions[0]} regions)"
    )
    print(f"ratio: {ours / bare:.3f} (goal >= 0.9)")
    print(
        f"CPU time of this process: bare {bare_cpu:.2f} s, apply_model {ours_cpu:.2f} s, "
        f"ratio {bare_cpu / ours_cpu:.3f}"
    )


if __name__ == "__main__":
    main()
