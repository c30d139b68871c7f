"""The learning-rate schedule per update (warm-up, poly, cosine) and its rules."""

from __future__ import annotations

import math
from typing import Any

import pytest
from pydantic import ValidationError

from segcore.params import TrainParams
from segcore.train.schedule import learning_rate_factor
from segcore.train.solver import solver_values

STEPS = 4
"""Updates per epoch: 3 epochs are updates 0..11, a warm-up of 1 epoch updates 0..3."""


def _rates(**changes: Any) -> list[float]:
    params = TrainParams(
        **({"learning_rate": 0.1, "num_epochs": 3, "change_strategies": []} | changes)
    )
    return [solver_values(params, k / STEPS, STEPS)["learning_rate"] for k in range(3 * STEPS)]


def test_warm_up_then_cosine_by_hand() -> None:
    """W = 4 warm-up updates of T = 12: lr * (k + 1) / 4, then t = (k - 4) / 8 and
    lr * (1 + cos(pi t)) / 2."""
    cos = [0.1 * (1 + math.cos(math.pi * t / 8)) / 2 for t in range(8)]
    expected = [0.025, 0.05, 0.075, 0.1, *cos]
    assert cos[4] == pytest.approx(0.05)  # halfway through the decay: half the rate
    assert _rates(lr_schedule="cosine", warmup_epochs=1) == pytest.approx(expected)


def test_poly_without_warm_up_by_hand() -> None:
    """t = k / 12 and lr * (1 - t)^0.9; the last update runs just above 0."""
    expected = [0.1 * (1 - k / 12) ** 0.9 for k in range(12)]
    rates = _rates(lr_schedule="poly")
    assert rates == pytest.approx(expected)
    assert rates[0] == 0.1 and rates[6] == pytest.approx(0.1 * 0.5**0.9)
    assert 0 < rates[-1] < 0.011


def test_warm_up_alone_leads_into_the_change_strategies() -> None:
    """lr_schedule none: the warm-up scales what the change strategies give."""
    rates = _rates(
        warmup_epochs=0.5,
        change_strategies=[{"model_param": "learning_rate", "epochs": [2], "values": [0.01]}],
    )
    assert rates == pytest.approx([0.05, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1] + [0.01] * 4)
    assert _rates() == [0.1] * 12  # the default: HALCON's constant rate


def test_the_factor_is_a_pure_function_of_the_update() -> None:
    params = TrainParams(
        num_epochs=5, lr_schedule="cosine", warmup_epochs=0.5, change_strategies=[]
    )
    first = [learning_rate_factor(params, k, 10) for k in range(50)]
    assert first == [learning_rate_factor(params, k, 10) for k in range(50)]
    assert max(first) == 1.0 and min(first) > 0


def test_a_schedule_beside_a_learning_rate_change_strategy_is_refused() -> None:
    strategy = {"model_param": "learning_rate", "epochs": [2], "values": [0.01]}
    with pytest.raises(ValidationError) as err:
        TrainParams(lr_schedule="cosine", change_strategies=[strategy])
    text = str(err.value)
    assert (
        "lr_schedule" in text
        and "remove that change strategy (in params.yaml), or set lr_schedule none" in text
    )
    momentum = {"model_param": "momentum", "epochs": [2], "values": [0.5]}
    TrainParams(solver_type="sgd", lr_schedule="poly", change_strategies=[momentum])
    with pytest.raises(ValidationError, match="warmup_epochs"):
        TrainParams(num_epochs=3, warmup_epochs=3, change_strategies=[])
    with pytest.raises(ValidationError, match="lr_schedule"):
        TrainParams(lr_schedule="step")
