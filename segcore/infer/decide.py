"""Inspection decisions: the regions of one segmentation -> an OK/NG verdict for the image.

HALCON users script this step (threshold on the class image, ``connection``,
``select_shape`` by area, then a rule); here it is one rule per defect class, stored in
the model bundle (``model.json`` key ``decision``) so that ``segcore infer``, the served
model and the evaluation decide the same way:

- a region of a defect class *fires* when its area (pixels of the input image) is at least
  the class's ``min_area`` (and ``min_area_mm2`` when a pixel size is known) and its
  confidence (mean or max of the confidence image over the region) at least
  ``min_confidence``;
- a class also fires when it covers more than ``max_total_area`` pixels of the image;
- the image is NG when any defect class fires, else OK. Background and ignore classes
  never fire.

Rules come from the bundle (written by ``segcore calibrate``), else from the ``decision``
section of ``params.yaml`` (:func:`rules_for`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from segcore.common.errors import ParamsError
from segcore.model.config import BundleConfig
from segcore.params.decision import (
    DecisionParams,
    DecisionRule,
    background_names,
    decision_class_problems,
)

OK = "OK"
NG = "NG"


@dataclass(frozen=True)
class ClassRule:
    """The resolved rule of one defect class.

    Attributes:
        min_area: smallest firing region in input-image pixels (``min_area`` and
            ``min_area_mm2`` combined: the larger applies).
        min_confidence: smallest firing region confidence.
        confidence: ``mean`` or ``max``: which region confidence is compared.
        max_total_area: the class fires when it covers more pixels; ``None``: no limit.
    """

    class_id: int
    class_name: str
    min_area: int
    min_confidence: float
    confidence: str = "mean"
    max_total_area: int | None = None

    def describe(self, pixel_size_mm: float | None = None) -> str:
        """``area >= 20 px (0.05 mm^2), mean confidence >= 0.62``."""
        mm2 = f" ({self.min_area * pixel_size_mm**2:.4g} mm^2)" if pixel_size_mm else ""
        text = f"area >= {self.min_area} px{mm2}, {self.confidence} confidence >= {self.min_confidence:.3g}"
        if self.max_total_area is not None:
            text += f"; or more than {self.max_total_area} px in all"
        return text


@dataclass(frozen=True)
class DecisionRules:
    """The rules of every defect class of a model.

    Attributes:
        rules: one per defect class, in class order.
        pixel_size_mm: edge length of one input pixel in mm (for display), or ``None``.
        source: where they come from: ``bundle`` or ``params``.
        calibration: the calibration record (operating point, validation rates), if any.
    """

    rules: tuple[ClassRule, ...]
    pixel_size_mm: float | None = None
    source: str = "params"
    calibration: Mapping[str, Any] | None = None

    def of(self, class_id: int) -> ClassRule | None:
        """The rule of ``class_id``; ``None`` for background and ignore classes."""
        return next((r for r in self.rules if r.class_id == class_id), None)

    @property
    def defect_ids(self) -> list[int]:
        return [r.class_id for r in self.rules]

    def to_bundle(self, background: list[str]) -> dict[str, Any]:
        """What ``model.json`` stores under ``decision``."""
        return {
            "background_classes": background,
            "pixel_size_mm": self.pixel_size_mm,
            "rules": {
                r.class_name: {
                    "min_area": r.min_area,
                    "min_area_mm2": None,
                    "min_confidence": r.min_confidence,
                    "confidence": r.confidence,
                    "max_total_area": r.max_total_area,
                }
                for r in self.rules
            },
            "calibration": dict(self.calibration or {}),
        }


@dataclass(frozen=True)
class Firing:
    """Why one class made an image NG: its largest firing region, or its total area."""

    class_id: int
    class_name: str
    reason: str
    """``region`` or ``total_area``."""
    area: float
    """The region's area (``region``) or the class's total area (``total_area``), input pixels."""
    confidence: float
    """The region's confidence (``region``); the class's largest region confidence otherwise."""

    def describe(self) -> str:
        if self.reason == "region":
            return f"{self.class_name}: region {self.area:.0f} px, confidence {self.confidence:.2f}"
        return f"{self.class_name}: {self.area:.0f} px in all"


@dataclass(frozen=True)
class Verdict:
    """OK or NG for one image, and which classes' rules fired (one :class:`Firing` each)."""

    fired: tuple[Firing, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.fired

    @property
    def label(self) -> str:
        return OK if self.ok else NG

    @property
    def classes(self) -> list[str]:
        """Names of the classes that fired."""
        return [f.class_name for f in self.fired]

    def describe(self) -> str:
        """``OK`` or ``NG: crack: region 153 px, confidence 0.91; ...``."""
        return OK if self.ok else f"{NG}: " + "; ".join(f.describe() for f in self.fired)


def rule_from(cid: int, name: str, rule: DecisionRule, pixel_size_mm: float | None) -> ClassRule:
    """A params rule resolved to pixels (``min_area_mm2`` through the pixel size)."""
    area = rule.min_area
    if rule.min_area_mm2 is not None and pixel_size_mm:
        area = max(area, math.ceil(rule.min_area_mm2 / pixel_size_mm**2 - 1e-9))
    return ClassRule(cid, name, area, rule.min_confidence, rule.confidence, rule.max_total_area)


def resolve_rules(
    params: DecisionParams, config: BundleConfig, source: str = "params"
) -> DecisionRules:
    """The ``decision`` section's rules for the classes of a model.

    Raises:
        ParamsError: a rule names a class the model does not have, a background or an
            ignore class.
    """
    names, ids = list(config.class_names), list(config.class_ids)
    problems = decision_class_problems(params, names, ids, config.ignore_class_ids)
    if problems:
        raise ParamsError(problems, title="the decision rules do not fit the model's classes")
    skip = set(background_names(params, names, ids, config.ignore_class_ids))
    ignore = set(config.ignore_class_ids)
    rules = tuple(
        rule_from(cid, name, params.classes.get(name, params.default), params.pixel_size_mm)
        for cid, name in zip(ids, names, strict=True)
        if name not in skip and cid not in ignore
    )
    return DecisionRules(rules, params.pixel_size_mm, source)


def bundle_rules(config: BundleConfig) -> DecisionRules | None:
    """The rules stored in a bundle (``None`` when it has none)."""
    if not config.decision:
        return None
    stored = config.decision
    params = DecisionParams.model_validate(
        {
            "background_classes": stored.get("background_classes"),
            "pixel_size_mm": stored.get("pixel_size_mm"),
            "classes": stored.get("rules", {}),
        }
    )
    rules = resolve_rules(params, config, source="bundle")
    return DecisionRules(rules.rules, rules.pixel_size_mm, "bundle", stored.get("calibration"))


def rules_for(config: BundleConfig, params: DecisionParams | None = None) -> DecisionRules:
    """The rules a model decides with: the bundle's, else ``params`` (else the defaults)."""
    stored = bundle_rules(config)
    return stored if stored is not None else resolve_rules(params or DecisionParams(), config)


def decide(
    cols: Mapping[str, np.ndarray], rules: DecisionRules, scale: float = 1.0
) -> tuple[Verdict, np.ndarray]:
    """The verdict of one image from its regions.

    Args:
        cols: the image's regions as columns (:func:`segcore.infer.apply.region_columns`:
            ``class_id``, ``area``, ``mean_confidence``, ``max_confidence``), all regions
            (no area filter).
        rules: from :func:`rules_for`.
        scale: input-image pixels per pixel of ``cols`` (1 at the input's own size; the
            evaluation counts at network resolution).

    Returns:
        the verdict, and per region whether it fires (``(R,)`` bool).
    """
    class_id = np.asarray(cols["class_id"])
    area = np.asarray(cols["area"], dtype=np.float64) * scale
    fires = np.zeros(len(class_id), dtype=bool)
    fired = []
    for rule in rules.rules:
        mine = class_id == rule.class_id
        if not mine.any():
            continue
        conf = np.asarray(cols[f"{rule.confidence}_confidence"], dtype=np.float64)
        hit = mine & (area >= rule.min_area) & (conf >= rule.min_confidence)
        fires |= hit
        total = float(area[mine].sum())
        if hit.any():
            best = np.flatnonzero(hit)[np.argmax(area[hit])]
            fired.append(Firing(rule.class_id, rule.class_name, "region", area[best], conf[best]))
        elif rule.max_total_area is not None and total > rule.max_total_area:
            fired.append(
                Firing(rule.class_id, rule.class_name, "total_area", total, float(conf[mine].max()))
            )
    return Verdict(tuple(fired)), fires
