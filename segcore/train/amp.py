"""Mixed precision in training: the forward pass under autocast, the loss in float32.

The network's weights and the optimizer state stay float32 (the "master weights"): only
the forward pass runs under :func:`torch.autocast`, whose 16-bit activations the backward
pass follows. The logits come back to float32 before the loss, so the loss, its softmax
and the measures are computed in float32 whatever the precision. fp16 training scales
the loss (:class:`torch.amp.GradScaler`): the scaled backward keeps small gradients from
flushing to zero, and an update whose gradients overflowed is skipped while the scale drops.
"""

from __future__ import annotations

import torch

from segcore.common.precision import ResolvedPrecision


def forward(net: torch.nn.Module, x: torch.Tensor, precision: ResolvedPrecision) -> torch.Tensor:
    """``(N, C, H, W)`` -> ``(N, K, H, W)`` float32 logits, the network run in ``precision``."""
    with precision.autocast():
        logits = net(x)
    return logits.float()


def backward(loss: torch.Tensor, scaler: torch.amp.GradScaler | None) -> None:
    """Gradients of ``loss`` (scaled for fp16) into the float32 weights' ``.grad``."""
    if scaler is None:
        loss.backward()
    else:
        scaler.scale(loss).backward()


def optimizer_step(optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None) -> None:
    """One update of the float32 weights; fp16: unscaled first, skipped on inf/NaN gradients."""
    if scaler is None:
        optimizer.step()
    else:
        scaler.step(optimizer)
        scaler.update()
    optimizer.zero_grad(set_to_none=True)
