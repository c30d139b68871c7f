"""What a cheaper precision costs: one measure of two models on the same split.

Used by ``segcore export-onnx --quantize int8`` (int8 ONNX against the fp32 network, see
:func:`export_int8_compared`) and by the precision benchmark (bf16 torch, int8
onnxruntime against fp32).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from segcore.common.constants import VALIDATION
from segcore.data.dldataset import DLDataset
from segcore.evaluate.evaluation import evaluate_model
from segcore.infer.apply import SegModel, load_model
from segcore.infer.onnx import DEFAULT_OPSET, describe, onnx_session
from segcore.infer.quantize import DEFAULT_CALIBRATION_SAMPLES, ParityReport, export_int8


@dataclass(frozen=True)
class MeasureChange:
    """``key`` on ``split`` for a reference and a candidate model."""

    split: str
    key: str
    reference: float
    candidate: float

    @property
    def change(self) -> float:
        """``candidate - reference`` (negative: the candidate is worse)."""
        return self.candidate - self.reference

    def render(self, reference: str = "fp32", candidate: str = "int8") -> str:
        return (
            f"{self.split} {self.key}: {reference} {self.reference:.4f}, {candidate} "
            f"{self.candidate:.4f} ({self.change:+.4f})"
        )


def measure_change(
    reference: SegModel,
    candidate: SegModel,
    dataset: str | os.PathLike[str] | DLDataset,
    split: str = VALIDATION,
    key: str = "mean_iou",
    batch_size: int = 8,
) -> MeasureChange | None:
    """``key`` of both models on ``split`` of a preprocessed dataset; ``None`` when the
    split is empty.

    Raises:
        DatasetError: the dataset is not preprocessed or does not fit the models.
    """
    ds = dataset if isinstance(dataset, DLDataset) else DLDataset.load(dataset)
    if not ds.has_split or ds.split(split).empty:
        return None
    values = [
        evaluate_model(
            m, ds, split=split, measures=[key], batch_size=batch_size, keep_worst=0
        ).scalar_measures()[key]
        for m in (reference, candidate)
    ]
    return MeasureChange(split, key, values[0], values[1])


@dataclass(frozen=True)
class Int8Export:
    """An int8 export with its parity check and its measure change (``None``: no
    validation split)."""

    path: Path
    parity: ParityReport
    change: MeasureChange | None
    dataset: Path

    def render(self) -> str:
        change = (
            f"measure change, {self.change.render('fp32 torch', 'int8 onnx')}"
            if self.change is not None
            else f"{self.dataset}: no validation split, so no measure change to report"
        )
        return f"ONNX int8: {self.path} ({describe(self.path)})\n{self.parity.render()}\n{change}"


def export_int8_compared(
    bundle: str | os.PathLike[str],
    dataset: str | os.PathLike[str],
    out_path: str | os.PathLike[str] | None = None,
    opset: int = DEFAULT_OPSET,
    calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES,
) -> Int8Export:
    """:func:`segcore.infer.quantize.export_int8`, then the validation measure of the int8
    graph against the bundle's fp32 network (what ``export-onnx --quantize int8`` prints).

    Raises:
        OnnxError, DatasetError: as :func:`~segcore.infer.quantize.export_int8`.
    """
    path, parity = export_int8(
        bundle, dataset, out_path, calibration_samples=calibration_samples, opset=opset
    )
    reference = load_model(bundle, device="cpu")
    int8 = SegModel(None, reference.config, session=onnx_session(path, torch.device("cpu")))
    return Int8Export(path, parity, measure_change(reference, int8, dataset), Path(dataset))
