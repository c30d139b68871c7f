"""Augmentation keeps image, label and weight image aligned, and is reproducible."""

from __future__ import annotations

import pytest
import torch

from segcore.params import AugmentationParams
from segcore.train.augment import augment_batch, enabled_distortions, grey_value_scale

OFF = {
    "mirror": "off",
    "rotate": 0,
    "brightness_variation": 0.0,
    "brightness_variation_spot": 0.0,
    "contrast_variation": 0.0,
    "saturation_variation": 0.0,
}


def _batch(n: int = 16, size: int = 12) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images whose channel 0 is the label and channel 1 the weight: alignment is checkable."""
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 3, (n, size, size), generator=g)
    weight = torch.rand(n, size, size, generator=g)
    noise = torch.randn(n, 1, size, size, generator=g)
    image = torch.cat([target[:, None].float(), weight[:, None], noise], dim=1)
    return image, target, weight


def _augment(params: AugmentationParams, seed: int = 1, **kwargs: int) -> tuple:
    image, target, weight = _batch()
    out = augment_batch(
        image.clone(),
        target.clone(),
        weight.clone(),
        params,
        torch.Generator().manual_seed(seed),
        torch.ones(3),
        **kwargs,
    )
    return (image, target, weight), out


@pytest.mark.parametrize(
    ("mirror", "rotate"), [("rc", 0), ("r", 0), ("c", 0), ("off", 90), ("off", 180), ("rc", 90)]
)
def test_geometric_distortions_move_image_label_and_weight_together(
    mirror: str, rotate: int
) -> None:
    params = AugmentationParams(
        **{**OFF, "mirror": mirror, "rotate": rotate}, augmentation_percentage=100
    )
    (image, target, _), (img2, tgt2, w2) = _augment(params)
    assert torch.equal(img2[:, 0].long(), tgt2)
    assert torch.equal(img2[:, 1], w2)
    changed = (tgt2 != target).flatten(1).any(1)
    assert changed.sum() >= 12  # 100 %: nearly every sample moved
    for i in range(len(image)):  # each sample is one of the allowed transforms of itself
        candidates = {
            "r": target[i].flip(-2),
            "c": target[i].flip(-1),
            "rc": target[i].flip(-2).flip(-1),
            "90": target[i].rot90(1, (-2, -1)),
            "180": target[i].rot90(2, (-2, -1)),
            "270": target[i].rot90(3, (-2, -1)),
        }
        allowed = {
            "r": ["r"],
            "c": ["c"],
            "rc": ["r", "c", "rc"],
            "off": [],
        }[mirror] + {0: [], 90: ["90", "180", "270"], 180: ["180"]}[rotate]
        assert any(torch.equal(tgt2[i], candidates[a]) for a in allowed), i


def test_photometric_distortions_change_only_the_image() -> None:
    params = AugmentationParams(
        **{
            **OFF,
            "brightness_variation": 40,
            "contrast_variation": 0.5,
            "brightness_variation_spot": 60,
            "saturation_variation": 0.5,
        },
        augmentation_percentage=100,
    )
    (image, target, weight), (img2, tgt2, w2) = _augment(params)
    assert torch.equal(tgt2, target) and torch.equal(w2, weight)
    assert (img2 != image).flatten(1).any(1).all()


def test_percentage_zero_or_nothing_enabled_leaves_the_batch_alone() -> None:
    for params in (AugmentationParams(augmentation_percentage=0), AugmentationParams(**OFF)):
        (image, target, weight), (img2, tgt2, w2) = _augment(params)
        assert torch.equal(img2, image) and torch.equal(tgt2, target) and torch.equal(w2, weight)


def test_share_of_distorted_samples_follows_the_percentage() -> None:
    params = AugmentationParams(**{**OFF, "brightness_variation": 50}, augmentation_percentage=25)
    image = torch.zeros(4000, 1, 2, 2)
    target = torch.zeros(4000, 2, 2, dtype=torch.long)
    out, _, _ = augment_batch(
        image,
        target,
        torch.ones(4000, 2, 2),
        params,
        torch.Generator().manual_seed(0),
        torch.ones(1),
    )
    share = (out != 0).flatten(1).any(1).float().mean().item()
    assert 0.22 < share < 0.28
    assert out.abs().max() <= 50


def test_same_generator_state_gives_the_same_batch_and_slices_match_the_whole() -> None:
    params = AugmentationParams(augmentation_percentage=100, brightness_variation_spot=30)
    _, whole = _augment(params, seed=5)
    _, again = _augment(params, seed=5)
    for a, b in zip(whole, again, strict=True):
        assert torch.equal(a, b)
    # A rank that holds rows 4..11 of a global batch of 16 distorts them as one process would.
    image, target, weight = _batch()
    part = augment_batch(
        image[4:12].clone(),
        target[4:12].clone(),
        weight[4:12].clone(),
        params,
        torch.Generator().manual_seed(5),
        torch.ones(3),
        global_batch=16,
        offset=4,
    )
    for a, b in zip(part, whole, strict=True):
        assert torch.equal(a, b[4:12])


def test_brightness_is_given_on_the_0_255_scale() -> None:
    none = {"normalization_type": "none", "image_range_min": -127.0, "image_range_max": 128.0}
    assert torch.allclose(grey_value_scale(none, 3), torch.ones(3))
    unit = {"normalization_type": "none", "image_range_min": 0.0, "image_range_max": 1.0}
    assert torch.allclose(grey_value_scale(unit, 1), torch.tensor([1 / 255]))
    const = {
        "normalization_type": "constant_values",
        "deviation_values_normalization": [50.0, 25.0, 10.0],
    }
    assert torch.allclose(grey_value_scale(const, 3), torch.tensor([0.02, 0.04, 0.1]))


def test_saturation_needs_rgb_and_rotation_by_90_square_inputs() -> None:
    params = AugmentationParams(saturation_variation=0.3)
    assert "saturation" in enabled_distortions(params, 3)
    assert "saturation" not in enabled_distortions(params, 1)
    with pytest.raises(ValueError, match="square"):
        augment_batch(
            torch.zeros(2, 1, 4, 6),
            torch.zeros(2, 4, 6, dtype=torch.long),
            torch.ones(2, 4, 6),
            AugmentationParams(rotate=90),
            torch.Generator(),
            torch.ones(1),
        )


def _photometric(name: str, value: float, image: torch.Tensor, unit: float = 2.0) -> torch.Tensor:
    """``image`` distorted by one photometric distortion at 100 %, ``unit`` input units per
    grey value."""
    params = AugmentationParams(**{**OFF, name: value}, augmentation_percentage=100)
    n, c, h, w = image.shape
    out, _, _ = augment_batch(
        image.clone(),
        torch.zeros(n, h, w, dtype=torch.long),
        torch.ones(n, h, w),
        params,
        torch.Generator().manual_seed(3),
        torch.full((c,), unit),
    )
    return out


def _spread(values: torch.Tensor, bound: float) -> None:
    """Within +-bound, both signs, and reaching beyond half the bound on both sides."""
    assert values.abs().max() <= bound + 1e-4
    assert values.min() < -bound / 2 and values.max() > bound / 2


def test_brightness_adds_one_signed_offset_per_sample_in_grey_values() -> None:
    image = torch.randn(400, 3, 6, 6)
    delta = _photometric("brightness_variation", 20.0, image) - image
    per_sample = delta[:, :1, :1, :1]
    assert torch.allclose(delta, per_sample.expand_as(delta), atol=1e-5)  # one offset each
    _spread(per_sample.flatten(), 20.0 * 2.0)  # +-20 grey values, 2 input units each


def test_contrast_scales_around_the_mean_by_a_factor_in_range() -> None:
    image = torch.randn(400, 1, 6, 6, generator=torch.Generator().manual_seed(3))
    out = _photometric("contrast_variation", 0.3, image)
    mean = image.mean((1, 2, 3), keepdim=True)
    # The factor is (out - mean) / (image - mean); pixels at the mean give 0/0, and float
    # rounding near it, so one factor per sample is read as the least-squares slope.
    centred = image - mean
    slope = ((out - mean) * centred).sum((1, 2, 3), keepdim=True) / (centred**2).sum(
        (1, 2, 3), keepdim=True
    )
    assert torch.allclose(out - mean, slope * centred, atol=1e-4)  # one factor each
    factor = slope.expand_as(image)
    assert torch.allclose(out.mean((1, 2, 3)), mean.flatten(), atol=1e-5)
    _spread(factor[:, 0, 0, 0] - 1, 0.3)


def test_saturation_blends_with_the_grey_image_by_a_factor_in_range() -> None:
    image = torch.rand(400, 3, 6, 6) * 100
    out = _photometric("saturation_variation", 0.4, image)
    luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    grey = (image * luma).sum(1, keepdim=True)
    assert torch.allclose((out * luma).sum(1, keepdim=True), grey, atol=1e-3)  # grey kept
    # One factor per sample (least squares over its pixels; a per-pixel ratio is unstable
    # where a pixel is nearly grey), and every pixel on that factor's line.
    chroma, moved = image - grey, out - grey
    factor = (moved * chroma).sum((1, 2, 3)) / (chroma * chroma).sum((1, 2, 3))
    assert torch.allclose(moved, factor.view(-1, 1, 1, 1) * chroma, atol=1e-2)
    _spread(factor - 1, 0.4)


def test_a_spot_is_bright_or_dark_peaking_within_its_variation() -> None:
    image = torch.zeros(400, 1, 16, 16)
    delta = _photometric("brightness_variation_spot", 30.0, image)
    peak = torch.where(
        delta.flatten(1).max(1).values >= -delta.flatten(1).min(1).values,
        delta.flatten(1).max(1).values,
        delta.flatten(1).min(1).values,
    )
    # one sign per sample: a bright or a dark spot, never both
    assert ((delta.flatten(1) >= 0).all(1) | (delta.flatten(1) <= 0).all(1)).all()
    _spread(peak, 30.0 * 2.0)
