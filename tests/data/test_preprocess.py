"""The preprocess stage on tiny real files: outputs, class weights, idempotency, bad input,
interruption and resume, workers, the command line."""

from __future__ import annotations

import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers.cli import run_segcore

from segcore.common.errors import DatasetError, ParamsError
from segcore.common.images import read_image, write_image_atomic
from segcore.common.parallel import WorkerPool
from segcore.data.dldataset import DLDataset
from segcore.data.samples import load_sample
from segcore.params import ClassWeightParams, PreprocessParams
from segcore.preprocess.class_weights import calculate_class_weights
from segcore.preprocess.jobs import stored_info
from segcore.preprocess.stage import preprocess_dataset, preprocess_samples, run_preprocess

CLASS_IDS = [0, 1, 2]
SPLITS = ["train", "train", "validation", "train", "test", "train", "validation", "train"]
PARAM = PreprocessParams(image_width=24, image_height=16)


def make_dataset(root: Path, n: int = 8, size: tuple[int, int] = (30, 40)) -> DLDataset:
    """``n`` image/label PNG pairs (RGB 8-bit, the last one grey 16-bit) and their dataset."""
    rng = np.random.default_rng(0)
    h, w = size
    rows = []
    for i in range(n):
        if i == n - 1:
            image = rng.integers(0, 65536, (h, w), dtype=np.uint16)
        else:
            image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        label = np.zeros((h, w), np.uint8)
        label[2 : 6 + i, 3:12] = 1
        if i % 2:
            label[h - 5 :, w - 9 :] = 2
        write_image_atomic(root / "images" / f"img_{i}.png", image)
        write_image_atomic(root / "labels" / f"img_{i}.png", label)
        rows.append(
            {
                "image_id": i,
                "image_file_name": f"img_{i}.png",
                "segmentation_file_name": f"img_{i}.png",
                "image_width": w,
                "image_height": h,
                "split": SPLITS[i % len(SPLITS)],
            }
        )
    return DLDataset(
        pd.DataFrame(rows),
        root / "images",
        root / "labels",
        ["good", "contamination", "crack"],
        CLASS_IDS,
    )


