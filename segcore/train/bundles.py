"""The bundles a training writes: staged while it runs, published when it ends.

A run writes its bundles (``best``, ``final``, ``current``, ``epoch_NNN``) into
``<out_dir>/.staging/`` (hidden: it is not a published bundle). Only when training ends are
they moved onto ``<out_dir>/<name>``, each in one atomic swap
(:func:`segcore.common.io.replace_dir`), and the staging folder is removed (DVC tracks
``out_dir``). So an interrupted run leaves the published bundles of the previous run
untouched; ``--resume`` continues with the staged ones, a new run starts from an empty
staging folder. A bundle the run did not write (e.g. ``best`` of a resumed run that did not
improve) keeps its published version.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from segcore.common.constants import BUNDLE_CONFIG
from segcore.common.io import fsync_path, remove_leftovers, replace_dir
from segcore.model.bundle import save_bundle
from segcore.params import TrainParams
from segcore.train import distributed
from segcore.train.setup import Run

STAGING_DIR = ".staging"
"""Folder in ``train.out_dir`` that holds the bundles of the training under way."""


def prepare_staging(out: Path, resume: bool) -> Path:
    """The staging folder of ``out``: kept when resuming, emptied for a new run.

    Leftovers of writes that a kill interrupted (``.<name>.tmp-*`` and ``.<name>.old-*``
    folders, ``.<name>.*.tmp<suffix>`` files of atomic writes) are removed from ``out``
    first: the training owns ``out``, and DVC would otherwise store them as outputs."""
    for pattern in (".*.tmp-*", ".*.old-*", ".*.tmp.*", ".*.tmp"):
        for left in out.glob(pattern):
            if left.is_dir():
                shutil.rmtree(left, ignore_errors=True)
            else:
                left.unlink(missing_ok=True)
    staging = out / STAGING_DIR
    if not resume:
        shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True, exist_ok=True)
    return staging


def publish_staged(out: Path) -> list[str]:
    """Move every staged bundle onto its published place, then remove the staging folder.

    Returns:
        the names published.
    """
    staging = out / STAGING_DIR
    names = []
    if staging.is_dir():
        for bundle in sorted(staging.iterdir()):
            if bundle.name.startswith(".") or not (bundle / BUNDLE_CONFIG).is_file():
                continue
            remove_leftovers(out / bundle.name)
            replace_dir(bundle, out / bundle.name)
            names.append(bundle.name)
        shutil.rmtree(staging, ignore_errors=True)
        fsync_path(out)
    return names


def epoch_bundle(epoch: int) -> str:
    return f"epoch_{epoch:03d}"


def bundles_on_disk(out: Path, p: TrainParams, epochs_done: int) -> dict[str, Path]:
    """The bundles this run's strategies keep (also those written before a resume)."""
    names = [s for s in ("best", "final", "current") if s in p.serialization_strategies]
    names += [epoch_bundle(e) for e in p.serialization_epochs if e <= epochs_done]
    return {n: out / n for n in names if (out / n / BUNDLE_CONFIG).is_file()}


def save_staged(
    out: Path,
    name: str,
    run: Run,
    p: TrainParams,
    epoch: float,
    measures: dict[str, Any] | None,
    ctx: distributed.DistContext,
) -> Path:
    """Write bundle ``name`` into the staging folder (rank 0) with the training summary."""
    directory = out / STAGING_DIR / name
    summary = {
        "epoch": epoch,
        "comparison_key": p.evaluation_comparison_key,
        "best_value": run.best_value,
        "best_epoch": run.best_epoch,
        "measures": {k: v for k, v in (measures or {}).items() if k != "pixel_confusion_matrix"},
        "processes": ctx.world_size,
        "precision": run.precision.name,
        "params": p.model_dump(mode="json"),
    }
    if run.stop:  # how the run ended (the final bundle): reason, epoch, budget seconds
        summary["stop"] = dict(run.stop)
    if not ctx.is_main:
        return directory
    return save_bundle(directory, run.model, replace(run.config, training_summary=summary))
