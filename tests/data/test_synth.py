"""The synthetic pill data: file format, determinism, class frequencies, defect contrast."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from segcore.data.synth import CLASS_NAMES, CONTAMINATION, CRACK, GOOD, generate_pills

SMALL = {"num_images": 6, "width": 64, "height": 64, "defect_free_fraction": 0.5}


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*.png"))}


def _labels(raw: Path) -> list[np.ndarray]:
    return [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted(raw.glob("labels/*.png"))]


def test_same_seed_gives_identical_files_and_another_seed_does_not(tmp_path: Path) -> None:
    generate_pills(tmp_path / "a", seed=3, **SMALL)
    generate_pills(tmp_path / "b", seed=3, **SMALL)
    generate_pills(tmp_path / "c", seed=4, **SMALL)
    a, b, c = (_files(tmp_path / x) for x in "abc")
    assert len(a) == 2 * SMALL["num_images"]
    assert a == b
    assert a.keys() == c.keys()
    assert all(a[k] != c[k] for k in a if k.startswith("images/"))


def test_files_are_rgb_images_and_one_channel_class_id_labels(pills_raw: Path) -> None:
    images = sorted(p.name for p in (pills_raw / "images").glob("*.png"))
    labels = sorted(p.name for p in (pills_raw / "labels").glob("*.png"))
    assert images == labels and len(images) == 24
    image = cv2.imread(str(pills_raw / "images" / images[0]), cv2.IMREAD_UNCHANGED)
    label = cv2.imread(str(pills_raw / "labels" / images[0]), cv2.IMREAD_UNCHANGED)
    assert image.shape == (96, 96, 3) and image.dtype == np.uint8
    assert label.shape == (96, 96) and label.dtype == np.uint8
    assert set(np.unique(np.concatenate([x.ravel() for x in _labels(pills_raw)]))) <= {0, 1, 2}


def test_class_frequencies(pills_raw: Path) -> None:
    labels = _labels(pills_raw)
    counts = np.stack([np.bincount(x.ravel(), minlength=3) for x in labels])  # (N, 3)
    defect_share = counts[:, 1:].sum() / counts.sum()
    assert 0.002 < defect_share < 0.05, "defects should be a few percent of the pixels at most"
    clean = (counts[:, 1:] == 0).all(axis=1)
    assert clean.sum() == round(0.2 * len(labels))
    holders = (counts > 0).sum(axis=0)
    assert holders[GOOD] == len(labels)
    assert holders[CONTAMINATION] >= 4 and holders[CRACK] >= 4


def test_defects_stand_out_from_the_pill_surface_around_them(pills_raw: Path) -> None:
    """Learnable: cracks are darker than the surface next to them, specks differ in colour."""
    crack_ratio, speck_distance = [], []
    for path in sorted((pills_raw / "labels").glob("*.png")):
        label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        image = cv2.imread(str(pills_raw / "images" / path.name)).astype(np.float32)
        defect = label > 0
        ring = (cv2.dilate(defect.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0) & ~defect
        if not ring.any():
            continue
        surround = image[ring].mean(axis=0)
        if (label == CRACK).sum() > 20:
            crack_ratio.append(image[label == CRACK].mean() / surround.mean())
        if (label == CONTAMINATION).sum() > 20:
            speck = image[label == CONTAMINATION].mean(axis=0)
            speck_distance.append(float(np.linalg.norm(speck - surround)))
    assert crack_ratio and speck_distance
    assert np.median(crack_ratio) < 0.7
    assert np.median(speck_distance) > 40


def test_regenerating_fewer_images_removes_the_stale_files(tmp_path: Path) -> None:
    generate_pills(tmp_path, seed=1, **SMALL)
    (tmp_path / "images" / "mine.png").write_bytes(b"kept")
    summary = generate_pills(tmp_path, seed=1, **(SMALL | {"num_images": 2}))
    assert sorted(p.name for p in (tmp_path / "labels").iterdir()) == [
        "pill_0000.png",
        "pill_0001.png",
    ]
    assert (tmp_path / "images" / "mine.png").exists()
    assert summary.num_images == 2


def test_summary_matches_the_files(tmp_path: Path) -> None:
    summary = generate_pills(tmp_path, seed=5, **SMALL)
    counts = np.stack([np.bincount(x.ravel(), minlength=3) for x in _labels(tmp_path)])
    assert summary.class_pixels == tuple(int(c) for c in counts.sum(axis=0))
    assert summary.class_images == tuple(int(c) for c in (counts > 0).sum(axis=0))
    assert summary.num_defect_free == int((counts[:, 1:] == 0).all(axis=1).sum()) == 3
    text = str(summary)
    assert all(name in text for name in CLASS_NAMES) and "6 images of 64x64" in text


@pytest.mark.parametrize("bad", [{"num_images": 0}, {"width": 8}, {"defect_free_fraction": 1.5}])
def test_invalid_arguments_are_refused(tmp_path: Path, bad: dict) -> None:
    with pytest.raises(ValueError):
        generate_pills(tmp_path, **(SMALL | bad))
    assert not (tmp_path / "images").exists()


def _stroke_width(label: np.ndarray, class_id: int) -> float:
    """Mean width of the class's strokes: 2 x area / perimeter (a long stroke of width w
    and length l has area w l and perimeter about 2 l)."""
    mask = (label == class_id).astype(np.uint8)
    contours, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    return 2 * float(mask.sum()) / sum(cv2.arcLength(c, True) for c in contours)


def test_defect_scale_draws_hairlines_and_pits_on_large_images() -> None:
    """The large-image parameter set: pills scale with the image, defects keep 256-px sizes."""
    from segcore.data.pills import render_pill_image

    found = {CRACK: [], CONTAMINATION: []}
    for i in range(6):
        _, big = render_pill_image(np.random.default_rng([11, i]), 768, 768)
        _, thin = render_pill_image(np.random.default_rng([11, i]), 768, 768, defect_scale=1.0)
        for cid in found:
            if (thin == cid).any():
                found[cid].append(
                    (_stroke_width(big, cid), _stroke_width(thin, cid), (thin == cid).mean())
                )
    assert found[CRACK] and found[CONTAMINATION]
    for wide, hair, share in found[CRACK]:
        # Drawn 2-3 px thick (the estimate reads ~1.5 px more on jagged 8-connected lines)
        # instead of 6-9 px.
        assert hair <= 5.0 and wide >= 2 * hair
        assert share < 0.01  # of the pixels: a rare class
    for wide, pit, _ in found[CONTAMINATION]:
        assert pit < wide and pit <= 8.0
