"""The losses: HALCON's weighted cross-entropy (uniform weights are plain cross-entropy,
weight 0 means no gradient), and ce+dice and focal against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from segcore.common.constants import IGNORE_INDEX
from segcore.params import TrainParams
from segcore.train.loss import LossFn, make_loss, weighted_cross_entropy, weighted_dice


def _inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 4, 5, 6, generator=g, requires_grad=True)
    target = torch.randint(0, 4, (2, 5, 6), generator=g)
    return logits, target


def test_uniform_weights_equal_plain_cross_entropy() -> None:
    logits, target = _inputs()
    ones = torch.ones(target.shape)
    torch.testing.assert_close(
        weighted_cross_entropy(logits, target, ones), F.cross_entropy(logits, target)
    )


def test_weights_scale_each_pixel_linearly() -> None:
    logits, target = _inputs(1)
    ones = torch.ones(target.shape)
    torch.testing.assert_close(
        weighted_cross_entropy(logits, target, 3 * ones),
        3 * weighted_cross_entropy(logits, target, ones),
    )
    per_pixel = F.cross_entropy(logits, target, reduction="none")
    weight = torch.rand(target.shape, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(
        weighted_cross_entropy(logits, target, weight), (per_pixel * weight).mean()
    )


def test_weight_zero_pixels_get_no_gradient_and_no_loss() -> None:
    logits, target = _inputs(3)
    weight = torch.ones(target.shape)
    weight[0, 1:3, 2:5] = 0
    loss = weighted_cross_entropy(logits, target, weight)
    loss.backward()
    assert logits.grad is not None
    assert torch.all(logits.grad[0, :, 1:3, 2:5] == 0)
    assert torch.all(logits.grad[1].abs().sum(0) > 0)
    # Changing the logits of weight-0 pixels changes nothing.
    other = logits.detach().clone()
    other[0, :, 1:3, 2:5] = 100 * torch.randn(4, 2, 3)
    torch.testing.assert_close(weighted_cross_entropy(other, target, weight), loss.detach())


def test_ignore_index_pixels_contribute_nothing() -> None:
    logits, target = _inputs(4)
    weight = torch.ones(target.shape)
    ignored = target.clone()
    ignored[1] = IGNORE_INDEX
    zero_weight = weight.clone()
    zero_weight[1] = 0
    torch.testing.assert_close(
        weighted_cross_entropy(logits, ignored, weight),
        weighted_cross_entropy(logits, target, zero_weight),
    )


# --------------------------------------------------------------------------- train.loss
# Four pixels, three output channels (channel 2 is an ignore class). Logits are the log of
# the probabilities, so the softmax gives them back exactly:
#   pixel 0: class 0, weight 1, p = (0.5, 0.25, 0.25)
#   pixel 1: class 1, weight 4, p = (0.25, 0.5, 0.25)
#   pixel 2: an ignore-class pixel (IGNORE_INDEX, weight 0), p = (0.2, 0.6, 0.2)
#   pixel 3: class 1 with weight 0 (a label value outside the class ids), p = (0.8, 0.1, 0.1)
PROBS = [[0.5, 0.25, 0.25], [0.25, 0.5, 0.25], [0.2, 0.6, 0.2], [0.8, 0.1, 0.1]]
LN2 = math.log(2)
CE = (1 * LN2 + 4 * LN2) / 4  # sum w * -ln p_true / pixel count
FOCAL_2 = (1 * 0.5**2 * LN2 + 4 * 0.5**2 * LN2) / 4  # (1 - p_true)^2 on top
# Dice over the counted pixels 0 and 1 and the counted classes 0 and 1:
#   class 0: p (0.5, 0.25), truth (1, 0): 2 * 0.5 / (0.75 + 1) = 4/7; class 1 the same.
DICE = 1 - 4 / 7


def _hand_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    logits = torch.tensor(PROBS).log().T.reshape(1, 3, 1, 4).requires_grad_()
    target = torch.tensor([[[0, 1, IGNORE_INDEX, 1]]])
    weight = torch.tensor([[[1.0, 4.0, 0.0, 0.0]]])
    return logits, target, weight


def _loss(name: str, **knobs: float) -> LossFn:
    return make_loss(TrainParams(loss=name, **knobs), ignore_channels=[2])


@pytest.mark.parametrize(
    ("name", "knobs", "expected"),
    [
        ("ce", {}, CE),
        ("focal", {"focal_gamma": 2.0}, FOCAL_2),
        ("focal", {"focal_gamma": 0.0}, CE),
        ("ce+dice", {}, CE + DICE),
        ("ce+dice", {"dice_weight": 0.5}, CE + 0.5 * DICE),
        ("ce+dice", {"dice_weight": 0.0}, CE),
    ],
)
def test_each_loss_matches_its_hand_computed_value(
    name: str, knobs: dict[str, float], expected: float
) -> None:
    logits, target, weight = _hand_batch()
    loss = _loss(name, **knobs)(logits, target, weight)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("name", ["ce", "focal", "ce+dice"])
def test_ignored_and_weight_zero_pixels_count_in_no_loss(name: str) -> None:
    """Pixels 2 (ignore class) and 3 (weight 0): no gradient, and any logits leave the
    loss as it is."""
    logits, target, weight = _hand_batch()
    loss_fn = _loss(name, focal_gamma=0.5)  # gamma < 1: the focal term's gradient at p_t = 1
    loss = loss_fn(logits, target, weight)
    loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    assert torch.all(logits.grad[..., 2:] == 0)
    assert torch.all(logits.grad[..., :2].abs().sum(1) > 0)
    other = logits.detach().clone()
    other[..., 2:] = torch.tensor([[5.0, -3.0], [-2.0, 7.0], [9.0, 1.0]]).reshape(1, 3, 1, 2)
    torch.testing.assert_close(loss_fn(other, target, weight), loss.detach())


def test_dice_leaves_out_classes_without_pixels_and_ignore_channels() -> None:
    """Only class 0 present: its Dice counts, class 1 adds 0, channel 2 is not averaged."""
    logits, _, weight = _hand_batch()
    target = torch.tensor([[[0, 0, IGNORE_INDEX, 0]]])
    # class 0 over pixels 0 and 1: p (0.5, 0.25), truth (1, 1): 2 * 0.75 / (0.75 + 2)
    expected = (1 - 1.5 / 2.75) / 2
    assert weighted_dice(logits, target, weight, [2]).item() == pytest.approx(expected, rel=1e-5)


def test_an_unknown_loss_name_names_the_key_and_the_choices() -> None:
    with pytest.raises(ValidationError) as err:
        TrainParams(loss="dice")
    text = str(err.value)
    assert "loss" in text and "'ce', 'ce+dice' or 'focal'" in text
