"""Magnetic-tile surface defects -> the quality benchmark's layout.

Source: https://github.com/abin24/Magnetic-tile-defect-datasets. (the trailing dot is part
of the name), written against commit cc4eb530b57b9cb7225bf76023873043ffd50655 (2020-05-09).
Dataset of Y. Huang, C. Qiu, K. Yuan, "Surface defect saliency of magnetic tile", The
Visual Computer 36 (2020) 85-96.

Licence: none stated. The repository has no licence file; its README says "It is welcomed
to use our dataset. And if it is used in your research, please cite our paper."

What it does: the repository holds one folder per class, ``MT_<Class>/Imgs/``, each image
``<stem>.jpg`` (8-bit grey, sizes 103-632 px) with a binary mask ``<stem>.png`` of the
same size. The masks have soft edges (values between 0 and 255, most visible on thin
cracks and breaks), so a pixel is defect where the mask is >= 128. Every folder's defect
pixels get its class id; ``MT_Free`` (defect-free tiles) contributes background only, and
so do four ``MT_Uneven`` images whose masks are empty in the source. Output ids are
``<class>_<stem>`` (e.g. ``blowhole_exp1_num_108719``); images are written as grey PNG.

    classes: 0 background, 1 blowhole, 2 break, 3 crack, 4 fray, 5 uneven  (1,344 images)

Usage::

    python benchmarks/datasets/magnetic_tile.py \\
        /work/.mirror/abin24+Magnetic-tile-defect-datasets./repo /work/datasets/magnetic_tile
"""

from __future__ import annotations

import numpy as np
from _common import ConvertError, Source, Writer, decode_image, parse_args, run

COMMIT = "cc4eb530b57b9cb7225bf76023873043ffd50655"
FOLDERS = {  # source folder -> (class name, class id); MT_Free has no defect pixels
    "MT_Blowhole": ("blowhole", 1),
    "MT_Break": ("break", 2),
    "MT_Crack": ("crack", 3),
    "MT_Fray": ("fray", 4),
    "MT_Uneven": ("uneven", 5),
    "MT_Free": ("free", 0),
}
CLASS_NAMES = ["background", "blowhole", "break", "crack", "fray", "uneven"]
CLASS_IDS = [0, 1, 2, 3, 4, 5]


def convert(src: Source, writer: Writer) -> None:
    for folder, (name, class_id) in FOLDERS.items():
        images = src.files(f"{folder}/Imgs/*.jpg")
        if not images:
            raise ConvertError(
                f"{src.path}: no {folder}/Imgs/*.jpg; pass the Magnetic-tile-defect-datasets. "
                "repository (its git directory or an extracted folder)"
            )
        for rel in images:
            mask_rel = rel[: -len(".jpg")] + ".png"
            if not src.exists(mask_rel):
                raise ConvertError(
                    f"{src.path}: {rel} has no mask {mask_rel}; fetch the repository again"
                )
            image = decode_image(src.read(rel), f"{src.path}/{rel}", "L")
            mask = decode_image(src.read(mask_rel), f"{src.path}/{mask_rel}", "L")
            label = np.where(mask >= 128, class_id, 0).astype(np.uint8)
            stem = rel.rsplit("/", 1)[1][: -len(".jpg")]
            writer.add(f"{name}_{stem}", image, label, f"{src.path}/{rel}")


def main() -> None:
    args = parse_args(__doc__, "/work/.mirror/abin24+Magnetic-tile-defect-datasets./repo")
    src = Source(args.src)
    src.check_commit(COMMIT)
    with Writer(args.out, args.overwrite) as writer:
        convert(src, writer)
        writer.commit(CLASS_NAMES, CLASS_IDS)


if __name__ == "__main__":
    run(main)
