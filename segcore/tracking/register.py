"""Model registry: register a run's model and move ``champion`` only when it is no worse.

:func:`register_model` registers the newest model logged in an MLflow run as a new version
of ``register.model_name`` (or reuses the version already made from that run: one version
per training, and a retry never registers twice), points the ``challenger`` alias at it, and moves ``champion`` to
it when its test measure (``test/<register.comparison_key>``) is at least as good as the
current champion's (higher, or lower for the image-level error rates such as
``escape_rate``: ``register.comparison_direction``), or when there is no champion yet. The decision and both numbers are logged to
the run (``register/*`` metrics and tags) and returned.

Measures taken at different resolutions (``<split>/resolution``: ``network`` or
``original``, see :mod:`segcore.evaluate.resolution`) are not comparable: a candidate
evaluated at another resolution than the champion stays challenger, with the reason
logged and returned, until both are evaluated alike or the alias is moved by hand.

Registrations are serialized with a file lock per store and model name, so two pipeline
runs finishing together cannot interleave their read-compare-move steps; every alias move
sets an absolute target, so repeating one changes nothing.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segcore.common.errors import SegcoreError
from segcore.params import RegisterParams
from segcore.tracking.run import MODEL_NAME, TrackedRun, metric_name

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

LOWER_IS_BETTER = frozenset(
    {"escape_rate", "false_reject_rate", "escapes", "false_rejects", "false_alarm_regions"}
)
"""Measures for which ``register.comparison_direction: auto`` means lower is better."""
LOCK_TIMEOUT_S = 600.0
"""How long a registration waits for a concurrent one to finish."""


class RegistryError(SegcoreError):
    """The run cannot be registered (no model, no test measure, registry busy)."""


@dataclass(frozen=True)
class RegisterResult:
    """What :func:`register_model` did.

    Attributes:
        model_name: the registered model.
        version: the version made from the run (or found, when registered before).
        metric: the compared run metric, e.g. ``test/mean_iou``.
        value: the new version's value of it.
        previous_champion: the champion's version before, ``None`` when there was none.
        previous_value: its value of :attr:`metric` (``None`` when unknown).
        promoted: whether ``champion`` now points at :attr:`version`.
        champion: the champion's version after the decision.
        direction: ``higher`` or ``lower``: which values of :attr:`metric` are better.
        incomparable: why the two measures could not be compared (the champion kept),
            ``None`` when they were.
    """

    model_name: str
    version: str
    metric: str
    value: float
    previous_champion: str | None
    previous_value: float | None
    promoted: bool
    champion: str
    direction: str = "higher"
    incomparable: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def render(self) -> str:
        """One line for the terminal."""
        better = "lower" if self.direction == "lower" else "higher"
        head = (
            f"Registered {self.model_name} version {self.version} ({self.metric} "
            f"{self.value:.4f}, {better} is better)"
        )
        if self.previous_champion is None:
            return f"{head}: first champion."
        before = "unknown" if self.previous_value is None else f"{self.previous_value:.4f}"
        verb = "promoted to champion" if self.promoted else "kept as challenger"
        line = f"{head}: {verb}; champion was version {self.previous_champion} ({before})."
        return line if self.incomparable is None else f"{line} {self.incomparable}"


def comparison_direction(params: RegisterParams) -> str:
    """``higher`` or ``lower``: which values of ``register.comparison_key`` are better."""
    if params.comparison_direction != "auto":
        return params.comparison_direction
    return "lower" if params.comparison_key in LOWER_IS_BETTER else "higher"


def registry_lock_path(tracking_uri: str, model_name: str) -> Path:
    """The lock file that serializes registrations of ``model_name`` in one store."""
    digest = hashlib.sha256(f"{tracking_uri}\n{model_name}".encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"segcore-registry-{digest}.lock"


def register_model(
    run: TrackedRun, params: RegisterParams, *, split: str = "test"
) -> RegisterResult:
    """Register the run's newest logged model and apply the champion gate.

    Args:
        run: the pipeline's MLflow run, holding a logged model and the evaluation
            metric ``<split>/<params.comparison_key>``.
        params: the ``register`` section.
        split: the split whose measure decides.

    Raises:
        RegistryError: the run has no logged model or no such metric, or another
            registration held the lock for :data:`LOCK_TIMEOUT_S`.
    """
    from filelock import FileLock, Timeout

    client = run.client
    metric = metric_name(split, params.comparison_key)
    logged = client.get_run(run.run_id).data
    value = logged.metrics.get(metric)
    if value is None:
        raise RegistryError(
            f"MLflow run {run.run_id} has no metric {metric}; run the evaluate stage on the "
            f"{split} split first, or set register.comparison_key to a logged measure "
            "(escape_rate and false_reject_rate are logged only when the split holds "
            "defective and defect-free images)"
        )
    lock = FileLock(registry_lock_path(run.tracking_uri, params.model_name))
    try:
        with lock.acquire(timeout=LOCK_TIMEOUT_S), run.global_uri():
            result = _register_locked(client, run, params, metric, value, logged.tags)
    except Timeout:
        raise RegistryError(
            f"{lock.lock_file}: another registration of {params.model_name} did not finish "
            f"within {LOCK_TIMEOUT_S:.0f} s; run `segcore register` again when it has"
        ) from None
    _log_decision(run, result)
    return result


def _newest_model_id(run: TrackedRun) -> str:
    models = run.client.search_logged_models(
        experiment_ids=[run.experiment_id],
        filter_string=f"source_run_id = '{run.run_id}' AND name = '{MODEL_NAME}'",
        order_by=[{"field_name": "creation_timestamp", "ascending": False}],
        max_results=1,
    )
    if not models:
        raise RegistryError(
            f"MLflow run {run.run_id} has no logged model {MODEL_NAME!r}; run the evaluate "
            "stage (it logs the evaluated bundle) first"
        )
    return models[0].model_id


def _register_locked(
    client: MlflowClient,
    run: TrackedRun,
    params: RegisterParams,
    metric: str,
    value: float,
    tags: dict[str, str],
) -> RegisterResult:
    from mlflow.exceptions import MlflowException

    name = params.model_name
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="segcore segmentation model")
    version = _version_of(client, name, run.run_id)
    if version is None:
        model_id = _newest_model_id(run)
        version = client.create_model_version(
            name, source=f"models:/{model_id}", run_id=run.run_id, model_id=model_id
        )
    client.set_registered_model_alias(name, params.challenger_alias, version.version)
    champion = _by_alias(client, name, params.champion_alias)
    previous_value, incomparable = None, None
    if champion is not None and champion.run_id:
        previous = client.get_run(champion.run_id).data
        previous_value = previous.metrics.get(metric)
        incomparable = _incomparable(tags, previous.tags, metric)
    direction = comparison_direction(params)
    promoted = incomparable is None and (
        champion is None
        or previous_value is None
        or (value <= previous_value if direction == "lower" else value >= previous_value)
    )
    if promoted:
        client.set_registered_model_alias(name, params.champion_alias, version.version)
    return RegisterResult(
        model_name=name,
        version=str(version.version),
        metric=metric,
        value=float(value),
        previous_champion=None if champion is None else str(champion.version),
        previous_value=previous_value,
        promoted=promoted,
        champion=str(version.version if promoted else champion.version),  # type: ignore[union-attr]
        direction=direction,
        incomparable=incomparable,
    )


def _incomparable(tags: dict[str, str], champion_tags: dict[str, str], metric: str) -> str | None:
    """Why ``metric`` of a run and of the champion's run cannot be compared: measured at
    different resolutions (their ``<split>/resolution`` tags); ``None`` when they can (a run
    without the tag predates it and was measured at network resolution)."""
    key = f"{metric.split('/', 1)[0]}/resolution"
    ours, theirs = tags.get(key, "network"), champion_tags.get(key, "network")
    if ours == theirs:
        return None
    return (
        f"Not compared: this run's {metric} was measured at {ours} resolution, the "
        f"champion's at {theirs} resolution. Evaluate both at the same resolution "
        "(evaluate.resolution), or move the champion alias to this version by hand (the "
        "MLflow UI's model page) if it is to serve."
    )


def _version_of(client: MlflowClient, name: str, run_id: str) -> ModelVersion | None:
    """The version already registered from this run, if any (retries reuse it)."""
    found = client.search_model_versions(f"name = '{name}' AND run_id = '{run_id}'")
    return min(found, key=lambda v: int(v.version)) if found else None


def _by_alias(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def _log_decision(run: TrackedRun, result: RegisterResult) -> None:
    key = result.metric.replace("/", "_")
    metrics = {f"register/candidate_{key}": result.value}
    if result.previous_value is not None:
        metrics[f"register/champion_{key}"] = result.previous_value
    run.log_metrics(metrics)
    run.set_tags(
        {
            "register.model_name": result.model_name,
            "register.version": result.version,
            "register.decision": "promoted" if result.promoted else "kept",
            "register.previous_champion": result.previous_champion or "none",
        }
        | ({"register.incomparable": result.incomparable} if result.incomparable else {})
    )
