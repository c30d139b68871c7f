"""Tiles cut from sample files on disk: the index of a split, the epoch's tile plan, and
the ``torch.utils.data`` dataset that reads one tile.

The index holds a few numbers per sample (size, class pixel counts from the file header),
never pixels, so memory does not grow with the images. A tile is read through a memory
map of its sample file: only the pages it covers are touched.

Every random choice of an epoch is made here, in the training process, from seeded
generators (:func:`plan_epoch`): a tile request carries its sample, and either its corner
or the random numbers that place it. Where and by which worker process a tile is then
read changes nothing, so the result does not depend on the number of workers.

A tile that reaches beyond its sample (a tile larger than the image, or a grid tile at
the right or bottom edge) is padded: image 0, target ``IGNORE_INDEX``, weight 0, so the
padding takes no part in loss or measures.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from segcore.common.constants import COL_SAMPLE_FILE, COL_SPLIT, IGNORE_INDEX
from segcore.common.errors import DatasetError, Problems, SegcoreError
from segcore.data.dldataset import DLDataset
from segcore.data.samples import class_index_lut, map_sample, sample_header

_MAX_LISTED = 5


class TileRequest(NamedTuple):
    """One tile to read: sample ``sample`` of the split ``split`` (0 train, 1 validation).

    ``row``/``col`` >= 0 (or any value with ``fixed``) is the tile's top-left corner; else
    the tile is placed by ``u_row``/``u_col`` in [0, 1): at random, or, with ``class_id``
    >= 0, centred on the ``u_row``-th share of that class's pixels (clamped to the image).
    """

    split: int
    sample: int
    fixed: bool
    row: int
    col: int
    class_id: int
    u_row: float
    u_col: float


@dataclass(frozen=True)
class SplitIndex:
    """What streaming knows of one split without reading pixels.

    Attributes:
        paths: sample files, in the dataset's order.
        sizes: ``(N, 2)`` int64 ``(height, width)`` of every sample.
        counts: ``(N, K)`` int64 pixels per class id (``class_ids`` order) in each sample.
        channels: image channels (all samples share them).
        nbytes: bytes of the sample files together.
        unweighted: files without the weight image they need (``with_weights``).
        uncounted: files whose header lacks the class counts (their counts are 0).
    """

    paths: list[str]
    sizes: np.ndarray
    counts: np.ndarray
    channels: int
    nbytes: int
    unweighted: list[str]
    uncounted: list[str]

    def __len__(self) -> int:
        return len(self.paths)


def index_split(dataset: DLDataset, split: str, *, with_weights: bool) -> SplitIndex:
    """Read the headers of a split's sample files (see :class:`SplitIndex`).

    Raises:
        DatasetError: missing or unreadable files, channel counts that differ; all listed
            at once. Missing weight images are listed in the index, for the caller to report
            beside its own checks.
    """
    assert dataset.sample_dir is not None
    rows = dataset.samples[dataset.samples[COL_SPLIT] == split]
    paths = [str(Path(dataset.sample_dir) / name) for name in rows[COL_SAMPLE_FILE]]
    problems = Problems()
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        problems.add(
            f"{len(missing)} {split} sample files are missing ({listed(missing)}); "
            "run `segcore preprocess` again"
        )
        problems.raise_if_any(DatasetError)
    k = len(dataset.class_ids)
    sizes, counts = np.zeros((len(paths), 2), np.int64), np.zeros((len(paths), k), np.int64)
    channels, unweighted, uncounted = set(), [], []
    for i, path in enumerate(paths):
        shapes, info = sample_header(path)
        c, h, w = shapes["image"]
        sizes[i], channels = (h, w), channels | {c}
        if with_weights and "weight" not in shapes:
            unweighted.append(path)
        if len(info.get("class_counts", ())) != k:
            uncounted.append(path)
        else:
            counts[i] = info["class_counts"]
    if len(channels) > 1:
        problems.add(f"{split} samples have {sorted(channels)} channels; preprocess them again")
    problems.raise_if_any(DatasetError, f"the {split} split cannot be used for training")
    nbytes = sum(Path(p).stat().st_size for p in paths)
    channel = channels.pop() if channels else 0
    return SplitIndex(paths, sizes, counts, channel, nbytes, unweighted, uncounted)


def listed(names: list[str]) -> str:
    more = len(names) - _MAX_LISTED
    return ", ".join(names[:_MAX_LISTED]) + (f" and {more} more" if more > 0 else "")


# --------------------------------------------------------------------------- the plan


def tiles_per_sample(sizes: np.ndarray, tile: tuple[int, int]) -> np.ndarray:
    """``(N,)`` tiles that cover each sample once: ``ceil(H / th) * ceil(W / tw)``."""
    th, tw = tile
    return np.ceil(sizes[:, 0] / th).astype(np.int64) * np.ceil(sizes[:, 1] / tw).astype(np.int64)


def rare_classes(counts: np.ndarray, class_ids: list[int], background: list[int]) -> list[int]:
    """Indices (into ``class_ids``) of the classes tiles are centred on: those present in
    ``counts`` ``(N, K)`` except the ``background`` class indices."""
    total = counts.sum(axis=0)
    return [k for k in range(len(class_ids)) if total[k] > 0 and k not in background]


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of an epoch's tile placement: a pure function of the run's seed and the
    epoch, so a resumed run places tiles exactly as an uninterrupted one."""
    return (seed * 1_000_003 + epoch) % 2**63


