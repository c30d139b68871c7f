"""The stopping rules on their own: patience counts evaluations in a row, and a budget that
cannot hold the first epoch is an error, one that can is a stop."""

from __future__ import annotations

import pytest
import torch

from segcore.common.errors import ParamsError
from segcore.train.distributed import DistContext
from segcore.train.stopping import EARLY_STOPPING, TIME_BUDGET, Stopper

ONE_PROCESS = DistContext(0, 1, 0, torch.device("cpu"))


def _stopper(budget: float | None = None, patience: int | None = None, steps: int = 5) -> Stopper:
    stopper = Stopper(budget, patience, steps, ONE_PROCESS)
    stopper.start()
    return stopper


def test_patience_counts_evaluations_without_improvement_in_a_row() -> None:
    stopper = _stopper(patience=2)
    stops = [stopper.after_evaluation(improved, 0.0) for improved in (True, False, True, False)]
    assert stops == [False, False, False, False] and stopper.stale_evaluations == 1
    assert stopper.after_evaluation(False, 0.0) and stopper.reason == EARLY_STOPPING
    assert not _stopper().after_evaluation(False, 0.0)  # no patience: never


def test_a_budget_stops_after_the_first_epoch_and_refuses_to_cut_it_short() -> None:
    ample = _stopper(budget=1e9)
    assert not any(ample.after_update() for _ in range(20)) and ample.reason is None

    whole = _stopper(budget=1e-9, steps=1)  # the epoch is done: a clean stop
    assert whole.after_update() and whole.reason == TIME_BUDGET
    assert whole.stopped_after is not None and whole.stopped_after > 1e-9

    within = _stopper(budget=1e-9, steps=5)  # the first epoch could not end in time
    with pytest.raises(ParamsError, match="shorter than one epoch: the first 1 updates took"):
        within.after_update()
