"""What the planner's rules produce: choices with reasons, the plan, the input geometry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from segcore.train.plan.machine import StepCost

Measure = Callable[[int, int, int], StepCost]
"""``measure(height, width, batch)``: what one training sample costs at that size."""


@dataclass(frozen=True)
class Choice:
    """One decision of the plan: the keys it sets (flat names) and why."""

    topic: str
    values: dict[str, Any]
    reason: str


@dataclass(frozen=True)
class Plan:
    """The training plan: every choice with its reason, and what it was measured on.

    Attributes:
        choices: in the order they were made.
        budget: the time budget in seconds.
        cost: the measured cost of a training sample at the planned input size and batch.
        epoch_seconds: the estimated time of one epoch, its evaluation share included.
    """

    choices: list[Choice]
    budget: float
    cost: StepCost
    epoch_seconds: float

    def values(self) -> dict[str, Any]:
        """Every proposed key (flat name) and value."""
        out: dict[str, Any] = {}
        for choice in self.choices:
            out.update(choice.values)
        return out


@dataclass(frozen=True)
class Geometry:
    """The network input: mode, size, scale, and how many inputs an image gives."""

    mode: str
    width: int
    height: int
    scale: float
    tiles_per_image: int
