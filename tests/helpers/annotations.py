"""What the label-import tests share: a class map and blank images of given sizes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = {"background": 0, "dent": 1, "scratch": 2}


def write_images(folder: Path, sizes: dict[str, tuple[int, int]]) -> Path:
    """Black grey images ``name -> (width, height)``; returns ``folder``."""
    for name, (w, h) in sizes.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((h, w), dtype=np.uint8)).save(folder / name)
    return folder
