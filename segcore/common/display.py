"""Display colours and images shared by inference outputs and the evaluation report.

Every class index has one fixed colour (:func:`class_colors`), so an overlay written by
``segcore infer`` and the report's ground-truth and prediction panels read the same way.
No plotting library is needed here.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence

import numpy as np

IGNORE_COLOR = (190, 190, 190)
"""Display colour of ignore-class and unknown label pixels (light grey)."""


def class_colors(num_classes: int) -> np.ndarray:
    """Fixed display colour per class index: ``(K, 3)`` uint8 RGB, the same everywhere.

    Index 0 (usually the good / background class) is dark grey; the next ones are
    high-contrast colours, further ones are spread evenly over the hue circle.
    """
    base = [
        (64, 64, 64),
        (230, 25, 75),
        (255, 225, 25),
        (0, 130, 200),
        (60, 180, 75),
        (245, 130, 48),
        (145, 30, 180),
        (70, 240, 240),
        (240, 50, 230),
        (170, 110, 40),
    ]
    for k in range(len(base), num_classes):
        r, g, b = colorsys.hsv_to_rgb((k * 0.618034) % 1.0, 0.85, 0.95)
        base.append((round(r * 255), round(g * 255), round(b * 255)))
    return np.asarray(base[:num_classes], dtype=np.uint8)


def display_image(image: np.ndarray) -> np.ndarray:
    """Any ``(H, W[, C])`` image -> ``(H, W, 3)`` uint8 RGB for display (non-8-bit stretched)."""
    img = image if image.ndim == 3 else image[:, :, None]
    if img.dtype != np.uint8:
        f = img.astype(np.float32)
        lo, hi = float(f.min()), float(f.max())
        img = ((f - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(f)).astype(np.uint8)
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    return np.ascontiguousarray(img[:, :, :3])


def overlay(
    image: np.ndarray, segmentation: np.ndarray, class_ids: Sequence[int], alpha: float = 0.45
) -> np.ndarray:
    """The image with its classes tinted in their colours: ``(H, W, 3)`` uint8 RGB.

    Args:
        image: ``(H, W[, C])`` any pixel type.
        segmentation: ``(H, W)`` class ids.
        class_ids: the model's class ids; the first (the good / background class) is
            left untinted.
        alpha: opacity of the tint.
    """
    rgb = display_image(image).astype(np.float32)
    colors = class_colors(len(class_ids)).astype(np.float32)
    lut = np.zeros(max(int(segmentation.max(initial=0)), *class_ids) + 1, dtype=np.int64)
    lut[np.asarray(class_ids)] = np.arange(len(class_ids))
    index = lut[segmentation]
    tint = (index > 0)[:, :, None]
    blended = np.where(tint, (1 - alpha) * rgb + alpha * colors[index], rgb)
    return blended.round().astype(np.uint8)


VERDICT_COLORS = {"OK": (40, 170, 60), "NG": (220, 30, 30)}
"""Colour of the verdict banner and of the boxes around firing regions (RGB)."""


def stamp_verdict(
    rgb: np.ndarray,
    label: str,
    text: str,
    boxes: Sequence[tuple[int, int, int, int]] = (),
) -> np.ndarray:
    """The overlay with its verdict: a frame and a banner (``OK``, or ``NG`` and the classes
    that fired) in the verdict's colour, and a box around each firing region.

    Args:
        rgb: ``(H, W, 3)`` uint8 (from :func:`overlay`).
        label: ``OK`` or ``NG``.
        text: the banner's text.
        boxes: ``(row1, col1, row2, col2)`` inclusive, of the regions that fired.
    """
    import cv2

    out = np.ascontiguousarray(rgb.copy())
    color = VERDICT_COLORS.get(label, (255, 255, 255))
    height, width = out.shape[:2]
    thick = max(1, round(min(height, width) / 200))
    for r1, c1, r2, c2 in boxes:
        cv2.rectangle(out, (int(c1), int(r1)), (int(c2), int(r2)), color, thick)
    cv2.rectangle(out, (0, 0), (width - 1, height - 1), color, 2 * thick)
    scale = max(0.35, min(height, width) / 600)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    cv2.rectangle(out, (0, 0), (min(width - 1, tw + 8), th + base + 8), color, -1)
    cv2.putText(
        out, text, (4, th + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA
    )
    return out


def network_input_rgb(image: np.ndarray) -> np.ndarray:
    """``(C, H, W)`` network input -> ``(H, W, 3)`` in [0, 1], stretched to its own range."""
    img = np.asarray(image, dtype=np.float32)
    img = img[:3].transpose(1, 2, 0)
    lo, hi = float(img.min()), float(img.max())
    img = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
    return np.repeat(img, 3, axis=2) if img.shape[2] == 1 else img


def colorize(
    label: np.ndarray, class_ids: Sequence[int], ignore_class_ids: Sequence[int] = ()
) -> np.ndarray:
    """``(H, W)`` class ids -> ``(H, W, 3)`` uint8 in the fixed class colours.

    Ignore classes and values that are not class ids get :data:`IGNORE_COLOR`.
    """
    colors = class_colors(len(class_ids))
    top = max(int(label.max(initial=0)), *class_ids) + 1
    lut = np.tile(np.array(IGNORE_COLOR, dtype=np.uint8), (top, 1))
    ignore = set(ignore_class_ids)
    for k, cid in enumerate(class_ids):
        if cid not in ignore:
            lut[cid] = colors[k]
    return lut[label]
