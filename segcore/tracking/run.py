"""MLflow tracking of pipeline runs: one MLflow run per training, shared by later stages.

The train stage starts the run (params, lineage tags, per-epoch metrics through
:class:`MLflowCallback`) and writes its id to ``<train.out_dir>/mlflow_run.json``, a train
output. Evaluate and register run as separate commands under ``dvc repro`` (or as tasks of
the flow) and resume that run by reading the file, so one MLflow run holds the whole story
of one model: params, curves, test measures, plots, report, the logged model and the
registry decision.

The store is ``sqlite:///<repo root>/mlflow.db`` unless ``tracking.tracking_uri`` or the
``MLFLOW_TRACKING_URI`` environment variable (which wins) says otherwise; the path is always
absolute, so stages started from other folders agree. Nothing here touches MLflow's global
state except inside :meth:`TrackedRun.log_model`, which needs MLflow's fluent API and
restores it afterwards.

Metric names (step = epoch for the per-epoch ones): ``train/loss``, ``train/learning_rate``,
... and ``validation/<measure>``, ``validation/class_iou/<class>`` from the training
history; ``<split>/<measure>`` and ``<split>/<measure>/<class>`` from the evaluation (e.g.
``test/mean_iou``, ``test/class_iou/crack``); ``register/...`` from the registry gate.
Run names: ``<model>-<UTC time>``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segcore.common.errors import SegcoreError
from segcore.common.io import write_json_atomic
from segcore.params import Params
from segcore.tracking.lineage import lineage_tags
from segcore.tracking.mlflow_model import log_pyfunc_model
from segcore.tracking.names import metric_name, params_to_log
from segcore.tracking.run_file import close_abandoned, read_run_file
from segcore.tracking.store import check_store, is_store_unreachable, unless_store_lost
from segcore.tracking.where import DB_FILE as DB_FILE  # re-exported: the default store
from segcore.tracking.where import (
    artifact_location,
    find_repo_root,
    resolve_tracking_uri,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from segcore.tracking.callback import MLflowCallback

_NOTHING_DONE = "Nothing was trained or logged."
_FILES_KEPT = (
    "The files of the stages that ran are kept; once the store answers, `segcore register` "
    "logs what the run lacks and registers it (or run the pipeline again)."
)
_TRAINING_GOES_ON = "training goes on; `segcore register` logs the history file's epochs later"
_RUN_LEFT_OPEN = "the run stays open; `segcore register` completes it from the files on disk"
RUN_FILE = "mlflow_run.json"
"""File in ``train.out_dir`` that names the MLflow run of that training."""
MODEL_NAME = "model"
"""Name of the logged pyfunc model inside a run."""
TAG_FLOW_RUN = "prefect.flow_run_id"
"""Tag with the id of the Prefect flow run that ran a stage (set by the flow)."""

_MAX_BATCH = 100
_MAX_PARAM_LEN = 6000


class TrackingError(SegcoreError):
    """The MLflow store or run cannot be used as configured."""


# --------------------------------------------------------------------------- where


# --------------------------------------------------------------------------- the run


@dataclass
class _Lifecycle:
    """Whether the run was set RUNNING by this process, and its status before."""

    started: bool = True
    previous: str | None = None


@dataclass(frozen=True)
class TrackedRun:
    """One MLflow run of the pipeline (see the module docstring).

    Attributes:
        client: a client on :attr:`tracking_uri`.
        run_id: the MLflow run id.
        experiment_id: its experiment.
        tracking_uri: the store.
    """

    client: MlflowClient
    run_id: str
    experiment_id: str
    tracking_uri: str
    lifecycle: _Lifecycle = dataclasses.field(default_factory=lambda: _Lifecycle(), compare=False)

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log params (values as strings, cut to MLflow's 6000 characters)."""
        from mlflow.entities import Param

        items = [Param(k, _param_value(v)) for k, v in params.items()]
        for i in range(0, len(items), _MAX_BATCH):
            self.client.log_batch(self.run_id, params=items[i : i + _MAX_BATCH])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set tags (replacing earlier values)."""
        from mlflow.entities import RunTag

        items = [RunTag(k, str(v)) for k, v in tags.items()]
        for i in range(0, len(items), _MAX_BATCH):
            self.client.log_batch(self.run_id, tags=items[i : i + _MAX_BATCH])

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        """Log metrics at ``step``; values that are not finite numbers are left out."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [
            Metric(k, float(v), now, int(step))
            for k, v in metrics.items()
            if isinstance(v, int | float) and math.isfinite(v)
        ]
        for i in range(0, len(items), _MAX_BATCH):
            self.client.log_batch(self.run_id, metrics=items[i : i + _MAX_BATCH])

    def log_evaluation(self, split: str, measures: Mapping[str, Any]) -> dict[str, float]:
        """Log evaluation measures as ``<split>/<measure>`` and ``<split>/<measure>/<class>``;
        text values (``resolution``) as tags ``<split>/<key>``.

        Args:
            split: the evaluated split.
            measures: ``metrics.json`` content: numbers, and per-class ``{name: value}``
                dicts where -1 marks a class without ground truth (left out).

        Returns:
            the logged metrics.
        """
        flat: dict[str, float] = {}
        texts = {metric_name(split, k): v for k, v in measures.items() if isinstance(v, str)}
        if texts:  # e.g. the resolution the measures were taken at, as a tag
            self.set_tags(texts)
        for key, value in measures.items():
            if isinstance(value, Mapping):
                for cls, v in value.items():
                    if isinstance(v, int | float) and v >= 0:
                        flat[metric_name(split, key, cls)] = float(v)
            elif isinstance(value, int | float) and not isinstance(value, bool):
                flat[metric_name(split, key)] = float(value)
        self.log_metrics(flat)
        return flat

    def log_artifacts(self, files: Iterable[Path], artifact_path: str) -> None:
        """Upload files under ``artifact_path`` of the run."""
        for f in files:
            self.client.log_artifact(self.run_id, str(f), artifact_path)

    @contextlib.contextmanager
    def global_uri(self) -> Iterator[None]:
        """MLflow's global tracking URI set to this run's store while the body runs.

        For the MLflow calls that read the global URI (logging models, resolving
        ``models:/`` sources); the previous setting is restored afterwards.
        """
        import mlflow

        previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
        mlflow.set_tracking_uri(self.tracking_uri)
        try:
            yield
        finally:
            mlflow.set_tracking_uri(previous)  # type: ignore[arg-type]  # None resets

    def log_model(self, bundle_dir: str | os.PathLike[str]) -> str:
        """Log a model bundle as a pyfunc model with its image signature; returns its URI.

        See :mod:`segcore.tracking.mlflow_model` for what the model takes and answers (the served
        model runs on ``SEGCORE_SERVE_DEVICE``, default ``auto``, in ``SEGCORE_SERVE_PRECISION``,
        default ``fp32``).
        """
        import mlflow

        with (
            self.global_uri(),
            mlflow.start_run(run_id=self.run_id, nested=mlflow.active_run() is not None),
        ):
            return log_pyfunc_model(Path(bundle_dir), name=MODEL_NAME)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the run's identity to ``path`` (JSON), for later stages to resume it."""
        write_json_atomic(
            path,
            {"run_id": self.run_id, "experiment_id": self.experiment_id},
        )
        return Path(path)

    def save_started(self, path: str | os.PathLike[str]) -> Path:
        """Record in ``path`` that this run started, keeping the run it names: that run
        still owns the checkpoint until this one writes its first (:meth:`save` then)."""
        ref = read_run_file(Path(path)) or {}
        write_json_atomic(path, {**ref, "started_run_id": self.run_id})
        return Path(path)

    def mark_running(self) -> None:
        """RUNNING now, for a run opened with ``lazy`` status (see :func:`resume_run`)."""
        if not self.lifecycle.started:
            self.lifecycle.started = True
            set_running = lambda: self.client.update_run(self.run_id, status="RUNNING")  # noqa: E731
            unless_store_lost(set_running, _RUN_LEFT_OPEN)

    def callback(self, run_file: str | os.PathLike[str] | None = None) -> MLflowCallback:
        """A training callback that logs into this run (and names it in ``run_file`` once
        the training wrote its first checkpoint)."""
        from segcore.tracking.callback import MLflowCallback

        return MLflowCallback(self, run_file)


