"""Where training batches come from: the splits in memory, or tiles streamed from disk.

:func:`make_feed` chooses (``train.data_loading``; ``auto``: in memory for resize-mode
splits up to :data:`IN_MEMORY_LIMIT` bytes, else streaming; tiled mode always streams)
and checks that training can use the splits. Both feeds answer the loop the same way:
an epoch's plan drawn from the run's generator, then batches for lists of positions in
that plan. With one tile per sample (resize mode) the streaming feed draws the very
shuffle of the in-memory one and returns the same batches, so both train identically.

An epoch of tiles: as many tiles as cover every train sample once
(``sum ceil(H / th) * ceil(W / tw)``), so an epoch sees about as many pixels as the train
split has; updates per epoch follow HALCON's ``floor(tiles / global batch)``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from segcore.common.constants import MODE_TILED, TRAIN, VALIDATION
from segcore.common.errors import DatasetError, ParamsError, Problems
from segcore.data.dldataset import DLDataset
from segcore.params import TrainParams
from segcore.train.data import SplitData, load_split
from segcore.train.tiles import (
    SplitIndex,
    TileDataset,
    TileRequest,
    grid_count,
    grid_requests,
    index_split,
    listed,
    plan_epoch,
    rare_classes,
    read_batches,
    tiles_per_sample,
)

log = logging.getLogger("segcore.train")

IN_MEMORY_LIMIT = 2 * 2**30
"""``data_loading: auto`` keeps resize-mode splits in memory up to this many bytes of
sample files (train and validation together); larger ones stream."""

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


@dataclass
class MemoryFeed:
    """The splits as tensors on the training device; a batch is an index gather."""

    train: SplitData
    val: SplitData
    kind: str = "memory"
    summary: str = ""
    """One line for the log: where the data come from and why."""

    @property
    def units(self) -> int:
        """Samples per epoch."""
        return len(self.train)

    @property
    def train_samples(self) -> int:
        return len(self.train)

    @property
    def val_samples(self) -> int:
        return len(self.val)

    @property
    def input_size(self) -> tuple[int, int, int]:
        return self.train.image_size

    @property
    def val_units(self) -> int:
        return len(self.val)

    def epoch_plan(self, generator: torch.Generator, epoch: int) -> Any:
        return torch.randperm(len(self.train), generator=generator)  # same on every rank

    def train_batches(self, plan: Any, positions: list[torch.Tensor]) -> Iterator[Batch]:
        assert self.train.weights is not None  # the train split always has weight images
        for pos in positions:
            idx = plan[pos]
            yield self.train.images[idx], self.train.targets[idx], self.train.weights[idx]

    def val_batches(self, rank: int, world: int, batch_size: int) -> Iterator[Batch]:
        mine = torch.arange(rank, len(self.val), world)
        for chunk in mine.split(batch_size):
            yield self.val.images[chunk], self.val.targets[chunk], torch.empty(0)


@dataclass
class StreamFeed:
    """Tiles read from the sample files by ``workers`` processes (see segcore.train.tiles)."""

    train_index: SplitIndex
    val_index: SplitIndex
    dataset: TileDataset
    tile: tuple[int, int]
    rare: list[int]
    class_ids: list[int]
    p: TrainParams
    share: float
    device: torch.device
    layout: torch.memory_format
    kind: str = "streaming"
    summary: str = ""
    """One line for the log: where the data come from and why."""

    @property
    def units(self) -> int:
        """Tiles per epoch."""
        return int(tiles_per_sample(self.train_index.sizes, self.tile).sum())

    @property
    def train_samples(self) -> int:
        return len(self.train_index)

    @property
    def val_samples(self) -> int:
        return len(self.val_index)

    @property
    def input_size(self) -> tuple[int, int, int]:
        return (self.train_index.channels, *self.tile)

    @property
    def val_units(self) -> int:
        return grid_count(self.val_index.sizes, self.tile)

    def epoch_plan(self, generator: torch.Generator, epoch: int) -> Any:
        return plan_epoch(
            self.train_index,
            self.tile,
            generator,
            self.p.seed,
            epoch,
            rare=self.rare,
            class_ids=self.class_ids,
            foreground_share=self.share,
        )

    def train_batches(self, plan: Any, positions: list[torch.Tensor]) -> Iterator[Batch]:
        batches = [[plan[i] for i in pos.tolist()] for pos in positions]
        yield from self._read(batches)

    def val_batches(self, rank: int, world: int, batch_size: int) -> Iterator[Batch]:
        mine = grid_requests(self.val_index, self.tile)[rank::world]
        yield from self._read([mine[i : i + batch_size] for i in range(0, len(mine), batch_size)])

    def _read(self, batches: list[list[TileRequest]]) -> Iterator[Batch]:
        cuda = self.device.type == "cuda"
        for x, y, w in read_batches(self.dataset, batches, self.p.loader_workers, cuda):
            x = x.to(self.device, non_blocking=cuda).contiguous(memory_format=self.layout)
            yield x, y.to(self.device, non_blocking=cuda), w.to(self.device, non_blocking=cuda)


Feed = MemoryFeed | StreamFeed


def make_feed(
    ds: DLDataset,
    p: TrainParams,
    where: str,
    device: torch.device,
    layout: torch.memory_format,
    global_batch: int,
    world_size: int,
) -> Feed:
    """The feed for this training, after checking that training can use the splits.

    Raises:
        DatasetError, ParamsError: every problem with the splits, at once.
    """
    pre = dict(ds.preprocess_param or {})
    ignore = [int(i) for i in pre.get("ignore_class_ids", [])]
    tiled = pre.get("mode") == MODE_TILED
    if tiled and p.data_loading == "memory":
        raise ParamsError(
            "train.data_loading is memory, but the dataset was preprocessed in tiled mode, "
            "whose samples differ in size and are cut into tiles; set it to auto or streaming"
        )
    problems = Problems()
    indices: dict[str, SplitIndex] = {}
    for name in (TRAIN, VALIDATION):
        try:
            indices[name] = index_split(ds, name, with_weights=name == TRAIN)
        except DatasetError as err:
            problems.extend(err.problems)
    problems.raise_if_any(DatasetError, "training cannot start")
    train, val = indices[TRAIN], indices[VALIDATION]
    nbytes = train.nbytes + val.nbytes
    memory = not tiled and (
        p.data_loading == "memory" or (p.data_loading == "auto" and nbytes <= IN_MEMORY_LIMIT)
    )
    tile = (int(pre.get("image_height", 0)), int(pre.get("image_width", 0)))
    if memory:
        feed: Feed = _memory_feed(ds, ignore, device, layout)
    else:
        feed = _stream_feed(ds, p, (train, val), tile, pre, ignore, device, layout, tiled)
    _check_feed(feed, p, where, global_batch, world_size)
    how = (
        "in memory"
        if memory
        else "streamed from disk "
        + (f"by {p.loader_workers} reader processes" if p.loader_workers else "in this process")
    )
    why = "tiled mode" if tiled else f"data_loading {p.data_loading}"
    feed.summary = (
        f"training data: {how} ({why}; {len(train)} train and {len(val)} validation samples, "
        f"{nbytes / 2**20:.1f} MB of sample files), {feed.units} "
        f"{'samples' if memory else 'tiles'} per epoch"
    )
    return feed


def _memory_feed(
    ds: DLDataset, ignore: list[int], device: torch.device, layout: torch.memory_format
) -> MemoryFeed:
    problems = Problems()
    splits: dict[str, SplitData] = {}
    for name in (TRAIN, VALIDATION):
        try:
            splits[name] = load_split(ds, name, with_weights=name == TRAIN, ignore_class_ids=ignore)
        except DatasetError as err:
            problems.extend(err.problems)
    problems.raise_if_any(DatasetError, "training cannot start")
    # On the training device and in the network's memory layout once: a batch is then
    # an index gather that keeps both, with no copy or conversion per step.
    train, val = (_to_device(splits[n], device, layout) for n in (TRAIN, VALIDATION))
    return MemoryFeed(train, val)


def _stream_feed(
    ds: DLDataset,
    p: TrainParams,
    splits: tuple[SplitIndex, SplitIndex],
    tile: tuple[int, int],
    pre: dict[str, Any],
    ignore: list[int],
    device: torch.device,
    layout: torch.memory_format,
    tiled: bool,
) -> StreamFeed:
    class_ids = [int(c) for c in ds.class_ids]
    train = splits[0]
    if not tiled:  # resize mode: every sample is one whole tile
        tile = (int(train.sizes[0][0]), int(train.sizes[0][1])) if len(train) else tile
    if train.unweighted:
        raise DatasetError(
            f"{len(train.unweighted)} train samples have no weight image "
            f"({listed(train.unweighted)}); run `segcore preprocess` with the split that marks "
            "them as train"
        )
    if tiled and p.foreground_share > 0 and train.uncounted:
        raise DatasetError(
            f"{len(train.uncounted)} train samples lack the class counts that place tiles on "
            f"rare classes ({listed(train.uncounted)}); run `segcore preprocess` again"
        )
    rare = rare_classes(train.counts, class_ids, _background(train, class_ids, pre, ignore))
    if tiled and p.foreground_share > 0 and not rare:
        log.info("no rare-class pixel in the train split: every tile lies at random")
    return StreamFeed(
        train_index=train,
        val_index=splits[1],
        dataset=TileDataset(splits, tile, class_ids, ignore),
        tile=tile,
        rare=rare,
        class_ids=class_ids,
        p=p,
        share=p.foreground_share if tiled else 0.0,
        device=device,
        layout=layout,
    )


def _background(
    train: SplitIndex, class_ids: list[int], pre: dict[str, Any], ignore: list[int]
) -> list[int]:
    """Class indices no tile is centred on: the ignore classes and the background
    (``set_background_id``, else the train split's most frequent class)."""
    out = [k for k, c in enumerate(class_ids) if c in ignore]
    bg = pre.get("set_background_id")
    if bg is not None and int(bg) in class_ids:
        out.append(class_ids.index(int(bg)))
    elif len(train):
        totals = train.counts.sum(axis=0)
        totals[out] = -1
        out.append(int(totals.argmax()))
    return out


def _check_feed(feed: Feed, p: TrainParams, where: str, global_batch: int, world: int) -> None:
    problems = Problems()
    what = "samples" if isinstance(feed, MemoryFeed) else "tiles per epoch"
    if feed.units == 0:
        problems.add(
            f"{where}: the train split is empty; run `segcore split` with training_percent > 0"
        )
    elif feed.units < global_batch:
        problems.add(
            f"the train split has {feed.units} {what}, fewer than one update takes "
            f"(batch_size {p.batch_size} x batch_size_multiplier {p.batch_size_multiplier} x "
            f"{world} processes = {global_batch}); lower train.batch_size"
        )
    if feed.val_units == 0 and p.early_stopping_patience is not None:
        problems.add(
            f"{where}: the validation split is empty, so train.early_stopping_patience has "
            "nothing to compare; split with validation_percent > 0 or set it to null"
        )
    if feed.val_units == 0 and "best" in p.serialization_strategies:
        problems.add(
            f"{where}: the validation split is empty, so the 'best' model cannot be chosen; "
            "split with validation_percent > 0 or remove 'best' from serialization_strategies"
        )
    _, h, w = feed.input_size
    if (
        feed.units
        and p.augmentation.rotate == 90
        and h != w
        and p.augmentation.augmentation_percentage
    ):
        problems.add(
            f"train.augmentation.rotate 90 needs square inputs, the samples are {w}x{h}; "
            "set it to 180 or 0"
        )
    problems.raise_if_any(DatasetError, "training cannot start")


def _to_device(data: SplitData, device: torch.device, layout: torch.memory_format) -> SplitData:
    return SplitData(
        images=data.images.to(device).contiguous(memory_format=layout),
        targets=data.targets.to(device),
        weights=None if data.weights is None else data.weights.to(device),
    )
