"""A segcore model bundle as an MLflow pyfunc model, so MLflow can serve it.

The logged model holds the bundle folder as an artifact (safetensors weights and
``model.json``; nothing pickled) and loads it with :func:`segcore.infer.apply.load_model`.

Input: a table with one column ``image``: encoded image files (PNG, JPEG, TIFF or BMP
bytes; any size and channel count). Over HTTP the bytes are base64 text::

    mlflow models serve -m "models:/segcore-pills@champion" --env-manager local -p 5001
    curl -X POST localhost:5001/invocations -H 'Content-Type: application/json' -d \\
      '{"dataframe_split": {"columns": ["image"], "data": [["'$(base64 -w0 pill.png)'"]]}}'

Output: one row per image: ``segmentation_image`` (base64 PNG of the class ids at the
input's size; 16-bit when an id exceeds 255), ``mean_confidence``, ``pixels_<class>`` per
class, and ``regions`` (JSON list of connected regions: class, area, bbox, mean
confidence). Parameter ``min_area`` (default 1) drops smaller regions.
"""

from __future__ import annotations

import base64
import json
import os
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from segcore.common.errors import SegcoreError

IMAGE_COLUMN = "image"
BUNDLE_ARTIFACT = "bundle"
_ENTRY_FILE = Path(__file__).with_name("mlflow_entry.py")
"""The file MLflow runs to build the model object (MLflow's models-from-code)."""
_REQUIREMENTS = (
    "torch",
    "numpy",
    "pandas",
    "safetensors",
    "opencv-python-headless",
    "pillow",
    "scipy",
    "pydantic",
    "segmentation-models-pytorch",
)


def column_name(class_name: str) -> str:
    """``pixels_<class>`` with characters other than letters, digits and ``_`` replaced."""
    return "pixels_" + "".join(c if c.isalnum() or c == "_" else "_" for c in class_name)


def model_signature(class_names: list[str]) -> Any:
    """The signature: binary ``image`` in; segmentation, confidence, pixel counts, regions out."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, ParamSchema, ParamSpec, Schema

    outputs = [
        ColSpec(DataType.string, "segmentation_image"),
        ColSpec(DataType.double, "mean_confidence"),
        *(ColSpec(DataType.long, column_name(n)) for n in class_names),
        ColSpec(DataType.string, "regions"),
    ]
    return ModelSignature(
        inputs=Schema([ColSpec(DataType.binary, IMAGE_COLUMN)]),
        outputs=Schema(outputs),
        params=ParamSchema([ParamSpec("min_area", DataType.long, 1)]),
    )


def decode_image(data: bytes | bytearray | str) -> np.ndarray:
    """Encoded image bytes (or their base64 text) -> ``(H, W, C)`` array, RGB order.

    Same conventions as :func:`segcore.common.io.read_image`: alpha dropped, 8/16 bit kept.

    Raises:
        SegcoreError: not a decodable image.
    """
    from segcore.common.io import decode_image as decode_bytes

    raw = base64.b64decode(data) if isinstance(data, str) else bytes(data)
    image = decode_bytes(raw)
    if image is None:
        raise SegcoreError(
            f"column {IMAGE_COLUMN!r}: not a decodable image ({len(raw)} bytes); send PNG, "
            "JPEG, TIFF or BMP file bytes (base64 text over HTTP)"
        )
    return image


def _encode_png(segmentation: np.ndarray) -> str:
    import cv2

    dtype = np.uint8 if segmentation.max(initial=0) <= 255 else np.uint16
    ok, buf = cv2.imencode(".png", segmentation.astype(dtype))
    assert ok, "PNG encoding of a 2-D integer image cannot fail"
    return base64.b64encode(buf.tobytes()).decode("ascii")


class SegmentationModel(PythonModel):
    """MLflow ``PythonModel`` around a segcore bundle (see the module docstring)."""

    def load_context(self, context: Any) -> None:
        from segcore.infer.apply import load_model

        device = os.environ.get("SEGCORE_SERVE_DEVICE", "auto")
        self._model = load_model(context.artifacts[BUNDLE_ARTIFACT], device=device)

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """Segment every image of ``model_input[IMAGE_COLUMN]``; one output row per image."""
        from segcore.infer.apply import apply_model

        if IMAGE_COLUMN not in model_input:
            raise SegcoreError(
                f"input has no {IMAGE_COLUMN!r} column (got {list(model_input.columns)}); "
                "send one column 'image' of encoded image files"
            )
        min_area = int((params or {}).get("min_area", 1))
        images = [decode_image(v) for v in model_input[IMAGE_COLUMN]]
        config = self._model.config
        rows = []
        for result in apply_model(self._model, images, min_area=min_area):
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
                    }
                    for r in result.regions
                ]
            )
            rows.append(row)
        return pd.DataFrame(rows)


def _example_png(size: int = 32) -> bytes:
    """A small grey RGB PNG: the input example stored with the model (a ready request)."""
    import cv2

    ok, buf = cv2.imencode(".png", np.full((size, size, 3), 128, dtype=np.uint8))
    assert ok, "PNG encoding of a constant image cannot fail"
    return buf.tobytes()


def _requirements() -> list[str]:
    pins = []
    for name in _REQUIREMENTS:
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return pins


def log_pyfunc_model(bundle_dir: Path, *, name: str) -> str:
    """Log ``bundle_dir`` as a pyfunc model in the active MLflow run; returns the model URI.

    Args:
        bundle_dir: a model bundle (``model.safetensors`` + ``model.json``).
        name: the model's name in the run.

    Raises:
        BundleError: ``bundle_dir`` is not a bundle.
    """
    import mlflow

    from segcore.model.bundle import read_bundle_config

    class_names = list(read_bundle_config(bundle_dir).class_names)
    example = pd.DataFrame({IMAGE_COLUMN: [_example_png()]})
    info = mlflow.pyfunc.log_model(
        name=name,
        python_model=str(_ENTRY_FILE),
        artifacts={BUNDLE_ARTIFACT: str(bundle_dir)},
        signature=model_signature(class_names),
        input_example=example,
        pip_requirements=_requirements(),
    )
    return info.model_uri
