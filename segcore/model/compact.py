"""The U-Net behind ``compact`` and ``enhanced`` (deeper, wider, residual): sized for CPU
training.

An encoder halves the resolution ``depth`` times, a decoder doubles it back with a skip
connection at every level *including full resolution*, so 2-3 px thin defects (cracks,
scratches) survive to the output.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from segcore.common.errors import ParamsError

NormType = Literal["batch", "group"]


def _norm(kind: NormType, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    # GroupNorm is independent of the batch: identical results for any batch split
    # (gradient accumulation, DistributedDataParallel) at some CPU cost.
    return nn.GroupNorm(math.gcd(8, channels), channels)


class ConvBlock(nn.Sequential):
    """Two ``3x3 conv -> norm -> ReLU``: ``(N, in, H, W) -> (N, out, H, W)``."""

    def __init__(self, in_channels: int, out_channels: int, norm: NormType) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            _norm(norm, out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            _norm(norm, out_channels),
            nn.ReLU(inplace=True),
        )


class ResBlock(nn.Module):
    """:class:`ConvBlock` with a residual connection (1x1 projection when the width
    changes): ``relu(norm(conv(relu(norm(conv(x))))) + skip(x))``. Keeps deep networks
    trainable (``enhanced``)."""

    def __init__(self, in_channels: int, out_channels: int, norm: NormType) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            _norm(norm, out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            _norm(norm, out_channels),
        )
        self.skip: nn.Module = (
            nn.Identity()
            if in_channels == out_channels
            else nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, bias=False), _norm(norm, out_channels)
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.skip(x))


class CompactUNet(nn.Module):
    """A small U-Net with full-resolution output, sized for CPU training.

    Level ``i`` (``0..depth``) works at ``1 / 2**i`` of the input resolution with
    ``base_channels * 2**i`` channels. Down: 2x2 max pooling; up: 2x2 transposed
    convolution, then concatenation with the encoder features of that level.

    Args:
        in_channels: image channels (1 or 3).
        num_classes: output channels (one logit per class).
        base_channels: channels at full resolution.
        depth: number of halvings; inputs must be divisible by ``2**depth``.
        norm: ``batch`` (fastest) or ``group`` (independent of the batch size).
        residual: residual blocks (:class:`ResBlock`) instead of plain ones.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        base_channels: int = 16,
        depth: int = 4,
        norm: NormType = "batch",
        residual: bool = False,
    ) -> None:
        super().__init__()
        if norm not in ("batch", "group") or base_channels < 1 or depth < 1:
            raise ParamsError(
                f"compact/enhanced: norm must be 'batch' or 'group' (got {norm!r}), "
                f"base_channels >= 1 (got {base_channels}) and depth >= 1 (got {depth})"
            )
        widths = [base_channels * 2**i for i in range(depth + 1)]
        self.depth = depth
        block = ResBlock if residual else ConvBlock
        self.encoder = nn.ModuleList(
            [block(in_channels, widths[0], norm)]
            + [block(widths[i - 1], widths[i], norm) for i in range(1, depth + 1)]
        )
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList(
            [nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in range(depth)]
        )
        self.decoder = nn.ModuleList([block(2 * widths[i], widths[i], norm) for i in range(depth)])
        self.head = nn.Conv2d(widths[0], num_classes, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, in_channels, H, W) -> (N, num_classes, H, W)`` logits."""
        skips = []
        for i, block in enumerate(self.encoder):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for i in reversed(range(self.depth)):
            x = self.decoder[i](torch.cat([self.up[i](x), skips[i]], dim=1))
        return self.head(x)

    @property
    def input_size_multiple(self) -> int:
        """Height and width must be multiples of this."""
        return 2**self.depth
