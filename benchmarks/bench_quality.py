"""Test quality of segcore's planned training against a bare segmentation-models-pytorch loop.

For one dataset folder (``DATA_DIR/images/<id>.png``, ``DATA_DIR/labels/<id>.png`` with
pixel = class id, ``DATA_DIR/classes.json``; see benchmarks/datasets/README.md):

1. segcore, driven through its CLI in a temporary project folder, as a user would: the
   repository's params.yaml with the dataset section replaced (plus the ignore class ids,
   the torch threads, the device, ``preprocess.workers`` = threads and
   ``evaluate.resolution: original``); ``segcore dataset``, ``split``, then
   ``segcore plan --budget BUDGET --write`` (input size or tiles, batch, epochs, schedule,
   class-weight cap, loss, augmentation, ``train.time_budget``: its printout lands in
   ``segcore.log``), ``preprocess``, ``train``, ``calibrate`` and ``evaluate`` on the test
   split (its ``best`` bundle). With ``--defaults`` the plan is skipped: the repository's
   parameters, with the epochs fitted to the budget (``segcore train --epochs 1`` measures
   an epoch, ``--resume`` continues it to ``floor(budget / first epoch)`` epochs).
2. A bare loop, what a user writes by hand in ~40 lines: ``smp.Unet('resnet18',
   encoder_weights=None)``, plain cross-entropy (ignore classes ignored), Adam lr 1e-3,
   random horizontal/vertical flips, batch 4, on samples resized as the repository's
   params.yaml resizes them (256 x 256; ``segcore preprocess`` before the plan), the same
   train split, trained for the training seconds segcore actually spent.

Both are measured on the same test images at their original resolution, with segcore's
code (original label files, class probabilities resized bilinearly before the argmax, one
confusion matrix): segcore's ``evaluate``, and for the bare loop (final weights) the same
label reading and argmax. Training time is wall time of the training steps only, validation
left out (segcore's history column ``seconds``), both at the same torch thread count: run
it on an otherwise quiet machine.

Printed: test mean IoU and per-class IoU of both and their ratio, the rarest defect class's
IoU difference, and time-to-quality: the training seconds segcore needed to reach the bare
loop's final validation mean IoU (from segcore's per-epoch history, measured on its own
validation samples), as a fraction of the bare loop's budget::

    .venv/bin/python benchmarks/bench_quality.py /work/datasets/crackforest --budget 900
    .venv/bin/python benchmarks/bench_quality.py --pills --budget 300 --num-images 80
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import segmentation_models_pytorch as smp
import torch
import yaml
from _project import ROOT, BenchError, Project

import segcore

# The only segcore modules used besides the CLI and the top-level API: the sample files,
# the original labels, the argmax at their size and the measures, so both sides are
# measured by the same code.
from segcore.data.samples import label_to_index, load_sample
from segcore.evaluate.metrics import compute_measures, confusion_matrix_np
from segcore.evaluate.resolution import OriginalLabels
from segcore.infer.apply import class_map
from segcore.params import PreprocessParams, flatten, load_params

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}
IGNORE = -1  # target of ignored pixels in the bare loop
BARE_SAMPLES = "data/bare"  # the bare loop's samples, preprocessed before the plan


RawFormatter = argparse.RawDescriptionHelpFormatter


HELP = {
    "data_dir": "dataset folder: images/<id>.png, labels/<id>.png (pixel = class id), classes.json",
    "pills": "generate segcore's synthetic pills (segcore synth) in a temporary folder, use them",
    "num_images": "with --pills: how many pill images to generate (default 160)",
    "budget": "training seconds for each of the two (wall time, at --threads threads)",
    "threads": "torch threads of both trainings, segcore's preprocess workers (default: all cores)",
    "device": "torch device of both trainings and of segcore evaluate (default cpu)",
    "seed": "seed of the bare loop's initialisation, shuffling and flips (default 42)",
    "defaults": "skip segcore plan: the repository's parameters, epochs fitted to the budget",
    "json": "also write the numbers (and both validation curves) to this JSON file",
    "keep": "keep the temporary folder (project, segcore.log, reports) and print its path",
}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=RawFormatter)
    p.add_argument("data_dir", nargs="?", type=Path, help=HELP["data_dir"])
    p.add_argument("--pills", action="store_true", help=HELP["pills"])
    p.add_argument("--num-images", type=int, default=160, metavar="N", help=HELP["num_images"])
    p.add_argument("--budget", type=float, required=True, metavar="S", help=HELP["budget"])
    p.add_argument("--threads", type=int, default=os.cpu_count(), metavar="N", help=HELP["threads"])
    p.add_argument("--device", default="cpu", help=HELP["device"])
    p.add_argument("--seed", type=int, default=42, help=HELP["seed"])
    p.add_argument("--defaults", action="store_true", help=HELP["defaults"])
    p.add_argument("--json", type=Path, metavar="PATH", help=HELP["json"])
    p.add_argument("--keep", action="store_true", help=HELP["keep"])
    args = p.parse_args()
    if args.pills == (args.data_dir is not None):
        p.error("give either DATA_DIR or --pills")
    if args.budget <= 0 or args.threads < 1 or args.num_images < 8:
        p.error("--budget must be > 0, --threads >= 1, --num-images >= 8")
    return args


def check_data_dir(data: Path) -> dict[str, Any]:
    """classes.json of a dataset folder, after checking the folder's layout."""
    fix = "see benchmarks/datasets/README.md for the layout"
    if not data.is_dir():
        raise BenchError(f"{data}: no such folder; pass a dataset folder ({fix}) or --pills")
    path = data / "classes.json"
    if not path.is_file():
        raise BenchError(
            f'{path}: missing; write {{"class_names": [...], "class_ids": [...]}} there ({fix})'
        )
    try:
        classes = json.loads(path.read_text())
        names, ids = list(classes["class_names"]), [int(c) for c in classes["class_ids"]]
        ignore = [int(c) for c in classes.get("ignore_class_ids", [])]
    except (ValueError, KeyError, TypeError) as err:
        raise BenchError(
            f"{path}: not valid ({type(err).__name__}: {err}); it needs class_names (strings) "
            "and class_ids (integers), optionally ignore_class_ids"
        ) from None
    if len(names) != len(ids) or len(ids) < 2:
        raise BenchError(f"{path}: class_names and class_ids need the same length (>= 2)")
    for sub in ("images", "labels"):
        folder = data / sub
        if not folder.is_dir() or not any(
            f.suffix.lower() in IMAGE_SUFFIXES for f in folder.rglob("*")
        ):
            raise BenchError(f"{folder}: no images; put the {sub} there as {sub}/<id>.png ({fix})")
    return {"class_names": names, "class_ids": ids, "ignore_class_ids": ignore}


