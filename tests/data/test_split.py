"""Splitting: stratification, determinism, no leakage, keeping an existing split, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers.cli import run_segcore
from hypothesis import given, settings
from hypothesis import strategies as st

from segcore.common.constants import SPLITS
from segcore.common.errors import DatasetError, ParamsError
from segcore.data.dldataset import DLDataset
from segcore.data.split import split_dataset


def _dataset(presence: np.ndarray) -> DLDataset:
    """A dataset whose samples hold the classes marked in ``presence`` ``(N, K)``."""
    n, k = presence.shape
    samples = pd.DataFrame(
        {"image_id": np.arange(n), "image_file_name": [f"{i}.png" for i in range(n)]}
    )
    for c in range(k):
        samples[f"pixels_class_{c}"] = presence[:, c].astype(np.int64) * 10
    return DLDataset(
        samples=samples,
        image_dir=Path("images"),
        segmentation_dir=Path("labels"),
        class_names=[f"c{c}" for c in range(k)],
        class_ids=list(range(k)),
    )


def _pills_like(n: int = 100, seed: int = 0) -> np.ndarray:
    """Class 0 everywhere, two defect classes in about half of the samples each."""
    rng = np.random.default_rng(seed)
    return np.column_stack([np.ones(n, bool), rng.random(n) < 0.5, rng.random(n) < 0.4])


def _class_split_counts(ds: DLDataset) -> np.ndarray:
    """``(K, 3)`` samples holding each class, per split."""
    present = ds.pixel_counts() > 0
    split = ds.samples["split"].to_numpy()
    return np.stack([present[split == s].sum(axis=0) for s in SPLITS], axis=1)


def test_sizes_and_per_class_shares_follow_the_percentages() -> None:
    ds = split_dataset(_dataset(_pills_like()), training_percent=70, validation_percent=15)
    sizes = ds.samples["split"].value_counts()
    assert sizes.to_dict() == {"train": 70, "validation": 15, "test": 15}
    counts = _class_split_counts(ds)
    holders = counts.sum(axis=1)
    assert np.all(np.abs(counts - np.outer(holders, [0.7, 0.15, 0.15])) <= 1.5), counts


def test_a_class_in_three_samples_reaches_every_split() -> None:
    presence = _pills_like(40)
    presence[:, 2] = False
    presence[[3, 17, 29], 2] = True  # the rare class: floor(0.15 * 3) would be 0
    for seed in range(5):
        ds = split_dataset(
            _dataset(presence), training_percent=70, validation_percent=15, seed=seed
        )
        assert (_class_split_counts(ds)[2] == 1).all()


def test_same_seed_same_split_other_seed_other_split() -> None:
    ds = _dataset(_pills_like())
    a = split_dataset(ds, training_percent=60, validation_percent=20, seed=1)
    b = split_dataset(ds, training_percent=60, validation_percent=20, seed=1)
    c = split_dataset(ds, training_percent=60, validation_percent=20, seed=2)
    assert a.samples["split"].tolist() == b.samples["split"].tolist()
    assert a.samples["split"].tolist() != c.samples["split"].tolist()


def test_existing_split_is_kept_unless_overwritten() -> None:
    first = split_dataset(_dataset(_pills_like()), training_percent=60, validation_percent=20)
    kept = split_dataset(first, training_percent=10, validation_percent=10, seed=9)
    assert kept.samples["split"].tolist() == first.samples["split"].tolist()
    redone = split_dataset(
        first, training_percent=10, validation_percent=10, seed=9, overwrite=True
    )
    assert (redone.samples["split"] == "test").sum() == 80


def test_only_samples_without_a_split_are_distributed() -> None:
    first = split_dataset(_dataset(_pills_like()), training_percent=60, validation_percent=20)
    samples = first.samples.copy()
    samples.loc[90:, "split"] = None  # ten new samples
    grown = split_dataset(first.with_samples(samples), training_percent=0, validation_percent=0)
    assert grown.samples["split"][:90].tolist() == first.samples["split"][:90].tolist()
    assert (grown.samples["split"][90:] == "test").all()


def test_zero_percent_splits_stay_empty() -> None:
    ds = split_dataset(_dataset(_pills_like(30)), training_percent=80, validation_percent=0)
    assert set(ds.samples["split"]) == {"train", "test"}
    assert (ds.samples["split"] == "train").sum() == 24


@settings(max_examples=40, deadline=None)
@given(
    data=st.data(),
    n=st.integers(1, 60),
    k=st.integers(1, 4),
    train=st.floats(0, 100),
    val=st.floats(0, 100),
)
def test_every_sample_gets_exactly_one_split(
    data: st.DataObject, n: int, k: int, train: float, val: float
) -> None:
    val = min(val, 100 - train)
    flags = data.draw(st.lists(st.booleans(), min_size=n * k, max_size=n * k))
    presence = np.array(flags, bool).reshape(n, k)
    ds = split_dataset(_dataset(presence), training_percent=train, validation_percent=val)
    split = ds.samples["split"]
    assert split.isin(SPLITS).all() and len(split) == n  # one split each: no leakage
    assert ds.samples["image_id"].tolist() == list(range(n))
    fractions = np.array([train, val, 100 - train - val]) / 100
    assert not split.isin([s for s, f in zip(SPLITS, fractions, strict=True) if f == 0]).any()
    rarest = presence.sum(axis=0)
    rarest = rarest[rarest > 0]
    if rarest.size and rarest.min() >= (fractions > 0).sum():
        counts = _class_split_counts(ds)
        k_rare = int(np.argmin(np.where(presence.sum(axis=0) > 0, presence.sum(axis=0), n + 1)))
        assert (counts[k_rare][fractions > 0] >= 1).all()


def test_pill_dataset_split_has_every_class_in_every_split(pills_split: Path) -> None:
    ds = DLDataset.load(pills_split)
    assert ds.has_split
    assert (_class_split_counts(ds) >= 1).all()


@pytest.mark.parametrize(
    ("train", "val", "text"),
    [
        (120, 10, "split.training_percent: 120 is outside 0..100"),
        (50, -1, "split.validation_percent: -1 is outside 0..100"),
        (70, 40, "exceeds 100"),
        (float("nan"), 10, "training_percent: nan"),
    ],
)
def test_bad_percentages(train: float, val: float, text: str) -> None:
    with pytest.raises(ParamsError, match=text):
        split_dataset(_dataset(_pills_like(10)), training_percent=train, validation_percent=val)


def test_dataset_without_pixel_counts_via_cli(tmp_path: Path) -> None:
    ds = _dataset(_pills_like(10))
    bare = ds.with_samples(ds.samples[["image_id", "image_file_name"]])
    bare.save(tmp_path / "bare.parquet")
    with pytest.raises(DatasetError, match="pixel-count columns"):
        split_dataset(bare, training_percent=50, validation_percent=20)
    (tmp_path / "params.yaml").write_text(
        "split:\n  dataset: bare.parquet\n  out: out/split.parquet\n"
    )
    result = run_segcore("split", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "pixel-count columns" in result.stderr and "segcore dataset" in result.stderr
    assert not (tmp_path / "out").exists()
