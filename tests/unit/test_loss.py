"""Loss properties: uniform weights are plain cross-entropy, weight 0 means no gradient."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from segcore.common.constants import IGNORE_INDEX
from segcore.train.loss import weighted_cross_entropy


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
