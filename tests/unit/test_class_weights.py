"""Class weights and weight images (HALCON's formula) on hand-computed cases and properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segcore.common.errors import DatasetError, ParamsError
from segcore.preprocess.class_weights import (
    calculate_class_weights,
    count_class_pixels,
    generate_weight_images,
    weight_image,
)

# 900 / 100 pixels: freq 0.9 / 0.1, w = 1 / (freq + 0.0001), divided by the smaller one.
RATIO_90_10 = 0.9001 / 0.1001  # = 8.992007992...


def test_two_classes_by_hand() -> None:
    w = calculate_class_weights(np.array([900, 100]), [0, 1])
    assert w == pytest.approx([1.0, RATIO_90_10], rel=1e-12)
    assert w.dtype == np.float64


def test_ignore_class_counts_zero_and_gets_zero() -> None:
    # Class 2 holds half the pixels but is ignored: the others are weighted as if it were absent.
    w = calculate_class_weights(np.array([900, 100, 1000]), [0, 1, 2], ignore_class_ids=[2])
    assert w == pytest.approx([1.0, RATIO_90_10, 0.0], rel=1e-12)


def test_absent_class_gets_zero() -> None:
    w = calculate_class_weights(np.array([900, 0, 100]), [0, 1, 2])
    assert w == pytest.approx([1.0, 0.0, RATIO_90_10], rel=1e-12)


def test_max_weight_clips() -> None:
    counts = np.array([999_999, 1])
    unclipped = (0.999999 + 0.0001) / (0.000001 + 0.0001)  # 9901.97...
    assert calculate_class_weights(counts, [0, 1], max_weight=1e6)[1] == pytest.approx(unclipped)
    assert calculate_class_weights(counts, [0, 1])[1] == 1000.0  # default max_weight
    assert calculate_class_weights(counts, [0, 1], max_weight=50.0).tolist() == [1.0, 50.0]


def test_user_weights_replace_computed_ones() -> None:
    w = calculate_class_weights(np.array([900, 100, 0]), [0, 1, 2], user_weights=[0.5, 2.0, 3.0])
    assert w.tolist() == [0.5, 2.0, 3.0]


@pytest.mark.parametrize("user", [[1.0, 2.0], [1.0, -1.0, 1.0], [1.0, float("nan"), 1.0]])
def test_bad_user_weights(user: list[float]) -> None:
    with pytest.raises(ParamsError, match=r"class_weights\.weights"):
        calculate_class_weights(np.array([1, 1, 1]), [0, 1, 2], user_weights=user)


def test_from_label_images_equals_from_counts() -> None:
    # 18 pixels of class 0, one of class 5; value 7 is no class id and counts nowhere,
    # not even in the total: freq = 18/19 and 1/19.
    a = np.zeros((2, 5), np.uint16)
    a[0, 4] = 5
    b = np.zeros((2, 5), np.uint16)
    b[1, 1] = 7
    ids = [0, 5]
    from_labels = calculate_class_weights([a, b], ids)
    expected = (18 / 19 + 0.0001) / (1 / 19 + 0.0001)
    assert from_labels == pytest.approx([1.0, expected], rel=1e-12)
    assert np.array_equal(from_labels, calculate_class_weights(np.stack([a, b]), ids))
    per_sample = np.stack([count_class_pixels(a, ids), count_class_pixels(b, ids)])
    assert per_sample.tolist() == [[9, 1], [9, 0]]
    assert np.array_equal(from_labels, calculate_class_weights(per_sample, ids))


def test_count_class_pixels_of_every_label_type() -> None:
    ids = [0, 3, 7]
    for dtype in (np.uint8, np.uint16, np.int32):
        label = np.array([[0, 3, 3, 7], [9, 0, 0, 3]], dtype)  # 9 is not a class id
        assert count_class_pixels(label, ids).tolist() == [3, 3, 1]
    negative = np.array([[0, -1, 3, 3]], np.int32)  # negative values are not counted
    assert count_class_pixels(negative, ids).tolist() == [1, 2, 0]
    assert count_class_pixels(np.zeros((0, 4), np.uint8), ids).tolist() == [0, 0, 0]


def test_nothing_to_count_is_an_error() -> None:
    with pytest.raises(DatasetError, match="no pixel"):
        calculate_class_weights(np.array([0, 0, 50]), [0, 1, 2], ignore_class_ids=[2])
    with pytest.raises(ParamsError, match="max_weight"):
        calculate_class_weights(np.array([1, 1]), [0, 1], max_weight=0.0)
    with pytest.raises(ValueError, match="columns"):
        calculate_class_weights(np.zeros((4, 3), np.int64), [0, 1])


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(0, 10**7), min_size=2, max_size=6).filter(lambda c: sum(c) > 0),
    max_weight=st.floats(1.0, 1e4),
)
def test_properties(counts: list[int], max_weight: float) -> None:
    ids = list(range(len(counts)))
    w = calculate_class_weights(np.array(counts), ids, max_weight=max_weight)
    c = np.array(counts)
    assert np.all((w == 0) == (c == 0))  # zero exactly for absent classes
    assert w[np.argmax(c)] == pytest.approx(min(1.0, max_weight))  # most frequent class: 1
    assert np.all(w <= max_weight) and np.all(w >= 0)
    present = np.flatnonzero(c)
    order = present[np.argsort(c[present])]
    assert np.all(np.diff(w[order]) <= 1e-9)  # rarer classes never weigh less


def test_weight_image_values() -> None:
    label = np.array([[0, 1, 2], [255, 7, 1]], dtype=np.uint16)
    w = weight_image(label, [0, 1, 2], [1.0, 5.0, 9.0], ignore_class_ids=[2, 255])
    assert w.dtype == np.float32 and w.shape == label.shape
    # class weight per pixel; ignore classes (2, 255) and unknown values (7) get 0
    assert w.tolist() == [[1.0, 5.0, 0.0], [0.0, 0.0, 5.0]]


def test_generate_weight_images_one_per_label() -> None:
    labels = [np.full((2, 3), 1, np.uint16), np.zeros((4, 4), np.uint16)]
    images = generate_weight_images(labels, [0, 1], [1.0, 2.5])
    assert [im.shape for im in images] == [(2, 3), (4, 4)]
    assert np.all(images[0] == 2.5) and np.all(images[1] == 1.0)
