"""Choosing thresholds on hand-made judged images: the curves, the operating point, and a
target that no threshold meets."""

from __future__ import annotations

import numpy as np
import pytest

from segcore.evaluate.calibrate import choose_point, confidence_sweep, tradeoff
from segcore.evaluate.decisions import ClassRegions, ImageDecision
from segcore.infer.decide import ClassRule, DecisionRules, Verdict

CRACK = 2
BASE = DecisionRules((ClassRule(CRACK, "crack", 1, 0.0),))


def _image(i: int, defective: bool, regions: list[tuple[float, float]]) -> ImageDecision:
    area = np.array([a for a, _ in regions], dtype=np.float64)
    conf = np.array([c for _, c in regions], dtype=np.float64)
    return ImageDecision(
        image_id=i,
        name=f"im{i}",
        truth_classes=(CRACK,) if defective else (),
        verdict=Verdict(),
        gt_regions={CRACK: int(defective)},
        gt_found={CRACK: 0},
        fired_regions={CRACK: 0},
        fired_true={CRACK: 0},
        candidates={CRACK: ClassRegions(area, conf, conf)},
    )


def test_curve_keeps_only_points_no_other_beats() -> None:
    # a defect-free image whose false region looks like the crack: catching the crack
    # costs a false reject, so the curve is (0 escapes, 1/2 rejected) then (1, 0)
    images = [_image(0, True, [(20, 0.8)]), _image(1, False, [(20, 0.8)]), _image(2, False, [])]
    (curve,) = tradeoff(images, BASE).curves
    assert curve.escape_rate.tolist() == [0.0, 1.0]
    assert curve.false_reject_rate.tolist() == [0.5, 0.0]
    point = choose_point(tradeoff(images, BASE), "false_reject_rate", 0.0, 0.1)
    assert point.reachable and (point.escape_rate, point.false_reject_rate) == (1.0, 0.0)


def _images() -> list[ImageDecision]:
    """Two defective images: cracks of 50 px at 0.9 and 20 px at 0.7. Three defect-free:
    a false 5 px speck at 0.95, a false 30 px region at 0.6, and nothing. Catching both
    cracks without a false reject needs 5 < min_area <= 20 and 0.6 < min_confidence <= 0.7.
    """
    return [
        _image(0, True, [(50, 0.9)]),
        _image(1, True, [(20, 0.7)]),
        _image(2, False, [(5, 0.95)]),
        _image(3, False, [(30, 0.6)]),
        _image(4, False, []),
    ]


def test_no_escapes_at_no_false_rejects_when_the_thresholds_separate_them() -> None:
    t = tradeoff(_images(), BASE)
    (curve,) = t.curves
    # one point beats every other: no escape and no false reject
    assert curve.escape_rate.tolist() == [0.0] and curve.false_reject_rate.tolist() == [0.0]
    assert t.escape_rate.tolist() == [0.0] and t.false_reject_rate.tolist() == [0.0]
    point = choose_point(t, "escape_rate", 0.0, 0.05)
    assert point.reachable and (point.escape_rate, point.false_reject_rate) == (0.0, 0.0)
    (rule,) = t.rules_at(point.index, BASE)
    assert 5 < rule.min_area <= 20 and 0.6 < rule.min_confidence <= 0.7


def test_an_escape_rate_target_trades_false_rejects() -> None:
    # allowing one escape in two: the 20 px crack may pass, and so may everything below 0.9
    t = tradeoff(_images(), BASE)
    point = choose_point(t, "escape_rate", 0.5, 0.05)
    assert point.reachable and point.false_reject_rate == 0.0 and point.escape_rate <= 0.5
    # a false-reject target of 0: the lowest escape rate without false rejects is 0
    point = choose_point(t, "false_reject_rate", 0.0, 0.0)
    assert point.reachable and (point.escape_rate, point.false_reject_rate) == (0.0, 0.0)


def test_unreachable_target_reports_the_best_reachable_point() -> None:
    images = [*_images(), _image(5, True, [])]  # a crack the model did not see at all
    t = tradeoff(images, BASE)
    point = choose_point(t, "escape_rate", 0.0, 0.05)
    assert not point.reachable
    assert point.escape_rate == pytest.approx(1 / 3) and point.false_reject_rate == 0.0
    assert "best reachable" in point.message and "0.3333" in point.message


def test_a_class_without_ground_truth_keeps_its_rule() -> None:
    other = ClassRule(1, "contamination", 7, 0.4)
    rules = DecisionRules((other, *BASE.rules))
    images = _images()
    for im in images:
        im.candidates[1] = ClassRegions(np.zeros(0), np.zeros(0), np.zeros(0))
    t = tradeoff(images, rules)
    assert t.skipped == ["contamination"]
    chosen = t.rules_at(0, rules)
    assert chosen[0] == other and chosen[1].class_name == "crack"


def test_confidence_sweep_runs_from_all_rejected_to_all_passed() -> None:
    sweep = confidence_sweep(_images(), BASE)  # min_area 1: every region counts
    escape, reject = sweep.overall
    # threshold 0: both cracks and both false regions fire; above 1: nothing does
    assert (escape[0], reject[0]) == (0.0, pytest.approx(2 / 3))
    assert (escape[-1], reject[-1]) == (1.0, 0.0)
    # at 0.65: the 0.9 and 0.7 cracks and the 0.95 speck fire, the 0.6 region does not
    k = int(np.argmin(np.abs(sweep.confidence - 0.65)))
    assert (escape[k], reject[k]) == (0.0, pytest.approx(1 / 3))
    assert np.all(np.diff(escape) >= 0) and np.all(np.diff(reject) <= 0)
    assert list(sweep.classes) == ["crack"]