def file_states(folder: Path) -> dict[str, tuple[int, int]]:
    """name -> (inode, mtime_ns) of every file below ``folder``: any rewrite changes it."""
    return {
        str(p.relative_to(folder)): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def ds(tmp_path: Path) -> DLDataset:
    return make_dataset(tmp_path / "raw")


# --------------------------------------------------------------------------- outputs


def test_outputs(ds: DLDataset, tmp_path: Path) -> None:
    out = tmp_path / "pre"
    result = preprocess_dataset(ds, PARAM, out, workers=1)
    assert sorted(p.name for p in (out / "samples").iterdir()) == [
        f"{i:06d}.safetensors" for i in range(8)
    ]
    loaded = DLDataset.load(out / "dataset.parquet")
    assert loaded.sample_dir == (out / "samples").resolve()
    assert loaded.preprocess_param == PARAM.model_dump()
    assert loaded.samples["sample_file_name"].tolist() == [f"{i:06d}.safetensors" for i in range(8)]
    assert loaded.image_dir == ds.image_dir.resolve()
    assert result.class_weights == loaded.class_weights

    train_labels = []
    for row in loaded.samples.itertuples():
        s = load_sample(loaded.sample_dir / row.sample_file_name)
        assert s["image"].shape == (3, 16, 24) and s["image"].dtype == np.float32
        assert s["label"].shape == (16, 24) and s["label"].dtype == np.uint16
        assert set(np.unique(s["label"]).tolist()) <= set(CLASS_IDS)
        assert ("weight" in s) == (row.split == "train")
        if row.split == "train":
            train_labels.append(s["label"])
            expected = np.asarray(loaded.class_weights, np.float32)[s["label"]]
            assert np.array_equal(s["weight"], expected)
    # HALCON's formula on the train split's preprocessed labels
    weights = calculate_class_weights(train_labels, CLASS_IDS)
    assert loaded.class_weights == pytest.approx(weights.tolist(), rel=1e-12)
    assert loaded.class_weights[0] == 1.0 and loaded.class_weights[2] > loaded.class_weights[1] > 1


def test_training_and_inference_preprocessing_are_identical(ds: DLDataset, tmp_path: Path) -> None:
    param = PreprocessParams(image_width=20, image_height=20, normalization_type="all_channels")
    result = preprocess_dataset(ds, param, tmp_path / "pre", workers=1)
    images = [read_image(ds.image_dir / f) for f in ds.samples["image_file_name"]]
    batch = preprocess_samples(images, param)
    for i, name in enumerate(result.samples["sample_file_name"]):
        assert np.array_equal(batch[i], load_sample(result.sample_dir / name)["image"])


def test_background_merging_and_user_weights(ds: DLDataset, tmp_path: Path) -> None:
    param = PARAM.model_copy(update={"set_background_id": 0, "class_ids_background": [2]})
    result = run_preprocess(
        ds, param, tmp_path / "pre", class_weights=ClassWeightParams(max_weight=3.0), workers=1
    )
    assert result.train_pixels[2] == 0 and result.dataset.class_weights[2] == 0.0
    assert result.dataset.class_weights[1] == 3.0  # clipped
    for name in result.dataset.samples["sample_file_name"]:
        assert 2 not in load_sample(result.dataset.sample_dir / name)["label"]
    user = ClassWeightParams(weights=[1.0, 4.0, 9.0])
    again = preprocess_dataset(ds, PARAM, tmp_path / "pre", class_weights=user, workers=1)
    assert again.class_weights == [1.0, 4.0, 9.0]
    s = load_sample(again.sample_dir / "000001.safetensors")
    assert set(np.unique(s["weight"]).tolist()) == {1.0, 4.0, 9.0}


# --------------------------------------------------------------------------- idempotency


def test_rerun_rewrites_nothing_and_overwrite_rewrites_all(ds: DLDataset, tmp_path: Path) -> None:
    out = tmp_path / "pre"
    run_preprocess(ds, PARAM, out, workers=1)
    before = file_states(out)
    again = run_preprocess(ds, PARAM, out, workers=1)
    assert (again.written, again.skipped, again.removed) == (0, 8, 0)
    assert file_states(out) == before
    forced = run_preprocess(ds, PARAM, out, workers=1, overwrite=True)
    assert forced.written == 8
    after = file_states(out)
    assert all(after[name] != before[name] for name in before if name.startswith("samples"))


def test_changed_inputs_are_redone(ds: DLDataset, tmp_path: Path) -> None:
    out = tmp_path / "pre"
    run_preprocess(ds, PARAM, out, workers=1)
    before = file_states(out / "samples")

    # A new image for sample 2 (validation): only that sample is redone.
    write_image_atomic(ds.image_dir / "img_2.png", np.full((30, 40, 3), 7, np.uint8))
    r = run_preprocess(ds, PARAM, out, workers=1)
    now = file_states(out / "samples")
    assert r.written == 1 and [n for n in now if now[n] != before[n]] == ["000002.safetensors"]

    # A changed train label changes the class weights: every train sample is redone.
    label = np.zeros((30, 40), np.uint8)
    label[:20] = 2
    write_image_atomic(ds.segmentation_dir / "img_0.png", label)
    r = run_preprocess(ds, PARAM, out, workers=1)
    changed = {n for n, s in file_states(out / "samples").items() if s != now[n]}
    train = {f"{i:06d}.safetensors" for i, s in enumerate(SPLITS) if s == "train"}
    assert changed == train and r.written == len(train)

    # New params redo everything; a sample gone from the dataset loses its file.
    smaller = ds.with_samples(ds.samples[ds.samples["image_id"] != 4])
    r = run_preprocess(smaller, PARAM.model_copy(update={"image_width": 12}), out, workers=1)
    assert (r.written, r.removed) == (7, 1)
    assert not (out / "samples" / "000004.safetensors").exists()
    assert load_sample(out / "samples" / "000000.safetensors")["image"].shape == (3, 16, 12)


def test_workers_write_identical_files(ds: DLDataset, tmp_path: Path) -> None:
    preprocess_dataset(ds, PARAM, tmp_path / "one", workers=1)
    preprocess_dataset(ds, PARAM, tmp_path / "two", workers=2)
    for p in sorted((tmp_path / "one").rglob("*.*")):
        assert p.read_bytes() == (tmp_path / "two" / p.relative_to(tmp_path / "one")).read_bytes()


def _pid(job: int) -> int:
    return os.getpid()


def test_one_worker_runs_here_unless_told_to_use_its_process() -> None:
    with WorkerPool(1) as pool:
        assert set(pool.map(_pid, [1, 2], "here")) == {os.getpid()}
    with WorkerPool(1, in_process=False) as pool:
        (worker,) = set(pool.map(_pid, [1, 2, 3], "there"))
    assert worker != os.getpid()


def test_workers_keep_freed_memory_on_glibc() -> None:
    # In a fresh process: the setting is process-wide, and pytest's process is not a worker.
    code = "from segcore.preprocess.jobs import keep_freed_memory; print(keep_freed_memory())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(platform.libc_ver()[0] == "glibc")


# --------------------------------------------------------------------------- bad input


def _bad_label(ds: DLDataset) -> DLDataset:
    label = np.zeros((30, 40), np.uint8)
    label[0, :3] = (5, 9, 1)
    write_image_atomic(ds.segmentation_dir / "img_3.png", label)
    return ds


@pytest.mark.parametrize(
    "make_bad,error,message",
    [
        (lambda d: d.with_samples(d.samples.drop(columns="split")), DatasetError, "no split"),
        (_bad_label, DatasetError, r"img_3.png: label values \[5, 9\]"),
        (
            lambda d: d.with_samples(d.samples.assign(domain_roi=[[0, 0, 29, 40]] * len(d))),
            DatasetError,
            r"img_0.png: region of interest \[0, 0, 29, 40\] lies outside",
        ),
        (lambda d: d, ParamsError, "set_background_id 5 is not one of"),
        (lambda d: d, ParamsError, "weights has 2 values"),
    ],
    ids=["no-split", "label-values", "roi-outside", "background-id", "user-weights"],
)
def test_bad_input_is_reported_and_nothing_written(
    ds: DLDataset, tmp_path: Path, make_bad, error: type, message: str
) -> None:
    param = PARAM.model_copy(update={"domain_handling": "crop_domain", "domain_roi": [0, 0, 9, 9]})
    weights = ClassWeightParams()
    if "background" in message:
        param = PARAM.model_copy(update={"set_background_id": 5, "class_ids_background": [1]})
    if "weights" in message:
        weights = ClassWeightParams(weights=[1.0, 2.0])
    out = tmp_path / "pre"
    with pytest.raises(error, match=message):
        preprocess_dataset(make_bad(ds), param, out, class_weights=weights, workers=1)
    assert not out.exists()


# --------------------------------------------------------------------------- interruption


def test_failed_run_resumes_where_it_stopped(ds: DLDataset, tmp_path: Path) -> None:
    out = tmp_path / "pre"
    good = (ds.image_dir / "img_5.png").read_bytes()
    (ds.image_dir / "img_5.png").write_bytes(b"not a png")  # found when decoding, pass 2
    with pytest.raises(DatasetError, match=r"img_5\.png"):
        preprocess_dataset(ds, PARAM, out, workers=1)
    assert not (out / "dataset.parquet").exists()  # no table claims completeness
    done = file_states(out / "samples")
    assert len(done) == 7
    (ds.image_dir / "img_5.png").write_bytes(good)
    r = run_preprocess(ds, PARAM, out, workers=1)
    assert (r.written, r.skipped) == (1, 7)
    assert {n: s for n, s in file_states(out / "samples").items() if n in done} == done


KILL_SCRIPT = """
import sys
from segcore.data.dldataset import DLDataset
from segcore.params import PreprocessParams
from segcore.preprocess.stage import preprocess_dataset
preprocess_dataset(DLDataset.load(sys.argv[1]), PreprocessParams(image_width=96, image_height=96),
                   sys.argv[2], workers=1)
"""


def test_kill_leaves_no_half_written_file(tmp_path: Path) -> None:
    ds = make_dataset(tmp_path / "raw", n=40, size=(200, 200))
    table = ds.save(tmp_path / "split.parquet")
    out = tmp_path / "pre"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, str(table), str(out)],
        env={**os.environ, "SEGCORE_PROGRESS": "0"},
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list((out / "samples").glob("0*.safetensors"))) >= 3:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    proc.wait()
    for p in (out / "samples").glob("0*.safetensors"):
        load_sample(p)  # complete and readable
        assert stored_info(p)["sample_hash"]
    if proc.returncode == -signal.SIGKILL:
        assert not (out / "dataset.parquet").exists()
    (out / "samples" / ".000001.x1y2.tmp.safetensors").write_bytes(b"half")  # a killed write
    leftovers = list((out / "samples").glob(".*"))  # this one, maybe one from the kill
    kept = file_states(out / "samples")
    r = run_preprocess(ds, PreprocessParams(image_width=96, image_height=96), out, workers=1)
    assert r.written + r.skipped == 40 and r.removed == len(leftovers)
    assert not list((out / "samples").glob(".*"))
    now = file_states(out / "samples")
    assert all(now[n] == s for n, s in kept.items() if not n.startswith("."))  # not redone
    assert DLDataset.load(out / "dataset.parquet").class_weights == r.dataset.class_weights


