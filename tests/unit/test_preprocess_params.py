"""The ``preprocess`` section of params.yaml: defaults, HALCON's rules, every problem at once."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from segcore.common.errors import ParamsError
from segcore.params import (
    ClassWeightParams,
    PreprocessParams,
    PreprocessStageParams,
    load_params,
)

REPO = Path(__file__).resolve().parents[2]


def test_params_yaml_matches_the_defaults() -> None:
    p = load_params(REPO / "params.yaml").preprocess
    # The demo caps class weights lower than HALCON's default (see params.yaml); the rest
    # of the section is exactly the code defaults.
    assert PreprocessStageParams().class_weights.max_weight == 1000.0
    assert p.class_weights.max_weight == 10.0
    assert p.model_copy(update={"class_weights": PreprocessStageParams().class_weights}) == (
        PreprocessStageParams()
    )
    assert p.param.normalization_type == "none"
    assert (p.param.image_range_min, p.param.image_range_max) == (-127.0, 128.0)
    assert p.param.domain_handling == "full_domain"
    assert p.param.mean_values_normalization == [123.675, 116.28, 103.53]
    assert p.class_weights.weights is None


def _problems(tmp_path: Path, section: dict) -> list[str]:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"preprocess": section}))
    with pytest.raises(ParamsError) as info:
        load_params(path)
    return info.value.problems


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    problems = _problems(
        tmp_path,
        {
            "workers": -1,
            "param": {
                "image_width": 0,  # field error
                "image_num_channels": 2,  # field error
                "normalizaton_type": "none",  # misspelt key
                "image_range_min": 10.0,  # rule: min >= max
                "image_range_max": 10.0,
                "set_background_id": 0,  # rule: without class_ids_background
                "ignore_class_ids": [0, 300000],  # field error (range) ...
                "domain_roi": [5, 0, 1, 3],  # rule: row1 > row2
            },
            "class_weights": {"max_weight": 0, "weights": [1.0, -2.0]},
        },
    )
    text = "\n".join(problems)
    for key in (
        "preprocess.workers",
        "preprocess.param.image_width",
        "preprocess.param.image_num_channels",
        "preprocess.param.normalizaton_type: unknown key",
        "preprocess.param.image_range_min: must be below image_range_max",
        "preprocess.param.set_background_id: set_background_id and class_ids_background",
        "preprocess.param.ignore_class_ids.1",
        "preprocess.param.domain_roi: is not a rectangle",
        "preprocess.class_weights.max_weight",
        "preprocess.class_weights.weights.1",
    ):
        assert key in text, f"{key!r} missing from:\n{text}"
    # ... but the clash rule reads ignore_class_ids, which is invalid itself: not guessed at
    assert "may not be merged" not in text


@pytest.mark.parametrize(
    "kw,key,message",
    [
        (
            {"set_background_id": 1, "class_ids_background": [1, 2]},
            "class_ids_background",
            "overlap",
        ),
        ({"class_ids_background": [2]}, "set_background_id", "come together"),
        (
            {"set_background_id": 0, "class_ids_background": [2], "ignore_class_ids": [2]},
            "ignore_class_ids",
            "may not be merged",
        ),
        ({"ignore_class_ids": [4, 4]}, "ignore_class_ids", "duplicates"),
        (
            {"normalization_type": "constant_values", "mean_values_normalization": [1.0, 2.0]},
            "mean_values_normalization",
            "has 2 values but image_num_channels 3 needs 1 value or 3 (one per channel)",
        ),
        (
            {"normalization_type": "constant_values", "image_num_channels": 1},
            "deviation_values_normalization",
            "has 3 values but image_num_channels 1 needs 1 value",
        ),
        ({"deviation_values_normalization": [1.0, 0.0, 1.0]}, "deviation_values_normalization", ""),
        ({"domain_roi": [0, 0, 5]}, "domain_roi", ""),
        ({"domain_roi": [0, -1, 5, 5]}, "domain_roi", ""),
    ],
)
def test_halcon_rules(kw: dict, key: str, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        PreprocessParams(**kw)
    errors = info.value.errors()
    assert any(e["loc"][0] == key and message in e["msg"] for e in errors), errors


def test_valid_combinations() -> None:
    p = PreprocessParams(
        image_num_channels=1,
        normalization_type="constant_values",
        mean_values_normalization=[0.5],
        deviation_values_normalization=[2.0],
        set_background_id=0,
        class_ids_background=[3, 4],
        ignore_class_ids=[255],
        domain_handling="crop_domain",
        domain_roi=[0, 0, 0, 0],
    )
    assert PreprocessParams.model_validate(p.model_dump()) == p  # stored and read back


def test_user_weights_need_one_above_zero() -> None:
    with pytest.raises(ValidationError, match="at least one weight > 0"):
        ClassWeightParams(weights=[0.0, 0.0])
    assert ClassWeightParams(weights=[0.0, 2.0]).weights == [0.0, 2.0]
