"""Names of what the tracking logs: metrics (``validation/mean_iou``) and params (their
``params.yaml`` keys)."""

from __future__ import annotations

import re
from typing import Any

from segcore.params import Params, flatten

_BAD_NAME_CHARS = re.compile(r"[^\w.\- /]")


def metric_name(*parts: str) -> str:
    """Join name parts with ``/``, replacing characters MLflow does not accept by ``_``."""
    return "/".join(_BAD_NAME_CHARS.sub("_", str(p)) for p in parts)


def history_metric_name(column: str) -> str:
    """MLflow name of a training-history column: ``val_mean_iou`` -> ``validation/mean_iou``,
    ``val_iou_crack`` -> ``validation/class_iou/crack`` (as the test split's), others
    ``train/<column>``."""
    if column.startswith("val_iou_"):
        return metric_name("validation", "class_iou", column.removeprefix("val_iou_"))
    if column.startswith("val_"):
        return metric_name("validation", column.removeprefix("val_"))
    return metric_name("train", column)


def params_to_log(params: Params) -> dict[str, Any]:
    """Every leaf of ``params.yaml`` under its YAML key (``register.model_name``, ...)."""
    out: dict[str, Any] = {}
    for name, field in type(params).model_fields.items():
        out.update(flatten(getattr(params, name), f"{field.alias or name}."))
    return out
