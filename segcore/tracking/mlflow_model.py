"""Logging a segcore model bundle as an MLflow pyfunc model, so MLflow can serve it.

The logged model holds the bundle folder as an artifact (safetensors weights and
``model.json``; nothing pickled) and loads it with :func:`segcore.infer.apply.load_model` (the served model:
:mod:`segcore.tracking.served_model`).

Input: a table with one column ``image``: encoded image files (PNG, JPEG, TIFF or BMP
bytes; any size and channel count). Over HTTP the bytes are base64 text::

    mlflow models serve -m "models:/segcore-pills@champion" --env-manager local -p 5001
    curl -X POST localhost:5001/invocations -H 'Content-Type: application/json' -d \\
      '{"dataframe_split": {"columns": ["image"], "data": [["'$(base64 -w0 pill.png)'"]]}}'

Output: one row per image: ``segmentation_image`` (base64 PNG of the class ids at the
input's size; 16-bit when an id exceeds 255), ``mean_confidence``, ``pixels_<class>`` per
class, ``regions`` (JSON list of connected regions: class, area, bbox, mean and max
confidence, ``fires``: whether it passes its class's decision rule), ``verdict`` (``OK`` or
``NG``, by the bundle's decision rules, as ``segcore infer`` decides) and ``fired`` (the
rules that fired, e.g. ``NG: crack: region 153 px, confidence 0.91``). Parameter
``min_area`` (default 1) drops smaller regions from ``regions``; the verdict sees them all;
``tile_overlap`` (default 0.25) is the overlap of neighbouring tiles for tiled models
(sliding window).
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from segcore.common.constants import DEFAULT_TILE_OVERLAP
from segcore.model.config import read_bundle_config

IMAGE_COLUMN = "image"
ROI_COLUMN = "domain_roi"
"""Optional: per image, its region of interest ``[row1, col1, row2, col2]`` as JSON text
(models trained with ``crop_domain``; empty: the bundle's ``domain_roi``)."""
BUNDLE_ARTIFACT = "bundle"
_ENTRY_FILE = Path(__file__).with_name("mlflow_entry.py")
"""The file MLflow runs to build the model object (MLflow's models-from-code): it builds a
:class:`segcore.tracking.served_model.SegmentationModel`."""
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
    """The signature: binary ``image`` (and optionally its ``domain_roi``, JSON text) in;
    segmentation, confidence, pixel counts, regions and the verdict out."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, ParamSchema, ParamSpec, Schema

    outputs = [
        ColSpec(DataType.string, "segmentation_image"),
        ColSpec(DataType.double, "mean_confidence"),
        *(ColSpec(DataType.long, column_name(n)) for n in class_names),
        ColSpec(DataType.string, "regions"),
        ColSpec(DataType.string, "verdict"),
        ColSpec(DataType.string, "fired"),
    ]
    return ModelSignature(
        inputs=Schema(
            [
                ColSpec(DataType.binary, IMAGE_COLUMN),
                ColSpec(DataType.string, ROI_COLUMN, required=False),
            ]
        ),
        outputs=Schema(outputs),
        params=ParamSchema(
            [
                ParamSpec("min_area", DataType.long, 1),
                ParamSpec("tile_overlap", DataType.double, DEFAULT_TILE_OVERLAP),
            ]
        ),
    )


def _example_png(size: int = 32) -> bytes:
    """A small grey RGB PNG: the input example stored with the model (a ready request)."""
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
