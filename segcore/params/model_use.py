"""The sections of the stages that use a trained model: ``evaluate`` and ``infer``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from segcore.common.constants import Precision, Split
from segcore.params.base import Section


class EvaluateParams(Section):
    """Evaluation and report (HALCON: evaluate_dl_model)."""

    bundle: str = "calibrated"
    """Model bundle to evaluate (the calibrated copy of models/best)."""
    dataset: str = "data/preprocessed/dataset.parquet"
    """Preprocessed dataset table."""
    split: Split = "test"
    """Split to evaluate."""
    measures: list[str] = ["all"]
    """Measures to compute; ``all`` gives every one."""
    batch_size: int = Field(8, gt=0)
    """Samples per forward pass."""
    worst_k: int = Field(6, ge=0)
    """Number of worst samples (by per-image mean IoU) shown in the report."""
    report_dir: str = "reports"
    """Folder for metrics.json, plots and the report."""
    device: str = "auto"
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""


class InferParams(Section):
    """Inference on new images (HALCON: apply_dl_model)."""

    batch_size: int = Field(8, gt=0)
    """Images per forward pass."""
    min_area: int = Field(1, ge=1)
    """Regions smaller than this many pixels are left out of the regions table."""
    backend: Literal["torch", "onnx"] = "torch"
    """``torch`` (the bundle's weights) or ``onnx`` (onnxruntime on ``model.onnx``)."""
    device: str = "auto"
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""
    precision: Precision = "fp32"
    """Torch backend: ``fp32``; ``bf16`` / ``fp16`` run the network under autocast (bf16
    native on CPUs with AMX / AVX-512 BF16 and recent GPUs; fp16 needs CUDA); ``auto``: bf16
    where native, else fp32. The onnx backend runs what ``segcore export-onnx`` wrote (fp32,
    or int8 with ``--quantize int8``)."""
    workers: int = Field(0, ge=0)
    """Threads that decode, preprocess and write images; 0: half the CPU cores (1 to 4)."""
    max_image_pixels: int = Field(100_000_000, gt=0)
    """Largest input image (width x height), checked in the file header before decoding."""
