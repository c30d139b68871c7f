"""Splitting into train / validation / test, stratified by class presence (split_dl_dataset).

A sample holds a class when its label image has pixels of it. Classes are handled from
the rarest (fewest samples) to the most frequent; each time, the samples holding the
class that have no split yet are distributed so that the class reaches
``floor(percentage * n)`` samples per split over all ``n`` samples that hold it (for the
rarest class this is HALCON's rule; for later classes the samples already placed by
rarer classes are counted in). Rounding down never starves a small split: a class held
by at least as many samples as there are splits with a non-zero percentage gets at least
one sample in each of them (always for the rarest class; for the others as far as the
samples not yet placed by rarer classes allow). What is left over at the end goes to a
split drawn at random with the percentages as probabilities. A fixed seed gives the same
split.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from segcore.common.constants import COL_SPLIT, PIXEL_COUNT_PREFIX, SPLITS
from segcore.common.errors import DatasetError, ParamsError, Problems
from segcore.data.dldataset import DLDataset

log = logging.getLogger(__name__)

_UNASSIGNED = -1


def split_dataset(
    dataset: DLDataset,
    *,
    training_percent: float,
    validation_percent: float,
    seed: int = 42,
    overwrite: bool = False,
) -> DLDataset:
    """Give every sample a ``split`` (``train``, ``validation`` or ``test``).

    Args:
        dataset: a dataset with ``pixels_class_<id>`` columns (from :func:`read_dataset`).
        training_percent: percentage of samples for training (0..100).
        validation_percent: percentage for validation (0..100); the rest is test.
        seed: random seed; the same dataset and seed give the same split.
        overwrite: re-split samples that already have a split. Without it, an existing
            split is kept (the dataset comes back unchanged, and this is logged) and only
            samples without one are distributed.

    Returns:
        A copy of the dataset with the ``split`` column.

    Raises:
        ParamsError: percentages outside 0..100 or summing to more than 100.
        DatasetError: the dataset is empty or has no pixel-count columns.
    """
    fractions = _fractions(training_percent, validation_percent)
    presence = _presence(dataset)

    samples = dataset.samples
    assignment = np.full(len(samples), _UNASSIGNED, dtype=np.int64)
    if COL_SPLIT in samples and not overwrite:
        existing = samples[COL_SPLIT].map({name: k for k, name in enumerate(SPLITS)})
        assignment = existing.fillna(_UNASSIGNED).to_numpy(dtype=np.int64)
        kept = int((assignment != _UNASSIGNED).sum())
        if kept == len(samples):
            log.info("the dataset already has a split; kept it (overwrite=True re-splits)")
            return dataset
        if kept:
            log.info(
                "kept the split of %d samples; splitting %d new ones", kept, len(samples) - kept
            )
    stratified_assignment(presence, fractions, np.random.default_rng(seed), out=assignment)
    out = samples.copy()
    out[COL_SPLIT] = np.asarray(SPLITS, dtype=object)[assignment]
    return dataset.with_samples(out)


def stratified_assignment(
    presence: np.ndarray,
    fractions: np.ndarray,
    rng: np.random.Generator,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """The split index of every sample, stratified by class presence.

    Args:
        presence: ``(N, K)`` bool, sample n holds class k.
        fractions: ``(3,)`` fractions of train, validation, test (sum 1).
        rng: the random generator (shuffles and leftovers).
        out: ``(N,)`` int64 split indices to complete in place; ``-1`` marks samples that
            still need a split, other entries are kept. A new array when ``None``.

    Returns:
        ``(N,)`` int64 split indices into ``SPLITS``.
    """
    n_samples, _ = presence.shape
    if out is None:
        out = np.full(n_samples, _UNASSIGNED, dtype=np.int64)
    active = fractions > 0
    holders = presence.sum(axis=0)
    # Rarest first; ties keep the class order (a stable sort).
    for k in np.argsort(holders, kind="stable"):
        if holders[k] == 0:
            continue
        members = np.flatnonzero(presence[:, k])
        pending = rng.permutation(members[out[members] == _UNASSIGNED])
        if pending.size == 0:
            continue
        placed = np.bincount(out[members][out[members] >= 0], minlength=len(fractions))
        need = _quotas(int(holders[k]), fractions, active) - placed
        need = _fit(np.maximum(need, 0), pending.size, placed, active)
        out[pending[: need.sum()]] = np.repeat(np.arange(len(fractions)), need)
    left = np.flatnonzero(out == _UNASSIGNED)
    if left.size:
        out[left] = rng.choice(len(fractions), size=left.size, p=fractions)
    return out


def _quotas(n: int, fractions: np.ndarray, active: np.ndarray) -> np.ndarray:
    """``floor(fraction * n)`` per split, lifted to 1 for active splits when ``n`` allows."""
    quota = np.floor(fractions * n + 1e-9).astype(np.int64)
    if n >= active.sum():
        for s in np.flatnonzero(active & (quota == 0)):
            if quota.sum() >= n:  # no leftover to lift it with: take one from the largest
                quota[int(np.argmax(quota))] -= 1
            quota[s] = 1
    return quota


def _fit(need: np.ndarray, available: int, placed: np.ndarray, active: np.ndarray) -> np.ndarray:
    """Cut ``need`` down to ``available`` samples, first where the class is already present."""
    need = need.copy()
    while need.sum() > available:
        # Take from the split with the most need, preferring splits that already hold the class.
        has = (placed > 0) | ~active
        order = np.lexsort((-need, ~(has & (need > 0))))
        need[order[0]] -= 1
    return need


def _fractions(training_percent: float, validation_percent: float) -> np.ndarray:
    problems = Problems()
    for key, value in (
        ("training_percent", training_percent),
        ("validation_percent", validation_percent),
    ):
        if not (math.isfinite(value) and 0 <= value <= 100):
            problems.add(f"split.{key}: {value} is outside 0..100; give a percentage")
    if not problems and training_percent + validation_percent > 100:
        problems.add(
            f"split.training_percent + split.validation_percent = "
            f"{training_percent + validation_percent} exceeds 100; lower one of them"
        )
    problems.raise_if_any(ParamsError, "invalid split percentages")
    test = max(0.0, 100.0 - training_percent - validation_percent)
    return np.array([training_percent, validation_percent, test], dtype=np.float64) / 100.0


def _presence(dataset: DLDataset) -> np.ndarray:
    """``(N, K)`` bool class presence from the pixel-count columns."""
    problems = Problems()
    if len(dataset) == 0:
        problems.add("the dataset has no samples; create it with `segcore dataset`")
    cols = [f"{PIXEL_COUNT_PREFIX}{c}" for c in dataset.class_ids]
    missing = [c for c in cols if c not in dataset.samples]
    if missing:
        problems.add(
            f"the dataset table lacks the pixel-count columns {missing}; create it with "
            "`segcore dataset` (read_dataset), which counts the pixels of every class"
        )
    problems.raise_if_any(DatasetError, "the dataset cannot be split")
    return dataset.pixel_counts() > 0