def _param_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:_MAX_PARAM_LEN]


def _client_and_experiment(params: Params, root: Path, hint: str) -> tuple[MlflowClient, str, str]:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    uri = resolve_tracking_uri(params.tracking, root)
    check_store(uri, hint=hint)  # seconds, where MLflow's client would retry for minutes
    client = MlflowClient(tracking_uri=uri)
    name = params.tracking.experiment_name
    try:
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            return client, experiment.experiment_id, uri
        try:
            return client, client.create_experiment(name, artifact_location(uri)), uri
        except MlflowException:  # created meanwhile by a concurrent stage
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
            return client, experiment.experiment_id, uri
    except MlflowException as err:
        raise TrackingError(
            f"MLflow store {uri}: {err.message}; check tracking.tracking_uri in params.yaml "
            "or MLFLOW_TRACKING_URI"
        ) from None


def _new_run(
    client: MlflowClient,
    experiment_id: str,
    uri: str,
    params: Params,
    root: Path,
    tags: Mapping[str, str] | None,
) -> TrackedRun:
    """A new run named ``<model>-<UTC time>`` with every param, lineage and ``tags``."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    info = client.create_run(experiment_id, run_name=f"{params.train.model}-{stamp}").info
    run = TrackedRun(client, info.run_id, experiment_id, uri)
    run.log_params(params_to_log(params))
    run.set_tags({**lineage_tags(params, root), **(tags or {})})
    return run


@contextlib.contextmanager
def _lifecycle(run: TrackedRun, lazy: bool = False) -> Iterator[TrackedRun]:
    """RUNNING while the body runs, then FINISHED, or FAILED when it raises (KILLED when
    interrupted: Ctrl-C, SIGTERM through the command line); a store that
    stopped answering leaves the run open instead of failing work that is done.

    ``lazy``: the run turns RUNNING only at :meth:`TrackedRun.mark_running`; when the body
    raises before, the status is left as it was (a refused ``train --resume`` does not fail
    the finished run), except that a run left RUNNING by a killed process becomes KILLED."""
    if lazy:
        run.lifecycle.started = False
        run.lifecycle.previous = run.client.get_run(run.run_id).info.status
    else:
        run.client.update_run(run.run_id, status="RUNNING")
    try:
        yield run
    except (KeyboardInterrupt, SystemExit):  # Ctrl-C, SIGTERM
        if run.lifecycle.started or run.lifecycle.previous == "RUNNING":
            _terminate(run, "KILLED")
        raise
    except BaseException:
        if run.lifecycle.started:
            _terminate(run, "FAILED")
        elif run.lifecycle.previous == "RUNNING":
            _terminate(run, "KILLED")
        raise
    _terminate(run, "FINISHED")


def _terminate(run: TrackedRun, status: str) -> None:
    unless_store_lost(lambda: run.client.set_terminated(run.run_id, status), _RUN_LEFT_OPEN)


@contextlib.contextmanager
def start_run(
    params: Params,
    root: str | os.PathLike[str],
    *,
    tags: Mapping[str, str] | None = None,
    run_file: str | os.PathLike[str] | None = None,
) -> Iterator[TrackedRun]:
    """A new MLflow run with every param and the lineage tags; FAILED if the body raises.

    Args:
        params: all of ``params.yaml`` (logged flattened).
        root: a folder in the repository; its root (:func:`find_repo_root`) holds the
            default store, git and ``dvc.lock``.
        tags: further tags, e.g. :data:`TAG_FLOW_RUN`.
        run_file: the train stage's run file: runs it names that are still RUNNING were
            left by a killed process and are marked KILLED.
    """
    root_path = find_repo_root(root)
    client, experiment_id, uri = _client_and_experiment(params, root_path, _NOTHING_DONE)
    if run_file is not None:
        close_abandoned(client, run_file)
    run = _new_run(client, experiment_id, uri, params, root_path, tags)
    with _lifecycle(run):
        yield run


@contextlib.contextmanager
def resume_run(
    params: Params,
    root: str | os.PathLike[str],
    run_file: str | os.PathLike[str],
    *,
    tags: Mapping[str, str] | None = None,
    run_id: str | None = None,
    lazy: bool = False,
    close_others: bool = False,
) -> Iterator[TrackedRun]:
    """Continue the run named in ``run_file`` (written by the train stage), or ``run_id``.

    ``tags`` are added where the run does not have them yet (the lineage stays that of
    the training). When the file is missing or its run is not in this store (e.g. a model
    trained elsewhere), a new run is started and tagged ``segcore.resumed = false``, so
    nothing is lost. The run ends FINISHED, or FAILED if the body raises (``lazy``: see
    :func:`_lifecycle`). ``close_others``: other runs the file names that are still RUNNING
    (a training killed before its first checkpoint) are marked KILLED.
    """
    from mlflow.exceptions import MlflowException

    root_path = find_repo_root(root)
    client, experiment_id, uri = _client_and_experiment(params, root_path, _FILES_KEPT)
    run: TrackedRun | None = None
    path = Path(run_file)
    ref = {"run_id": run_id} if run_id else read_run_file(path)
    if ref is not None:
        try:
            info = client.get_run(str(ref["run_id"])).info
            run = TrackedRun(client, info.run_id, info.experiment_id, uri)
        except MlflowException as err:
            if is_store_unreachable(err):  # not "unknown run": do not start a new one
                raise TrackingError(f"MLflow store {uri}: {err.message}. {_FILES_KEPT}") from None
            run = None
        except (ValueError, KeyError, TypeError):
            run = None
    if run is None:
        extra = {**(tags or {}), "segcore.resumed": "false", "segcore.missing_run_file": str(path)}
        run = _new_run(client, experiment_id, uri, params, root_path, extra)
        lazy = False  # a run of its own: FAILED if the body raises
    elif tags:
        known = client.get_run(run.run_id).data.tags
        run.set_tags({k: v for k, v in tags.items() if k not in known})
    if close_others:
        close_abandoned(client, path, keep=run.run_id)
    with _lifecycle(run, lazy):
        yield run
