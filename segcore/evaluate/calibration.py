"""``segcore calibrate``: choose each defect class's thresholds on the validation split and
write them into a copy of the bundle.

:func:`calibrate_decisions` runs the model on the split, judges every image
(:mod:`segcore.evaluate.decisions`), builds the trade-off curves and picks the operating
point (:mod:`segcore.evaluate.calibrate`). :func:`write_calibration` writes the
calibrated bundle (the weights copied, ``model.json`` with the ``decision`` entry: rules
per class and the operating point with its rates on the split) and the report folder:
``curves.csv`` (per-class curves), ``path.csv`` (the overall curve), ``calibration.json``
(the operating point) and ``tradeoff.png``.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from segcore.common.constants import BUNDLE_CONFIG
from segcore.common.errors import DatasetError
from segcore.common.io import make_temp_dir, replace_dir, write_json_atomic, write_text_atomic
from segcore.data.dldataset import DLDataset
from segcore.evaluate.calibrate import (
    OperatingPoint,
    Sweep,
    Tradeoff,
    choose_point,
    confidence_sweep,
    tradeoff,
)
from segcore.evaluate.evaluation import evaluate_model
from segcore.evaluate.plots import plot_tradeoff
from segcore.infer.apply import SegModel
from segcore.infer.decide import DecisionRules, resolve_rules
from segcore.model.config import json_default
from segcore.params import DecisionParams
from segcore.params.decision import background_names

CALIBRATION_FILE = "calibration.json"
TRADEOFF_PNG = "tradeoff.png"


class CalibrationWarning(UserWarning):
    """The target cannot be met, or a class cannot be calibrated; the result says why."""


@dataclass
class CalibrationResult:
    """The chosen rules, the curves and the operating point on the calibration split."""

    rules: DecisionRules
    tradeoff: Tradeoff
    point: OperatingPoint
    split: str
    num_images: int
    warnings: list[str]
    sweep: Sweep | None = None
    """The confidence sweep around the chosen rules, for the plot."""

    def record(self, params: DecisionParams) -> dict[str, Any]:
        """What the bundle and ``calibration.json`` store about the operating point."""
        c = params.calibration
        return {
            "split": self.split,
            "target": c.target,
            "max_escape_rate": c.max_escape_rate,
            "max_false_reject_rate": c.max_false_reject_rate,
            "target_met": self.point.reachable,
            "escape_rate": self.point.escape_rate,
            "false_reject_rate": self.point.false_reject_rate,
            "num_images": self.num_images,
            "num_defective": self.tradeoff.num_defective,
            "num_defect_free": self.tradeoff.num_defect_free,
            "not_calibrated": self.tradeoff.skipped,
        }

    def metrics(self) -> dict[str, float]:
        """For MLflow: ``calibration/escape_rate``, ``calibration/<class>/min_area``, ..."""
        out = {
            "calibration/escape_rate": self.point.escape_rate,
            "calibration/false_reject_rate": self.point.false_reject_rate,
            "calibration/target_met": float(self.point.reachable),
        }
        for r in self.rules.rules:
            out[f"calibration/{r.class_name}/min_area"] = float(r.min_area)
            out[f"calibration/{r.class_name}/min_confidence"] = r.min_confidence
        return out

    def render(self) -> str:
        """A few lines for the terminal."""
        p = self.point
        lines = [
            f"Calibration on {self.num_images} {self.split} images ({self.tradeoff.num_defective} "
            f"defective, {self.tradeoff.num_defect_free} defect-free): escape rate "
            f"{p.escape_rate:.4f}, false-reject rate {p.false_reject_rate:.4f} ({p.message})"
        ]
        lines += [
            f"  {r.class_name}: {r.describe(self.rules.pixel_size_mm)}" for r in self.rules.rules
        ]
        lines += [f"Warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def calibrate_decisions(
    model: SegModel,
    dataset: DLDataset | str | os.PathLike[str],
    params: DecisionParams,
) -> CalibrationResult:
    """Choose each defect class's ``min_area`` and ``min_confidence`` for the target of
    ``params.calibration`` on its split (see :mod:`segcore.evaluate.calibrate`).

    The rules' other keys (background classes, confidence statistic, ``max_total_area``,
    pixel size) come from ``params``; the model's own rules are not used.

    Raises:
        ParamsError: rules for classes the model does not have.
        DatasetError: the split has no image with a defect (nothing to calibrate on).
    Warns:
        CalibrationWarning: the target cannot be met (the best reachable point is taken),
            or a defect class does not occur in the split (its rule is kept).
    """
    c = params.calibration
    base = resolve_rules(params, model.config)
    model.rules = base
    result = evaluate_model(
        model, dataset, split=c.split, measures=["mean_iou"], batch_size=c.batch_size, keep_worst=0
    )
    if not any(d.defective for d in result.decisions):
        raise DatasetError(
            f"decision.calibration.split: the {c.split} split has no image with a defect "
            f"({', '.join(r.class_name for r in base.rules)}), so no escape rate can be "
            "measured; choose another split or split again so that it holds defective images"
        )
    t = tradeoff(result.decisions, base)
    point = choose_point(t, c.target, c.max_escape_rate, c.max_false_reject_rate)
    notes = [] if point.reachable else [f"decision.calibration.target: {point.message}"]
    notes += [
        f"decision.calibration: class {name} has no ground truth in the {c.split} split; "
        "its rule is kept as configured"
        for name in t.skipped
    ]
    if t.num_defect_free == 0:
        notes.append(
            f"decision.calibration: the {c.split} split has no defect-free image; the "
            "false-reject rate is not measured (0)"
        )
    for note in notes:
        warnings.warn(note, CalibrationWarning, stacklevel=2)
    rules = replace(base, rules=t.rules_at(point.index, base), source="bundle")
    sweep = confidence_sweep(result.decisions, rules)
    calibrated = CalibrationResult(rules, t, point, c.split, result.num_images, notes, sweep)
    calibrated.rules = replace(rules, calibration=calibrated.record(params))
    return calibrated


def write_calibration(
    result: CalibrationResult,
    params: DecisionParams,
    bundle: str | os.PathLike[str],
    out_bundle: str | os.PathLike[str],
    report_dir: str | os.PathLike[str],
) -> Path:
    """Write the calibrated bundle and the calibration report; returns the bundle path.

    The bundle is copied whole into a temporary folder beside ``out_bundle``, its
    ``model.json`` gets the ``decision`` entry, and the folder replaces ``out_bundle`` in
    one step: a reader never sees half a bundle.
    """
    src, dst = Path(bundle), Path(out_bundle)
    meta = json.loads((src / BUNDLE_CONFIG).read_text(encoding="utf-8"))
    names, ids = meta["class_names"], meta["class_ids"]
    background = background_names(params, names, ids, meta["ignore_class_ids"])
    meta["decision"] = result.rules.to_bundle(background)
    tmp = make_temp_dir(dst)
    try:
        shutil.copytree(src, tmp, dirs_exist_ok=True)
        text = json.dumps(meta, indent=2, default=json_default) + "\n"
        write_text_atomic(tmp / BUNDLE_CONFIG, text)
        replace_dir(tmp, dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _write_report(result, params, Path(report_dir))
    return dst


def _write_report(result: CalibrationResult, params: DecisionParams, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    t = result.tradeoff
    curves = pd.concat([c.frame() for c in t.curves], ignore_index=True)
    write_text_atomic(out / "curves.csv", curves.to_csv(index=False, float_format="%.6g"))
    write_text_atomic(out / "path.csv", t.path_frame().to_csv(index=False, float_format="%.6g"))
    record = result.record(params) | {
        "rules": {r.class_name: asdict(r) for r in result.rules.rules},
        "warnings": result.warnings,
    }
    write_json_atomic(out / CALIBRATION_FILE, record)
    assert result.sweep is not None
    plot_tradeoff(
        result.sweep,
        (result.point.escape_rate, result.point.false_reject_rate),
        out / TRADEOFF_PNG,
        front=t,
        title=f"Escape rate vs false-reject rate ({result.split}, {result.num_images} images)",
    )
