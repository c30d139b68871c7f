"""The data stages: `generate_pills` and `read_dataset` against baselines from the same run.

Prints, from one run on one machine:

- synth: seconds for the pill images (goal for 160 images of 256 x 256: a few seconds)
  and the ratio to the bare cost of encoding and writing the same PNG files;
- dataset: seconds of ``read_dataset`` (thread pool, every check) against decoding the
  same pairs one after the other with the same readers and no checks; goal: <= 1.0x.

::

    .venv/bin/python benchmarks/bench_data.py           # 160 images of 256 x 256
    .venv/bin/python benchmarks/bench_data.py --quick   # a smoke run in about a second
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("SEGCORE_PROGRESS", "0")

import cv2

from segcore.common.images import read_image, read_label
from segcore.data.read import read_dataset
from segcore.data.synth import CLASS_NAMES, generate_pills


def _best(fn: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke run")
    parser.add_argument("--images", type=int, default=160)
    parser.add_argument("--size", type=int, default=256, help="image width and height (px)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.quick:
        args.images, args.size, args.repeats = 12, 64, 1

    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "pills"
        synth_s = _best(
            lambda: generate_pills(raw, num_images=args.images, width=args.size, height=args.size),
            args.repeats,
        )
        files = sorted((raw / "images").glob("*.png"))
        pairs = [(p, raw / "labels" / p.name) for p in files]
        decoded = [(cv2.imread(str(i)), cv2.imread(str(lb), 0)) for i, lb in pairs]
        out = Path(tmp) / "copy"
        out.mkdir()
        write_s = _best(
            lambda: [
                (cv2.imwrite(str(out / f"i{k}.png"), im), cv2.imwrite(str(out / f"l{k}.png"), lb))
                for k, (im, lb) in enumerate(decoded)
            ],
            args.repeats,
        )
        ids = list(range(len(CLASS_NAMES)))
        read_s = _best(
            lambda: read_dataset(raw / "images", raw / "labels", list(CLASS_NAMES), ids),
            args.repeats,
        )
        plain_s = _best(lambda: [(read_image(i), read_label(lb)) for i, lb in pairs], args.repeats)

    print(f"{args.images} images of {args.size} x {args.size} px")
    print(
        f"synth    {synth_s:6.2f} s  ({1000 * synth_s / args.images:.1f} ms/image; "
        f"{synth_s / write_s:.1f}x writing the PNGs alone)"
    )
    print(
        f"dataset  {read_s:6.2f} s  ({read_s / plain_s:.2f}x decoding the pairs one by one "
        "without checks; goal <= 1.0x)"
    )


if __name__ == "__main__":
    main()
