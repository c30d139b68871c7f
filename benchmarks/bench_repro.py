"""Reproducibility of training: what gives bit-identical weights, and what changes them.

Builds a tiny synthetic pill dataset (24 images of 96 x 96 px, preprocessed at 64 x 64 as
in ``tests/conftest.py``), then trains a small compact net (``base_channels`` 8, ``depth``
3, batch size 4, 2 epochs) with ``segcore train`` in a fresh process per condition and
compares the final weights (``models/final/model.safetensors``) and the validation history
bit for bit with the first run:

- ``a``: default (the machine's own instruction sets and torch's thread count);
- ``b``: default again, on a dataset built anew in a fresh process with another
  ``PYTHONHASHSEED`` from a copy of the raw files written in reverse order (so neither
  hash order nor file-system listing order may reach the data order); must be identical;
- ``c``: ``ONEDNN_MAX_CPU_ISA=AVX2`` (oneDNN kernels as on a CPU without AVX-512/AMX);
- ``d``: ``train.num_threads: 1`` instead of torch's default (one thread per core);
- ``e``: ``ATEN_CPU_CAPABILITY=avx2`` (PyTorch's own vectorised kernels restricted);
- ``f``: ``ONEDNN_MAX_CPU_ISA=SSE41`` and ``g``: ``ATEN_CPU_CAPABILITY=default``: lower
  instruction sets still, which every x86-64 CPU has; they show the effect of another
  instruction set on a machine where ``c`` and ``e`` are already the native ones.

::

    .venv/bin/python benchmarks/bench_repro.py              # all conditions (~1 minute)
    .venv/bin/python benchmarks/bench_repro.py --only a b d
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
import yaml

TINY = {"num_images": 24, "width": 96, "height": 96, "defect_free_fraction": 0.2, "seed": 7}
SIZE = 64
TIMING_COLUMNS = ("seconds", "eval_seconds")
"""History columns that measure time, not results."""


@dataclass(frozen=True)
class Condition:
    key: str
    label: str
    env: dict[str, str] = field(default_factory=dict)
    train: dict[str, object] = field(default_factory=dict)
    fresh_data: bool = False


CONDITIONS = [
    Condition("a", "default"),
    Condition("b", "default again (new data build, PYTHONHASHSEED=12345)", fresh_data=True),
    Condition("c", "ONEDNN_MAX_CPU_ISA=AVX2", env={"ONEDNN_MAX_CPU_ISA": "AVX2"}),
    Condition("d", "train.num_threads: 1", train={"num_threads": 1}),
    Condition("e", "ATEN_CPU_CAPABILITY=avx2", env={"ATEN_CPU_CAPABILITY": "avx2"}),
    Condition("f", "ONEDNN_MAX_CPU_ISA=SSE41", env={"ONEDNN_MAX_CPU_ISA": "SSE41"}),
    Condition("g", "ATEN_CPU_CAPABILITY=default", env={"ATEN_CPU_CAPABILITY": "default"}),
]

_PREPARE = """
import sys
from pathlib import Path
from segcore.data.dldataset import DLDataset
from segcore.data.read import read_dataset
from segcore.data.split import split_dataset
from segcore.params import PreprocessParams
from segcore.preprocess.stage import preprocess_dataset

raw, out, size = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
ds = read_dataset(raw / "images", raw / "labels", ["good", "contamination", "crack"], [0, 1, 2])
ds = split_dataset(ds, training_percent=60, validation_percent=20, seed=1)
split = ds.save(out / "split.parquet")
param = PreprocessParams(image_width=size, image_height=size)
preprocess_dataset(DLDataset.load(split), param, out / "pre", workers=1)
"""


def _env(extra: dict[str, str], hash_seed: str | None = None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ONEDNN_", "DNNL_", "ATEN_CPU", "OMP_", "MKL_"))
    }
    env.pop("PYTHONHASHSEED", None)
    if hash_seed is not None:
        env["PYTHONHASHSEED"] = hash_seed
    env["SEGCORE_PROGRESS"] = "0"
    return env | extra


def prepare(raw: Path, out: Path, hash_seed: str) -> Path:
    """Dataset, split and preprocess in a fresh process; the preprocessed table's path."""
    out.mkdir(parents=True)
    cmd = [sys.executable, "-c", _PREPARE, str(raw), str(out), str(SIZE)]
    subprocess.run(cmd, check=True, env=_env({}, hash_seed), capture_output=True)
    return out / "pre" / "dataset.parquet"


def reversed_copy(raw: Path, dst: Path) -> Path:
    """The raw folder copied with its files created in reverse name order."""
    for sub in ("images", "labels"):
        (dst / sub).mkdir(parents=True)
        for f in sorted((raw / sub).iterdir(), reverse=True):
            shutil.copyfile(f, dst / sub / f.name)
    return dst


