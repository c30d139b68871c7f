"""Per-image preprocessing: normalization types and input depths, resizing, channels,
crop_domain, label checks and background merging (pure functions, tiny arrays)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segcore.common.errors import DatasetError, ParamsError
from segcore.data.labels import value_counts
from segcore.params import PreprocessParams
from segcore.preprocess.transforms import (
    preprocess_image,
    preprocess_label,
    preprocess_samples,
    resize_label,
)


def P(**kw: object) -> PreprocessParams:
    """Params for a 4 x 2 (width x height) network input unless given otherwise."""
    return PreprocessParams(**{"image_width": 4, "image_height": 2, **kw})


def rgb(ch0: list[int], ch1: list[int], ch2: list[int], dtype: type) -> np.ndarray:
    """A 2 x 4 RGB image from three 8-value channels (rows of 4)."""
    return np.stack([np.reshape(c, (2, 4)) for c in (ch0, ch1, ch2)], axis=2).astype(dtype)


CH0 = [10, 20, 30, 40, 50, 60, 70, 110]


# --------------------------------------------------------------------------- normalization


def test_none_maps_8bit_linearly_to_the_range() -> None:
    image = rgb(CH0, [0] * 8, [255] * 8, np.uint8)
    x = preprocess_image(image, P(image_range_min=-1.0, image_range_max=1.0))
    assert x.shape == (3, 2, 4) and x.dtype == np.float32
    assert x[0].ravel() == pytest.approx([v / 255 * 2 - 1 for v in CH0], abs=1e-6)
    assert np.all(x[1] == -1.0) and np.all(x[2] == 1.0)
    default = preprocess_image(image, P())  # [-127, 128]: x - 127
    assert default[0].ravel() == pytest.approx([v - 127 for v in CH0], abs=1e-4)


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_none_leaves_other_types_as_they_are(dtype: type) -> None:
    image = rgb([0, 1000, 65535, 7, 8, 9, 10, 11], [5] * 8, [6] * 8, dtype)
    x = preprocess_image(image, P())
    assert np.array_equal(x, image.transpose(2, 0, 1).astype(np.float32))


@pytest.mark.parametrize("dtype,scale", [(np.uint8, 1), (np.uint16, 250)])
def test_first_channel_stretches_all_channels_by_the_first(dtype: type, scale: int) -> None:
    ch0 = [v * scale for v in CH0]  # min 10, max 110 (times scale)
    image = rgb(ch0, [60 * scale] * 8, [110 * scale] * 8, dtype)
    x = preprocess_image(
        image, P(normalization_type="first_channel", image_range_min=0.0, image_range_max=1.0)
    )
    assert x[0].min() == pytest.approx(0.0) and x[0].max() == pytest.approx(1.0)
    assert x[0].ravel() == pytest.approx([(v - 10) / 100 for v in CH0], abs=1e-6)
    assert np.allclose(x[1], 0.5) and np.allclose(x[2], 1.0)  # same map as channel 0


@pytest.mark.parametrize("dtype,scale", [(np.uint8, 1), (np.uint16, 300)])
def test_all_channels_stretches_each_channel(dtype: type, scale: int) -> None:
    ch1 = [0, 10, 20, 30, 40, 50, 60, 50]
    image = rgb([v * scale for v in CH0], [v * scale for v in ch1], [7 * scale] * 8, dtype)
    x = preprocess_image(
        image, P(normalization_type="all_channels", image_range_min=-2.0, image_range_max=2.0)
    )
    assert x[0].ravel() == pytest.approx([(v - 10) / 100 * 4 - 2 for v in CH0], abs=1e-5)
    assert x[1].ravel() == pytest.approx([v / 60 * 4 - 2 for v in ch1], abs=1e-5)
    assert np.allclose(x[2], 0.0)  # a constant channel lands in the middle of the range


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_constant_values(dtype: type) -> None:
    image = rgb(CH0, [20] * 8, [200] * 8, dtype)
    p = P(
        normalization_type="constant_values",
        mean_values_normalization=[10.0, 20.0, 100.0],
        deviation_values_normalization=[2.0, 4.0, 50.0],
    )
    x = preprocess_image(image, p)
    assert x[0].ravel() == pytest.approx([(v - 10) / 2 for v in CH0])
    assert np.all(x[1] == 0.0) and np.all(x[2] == 2.0)
    one = P(
        normalization_type="constant_values",
        mean_values_normalization=[10.0],
        deviation_values_normalization=[5.0],
    )
    assert preprocess_image(image, one)[2].ravel() == pytest.approx([38.0] * 8)


# --------------------------------------------------------------------------- size and channels


def test_shrinking_averages_areas() -> None:
    image = np.kron(np.array([[0, 100], [200, 40]], np.uint8), np.ones((2, 2), np.uint8))
    x = preprocess_image(image[:, :, None], P(image_width=2, image_height=2, image_num_channels=1))
    assert x.shape == (1, 2, 2)
    assert x[0] + 127 == pytest.approx(np.array([[0, 100], [200, 40]]))


def test_enlarging_is_bilinear_and_bounded() -> None:
    image = np.array([[0, 255]], np.uint8)[:, :, None]
    x = preprocess_image(image, P(image_width=8, image_height=3, image_num_channels=1)) + 127
    assert x.shape == (1, 3, 8)
    assert x.min() >= 0 and x.max() <= 255
    assert np.all(np.diff(x[0], axis=1) >= 0)  # a smooth ramp, not blocks of 0 and 255
    assert len(np.unique(x[0, 0])) > 2


def test_grey_to_rgb_and_rgb_to_grey() -> None:
    grey = np.arange(8, dtype=np.uint8).reshape(2, 4)
    x = preprocess_image(grey, P())  # (H, W) is accepted as one channel
    assert x.shape == (3, 2, 4) and np.array_equal(x[0], x[1]) and np.array_equal(x[0], x[2])
    colour = np.zeros((2, 4, 3), np.uint8)
    colour[...] = (100, 50, 200)
    y = preprocess_image(colour, P(image_num_channels=1)) + 127
    assert y.shape == (1, 2, 4)
    assert np.allclose(y, 0.299 * 100 + 0.587 * 50 + 0.114 * 200, atol=1e-3)


def test_bad_channel_count() -> None:
    with pytest.raises(DatasetError, match="grey or RGB"):
        preprocess_image(np.zeros((2, 4, 4), np.uint8), P())


def test_input_array_is_not_modified() -> None:
    image = np.full((2, 4, 3), 9.0, np.float32)
    preprocess_image(image, P(normalization_type="all_channels"))
    assert np.all(image == 9.0)


# --------------------------------------------------------------------------- label images


@settings(max_examples=40, deadline=None)
@given(width=st.integers(1, 90), height=st.integers(1, 90), seed=st.integers(0, 2**16))
def test_nearest_resize_keeps_only_existing_ids(width: int, height: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    label = rng.choice(np.array([0, 3, 700], np.uint16), size=(37, 53))
    out = resize_label(label, width, height)
    assert out.shape == (height, width) and out.dtype == np.uint16
    assert set(np.unique(out).tolist()) <= {0, 3, 700}


def test_label_enlarged_by_two_keeps_its_blocks() -> None:
    label = np.array([[1, 2], [3, 4]], np.uint8)
    out = preprocess_label(label, P(image_width=4, image_height=4), [1, 2, 3, 4])
    assert np.array_equal(out, np.kron(label, np.ones((2, 2), np.uint8)))


def test_background_merging() -> None:
    label = np.array([[0, 1, 2, 3], [3, 2, 1, 0]], np.uint8)
    p = P(set_background_id=0, class_ids_background=[2, 3])
    out = preprocess_label(label, p, [0, 1, 2, 3])
    assert out.dtype == np.uint16
    assert out.tolist() == [[0, 1, 0, 0], [0, 0, 1, 0]]


def test_label_values_outside_class_ids() -> None:
    label = np.array([[0, 1, 9, 12], [0, 0, 255, 1]], np.int32)
    with pytest.raises(DatasetError, match=r"label values \[9, 12\]"):
        preprocess_label(label, P(ignore_class_ids=[255]), [0, 1])
    out = preprocess_label(label, P(ignore_class_ids=[255, 9, 12]), [0, 1])
    assert 255 in out  # ignore ids pass through unchanged
    with pytest.raises(DatasetError, match=r"-1"):
        preprocess_label(np.full((2, 4), -1, np.int32), P(), [0, 1])


@settings(max_examples=40, deadline=None)
@given(
    dtype=st.sampled_from([np.uint8, np.uint16, np.int32, np.int64, np.bool_]),
    top=st.integers(0, 65535),
    shape=st.tuples(st.integers(1, 40), st.integers(1, 40)),
    seed=st.integers(0, 2**16),
)
def test_value_counts_equal_bincount(dtype: type, top: int, shape: tuple, seed: int) -> None:
    top = min(top, int(np.iinfo(dtype).max) if dtype is not np.bool_ else 1)
    label = np.random.default_rng(seed).integers(0, top + 1, shape).astype(dtype)
    expected = np.bincount(label.ravel().astype(np.int64))
    counts = value_counts(label)
    assert counts is not None and counts.dtype == np.int64
    assert counts.tolist() == expected.tolist()
    # A view that is not contiguous (a crop) counts the same as its copy.
    assert (
        value_counts(label[:, ::2]).tolist()
        == np.bincount(label[:, ::2].ravel().astype(np.int64)).tolist()
    )


def test_value_counts_of_a_label_too_big_for_float32_counts() -> None:
    label = np.full((4096, 4097), 2, np.uint8)  # 2**24 + 4096 pixels of one value
    label[0, :3] = 0
    assert value_counts(label).tolist() == [3, 0, label.size - 3]


def test_value_counts_of_values_no_label_may_hold() -> None:
    assert value_counts(np.array([[0, -1]], np.int32)) is None
    assert value_counts(np.array([[0, 70000]], np.int32)) is None
    assert value_counts(np.zeros((0, 3), np.uint8)).tolist() == []


# --------------------------------------------------------------------------- crop_domain


def test_crop_domain_crops_image_and_label_before_resizing() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    label = rng.integers(0, 3, (20, 30), dtype=np.uint8)
    roi = [2, 3, 11, 17]  # rows 2..11, columns 3..17 (inclusive)
    crop = P(domain_handling="crop_domain", domain_roi=roi)
    full = P()
    assert np.array_equal(preprocess_image(image, crop), preprocess_image(image[2:12, 3:18], full))
    assert np.array_equal(
        preprocess_label(label, crop, [0, 1, 2]),
        preprocess_label(label[2:12, 3:18], full, [0, 1, 2]),
    )
    # a per-sample rectangle wins over the parameter's one
    own = preprocess_image(image, crop, roi=[0, 0, 9, 9])
    assert np.array_equal(own, preprocess_image(image[:10, :10], full))
    # full_domain ignores any rectangle
    assert np.array_equal(preprocess_image(image, full, roi=roi), preprocess_image(image, full))


def test_crop_domain_errors() -> None:
    image = np.zeros((20, 30), np.uint8)
    with pytest.raises(DatasetError, match=r"outside the image of 30 x 20"):
        preprocess_image(image, P(domain_handling="crop_domain", domain_roi=[0, 0, 20, 5]))
    with pytest.raises(ParamsError, match="domain_roi"):
        preprocess_image(image, P(domain_handling="crop_domain"))


# --------------------------------------------------------------------------- batches


def test_preprocess_samples_stacks_single_images() -> None:
    rng = np.random.default_rng(1)
    images = [
        rng.integers(0, 256, (10, 12, 3), dtype=np.uint8),
        rng.integers(0, 256, (7, 5, 1), dtype=np.uint8),
        rng.integers(0, 65536, (9, 9, 3), dtype=np.uint16),
    ]
    p = P(normalization_type="all_channels")
    batch = preprocess_samples(images, p)
    assert batch.shape == (3, 3, 2, 4) and batch.dtype == np.float32
    for i, image in enumerate(images):
        assert np.array_equal(batch[i], preprocess_image(image, p))
    assert preprocess_samples([], p).shape == (0, 3, 2, 4)
