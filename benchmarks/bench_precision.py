"""Precision: bf16 training and inference, int8 onnxruntime, against fp32 in the same run.

Prints, from one run on one machine:

1. the machine's conv peak: a 3x3 convolution 64->64 channels on 8x128x128, channels-last,
   in fp32 and under bf16 autocast (GFLOP/s), and whether the CPU has native bf16
   (``amx_bf16`` / ``avx512_bf16``; what ``precision: auto`` picks);
2. training samples/s of the pill demo model (compact, 256x256, batch 4, Adam,
   channels-last) in fp32 and bf16 (segcore's own forward/backward/step), their ratio
   (goal >= 2.5 with AMX), and training GFLOP/s (``torch.utils.flop_counter`` per sample x
   samples/s) over the bf16 conv peak (goal >= 0.4);
3. inference images/s on the validation split of a trained pill model: fp32 onnxruntime
   (the baseline), int8 onnxruntime (``export-onnx --quantize int8``), fp32 and bf16 torch,
   each with its validation mean IoU change against fp32 (goal >= 2x at <= 0.01).

The trained model is ``--bundle`` with its preprocessed ``--dataset`` (e.g. the demo's
``models/best`` and ``data/preprocessed/dataset.parquet`` after ``make run``); without
them a short training on a small synthetic pill set makes one (its quality is below the
full demo's, so its measure changes are an upper bound)::

    .venv/bin/python benchmarks/bench_precision.py                 # a few minutes
    .venv/bin/python benchmarks/bench_precision.py --quick         # a smoke run
    .venv/bin/python benchmarks/bench_precision.py --bundle models/best \\
        --dataset data/preprocessed/dataset.parquet
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch


def timed(fn: Callable[[], Any], budget: float, min_reps: int = 2) -> float:
    """Seconds per call of ``fn``: one warm-up call, then calls until ``budget`` seconds
    (at least ``min_reps``); the best call wins."""
    fn()
    best, spent, reps = float("inf"), 0.0, 0
    while reps < min_reps or spent < budget:
        t = time.perf_counter()
        fn()
        dt = time.perf_counter() - t
        best, spent, reps = min(best, dt), spent + dt, reps + 1
    return best


def conv_peak(budget: float, batch: int) -> dict[str, float]:
    """GFLOP/s of a 3x3 conv 64->64 on ``batch`` x 128 x 128, fp32 and bf16 autocast."""
    conv = torch.nn.Conv2d(64, 64, 3, padding=1).to(memory_format=torch.channels_last)
    x = torch.randn(batch, 64, 128, 128).contiguous(memory_format=torch.channels_last)
    flops = 2 * batch * 128 * 128 * 64 * 64 * 9
    out = {}
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):

        def run(dtype: torch.dtype | None = dtype) -> None:
            with torch.inference_mode(), torch.autocast("cpu", dtype, enabled=dtype is not None):
                conv(x)

        out[name] = flops / timed(run, budget) / 1e9
    return out


def train_flops_per_sample(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """FLOPs of forward + backward per sample (``torch.utils.flop_counter``)."""
    from torch.utils.flop_counter import FlopCounterMode

    from segcore.train.loss import weighted_cross_entropy

    with FlopCounterMode(display=False) as counter:
        weighted_cross_entropy(model(x), y, torch.ones_like(y, dtype=torch.float32)).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / x.shape[0]


def train_rates(size: int, steps: int, batch: int) -> tuple[dict[str, float], float]:
    """Samples/s of training steps in fp32 and bf16, and FLOPs per training sample."""
    from segcore.common.precision import EmulatedPrecisionWarning, resolve_precision
    from segcore.model.factory import create_model
    from segcore.train.amp import backward, forward, optimizer_step
    from segcore.train.loss import weighted_cross_entropy

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, size, size, generator=gen).contiguous(
        memory_format=torch.channels_last
    )
    y = torch.randint(0, 3, (batch, size, size), generator=gen)
    w = torch.ones(batch, size, size)
    rates, flops = {}, 0.0
    for name in ("fp32", "bf16"):
        torch.manual_seed(0)
        model = create_model("compact", 3, 3).to(memory_format=torch.channels_last)
        flops = flops or train_flops_per_sample(model, x, y)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", EmulatedPrecisionWarning)
            precision = resolve_precision(name, torch.device("cpu"))

        def step(model: torch.nn.Module = model, opt: Any = optimizer, p: Any = precision) -> None:
            backward(weighted_cross_entropy(forward(model, x, p), y, w), None)
            optimizer_step(opt, None)

        # Emulated bf16 (no AMX / AVX-512 BF16) is an order of magnitude slower: one step.
        reps = steps if precision.native else 1
        rates[name] = batch / timed(step, 0.0, min_reps=reps)
    return rates, flops


def make_model(root: Path, size: int, images: int, epochs: int) -> tuple[Path, Path]:
    """A pill model trained briefly (the demo's params, fewer images and epochs)."""
    from segcore.data.read import read_dataset
    from segcore.data.split import split_dataset
    from segcore.data.synth import generate_pills
    from segcore.params import load_params
    from segcore.preprocess.stage import preprocess_dataset
    from segcore.train.loop import train_model

    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    generate_pills(root / "raw", num_images=images, width=size, height=size, seed=42)
    ds = read_dataset(
        root / "raw/images",
        root / "raw/labels",
        params.dataset.class_names,
        params.dataset.class_ids,
    )
    ds = split_dataset(ds, training_percent=70, validation_percent=30, seed=42)
    param = params.preprocess.param.model_copy(update={"image_width": size, "image_height": size})
    preprocess_dataset(
        ds, param, root / "pre", class_weights=params.preprocess.class_weights, workers=1
    )
    train = params.train.model_copy(
        update={"num_epochs": epochs, "change_strategies": [], "device": "cpu"}
    )
    dataset = root / "pre" / "dataset.parquet"
    train_model(dataset, train, out_dir=root / "models", history_path=root / "history.csv")
    return root / "models" / "best", dataset


def inference(bundle: Path, dataset: Path, out: Path, budget: float) -> list[tuple]:
    """(name, images/s, validation mean IoU) per backend and precision."""
    from segcore.common.precision import EmulatedPrecisionWarning
    from segcore.evaluate.evaluation import evaluate_model
    from segcore.infer.apply import SegModel, load_model
    from segcore.infer.onnx import export_onnx, onnx_session
    from segcore.infer.quantize import export_int8, split_images

    cpu = torch.device("cpu")
    fp32_onnx, int8_onnx = out / "fp32.onnx", out / "int8.onnx"
    export_onnx(bundle, fp32_onnx)
    _, parity = export_int8(bundle, dataset, int8_onnx)
    print(f"  {parity.render()}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmulatedPrecisionWarning)
        bf16 = load_model(bundle, device="cpu", precision="bf16")
    fp32 = load_model(bundle, device="cpu")
    models = {
        "fp32 onnxruntime": SegModel(None, fp32.config, session=onnx_session(fp32_onnx, cpu)),
        "int8 onnxruntime": SegModel(None, fp32.config, session=onnx_session(int8_onnx, cpu)),
        "fp32 torch": fp32,
        "bf16 torch": bf16,
    }
    batch = np.stack(split_images(dataset, "validation", 4, fp32.config))
    rows = []
    for name, model in models.items():
        rate = len(batch) / timed(lambda m=model: m.probabilities(batch), budget, min_reps=1)
        miou = evaluate_model(model, dataset, split="validation", measures=["mean_iou"])
        rows.append((name, rate, miou.scalar_measures()["mean_iou"]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run (small sizes)")
    parser.add_argument("--bundle", type=Path, help="trained model bundle (default: train one)")
    parser.add_argument("--dataset", type=Path, help="its preprocessed dataset")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument(
        "--infer-size", type=int, default=256, help="image size of the model trained here"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from segcore.common.precision import _cpu_flags, native_bf16, resolve_precision

    quick = args.quick
    cpu = torch.device("cpu")
    flags = sorted(_cpu_flags() & {"amx_bf16", "avx512_bf16", "avx512f", "avx2"})
    print(
        f"CPU flags: {' '.join(flags) or '-'}; {torch.get_num_threads()} threads, torch "
        f"{torch.__version__}; native bf16: {native_bf16(cpu)}; precision auto -> "
        f"{resolve_precision('auto', cpu).name}"
    )

    peak = conv_peak(budget=0.5 if quick else 3.0, batch=2 if quick else 8)
    print(
        f"\n1. conv 3x3 64->64 peak: fp32 {peak['fp32']:.1f} GFLOP/s, bf16 "
        f"{peak['bf16']:.1f} GFLOP/s (bf16/fp32 {peak['bf16'] / peak['fp32']:.2f}x)"
    )

    size = 128 if quick else 256
    rates, flops = train_rates(size, steps=1 if quick else 3, batch=4)
    print(
        f"\n2. training, compact model {size}x{size}, batch 4: "
        f"{flops / 1e9:.2f} GFLOP per sample (forward + backward)"
    )
    for name, rate in rates.items():
        gflops = rate * flops / 1e9
        print(
            f"   {name}: {rate:.2f} samples/s, {gflops:.1f} GFLOP/s = "
            f"{gflops / peak['bf16']:.2f} of the bf16 conv peak, "
            f"{gflops / peak['fp32']:.2f} of the fp32 one"
        )
    print(f"   bf16 / fp32 samples/s: {rates['bf16'] / rates['fp32']:.2f}x (goal >= 2.5 with AMX)")

    with tempfile.TemporaryDirectory(prefix="bench-precision-") as tmp:
        root = Path(tmp)
        if args.bundle is None:
            size = 64 if quick else args.infer_size
            bundle, dataset = make_model(
                root, size=size, images=24 if quick else 40, epochs=2 if quick else 6
            )
            print(
                f"\n3. inference on a pill model trained here briefly ({size} px, "
                f"{24 if quick else 40} images, {2 if quick else 6} epochs), validation split:"
            )
        else:
            bundle, dataset = args.bundle, args.dataset
            print(f"\n3. inference on {bundle}, validation split of {dataset}:")
        rows = inference(bundle, dataset, root, budget=0.5 if quick else 3.0)
    base_rate, base_iou = rows[0][1], rows[0][2]
    for name, rate, miou in rows:
        print(
            f"   {name:17s} {rate:7.2f} images/s ({rate / base_rate:.2f}x fp32 onnxruntime), "
            f"mean IoU {miou:.4f} ({miou - base_iou:+.4f})"
        )


if __name__ == "__main__":
    main()
