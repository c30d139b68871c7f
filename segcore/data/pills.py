"""Drawing one synthetic pill photograph and its label image (see :mod:`segcore.data.synth`).

Everything is drawn with numpy and OpenCV from one ``numpy.random.Generator``: the same
generator state gives the same image, byte for byte.
"""

from __future__ import annotations

import cv2
import numpy as np

GOOD, CONTAMINATION, CRACK = 0, 1, 2
"""Class ids of the pill data."""

_PILL_COLOURS = np.array(
    [
        (238, 236, 230),  # white
        (240, 228, 196),  # cream
        (236, 208, 96),  # yellow
        (236, 156, 84),  # orange
        (238, 178, 188),  # pink
        (168, 200, 236),  # light blue
        (176, 218, 176),  # light green
        (222, 214, 200),  # beige
    ],
    dtype=np.float32,
)
_SPECK_COLOURS = np.array(
    [
        (40, 70, 200),  # blue
        (30, 140, 60),  # green
        (196, 32, 40),  # red
        (150, 80, 20),  # brown
        (128, 40, 160),  # purple
        (0, 140, 150),  # teal
        (236, 110, 0),  # orange
    ],
    dtype=np.float32,
)
_SUBPIXEL = 4
"""Fractional bits for OpenCV drawing coordinates (1/16 pixel)."""


