"""Tiled mode vs resize mode on large synthetic images, IoU at original resolution.

Generates ``--images`` synthetic pill images of ``--width x --height`` with defects at
their 256-pixel size (``segcore synth --defect-scale 1.0``: hairline cracks 2-3 px wide,
contamination pits a few px across), then, through the ``segcore`` command line in two
temporary project folders that share the images and the split:

1. resize mode (HALCON's): ``dataset``, ``split``, ``preprocess`` at ``--resize``
   (default 512x384), ``train`` for ``--budget`` seconds (``train.time_budget``),
   ``evaluate --resolution original`` on the test split (``models/best``);
2. tiled mode: the same with ``preprocess.param.mode: tiled``, ``scale`` ``--scale`` and
   ``--tile`` px tiles (``train.foreground_share`` as in params.yaml), evaluated by
   sliding windows at the original size.

Both use the repository's params.yaml otherwise (same model, batch size, solver,
class weights, augmentation without 90-degree rotation, which a non-square resize input
does not allow, and no learning-rate change strategy, whose epoch means different amounts
of data in the two modes), the same torch thread count and the same budget, which counts
validation as well. Printed: per-class IoU of both at original resolution side by side,
mean IoU, the ratio tiled / resize, and the goal (every defect class >= 0.6 for tiled).
Everything generated is deleted at the end unless ``--keep``::

    .venv/bin/python benchmarks/bench_tiled.py                      # 40 images, 10 min each
    .venv/bin/python benchmarks/bench_tiled.py --images 16 --budget 240 --threads 2
    .venv/bin/python benchmarks/bench_tiled.py --quick              # a smoke run in minutes
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml
from _project import ROOT, BenchError, Project

RawFormatter = argparse.RawDescriptionHelpFormatter
GOAL = 0.6


HELP = {
    "images": "synthetic images to generate (default 40; split 70/15/15 as in params.yaml)",
    "width": "image width in px (default 2048)",
    "height": "image height in px (default 1536)",
    "budget": "training seconds of each mode, validation included (default 600)",
    "tile": "tiled mode: tile side in px (default 256)",
    "scale": "tiled mode: preprocess.param.scale (default 1.0, native resolution)",
    "resize": "resize mode: network input WIDTHxHEIGHT (default 512x384)",
    "threads": "torch threads of training and evaluation, preprocess workers (default: all cores)",
    "device": "torch device of training and evaluation (default cpu)",
    "seed": "seed of the synthetic images (synth.seed; default 42)",
    "json": "also write the numbers to this JSON file",
    "keep": "keep the temporary folder (projects, segcore.log, reports) and print its path",
    "quick": "a smoke run: 10 images of 1024x768, 30 s budgets unless --budget (may be too short for a tiled epoch on a slow CPU: segcore train then says so)",
}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=RawFormatter)
    p.add_argument("--images", type=int, default=40, metavar="N", help=HELP["images"])
    p.add_argument("--width", type=int, default=2048, metavar="PX", help=HELP["width"])
    p.add_argument("--height", type=int, default=1536, metavar="PX", help=HELP["height"])
    p.add_argument("--budget", type=float, default=None, metavar="S", help=HELP["budget"])
    p.add_argument("--tile", type=int, default=256, metavar="PX", help=HELP["tile"])
    p.add_argument("--scale", type=float, default=1.0, help=HELP["scale"])
    p.add_argument("--resize", default="512x384", metavar="WxH", help=HELP["resize"])
    p.add_argument("--threads", type=int, default=os.cpu_count(), metavar="N", help=HELP["threads"])
    p.add_argument("--device", default="cpu", help=HELP["device"])
    p.add_argument("--seed", type=int, default=42, help=HELP["seed"])
    p.add_argument("--json", type=Path, metavar="PATH", help=HELP["json"])
    p.add_argument("--keep", action="store_true", help=HELP["keep"])
    p.add_argument("--quick", action="store_true", help=HELP["quick"])
    args = p.parse_args()
    if args.quick:
        args.images, args.width, args.height = 10, 1024, 768
        args.budget = 30.0 if args.budget is None else args.budget
    args.budget = 600.0 if args.budget is None else args.budget
    try:
        args.resize_wh = tuple(int(v) for v in args.resize.lower().split("x"))
        assert len(args.resize_wh) == 2 and min(args.resize_wh) > 0
    except (ValueError, AssertionError):
        p.error(f"--resize {args.resize!r}: give WIDTHxHEIGHT, e.g. 512x384")
    if args.images < 7 or args.budget <= 0 or args.threads < 1 or args.tile < 16:
        p.error("--images must be >= 7, --budget > 0, --threads >= 1, --tile >= 16")
    return args


def base_params(args: argparse.Namespace, data: Path) -> dict[str, Any]:
    """The repository's params.yaml pointed at ``data``, with what both modes share."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["synth"].update(
        out_dir=str(data),
        num_images=args.images,
        width=args.width,
        height=args.height,
        seed=args.seed,
        defect_scale=1.0,
    )
    params["dataset"].update(
        image_dir=str(data / "images"),
        segmentation_dir=str(data / "labels"),
        ignore_unmatched=False,
    )
    params["preprocess"]["workers"] = args.threads
    train = params["train"]
    train.update(time_budget=args.budget, num_epochs=100_000, change_strategies=[])
    train.update(num_threads=args.threads, device=args.device, lr_schedule="none")
    train["augmentation"]["rotate"] = 0
    params["evaluate"].update(bundle="models/best", resolution="original", device=args.device)
    return params


