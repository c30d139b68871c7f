"""What a pipeline run left behind, read back for people: measures, registry decision, report.

The Prefect flow publishes these as artifacts and ``make run`` prints them; both read the
files the stages wrote (``metrics.json``, ``registry.json``, ``report.md`` in
``evaluate.report_dir``), so they show the current state even when every stage was
skipped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segcore.common.constants import METRICS_FILE, REGISTRY_FILE, REPORT_MD
from segcore.params import Params
from segcore.pipeline.dvc_stage import StageOutcome


def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


@dataclass(frozen=True)
class PipelineResults:
    """The latest results of the pipeline.

    Attributes:
        report_dir: ``evaluate.report_dir``.
        measures: ``metrics.json`` (``None`` before the first evaluation).
        registry: ``registry.json`` (``None`` before the first registration).
    """

    report_dir: Path
    measures: dict[str, Any] | None
    registry: dict[str, Any] | None

    @classmethod
    def load(cls, params: Params, workdir: str | os.PathLike[str] = ".") -> PipelineResults:
        """Read the result files of the repository at ``workdir``."""
        report_dir = Path(workdir) / params.evaluate.report_dir
        return cls(
            report_dir,
            _read_json(report_dir / METRICS_FILE),
            _read_json(report_dir / REGISTRY_FILE),
        )

    def measure_rows(self) -> list[dict[str, Any]]:
        """One ``{"measure", "value"}`` row per measure; per-class ones as ``<measure>/<class>``."""
        rows: list[dict[str, Any]] = []
        for key, value in (self.measures or {}).items():
            if isinstance(value, dict):
                rows += [{"measure": f"{key}/{k}", "value": v} for k, v in value.items()]
            else:
                rows.append({"measure": key, "value": value})
        return rows

    def headline(self, split: str = "test") -> str | None:
        """``test mean_iou 0.873 (class IoU: good 0.99, ...); OK/NG: escape rate 0.000,
        false-reject rate 0.050``; ``None`` before evaluation."""
        if not self.measures:
            return None
        m = self.measures
        per_class = ", ".join(f"{k} {v:.3f}" for k, v in m.get("class_iou", {}).items())
        line = f"{split} mean_iou {m.get('mean_iou', float('nan')):.3f} (class IoU: {per_class})"
        rates = [
            f"{name} {m[key]:.3f}"
            for key, name in (
                ("escape_rate", "escape rate"),
                ("false_reject_rate", "false-reject rate"),
            )
            if key in m
        ]
        return line + (f"; OK/NG: {', '.join(rates)}" if rates else "")

    def markdown(self, outcomes: Sequence[StageOutcome]) -> str:
        """The run as markdown: a table of the stages, the registry decision, ``report.md``."""
        rows = [
            f"| {o.stage} | {o.status} | {o.seconds:.1f} | {'; '.join(o.reasons)} |"
            for o in outcomes
        ]
        parts = [
            "# segcore pipeline run",
            "\n".join(["| stage | status | seconds | why |", "|---|---|---|---|", *rows]),
        ]
        if self.registry:
            r = self.registry
            verb = "promoted to champion" if r.get("promoted") else "kept as challenger"
            parts.append(
                f"**Registry**: {r.get('model_name')} version {r.get('version')} {verb} "
                f"({r.get('metric')} {r.get('value')}; champion before: version "
                f"{r.get('previous_champion')} with {r.get('previous_value')})"
                + (f". {r['incomparable']}" if r.get("incomparable") else "")
            )
        report = self.report_dir / REPORT_MD
        if report.is_file():
            parts.append(report.read_text(encoding="utf-8"))
        return "\n\n".join(parts) + "\n"
