"""Inference on new images (HALCON: gen_dl_samples_from_images, apply_dl_model, threshold).

:func:`load_model` reads a model bundle (or its ONNX export), :func:`apply_model` runs it
on images of any size and type and returns one :class:`DLResult` per image:
``segmentation_image`` (class ids at the input's own size), ``segmentation_confidence``
(probability of the chosen class, 0-1) and the connected regions of every class.

Images go through :func:`segcore.preprocess.transforms.preprocess_samples` /
:func:`~segcore.preprocess.transforms.preprocess_image`, the same code that prepared the training
data. Class probabilities are resized bilinearly from network resolution to the input's
size before the argmax, so borders stay smooth on large images. Tiled models
(``preprocess.param.mode: tiled``) see the whole image at its native size times ``scale``
through overlapping tiles whose probabilities are blended (:mod:`segcore.infer.tiling`).
Folders of files are handled by :func:`segcore.infer.files.run_inference`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from segcore.common.constants import AUTO, FP32, MODE_TILED, PRECISIONS
from segcore.common.device import resolve_device
from segcore.common.errors import ParamsError
from segcore.common.precision import ResolvedPrecision, resolve_precision
from segcore.data.roi import Roi
from segcore.infer.components import (
    REGION_COLUMNS,
    Region,
    find_regions,
    region_columns,
    regions_from,
)
from segcore.infer.decide import DecisionRules, Verdict, decide, rules_for
from segcore.infer.depth import match_bit_depth
from segcore.infer.onnx import open_session
from segcore.infer.tiling import DEFAULT_TILE_OVERLAP, preprocess_whole_image, sliding_window
from segcore.model.bundle import BundleConfig, load_bundle, read_bundle_config
from segcore.model.outputs import ignore_indices, masked_probabilities
from segcore.params import DecisionParams, PreprocessParams
from segcore.preprocess.transforms import preprocess_samples, resolve_roi

BACKENDS = ("torch", "onnx")
__all__ = [
    "BACKENDS",
    "REGION_COLUMNS",
    "DLResult",
    "Region",
    "SegModel",
    "apply_model",
    "find_regions",
    "load_model",
    "region_columns",
    "to_result",
]


@dataclass
class DLResult:
    """The result for one image (HALCON's DLResult).

    Attributes:
        segmentation_image: ``(H, W)`` uint16 class ids at the input's own size.
        segmentation_confidence: ``(H, W)`` float32 in [0, 1], probability of the chosen class.
        regions: connected components (8-neighbourhood) of every class, ordered by class
            index, then by area (largest first); only those with at least ``min_area`` pixels.
        verdict: OK or NG by the model's decision rules (:mod:`segcore.infer.decide`),
            from every region whatever ``min_area``.
    """

    segmentation_image: np.ndarray
    segmentation_confidence: np.ndarray
    regions: list[Region] = field(default_factory=list)
    verdict: Verdict = field(default_factory=Verdict)

    def regions_of(self, class_id: int) -> list[Region]:
        """The regions of one class id."""
        return [r for r in self.regions if r.class_id == class_id]


class SegModel:
    """A model ready for inference: the network (torch module or ONNX session) + its config.

    Args:
        module: the torch network, ``(N, C, H, W)`` float32 -> ``(N, K, H, W)`` logits.
        config: class ids/names, ignore ids and preprocess parameters (a ``BundleConfig``).
        device: where the torch module runs.
        session: an onnxruntime session instead of ``module`` (input ``image``, output
            ``probabilities`` ``(N, K, H, W)``).
        decision: the rules when the bundle holds none (default: ``DecisionParams()``).
        precision: the torch module's precision (default fp32); probabilities are
            float32 in any case.
    """

    def __init__(
        self,
        module: torch.nn.Module | None,
        config: BundleConfig,
        device: torch.device | str = "cpu",
        session: Any | None = None,
        decision: DecisionParams | None = None,
        precision: ResolvedPrecision | None = None,
    ) -> None:
        if (module is None) == (session is None):
            raise ValueError("give exactly one of module and session")
        self.module = module.eval() if module is not None else None
        self.config = config
        self.device = torch.device(device)
        self.session = session
        self.precision = precision or ResolvedPrecision(FP32, FP32, self.device, True)
        self._ignore = ignore_indices(config.class_ids, config.ignore_class_ids)
        self.rules: DecisionRules = rules_for(config, decision)
        """The OK/NG rules: the bundle's, else ``decision``'s."""

    @property
    def backend(self) -> str:
        return "torch" if self.module is not None else "onnx"

    @property
    def num_classes(self) -> int:
        return len(self.config.class_ids)

    @property
    def preprocess(self) -> PreprocessParams:
        """The bundle's preprocessing parameters (validated)."""
        return PreprocessParams.model_validate(self.config.preprocess_param)

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """``(N, C, H, W)`` float32 preprocessed images -> ``(N, K, H, W)`` float32 probabilities."""
        if self.session is not None:
            return self.session.run(None, {"image": np.ascontiguousarray(batch, np.float32)})[0]
        return self._torch_probabilities(batch).cpu().numpy()

    @property
    def tiled(self) -> bool:
        """Whether the network sees tiles of whole images (``mode: tiled``) rather than
        whole resized images."""
        return self.config.preprocess_param.get("mode") == MODE_TILED

    def tile_probabilities(self, tiles: torch.Tensor) -> torch.Tensor:
        """``(N, C, h, w)`` -> ``(N, K, h, w)`` float32 probabilities as a tensor (torch: on
        the model's device; ONNX: on the CPU)."""
        if self.session is not None:
            x = np.ascontiguousarray(tiles.cpu().numpy(), np.float32)
            return torch.from_numpy(self.session.run(None, {"image": x})[0])
        return self._module_probabilities(tiles.to(self.device))

    def window_probabilities(
        self,
        image: np.ndarray,
        overlap: float = DEFAULT_TILE_OVERLAP,
        batch_size: int = 8,
        name: str = "infer.tile_overlap",
    ) -> np.ndarray:
        """A tiled model on a whole preprocessed image: ``(C, H, W)`` -> ``(K, H, W)``
        float32 probabilities blended from overlapping tiles (see :mod:`segcore.infer.tiling`;
        ``name`` is the overlap's parameter in error messages)."""
        param = self.preprocess
        device = self.device if self.module is not None else torch.device("cpu")
        x = torch.from_numpy(np.ascontiguousarray(image, np.float32)).to(device)
        with torch.inference_mode():
            probs = sliding_window(
                x,
                (param.image_height, param.image_width),
                self.tile_probabilities,
                overlap=overlap,
                batch_size=batch_size,
                name=name,
            )
        return probs.cpu().numpy()

    def predict(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(N, C, H, W)`` -> class indices ``(N, H, W)`` int64 and confidence ``(N, H, W)`` f32."""
        if self.session is not None:
            probs = self.probabilities(batch)
            return probs.argmax(axis=1), probs.max(axis=1)
        conf, idx = self._torch_probabilities(batch).max(dim=1)
        return idx.cpu().numpy(), conf.cpu().numpy()

    def _torch_probabilities(self, batch: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(batch, np.float32)).to(self.device)
        return self._module_probabilities(x)

    def _module_probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """The torch module on a batch on its device, in the model's precision; float32."""
        assert self.module is not None
        if self.precision.mixed:  # oneDNN's bf16 convolutions want channels-last
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            with self.precision.autocast():
                logits = self.module(x)
            return masked_probabilities(logits.float(), self._ignore)


def load_model(
    bundle: str | os.PathLike[str],
    device: str = "auto",
    backend: str = "torch",
    decision: DecisionParams | None = None,
    precision: str = FP32,
) -> SegModel:
    """Load a model bundle for inference.

    Args:
        bundle: the bundle directory (``model.safetensors`` + ``model.json``).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        backend: ``torch`` (the bundle's weights) or ``onnx`` (``model.onnx`` in the bundle,
            written by ``segcore export-onnx``, run with onnxruntime).
        decision: the OK/NG rules for a bundle that holds none (default: the defaults of
            the ``decision`` section).
        precision: torch backend: ``fp32``, ``bf16``, ``fp16`` or ``auto`` (see
            :mod:`segcore.common.precision`); the onnx backend takes ``fp32`` or ``auto``
            and runs the exported file as it is (fp32 or int8).

    Raises:
        SegcoreError: no (complete) bundle there, an unknown backend, a missing or stale
            ONNX file, or a precision the device or backend cannot run; decision rules that
            name classes the model lacks.
    """
    path = Path(bundle)
    if backend not in BACKENDS:
        raise ParamsError(f"backend: unknown {backend!r}; use one of {', '.join(BACKENDS)}")
    dev = resolve_device(device)
    if backend == "torch":
        resolved = resolve_precision(precision, dev, key="infer.precision")
        module, config = load_bundle(path, device=dev)
        if resolved.mixed:
            module = module.to(memory_format=torch.channels_last)
        return SegModel(module, config, dev, decision=decision, precision=resolved)
    if precision not in PRECISIONS:
        resolve_precision(precision, dev, key="infer.precision")  # the unknown-value error
    if precision not in (FP32, AUTO):
        raise ParamsError(
            f"infer.precision: {precision} runs the torch backend only; the onnx backend runs "
            "the exported file (export an int8 one with `segcore export-onnx --quantize int8`):"
            " use --backend torch, or precision fp32 / auto"
        )
    config = read_bundle_config(path)
    return SegModel(None, config, dev, session=open_session(path, device=dev), decision=decision)


def apply_model(
    model: SegModel,
    images: Sequence[np.ndarray],
    batch_size: int = 8,
    min_area: int = 1,
    rois: Sequence[Roi | None] | None = None,
    tile_overlap: float = DEFAULT_TILE_OVERLAP,
) -> list[DLResult]:
    """Segment images (HALCON: apply_dl_model on samples made from images).

    Args:
        model: from :func:`load_model`.
        images: ``(H, W)`` or ``(H, W, C)`` arrays (uint8, uint16 or float), any size each.
        batch_size: images per forward pass (tiled models: tiles per forward pass).
        min_area: regions with fewer pixels are left out of ``DLResult.regions``.
        rois: per image, its region of interest ``(row1, col1, row2, col2)`` when the model
            crops (``crop_domain``); ``None`` entries (or no list) take the bundle's
            ``domain_roi``. Ignored under ``full_domain``.
        tile_overlap: tiled models: fraction of a tile shared by neighbouring tiles, [0, 1).

    Returns:
        one :class:`DLResult` per image, at that image's own size.

    Raises:
        SegcoreError: an image of another bit depth than the training images, under a
            normalization that defines no conversion (see :mod:`segcore.infer.depth`);
            a conversion that is defined is done, with a warning.
        ParamsError: a ``tile_overlap`` that never moves the window.
    """
    param = model.preprocess
    if rois is not None and len(rois) != len(images):
        raise ValueError(f"{len(rois)} regions of interest for {len(images)} images")
    given = list(rois) if rois is not None else [None] * len(images)
    crops = [roi_of(param, roi) for roi in given]
    if model.tiled:
        return [
            to_result(
                model.window_probabilities(
                    preprocess_whole_image(_matched(image, model.config, i), param, roi),
                    tile_overlap,
                    batch_size,
                ),
                image.shape[:2],
                model.config,
                roi,
                min_area,
            )
            for i, (image, roi) in enumerate(zip(images, crops, strict=True))
        ]
    results: list[DLResult] = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        chunk_rois = crops[start : start + batch_size]
        inputs = [_matched(image, model.config, start + i) for i, image in enumerate(chunk)]
        probs = model.probabilities(preprocess_samples(inputs, param, chunk_rois))
        results.extend(
            to_result(p, image.shape[:2], model.config, roi, min_area, rules=model.rules)
            for p, image, roi in zip(probs, chunk, chunk_rois, strict=True)
        )
    return results


def _matched(image: np.ndarray, config: BundleConfig, index: int) -> np.ndarray:
    converted, note = match_bit_depth(image, config, f"image {index}")
    if note is not None:
        warnings.warn(note, stacklevel=3)
    return converted


def roi_of(param: PreprocessParams, roi: Roi | None = None) -> Roi | None:
    """The rectangle the network sees under ``crop_domain`` (``roi`` for this image, else
    the bundle's ``domain_roi``), else ``None`` (whole image).

    Raises:
        ParamsError: ``crop_domain`` without any region of interest.
    """
    roi = resolve_roi(param, roi)
    return None if roi is None else (roi[0], roi[1], roi[2], roi[3])


def outside_class(config: BundleConfig) -> int:
    """The class id of pixels outside the region of interest: the first class id that is
    not an ignore class (an ignore class is never predicted)."""
    ignore = set(config.ignore_class_ids)
    return next((c for c in config.class_ids if c not in ignore), config.class_ids[0])


def class_map(probs: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Class indices and their probabilities at ``size``: ``(K, h, w)`` probabilities are
    resized bilinearly to ``size = (H, W)`` (when it differs), then the argmax is taken.

    Returns:
        ``(H, W)`` int64 class indices and ``(H, W)`` float32 probabilities of them.
    """
    hwk = np.ascontiguousarray(probs.transpose(1, 2, 0))
    if hwk.shape[:2] != tuple(size):
        hwk = cv2.resize(hwk, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
        if hwk.ndim == 2:  # cv2 drops a single channel
            hwk = hwk[:, :, None]
    index = hwk.argmax(axis=2)
    return index, np.take_along_axis(hwk, index[:, :, None], axis=2)[:, :, 0]


def to_result(
    probs: np.ndarray,
    size: tuple[int, int],
    config: BundleConfig,
    roi: tuple[int, int, int, int] | None = None,
    min_area: int = 1,
    *,
    with_regions: bool = True,
    rules: DecisionRules | None = None,
) -> DLResult:
    """Network output of one image -> :class:`DLResult` at the input's size.

    Args:
        probs: ``(K, h, w)`` class probabilities at network resolution.
        size: ``(H, W)`` of the input image.
        roi: ``(row1, col1, row2, col2)`` inclusive when the network saw only that part
            (``crop_domain``); outside it the result is the first class that is not an
            ignore class (ignore classes are never predicted), with confidence 0.
        min_area: smallest region (pixels) kept in ``regions``.
        with_regions: find the regions (else ``regions`` stays empty and the verdict OK).
        rules: the decision rules (default: the bundle's, else the defaults).
    """
    height, width = size
    r1, c1, r2, c2 = roi if roi is not None else (0, 0, height - 1, width - 1)
    r2, c2 = min(r2, height - 1), min(c2, width - 1)
    index, conf = class_map(probs, (r2 - r1 + 1, c2 - c1 + 1))
    ids = np.asarray(config.class_ids, dtype=np.uint16)
    seg = np.full((height, width), outside_class(config), dtype=np.uint16)
    confidence = np.zeros((height, width), dtype=np.float32)
    seg[r1 : r2 + 1, c1 : c2 + 1] = ids[index]
    confidence[r1 : r2 + 1, c1 : c2 + 1] = np.clip(conf, 0.0, 1.0)
    if not with_regions:
        return DLResult(seg, confidence)
    cols = region_columns(seg, confidence, config)
    verdict, fires = decide(cols, rules or rules_for(config))
    return DLResult(seg, confidence, regions_from(cols, min_area, fires), verdict)
