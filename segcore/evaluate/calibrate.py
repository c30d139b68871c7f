"""Trade-off curves of the OK/NG decision and the choice of each class's thresholds.

From the judged images of one split (:mod:`segcore.evaluate.decisions`, which keep every
predicted region's area and confidences), each defect class's rule is tried on a grid of
``min_area`` (geometric steps up to its largest region) x ``min_confidence`` (every
distinct region confidence). Per class, the points that no other point beats on both
counts (images holding the class that it catches, defect-free images it rejects) form
its curve: escape rate of that class vs false-reject rate. Where several grid points give
the same counts, the middle one is taken (a margin on both sides).

The overall curve starts with every class at its most sensitive point and relaxes one
class one step at a time, always the step that removes the most false rejects per escape
it adds, until nothing fires. On that path :func:`choose_point` picks the operating point
for the target: ``escape_rate`` <= x at the lowest false-reject rate, or
``false_reject_rate`` <= y at the lowest escape rate. When no point meets the target, the
best reachable one is taken and the result says so.

For display, :func:`confidence_sweep` sweeps every class's ``min_confidence`` from 0 to
above 1 at its chosen ``min_area``: curves from "everything rejected" to "everything
passes" through the operating point, also where the calibration's curves collapse into
one point (a split the rules separate perfectly).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from segcore.evaluate.decisions import ImageDecision
from segcore.infer.decide import ClassRule, DecisionRules

AREA_STEP = 1.25
"""Ratio of successive min_area candidates."""
MAX_CONFIDENCES = 200
"""At most this many min_confidence candidates per class (quantiles beyond)."""


@dataclass
class ClassCurve:
    """The Pareto curve of one class: candidate rules and their counts, most sensitive first.

    Attributes:
        rule: the class's base rule (confidence statistic, max_total_area).
        min_area / min_confidence: ``(F,)`` the thresholds of each point.
        fires: ``(F, N)`` bool: whether the class fires on each image at each point.
        escape_rate: ``(F,)`` images holding the class not caught by it / such images.
        false_reject_rate: ``(F,)`` defect-free images it rejects / defect-free images.
    """

    rule: ClassRule
    min_area: np.ndarray
    min_confidence: np.ndarray
    fires: np.ndarray
    escape_rate: np.ndarray
    false_reject_rate: np.ndarray

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "class_name": self.rule.class_name,
                "min_area": self.min_area,
                "min_confidence": self.min_confidence,
                "escape_rate": self.escape_rate,
                "false_reject_rate": self.false_reject_rate,
            }
        )


@dataclass
class Tradeoff:
    """Per-class curves and the overall path (see the module docstring).

    Attributes:
        curves: one per defect class that occurs in the split's ground truth.
        path: ``(P, C)`` the index into each curve at each point of the overall path.
        escape_rate / false_reject_rate: ``(P,)`` the overall rates along the path.
        skipped: classes without ground truth in the split (their rule is kept).
    """

    curves: list[ClassCurve]
    path: np.ndarray
    escape_rate: np.ndarray
    false_reject_rate: np.ndarray
    num_defective: int
    num_defect_free: int
    skipped: list[str] = field(default_factory=list)

    def rules_at(self, point: int, base: DecisionRules) -> tuple[ClassRule, ...]:
        """The rules at a point of the path (classes without a curve keep ``base``'s)."""
        chosen = {
            c.rule.class_id: ClassRule(
                c.rule.class_id,
                c.rule.class_name,
                int(c.min_area[k]),
                float(min(1.0, c.min_confidence[k])),
                c.rule.confidence,
                c.rule.max_total_area,
            )
            for c, k in zip(self.curves, self.path[point], strict=True)
        }
        return tuple(chosen.get(r.class_id, r) for r in base.rules)

    def path_frame(self) -> pd.DataFrame:
        """The overall path: rates and each class's thresholds at every point."""
        frame = pd.DataFrame(
            {"escape_rate": self.escape_rate, "false_reject_rate": self.false_reject_rate}
        )
        for i, c in enumerate(self.curves):
            frame[f"{c.rule.class_name}.min_area"] = c.min_area[self.path[:, i]]
            frame[f"{c.rule.class_name}.min_confidence"] = c.min_confidence[self.path[:, i]]
        return frame


def _area_grid(areas: np.ndarray) -> np.ndarray:
    top = float(areas.max(initial=1.0))
    steps = int(np.ceil(np.log(max(top, 1.0)) / np.log(AREA_STEP))) + 1
    grid = np.unique(np.ceil(AREA_STEP ** np.arange(steps)).astype(np.int64))
    return np.append(grid[grid <= top], int(np.floor(top)) + 1)  # the last one never fires


def _confidence_grid(confs: np.ndarray) -> np.ndarray:
    values = np.unique(np.round(confs, 4))
    if len(values) > MAX_CONFIDENCES:
        values = np.unique(np.quantile(values, np.linspace(0, 1, MAX_CONFIDENCES)).round(4))
    return np.concatenate([[0.0], values, [1.01]])  # 1.01: never fires


def _class_fires(
    images: Sequence[ImageDecision], rule: ClassRule, areas: np.ndarray, confs: np.ndarray
) -> np.ndarray:
    """``(N, A, T)``: whether the class fires on each image at each grid point."""
    best = np.full((len(images), len(areas)), -1.0)
    always = np.zeros(len(images), dtype=bool)
    for i, image in enumerate(images):
        cand = image.candidates[rule.class_id]
        conf = cand.confidence(rule.confidence)
        for a, area in enumerate(areas):
            big = conf[cand.area >= area]
            if big.size:
                best[i, a] = big.max()
        if rule.max_total_area is not None and cand.total_area > rule.max_total_area:
            always[i] = True
    return (best[:, :, None] >= confs[None, None, :]) | always[:, None, None]


def class_curve(
    images: Sequence[ImageDecision], rule: ClassRule, free: np.ndarray
) -> ClassCurve | None:
    """The Pareto curve of one class (``None`` when no image holds it in its ground truth)."""
    holds = np.array([rule.class_id in im.truth_classes for im in images])
    if not holds.any():
        return None
    cands = [im.candidates[rule.class_id] for im in images]
    areas = _area_grid(np.concatenate([c.area for c in cands]))
    confs = _confidence_grid(np.concatenate([c.confidence(rule.confidence) for c in cands]))
    fires = _class_fires(images, rule, areas, confs).reshape(len(images), -1)
    caught = (fires & holds[:, None]).sum(axis=0)
    rejected = (fires & free[:, None]).sum(axis=0)
    # Pareto: fewest rejects first; keep a point when it catches more than every earlier one
    order = np.lexsort((-caught, rejected))
    front: list[list[int]] = []
    best = -1
    for j in order:
        if caught[j] > best:
            front.append([j])
            best = caught[j]
        elif caught[j] == best and rejected[j] == rejected[front[-1][0]]:
            front[-1].append(j)
    picks = np.array([group[len(group) // 2] for group in reversed(front)])
    a_idx, t_idx = np.unravel_index(picks, (len(areas), len(confs)))
    n_free = max(int(free.sum()), 1)
    return ClassCurve(
        rule,
        areas[a_idx],
        confs[t_idx],
        fires[:, picks].T,
        1.0 - caught[picks] / holds.sum(),
        rejected[picks] / n_free,
    )


def tradeoff(images: Sequence[ImageDecision], rules: DecisionRules) -> Tradeoff:
    """Per-class curves and the overall path of ``images`` (see the module docstring)."""
    defective = np.array([im.defective for im in images])
    free = ~defective
    curves, skipped = [], []
    for rule in rules.rules:
        curve = class_curve(images, rule, free)
        if curve is None:
            skipped.append(rule.class_name)
        else:
            curves.append(curve)
    path = _greedy_path(curves, defective, free)
    fire = np.zeros((len(path), len(images)), dtype=bool)
    for i, c in enumerate(curves):
        fire |= c.fires[path[:, i]]
    n_def, n_free = int(defective.sum()), int(free.sum())
    return Tradeoff(
        curves,
        path,
        (~fire & defective).sum(axis=1) / max(n_def, 1),
        (fire & free).sum(axis=1) / max(n_free, 1),
        n_def,
        n_free,
        skipped,
    )


def _greedy_path(curves: list[ClassCurve], defective: np.ndarray, free: np.ndarray) -> np.ndarray:
    """Indices into every curve along the overall path, from all most sensitive (0) on."""
    state = np.zeros(len(curves), dtype=np.int64)
    path = [state.copy()]

    def counts(s: np.ndarray) -> tuple[int, int]:
        fire = np.zeros(len(defective), dtype=bool)
        for i, c in enumerate(curves):
            fire |= c.fires[s[i]]
        return int((~fire & defective).sum()), int((fire & free).sum())

    esc, rej = counts(state)
    while True:
        best: tuple[float, float, int] | None = None
        for i, c in enumerate(curves):
            if state[i] + 1 >= len(c.min_area):
                continue
            trial = state.copy()
            trial[i] += 1
            e, r = counts(trial)
            removed, added = rej - r, e - esc
            score = (removed / added if added > 0 else np.inf) if removed > 0 else -added
            key = (float(score), float(removed), -i)
            if best is None or key > best:
                best = key
        if best is None:
            return np.array(path)
        state[-best[2]] += 1
        esc, rej = counts(state)
        path.append(state.copy())


@dataclass(frozen=True)
class OperatingPoint:
    """The chosen point of the overall path, and whether it meets the target."""

    index: int
    escape_rate: float
    false_reject_rate: float
    reachable: bool
    message: str


def choose_point(t: Tradeoff, target: str, max_escape: float, max_reject: float) -> OperatingPoint:
    """The point of the path for ``target`` (``escape_rate`` or ``false_reject_rate``).

    Ties go to the later point on the path (the less sensitive rules)."""
    esc, rej = t.escape_rate, t.false_reject_rate
    n = len(esc)
    eps = 1e-12
    if target == "escape_rate":
        ok = esc <= max_escape + eps
        primary, secondary, limit, name = rej, esc, max_escape, "escape rate"
    else:
        ok = rej <= max_reject + eps
        primary, secondary, limit, name = esc, rej, max_reject, "false-reject rate"
    if ok.any():
        candidates = np.flatnonzero(ok)
        key = [(primary[i], secondary[i], -i) for i in candidates]
        index = int(candidates[min(range(len(key)), key=key.__getitem__)])
        message = f"{name} <= {limit:g} met"
        return OperatingPoint(index, float(esc[index]), float(rej[index]), True, message)
    key = [(secondary[i], primary[i], -i) for i in range(n)]
    index = min(range(n), key=key.__getitem__)
    why = (
        "the model misses some defects at any threshold: train it further or on more "
        "examples of them, or allow a higher decision.calibration.max_escape_rate"
        if target == "escape_rate"
        else "some defect-free images are rejected at any threshold (max_total_area?): "
        "allow a higher decision.calibration.max_false_reject_rate"
    )
    message = (
        f"no thresholds reach a {name} <= {limit:g} on this split (the best reachable is "
        f"{secondary[index]:.4f}); {why}"
    )
    return OperatingPoint(index, float(esc[index]), float(rej[index]), False, message)


@dataclass(frozen=True)
class Sweep:
    """Escape rate vs false-reject rate as every class's ``min_confidence`` sweeps from 0
    to above 1 at its own ``min_area`` (the rules in use otherwise): a curve through the
    operating point from "everything rejected" to "everything passes", for display.

    Attributes:
        confidence: ``(S,)`` the swept thresholds.
        classes: class name -> ``(escape rate among images holding it, false-reject rate)``,
            each ``(S,)``; classes without ground truth in the split are left out.
        overall: ``(escape rate, false-reject rate)`` with every class at the threshold.
    """

    confidence: np.ndarray
    classes: dict[str, tuple[np.ndarray, np.ndarray]]
    overall: tuple[np.ndarray, np.ndarray]
    num_defective: int
    num_defect_free: int


def confidence_sweep(
    images: Sequence[ImageDecision], rules: DecisionRules, steps: int = 101
) -> Sweep:
    """The :class:`Sweep` of ``images`` around ``rules``."""
    thresholds = np.append(np.linspace(0.0, 1.0, steps), 1.01)
    defective = np.array([im.defective for im in images], dtype=bool)
    free = ~defective
    n_def, n_free = max(int(defective.sum()), 1), max(int(free.sum()), 1)
    any_fire = np.zeros((len(thresholds), len(images)), dtype=bool)
    classes = {}
    for rule in rules.rules:
        area = np.array([float(rule.min_area)])
        fires = _class_fires(images, rule, area, thresholds)[:, 0, :].T  # (S, N)
        any_fire |= fires
        holds = np.array([rule.class_id in im.truth_classes for im in images], dtype=bool)
        if holds.any():
            escape = (~fires & holds).sum(axis=1) / holds.sum()
            classes[rule.class_name] = (escape, (fires & free).sum(axis=1) / n_free)
    overall = ((~any_fire & defective).sum(axis=1) / n_def, (any_fire & free).sum(axis=1) / n_free)
    return Sweep(thresholds, classes, overall, int(defective.sum()), int(free.sum()))
