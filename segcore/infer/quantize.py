"""int8 ONNX: static quantization of a bundle's export, calibrated on preprocessed samples.

``segcore export-onnx --quantize int8`` exports the float32 graph as usual (with its
torch parity check), then quantizes it with onnxruntime's static quantization: weights
int8 per output channel, activations uint8 with ranges measured (min/max) on a few
preprocessed training samples that a :class:`CalibrationDataReader` feeds through the
graph. The first convolution (which sees the raw grey values), the classifier convolution
and the softmax stay float32: they are small, and quantizing them costs the most accuracy. The quantized graph keeps the input ``image`` and output ``probabilities`` of the
float32 one (QDQ format, which onnxruntime fuses into integer kernels) and its metadata,
plus ``segcore.quantization = int8``; ``segcore infer --backend onnx`` runs it as any export.

int8 cannot match float32 to 1e-2 as the float32 export does: its parity check compares
the int8 and float32 graphs on held-out samples (the validation split, else the
calibration samples) and accepts the file when the classes agree on at least
:data:`INT8_MIN_AGREEMENT` of the pixels, reporting the probability differences.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segcore.common.constants import BUNDLE_WEIGHTS, COL_SAMPLE_FILE, ONNX_FILE, TRAIN, VALIDATION
from segcore.common.errors import DatasetError
from segcore.common.io import atomic_path
from segcore.data.dldataset import DLDataset
from segcore.data.samples import load_sample
from segcore.infer.onnx import (
    DEFAULT_OPSET,
    INPUT_NAME,
    OnnxError,
    export_module,
    file_sha256,
    onnx_session,
)
from segcore.model.bundle import BundleConfig, load_bundle

INT8 = "int8"
QUANTIZATIONS = (INT8,)
META_QUANTIZATION = "segcore.quantization"
DEFAULT_CALIBRATION_SAMPLES = 16
"""Training samples whose activation ranges calibrate the int8 graph (a few suffice)."""
INT8_MIN_AGREEMENT = 0.95
"""Smallest share of pixels where the int8 and float32 graphs give the same class. A
broken calibration (ranges of blank images) agrees on far fewer; pixels near a class
border, where float32's top two classes are close, are where int8 legitimately differs."""


@dataclass(frozen=True)
class ParityReport:
    """How the int8 graph compares with the float32 one on held-out samples.

    Attributes:
        samples: images compared; source: which split they came from.
        max_difference, mean_difference: of the class probabilities.
        agreement: share of pixels with the same class.
    """

    samples: int
    source: str
    max_difference: float
    mean_difference: float
    agreement: float

    def render(self) -> str:
        return (
            f"int8 vs fp32 on {self.samples} {self.source} samples: same class on "
            f"{self.agreement:.2%} of the pixels (accepted from {INT8_MIN_AGREEMENT:.0%}), "
            f"probabilities differ by {self.mean_difference:.3f} on average, "
            f"{self.max_difference:.3f} at most"
        )


class _Reader:
    """onnxruntime's CalibrationDataReader over preprocessed images, one per call."""

    def __init__(self, images: Sequence[np.ndarray]) -> None:
        self.images = list(images)
        self._next: Iterator[np.ndarray] = iter(self.images)

    def get_next(self) -> dict[str, np.ndarray] | None:
        image = next(self._next, None)
        return None if image is None else {INPUT_NAME: image[None].astype(np.float32)}

    def rewind(self) -> None:
        self._next = iter(self.images)


def check_quantization(quantize: str | None) -> None:
    """Raises OnnxError for a ``--quantize`` value other than ``int8`` (or none)."""
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise OnnxError(f"--quantize: unknown {quantize!r}; use {', '.join(QUANTIZATIONS)}")


def split_images(
    dataset: str | os.PathLike[str] | DLDataset,
    split: str,
    count: int,
    config: BundleConfig,
) -> list[np.ndarray]:
    """Up to ``count`` preprocessed images ``(C, H, W)`` of ``split``, evenly spread over it.

    Larger samples (tiled mode) are cut to their central network-size tile.

    Raises:
        DatasetError: not a preprocessed dataset, or preprocessed for another input size.
    """
    ds = dataset if isinstance(dataset, DLDataset) else DLDataset.load(dataset)
    if ds.sample_dir is None or COL_SAMPLE_FILE not in ds.samples:
        raise DatasetError(f"{dataset}: not preprocessed; run `segcore preprocess` first")
    rows = ds.split(split) if ds.has_split else ds.samples.iloc[:0]
    if count <= 0 or rows.empty:
        return []
    picks = np.unique(np.linspace(0, len(rows) - 1, min(count, len(rows))).round().astype(int))
    param = config.preprocess_param
    size = (int(param["image_num_channels"]), int(param["image_height"]), int(param["image_width"]))
    images = []
    for name in rows[COL_SAMPLE_FILE].iloc[picks]:
        image = load_sample(Path(ds.sample_dir) / name)["image"]
        c, h, w = image.shape
        if c != size[0] or h < size[1] or w < size[2]:
            raise DatasetError(
                f"{dataset}: sample {name} is {c}x{h}x{w}, the model takes {'x'.join(map(str, size))}"
                "; calibrate on the dataset the model was trained on (--dataset)"
            )
        top, left = (h - size[1]) // 2, (w - size[2]) // 2
        images.append(np.ascontiguousarray(image[:, top : top + size[1], left : left + size[2]]))
    return images


