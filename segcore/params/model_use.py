"""The sections of the stages that use a trained model: ``evaluate`` and ``infer``."""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

from segcore.common.constants import DEFAULT_TILE_OVERLAP, Precision, Split
from segcore.params.base import Section


def _check_overlap(value: float) -> float:
    if not 0.0 <= value < 1.0 or math.isnan(value):
        raise PydanticCustomError(
            "tile_overlap",
            "{value} is not a fraction of the tile in [0, 1): an overlap of a whole tile or "
            "more never moves the window; use e.g. 0.25 (a quarter of the tile)",
            {"value": value},
        )
    return value


TileOverlap = Annotated[float, AfterValidator(_check_overlap)]
"""Overlap of neighbouring tiles in sliding-window inference, a fraction of the tile in [0, 1)."""

Resolution = Literal["auto", "network", "original"]


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
    """Samples per forward pass (tiled models: tiles per forward pass)."""
    resolution: Resolution = "auto"
    """Where predictions meet the labels: ``network`` (the preprocessed labels, HALCON's
    evaluate_dl_model; tiled models: the stored samples' size), ``original`` (the original
    label files at their own size, predictions resized to it as ``segcore infer`` does),
    ``auto`` (``original`` for tiled models, ``network`` for resize models)."""
    tile_overlap: TileOverlap = DEFAULT_TILE_OVERLAP
    """Tiled models: fraction of a tile shared by neighbouring tiles, in [0, 1)."""
    worst_k: int = Field(6, ge=0)
    """Number of worst samples (by per-image mean IoU) shown in the report."""
    report_dir: str = "reports"
    """Folder for metrics.json, plots and the report."""
    device: str = "auto"
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""


class InferParams(Section):
    """Inference on new images (HALCON: apply_dl_model)."""

    batch_size: int = Field(8, gt=0)
    """Images per forward pass (tiled models: tiles per forward pass)."""
    tile_overlap: TileOverlap = DEFAULT_TILE_OVERLAP
    """Tiled models: fraction of a tile shared by neighbouring tiles, in [0, 1); more
    overlap blends more tiles per pixel (smoother, slower)."""
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
