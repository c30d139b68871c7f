"""The synthetic pill dataset: photographs of pills on a tray with contamination and cracks.

Each image shows one to three pills (round tablets, ovals, capsules) on a textured tray
under a lighting gradient, with soft shadows, sensor noise and a slight blur. About
``defect_free_fraction`` of the images show intact pills only; the others carry
contamination (small, distinctly coloured specks and blobs on a pill), cracks (thin,
dark, jagged lines on a pill) or both. The label image holds the class id per pixel:
0 good (tray and intact pill surface), 1 contamination, 2 crack.

Everything is drawn with numpy and OpenCV from one ``numpy.random.Generator`` per image,
derived from the seed and the image index, so the same seed gives byte-identical files.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Group
from rich.table import Table
from rich.text import Text

from segcore.common.images import write_image_atomic
from segcore.common.progress import track
from segcore.data.pills import CONTAMINATION, CRACK, GOOD, render_pill_image  # noqa: F401 (class ids re-exported)

CLASS_NAMES = ("good", "contamination", "crack")
"""Class names of the pill data, indexed by class id."""


@dataclass(frozen=True)
class PillsSummary:
    """What :func:`generate_pills` wrote.

    Attributes:
        out_dir: folder holding ``images/`` and ``labels/``.
        num_images: number of image/label pairs.
        width, height: image size in pixels.
        num_defect_free: images whose label holds class 0 only.
        class_pixels: pixels per class id (summed over all label images).
        class_images: number of label images that contain each class id.
        seconds: wall-clock time of the generation.
    """

    out_dir: Path
    num_images: int
    width: int
    height: int
    num_defect_free: int
    class_pixels: tuple[int, ...]
    class_images: tuple[int, ...]
    seconds: float

    def _rows(self) -> list[tuple[str, str, str, str]]:
        total = max(sum(self.class_pixels), 1)
        return [
            (f"{cid} {name}", f"{px:,}", f"{100 * px / total:.2f}", str(n))
            for cid, (name, px, n) in enumerate(
                zip(CLASS_NAMES, self.class_pixels, self.class_images, strict=True)
            )
        ]

    def _head(self) -> str:
        return (
            f"Synthetic pills: {self.num_images} images of {self.width}x{self.height} "
            f"({self.num_defect_free} defect-free) in {self.seconds:.1f} s -> {self.out_dir}"
        )

    def __str__(self) -> str:
        lines = [self._head()]
        lines += [
            f"  class {c}: {px} pixels ({pc} %), in {n} images" for c, px, pc, n in self._rows()
        ]
        return "\n".join(lines)

    def __rich__(self) -> Group:
        table = Table()
        for col in ("class", "pixels", "% of pixels", "images"):
            table.add_column(col, justify="left" if col == "class" else "right", no_wrap=True)
        for row in self._rows():
            table.add_row(*row)
        return Group(Text(self._head()), table)


def generate_pills(
    out_dir: str | Path,
    *,
    num_images: int = 160,
    width: int = 256,
    height: int = 256,
    defect_free_fraction: float = 0.2,
    seed: int = 42,
    defect_scale: float | None = None,
) -> PillsSummary:
    """Write the synthetic pill dataset: ``images/pill_NNNN.png`` and ``labels/pill_NNNN.png``.

    Images are RGB 8-bit ``(height, width, 3)``; labels are 8-bit one-channel
    ``(height, width)`` with the class id per pixel (0 good, 1 contamination, 2 crack).
    Earlier ``pill_*.png`` files beyond ``num_images`` are removed, so the folders hold
    exactly this dataset. Files are written atomically.

    Args:
        out_dir: folder that receives ``images/`` and ``labels/``.
        num_images: number of image/label pairs (> 0).
        width, height: image size in pixels (>= 32).
        defect_free_fraction: share of images without any defect (0..1); the number of
            defect-free images is ``round(defect_free_fraction * num_images)``.
        seed: random seed; the same seed gives byte-identical files.
        defect_scale: width of cracks and size of contamination relative to a 256-pixel
            image; ``None`` scales them with the image like everything else. ``1.0`` on
            large images (e.g. 2048 x 1536) gives hairline cracks 2-3 px wide and pits a few
            pixels across: the large-image demo of tiled mode.
    """
    _check_size(num_images, width, height, defect_free_fraction)
    if defect_scale is not None and not defect_scale > 0:
        raise ValueError(f"need defect_scale > 0 or None; got {defect_scale}")
    start = time.perf_counter()
    out = Path(out_dir)
    image_dir, label_dir = out / "images", out / "labels"
    free = _defect_free(np.random.default_rng(seed), num_images, defect_free_fraction)
    names = _pill_names(num_images)
    pixels, images, num_clean = _write_pills(
        seed, (width, height, defect_scale), free, names, image_dir, label_dir
    )
    _remove_stale((image_dir, label_dir), set(names))
    return PillsSummary(
        out_dir=out,
        num_images=num_images,
        width=width,
        height=height,
        num_defect_free=num_clean,
        class_pixels=tuple(int(p) for p in pixels),
        class_images=tuple(int(n) for n in images),
        seconds=time.perf_counter() - start,
    )


def _check_size(num_images: int, width: int, height: int, defect_free_fraction: float) -> None:
    """Raise ``ValueError`` for arguments :func:`generate_pills` cannot draw."""
    if num_images <= 0 or width < 32 or height < 32 or not 0 <= defect_free_fraction <= 1:
        raise ValueError(
            f"need num_images > 0, width and height >= 32, 0 <= defect_free_fraction <= 1; got "
            f"{num_images}, {width}x{height}, {defect_free_fraction}"
        )


def _defect_free(
    rng: np.random.Generator, num_images: int, defect_free_fraction: float
) -> np.ndarray:
    """``(num_images,)`` bool: which images show intact pills only (a random choice)."""
    num_free = round(defect_free_fraction * num_images)
    free = np.zeros(num_images, dtype=bool)
    free[rng.permutation(num_images)[:num_free]] = True
    return free


def _pill_names(num_images: int) -> list[str]:
    """File names ``pill_NNNN.png``, zero-padded to at least four digits."""
    digits = max(4, len(str(num_images - 1)))
    return [f"pill_{i:0{digits}d}.png" for i in range(num_images)]


def _write_pills(
    seed: int,
    size: tuple[int, int, float | None],
    free: np.ndarray,
    names: list[str],
    image_dir: Path,
    label_dir: Path,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Render and write every pair; ``(pixels per class, images per class, defect-free)``.

    ``size`` is ``(width, height, defect_scale)``."""
    width, height, defect_scale = size
    pixels = np.zeros(len(CLASS_NAMES), dtype=np.int64)
    images = np.zeros(len(CLASS_NAMES), dtype=np.int64)
    num_clean = 0
    for i in track(range(len(names)), "synth"):
        image, label = render_pill_image(
            np.random.default_rng([seed, i]),
            width,
            height,
            defects=not free[i],
            defect_scale=defect_scale,
        )
        write_image_atomic(image_dir / names[i], image)
        write_image_atomic(label_dir / names[i], label)
        counts = np.bincount(label.ravel(), minlength=len(CLASS_NAMES))
        pixels += counts
        images += counts > 0
        num_clean += int(counts[GOOD] == counts.sum())
    return pixels, images, num_clean


def _remove_stale(folders: tuple[Path, ...], keep: set[str]) -> None:
    """Delete ``pill_<digits>.png`` files of an earlier, larger run from ``folders``."""
    for folder in folders:
        for stale in folder.glob("pill_*.png"):
            if stale.name not in keep and re.fullmatch(r"pill_\d+\.png", stale.name):
                stale.unlink()
