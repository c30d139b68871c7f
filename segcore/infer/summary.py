"""What a ``segcore infer`` run did: counts, verdicts, failures, tables, time."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from segcore.infer.apply import SegModel
from segcore.infer.decide import Verdict


@dataclass
class InferenceSummary:
    """What a run did: counts, failures (file, reason), outputs and time."""

    out_dir: Path
    num_inputs: int = 0
    num_done: int = 0
    num_regions: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    not_written: list[tuple[str, str]] = field(default_factory=list)
    """Tables that could not be written (path, reason)."""
    notes: list[str] = field(default_factory=list)
    """Warnings about the run (inputs converted to the model's bit depth)."""
    seconds: float = 0.0
    regions_parquet: Path | None = None
    regions_csv: Path | None = None
    images_parquet: Path | None = None
    images_csv: Path | None = None
    num_ng: int = 0
    """Images with verdict NG."""
    ng_by_class: dict[str, int] = field(default_factory=dict)
    """Class name -> NG images where its rule fired (an image may count for several)."""
    rules: str = ""
    """Where the decision rules came from (the bundle, or params.yaml's defaults)."""

    def count(self, verdict: Verdict) -> None:
        """Count one image's verdict."""
        if not verdict.ok:
            self.num_ng += 1
            for name in verdict.classes:
                self.ng_by_class[name] = self.ng_by_class.get(name, 0) + 1

    def verdict_line(self) -> str:
        """``Verdicts: 40 OK, 12 NG (crack 8, contamination 5); rules: ...``."""
        by_class = ", ".join(f"{n} {c}" for n, c in sorted(self.ng_by_class.items()))
        ng = f"{self.num_ng} NG" + (f" ({by_class})" if by_class else "")
        return f"Verdicts: {self.num_done - self.num_ng} OK, {ng}; rules: {self.rules}"

    @property
    def images_per_second(self) -> float:
        return self.num_done / self.seconds if self.seconds > 0 else 0.0

    def render(self) -> str:
        """A few lines for the terminal."""
        lines = [
            f"Inference: {self.num_done} of {self.num_inputs} images in {self.seconds:.1f} s "
            f"({self.images_per_second:.1f} images/s), {self.num_regions} regions -> {self.out_dir}",
            self.verdict_line(),
        ]
        lines.extend(f"Warning: {note}" for note in self.notes)
        if self.failed:
            lines.append(f"{len(self.failed)} input(s) failed and were skipped:")
            lines.extend(f"  {f}: {reason}" for f, reason in self.failed)
        if self.not_written:
            lines.append(f"{len(self.not_written)} table(s) could not be written:")
            lines.extend(f"  {f}: {reason}" for f, reason in self.not_written)
        return "\n".join(lines)

    @property
    def ok(self) -> bool:
        """Every input segmented and every table written."""
        return not self.failed and not self.not_written


def rules_source(model: SegModel) -> str:
    """Where the model's decision rules come from, for the summary."""
    calibration = model.rules.calibration or {}
    if model.rules.source == "bundle":
        split = calibration.get("split")
        return f"the bundle's (calibrated on {split})" if split else "the bundle's"
    return "the decision section's (the bundle has none; run segcore calibrate)"