def make_pills(work: Path, num_images: int) -> Path:
    """Synthetic pills (``segcore synth``) in the benchmark's dataset layout."""
    out, params = work / "pills", ROOT / "params.yaml"
    args = ["synth", "--out-dir", str(out), "--num-images", str(num_images)]
    Project(work, 1).run(*args, params=str(params))
    ds = yaml.safe_load(params.read_text())["dataset"]
    classes = {k: ds[k] for k in ("class_names", "class_ids")}
    (out / "classes.json").write_text(json.dumps(classes))
    return out


def write_params(project: Path, data: Path, classes: dict, args: argparse.Namespace) -> dict:
    """The repository's params.yaml with the dataset section replaced; returns it."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    root = data.resolve()
    params["dataset"].update(image_dir=str(root / "images"), segmentation_dir=str(root / "labels"))
    params["dataset"].update({k: classes[k] for k in ("class_names", "class_ids")})
    params["dataset"].update(label_prefix="", label_suffix="", ignore_unmatched=False)
    params["preprocess"]["param"]["ignore_class_ids"] = classes["ignore_class_ids"]
    params["preprocess"]["workers"] = args.threads
    params["train"].update(num_threads=args.threads, device=args.device)
    params["evaluate"].update(device=args.device, resolution="original")
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return params


def plan(prj: Project, budget: float) -> dict[str, list]:
    """``segcore plan --budget --write``; the keys it changed, ``{key: [before, after]}``."""
    file = prj.root / "params.yaml"
    before = flatten(load_params(file))
    prj.run("plan", "--budget", str(budget), "--write")
    after = flatten(load_params(file))
    return {k: [before.get(k), v] for k, v in after.items() if before.get(k) != v}


def train_to_budget(prj: Project, params: dict, budget: float) -> dict[str, Any]:
    """The repository's parameters: one epoch measured, then resumed to fill the budget."""
    prj.run("train", "--epochs", "1")  # the probe: its checkpoint is resumed below
    history = pd.read_csv(prj.root / params["train"]["history"])
    probe = float(history["seconds"].iloc[0])
    epochs = max(1, int(budget // probe))
    if epochs > 1:
        prj.run("train", "--resume", "--epochs", str(epochs))
    return {"probe_epoch_seconds": probe}


def run_segcore(prj: Project, params: dict, budget: float, defaults: bool) -> dict[str, Any]:
    """dataset, split, (the bare loop's samples), plan, preprocess, train, calibrate,
    evaluate."""
    for stage in ("dataset", "split"):
        prj.run(stage)
    prj.run("preprocess", "--out-dir", BARE_SAMPLES)
    planned = {} if defaults else plan(prj, budget)
    params = yaml.safe_load((prj.root / "params.yaml").read_text())
    prj.run("preprocess")
    extra = train_to_budget(prj, params, budget) if defaults else {}
    if not defaults:
        prj.run("train")  # train.time_budget (the plan's) ends it
    history = pd.read_csv(prj.root / params["train"]["history"])
    prj.run("calibrate")  # evaluate.bundle is the calibrated copy
    prj.run("evaluate")
    metrics = json.loads((prj.root / params["evaluate"]["report_dir"] / "metrics.json").read_text())
    return {
        **extra,
        "plan": planned,
        "epochs": float(history["epoch"].iloc[-1]),
        "train_seconds": float(history["seconds"].sum()),
        "best_val_mean_iou": float(history["val_mean_iou"].max()),
        "test_mean_iou": float(metrics["mean_iou"]),
        "test_class_iou": {k: float(v) for k, v in metrics["class_iou"].items()},
        "history": history[["epoch", "seconds", "val_mean_iou"]].to_dict("records"),
    }


def split_rows(ds: Any, split: str) -> list[dict[str, Any]]:
    return ds.split(split).to_dict("records")


def sample_path(ds: Any, row: dict[str, Any]) -> Path:
    return Path(ds.sample_dir) / row["sample_file_name"]


def load_batch(files: list[Path], class_ids: list[int], ignore: list[int]) -> tuple:
    """Images ``(N, C, H, W)`` and targets ``(N, H, W)`` (class indices, IGNORE)."""
    samples = [load_sample(f) for f in files]
    x = torch.from_numpy(np.stack([s["image"] for s in samples]))
    y = label_to_index(np.stack([s["label"] for s in samples]), class_ids, ignore)
    y[(y < 0) | (y >= len(class_ids))] = IGNORE
    return x, torch.from_numpy(y)


@torch.no_grad()
def measure(model: torch.nn.Module, rows: list[dict], ds: Any, ignore: list, dev: str) -> dict:
    """segcore's mean_iou and class_iou over ``rows`` at the original labels' resolution:
    softmax probabilities resized bilinearly to each label file's size, then the argmax
    (segcore's ``class_map``), one confusion matrix."""
    model.eval()
    k = len(ds.class_ids)
    masked = [i for i, c in enumerate(ds.class_ids) if c in ignore]  # never predicted
    labels = OriginalLabels(
        Path(ds.segmentation_dir), PreprocessParams.model_validate(ds.preprocess_param)
    )
    total = np.zeros((k, k), dtype=np.int64)
    for i in range(0, len(rows), 8):
        batch = rows[i : i + 8]
        x = torch.from_numpy(np.stack([load_sample(sample_path(ds, r))["image"] for r in batch]))
        logits = model(x.to(dev)).float()
        logits[:, masked] = -math.inf
        for row, probs in zip(batch, logits.softmax(1).cpu().numpy(), strict=True):
            truth = labels.label(row)
            pred, _ = class_map(probs, truth.shape)
            target = label_to_index(truth, ds.class_ids, ignore)
            total += confusion_matrix_np(pred, target, k)
    return compute_measures(total, ["mean_iou", "class_iou"])


def train_bare(ds: Any, ignore: list[int], budget: float, args: argparse.Namespace) -> tuple:
    """The bare loop for ``budget`` training seconds; returns (model, its log)."""
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    train = [sample_path(ds, r) for r in split_rows(ds, "train")]
    val = split_rows(ds, "validation")
    channels, k = load_sample(train[0])["image"].shape[0], len(ds.class_ids)
    model = smp.Unet("resnet18", encoder_weights=None, in_channels=channels, classes=k)
    model = model.to(args.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=IGNORE)
    spent, steps, per_epoch, curve = 0.0, 0, math.ceil(len(train) / 4), []
    while spent < budget:
        model.train()
        order = rng.permutation(len(train))
        for i in range(0, len(order), 4):
            start = time.perf_counter()
            x, y = load_batch([train[j] for j in order[i : i + 4]], ds.class_ids, ignore)
            for n in range(len(x)):  # random horizontal / vertical flips per sample
                for dim in (-1, -2):
                    if rng.random() < 0.5:
                        x[n], y[n] = x[n].flip(dim), y[n].flip(dim)
            optimizer.zero_grad()
            loss = loss_fn(model(x.to(args.device)), y.to(args.device))
            loss.backward()
            optimizer.step()
            spent += time.perf_counter() - start
            steps += 1
            if spent >= budget:
                break
        miou = measure(model, val, ds, ignore, args.device)["mean_iou"]
        curve.append({"epoch": steps / per_epoch, "seconds": spent, "val_mean_iou": miou})
        print(f"  bare loop: epoch {steps / per_epoch:.2f}, {spent:.1f} s, val mean IoU {miou:.4f}")
    log = {"steps": steps, "epochs": steps / per_epoch, "train_seconds": spent}
    return model, {**log, "final_val_mean_iou": curve[-1]["val_mean_iou"], "curve": curve}


def run_bare(ds: Any, budget: float, args: argparse.Namespace) -> dict:
    """Train the bare loop on its samples (the repository's resize) and measure the test
    split at original resolution."""
    ignore = list((ds.preprocess_param or {}).get("ignore_class_ids", []))
    model, log = train_bare(ds, ignore, budget, args)
    test = measure(model, split_rows(ds, "test"), ds, ignore, args.device)
    log["test_mean_iou"] = float(test["mean_iou"])
    log["test_class_iou"] = dict(zip(ds.class_names, map(float, test["class_iou"]), strict=True))
    return log


def rarest_defect(ds: Any, seg: dict, bare: dict) -> dict | None:
    """The defect class (id not 0, not ignored) with the fewest pixels, and its IoUs."""
    ignore = (ds.preprocess_param or {}).get("ignore_class_ids", [])
    counts = ds.pixel_counts().sum(axis=0)
    found = [(n, name) for name, c, n in zip(ds.class_names, ds.class_ids, counts, strict=True)
             if c != 0 and c not in ignore and n > 0]  # fmt: skip
    if not found:
        return None
    n, name = min(found)
    s, b = seg["test_class_iou"][name], bare["test_class_iou"][name]
    diff = s - b if s >= 0 and b >= 0 else None  # -1: no such pixel in the test split
    return {"name": name, "pixel_share": float(n / counts.sum()), "difference": diff}


def time_to_quality(seg: dict, bare: dict) -> dict[str, Any]:
    """Training seconds segcore needed to reach the bare loop's final validation mean IoU."""
    target, spent, reached = bare["final_val_mean_iou"], 0.0, None
    for row in seg["history"]:
        spent += row["seconds"]
        if row["val_mean_iou"] >= target:
            reached = spent
            break
    fraction = None if reached is None else reached / bare["train_seconds"]
    return {"target_val_mean_iou": target, "segcore_seconds": reached, "fraction": fraction}


def _ratio(a: float, b: float) -> float | None:
    return a / b if b > 0 and a >= 0 else None


def _fmt(v: float | None, spec: str = ".4f") -> str:
    return "n/a" if v is None or v < 0 else format(v, spec)


def report(result: dict) -> None:
    seg, bare, ttq = result["segcore"], result["bare"], result["time_to_quality"]
    if seg["plan"]:
        print("\nsegcore plan changed (see segcore.log for its reasons):")
        for key, (before, after) in seg["plan"].items():
            print(f"  {key}: {before} -> {after}")
    print(
        f"\n{'test measure (original resolution)':<36}{'segcore':>10}{'bare':>10}{'segcore/bare':>14}"
    )
    rows = [("mean IoU", seg["test_mean_iou"], bare["test_mean_iou"])]
    rows += [(f"IoU {k}", v, bare["test_class_iou"][k]) for k, v in seg["test_class_iou"].items()]
    for name, s, b in rows:
        print(f"{name:<36}{_fmt(s):>10}{_fmt(b):>10}{_fmt(_ratio(s, b), '.3f'):>14}")
    if rare := result["rarest_defect_class"]:
        diff = "n/a" if rare["difference"] is None else f"{rare['difference']:+.4f}"
        share = f"{100 * rare['pixel_share']:.3f}% of the pixels"
        print(f"rarest defect class: {rare['name']} ({share}), IoU segcore - bare = {diff}")
    print(
        f"training ({result['threads']} torch threads, {result['device']}, wall time): "
        f"segcore {seg['epochs']:.2f} epochs in {seg['train_seconds']:.1f} s (budget "
        f"{result['budget']:.0f} s, {'defaults' if result['defaults'] else 'planned'}); bare "
        f"{bare['epochs']:.2f} epochs ({bare['steps']} steps) in {bare['train_seconds']:.1f} s"
    )
    got = "not reached"
    if ttq["segcore_seconds"] is not None:
        got = f"{ttq['segcore_seconds']:.1f} s = {ttq['fraction']:.2f} of the bare loop's budget"
    print(
        f"time-to-quality (bare loop's final validation mean IoU "
        f"{ttq['target_val_mean_iou']:.4f}): segcore {got}; segcore's best validation mean "
        f"IoU {seg['best_val_mean_iou']:.4f}, tested with its best bundle, the bare loop final"
    )


def benchmark(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    data = make_pills(work, args.num_images) if args.pills else args.data_dir
    classes = check_data_dir(data)
    prj = Project(work / "project", args.threads)
    params = write_params(prj.root, data, classes, args)
    print(f"{data}: {len(classes['class_ids'])} classes; project {prj.root}")
    torch.set_num_threads(args.threads)
    seg = run_segcore(prj, params, args.budget, args.defaults)
    print(f"  bare loop: {seg['train_seconds']:.1f} training seconds (segcore's)")
    ds = segcore.DLDataset.load(prj.root / BARE_SAMPLES / "dataset.parquet")
    bare = run_bare(ds, seg["train_seconds"], args)
    return {
        **{k: getattr(args, k) for k in ("budget", "threads", "device", "seed", "defaults")},
        "data_dir": str(data),
        "classes": classes,
        "segcore": seg,
        "bare": bare,
        "ratio_test_mean_iou": _ratio(seg["test_mean_iou"], bare["test_mean_iou"]),
        "rarest_defect_class": rarest_defect(ds, seg, bare),
        "time_to_quality": time_to_quality(seg, bare),
    }


def main() -> int:
    args = parse_args()
    work = Path(tempfile.mkdtemp(prefix="segcore-quality-"))
    try:
        result = benchmark(args, work)
        report(result)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(result, indent=2) + "\n")
            print(f"written: {args.json}")
    except BenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        if args.keep:
            print(f"kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
