"""The model contract: what a bundle's ``model.json`` holds, read and checked in one place.

Training writes it (:func:`segcore.model.bundle.save_bundle`), inference, ONNX export, the
served model and the registry read it. Reading it needs neither torch nor the weights.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segcore.common.constants import BUNDLE_CONFIG
from segcore.common.errors import DatasetError

BUNDLE_FORMAT = "segcore.model.bundle/1"
"""Written into ``model.json``; readers accept every ``segcore.model.bundle/1`` file."""


class BundleError(DatasetError):
    """A model bundle is missing, incomplete or corrupt."""


@dataclass
class BundleConfig:
    """What ``model.json`` holds.

    Attributes:
        architecture: ``name``, ``encoder``, ``in_channels``, ``num_classes`` and the
            architecture ``kwargs`` (see :func:`segcore.model.factory.architecture`).
        class_ids: class ids in output-channel order.
        class_names: names in the same order.
        ignore_class_ids: ids never predicted (their logits are masked).
        preprocess_param: ``PreprocessParams.model_dump()`` used for training.
        training_summary: epochs, best value, final measures, resolved train params.
        input_bit_depth: bits per channel of the training images (8, 16; 32 for float),
            ``None`` when unknown or mixed. Inference converts other inputs to it where the
            normalization defines how (see :mod:`segcore.infer.depth`).
    """

    architecture: dict[str, Any]
    class_ids: list[int]
    class_names: list[str]
    ignore_class_ids: list[int]
    preprocess_param: dict[str, Any]
    training_summary: dict[str, Any] = field(default_factory=dict)
    input_bit_depth: int | None = None


def read_bundle_config(directory: str | os.PathLike[str]) -> BundleConfig:
    """Read ``model.json`` of a bundle.

    Raises:
        BundleError: missing, not JSON, or lacking keys.
    """
    path = Path(directory) / BUNDLE_CONFIG
    fix = "train a model (`segcore train`) or pass a bundle folder such as models/best"
    if not path.is_file():
        raise BundleError(f"{path.parent}: not a model bundle (no {BUNDLE_CONFIG}); {fix}")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BundleError(f"{path}: not readable JSON ({err}); {fix}") from None
    if not isinstance(meta, dict) or not str(meta.get("format", "")).startswith(
        "segcore.model.bundle/"
    ):
        raise BundleError(f"{path}: not a segcore model bundle config; {fix}")
    names = [f.name for f in BundleConfig.__dataclass_fields__.values()]
    optional = ("training_summary", "input_bit_depth")
    missing = [n for n in names if n not in meta and n not in optional]
    if missing:
        raise BundleError(f"{path}: lacks {', '.join(missing)}; {fix}")
    return BundleConfig(**{n: meta[n] for n in names if n in meta})


def json_default(obj: Any) -> Any:
    """JSON for the values a config may hold: paths, numpy and torch scalars."""
    if isinstance(obj, Path):
        return obj.as_posix()
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")
