"""Solver, change strategies (HALCON's momentum rescale) and train-parameter validation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from segcore.common.errors import ParamsError
from segcore.params import ChangeStrategy, TrainParams, load_params
from segcore.train.solver import apply_values, make_optimizer, scheduled_value, solver_values


def test_a_change_strategy_sets_values_from_its_epochs_on() -> None:
    strategy = ChangeStrategy(model_param="learning_rate", epochs=[2, 4.5], values=[0.1, 0.01])
    values = [scheduled_value(1.0, "learning_rate", [strategy], e) for e in (0, 1.99, 2, 4.4, 4.5)]
    assert values == [1.0, 1.0, 0.1, 0.1, 0.01]
    assert scheduled_value(0.9, "momentum", [strategy], 10) == 0.9


def test_sgd_learning_rate_change_rescales_momentum_for_one_step_as_halcon() -> None:
    """torch's SGD equals HALCON's v = m*v - lr*g with momentum * lr_new/lr_old once."""
    grads = torch.randn(12, 5, generator=torch.Generator().manual_seed(0))
    momentum, change_at, lrs = 0.9, 6, (0.1, 0.02)
    params = TrainParams(
        solver_type="sgd",
        learning_rate=lrs[0],
        momentum=momentum,
        weight_prior=0.0,
        change_strategies=[
            {"model_param": "learning_rate", "epochs": [change_at], "values": [lrs[1]]}
        ],
    )
    w = torch.nn.Parameter(torch.zeros(5))
    optimizer = make_optimizer(params, torch.nn.ParameterList([w]))
    halcon_w, velocity, lr_before = torch.zeros(5), torch.zeros(5), lrs[0]
    for step, g in enumerate(grads):
        values = solver_values(params, float(step))  # one step per "epoch"
        apply_values(optimizer, values)
        w.grad = g.clone()
        optimizer.step()

        lr = values["learning_rate"]
        m = momentum * lr / lr_before  # HALCON: rescaled for the step of the change only
        velocity = m * velocity - lr * g
        halcon_w += velocity
        lr_before = lr
        torch.testing.assert_close(w.detach(), halcon_w, rtol=1e-5, atol=1e-7)


def test_adam_uses_its_own_betas_and_weight_prior_is_l2() -> None:
    params = TrainParams(adam_beta1=0.8, adam_beta2=0.95, weight_prior=0.01)
    w = torch.nn.Parameter(torch.ones(3))
    optimizer = make_optimizer(params, torch.nn.ParameterList([w]))
    group = optimizer.param_groups[0]
    assert isinstance(optimizer, torch.optim.Adam)
    assert group["betas"] == (0.8, 0.95) and group["weight_decay"] == 0.01
    sgd = make_optimizer(
        TrainParams(solver_type="sgd", weight_prior=0.5, learning_rate=0.1, momentum=0.0),
        torch.nn.ParameterList([w]),
    )
    w.grad = torch.zeros(3)
    sgd.step()  # gradient 0: only the prior acts, w -= lr * weight_prior * w
    torch.testing.assert_close(w.detach(), torch.full((3,), 0.95))


def test_train_params_report_every_problem_at_once(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(
        """
train:
  batch_size: 0
  device: gpu
  evaluation_comparison_key: iou
  serialization_strategies: [best, epochs]
  change_strategies:
    - {model_param: momentum, epochs: [2, 1], values: [0.5, 1.5]}
"""
    )
    with pytest.raises(ParamsError) as err:
        load_params(path)
    text = "\n".join(err.value.problems)
    for expected in (
        "train.batch_size: Input should be greater than 0",
        "train.device: 'gpu' is unknown; use auto, cpu, cuda or cuda:N",
        "train.evaluation_comparison_key: Input should be 'mean_iou'",
        "train.change_strategies.0: epochs [2.0, 1.0] must be >= 0 and strictly increasing",
        "values [1.5] must be in [0, 1) for momentum",
    ):
        assert expected in text, expected


def test_cross_field_rules_of_train_params() -> None:
    with pytest.raises(ValueError) as err:
        TrainParams(
            num_epochs=5,
            serialization_strategies=["epochs"],
            serialization_epochs=[2, 9],
            change_strategies=[
                {"model_param": "momentum", "epochs": [1], "values": [0.5]},
                {"model_param": "momentum", "epochs": [2], "values": [0.6]},
            ],
        )
    text = str(err.value)
    assert "[9] outside 1..num_epochs (5)" in text
    assert "change ['momentum'] twice" in text
    assert "change momentum, which only solver_type sgd uses" in text
    with pytest.raises(ValueError, match="is empty but serialization_strategies has 'epochs'"):
        TrainParams(serialization_strategies=["epochs"])