def plan_epoch(
    index: SplitIndex,
    tile: tuple[int, int],
    generator: torch.Generator,
    seed: int,
    epoch: int,
    *,
    rare: list[int],
    class_ids: list[int],
    foreground_share: float,
) -> list[TileRequest]:
    """The epoch's training tiles, in order (see the module docstring).

    Each sample appears as often as tiles cover it once (:func:`tiles_per_sample`), in an
    order drawn from ``generator`` (a ``randperm`` of that many slots; with one tile per
    sample exactly the shuffle of in-memory training). ``round(foreground_share * n)``
    slots, drawn from the epoch's own generator, instead take a sample holding a rare
    class (one of ``rare``, uniformly) and are centred on one of its pixels.
    """
    per_sample = tiles_per_sample(index.sizes, tile)
    n = int(per_sample.sum())
    order = torch.randperm(n, generator=generator)
    samples = torch.repeat_interleave(torch.arange(len(index)), torch.from_numpy(per_sample))
    samples = samples[order].tolist()
    g = torch.Generator().manual_seed(epoch_seed(seed, epoch))
    u = torch.rand(n, 2, generator=g, dtype=torch.float64).tolist()
    cls = [-1] * n
    if rare and foreground_share > 0:
        slots = torch.randperm(n, generator=g)[: round(foreground_share * n)].tolist()
        pick_class = torch.randint(len(rare), (n,), generator=g).tolist()
        pick_sample = torch.rand(n, generator=g, dtype=torch.float64).tolist()
        holders = {k: np.flatnonzero(index.counts[:, k] > 0) for k in rare}
        for s in slots:
            k = rare[pick_class[s]]
            samples[s] = int(holders[k][int(pick_sample[s] * len(holders[k]))])
            cls[s] = class_ids[k]
    return [TileRequest(0, samples[i], False, 0, 0, cls[i], u[i][0], u[i][1]) for i in range(n)]


def grid_requests(index: SplitIndex, tile: tuple[int, int], split: int = 1) -> list[TileRequest]:
    """Non-overlapping tiles that cover every sample exactly once (padded at the right and
    bottom edges): validation on whole images."""
    th, tw = tile
    out = []
    for s, (h, w) in enumerate(index.sizes.tolist()):
        for row in range(0, h, th):
            out.extend(
                TileRequest(split, s, True, row, col, -1, 0.0, 0.0) for col in range(0, w, tw)
            )
    return out


# --------------------------------------------------------------------------- reading tiles


def _corner(size: int, tile: int, u: float) -> int:
    """A uniformly drawn first row (column) of a tile: in [size - tile, 0] when the tile is
    larger than the image, else in [0, size - tile]."""
    lo, hi = min(0, size - tile), max(0, size - tile)
    return lo + min(int(u * (hi - lo + 1)), hi - lo)


