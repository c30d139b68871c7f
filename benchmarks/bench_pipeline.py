"""`make run` end to end: wall time and test measures against the goals.

Copies the working tree (what a fresh clone holds, uncommitted changes included; no data,
models, reports or MLflow store) to a temporary folder, makes it a git repository, runs
``python -m flows.run`` there with the default params, and prints::

    wall time           < 600 s         (install excluded; Prefect's local server included)
    test mean_iou       >= 0.80
    each defect class   IoU >= 0.60     (every class but the first, "good")

Run it on a quiet machine; ``--threads 2`` limits torch and the preprocess workers to two
cores, as on the reference 2-core CPU::

    .venv/bin/python benchmarks/bench_pipeline.py --threads 2
    .venv/bin/python benchmarks/bench_pipeline.py --quick    # tiny params, a smoke run

Exit code 0 when every goal is met (``--quick`` checks only that the pipeline ran).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from segcore.params import update_params_file

ROOT = Path(__file__).resolve().parents[1]
GOAL_SECONDS = 600.0
GOAL_MEAN_IOU = 0.80
GOAL_DEFECT_IOU = 0.60
QUICK = {
    ("synth", "num_images"): 16,
    ("synth", "width"): 64,
    ("synth", "height"): 64,
    ("preprocess", "param", "image_width"): 32,
    ("preprocess", "param", "image_height"): 32,
    ("train", "num_epochs"): 2,
    ("train", "batch_size"): 4,
}


def copy_working_tree(dest: Path) -> None:
    """Files git tracks or would track (ignored ones left out), as in a fresh clone."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for rel in filter(None, listed.split("\0")):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    git = ["git", "-c", "user.email=bench@segcore", "-c", "user.name=bench"]
    subprocess.run([*git, "init", "-q"], cwd=dest, check=True)
    subprocess.run([*git, "add", "-A"], cwd=dest, check=True)
    subprocess.run([*git, "commit", "-qm", "benchmark copy"], cwd=dest, check=True)


def run_pipeline(repo: Path, threads: int | None) -> float:
    """``python -m flows.run`` in ``repo``; returns its wall time in seconds."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("SEGCORE_PROGRESS", "0")
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        update_params_file(
            repo / "params.yaml",
            {("preprocess", "workers"): threads, ("train", "num_threads"): threads},
        )
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "flows.run"], cwd=repo, env=env, check=False)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"pipeline failed (exit code {proc.returncode}); see the output above")
    return seconds


def report(repo: Path, seconds: float, quick: bool) -> bool:
    """Print the measures against the goals; True when all are met."""
    metrics = json.loads((repo / "reports" / "metrics.json").read_text())
    class_iou: dict[str, float] = metrics.get("class_iou", {})
    defects = dict(list(class_iou.items())[1:])
    rows = [
        ("wall time [s]", seconds, f"< {GOAL_SECONDS:.0f}", seconds < GOAL_SECONDS),
        (
            "test mean_iou",
            metrics["mean_iou"],
            f">= {GOAL_MEAN_IOU}",
            metrics["mean_iou"] >= GOAL_MEAN_IOU,
        ),
    ]
    rows += [
        (f"test IoU {name}", v, f">= {GOAL_DEFECT_IOU}", v >= GOAL_DEFECT_IOU)
        for name, v in defects.items()
    ]
    print(f"\n{'measure':<24}{'value':>10}  {'goal':<10} met")
    for name, value, goal, met in rows:
        print(f"{name:<24}{value:>10.3f}  {goal:<10} {'yes' if met else 'NO'}")
    print(f"(other classes: {', '.join(f'{k} {v:.3f}' for k, v in class_iou.items())})")
    if quick:
        print("--quick: tiny params, the goals do not apply")
        return True
    return all(met for *_, met in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny params: a smoke run")
    parser.add_argument("--threads", type=int, default=None, help="limit CPU threads")
    parser.add_argument("--keep", action="store_true", help="keep the temporary copy")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="segcore-bench-"))
    try:
        repo = work / "segcore"
        copy_working_tree(repo)
        if args.quick:
            update_params_file(repo / "params.yaml", QUICK)
        seconds = run_pipeline(repo, args.threads)
        ok = report(repo, seconds, args.quick)
    finally:
        if args.keep:
            print(f"kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
