"""Numeric precision of the network: one reading of ``train.precision`` and ``infer.precision``.

``fp32`` runs everything in float32. ``bf16`` and ``fp16`` run the network's forward pass
under :func:`torch.autocast` (mixed precision): convolutions and matrix products in the
16-bit type, reductions, softmax and the loss in float32; weights and optimizer state stay
float32. ``auto`` picks ``bf16`` where the hardware computes it natively (CPUs with AMX or
AVX-512 BF16, CUDA GPUs that support it) and ``fp32`` elsewhere.

``bf16`` asked explicitly on a CPU without native bf16 runs (the results are right) but
the CPU emulates the type, slower than ``fp32``: a warning says so and names ``auto``.
``fp16`` needs a CUDA device (on CPU autocast has no fast fp16 kernels); training in
``fp16`` scales the loss (:class:`torch.amp.GradScaler`) so small gradients do not
underflow, which bf16, with float32's exponent range, does not need.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import torch

from segcore.common.constants import AUTO, BF16, FP16, FP32, PRECISIONS
from segcore.common.errors import ParamsError

_DTYPES: Final = {BF16: torch.bfloat16, FP16: torch.float16}
NATIVE_BF16_CPU_FLAGS: Final = ("amx_bf16", "avx512_bf16")
"""CPU flags (``lscpu``, ``/proc/cpuinfo``) of native bf16 arithmetic."""

log = logging.getLogger("segcore.precision")


class EmulatedPrecisionWarning(UserWarning):
    """bf16 asked for on a CPU that emulates it (correct, but slower than fp32)."""


@dataclass(frozen=True)
class ResolvedPrecision:
    """The precision a network runs in on one device.

    Attributes:
        name: ``fp32``, ``bf16`` or ``fp16`` (never ``auto``).
        asked: the value given (``auto`` included).
        device: where the network runs.
        native: whether the device computes ``name`` natively (``fp32`` always is).
    """

    name: str
    asked: str
    device: torch.device
    native: bool

    @property
    def dtype(self) -> torch.dtype:
        """The autocast type (``torch.float32`` for ``fp32``)."""
        return _DTYPES.get(self.name, torch.float32)

    @property
    def mixed(self) -> bool:
        """Whether the forward pass runs under autocast."""
        return self.name != FP32

    def autocast(self) -> contextlib.AbstractContextManager[object]:
        """The context for the network's forward pass (a no-op for ``fp32``)."""
        if not self.mixed:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler | None:
        """A loss scaler for ``fp16`` training (``None`` for ``fp32`` and ``bf16``)."""
        if self.name != FP16:
            return None
        return torch.amp.GradScaler(self.device.type)

    def describe(self) -> str:
        """``bf16 (auto: native bf16 on this CPU)``: for logs and summaries."""
        where = "GPU" if self.device.type == "cuda" else "CPU"
        how = "native" if self.native else "emulated"
        detail = f"{how} {self.name} on this {where}" if self.mixed else f"fp32 on this {where}"
        if self.asked == AUTO:
            return f"{self.name} (auto: {detail})"
        return f"{self.name} ({detail})" if self.mixed else FP32


@functools.cache
def _cpu_flags() -> frozenset[str]:
    """The flags of the first processor in ``/proc/cpuinfo`` (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 natively.

    CUDA: :func:`torch.cuda.is_bf16_supported` without emulation. CPU: the ``amx_bf16`` or
    ``avx512_bf16`` flag, or torch's own dispatch level (``AMX``) where ``/proc/cpuinfo``
    is not there to read.
    """
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type != "cpu":
        return False
    if _cpu_flags() & set(NATIVE_BF16_CPU_FLAGS):
        return True
    return "AMX" in torch.backends.cpu.get_cpu_capability()


def resolve_precision(
    precision: str, device: torch.device, key: str = "train.precision"
) -> ResolvedPrecision:
    """The precision ``precision`` stands for on ``device``.

    Args:
        precision: ``fp32``, ``bf16``, ``fp16`` or ``auto``.
        device: where the network runs.
        key: the parameter, for messages (``train.precision``, ``infer.precision``).

    Raises:
        ParamsError: an unknown value; ``fp16`` on a CPU; ``bf16`` on a GPU without bf16.

    Warns:
        EmulatedPrecisionWarning: ``bf16`` on a CPU without native bf16 (it runs, slower).
    """
    if precision not in PRECISIONS:
        raise ParamsError(f"{key}: unknown {precision!r}; use one of {', '.join(PRECISIONS)}")
    native = native_bf16(device)
    if precision == AUTO:
        return ResolvedPrecision(BF16 if native else FP32, AUTO, device, True)
    if precision == FP16 and device.type != "cuda":
        raise ParamsError(
            f"{key}: fp16 needs a CUDA device, the network runs on {device.type}; use bf16 "
            "(mixed precision on CPUs with AMX or AVX-512 BF16), auto or fp32"
        )
    if precision == BF16 and device.type == "cuda" and not native:
        raise ParamsError(
            f"{key}: this GPU has no native bf16; use fp16 (with loss scaling) or auto"
        )
    if precision == BF16 and not native:
        message = (
            f"{key} bf16: this CPU has no native bf16 (no {' or '.join(NATIVE_BF16_CPU_FLAGS)} "
            "flag), so bf16 is emulated: correct but slower than fp32; use auto to pick "
            "the fastest precision of each machine"
        )
        warnings.warn(message, EmulatedPrecisionWarning, stacklevel=2)
        log.warning(message)
    # fp32 everywhere and fp16 on a GPU (the only place it is allowed) are native.
    return ResolvedPrecision(precision, precision, device, precision != BF16 or native)
