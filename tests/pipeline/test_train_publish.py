"""Bundles are staged while training runs and published when it ends; replacing a bundle
leaves the old or the new one whole, and no leftovers."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers.training import tiny_params

from segcore.model.bundle import load_bundle
from segcore.train.bundles import STAGING_DIR
from segcore.train.loop import TrainResult, train_model


class Interrupt(Exception):
    """Stands for a kill: raised out of the loop after some epoch."""


class StopAfter:
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_start(self, info: dict[str, Any]) -> None:
        pass

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        if epoch >= self.epoch:
            raise Interrupt

    def on_train_end(self, result: TrainResult) -> None:
        pass


def _weights(bundle: Path) -> dict[str, torch.Tensor]:
    return load_bundle(bundle)[0].state_dict()


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_an_interrupted_run_leaves_the_published_bundles_alone(
    pills_preprocessed: Path, tmp_path: Path
) -> None:
    out = tmp_path / "models"
    leftovers = [out / ".best.tmp-dead", out / ".final.old-dead"]
    for left in leftovers:  # interrupted writes of an earlier run
        left.mkdir(parents=True)
    (out / ".checkpoint.x1y2.tmp.pt").write_bytes(b"half")
    train_model(pills_preprocessed, tiny_params(tmp_path, num_epochs=2))
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []
    before = {n: _weights(out / n) for n in ("best", "final")}
    assert not (out / STAGING_DIR).exists()

    other = tiny_params(tmp_path, num_epochs=3, seed=99)
    with pytest.raises(Interrupt):
        train_model(pills_preprocessed, other, callbacks=[StopAfter(2)])
    for name, weights in before.items():  # untouched by the interrupted run
        assert _same(_weights(out / name), weights), name
    assert (out / STAGING_DIR / "best").is_dir()

    result = train_model(pills_preprocessed, other, resume=True)
    assert list(result.history["epoch"]) == [1, 2, 3]
    assert not _same(_weights(out / "final"), before["final"])
    assert result.bundles["final"] == out / "final"
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []


def test_replace_dir_swaps_whole_folders_and_cleans_leftovers(tmp_path: Path) -> None:
    from segcore.common.io import exchange_paths, make_temp_dir, replace_dir

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (a / "f").write_text("a"), (b / "f").write_text("b")
    assert exchange_paths(a, b)  # Linux: renameat2(RENAME_EXCHANGE)
    assert (a / "f").read_text() == "b" and (b / "f").read_text() == "a"

    dst = tmp_path / "best"
    dst.mkdir()
    (dst / "f").write_text("old")
    for left in (".best.tmp-dead", ".best.old-dead"):
        (tmp_path / left).mkdir()
    new = make_temp_dir(dst)
    assert not (tmp_path / ".best.tmp-dead").exists()
    assert not (tmp_path / ".best.old-dead").exists()
    (new / "f").write_text("new")
    replace_dir(new, dst)
    assert (dst / "f").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "best"]


def test_atomic_writes_follow_the_umask(tmp_path: Path) -> None:
    from segcore.annotations.write import staged_folder
    from segcore.common.io import write_text_atomic

    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "x.json", "{}")
        with staged_folder(tmp_path / "labels", overwrite=False) as folder:
            (folder / "a.png").write_bytes(b"")
        os.umask(0o027)
        write_text_atomic(tmp_path / "y.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "x.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "labels").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "y.json").stat().st_mode) == 0o640
