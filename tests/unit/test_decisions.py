"""Decision rules and the image- and region-level measures, against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from segcore.common.errors import ParamsError
from segcore.evaluate.decisions import decision_measures, input_scale, judge_image
from segcore.infer.decide import decide, resolve_rules, rules_for
from segcore.model.config import BundleConfig
from segcore.params import DecisionParams

GOOD, CONT, CRACK = 0, 1, 2


def _config(**kw: object) -> BundleConfig:
    return BundleConfig(
        architecture={},
        class_ids=[GOOD, CONT, CRACK],
        class_names=["good", "contamination", "crack"],
        ignore_class_ids=[],
        preprocess_param={},
        **kw,  # type: ignore[arg-type]
    )


def _rules():
    params = DecisionParams.model_validate(
        {
            "background_classes": ["good"],
            "classes": {
                "contamination": {"min_area": 3, "min_confidence": 0.5},
                "crack": {"min_area": 2, "min_confidence": 0.6},
            },
        }
    )
    return resolve_rules(params, _config())


def _image(cells: dict[tuple[int, int], tuple[int, float]]) -> tuple[np.ndarray, np.ndarray]:
    """A 6 x 6 prediction (class ids) and confidence: ``good`` at 0.9 except ``cells``."""
    pred = np.zeros((6, 6), dtype=np.uint16)
    conf = np.full((6, 6), 0.9, dtype=np.float32)
    for (r, c), (cid, p) in cells.items():
        pred[r, c], conf[r, c] = cid, p
    return pred, conf


def _label(cells: dict[tuple[int, int], int]) -> np.ndarray:
    label = np.zeros((6, 6), dtype=np.uint16)
    for (r, c), cid in cells.items():
        label[r, c] = cid
    return label


def _block(rows: range, cols: range, value: object) -> dict[tuple[int, int], object]:
    return {(r, c): value for r in rows for c in cols}


def _five_images():
    """The five hand-made images of the docstring of test_measures_by_hand."""
    a = (*_image({}), _label({}))
    b_pred = _block(range(1, 3), range(1, 3), (CONT, 0.8)) | {(4, 4): (CRACK, 0.9)}
    b = (*_image(b_pred), _label({}))
    c_label = (
        _block(range(0, 2), range(0, 2), CONT)
        | _block(range(2, 4), range(2, 4), CONT)
        | {(0, 2): CRACK, (1, 2): CRACK}
    )
    c_pred = _block(range(2, 4), range(2, 4), (CONT, 0.7)) | {(0, 2): (CRACK, 0.95)}
    c = (*_image(c_pred), _label(c_label))
    d_label = _block(range(0, 6), range(5, 6), CRACK)
    d_pred = (
        _block(range(0, 3), range(5, 6), (CRACK, 0.8))
        | _block(range(4, 6), range(5, 6), (CRACK, 0.8))
        | _block(range(2, 4), range(0, 1), (CRACK, 0.7))
    )
    d = (*_image(d_pred), _label(d_label))
    e_label = _block(range(4, 6), range(0, 2), CONT)
    e = (*_image(_block(range(4, 6), range(0, 2), (CONT, 0.4))), _label(e_label))
    return [a, b, c, d, e]


def test_measures_by_hand() -> None:
    """Rules: contamination area >= 3 and mean confidence >= 0.5, crack >= 2 and >= 0.6.

    A: empty (all good, predicted good): OK, truly OK.
    B: defect-free; predicted a 2x2 contamination at 0.8 (fires: a false alarm) and a
       1-pixel crack (too small): NG, a false reject.
    C: two contamination squares touching at a corner (one 8-connected region) and a
       2-pixel crack touching them; predicted: one square at 0.7 (fires, overlaps the
       region: found) and 1 pixel of the crack (too small: the crack is not found): NG.
    D: a crack along the right image border (6 px); predicted in two pieces of 3 and 2 px
       at 0.8 (both fire, both overlap it) and a 2-px crack on the left border at 0.7
       (fires, no ground truth): NG.
    E: a 2x2 contamination in the bottom-left corner, predicted at 0.4 (too unsure): OK,
       an escape.
    """
    rules = _rules()
    images = [
        judge_image(p, c, lab, rules, image_id=i, name=n)
        for i, (n, (p, c, lab)) in enumerate(zip("ABCDE", _five_images(), strict=True))
    ]
    assert [im.outcome for im in images] == [
        "correct_ok",
        "false_reject",
        "correct_ng",
        "correct_ng",
        "escape",
    ]
    assert images[1].verdict.classes == ["contamination"]
    assert images[3].verdict.classes == ["crack"]
    assert images[2].gt_regions == {CONT: 1, CRACK: 1}  # the touching squares are one region
    m = decision_measures(images, rules)
    assert m["image_confusion"] == {"ok_as_ok": 1, "ok_as_ng": 1, "ng_as_ok": 1, "ng_as_ng": 2}
    assert (m["num_defective"], m["num_defect_free"]) == (3, 2)
    assert (m["escapes"], m["false_rejects"]) == (1, 1)
    assert m["escape_rate"] == pytest.approx(1 / 3)
    assert m["false_reject_rate"] == pytest.approx(1 / 2)
    assert m["image_accuracy"] == pytest.approx(3 / 5)
    # contamination: GT regions C (1) + E (1), found only C's; crack: C (1) + D (1), D's found
    assert m["region_recall"] == pytest.approx({"contamination": 0.5, "crack": 0.5})
    # firing contamination: B (false) and C (true); firing crack: D's three, two true
    assert m["region_precision"] == pytest.approx({"contamination": 0.5, "crack": 2 / 3})
    assert m["false_alarm_regions_by_class"] == {"contamination": 1, "crack": 0}
    assert m["false_alarm_regions"] == 1


def test_empty_split_and_rates_without_denominator() -> None:
    rules = _rules()
    a = judge_image(*_five_images()[0], rules)
    m = decision_measures([a], rules)
    assert "escape_rate" not in m and m["false_reject_rate"] == 0.0
    assert m["region_recall"] == {"contamination": -1.0, "crack": -1.0}


def test_scale_turns_network_pixels_into_input_pixels() -> None:
    # a 1-pixel crack at network resolution is 4 input pixels when the input was 2x larger
    rules = _rules()
    pred, conf, label = _five_images()[1]
    assert judge_image(pred, conf, label, rules, scale=1.0).verdict.classes == ["contamination"]
    assert judge_image(pred, conf, label, rules, scale=4.0).verdict.classes == [
        "contamination",
        "crack",
    ]
    row = {"image_width": 512, "image_height": 256}
    assert input_scale(row, (128, 128), {}) == 8.0
    crop = {"domain_handling": "crop_domain", "domain_roi": [0, 0, 63, 127]}
    assert input_scale(row, (32, 32), crop) == 8.0
    assert input_scale(row, (32, 32), {"mode": "tiled", "scale": 0.5}) == 4.0


def _cols(class_id, area, mean, peak):
    return {
        "class_id": np.array(class_id),
        "area": np.array(area),
        "mean_confidence": np.array(mean),
        "max_confidence": np.array(peak),
    }


def test_rule_kinds_total_area_max_confidence_and_mm2() -> None:
    params = DecisionParams.model_validate(
        {
            "pixel_size_mm": 0.1,
            "classes": {
                "contamination": {"min_area": 5, "max_total_area": 6},
                "crack": {"min_area_mm2": 0.05, "min_confidence": 0.8, "confidence": "max"},
            },
        }
    )
    rules = resolve_rules(params, _config())
    assert rules.of(CRACK).min_area == 5  # 0.05 mm^2 / 0.01 mm^2 per pixel
    assert rules.of(GOOD) is None  # the first class is background by default
    # three 3-px contamination specks: none is large enough, but 9 px in all > 6
    verdict, fires = decide(_cols([1, 1, 1], [3, 3, 3], [0.9] * 3, [0.9] * 3), rules)
    assert verdict.classes == ["contamination"] and verdict.fired[0].reason == "total_area"
    assert not fires.any()
    # a crack of 5 px whose mean is low but whose peak passes: max confidence decides
    verdict, fires = decide(_cols([2], [5], [0.5], [0.85]), rules)
    assert verdict.label == "NG" and fires.tolist() == [True]
    verdict, _ = decide(_cols([2], [4], [0.9], [0.9]), rules)
    assert verdict.ok


def test_bad_rules_name_the_key() -> None:
    with pytest.raises(ParamsError) as err:
        resolve_rules(DecisionParams.model_validate({"classes": {"scratch": {}}}), _config())
    assert "decision.classes.scratch" in err.value.render()
    with pytest.raises(ParamsError) as err:
        resolve_rules(DecisionParams.model_validate({"classes": {"good": {}}}), _config())
    assert "background" in err.value.render()
    with pytest.raises(ValueError, match="min_area"):
        DecisionParams.model_validate({"default": {"min_area": -3}})
    with pytest.raises(ValueError, match="pixel_size_mm"):
        DecisionParams.model_validate({"default": {"min_area_mm2": 0.5}})


def test_bundle_rules_win_over_params() -> None:
    stored = {
        "background_classes": ["good"],
        "rules": {"contamination": {"min_area": 7}, "crack": {"min_confidence": 0.3}},
        "calibration": {"split": "validation"},
    }
    rules = rules_for(_config(decision=stored), DecisionParams())
    assert rules.source == "bundle" and rules.of(CONT).min_area == 7
    assert rules.calibration == {"split": "validation"}
    assert rules_for(_config(), DecisionParams()).source == "params"