def _centred(size: int, tile: int, centre: int) -> int:
    """The first row (column) of a tile centred on ``centre``, kept inside the image."""
    lo, hi = min(0, size - tile), max(0, size - tile)
    return min(max(centre - tile // 2, lo), hi)


class TileDataset(torch.utils.data.Dataset):
    """Reads the tiles of :class:`TileRequest` s from the train and validation sample files.

    An item is ``(image (C, th, tw) float32, target (th, tw) int64 class indices, weight
    (th, tw) float32)``; validation tiles have an empty weight ``(0,)``.
    """

    def __init__(
        self,
        splits: tuple[SplitIndex, SplitIndex],
        tile: tuple[int, int],
        class_ids: list[int],
        ignore_class_ids: list[int],
    ) -> None:
        self.paths = (splits[0].paths, splits[1].paths)
        self.sizes = (splits[0].sizes, splits[1].sizes)
        self.channels = max(splits[0].channels, splits[1].channels)
        self.tile = tile
        self.lut = class_index_lut(class_ids, ignore_class_ids)

    def __len__(self) -> int:  # requests are built by the caller; no index range
        return sum(len(p) for p in self.paths)

    def __getitem__(self, req: TileRequest) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        th, tw = self.tile
        arrays = map_sample(self.paths[req.split][req.sample])
        h, w = (int(n) for n in self.sizes[req.split][req.sample])
        if req.fixed:
            row, col = req.row, req.col
        elif req.class_id >= 0:
            row, col = self._on_class(arrays["label"], req)
        else:
            row, col = _corner(h, th, req.u_row), _corner(w, tw, req.u_col)
        r0, r1, c0, c1 = max(row, 0), min(row + th, h), max(col, 0), min(col + tw, w)
        inside = (slice(r0 - row, r1 - row), slice(c0 - col, c1 - col))
        image = np.zeros((arrays["image"].shape[0], th, tw), np.float32)
        image[:, inside[0], inside[1]] = arrays["image"][:, r0:r1, c0:c1]
        target = np.full((th, tw), IGNORE_INDEX, np.int64)
        label = np.asarray(arrays["label"][r0:r1, c0:c1], dtype=np.int64)
        target[inside] = self._indices(label)
        if req.split == 0:
            weight = np.zeros((th, tw), np.float32)
            weight[inside] = arrays["weight"][r0:r1, c0:c1]
        else:
            weight = np.zeros(0, np.float32)
        return torch.from_numpy(image), torch.from_numpy(target), torch.from_numpy(weight)

    def _indices(self, label: np.ndarray) -> np.ndarray:
        out = np.full(label.shape, IGNORE_INDEX, np.int64)
        known = label < len(self.lut)
        out[known] = self.lut[label[known]]
        return out

    def _on_class(self, label: np.ndarray, req: TileRequest) -> tuple[int, int]:
        """The corner of a tile centred on the ``u_row``-th share of the class's pixels."""
        th, tw = self.tile
        h, w = label.shape
        where = np.flatnonzero(np.asarray(label).ravel() == req.class_id)
        if len(where) == 0:  # the header said otherwise: the file changed; place at random
            return _corner(h, th, req.u_row), _corner(w, tw, req.u_col)
        centre = int(where[min(int(req.u_row * len(where)), len(where) - 1)])
        return _centred(h, th, centre // w), _centred(w, tw, centre % w)


def worker_init(_: int) -> None:
    """A tile reader process: one torch thread (the processes are the parallelism)."""
    torch.set_num_threads(1)


def read_batches(
    dataset: TileDataset, batches: list[list[TileRequest]], workers: int, pin: bool
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The ``batches`` of requests as stacked tensors, in order, read by ``workers``
    processes beside the caller (0: in this process).

    Raises:
        SegcoreError: a sample file that cannot be read (deleted or damaged since training
            started), with segcore's message, not the reader process's traceback.
    """
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=workers if len(batches) > 1 else 0,
        worker_init_fn=worker_init if workers else None,
        pin_memory=pin,
        prefetch_factor=4 if workers and len(batches) > 1 else None,
    )
    try:
        yield from loader
    except SegcoreError as err:
        # The DataLoader re-raises a reader's error with its traceback in the message.
        text = str(err)
        if "Traceback" in text:
            text = text.rsplit(f"{type(err).__name__}: ", 1)[-1].strip()
        raise type(err)(text) from None


def grid_count(sizes: np.ndarray, tile: tuple[int, int]) -> int:
    """How many grid tiles cover the samples of ``sizes`` ``(N, 2)``."""
    return int(sum(math.ceil(h / tile[0]) * math.ceil(w / tile[1]) for h, w in sizes.tolist()))
