"""The text ``segcore plan`` prints: the fingerprint, the plan with its reasons, the diff."""

from __future__ import annotations

import json
from typing import Any

from segcore.pipeline.stage_plan import CHANGE, UNSUPPORTED, PlanResult


def _value(value: Any) -> str:
    """A value as YAML flow would show it (``null``, ``[]``, ``0.5``, ``ce+dice``)."""
    if isinstance(value, str):
        return value
    return json.dumps(value)


def fingerprint_lines(result: PlanResult) -> list[str]:
    fp = result.fingerprint
    splits = ", ".join(f"{k} {v}" for k, v in sorted(fp.split_counts.items()))
    size = f"{fp.width}x{fp.height}" + ("" if fp.same_size else " median")
    lines = [
        f"Dataset {result.dataset}: {fp.num_samples} samples ({splits}), images {size} "
        f"(sides {fp.min_side}-{fp.max_side} px), {fp.channels} channel(s); defect sizes "
        f"from {fp.sampled_images} train label images",
        f"  {'class':<16}{'id':>6}{'% train px':>12}{'images':>8}{'regions':>9}"
        f"{'width px':>10}{'area px':>10}",
    ]
    for c in fp.classes:
        bg = c.class_id == fp.background_id
        width = "-" if bg or c.median_width is None else f"{c.median_width:.0f}"
        area = "-" if bg or c.median_area is None else f"{c.median_area:.0f}"
        regions = "-" if bg else str(c.components)
        lines.append(
            f"  {c.name[:15]:<16}{c.class_id:>6}{100 * c.pixel_fraction:>12.3f}"
            f"{c.train_images:>8}{regions:>9}{width:>10}{area:>10}"
        )
    lines.append("  (width and area: median over the regions found, at original resolution)")
    cost = result.plan.cost
    lines.append(
        f"Machine: {result.machine.describe()}; measured {1000 * cost.seconds_per_sample:.0f} "
        f"ms per training sample at the planned input size ({cost.steps} timed steps)"
    )
    return lines


def plan_lines(result: PlanResult) -> list[str]:
    plan = result.plan
    lines = [f"Plan for {plan.budget:g} s of training (an epoch about {plan.epoch_seconds:.1f} s):"]
    for choice in plan.choices:
        values = ", ".join(f"{k} = {_value(v)}" for k, v in choice.values.items()) or "as is"
        lines.append(f"  {choice.topic}: {values}")
        lines.append(f"    because {choice.reason}")
    return lines


def diff_lines(result: PlanResult, params_file: str) -> list[str]:
    changed = [d for d in result.diff if d.status == CHANGE]
    lines = [f"Changes to {params_file}:" if changed else f"No changes to {params_file}."]
    lines += [f"  {d.key}: {_value(d.current)} -> {_value(d.proposed)}" for d in changed]
    missing = [d for d in result.diff if d.status == UNSUPPORTED]
    if missing:
        lines.append("Proposed but not supported by this version (not written):")
        lines += [f"  {d.key}: {_value(d.proposed)}" for d in missing]
    return lines


def render(result: PlanResult, params_file: str) -> str:
    """Everything ``segcore plan`` prints, as plain text."""
    return "\n".join(
        [*fingerprint_lines(result), "", *plan_lines(result), "", *diff_lines(result, params_file)]
    )
