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

BUNDLE_FORMAT = "segcore.bundle/1"
"""Written into ``model.json``; readers accept every ``segcore.bundle/1`` file."""


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
        training_summary: epochs, best value, final measures, resolved train params, and
            ``precision``: what the network was trained in (``fp32``, ``bf16``, ``fp16``;
            ``auto`` resolved), see :func:`trained_precision`.
        input_bit_depth: bits per channel of the training images (8, 16; 32 for float),
            ``None`` when unknown or mixed. Inference converts other inputs to it where the
            normalization defines how (see :mod:`segcore.infer.depth`).
        decision: the OK/NG rules (``background_classes``, ``pixel_size_mm``, ``rules``:
            class name -> rule, ``calibration``: the operating point and its validation
            rates), written by ``segcore calibrate``; ``None`` in bundles without them
            (see :mod:`segcore.infer.decide`).
    """

    architecture: dict[str, Any]
    class_ids: list[int]
    class_names: list[str]
    ignore_class_ids: list[int]
    preprocess_param: dict[str, Any]
    training_summary: dict[str, Any] = field(default_factory=dict)
    input_bit_depth: int | None = None
    decision: dict[str, Any] | None = None


def trained_precision(config: BundleConfig) -> str:
    """The precision a bundle was trained in (``fp32`` for bundles that do not say)."""
    return str(config.training_summary.get("precision", "fp32"))


def read_bundle_config(directory: str | os.PathLike[str]) -> BundleConfig:
    """Read ``model.json`` of a bundle.

    Raises:
        BundleError: missing, not JSON, lacking keys, or holding values that do not fit
            (class ids that are not integers, fewer or more names than ids, preprocessing
            parameters that are not valid ``preprocess.param``).
    """
    path = Path(directory) / BUNDLE_CONFIG
    fix = "train a model (`segcore train`) or pass a bundle folder such as models/best"
    if not path.is_file():
        raise BundleError(f"{path.parent}: not a model bundle (no {BUNDLE_CONFIG}); {fix}")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BundleError(f"{path}: not readable JSON ({err}); {fix}") from None
    if not isinstance(meta, dict) or not str(meta.get("format", "")).startswith("segcore.bundle/"):
        raise BundleError(f"{path}: not a segcore model bundle config; {fix}")
    names = [f.name for f in BundleConfig.__dataclass_fields__.values()]
    optional = ("training_summary", "input_bit_depth", "decision")
    missing = [n for n in names if n not in meta and n not in optional]
    if missing:
        raise BundleError(f"{path}: lacks {', '.join(missing)}; {fix}")
    problems = _value_problems(meta)
    if problems:
        raise BundleError(
            f"{path}: {'; '.join(problems)}. The file was edited or written by another "
            f"program: restore it from the training's model.json, or {fix}"
        )
    return BundleConfig(**{n: meta[n] for n in names if n in meta})


def _is_int_list(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    )


def _value_problems(meta: dict[str, Any]) -> list[str]:
    """What is wrong with the values of ``model.json`` (empty: nothing)."""
    from pydantic import ValidationError

    from segcore.params import PreprocessParams

    problems = []
    ids, names = meta["class_ids"], meta["class_names"]
    if not _is_int_list(ids) or not ids:
        problems.append(f"class_ids must be a non-empty list of integers, not {ids!r}")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        problems.append(f"class_names must be a list of strings, not {names!r}")
    elif isinstance(ids, list) and len(names) != len(ids):
        problems.append(
            f"{len(names)} class_names for {len(ids)} class_ids (one name per id, same order)"
        )
    if not _is_int_list(meta["ignore_class_ids"]):
        problems.append(
            f"ignore_class_ids must be a list of integers, not {meta['ignore_class_ids']!r}"
        )
    if not isinstance(meta["architecture"], dict):
        problems.append(f"architecture must be an object, not {meta['architecture']!r}")
    try:
        PreprocessParams.model_validate(meta["preprocess_param"])
    except ValidationError as err:
        detail = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'the value'}: {e['msg']}" for e in err.errors()
        )
        problems.append(f"preprocess_param is not valid ({detail})")
    except ValueError as err:
        problems.append(f"preprocess_param is not valid ({err})")
    if meta.get("decision") is not None and not problems:
        problems += _decision_problems(meta)
    return problems


def _decision_problems(meta: dict[str, Any]) -> list[str]:
    """What is wrong with the ``decision`` entry (rules for classes the model lacks, values
    out of range); empty: nothing."""
    from pydantic import ValidationError

    from segcore.params.decision import DecisionParams, decision_class_problems

    stored = meta["decision"]
    if not isinstance(stored, dict) or not isinstance(stored.get("rules", {}), dict):
        return [f"decision must be an object with rules by class name, not {stored!r}"]
    try:
        params = DecisionParams.model_validate(
            {
                "background_classes": stored.get("background_classes"),
                "pixel_size_mm": stored.get("pixel_size_mm"),
                "classes": stored.get("rules", {}),
            }
        )
    except ValidationError as err:
        detail = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'the value'}: {e['msg']}" for e in err.errors()
        )
        return [f"decision is not valid ({detail})"]
    return decision_class_problems(
        params, meta["class_names"], meta["class_ids"], meta["ignore_class_ids"]
    )


def json_default(obj: Any) -> Any:
    """JSON for the values a config may hold: paths, numpy and torch scalars."""
    if isinstance(obj, Path):
        return obj.as_posix()
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")
