"""CrackForest (CFD) road-surface cracks -> the quality benchmark's layout.

Source: https://github.com/cuilimeng/CrackForest-dataset, written against commit
ed57c2d96754e6c7d105805cd29aeeb3a799f267 (2017-05-10). Dataset of Y. Shi, L. Cui, Z. Qi,
F. Meng, Z. Chen, "Automatic road crack detection using random structured forests",
IEEE T-ITS 17 (2016) 3434-3445.

Licence, as the README states it: "The dataset is made available for non-commercial
research purposes only."

What it does: the repository holds ``image/<n>.jpg`` (480 x 320 RGB; 155 files) and, for
118 of them, ``groundTruth/<n>.mat`` (MATLAB; struct ``groundTruth`` with a
``Segmentation`` image of segment numbers: 1 pavement, 2 crack). In 22 files the annotation
tool also numbered pavement regions enclosed by cracks as segments 3 and 4; they are
pavement, so only segment 2 becomes the crack class and everything else background. The
37 images without ground truth (201-208, 301-329) and ``image/image.rar`` are skipped.
Images are written as RGB PNG; ids are the file numbers (``001``...).

    classes: 0 background, 1 crack  (118 images)

Usage::

    python benchmarks/datasets/crackforest.py \\
        /work/.mirror/cuilimeng+CrackForest-dataset/repo /work/datasets/crackforest
"""

from __future__ import annotations

import io

import numpy as np
import scipy.io
from _common import ConvertError, Source, Writer, decode_image, parse_args, run

COMMIT = "ed57c2d96754e6c7d105805cd29aeeb3a799f267"
CLASS_NAMES = ["background", "crack"]
CLASS_IDS = [0, 1]
CRACK_SEGMENT = 2


def read_ground_truth(data: bytes, where: str) -> np.ndarray:
    """The ``Segmentation`` image of a CFD ground-truth ``.mat`` file."""
    try:
        mat = scipy.io.loadmat(io.BytesIO(data))
        seg = np.asarray(mat["groundTruth"][0, 0]["Segmentation"])
    except (ValueError, KeyError, IndexError, TypeError, OSError) as err:
        raise ConvertError(
            f"{where}: not a CFD ground-truth file (expected struct groundTruth.Segmentation; "
            f"{type(err).__name__}: {err}); fetch the repository again"
        ) from None
    if seg.ndim != 2:
        raise ConvertError(f"{where}: Segmentation has shape {seg.shape}, expected 2-D")
    return seg


def convert(src: Source, writer: Writer) -> int:
    """Writes every image with ground truth; returns how many images had none."""
    truths = src.files("groundTruth/*.mat")
    if not truths:
        raise ConvertError(
            f"{src.path}: no groundTruth/*.mat; pass the CrackForest-dataset repository "
            "(its git directory or an extracted folder)"
        )
    for rel in truths:
        stem = rel.rsplit("/", 1)[1][: -len(".mat")]
        image_rel = f"image/{stem}.jpg"
        if not src.exists(image_rel):
            raise ConvertError(f"{src.path}: {rel} has no image {image_rel}; fetch it again")
        image = decode_image(src.read(image_rel), f"{src.path}/{image_rel}", "RGB")
        seg = read_ground_truth(src.read(rel), f"{src.path}/{rel}")
        label = (seg == CRACK_SEGMENT).astype(np.uint8)
        writer.add(stem, image, label, f"{src.path}/{rel}")
    return len(src.files("image/*.jpg")) - len(truths)


def main() -> None:
    args = parse_args(__doc__, "/work/.mirror/cuilimeng+CrackForest-dataset/repo")
    src = Source(args.src)
    src.check_commit(COMMIT)
    with Writer(args.out, args.overwrite) as writer:
        skipped = convert(src, writer)
        writer.commit(CLASS_NAMES, CLASS_IDS)
    print(f"  ({skipped} images without ground truth skipped)")


if __name__ == "__main__":
    run(main)
