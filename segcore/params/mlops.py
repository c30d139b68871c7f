"""The sections around the stages: which model is promoted (``register``), where runs are
recorded (``tracking``) and when the pipeline runs (``flow``)."""

from __future__ import annotations

from typing import Literal

from segcore.params.base import Section


class RegisterParams(Section):
    """Model registry (MLflow)."""

    model_name: str = "segcore-pills"
    """Registered model name."""
    comparison_key: str = "mean_iou"
    """Test-split measure that must not get worse for ``champion`` to move: a pixel measure
    (``mean_iou``) or an image-level one at the bundle's decision rules (``escape_rate``,
    ``false_reject_rate``, ``image_accuracy``)."""
    comparison_direction: Literal["auto", "higher", "lower"] = "auto"
    """Which values are better: ``auto`` takes ``lower`` for the escape and false-reject
    rates and counts (``escape_rate``, ``false_reject_rate``, ``escapes``,
    ``false_rejects``, ``false_alarm_regions``), ``higher`` for every other measure."""
    champion_alias: str = "champion"
    """Alias of the best model so far."""
    challenger_alias: str = "challenger"
    """Alias of the newest registered model."""


class TrackingParams(Section):
    """MLflow tracking."""

    experiment_name: str = "segcore"
    """Experiment that every pipeline run logs to."""
    tracking_uri: str | None = None
    """Store; ``null`` means ``sqlite:///<repo>/mlflow.db`` (``MLFLOW_TRACKING_URI`` wins)."""


class FlowParams(Section):
    """Prefect flow and its schedule."""

    cron: str = "0 3 * * *"
    """Cron schedule of ``make serve``."""
    timezone: str = "UTC"
    """Time zone of the schedule."""
    deployment_name: str = "nightly"
    """Name of the served deployment."""
