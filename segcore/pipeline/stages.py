"""One entry per pipeline stage: params -> the stage's function -> its files (+ tracking).

``segcore <stage>`` (what ``dvc repro`` runs) and the Prefect flow's tasks both call these,
so a stage does the same thing however it is started. Each takes all of ``params.yaml``
(a :class:`~segcore.params.Params`, with any command-line overrides already applied) and
the folder that relative paths in it refer to (the repository root), and returns a
:class:`StageResult`: a summary line and the stage function's own result.

Train, evaluate and register share one MLflow run (see :mod:`segcore.tracking.run`); ``tags``
adds tags to it, e.g. the id of the Prefect flow run that runs the stage.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from segcore.common.constants import REGISTRY_FILE, SPLITS
from segcore.common.errors import SegcoreError
from segcore.common.io import write_json_atomic
from segcore.params import Params

if TYPE_CHECKING:
    from segcore.common.parallel import JobMap

T = TypeVar("T")


@dataclass(frozen=True)
class StageResult(Generic[T]):
    """What a stage did: one line for logs and terminals, and the stage function's result."""

    summary: str
    value: T


def _path(workdir: str | os.PathLike[str], path: str | os.PathLike[str]) -> Path:
    """``path`` from params.yaml, relative to ``workdir`` unless absolute."""
    return Path(workdir) / path


# --------------------------------------------------------------------------- data


def run_synth(params: Params, workdir: str | os.PathLike[str] = ".") -> StageResult[Any]:
    """Generate the synthetic pill dataset (``synth`` section)."""
    from segcore.data.synth import generate_pills

    p = params.synth
    summary = generate_pills(
        _path(workdir, p.out_dir),
        num_images=p.num_images,
        width=p.width,
        height=p.height,
        defect_free_fraction=p.defect_free_fraction,
        seed=p.seed,
    )
    return StageResult(str(summary).splitlines()[0], summary)


def run_dataset(params: Params, workdir: str | os.PathLike[str] = ".") -> StageResult[Any]:
    """Read images and labels into the dataset table (``dataset`` section)."""
    from segcore.data.read import read_dataset

    p = params.dataset
    ds = read_dataset(
        _path(workdir, p.image_dir),
        _path(workdir, p.segmentation_dir),
        p.class_names,
        p.class_ids,
        label_prefix=p.label_prefix,
        label_suffix=p.label_suffix,
        ignore_unmatched=p.ignore_unmatched,
    )
    path = ds.save(_path(workdir, p.out))
    return StageResult(
        f"Dataset: {len(ds)} samples, {len(ds.class_ids)} classes -> {p.out}", (ds, path)
    )


def run_split(params: Params, workdir: str | os.PathLike[str] = ".") -> StageResult[Any]:
    """Split into train / validation / test (``split`` section)."""
    from segcore.data.dldataset import DLDataset
    from segcore.data.split import split_dataset

    p = params.split
    loaded = DLDataset.load(_path(workdir, p.dataset))
    ds = split_dataset(
        loaded,
        training_percent=p.training_percent,
        validation_percent=p.validation_percent,
        seed=p.seed,
        overwrite=p.overwrite,
    )
    path = ds.save(_path(workdir, p.out))
    counts = ds.samples["split"].value_counts()
    parts = ", ".join(f"{name} {counts.get(name, 0)}" for name in SPLITS)
    kept = loaded.has_split and not p.overwrite
    note = f"{p.dataset} already has a split: kept it (overwrite re-splits).\n" if kept else ""
    return StageResult(f"{note}Split: {parts} -> {p.out}", (ds, path))


def run_preprocess(
    params: Params, workdir: str | os.PathLike[str] = ".", *, map_jobs: JobMap | None = None
) -> StageResult[Any]:
    """Preprocess samples, class weights and weight images (``preprocess`` section).

    Args:
        map_jobs: runs the per-sample jobs elsewhere (shards on a cluster, see
            ``flows.cluster``); default: ``preprocess.workers`` local processes.
    """
    from segcore.data.dldataset import DLDataset
    from segcore.preprocess.stage import run_preprocess as preprocess

    p = params.preprocess
    result = preprocess(
        DLDataset.load(_path(workdir, p.dataset)),
        p.param,
        _path(workdir, p.out_dir),
        class_weights=p.class_weights,
        workers=p.workers,
        overwrite=p.overwrite,
        map_jobs=map_jobs,
    )
    return StageResult(
        f"Preprocess: {len(result.dataset)} samples: {result.written} written, "
        f"{result.skipped} up to date, {result.removed} stale files removed -> {p.out_dir}",
        result,
    )


# --------------------------------------------------------------------------- model


