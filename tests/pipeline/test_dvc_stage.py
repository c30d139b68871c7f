"""segcore.pipeline.dvc_stage on a small real DVC repository whose stages are plain Python functions.

The stage commands are tiny Python scripts, so `dvc repro` and the in-process runner can be
compared on the same repository; no model is trained here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from segcore.pipeline.dvc_stage import (
    PipelineBusyError,
    PipelineDefinitionError,
    open_pipeline,
)

SCRIPT = """
import json, os, sys, yaml

def make():
    n = yaml.safe_load(open("params.yaml"))["make"]["n"]
    os.makedirs("out", exist_ok=True)
    for i in range(n):
        with open(f"out/{i}.txt", "w") as f:
            f.write(str(i))

def score():
    k = yaml.safe_load(open("params.yaml"))["score"]["k"]
    os.makedirs("rep", exist_ok=True)
    with open("rep/metrics.json", "w") as f:
        json.dump({"total": len(os.listdir("out")) * k}, f)

if __name__ == "__main__":
    globals()[sys.argv[1]]()
"""

DVC_YAML = {
    "stages": {
        "make": {
            "cmd": "python stage.py make",
            "deps": ["stage.py"],
            "params": ["make.n"],
            "outs": ["out"],
        },
        "score": {
            "cmd": "python stage.py score",
            "deps": ["stage.py", "out"],
            "params": ["score"],
            "metrics": ["rep/metrics.json"],
        },
    }
}


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def _dvc(repo: Path, *args: str) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=repo, capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture()
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git + DVC repository with two stages (make -> score), nothing run yet; cwd."""
    (tmp_path / "stage.py").write_text(SCRIPT)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"make": {"n": 3}, "score": {"k": 2}}))
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML, sort_keys=False))
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "config", "user.email", "t@example.com")
    _git(tmp_path, "config", "user.name", "t")
    _dvc(tmp_path, "init", "-q")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-qm", "init")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def _functions() -> dict:
    import importlib

    import stage  # the repository's own script, imported from the temporary folder

    importlib.reload(stage)
    return {"make": stage.make, "score": stage.score}


def _run_all(root: Path) -> dict[str, str]:
    fns = _functions()
    with open_pipeline(root) as pipeline:
        return {name: pipeline.run(name, fns[name])[0].status for name in pipeline.stage_names()}


def test_runs_stale_stages_then_dvc_sees_nothing_to_do(repo: Path) -> None:
    assert _run_all(repo) == {"make": "ran", "score": "ran"}
    assert json.loads((repo / "rep/metrics.json").read_text()) == {"total": 6}
    assert "up to date" in _dvc(repo, "status")
    assert "didn't change" in _dvc(repo, "repro")
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert lock["stages"]["make"]["params"]["params.yaml"] == {"make.n": 3}
    assert lock["stages"]["make"]["outs"][0]["md5"].endswith(".dir")
    # Outputs are in DVC's cache: removing one and checking out restores it.
    (repo / "rep/metrics.json").unlink()
    _dvc(repo, "checkout")
    assert (repo / "rep/metrics.json").is_file()


def test_second_run_skips_and_one_param_reruns_only_its_stage(repo: Path) -> None:
    _run_all(repo)
    mtime = (repo / "out/0.txt").stat().st_mtime_ns
    assert _run_all(repo) == {"make": "skipped", "score": "skipped"}
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["score"]["k"] = 5
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    with open_pipeline(repo) as pipeline:
        assert pipeline.changes("make") == []
        assert pipeline.changes("score") == ["changed deps: params.yaml: score modified"]
    assert _run_all(repo) == {"make": "skipped", "score": "ran"}
    assert (repo / "out/0.txt").stat().st_mtime_ns == mtime
    assert json.loads((repo / "rep/metrics.json").read_text()) == {"total": 15}
    # Back to the old value: DVC's run cache restores the earlier outputs without running.
    params["score"]["k"] = 2
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    assert _run_all(repo) == {"make": "skipped", "score": "restored"}
    assert json.loads((repo / "rep/metrics.json").read_text()) == {"total": 6}
    assert "up to date" in _dvc(repo, "status")


def test_same_lock_as_dvc_repro(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    clone = tmp_path_factory.mktemp("clone") / "repo"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    _run_all(repo)
    _dvc(clone, "repro")
    ours = yaml.safe_load((repo / "dvc.lock").read_text())
    theirs = yaml.safe_load((clone / "dvc.lock").read_text())
    assert ours == theirs


def test_failing_stage_leaves_it_stale(repo: Path) -> None:
    def broken() -> None:
        raise RuntimeError("boom")

    with open_pipeline(repo) as pipeline:
        pipeline.run("make", _functions()["make"])
        with pytest.raises(RuntimeError, match="boom"):
            pipeline.run("score", broken)
        assert pipeline.changes("score")
        assert pipeline.changes("make") == []


def test_second_pipeline_run_is_refused_while_one_holds_the_lock(repo: Path) -> None:
    with open_pipeline(repo):
        with pytest.raises(PipelineBusyError, match="another pipeline run"), open_pipeline(repo):
            pass
        proc = subprocess.run(
            [sys.executable, "-m", "dvc", "repro"], cwd=repo, capture_output=True, text=True
        )
        assert proc.returncode != 0 and "lock" in proc.stderr.lower()
    with open_pipeline(repo):  # released afterwards
        pass


def test_unknown_stage_and_missing_dvc_yaml_are_reported(repo: Path, tmp_path: Path) -> None:
    with open_pipeline(repo) as pipeline, pytest.raises(PipelineDefinitionError, match="nope"):
        pipeline.changes("nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PipelineDefinitionError, match=r"dvc\.yaml"), open_pipeline(empty):
        pass


def test_a_stage_that_does_not_write_its_outs_is_reported(repo: Path) -> None:
    with open_pipeline(repo) as pipeline:
        with pytest.raises(PipelineDefinitionError, match="'make' ran, but DVC cannot record"):
            pipeline.run("make", lambda: None)
        assert pipeline.changes("make")
