"""Inference throughput: `segcore infer` on a folder against the bare forward, ORT against torch.

Prints, from one run on one machine:

- images/s of the whole folder pipeline (decode, preprocess, model, postprocess at the
  input's size, regions, writing three images per input) with the torch backend and
  with onnxruntime, against the bare ``module(x)`` forward on ready tensors at the same
  batch size; goal: pipeline >= 0.8x bare forward;
- onnxruntime against eager torch on the same ready tensors; goal on CPU: >= 1.5x.

It builds its own bundle (the compact model, random weights: throughput does not depend
on them) and synthetic pill images in a temporary folder::

    .venv/bin/python benchmarks/bench_infer.py            # 64 images of 256 x 256
    .venv/bin/python benchmarks/bench_infer.py --quick    # a smoke run in seconds
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch


def _rate(fn: Callable[[], object], images: int, repeats: int) -> float:
    """Best images/s over ``repeats`` runs of ``fn`` (after one warm-up run)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return images / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke run")
    parser.add_argument("--images", type=int, default=64, help="images in the folder")
    parser.add_argument("--size", type=int, default=256, help="image and network size (px)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--model", default="compact")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch/ORT threads; 0: default")
    args = parser.parse_args()
    if args.quick:
        args.images, args.size, args.repeats = 8, 64, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("SEGCORE_PROGRESS", "0")

    from segcore.common.images import list_images, read_image
    from segcore.data.synth import generate_pills
    from segcore.infer.apply import load_model
    from segcore.infer.files import run_inference
    from segcore.infer.onnx import export_onnx
    from segcore.model.bundle import BundleConfig, save_bundle
    from segcore.model.factory import create_model
    from segcore.params import PreprocessParams
    from segcore.preprocess.transforms import preprocess_samples

    with tempfile.TemporaryDirectory(prefix="segcore-bench-") as tmp:
        root = Path(tmp)
        generate_pills(root / "pills", num_images=args.images, width=args.size, height=args.size)
        folder = root / "pills" / "images"
        param = PreprocessParams(image_width=args.size, image_height=args.size)
        module = create_model(args.model, 3, 3)
        config = BundleConfig(
            architecture={"name": args.model},
            class_ids=[0, 1, 2],
            class_names=["good", "contamination", "crack"],
            ignore_class_ids=[],
            preprocess_param=param.model_dump(),
            training_summary={},
        )
        bundle = save_bundle(root / "bundle", module, config)
        export_onnx(bundle)

        images = [read_image(p) for p in list_images(folder)]
        ready = preprocess_samples(images, param)
        batches = [ready[i : i + args.batch_size] for i in range(0, len(ready), args.batch_size)]
        torch_model = load_model(bundle, device=args.device)
        onnx_model = load_model(bundle, device=args.device, backend="onnx")
        net = torch_model.module
        dev = torch_model.device
        tensors = [torch.from_numpy(b).to(dev) for b in batches]

        def bare() -> None:
            with torch.inference_mode():
                for x in tensors:
                    net(x)
            if dev.type == "cuda":
                torch.cuda.synchronize()

        def ort() -> None:
            for b in batches:
                onnx_model.session.run(None, {"image": b})

        def pipeline(model: object) -> Callable[[], object]:
            return lambda: run_inference(model, [folder], root / "out", batch_size=args.batch_size)

        n = len(images)
        rates = {
            "bare forward, torch (ready tensors)": _rate(bare, n, args.repeats),
            "onnxruntime (ready tensors)": _rate(ort, n, args.repeats),
            "segcore infer pipeline, torch": _rate(pipeline(torch_model), n, args.repeats),
            "segcore infer pipeline, onnx": _rate(pipeline(onnx_model), n, args.repeats),
        }

    base = rates["bare forward, torch (ready tensors)"]
    print(
        f"bench_infer: {n} images {args.size}x{args.size}, model {args.model}, batch "
        f"{args.batch_size}, device {args.device}, torch threads {torch.get_num_threads()}, "
        f"{os.cpu_count()} CPUs"
    )
    for name, rate in rates.items():
        print(f"  {name:40s} {rate:8.2f} images/s   {rate / base:5.2f}x bare forward")
    infer_ratio = rates["segcore infer pipeline, torch"] / base
    ort_ratio = rates["onnxruntime (ready tensors)"] / base
    print(
        f"  pipeline / bare forward: {infer_ratio:.2f}x (goal >= 0.8x: "
        f"{'met' if infer_ratio >= 0.8 else 'NOT met'})"
    )
    print(
        f"  onnxruntime / eager torch: {ort_ratio:.2f}x (goal on CPU >= 1.5x: "
        f"{'met' if ort_ratio >= 1.5 else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
