"""Tiles streamed from sample files: the rare-class share of an epoch, tiles centred on
rare pixels, padding of tiles larger than the image, the validation grid, the plan's
independence from anything but the seeds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from segcore.common.constants import IGNORE_INDEX
from segcore.common.errors import DatasetError
from segcore.data.dldataset import DLDataset
from segcore.data.samples import INFO_KEY, save_sample
from segcore.train.tiles import (
    TileDataset,
    TileRequest,
    grid_requests,
    index_split,
    plan_epoch,
    rare_classes,
    read_batches,
    tiles_per_sample,
)

CLASS_IDS = [0, 1, 2]
TILE = (32, 32)
PITS = {0: (40, 50), 3: (70, 20)}
"""Samples with a 3 x 3 pit of class 1 centred at (row, col)."""


def _labels(n: int, size: tuple[int, int]) -> list[np.ndarray]:
    out = []
    for i in range(n):
        label = np.zeros(size, np.uint16)
        if i in PITS:
            r, c = PITS[i]
            label[r - 1 : r + 2, c - 1 : c + 2] = 1
        if i == 5:
            label[60, 10:90] = 2  # a hairline, one pixel high
        out.append(label)
    return out


def _dataset(root: Path, n: int = 6, size: tuple[int, int] = (96, 128)) -> DLDataset:
    """``n`` train sample files written directly: image = row * 1000 + column (channel 0)."""
    rows, cols = np.mgrid[0 : size[0], 0 : size[1]]
    image = np.stack([rows * 1000.0 + cols, -rows, cols]).astype(np.float32)
    files = []
    for i, label in enumerate(_labels(n, size)):
        weight = np.where(label > 0, 5.0, 1.0).astype(np.float32)
        counts = [int((label == c).sum()) for c in CLASS_IDS]
        info = json.dumps({"class_counts": counts, "split": "train"})
        name = f"{i:06d}.safetensors"
        save_sample(root / name, image + i, label, weight, {INFO_KEY: info})
        files.append(name)
    df = pd.DataFrame(
        {
            "image_id": range(n),
            "image_file_name": files,
            "segmentation_file_name": files,
            "split": "train",
            "sample_file_name": files,
        }
    )
    return DLDataset(df, root, root, ["good", "pit", "line"], CLASS_IDS, sample_dir=root)


@pytest.fixture
def ds(tmp_path: Path) -> DLDataset:
    return _dataset(tmp_path)


def _tiles(ds: DLDataset, share: float, epochs: int, seed: int = 0):
    index = index_split(ds, "train", with_weights=True)
    reader = TileDataset((index, index), TILE, CLASS_IDS, [])
    rare = rare_classes(index.counts, CLASS_IDS, [0])
    g = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        plan = plan_epoch(
            index, TILE, g, seed, epoch, rare=rare, class_ids=CLASS_IDS, foreground_share=share
        )
        for req in plan:
            yield req, reader[req]


def test_an_epoch_covers_the_pixels_once_and_the_rare_share_is_kept(ds: DLDataset) -> None:
    index = index_split(ds, "train", with_weights=True)
    assert tiles_per_sample(index.sizes, TILE).tolist() == [12] * 6  # 3 x 4 tiles of 32
    assert rare_classes(index.counts, CLASS_IDS, [0]) == [1, 2]

    share = 0.4
    tiles = list(_tiles(ds, share, epochs=5))
    assert len(tiles) == 5 * 72
    centred = [req.class_id >= 0 for req, _ in tiles]
    assert sum(centred) == 5 * round(share * 72)  # exactly the share in every epoch
    has_rare = [bool(((y == 1) | (y == 2)).any()) for _, (_, y, _) in tiles]
    assert all(h for h, c in zip(has_rare, centred, strict=True) if c)
    # Random tiles hit a rare class now and then (the hairline crosses a sample).
    by_chance = np.mean([bool((y > 0).any()) for _, (_, y, _) in _tiles(ds, 0.0, epochs=5)])
    assert by_chance < 0.2
    expected = share + (1 - share) * by_chance
    assert share <= np.mean(has_rare) <= expected + 0.05


def test_foreground_tiles_are_centred_on_their_class(ds: DLDataset) -> None:
    centred = [(req, y) for req, (_, y, _) in _tiles(ds, 0.5, epochs=2) if req.class_id >= 0]
    assert {req.class_id for req, _ in centred} == {1, 2}  # each rare class drawn
    for req, y in centred:
        assert y[TILE[0] // 2, TILE[1] // 2] == req.class_id  # class index = class id here
        if req.class_id == 1:
            assert req.sample in PITS


def test_tiles_carry_the_sample_pixels_and_the_plan_depends_only_on_the_seeds(
    ds: DLDataset,
) -> None:
    first = list(_tiles(ds, 0.3, epochs=2, seed=4))
    again = list(_tiles(ds, 0.3, epochs=2, seed=4))
    other = list(_tiles(ds, 0.3, epochs=2, seed=5))
    assert [r for r, _ in first] == [r for r, _ in again]
    assert [r for r, _ in first] != [r for r, _ in other]
    for req, (x, y, w) in first[:20]:
        # image channel 0 is row * 1000 + column + sample: find the tile's corner from it
        row, col = divmod(int(x[0, 0, 0].item()) - req.sample, 1000)
        assert 0 <= row <= 96 - 32 and 0 <= col <= 128 - 32
        label = _labels(6, (96, 128))[req.sample][row : row + 32, col : col + 32]
        np.testing.assert_array_equal(y.numpy(), label)
        np.testing.assert_array_equal(w.numpy(), np.where(label > 0, 5.0, 1.0))


def test_a_tile_larger_than_the_image_is_padded_with_ignore(tmp_path: Path) -> None:
    small = _dataset(tmp_path, n=1, size=(20, 24))
    index = index_split(small, "train", with_weights=True)
    reader = TileDataset((index, index), TILE, CLASS_IDS, [])
    for u in (0.0, 0.5, 0.999):
        x, y, w = reader[TileRequest(0, 0, False, 0, 0, -1, u, u)]
        inside = y != IGNORE_INDEX
        assert inside.sum() == 20 * 24 and x.shape == (3, 32, 32)
        rows, cols = inside.nonzero(as_tuple=True)
        r0, c0 = int(rows.min()), int(cols.min())
        assert x[0, r0, c0] == 0.0 and x[0, r0 + 19, c0 + 23] == 19 * 1000 + 23
        assert (w[~inside] == 0).all() and (x[:, ~inside] == 0).all()


def test_the_validation_grid_covers_every_pixel_once(ds: DLDataset) -> None:
    odd = _dataset(ds.sample_dir.parent / "odd", n=2, size=(70, 45))
    index = index_split(odd, "train", with_weights=True)
    reader = TileDataset((index, index), TILE, CLASS_IDS, [])
    requests = grid_requests(index, TILE, split=0)
    assert len(requests) == 2 * 3 * 2  # ceil(70 / 32) x ceil(45 / 32) per sample
    covered = [np.zeros((70, 45), int) for _ in range(2)]
    for req in requests:
        x, y, _ = reader[req]
        inside = (y != IGNORE_INDEX).numpy()
        rows, cols = np.nonzero(inside)
        covered[req.sample][rows + req.row, cols + req.col] += 1
        np.testing.assert_array_equal(
            x[0].numpy()[inside], (rows + req.row) * 1000.0 + cols + req.col + req.sample
        )
    assert all((c == 1).all() for c in covered)


def test_reader_processes_return_batches_in_order_and_report_a_lost_file(ds: DLDataset) -> None:
    index = index_split(ds, "train", with_weights=True)
    reader = TileDataset((index, index), TILE, CLASS_IDS, [])
    batches = [[TileRequest(0, s, True, 32, 64, -1, 0.0, 0.0)] * 2 for s in (3, 1, 4)]
    got = [int(x[0, 0, 0, 0]) for x, _, _ in read_batches(reader, batches, 2, False)]
    assert got == [32 * 1000 + 64 + s for s in (3, 1, 4)]
    Path(index.paths[4]).unlink()
    with pytest.raises(DatasetError) as err:
        list(read_batches(reader, batches, 2, False))
    assert str(err.value).startswith(f"{index.paths[4]}: not a readable preprocessed sample")
    assert "Traceback" not in str(err.value)
