"""Where the network runs: one reading of the ``device`` key for training and inference."""

from __future__ import annotations

import torch

from segcore.common.errors import ParamsError


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cpu``, ``cuda``, ``cuda:N`` as given.

    ``cuda`` without an index means this process's GPU, ``cuda:<local_rank>`` (under
    ``torchrun`` each rank on a machine takes its own).

    Raises:
        ParamsError: CUDA asked for but not available, or an unknown device string.
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ParamsError(
            f"device: unknown device {device!r}; use auto, cpu, cuda or cuda:N"
        ) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ParamsError(f"device: {device!r} asked for, but CUDA is not available; use cpu")
        if dev.index is None:
            dev = torch.device("cuda", local_rank)
    return dev