def run_train(
    params: Params,
    workdir: str | os.PathLike[str] = ".",
    *,
    tags: Mapping[str, str] | None = None,
    resume: bool = False,
) -> StageResult[Any]:
    """Train (``train`` section), tracked in an MLflow run whose id goes to
    ``<train.out_dir>/mlflow_run.json`` first thing.

    With ``train.nproc > 1`` (and not already under ``torchrun``) the ranks are started
    with ``torchrun``; each runs ``segcore train``, and rank 0 logs into this run. Under
    ``torchrun`` only rank 0 tracks.

    Args:
        resume: continue training from the checkpoint in ``train.out_dir``, and its
            MLflow run.
    """
    from segcore.tracking import run as tracking
    from segcore.train.loop import train_model

    p = params.train
    out_dir = _path(workdir, p.out_dir)
    run_file = out_dir / tracking.RUN_FILE
    dataset = _path(workdir, p.dataset)
    history = _path(workdir, p.history)
    rank = os.environ.get("RANK")
    if rank not in (None, "0"):  # a torchrun worker: trains its share, rank 0 reports
        return StageResult(
            "", train_model(dataset, p, out_dir=out_dir, history_path=history, resume=resume)
        )
    continued = resume or (rank == "0" and os.environ.get(_RESUME_TRACKING_ENV) == "1")
    start = (
        tracking.resume_run(params, workdir, run_file, tags=tags)
        if continued
        else tracking.start_run(params, workdir, tags=tags)
    )
    with start as run:
        run.save(run_file)
        if rank is None and p.nproc > 1:
            _torchrun(p.nproc, Path(workdir), resume)
            return StageResult(f"Train: {p.nproc} processes (torchrun) -> {p.out_dir}", None)
        result = train_model(
            dataset,
            p,
            out_dir=out_dir,
            history_path=history,
            resume=resume,
            callbacks=[run.callback()],
        )
    best = "n/a" if result.best_value is None else f"{result.best_value:.4f}"
    written = ", ".join(str(path) for path in result.bundles.values()) or "none"
    return StageResult(
        f"Train: {len(result.history)} epochs, best {p.evaluation_comparison_key} {best} "
        f"(MLflow run {run.run_id}) -> {written}",
        result,
    )


_RESUME_TRACKING_ENV = "SEGCORE_RESUME_TRACKING"
"""Set for ``torchrun`` ranks started by :func:`run_train`: rank 0 logs into the run in
``mlflow_run.json`` instead of starting one."""


def _torchrun(nproc: int, workdir: Path, resume: bool) -> None:
    """``torchrun --standalone --nproc_per_node=N -m segcore.cli train`` in ``workdir`` (one
    machine, a free rendezvous port); raises on failure."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "segcore.cli",
        "train",
        *(["--resume"] if resume else []),
    ]
    env = {**os.environ, _RESUME_TRACKING_ENV: "1"}
    proc = subprocess.run(cmd, cwd=workdir, env=env, check=False)
    if proc.returncode != 0:
        raise SegcoreError(
            f"distributed training ({' '.join(cmd[2:])}) failed with exit code "
            f"{proc.returncode}; see its output above, or set train.nproc to 1"
        )


def run_evaluate(
    params: Params,
    workdir: str | os.PathLike[str] = ".",
    *,
    tags: Mapping[str, str] | None = None,
) -> StageResult[Any]:
    """Evaluate the bundle on a split and write the report (``evaluate`` section); log the
    measures, the report files and the bundle (as a servable model) to the training's run."""
    from segcore.data.dldataset import DLDataset
    from segcore.evaluate.evaluation import evaluate_model
    from segcore.evaluate.report import METRICS_FILE, write_evaluation_report
    from segcore.infer.apply import load_model
    from segcore.tracking import run as tracking

    p = params.evaluate
    ds = DLDataset.load(_path(workdir, p.dataset))
    bundle = _path(workdir, p.bundle)
    model = load_model(bundle, device=p.device)
    result = evaluate_model(
        model,
        ds,
        split=p.split,
        measures=p.measures,
        batch_size=p.batch_size,
        device=p.device,
        keep_worst=p.worst_k,
    )
    report_dir = _path(workdir, p.report_dir)
    report = write_evaluation_report(
        result,
        ds,
        report_dir,
        history_path=_path(workdir, params.train.history),
        worst_k=p.worst_k,
        model=model,
    )
    run_file = _path(workdir, params.train.out_dir) / tracking.RUN_FILE
    with tracking.resume_run(params, workdir, run_file, tags=tags) as run:
        measures = json.loads((report_dir / METRICS_FILE).read_text(encoding="utf-8"))
        run.log_evaluation(result.split, measures)
        run.log_artifacts(
            sorted(f for f in report_dir.iterdir() if f.is_file() and f.name != REGISTRY_FILE),
            "reports",
        )
        run.log_model(bundle)
    return StageResult(f"{result.render()}\nReport: {report}", result)


def run_register(
    params: Params,
    workdir: str | os.PathLike[str] = ".",
    *,
    tags: Mapping[str, str] | None = None,
) -> StageResult[Any]:
    """Register the evaluated model and apply the champion gate (``register`` section);
    the decision goes to ``<evaluate.report_dir>/registry.json`` too. What the MLflow run
    lacks because its store was down (epochs, measures, model) is logged from the files
    first, so ``segcore register`` completes a run once the store is back."""
    from segcore.tracking import run as tracking
    from segcore.tracking.catch_up import catch_up
    from segcore.tracking.register import register_model

    run_file = _path(workdir, params.train.out_dir) / tracking.RUN_FILE
    with tracking.resume_run(params, workdir, run_file, tags=tags) as run:
        catch_up(run, params, workdir)
        result = register_model(run, params.registry, split=params.evaluate.split)
    write_json_atomic(
        _path(workdir, params.evaluate.report_dir) / REGISTRY_FILE,
        {**result.to_dict(), "run_id": run.run_id},
    )
    return StageResult(result.render(), result)


STAGES: dict[str, Callable[..., StageResult[Any]]] = {
    "synth": run_synth,
    "dataset": run_dataset,
    "split": run_split,
    "preprocess": run_preprocess,
    "train": run_train,
    "evaluate": run_evaluate,
    "register": run_register,
}
"""Every stage of ``dvc.yaml``, in pipeline order."""
TRACKED_STAGES = frozenset({"train", "evaluate", "register"})
"""Stages that log to MLflow and so take ``tags``."""
