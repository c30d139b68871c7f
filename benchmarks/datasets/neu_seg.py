"""NEU-Seg hot-rolled steel strip defects -> the quality benchmark's layout.

Source: https://github.com/DHW-Master/NEU_Seg, written against commit
da8cebedb292beca4d101db8c442d5706fac3bfe (2020-12-30). A copy of NEU-Seg, pixel labels for
three defect classes of hot-rolled steel strip from K. Song's group at Northeastern
University, China (the NEU surface defect database).

Licence: none stated. The repository has no licence file; its README is the title only.

What it does: the repository holds ``images/{training,test}/<n>.jpg`` (200 x 200, grey
content stored as RGB JPEG) and ``annotations/{training,test}/<n>.png`` (one channel,
pixel = class id 0-3). Images are written as grey PNG, labels unchanged; ids are
``<split>_<n>`` (e.g. ``training_000001``). The source's training/test division is not
kept: segcore's split stage makes its own. Four JPEG files occur twice (same bytes, under
two numbers).

    classes: 0 background, 1 inclusion, 2 patches, 3 scratches  (4,470 images)

Usage::

    python benchmarks/datasets/neu_seg.py /work/.mirror/DHW-Master+NEU_Seg/repo \\
        /work/datasets/neu_seg
"""

from __future__ import annotations

import numpy as np
from _common import ConvertError, Source, Writer, decode_image, parse_args, run

COMMIT = "da8cebedb292beca4d101db8c442d5706fac3bfe"
SPLITS = ("training", "test")
CLASS_NAMES = ["background", "inclusion", "patches", "scratches"]
CLASS_IDS = [0, 1, 2, 3]


def convert(src: Source, writer: Writer) -> None:
    for split in SPLITS:
        images = src.files(f"images/{split}/*.jpg")
        if not images:
            raise ConvertError(
                f"{src.path}: no images/{split}/*.jpg; pass the NEU_Seg repository "
                "(its git directory or an extracted folder)"
            )
        for rel in images:
            stem = rel.rsplit("/", 1)[1][: -len(".jpg")]
            label_rel = f"annotations/{split}/{stem}.png"
            if not src.exists(label_rel):
                raise ConvertError(
                    f"{src.path}: {rel} has no label {label_rel}; fetch the repository again"
                )
            image = decode_image(src.read(rel), f"{src.path}/{rel}", "L")
            label = decode_image(src.read(label_rel), f"{src.path}/{label_rel}")
            if label.ndim != 2 or label.max() > CLASS_IDS[-1]:
                raise ConvertError(
                    f"{src.path}/{label_rel}: expected one channel of class ids 0-3, got shape "
                    f"{label.shape} with values up to {label.max()}; check the commit"
                )
            writer.add(f"{split}_{stem}", image, label.astype(np.uint8), f"{src.path}/{rel}")


def main() -> None:
    args = parse_args(__doc__, "/work/.mirror/DHW-Master+NEU_Seg/repo")
    src = Source(args.src)
    src.check_commit(COMMIT)
    with Writer(args.out, args.overwrite) as writer:
        convert(src, writer)
        writer.commit(CLASS_NAMES, CLASS_IDS)


if __name__ == "__main__":
    run(main)