# --------------------------------------------------------------------------- command line


def test_cli(ds: DLDataset, tmp_path: Path) -> None:
    table = ds.save(tmp_path / "split.parquet")
    params = tmp_path / "params.yaml"
    params.write_text(
        yaml.safe_dump(
            {
                "preprocess": {
                    "dataset": str(table),
                    "out_dir": str(tmp_path / "pre"),
                    "param": {"image_width": 24, "image_height": 16},
                }
            }
        )
    )
    first = run_segcore("preprocess", "--params", params, "--workers", "1")
    assert first.returncode == 0, first.stderr
    assert "8 written" in first.stdout and "contamination" in first.stdout
    second = run_segcore("preprocess", "-p", params, "--out-dir", tmp_path / "pre")
    assert second.returncode == 0, second.stderr
    assert "0 written" in second.stdout
    bad = run_segcore("preprocess", "-p", params, "--workers", "-1", "--dataset", tmp_path / "x")
    assert bad.returncode == 2 and "--workers" in bad.stderr and "Traceback" not in bad.stderr


def test_pills_preprocessed_fixture(request: pytest.FixtureRequest) -> None:
    for module in ("segcore.data.synth", "segcore.data.read", "segcore.data.split"):
        pytest.importorskip(module)
    path = request.getfixturevalue("pills_preprocessed")
    ds = DLDataset.load(path)
    assert len(ds.class_weights) == len(ds.class_ids)
    s = load_sample(ds.sample_dir / ds.samples["sample_file_name"].iloc[0])
    assert s["image"].shape == (3, 64, 64)


def test_the_pixel_limit_applies_to_the_preprocess_reads(ds: DLDataset, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"above the limit .* raise dataset.max_image_pixels"):
        run_preprocess(
            ds, PreprocessParams(image_width=32, image_height=32), tmp_path, workers=1,
            max_image_pixels=100,
        )  # fmt: skip
    assert not (tmp_path / "dataset.parquet").exists()
