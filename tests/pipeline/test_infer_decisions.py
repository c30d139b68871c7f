"""The OK/NG verdict of `segcore infer`: images table, regions table, overlay, summary.

The model is a real 1x1 convolution that predicts class ``bright`` where the grey value
is above 127, so the regions are the drawn squares; its bundle config holds the rule
``bright: area >= 100 px``.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from helpers.cli import run_segcore
from helpers.models import make_bundle

from segcore.common.display import VERDICT_COLORS
from segcore.common.images import write_image_atomic
from segcore.infer.apply import SegModel, apply_model
from segcore.infer.files import run_inference
from segcore.model.bundle import BundleConfig

NET = 32
RULES = {
    "background_classes": ["good"],
    "rules": {"bright": {"min_area": 100, "min_confidence": 0.5}, "never": {}},
    "calibration": {"split": "validation"},
}


def _model() -> SegModel:
    config = BundleConfig(
        architecture={"name": "conv1x1"},
        class_ids=[0, 1, 7],
        class_names=["good", "bright", "never"],
        ignore_class_ids=[],
        preprocess_param={"image_width": NET, "image_height": NET, "image_num_channels": 3},
        decision=RULES,
    )
    conv = torch.nn.Conv2d(3, 3, 1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0] = -1 / 30
        conv.weight[1] = 1 / 30
        conv.bias.copy_(torch.tensor([0.0, 0.0, -1000.0]))
    return SegModel(conv, config)


def _square(box: tuple[int, int, int, int] | None) -> np.ndarray:
    image = np.zeros((64, 64), np.uint8)
    if box is not None:
        r1, c1, r2, c2 = box
        image[r1 : r2 + 1, c1 : c2 + 1] = 255
    return image


IMAGES = {
    "small": _square((4, 4, 9, 9)),  # 36 px: below the rule, OK
    "large": _square((20, 10, 39, 39)),  # 600 px: NG
    "empty": _square(None),  # OK
}


def test_verdicts_in_tables_overlay_and_summary(tmp_path: Path) -> None:
    for name, image in IMAGES.items():
        write_image_atomic(tmp_path / "in" / f"{name}.png", image)
    out = tmp_path / "out"
    summary = run_inference(_model(), [tmp_path / "in"], out)
    assert summary.ok and summary.num_ng == 1 and summary.ng_by_class == {"bright": 1}
    assert "Verdicts: 2 OK, 1 NG (bright 1); rules: the bundle's (calibrated on validation)" in (
        summary.render()
    )
    images = pd.read_parquet(out / "images.parquet")
    assert images.equals(
        pd.read_csv(out / "images.csv", keep_default_na=False).astype(images.dtypes.to_dict())
    )
    verdicts = {Path(f).stem: v for f, v in zip(images["file"], images["verdict"], strict=True)}
    assert verdicts == {"small": "OK", "large": "NG", "empty": "OK"}
    large = images[images["verdict"] == "NG"].iloc[0]
    assert large["fired_classes"] == "bright" and large["reason"].startswith("NG: bright: region")
    regions = pd.read_parquet(out / "regions.parquet")
    bright = regions[regions["class_name"] == "bright"]
    assert sorted(zip(bright["area"] > 100, bright["fires"], strict=True)) == [
        (False, False),
        (True, True),
    ]
    assert (regions["max_confidence"] >= regions["mean_confidence"]).all()
    for name, verdict in verdicts.items():
        overlay = cv2.cvtColor(cv2.imread(str(out / f"{name}_overlay.png")), cv2.COLOR_BGR2RGB)
        assert tuple(overlay[0, 0]) == VERDICT_COLORS[verdict], name
    # the library call decides the same way
    results = apply_model(_model(), list(IMAGES.values()))
    assert [r.verdict.label for r in results] == ["OK", "NG", "OK"]
    assert [r.fires for r in results[1].regions if r.class_name == "bright"] == [True]


def test_cli_prints_the_verdict_line_with_the_params_rules(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "bundle")  # no rules in it: params.yaml's decide
    write_image_atomic(tmp_path / "in" / "a.png", IMAGES["large"])
    (tmp_path / "params.yaml").write_text(
        "dataset:\n  class_names: [good, contamination, crack, unknown]\n"
        "  class_ids: [0, 1, 2, 9]\npreprocess:\n  param:\n    ignore_class_ids: [9]\n"
        "decision:\n  default: {min_area: 100000}\n"
    )
    done = run_segcore("infer", bundle, tmp_path / "in", "--out", tmp_path / "out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Verdicts: 1 OK, 0 NG; rules: the decision section's" in done.stdout
