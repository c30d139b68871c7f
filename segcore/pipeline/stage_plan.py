"""``segcore plan``: params -> fingerprint, measured machine, plan, and its diff against
``params.yaml``; ``--write`` puts the plan into ``params.yaml`` (comments kept).

Not a stage of the pipeline: it writes parameters, not data, and what it proposes depends
on this machine's measured speed. A plan may propose keys the running version lacks (a
newer version's parameters); they are listed as not supported and never written.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from segcore.common.errors import DatasetError, ParamsError
from segcore.common.images import PixelLimit
from segcore.data.dldataset import DLDataset
from segcore.params import Params, update_params_file
from segcore.pipeline.result import StageResult, stage_path
from segcore.train.plan.fingerprint import DatasetFingerprint, fingerprint_dataset

if TYPE_CHECKING:  # torch loads only once the dataset is known to be fit for a plan
    from segcore.train.plan.choice import Plan
    from segcore.train.plan.machine import Machine, StepCost

SAME, CHANGE, UNSUPPORTED = "same", "change", "not supported by this version"


@dataclass(frozen=True)
class KeyDiff:
    """One proposed key against ``params.yaml``: ``status`` is ``same``, ``change`` or
    ``not supported by this version`` (``current`` is then ``None``)."""

    key: str
    current: Any
    proposed: Any
    status: str


@dataclass(frozen=True)
class PlanResult:
    """What ``segcore plan`` found and proposes."""

    fingerprint: DatasetFingerprint
    machine: Machine
    plan: Plan
    diff: list[KeyDiff]
    dataset: Path

    def changes(self) -> dict[str, Any]:
        """The supported keys whose proposed value differs from ``params.yaml``."""
        return {d.key: d.proposed for d in self.diff if d.status == CHANGE}

    def unsupported(self) -> list[str]:
        return [d.key for d in self.diff if d.status == UNSUPPORTED]


def _field(cls: type[BaseModel], part: str) -> tuple[str, Any] | None:
    """The field of ``cls`` that ``part`` names (by name or alias) and its annotation."""
    for name, info in cls.model_fields.items():
        if part in (name, info.alias):
            return name, info.annotation
    return None


def lookup(params: Params, key: str) -> tuple[bool, Any]:
    """``(True, value)`` when the running version has the flat ``key`` (``train.loss``),
    ``(False, None)`` otherwise; nested sections become plain values (``model_dump``)."""
    node: Any = params
    for part in key.split("."):
        if not isinstance(node, BaseModel):
            return False, None
        found = _field(type(node), part)
        if found is None:
            return False, None
        node = getattr(node, found[0])
    if isinstance(node, BaseModel):
        return True, node.model_dump(mode="json")
    if isinstance(node, list):
        return True, [v.model_dump(mode="json") if isinstance(v, BaseModel) else v for v in node]
    return True, node


def diff_plan(params: Params, plan: Plan) -> list[KeyDiff]:
    """Every proposed key against ``params``."""
    out = []
    for key, value in plan.values().items():
        has, current = lookup(params, key)
        status = UNSUPPORTED if not has else SAME if current == value else CHANGE
        out.append(KeyDiff(key, current, value, status))
    return out


def supported_keys(params: Params, keys: list[str]) -> set[str]:
    return {k for k in keys if lookup(params, k)[0]}


def load_split_dataset(path: Path, key: str, split_out: str) -> DLDataset:
    """The dataset to plan on; it must exist and have a split.

    Raises:
        DatasetError: missing file, not a dataset, or no split (naming ``key`` and the fix).
    """
    if not path.is_file():
        raise DatasetError(
            f"{path}: dataset file not found ({key}); run `segcore dataset` and "
            "`segcore split` first, or pass --dataset PATH"
        )
    dataset = DLDataset.load(path)
    if not dataset.has_split:
        raise DatasetError(
            f"{path} has no split: the plan needs the train split ({key}). Run `segcore "
            f"split` and plan on its output (split.out: {split_out}), or pass --dataset PATH"
        )
    return dataset


DEFAULT_BUDGET = 1800.0
"""Seconds of training planned for when neither ``--budget`` nor ``train.time_budget`` says."""


def plan_budget(params: Params, budget: float | None) -> float:
    """``budget``, else ``train.time_budget`` where this version has it and it is set, else
    :data:`DEFAULT_BUDGET`."""
    if budget is not None:
        return budget
    has, value = lookup(params, "train.time_budget")
    return float(value) if has and value is not None else DEFAULT_BUDGET


def run_plan(
    params: Params,
    budget: float | None,
    workdir: str | os.PathLike[str] = ".",
    *,
    dataset: str | os.PathLike[str] | None = None,
    measure_seconds: float = 3.0,
    report: Callable[[str], None] | None = None,
) -> StageResult[PlanResult]:
    """Fingerprint the dataset (``preprocess.dataset``, or ``dataset``), measure this
    machine and plan a training of ``budget`` seconds (``None``: see :func:`plan_budget`);
    compare with ``params``.

    Raises:
        DatasetError: the dataset is missing or has no split; a label image is unreadable.
        ParamsError: the budget is too short for one epoch, or not positive.
    """
    budget = plan_budget(params, budget)
    if not budget > 0:
        raise ParamsError(f"--budget {budget:g}: give the training time in seconds (> 0)")
    path, ds, fp = _fingerprint(params, workdir, dataset, report)
    pp = params.preprocess.param
    from segcore.train.plan.machine import detect_machine, measure_step, model_multiple
    from segcore.train.plan.rules import plan_training

    machine = detect_machine(params.train.device)
    k, c = len(ds.class_ids), pp.image_num_channels
    if report:
        report(f"Measuring training speed on {machine.describe()} ({params.train.model} model)")

    def measure(height: int, width: int, batch: int) -> StepCost:
        return measure_step(
            params.train,
            machine,
            num_classes=k,
            channels=c,
            height=height,
            width=width,
            batch=batch,
            seconds=measure_seconds,
        )

    candidates = _all_keys()
    plan = plan_training(
        fp,
        machine,
        budget,
        measure,
        params,
        multiple=model_multiple(params.train, k, c),
        supported=supported_keys(params, candidates),
    )
    result = PlanResult(fp, machine, plan, diff_plan(params, plan), path)
    n = len(result.changes())
    return StageResult(f"Plan: {n} change{'s' * (n != 1)} to params.yaml proposed", result)


def _fingerprint(
    params: Params,
    workdir: str | os.PathLike[str],
    dataset: str | os.PathLike[str] | None,
    report: Callable[[str], None] | None,
) -> tuple[Path, DLDataset, DatasetFingerprint]:
    """The dataset to plan on (``dataset``, else ``preprocess.dataset``), read and
    fingerprinted."""
    key = "--dataset" if dataset is not None else "preprocess.dataset"
    path = stage_path(workdir, dataset if dataset is not None else params.preprocess.dataset)
    ds = load_split_dataset(path, key, params.split.out)
    limit = PixelLimit(params.dataset.max_image_pixels, "dataset.max_image_pixels")
    fp = fingerprint_dataset(
        ds,
        ignore_class_ids=params.preprocess.param.ignore_class_ids,
        seed=params.split.seed,
        limit=limit,
        report=report,
    )
    return path, ds, fp


def _all_keys() -> list[str]:
    """The keys any plan may propose whose presence changes a rule (see ``supported``)."""
    return ["train.lr_schedule", "train.warmup_epochs", "train.loss", "train.time_budget"]


def write_plan(params_file: str | os.PathLike[str], result: PlanResult) -> list[str]:
    """Write the plan's changed, supported keys into ``params_file`` (comments kept,
    validated before the atomic replace); returns the keys written."""
    changes = result.changes()
    if changes:
        update_params_file(params_file, {tuple(k.split(".")): v for k, v in changes.items()})
    return list(changes)
