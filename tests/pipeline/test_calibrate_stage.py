"""Calibration on a split of hand-made samples, the calibrated bundle, and bad input.

The model is the oracle of helpers.models: it predicts the class whose image channel is
largest, so each sample's prediction and confidence are drawn into its image
(probability e^L / (e^L + 2) for a logit L on one channel).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers.cli import run_segcore
from helpers.models import CLASS_IDS, CLASS_NAMES, ORACLE_SIZE, make_config, oracle_model

from segcore.common.errors import DatasetError
from segcore.data.dldataset import DLDataset
from segcore.data.samples import save_sample
from segcore.evaluate.calibration import (
    CalibrationWarning,
    calibrate_decisions,
    write_calibration,
)
from segcore.evaluate.evaluation import evaluate_model
from segcore.infer.decide import rules_for
from segcore.model.config import BUNDLE_FORMAT, read_bundle_config
from segcore.params import DecisionParams

N = ORACLE_SIZE


def _sample(label_boxes, pred_boxes) -> tuple[np.ndarray, np.ndarray]:
    """``(image, label)``: ``label_boxes`` / ``pred_boxes`` as ``(class, r1, r2, c1, c2[, L])``."""
    label = np.zeros((N, N), np.uint16)
    for cid, r1, r2, c1, c2 in label_boxes:
        label[r1:r2, c1:c2] = cid
    image = np.zeros((3, N, N), np.float32)
    image[0] = 10.0  # good, confidently
    for cid, r1, r2, c1, c2, logit in pred_boxes:
        image[:, r1:r2, c1:c2] = 0.0
        image[cid, r1:r2, c1:c2] = logit
    return image, label


SAMPLES = {
    # validation: a crack (16 px, p 0.91), a contamination (15 px, p 0.79), a defect-free
    # image with a 2-px contamination speck (p 1.0) and a clean one
    "v_crack": ("validation", [(2, 4, 8, 4, 8)], [(2, 4, 8, 4, 8, 3.0)]),
    "v_cont": ("validation", [(1, 2, 5, 2, 7)], [(1, 2, 5, 2, 7, 2.0)]),
    "v_speck": ("validation", [], [(1, 10, 12, 10, 11, 10.0)]),
    "v_clean": ("validation", [], []),
    # test: a crack, a defect-free image with a 1-px speck, a clean one
    "t_crack": ("test", [(2, 1, 6, 1, 4)], [(2, 1, 6, 1, 4, 3.0)]),
    "t_speck": ("test", [], [(1, 0, 1, 0, 1, 10.0)]),
    "t_clean": ("test", [], []),
    # train: only defect-free images (a split nothing can be calibrated on)
    "r_clean": ("train", [], []),
}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("calibrate")
    (root / "samples").mkdir()
    rows = []
    for i, (name, (split, labels, preds)) in enumerate(SAMPLES.items()):
        image, label = _sample(labels, preds)
        save_sample(root / "samples" / f"{name}.safetensors", image, label)
        rows.append(
            {
                "image_id": i,
                "image_file_name": f"{name}.png",
                "split": split,
                "sample_file_name": f"{name}.safetensors",
            }
        )
    ds = DLDataset(
        pd.DataFrame(rows),
        root,
        root,
        list(CLASS_NAMES),
        list(CLASS_IDS),
        preprocess_param=make_config().preprocess_param,
        sample_dir=root / "samples",
    )
    return ds.save(root / "dataset.parquet")


def _params(**calibration: object) -> DecisionParams:
    return DecisionParams.model_validate(
        {"background_classes": ["good"], "calibration": calibration}
    )


def test_calibration_finds_no_escapes_without_false_rejects(dataset: Path) -> None:
    result = calibrate_decisions(oracle_model(), dataset, _params())
    assert result.point.reachable
    assert (result.point.escape_rate, result.point.false_reject_rate) == (0.0, 0.0)
    assert (result.tradeoff.num_defective, result.tradeoff.num_defect_free) == (2, 2)
    cont, crack = result.rules.rules
    # the 2-px speck must not fire, the 15-px contamination must
    assert cont.class_name == "contamination" and 2 < cont.min_area <= 15
    assert crack.class_name == "crack" and crack.min_area <= 16
    assert result.metrics()["calibration/escape_rate"] == 0.0
    assert result.rules.calibration["split"] == "validation"


def test_calibrated_bundle_holds_the_rules_and_evaluation_uses_them(
    dataset: Path, tmp_path: Path
) -> None:
    params = _params()
    result = calibrate_decisions(oracle_model(), dataset, params)
    src = tmp_path / "best"
    src.mkdir()
    meta = {"format": BUNDLE_FORMAT, **asdict(make_config())}
    (src / "model.json").write_text(json.dumps(meta))
    (src / "model.safetensors").write_bytes(b"weights")
    out = write_calibration(result, params, src, tmp_path / "calibrated", tmp_path / "report")
    assert (out / "model.safetensors").read_bytes() == b"weights"
    assert json.loads((src / "model.json").read_text())["decision"] is None  # unchanged
    config = read_bundle_config(out)
    rules = rules_for(config)
    assert rules.source == "bundle" and rules.rules == result.rules.rules
    assert config.decision["calibration"]["target_met"] is True
    for name in ("curves.csv", "path.csv", "calibration.json", "tradeoff.png"):
        assert (tmp_path / "report" / name).is_file(), name
    # the test split judged by the calibrated rules: the crack caught, the 1-px speck not
    model = oracle_model()
    model.rules = rules
    measures = evaluate_model(model, dataset, split="test").decision_measures
    assert measures["image_confusion"] == {
        "ok_as_ok": 2,
        "ok_as_ng": 0,
        "ng_as_ok": 0,
        "ng_as_ng": 1,
    }
    assert (measures["escape_rate"], measures["false_reject_rate"]) == (0.0, 0.0)


def test_split_without_defects_is_refused_naming_the_key(dataset: Path) -> None:
    with pytest.raises(DatasetError, match=r"decision\.calibration\.split"):
        calibrate_decisions(oracle_model(), dataset, _params(split="train"))


def test_unreachable_target_warns_and_keeps_the_best_point(dataset: Path) -> None:
    # a contamination rule that needs max confidence 1.0 everywhere cannot be met on the
    # 0.79 contamination; with max_total_area the speck always fires
    params = DecisionParams.model_validate(
        {
            "background_classes": ["good"],
            "classes": {"contamination": {"max_total_area": 1}},
            "calibration": {"target": "false_reject_rate", "max_false_reject_rate": 0.0},
        }
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = calibrate_decisions(oracle_model(), dataset, params)
    assert not result.point.reachable
    assert result.point.false_reject_rate == 0.5  # the speck's image, whatever the thresholds
    messages = [str(w.message) for w in caught if w.category is CalibrationWarning]
    assert any("decision.calibration.target" in m and "best reachable" in m for m in messages)


def test_cli_refuses_rules_for_unknown_classes_and_negative_areas(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text(
        "decision:\n  classes:\n    scratch: {min_area: 5}\n  default:\n    min_area: -2\n"
    )
    done = run_segcore("calibrate", cwd=tmp_path)
    assert done.returncode == 2
    assert "decision.default.min_area" in done.stderr
    assert "Traceback" not in done.stderr
    (tmp_path / "params.yaml").write_text("decision:\n  classes:\n    scratch: {min_area: 5}\n")
    done = run_segcore("calibrate", cwd=tmp_path)
    assert done.returncode == 2 and "decision.classes.scratch" in done.stderr
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]  # nothing written