def export_int8(
    bundle_dir: str | os.PathLike[str],
    dataset: str | os.PathLike[str],
    out_path: str | os.PathLike[str] | None = None,
    *,
    calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES,
    opset: int = DEFAULT_OPSET,
) -> tuple[Path, ParityReport]:
    """Export a bundle to int8 ONNX (default ``<bundle>/model.onnx``), calibrated on
    ``calibration_samples`` training samples of the preprocessed ``dataset``.

    Raises:
        OnnxError: no calibration samples, a failed export, or an int8 graph that fails the
            parity check.
        DatasetError: the dataset is missing or does not fit the model.
    """
    bundle = Path(bundle_dir)
    module, config = load_bundle(bundle, device="cpu")
    fix = (
        "int8 quantization calibrates on preprocessed training samples: pass the model's "
        "preprocessed dataset with --dataset (`segcore preprocess` writes it) and "
        "--calibration-samples 1 or more"
    )
    if calibration_samples < 1:
        raise OnnxError(f"--calibration-samples is {calibration_samples}; {fix}")
    if not Path(dataset).is_file():
        raise OnnxError(f"{dataset}: no dataset there, so no calibration samples; {fix}")
    calibration = split_images(dataset, TRAIN, calibration_samples, config)
    if not calibration:
        raise OnnxError(f"{dataset}: the train split has no samples to calibrate on; {fix}")
    held_out = split_images(dataset, VALIDATION, max(calibration_samples, 8), config)
    check, source = (held_out, VALIDATION) if held_out else (calibration, "calibration")
    path = Path(out_path) if out_path is not None else bundle / ONNX_FILE
    weights = file_sha256(bundle / BUNDLE_WEIGHTS)
    with tempfile.TemporaryDirectory(prefix="segcore-int8-") as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        export_module(module, config, fp32, opset=opset, weights_sha256=weights)
        report = quantize_int8(fp32, path, calibration, check, source)
    return path, report


def quantize_int8(
    fp32_path: Path,
    out_path: str | os.PathLike[str],
    calibration: Sequence[np.ndarray],
    check: Sequence[np.ndarray],
    source: str = "held-out",
) -> ParityReport:
    """Quantize the float32 graph at ``fp32_path`` to int8 (calibrated on ``calibration``),
    check it against float32 on ``check`` and write it atomically to ``out_path``.

    Raises:
        OnnxError: no calibration images, or the int8 graph fails the parity check.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not calibration:
        raise OnnxError("int8 quantization needs calibration samples; none were given")
    with tempfile.TemporaryDirectory(prefix="segcore-int8-") as tmp:
        prepared, quantized = Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
        # onnx shape inference and graph optimization (Conv + BatchNorm fused) before
        # quantization; symbolic inference gives up on the dynamic height and width.
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        graph = onnx.load(str(prepared), load_external_data=False).graph
        convs = [n.name for n in graph.node if n.op_type == "Conv"]
        kept = convs[:1] + convs[-1:] + [n.name for n in graph.node if n.op_type == "Softmax"]
        quantize_static(
            str(prepared),
            str(quantized),
            _Reader(calibration),  # type: ignore[arg-type]  # the reader protocol
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=kept,
        )
        report = _parity(fp32_path, quantized, check, source)
        if report.agreement < INT8_MIN_AGREEMENT:
            raise OnnxError(
                f"int8 quantization changes the model too much ({report.render()}); calibrate "
                "on more or more typical samples (--calibration-samples), or keep the fp32 export"
            )
        model = onnx.load(str(quantized))
        source_meta = onnx.load(str(fp32_path), load_external_data=False).metadata_props
        del model.metadata_props[:]
        for entry in source_meta:
            model.metadata_props.add(key=entry.key, value=entry.value)
        model.metadata_props.add(key=META_QUANTIZATION, value=INT8)
        with atomic_path(out_path) as out:
            onnx.save(model, str(out))
    return report


def _parity(
    fp32_path: Path, int8_path: Path, images: Sequence[np.ndarray], source: str
) -> ParityReport:
    cpu = torch.device("cpu")
    reference, quantized = onnx_session(fp32_path, cpu), onnx_session(int8_path, cpu)
    diffs, agree, pixels = [], 0, 0
    for image in images:
        x = {INPUT_NAME: image[None].astype(np.float32)}
        want, got = reference.run(None, x)[0], quantized.run(None, x)[0]
        diffs.append(np.abs(got - want))
        agree += int((got.argmax(axis=1) == want.argmax(axis=1)).sum())
        pixels += want.shape[0] * want.shape[2] * want.shape[3]
    all_diffs = np.concatenate([d.ravel() for d in diffs])
    return ParityReport(
        samples=len(images),
        source=source,
        max_difference=float(all_diffs.max()),
        mean_difference=float(all_diffs.mean()),
        agreement=agree / pixels,
    )


def quantization_of(session: Any) -> str:
    """``int8`` for a quantized export, ``fp32`` otherwise (from the file's metadata)."""
    return str(session.get_modelmeta().custom_metadata_map.get(META_QUANTIZATION, "fp32"))
