"""The machine a plan is for, and how fast it trains: measured, not guessed.

:func:`measure_step` runs a few forward/backward/update steps of the planned model at the
planned input size on random tensors and returns the seconds per sample (and, on CUDA,
the memory a sample takes). A few seconds of measuring is worth it: CPU speed varies by
an order of magnitude between machines, threads and architectures.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any

import torch

from segcore.common.device import resolve_device
from segcore.common.parallel import default_workers
from segcore.model.factory import create_model, input_size_multiple
from segcore.params import TrainParams
from segcore.train.loss import weighted_cross_entropy

MIN_STEPS = 3
"""Timed steps however short ``seconds`` is: a median needs a few."""


@dataclass(frozen=True)
class Machine:
    """Where training runs.

    Attributes:
        device: ``cpu`` or ``cuda:N``.
        cpu_cores: CPU cores this process may use.
        gpu_name: the GPU's name (CUDA only).
        gpu_memory_gb: the GPU's memory in GiB (CUDA only).
    """

    device: str
    cpu_cores: int
    gpu_name: str | None = None
    gpu_memory_gb: float | None = None

    @property
    def is_cuda(self) -> bool:
        return self.device.startswith("cuda")

    def describe(self) -> str:
        if self.is_cuda:
            return f"{self.gpu_name} ({self.gpu_memory_gb:.0f} GiB), {self.cpu_cores} CPU cores"
        return f"CPU, {self.cpu_cores} cores"


def detect_machine(device: str = "auto") -> Machine:
    """The machine of ``train.device`` (``auto``: CUDA when available).

    Raises:
        ParamsError: CUDA asked for but not available.
    """
    dev = resolve_device(device)
    cores = default_workers()
    if dev.type != "cuda":
        return Machine(device="cpu", cpu_cores=cores)
    props = torch.cuda.get_device_properties(dev)
    return Machine(
        device=str(dev),
        cpu_cores=cores,
        gpu_name=props.name,
        gpu_memory_gb=props.total_memory / 2**30,
    )


@dataclass(frozen=True)
class StepCost:
    """What one training sample costs on this machine.

    Attributes:
        seconds_per_sample: wall time of forward, backward and update, per sample.
        bytes_per_sample: extra GPU memory per sample of the batch (CUDA only).
        steps: timed steps.
        batch: samples per timed step.
    """

    seconds_per_sample: float
    bytes_per_sample: float | None = None
    steps: int = 0
    batch: int = 0


def model_multiple(params: TrainParams, num_classes: int, channels: int) -> int:
    """Input sides must be multiples of this for ``params.model`` (1: any size)."""
    return input_size_multiple(_model(params, num_classes, channels))


def _model(params: TrainParams, num_classes: int, channels: int) -> torch.nn.Module:
    return create_model(
        params.model,
        num_classes,
        channels,
        encoder=params.encoder,
        **params.model_kwargs,
    )


def measure_step(
    params: TrainParams,
    machine: Machine,
    *,
    num_classes: int,
    channels: int,
    height: int,
    width: int,
    batch: int,
    seconds: float = 3.0,
    max_steps: int = 8,
) -> StepCost:
    """Time training steps of ``params.model`` on ``(batch, channels, height, width)``
    random inputs: one untimed warm-up step, then steps until ``seconds`` have passed
    (at least three, at most ``max_steps``); the cost is the median step's, so one step
    slowed by something else on the machine does not skew the plan.

    Uses the model, ``channels_last`` and ``num_threads`` of ``params``; the solver is Adam
    and the loss the weighted cross-entropy (the choice of either barely changes the time).
    """
    dev = torch.device(machine.device)
    threads = torch.get_num_threads()
    if params.num_threads and dev.type == "cpu":
        torch.set_num_threads(params.num_threads)
    try:
        model = _model(params, num_classes, channels).to(dev)
        fmt = torch.channels_last if params.channels_last else torch.contiguous_format
        model = model.to(memory_format=fmt).train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(batch, channels, height, width, generator=gen).to(dev, memory_format=fmt)
        y = torch.randint(0, num_classes, (batch, height, width), generator=gen).to(dev)
        w = torch.ones(batch, height, width, device=dev)
        batch_data = (x, y, w)
        _step(model, opt, batch_data, dev)  # warm-up: allocations, kernel choice
        base = _reset_memory(dev)
        times: list[float] = []
        start = time.perf_counter()
        while len(times) < MIN_STEPS or (
            len(times) < max_steps and time.perf_counter() - start < seconds
        ):
            begin = time.perf_counter()
            _step(model, opt, batch_data, dev)
            times.append(time.perf_counter() - begin)
        peak = torch.cuda.max_memory_allocated(dev) if dev.type == "cuda" else None
    finally:
        torch.set_num_threads(threads)
    return StepCost(
        seconds_per_sample=statistics.median(times) / batch,
        bytes_per_sample=None if peak is None else max(peak - base, 1) / batch,
        steps=len(times),
        batch=batch,
    )


def _step(model: torch.nn.Module, opt: Any, data: tuple[torch.Tensor, ...], dev: Any) -> None:
    x, y, w = data
    opt.zero_grad(set_to_none=True)
    loss = weighted_cross_entropy(model(x), y, w)
    loss.backward()
    opt.step()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _reset_memory(dev: torch.device) -> int:
    """The memory held between steps (weights, optimizer state), after resetting the peak."""
    if dev.type != "cuda":
        return 0
    torch.cuda.reset_peak_memory_stats(dev)
    return int(torch.cuda.memory_allocated(dev))
