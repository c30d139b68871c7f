"""The served model: MLflow's ``PythonModel`` around a segcore bundle.

Built by ``mlflow_entry.py`` when MLflow loads a logged model; what it takes and answers is
described in :mod:`segcore.tracking.mlflow_model`.

Every image is checked before it is decoded: at most ``SEGCORE_SERVE_MAX_IMAGE_BYTES``
encoded bytes (default 64 MiB) and ``SEGCORE_SERVE_MAX_IMAGE_PIXELS`` pixels in its header
(default 100 megapixels, as ``infer.max_image_pixels``). A bad request is answered with
HTTP 400 and segcore's message only (an ``MlflowException`` with
``INVALID_PARAMETER_VALUE``), never a stack trace.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from typing import Any

import cv2
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel

from segcore.common.errors import SegcoreError
from segcore.common.images import DEFAULT_MAX_IMAGE_PIXELS, PixelLimit
from segcore.common.images import decode_image as decode_bytes
from segcore.data.roi import parse_roi
from segcore.infer.apply import apply_model, load_model
from segcore.infer.tiling import DEFAULT_TILE_OVERLAP, check_overlap
from segcore.tracking.mlflow_model import BUNDLE_ARTIFACT, IMAGE_COLUMN, ROI_COLUMN, column_name

_log = logging.getLogger(__name__)

MAX_BYTES_ENV = "SEGCORE_SERVE_MAX_IMAGE_BYTES"
MAX_PIXELS_ENV = "SEGCORE_SERVE_MAX_IMAGE_PIXELS"
PRECISION_ENV = "SEGCORE_SERVE_PRECISION"
"""Precision of the served network (as ``infer.precision``: fp32, bf16, fp16, auto); fp32."""
DEFAULT_MAX_IMAGE_BYTES = 64 * 2**20


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


def decode_image(data: bytes | bytearray | str) -> np.ndarray:
    """Encoded image bytes (or their base64 text) -> ``(H, W, C)`` array, RGB order.

    Same conventions as :func:`segcore.common.images.read_image`: alpha dropped, 8/16 bit kept.

    Raises:
        SegcoreError: not a decodable image, more encoded bytes or pixels than allowed.
    """
    max_bytes = _env_int(MAX_BYTES_ENV, DEFAULT_MAX_IMAGE_BYTES)
    size = len(data) * 3 // 4 if isinstance(data, str) else len(data)
    if size > max_bytes:
        raise SegcoreError(
            f"column {IMAGE_COLUMN!r}: image of about {size} bytes, above the limit of "
            f"{max_bytes} bytes; send a smaller image or raise {MAX_BYTES_ENV} on the server"
        )
    raw = base64.b64decode(data) if isinstance(data, str) else bytes(data)
    limit = PixelLimit(_env_int(MAX_PIXELS_ENV, DEFAULT_MAX_IMAGE_PIXELS), MAX_PIXELS_ENV)
    image = decode_bytes(raw, limit, source=f"column {IMAGE_COLUMN!r}")
    if image is None:
        raise SegcoreError(
            f"column {IMAGE_COLUMN!r}: not a decodable image ({len(raw)} bytes); send PNG, "
            "JPEG, TIFF or BMP file bytes (base64 text over HTTP)"
        )
    return image


def _encode_png(segmentation: np.ndarray) -> str:
    dtype = np.uint8 if segmentation.max(initial=0) <= 255 else np.uint16
    ok, buf = cv2.imencode(".png", segmentation.astype(dtype))
    assert ok, "PNG encoding of a 2-D integer image cannot fail"
    return base64.b64encode(buf.tobytes()).decode("ascii")


class SegmentationModel(PythonModel):
    """MLflow ``PythonModel`` around a segcore bundle (see the module docstring)."""

    def load_context(self, context: Any) -> None:
        device = os.environ.get("SEGCORE_SERVE_DEVICE", "auto")
        precision = os.environ.get(PRECISION_ENV, "").strip() or "fp32"
        self._model = load_model(
            context.artifacts[BUNDLE_ARTIFACT], device=device, precision=precision
        )

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """Segment every image of ``model_input[IMAGE_COLUMN]``; one output row per image.

        Raises:
            MlflowException: ``INVALID_PARAMETER_VALUE`` (HTTP 400) with segcore's message
                for a bad request; ``INTERNAL_ERROR`` (HTTP 500) with a one-line message
                for anything else, its traceback in the server's log only.
        """
        try:
            return self._predict(model_input, params)
        except SegcoreError as err:
            raise MlflowException(err.render(), error_code=INVALID_PARAMETER_VALUE) from None
        except Exception as err:
            _log.exception("segcore: prediction failed")
            raise MlflowException(
                f"segcore could not segment the images: {type(err).__name__}: {err}",
                error_code=INTERNAL_ERROR,
            ) from None

    def _predict(self, model_input: pd.DataFrame, params: dict[str, Any] | None) -> pd.DataFrame:
        if IMAGE_COLUMN not in model_input:
            raise SegcoreError(
                f"input has no {IMAGE_COLUMN!r} column (got {list(model_input.columns)}); "
                "send one column 'image' of encoded image files"
            )
        min_area = int((params or {}).get("min_area", 1))
        overlap = float((params or {}).get("tile_overlap", DEFAULT_TILE_OVERLAP))
        tile = self._model.preprocess
        check_overlap(overlap, (tile.image_height, tile.image_width), "parameter 'tile_overlap'")
        images = [decode_image(v) for v in model_input[IMAGE_COLUMN]]
        rois = None
        if ROI_COLUMN in model_input:
            rois = [
                parse_roi(v, f"column {ROI_COLUMN!r}, row {i}", (im.shape[1], im.shape[0]))
                for i, (v, im) in enumerate(zip(model_input[ROI_COLUMN], images, strict=True))
            ]
        config = self._model.config
        rows = []
        results = apply_model(
            self._model, images, min_area=min_area, rois=rois, tile_overlap=overlap
        )
        for result in results:
            seg = result.segmentation_image
            row: dict[str, Any] = {
                "segmentation_image": _encode_png(seg),
                "mean_confidence": float(result.segmentation_confidence.mean()),
            }
            for cid, name in zip(config.class_ids, config.class_names, strict=True):
                row[column_name(name)] = int((seg == cid).sum())
            row["regions"] = json.dumps(
                [
                    {
                        "class_id": r.class_id,
                        "class_name": r.class_name,
                        "area": r.area,
                        "bbox": list(r.bbox),
                        "mean_confidence": round(r.mean_confidence, 4),
                        "max_confidence": round(r.max_confidence, 4),
                        "fires": r.fires,
                    }
                    for r in result.regions
                ]
            )
            row["verdict"] = result.verdict.label
            row["fired"] = result.verdict.describe()
            rows.append(row)
        return pd.DataFrame(rows)