def same_data(a: Path, b: Path) -> bool:
    """The two preprocessed datasets have the same table order and byte-identical samples."""
    ta, tb = pd.read_parquet(a), pd.read_parquet(b)
    cols = [c for c in ("image_file_name", "split", "sample_file_name") if c in ta.columns]
    if not ta[cols].equals(tb[cols]):
        return False
    files = ta["sample_file_name"]
    return all(
        (a.parent / "samples" / f).read_bytes() == (b.parent / "samples" / f).read_bytes()
        for f in files
    )


def train(cond: Condition, dataset: Path, root: Path, hash_seed: str | None) -> Path:
    """``segcore train`` in a fresh process; the run folder."""
    run = root / f"run_{cond.key}"
    run.mkdir()
    section = {
        "dataset": str(dataset),
        "out_dir": str(run / "models"),
        "history": str(run / "history.csv"),
        "model": "compact",
        "model_kwargs": {"base_channels": 8, "depth": 3},
        "batch_size": 4,
        "num_epochs": 2,
        "change_strategies": [],
        "device": "cpu",
        "seed": 42,
    } | cond.train
    (run / "params.yaml").write_text(yaml.safe_dump({"train": section}))
    cmd = [sys.executable, "-m", "segcore.cli", "train", "--params", "params.yaml"]
    proc = subprocess.run(cmd, cwd=run, env=_env(cond.env, hash_seed), capture_output=True)
    if proc.returncode:
        sys.exit(f"condition {cond.key} failed:\n{proc.stderr.decode()[-3000:]}")
    return run


def compare(ref: Path, run: Path) -> tuple[bool, float, float, float]:
    """(identical weights and history, max abs weight difference, final val mean IoU,
    last epoch's training loss)."""
    from safetensors.torch import load_file

    wa = load_file(ref / "models" / "final" / "model.safetensors")
    wb = load_file(run / "models" / "final" / "model.safetensors")
    same = wa.keys() == wb.keys()
    diff = 0.0
    for k in wa.keys() & wb.keys():
        same = same and torch.equal(wa[k], wb[k])
        if wa[k].is_floating_point():
            diff = max(diff, (wa[k] - wb[k]).abs().max().item())
    ha, hb = pd.read_csv(ref / "history.csv"), pd.read_csv(run / "history.csv")
    ha = ha.drop(columns=[c for c in TIMING_COLUMNS if c in ha.columns])
    hb = hb.drop(columns=[c for c in TIMING_COLUMNS if c in hb.columns])
    same = same and ha.equals(hb)
    return same, diff, float(hb["val_mean_iou"].iloc[-1]), float(hb["loss"].iloc[-1])


def cpu_line() -> str:
    """The CPU model and which of AVX2, AVX-512 and AMX it reports (Linux)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "CPU unknown"
    lines = info.splitlines()
    model = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "?")
    flags = next((ln.split(":", 1)[1].split() for ln in lines if ln.startswith("flags")), [])
    isa = [
        n for n, f in (("AVX2", "avx2"), ("AVX-512", "avx512f"), ("AMX", "amx_tile")) if f in flags
    ]
    return f"CPU {model} ({', '.join(isa) or 'no AVX2'})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", help="condition keys (a is always run first)")
    args = ap.parse_args()
    conds = [c for c in CONDITIONS if not args.only or c.key in args.only or c.key == "a"]
    print(cpu_line())
    print(f"torch {torch.__version__}, ATen capability {torch.backends.cpu.get_cpu_capability()}")
    print(f"default threads {torch.get_num_threads()}, cores {os.cpu_count()}\n")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        from segcore.data.synth import generate_pills

        raw = root / "raw"
        generate_pills(raw, **TINY)
        dataset = prepare(raw, root / "data", hash_seed="0")
        rows, ref = [], None
        for cond in conds:
            data, seed = dataset, None
            if cond.fresh_data:
                raw_b = reversed_copy(raw, root / "raw_reversed")
                data, seed = prepare(raw_b, root / "data_b", hash_seed="12345"), "12345"
                print(
                    f"({cond.key}) data rebuilt: identical order and samples: "
                    f"{'yes' if same_data(dataset, data) else 'NO'}"
                )
            run = train(cond, data, root, seed)
            ref = ref or run
            same, diff, miou, loss = compare(ref, run)
            rows.append((f"({cond.key}) {cond.label}", "yes" if same else "no", diff, miou, loss))
        width = max(len(r[0]) for r in rows)
        print(f"\n{'condition':<{width}}  identical  max|dw|    val mean IoU  last loss")
        for label, same, diff, miou, loss in rows:
            print(f"{label:<{width}}  {same:<9}  {diff:<9.3g}  {miou:<12.4f}  {loss:.8f}")


if __name__ == "__main__":
    main()