def mode_params(base: dict[str, Any], args: argparse.Namespace, tiled: bool) -> dict[str, Any]:
    """``base`` with the preprocess parameters of one mode."""
    params = json.loads(json.dumps(base))  # a deep copy
    param = params["preprocess"]["param"]
    if tiled:
        param.update(mode="tiled", scale=args.scale, image_width=args.tile, image_height=args.tile)
    else:
        width, height = args.resize_wh
        param.update(mode="resize", scale=1.0, image_width=width, image_height=height)
    return params


def run_mode(root: Path, params: dict[str, Any], threads: int) -> dict[str, Any]:
    """dataset, split, preprocess, train, evaluate in a project folder; the numbers."""
    prj = Project(root, threads)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    seconds = {stage: prj.run(stage) for stage in ("dataset", "split", "preprocess", "train")}
    seconds["evaluate"] = prj.run("evaluate")
    metrics = json.loads((root / params["evaluate"]["report_dir"] / "metrics.json").read_text())
    history_file = root / params["train"]["history"]
    rows = history_file.read_text().splitlines()
    head, last = rows[0].split(","), rows[-1].split(",")
    epoch = float(last[head.index("epoch")]) if "epoch" in head and len(rows) > 1 else 0.0
    return {
        "seconds": seconds,
        "epochs": epoch,
        "mean_iou": float(metrics["mean_iou"]),
        "class_iou": {k: float(v) for k, v in metrics["class_iou"].items()},
        "resolution": metrics.get("resolution", "original"),
    }


def split_counts(root: Path, class_names: list[str]) -> str:
    """Test images, and the test images and pixels of each class (the split's table)."""
    import pandas as pd

    table = pd.read_parquet(root / "data" / "dataset" / "split.parquet")
    test = table[table["split"] == "test"]
    pixels = [test[f"pixels_class_{cid}"] for cid in range(len(class_names))]
    held = ", ".join(
        f"{name} {int((px > 0).sum())} ({int(px.sum()):,} px)"
        for name, px in zip(class_names, pixels, strict=True)
    )
    return f"test split: {len(test)} images; images (pixels) of each class: {held}"


def report(args: argparse.Namespace, resize: dict, tiled: dict, names: list[str]) -> dict:
    """Print the side-by-side table; returns the numbers for --json."""
    width, height = args.resize_wh
    print()
    print(
        f"{args.images} images of {args.width} x {args.height} (synth defect_scale 1.0), "
        f"budget {args.budget:.0f} s each, {args.threads} threads on {args.device}; "
        f"resize {width} x {height} vs tiled {args.tile} x {args.tile} at scale {args.scale}"
    )
    print(
        f"epochs trained: resize {resize['epochs']:.2f}, tiled {tiled['epochs']:.2f}; "
        f"test IoU at original resolution:"
    )
    print(f"  {'class':<16}{'resize':>10}{'tiled':>10}{'tiled/resize':>14}")
    rows = [(n, resize["class_iou"].get(n, -1.0), tiled["class_iou"].get(n, -1.0)) for n in names]
    rows.append(("mean IoU", resize["mean_iou"], tiled["mean_iou"]))
    for name, r, t in rows:
        ratio = f"{t / r:.2f}x" if r > 0 and t >= 0 else "-"
        print(f"  {name:<16}{r:>10.4f}{t:>10.4f}{ratio:>14}")
    defects = [t for n, _, t in rows[1:-1]]
    reached = all(t >= GOAL for t in defects)
    print(
        f"goal: every defect class >= {GOAL} in tiled mode: "
        f"{'reached' if reached else 'NOT reached'} (lowest {min(defects):.4f}); "
        "-1: no such pixels in the test labels"
    )
    return {
        "args": {k: v for k, v in vars(args).items() if k != "json"},
        "resize": resize,
        "tiled": tiled,
        "goal_reached": reached,
    }


def main() -> None:
    args = parse_args()
    work = Path(tempfile.mkdtemp(prefix="segcore-bench-tiled-"))
    try:
        data = work / "data"
        base = base_params(args, data)
        names = list(base["dataset"]["class_names"])
        synth = Project(work / "synth", args.threads)
        (synth.root / "params.yaml").write_text(yaml.safe_dump(base, sort_keys=False))
        synth.run("synth")
        results = {}
        for mode in ("resize", "tiled"):
            results[mode] = run_mode(
                work / mode, mode_params(base, args, mode == "tiled"), args.threads
            )
        try:
            print(split_counts(work / "resize", names))
        except Exception as err:  # the count is informative only
            print(f"(test split counts unavailable: {err})")
        numbers = report(args, results["resize"], results["tiled"], names)
        if args.json:
            args.json.write_text(json.dumps(numbers, indent=2, default=str))
    except BenchError as err:
        print(f"\nerror: {err}", file=sys.stderr)
        sys.exit(1)
    finally:
        if args.keep:
            print(f"kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
