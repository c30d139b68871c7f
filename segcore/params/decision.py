"""The ``decision`` section: the rules that turn a segmentation into an OK/NG verdict per
image, and how ``segcore calibrate`` chooses their thresholds on the validation split.

An image is NG when any region of a defect class passes that class's rule (large enough,
confident enough), or when a class covers more than its ``max_total_area``. Background
classes and ignore classes never trigger. Areas are in pixels of the images that
``segcore infer`` receives (the original images, not the network input).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ModelWrapValidatorHandler, model_validator

from segcore.common.constants import Split
from segcore.params.base import Problem, Section, validate_with_rules

ConfidenceStat = Literal["mean", "max"]
CalibrationTarget = Literal["escape_rate", "false_reject_rate"]


class DecisionRule(Section):
    """The rule of one defect class: a region of it makes the image NG when it passes."""

    min_area: int = Field(1, ge=1)
    """Smallest region (pixels of the input image) that makes an image NG."""
    min_area_mm2: float | None = Field(None, ge=0.0)
    """Smallest region in mm^2 (needs decision.pixel_size_mm); the larger of the two areas applies."""
    min_confidence: float = Field(0.0, ge=0.0, le=1.0)
    """Smallest region confidence (0-1) that makes an image NG."""
    confidence: ConfidenceStat = "mean"
    """Region confidence: mean or max of the confidence image over the region."""
    max_total_area: int | None = Field(None, ge=0)
    """NG as well when the class covers more pixels than this in one image (all its regions); null: no limit."""


class CalibrationParams(Section):
    """How ``segcore calibrate`` chooses each defect class's min_area and min_confidence."""

    bundle: str = "models/best"
    """Model bundle to calibrate (it is not changed)."""
    out_bundle: str = "calibrated"
    """The calibrated bundle: a copy of bundle with the chosen rules in its model.json."""
    report_dir: str = "reports/calibration"
    """Folder for the trade-off curves (CSV, PNG) and the chosen operating point (JSON)."""
    dataset: str = "data/preprocessed/dataset.parquet"
    """Preprocessed dataset table."""
    split: Split = "validation"
    """Split whose images the thresholds are chosen on (never the test split)."""
    target: CalibrationTarget = "escape_rate"
    """escape_rate: escape rate <= max_escape_rate at the lowest false-reject rate; false_reject_rate: false-reject rate <= max_false_reject_rate at the lowest escape rate."""
    max_escape_rate: float = Field(0.0, ge=0.0, le=1.0)
    """Largest escape rate (defective images passed as OK) for target escape_rate; 0: no escapes."""
    max_false_reject_rate: float = Field(0.05, ge=0.0, le=1.0)
    """Largest false-reject rate (defect-free images rejected) for target false_reject_rate."""
    batch_size: int = Field(8, gt=0)
    """Samples per forward pass."""
    device: str = "auto"
    """auto, cpu, cuda or cuda:N."""


class DecisionParams(Section):
    """Inspection decisions: per-image OK/NG from the regions of each defect class."""

    background_classes: list[str] | None = None
    """Class names of good surface, which never trigger; null: the first class (class id order)."""
    pixel_size_mm: float | None = Field(None, gt=0.0)
    """Edge length of one input-image pixel in mm; needed by min_area_mm2 and shown beside pixel areas."""
    default: DecisionRule = DecisionRule()
    """Rule of every defect class not listed under classes."""
    classes: dict[str, DecisionRule] = {}
    """Class name -> its own rule (same keys as default)."""
    calibration: CalibrationParams = CalibrationParams()
    """How segcore calibrate chooses the thresholds."""

    @model_validator(mode="wrap")
    @classmethod
    def _rules(cls, data: Any, handler: ModelWrapValidatorHandler[DecisionParams]) -> Any:
        return validate_with_rules(cls, data, handler, _decision_rules)


def _decision_rules(p: DecisionParams, bad: set[str]) -> list[Problem]:
    """Cross-field rules: an area in mm^2 needs the pixel size."""
    problems: list[Problem] = []
    if "pixel_size_mm" in bad or p.pixel_size_mm is not None:
        return problems
    rules = [("default", p.default)] if "default" not in bad else []
    if "classes" not in bad:
        rules += [(f"classes.{name}", rule) for name, rule in p.classes.items()]
    for key, rule in rules:
        if rule.min_area_mm2 is not None:
            problems.append(
                (
                    key.split(".")[0],
                    f"{key}.min_area_mm2 is set but decision.pixel_size_mm is not; give the "
                    "pixel size in mm (e.g. 0.05) or use min_area in pixels",
                )
            )
    return problems


def decision_class_problems(
    p: DecisionParams,
    class_names: list[str],
    class_ids: list[int],
    ignore_class_ids: list[int],
) -> list[str]:
    """What is wrong with the class names of the ``decision`` section for these classes:
    names that are not classes, rules for background or ignore classes (empty: nothing)."""
    known = ", ".join(class_names)
    ignore_names = {
        n for n, c in zip(class_names, class_ids, strict=False) if c in ignore_class_ids
    }
    problems = [
        f"decision.background_classes: {name!r} is not a class (classes: {known}); fix the name"
        for name in p.background_classes or []
        if name not in class_names
    ]
    background = set(background_names(p, class_names, class_ids, ignore_class_ids))
    for name in p.classes:
        key = f"decision.classes.{name}"
        if name not in class_names:
            problems.append(
                f"{key}: no class of that name (classes: {known}); fix the name or remove the rule"
            )
        elif name in ignore_names:
            problems.append(
                f"{key}: {name} is an ignore class, which never triggers; remove the rule"
            )
        elif name in background:
            problems.append(
                f"{key}: {name} is a background class (decision.background_classes), which "
                "never triggers; remove the rule or the class from background_classes"
            )
    return problems


def background_names(
    p: DecisionParams, class_names: list[str], class_ids: list[int], ignore_class_ids: list[int]
) -> list[str]:
    """The background classes: ``background_classes``, else the first class that is not an
    ignore class."""
    if p.background_classes is not None:
        return list(p.background_classes)
    ignore = set(ignore_class_ids)
    first = [n for n, c in zip(class_names, class_ids, strict=False) if c not in ignore][:1]
    return first
