"""`segcore plan` through the real command line: the printed plan and diff, `--write`
(params.yaml updated where the plan changes it and nowhere else, comments kept, keys this
version lacks left out), and bad input."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import yaml
from helpers.cli import run_segcore

from segcore.data.dldataset import DLDataset

ROOT = Path(__file__).resolve().parents[2]
FAST = ("--measure-seconds", "0.2")


def _project(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    return tmp_path


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _block(text: str, title: str) -> dict[str, Any]:
    """The ``  key: old -> new`` (or ``  key: new``) lines under ``title``, new values parsed."""
    lines = text.split(title, 1)[1].splitlines()[1:] if title in text else []
    out = {}
    for line in lines:
        m = re.match(r"  (\S+): (.*)$", line)
        if not m:
            break
        out[m[1]] = yaml.safe_load(m[2].split(" -> ")[-1])
    return out


def _comments(text: str) -> list[str]:
    """The comments of the file, but those on list items (they go with a replaced list)."""
    lines = [line for line in text.splitlines() if "#" in line]
    return sorted(
        line.split("#", 1)[1].strip() for line in lines if not line.lstrip().startswith("- ")
    )


def test_plan_prints_reasons_and_the_diff_and_writes_nothing(
    tmp_path: Path, pills_split: Path
) -> None:
    project = _project(tmp_path)
    before = (project / "params.yaml").read_text()
    proc = run_segcore("plan", "--dataset", pills_split, "--budget", "900", *FAST, cwd=project)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "Fingerprint: measuring defect sizes in" in proc.stderr  # progress of the pass
    assert "14 samples" not in out and "24 samples" in out  # the fixture's 24 pills
    assert "images 96x96" in out and "contamination" in out and "crack" in out
    assert "Machine: CPU" in out or "Machine: NVIDIA" in out or "GiB" in out
    assert "ms per training sample" in out
    assert "Plan for 900 s of training" in out
    for topic in ("input size", "batch size", "epochs", "time budget", "learning rate"):
        assert f"  {topic}: " in out
    for topic in ("class weights", "loss", "augmentation"):
        assert f"  {topic}: " in out
    assert out.count("    because ") >= 9  # every choice has its reason
    # 96 x 96 pills: no shrinking needed, square, so resize and 90-degree rotations.
    assert "preprocess.param.mode = resize" in out
    assert "preprocess.param.image_width = 96, preprocess.param.image_height = 96" in out
    assert "train.augmentation.rotate = 90" in out
    assert "Changes to params.yaml:" in out
    assert (project / "params.yaml").read_text() == before


def test_plan_write_changes_exactly_the_planned_keys_and_keeps_comments(
    tmp_path: Path, pills_split: Path
) -> None:
    project = _project(tmp_path)
    before = (project / "params.yaml").read_text()
    proc = run_segcore(
        "plan", "--dataset", pills_split, "--budget", "900", "--write", *FAST, cwd=project
    )
    assert proc.returncode == 0, proc.stderr
    changes = _block(proc.stdout, "Changes to params.yaml:")
    missing = _block(proc.stdout, "not supported by this version (not written):")
    assert changes, proc.stdout
    assert f"Written to params.yaml: {len(changes)} keys" in proc.stdout
    after = (project / "params.yaml").read_text()
    old, new = _flat(yaml.safe_load(before)), _flat(yaml.safe_load(after))
    differing = {k for k in old.keys() | new.keys() if old.get(k, "?") != new.get(k, "?")}
    assert differing == set(changes)  # nothing else changed
    for key, value in changes.items():
        assert new[key] == value
    for key in missing:  # keys this version does not have are never written
        assert key not in new
    assert _comments(after) == _comments(before)
    assert "# segcore parameters: one section per stage" in after


def test_plan_without_a_split_names_the_key_and_the_fix(tmp_path: Path, pills_split: Path) -> None:
    project = _project(tmp_path)
    ds = DLDataset.load(pills_split)
    unsplit = ds.with_samples(ds.samples.drop(columns=["split"]))
    unsplit.save(project / "dataset.parquet")
    proc = run_segcore("plan", "--dataset", "dataset.parquet", *FAST, cwd=project)
    assert proc.returncode == 2
    assert "dataset.parquet has no split" in proc.stderr
    assert "--dataset" in proc.stderr and "segcore split" in proc.stderr
    assert "Traceback" not in proc.stderr

    proc = run_segcore("plan", *FAST, cwd=project)  # preprocess.dataset does not exist
    assert proc.returncode == 2
    assert "data/dataset/split.parquet: dataset file not found (preprocess.dataset)" in (
        proc.stderr.replace("\n", " ")
    )
    assert "Traceback" not in proc.stderr


def test_plan_refuses_a_budget_too_short_for_one_epoch(tmp_path: Path, pills_split: Path) -> None:
    project = _project(tmp_path)
    before = (project / "params.yaml").read_text()
    proc = run_segcore(
        "plan", "--dataset", pills_split, "--budget", "5", "--write", *FAST, cwd=project
    )
    assert proc.returncode == 2
    err = proc.stderr.replace("\n", " ")
    assert "--budget 5 s is too short for one epoch" in err and "give --budget" in err
    assert "Traceback" not in proc.stderr
    assert (project / "params.yaml").read_text() == before

    proc = run_segcore("plan", "--dataset", pills_split, "--budget", "0", *FAST, cwd=project)
    assert proc.returncode == 2 and "(> 0)" in proc.stderr
