"""The decision part of the evaluation report: the escapes and false rejects as image
panels, the trade-off curves on the evaluated split, the decision measures as rows, and
the rules that judged the images (see :mod:`segcore.evaluate.report`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from segcore.evaluate.calibrate import confidence_sweep
from segcore.evaluate.plots import plot_message, plot_samples, plot_tradeoff
from segcore.evaluate.result import EvaluationResult


def _fmt(v: Any) -> str:
    if isinstance(v, float | np.floating):
        return "–" if np.isnan(v) else ("none to count" if v == -1 else f"{v:.4f}")
    return str(v)


def region_columns(result: EvaluationResult) -> dict[str, list[float]]:
    """Region recall / precision and false-alarm regions per class (-1: not a defect class)."""
    d = result.decision_measures
    if not d:
        return {}
    return {
        key: [float(d[key].get(name, -1)) for name in result.class_names]
        for key in ("region_recall", "region_precision", "false_alarm_regions_by_class")
    }


def plot_decisions(result: EvaluationResult, out: Path) -> list[tuple[str, str, str]]:
    """The escapes and false rejects (a note when there are none) and the trade-off curves;
    their ``(file, heading, caption)``."""
    figures = []
    d = result.decision_measures
    for file, samples, what, total in (
        ("escapes.png", result.escapes, "Escapes", d.get("escapes", 0)),
        ("false_rejects.png", result.false_rejects, "False rejects", d.get("false_rejects", 0)),
    ):
        heading = f"{what}: {total} images" + (
            f" ({len(samples)} shown)" if total > len(samples) else ""
        )
        if samples:
            plot_samples(
                samples,
                result.class_ids,
                result.class_names,
                out / file,
                ignore_class_ids=result.ignore_class_ids,
            )
        else:
            plot_message(out / file, f"No {what.lower()} on the {result.split} split.")
        caption = (
            "Defective images judged OK." if what == "Escapes" else "Defect-free images judged NG."
        )
        figures.append((file, heading, f"{caption} See per_image.csv (outcome, fired)."))
    if result.rules is not None:
        point = (
            (d["escape_rate"], d["false_reject_rate"])
            if "escape_rate" in d and "false_reject_rate" in d
            else None
        )
        plot_tradeoff(
            confidence_sweep(result.decisions, result.rules),
            point,
            out / "tradeoff.png",
            title=f"Escape rate vs false-reject rate ({result.split}, {result.num_images} images)",
        )
        figures.append(
            (
                "tradeoff.png",
                "Escape rate vs false-reject rate",
                "Each class's min_confidence swept from 0 to 1 at its min_area, on this "
                "split; the red point: the rules in use.",
            )
        )
    return figures


def rules_note(result: EvaluationResult) -> str:
    """Which rules judged the images."""
    rules = result.rules
    if rules is None:
        return "No decision rules."
    where = "the bundle's" if rules.source == "bundle" else "the decision section's (uncalibrated)"
    each = "; ".join(f"{r.class_name}: {r.describe(rules.pixel_size_mm)}" for r in rules.rules)
    return f"Rules: {where}. {each}."


def decision_rows(result: EvaluationResult) -> list[list[str]]:
    rows = []
    for key, value in result.decision_measures.items():
        if isinstance(value, dict):
            rows += [[f"{key}.{k}", _fmt(v)] for k, v in value.items()]
        else:
            rows.append([key, _fmt(value)])
    return rows