def render_pill_image(
    rng: np.random.Generator,
    width: int,
    height: int,
    *,
    defects: bool = True,
    defect_scale: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic photograph and its label.

    Pills, tray and the length of cracks scale with the image (``min(width, height) / 256``).
    The width of cracks and the size of contamination follow ``defect_scale`` (default: the
    same scale): ``defect_scale=1`` on a 2048 x 1536 image gives hairline cracks 2-3 px wide
    and pits of a few pixels on large pills, the defects that vanish when such an image is
    resized to a network input.

    Returns:
        ``(image, label)``: ``(height, width, 3)`` uint8 RGB and ``(height, width)`` uint8
        class ids. With ``defects`` the label holds contamination, cracks or both.
    """
    scale = min(width, height) / 256.0
    size = scale if defect_scale is None else defect_scale
    light = rng.uniform(0, 2 * np.pi)
    canvas = _tray(rng, width, height, light)
    label = np.zeros((height, width), dtype=np.uint8)
    pills = _place_pills(rng, width, height, scale)
    target = int(rng.integers(len(pills)))
    kind = rng.choice(3, p=[0.4, 0.4, 0.2])  # contamination, crack, both
    for k, mask in enumerate(pills):
        colour = _PILL_COLOURS[rng.integers(len(_PILL_COLOURS))] * rng.uniform(0.9, 1.0)
        _draw_pill(rng, canvas, mask, colour, light, scale)
        if defects and k == target:
            inner = cv2.erode(mask, np.ones((3, 3), np.uint8), iterations=max(2, round(4 * scale)))
            if kind in (0, 2):
                _contamination(rng, canvas, label, inner, colour, size)
            if kind in (1, 2):
                _crack(rng, canvas, label, inner, scale, size)
    sigma = rng.uniform(0.5, 0.85) * max(scale, 0.5)
    canvas = cv2.GaussianBlur(canvas, (0, 0), sigma)
    canvas += np.float32(rng.uniform(1.5, 4.0)) * rng.standard_normal(canvas.shape, np.float32)
    return np.clip(canvas + 0.5, 0, 255).astype(np.uint8), label


def _smooth_noise(rng: np.random.Generator, width: int, height: int, cells: int) -> np.ndarray:
    """``(height, width)`` float32 noise in about [-1, 1] with ``cells`` blobs across."""
    coarse = rng.uniform(-1, 1, (cells + 1, cells + 1)).astype(np.float32)
    return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)


def _tray(rng: np.random.Generator, width: int, height: int, light: float) -> np.ndarray:
    """Textured tray under a lighting gradient and vignette: ``(H, W, 3)`` float32 0..255."""
    base = rng.uniform(55, 125) + rng.uniform(-12, 12, 3)
    brushed = rng.standard_normal((height, width), np.float32)
    ksize = (31, 1) if rng.random() < 0.5 else (1, 31)
    brushed = cv2.blur(brushed, ksize) * 4.0
    texture = 1 + 0.08 * _smooth_noise(rng, width, height, 6) + 0.04 * brushed
    x = (np.arange(width, dtype=np.float32) / width - 0.5)[None, :]
    y = (np.arange(height, dtype=np.float32) / height - 0.5)[:, None]
    gradient = 1 + rng.uniform(0.15, 0.4) * (np.cos(light) * x + np.sin(light) * y)
    vignette = 1 - rng.uniform(0.2, 0.5) * (x**2 + y**2)
    shade = texture * gradient * vignette
    return (shade[..., None] * base[None, None, :].astype(np.float32)).astype(np.float32)


def _place_pills(
    rng: np.random.Generator, width: int, height: int, scale: float
) -> list[np.ndarray]:
    """Masks ``(H, W)`` uint8 {0, 255} of one to three non-overlapping pills."""
    count = int(rng.choice([1, 2, 3], p=[0.6, 0.3, 0.1]))
    size = 256 * scale * (1.0 if count == 1 else 0.72)
    masks: list[np.ndarray] = []
    placed: list[tuple[float, float, float]] = []
    for _ in range(count * 15):
        if len(masks) == count:
            break
        shape = rng.choice(["round", "oval", "capsule"], p=[0.45, 0.25, 0.3])
        angle = rng.uniform(0, 180)
        if shape == "round":
            a = b = size * rng.uniform(0.19, 0.27)
        elif shape == "oval":
            a = size * rng.uniform(0.26, 0.34)
            b = a * rng.uniform(0.5, 0.7)
        else:
            b = size * rng.uniform(0.11, 0.15)
            a = b + size * rng.uniform(0.14, 0.22)
        cx = rng.uniform(a + 4, width - a - 4) if width > 2 * a + 8 else width / 2
        cy = rng.uniform(a + 4, height - a - 4) if height > 2 * a + 8 else height / 2
        if any(np.hypot(cx - px, cy - py) < a + pr + 3 for px, py, pr in placed):
            continue
        placed.append((cx, cy, a))
        mask = np.zeros((height, width), np.uint8)
        f = 1 << _SUBPIXEL
        centre = (round(cx * f), round(cy * f))
        if shape == "capsule":
            d = (a - b) * np.array([np.cos(np.radians(angle)), np.sin(np.radians(angle))])
            p1 = (round((cx - d[0]) * f), round((cy - d[1]) * f))
            p2 = (round((cx + d[0]) * f), round((cy + d[1]) * f))
            cv2.line(mask, p1, p2, 255, max(1, round(2 * b)), cv2.LINE_8, _SUBPIXEL)
        else:
            axes = (round(a * f), round(b * f))
            cv2.ellipse(mask, centre, axes, angle, 0, 360, 255, -1, cv2.LINE_8, _SUBPIXEL)
        masks.append(mask)
    return masks


def _draw_pill(
    rng: np.random.Generator,
    canvas: np.ndarray,
    mask: np.ndarray,
    colour: np.ndarray,
    light: float,
    scale: float,
) -> None:
    """Shadow on the tray, then the shaded pill body (rounded rim, highlight, grain).

    Works on the pill's bounding box plus a margin for the shadow; ``canvas`` is changed
    in place.
    """
    x, y, bw, bh = cv2.boundingRect(mask)
    pad = int(np.ceil(20 * scale)) + 4
    y0, y1 = max(0, y - pad), min(mask.shape[0], y + bh + pad)
    x0, x1 = max(0, x - pad), min(mask.shape[1], x + bw + pad)
    canvas, mask = canvas[y0:y1, x0:x1], mask[y0:y1, x0:x1]
    h, w = mask.shape
    m = mask.astype(np.float32) / 255.0
    shift = np.float32([[1, 0, -np.cos(light) * 5 * scale], [0, 1, -np.sin(light) * 5 * scale]])
    shadow = cv2.GaussianBlur(cv2.warpAffine(m, shift, (w, h)), (0, 0), 4 * scale)
    canvas *= (1 - rng.uniform(0.3, 0.5) * shadow)[..., None]
    # Height map: flat top with a rounded rim; its gradient gives the surface normal.
    dist = cv2.distanceTransform(mask, cv2.DIST_L2, 5)
    rim = rng.uniform(8, 16) * scale
    t = np.clip(dist / rim, 0, 1)
    height_map = np.sqrt(1 - (1 - t) ** 2) * rim * 0.9
    gy, gx = np.gradient(cv2.GaussianBlur(height_map, (0, 0), 1.0 + scale))
    norm = np.sqrt(gx**2 + gy**2 + 1)
    elevation = np.radians(50)
    lx, ly, lz = (
        np.cos(light) * np.cos(elevation),
        np.sin(light) * np.cos(elevation),
        np.sin(elevation),
    )
    lambert = (-gx * lx - gy * ly + lz) / norm
    specular = np.clip(lambert, 0, 1) ** 24 * rng.uniform(0.1, 0.3)
    grain = 1 + np.float32(rng.uniform(0.01, 0.04)) * rng.standard_normal((h, w), np.float32)
    shade = (0.35 + 0.7 * lambert) * grain * (1 + 0.05 * _smooth_noise(rng, w, h, 4))
    body = shade[..., None] * colour[None, None, :] + 255 * specular[..., None]
    soft = cv2.GaussianBlur(m, (0, 0), 0.6)[..., None]
    canvas[:] = canvas * (1 - soft) + body * soft


def _random_point(rng: np.random.Generator, region: np.ndarray) -> tuple[int, int] | None:
    ys, xs = np.nonzero(region)
    if len(xs) == 0:
        return None
    k = int(rng.integers(len(xs)))
    return int(xs[k]), int(ys[k])


def _contamination(
    rng: np.random.Generator,
    canvas: np.ndarray,
    label: np.ndarray,
    inner: np.ndarray,
    pill_colour: np.ndarray,
    scale: float,
) -> None:
    """Specks and blobs of a colour far from the pill's, a few px to ~15 px across."""
    far = np.linalg.norm(_SPECK_COLOURS - pill_colour, axis=1) > 110
    palette = _SPECK_COLOURS[far] if far.any() else _SPECK_COLOURS
    colour = palette[rng.integers(len(palette))]
    spots = np.zeros_like(inner)
    f = 1 << _SUBPIXEL
    for _ in range(int(rng.integers(3, 8))):
        point = _random_point(rng, inner)
        if point is None:
            return
        # Mostly blobs 6-15 px across (at 256 px), some specks of a few pixels.
        radius = rng.uniform(3.0, 7.5) * scale if rng.random() < 0.85 else rng.uniform(1.5, 2.5)
        n = int(rng.integers(7, 13))
        angles = np.sort(rng.uniform(0, 2 * np.pi, n))
        radii = radius * rng.uniform(0.6, 1.3, n)
        poly = np.stack([point[0] + radii * np.cos(angles), point[1] + radii * np.sin(angles)], 1)
        cv2.fillPoly(spots, [np.round(poly * f).astype(np.int32)], 255, cv2.LINE_8, _SUBPIXEL)
    spots &= inner
    hit = spots > 0
    tint = colour * rng.uniform(0.8, 1.1, (int(hit.sum()), 1)).astype(np.float32)
    canvas[hit] = 0.1 * canvas[hit] + 0.9 * np.clip(tint, 0, 255)
    label[hit] = CONTAMINATION


def _crack(
    rng: np.random.Generator,
    canvas: np.ndarray,
    label: np.ndarray,
    inner: np.ndarray,
    scale: float,
    width_scale: float,
) -> None:
    """One or two dark jagged polylines (random walk), 2-3 px wide at 256 px.

    Their length grows with ``scale``, their width with ``width_scale``."""
    lines = np.zeros_like(inner)
    thickness = max(2, round(rng.choice([2, 3], p=[0.4, 0.6]) * width_scale))
    dist = cv2.distanceTransform(inner, cv2.DIST_L2, 3)
    core = (dist >= 0.5 * dist.max()).astype(np.uint8)
    for _ in range(int(rng.choice([1, 2, 3], p=[0.5, 0.35, 0.15]))):
        point = _random_point(rng, core)
        if point is None:
            return
        direction = rng.uniform(0, 2 * np.pi)
        for heading in (direction, direction + np.pi):  # grow both ways from the start
            steps = int(rng.integers(5, 12))
            # Jagged: each segment zig-zags around a slowly drifting main direction.
            turns = heading + np.cumsum(rng.normal(0, 0.15, steps)) + rng.normal(0, 0.6, steps)
            lengths = rng.uniform(4, 9, steps) * scale
            xy = np.cumsum(np.stack([np.cos(turns) * lengths, np.sin(turns) * lengths], 1), 0)
            poly = np.round(np.vstack([[0.0, 0.0], xy]) + point).astype(np.int32)
            cv2.polylines(lines, [poly], False, 255, thickness, cv2.LINE_8)
    lines &= inner
    hit = lines > 0
    darkness = rng.uniform(0.25, 0.45) * rng.uniform(0.85, 1.15, (int(hit.sum()), 1))
    canvas[hit] *= darkness.astype(np.float32)
    label[hit] = CRACK
