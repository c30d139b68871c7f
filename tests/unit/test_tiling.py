"""Sliding-window inference: tile positions, blending weights, padding, bad overlaps."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from segcore.common.errors import ParamsError
from segcore.infer.tiling import (
    WEIGHT_FLOOR,
    blend_weights,
    check_overlap,
    preprocess_whole_image,
    scaled_size,
    sliding_window,
    tile_starts,
)
from segcore.params import PreprocessParams

TILE = (32, 40)


class Recorder:
    """A forward function that records the batches it gets and answers with ``answer``."""

    def __init__(self, answer) -> None:
        self.answer = answer
        self.shapes: list[tuple[int, ...]] = []

    def __call__(self, tiles: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(tiles.shape))
        return self.answer(tiles)


def identity(tiles: torch.Tensor) -> torch.Tensor:
    return tiles.clone()


def test_tile_starts_hand_computed() -> None:
    # 100 px, tiles of 32, overlap 0.25: at most 32 - 8 = 24 px apart, so
    # ceil((100 - 32) / 24) + 1 = 4 tiles spread over 0..68: 0, 22.67, 45.33, 68.
    assert tile_starts(100, 32, 0.25) == [0, 23, 45, 68]
    assert tile_starts(64, 32, 0.0) == [0, 32]  # no overlap: side by side
    assert tile_starts(32, 32, 0.5) == [0]
    assert tile_starts(20, 32, 0.5) == [0]  # shorter than a tile: one (padded) tile


@pytest.mark.parametrize("length", [33, 77, 100, 257])
@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5, 0.9])
def test_tiles_cover_the_axis_with_at_least_the_overlap(length: int, overlap: float) -> None:
    starts = tile_starts(length, 32, overlap)
    assert starts[0] == 0 and starts[-1] == length - 32
    gaps = np.diff(starts)
    assert (gaps > 0).all() and (gaps <= 32 - round(overlap * 32)).all()


def test_blend_weights_are_centred_symmetric_and_positive() -> None:
    w = blend_weights(*TILE).numpy()
    assert w.shape == TILE and w.dtype == np.float32
    assert w.max() == pytest.approx(1.0) and w.min() >= WEIGHT_FLOOR
    np.testing.assert_allclose(w, w[::-1, :], rtol=1e-6)
    np.testing.assert_allclose(w, w[:, ::-1], rtol=1e-6)
    row = w[TILE[0] // 2]
    half = row[: TILE[1] // 2]
    assert (np.diff(half) >= 0).all() and half[0] < 0.01  # rises from border to centre
    # sigma is 1/8 of the tile: 8 pixels from the centre of a 64-pixel axis, exp(-1/2)
    w64 = blend_weights(1, 64).numpy()[0]
    centre = (64 - 1) / 2
    assert np.interp(centre + 8, np.arange(64), w64) == pytest.approx(math.exp(-0.5), rel=0.02)


@pytest.mark.parametrize("size", [(32, 40), (77, 100), (50, 41), (130, 97)])
@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5])
def test_identity_model_gives_the_input_back(size: tuple[int, int], overlap: float) -> None:
    """Seams are invisible: every pixel is the weighted mean of copies of itself."""
    image = torch.randn(3, *size, generator=torch.Generator().manual_seed(0)) * 50
    out = sliding_window(image, TILE, identity, overlap=overlap, batch_size=3)
    assert out.shape == image.shape
    torch.testing.assert_close(out, image, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("size", [(77, 100), (20, 13)])
def test_constant_model_gives_constant_output(size: tuple[int, int]) -> None:
    probs = torch.tensor([0.2, 0.3, 0.5])

    def constant(tiles: torch.Tensor) -> torch.Tensor:
        n, _, h, w = tiles.shape
        return probs[None, :, None, None].expand(n, 3, h, w)

    out = sliding_window(torch.zeros(1, *size), TILE, constant, overlap=0.5)
    assert out.shape == (3, *size)
    torch.testing.assert_close(out, probs[:, None, None].expand(3, *size), rtol=0, atol=1e-6)


def test_tiles_are_batched_and_always_tile_sized() -> None:
    forward = Recorder(identity)
    sliding_window(torch.zeros(2, 100, 100), TILE, forward, overlap=0.25, batch_size=5)
    rows, cols = len(tile_starts(100, 32, 0.25)), len(tile_starts(100, 40, 0.25))
    assert sum(s[0] for s in forward.shapes) == rows * cols
    assert [s[0] for s in forward.shapes] == [5] * (rows * cols // 5) + (
        [rows * cols % 5] if rows * cols % 5 else []
    )
    assert {s[1:] for s in forward.shapes} == {(2, *TILE)}


def test_image_smaller_than_a_tile_is_padded_and_cropped_back() -> None:
    forward = Recorder(identity)
    image = torch.arange(2 * 20 * 13, dtype=torch.float32).reshape(2, 20, 13) + 1
    out = sliding_window(image, TILE, forward, overlap=0.25)
    assert forward.shapes == [(1, 2, *TILE)]
    torch.testing.assert_close(out, image)
    # one axis shorter than the tile, the other longer
    wide = torch.randn(1, 10, 150)
    torch.testing.assert_close(sliding_window(wide, TILE, identity), wide, rtol=1e-5, atol=1e-5)


def test_position_dependent_model_is_blended_not_overwritten() -> None:
    """A model that answers with each pixel's position in its tile: where tiles overlap, the
    result is a weighted mean of the two answers, strictly between them."""

    def column_in_tile(tiles: torch.Tensor) -> torch.Tensor:
        n, _, h, w = tiles.shape
        return torch.arange(w, dtype=torch.float32).expand(n, 1, h, w).clone()

    out = sliding_window(torch.zeros(1, 32, 64), (32, 40), column_in_tile, overlap=0.5)[0, 0]
    # tiles start at 0 and 24: column 30 is column 30 of the first, 6 of the second
    assert 6 < float(out[30]) < 30
    assert float(out[5]) == pytest.approx(5) and float(out[63]) == pytest.approx(39)


@pytest.mark.parametrize("overlap", [1.0, 1.5, -0.1, 0.99, float("nan")])
def test_overlap_of_a_whole_tile_is_refused(overlap: float) -> None:
    calls = Recorder(identity)
    with pytest.raises(ParamsError, match=r"evaluate\.tile_overlap.*e\.g\. 0\.25"):
        sliding_window(
            torch.zeros(1, 64, 64), TILE, calls, overlap=overlap, name="evaluate.tile_overlap"
        )
    assert calls.shapes == []  # refused before any tile ran
    with pytest.raises(ParamsError, match=r"infer\.tile_overlap"):
        check_overlap(overlap, TILE, "infer.tile_overlap")


def test_whole_image_preprocessing_scales_and_crops() -> None:
    image = np.random.default_rng(0).integers(0, 256, (60, 90, 3), dtype=np.uint8)
    param = PreprocessParams(mode="tiled", scale=0.5, image_width=32, image_height=32)
    x = preprocess_whole_image(image, param)
    assert x.shape == (3, 30, 45) and x.dtype == np.float32
    native = preprocess_whole_image(image, param.model_copy(update={"scale": 1.0}))
    # normalization none on 8-bit: [0, 255] -> [-127, 128]
    np.testing.assert_allclose(native, image.transpose(2, 0, 1) + param.image_range_min)
    cropped = param.model_copy(
        update={"domain_handling": "crop_domain", "domain_roi": [10, 20, 29, 59], "scale": 1.0}
    )
    np.testing.assert_allclose(preprocess_whole_image(image, cropped), native[:, 10:30, 20:60])
    assert scaled_size(2048, 1536, 0.25) == (512, 384) and scaled_size(3, 3, 0.1) == (1, 1)
