"""The training checkpoint: everything needed to continue a run exactly where it stopped.

One file, ``<out_dir>/checkpoint.pt``, rewritten atomically after every epoch. It holds
only tensors and plain containers, so it is read with ``torch.load(weights_only=True)``
(no arbitrary unpickling): model and optimizer state, epochs and steps done, the best
value so far, the history, the resolved train params, and the random number generator
states (as uint8 tensors) that shuffling, augmentation and the model draw from.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch

from segcore.common.errors import DatasetError
from segcore.common.io import atomic_path

CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_FORMAT = "segcore.checkpoint/1"


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Write ``state`` (tensors, numbers, strings, lists, dicts) atomically to ``path``."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save({"format": CHECKPOINT_FORMAT, **state}, tmp)
    return path


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (tensors on the CPU).

    Raises:
        DatasetError: the file is missing or not a segcore checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(
            f"{path}: no checkpoint to resume from; train without --resume first "
            "(or pass the --out-dir of the interrupted run)"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's own message suggests weights_only=False, which would run the file's code.
        raise DatasetError(
            f"{path}: not a segcore checkpoint: it holds Python objects that a segcore "
            "checkpoint never holds (only tensors and plain containers), so it is not loaded "
            "(unpickling it could run code from the file); delete it or restore the checkpoint "
            "of the run, or train without --resume"
        ) from None
    except (OSError, RuntimeError, EOFError, ValueError) as err:
        raise DatasetError(
            f"{path}: not a readable checkpoint ({str(err).splitlines()[0]}); "
            "delete it and train without --resume"
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise DatasetError(f"{path}: not a segcore checkpoint; train without --resume")
    return state


def update_checkpoint(path: str | os.PathLike[str], **fields: Any) -> Path:
    """Rewrite ``fields`` of the checkpoint at ``path`` (atomically), the rest as it is.

    For what a run learns after its last whole epoch (a stop within an epoch): the best
    value of its closing validation, so a resumed run does not replace the published
    ``best`` bundle with a worse one."""
    state = load_checkpoint(path)
    state.pop("format", None)
    return save_checkpoint(path, state | fields)
