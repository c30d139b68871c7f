"""``segcore plan``: a dataset fingerprint, the machine and a time budget -> training
parameters with a reason for each (nnU-Net's self-configuration, for HALCON's workflow).

:mod:`~segcore.train.plan.fingerprint` reads the dataset, :mod:`~segcore.train.plan.machine`
measures the machine, :mod:`~segcore.train.plan.size` and :mod:`~segcore.train.plan.solver`
hold the rules, :mod:`~segcore.train.plan.rules` applies them. Names are imported lazily,
so reading a dataset's fingerprint does not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ClassFingerprint": "segcore.train.plan.fingerprint",
    "DatasetFingerprint": "segcore.train.plan.fingerprint",
    "component_sizes": "segcore.train.plan.fingerprint",
    "fingerprint_dataset": "segcore.train.plan.fingerprint",
    "Machine": "segcore.train.plan.machine",
    "StepCost": "segcore.train.plan.machine",
    "detect_machine": "segcore.train.plan.machine",
    "measure_step": "segcore.train.plan.machine",
    "Choice": "segcore.train.plan.choice",
    "Plan": "segcore.train.plan.choice",
    "plan_training": "segcore.train.plan.rules",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'segcore.train.plan' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return __all__
