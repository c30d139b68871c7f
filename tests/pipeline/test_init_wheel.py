"""segcore as a user has it: the wheel installed into a new virtual environment, a project
written by its `segcore init`, and the whole pipeline run there with `make run`.

The environment borrows the test environment's third-party packages but has only the
wheel's segcore (see tests/helpers/wheel.py); every command runs without this checkout on
``PYTHONPATH``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from helpers.pipeline_repo import set_params
from helpers.wheel import build_wheel, clean_env, venv_with_wheel

from segcore.pipeline.code import CODE_FILE
from segcore.project.init import PROJECT_STAGES

pytestmark = pytest.mark.slow

TINY = {
    ("preprocess", "workers"): 1,
    ("preprocess", "param", "image_width"): 32,
    ("preprocess", "param", "image_height"): 32,
    ("train", "num_epochs"): 1,
    ("train", "batch_size"): 4,
    ("train", "num_threads"): 1,
    ("train", "model_kwargs"): {"base_channels": 4, "depth": 2},
    ("evaluate", "worst_k"): 1,
}


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The wheel in a new environment, and a project of 12 tiny pills that its segcore
    wrote, with tiny training params committed."""
    from segcore.data.synth import generate_pills

    base = tmp_path_factory.mktemp("wheel")
    python = venv_with_wheel(base / "venv", build_wheel(base / "build"))
    env = clean_env(python, SEGCORE_PROGRESS="0", PREFECT_HOME=str(base / "prefect"))
    generate_pills(base / "raw", num_images=12, width=48, height=48, seed=11)
    run(["segcore", "init", "project", "--images", "raw/images", "--labels", "raw/labels",
         "--class", "0=good", "--class", "1=contamination", "--class", "2=crack"],
        base, env)  # fmt: skip
    project = base / "project"
    set_params(project / "params.yaml", TINY)
    run(["git", "commit", "-qam", "Tiny training"], project, env)
    return {"python": python, "env": env, "project": project}


@pytest.fixture(scope="module")
def first_run(installed: dict) -> str:
    """``make run`` once in the project: the output."""
    return run(["make", "run"], installed["project"], installed["env"])


def test_the_project_runs_the_wheels_segcore(installed: dict) -> None:
    code = (
        "import segcore, segcore.flows.pipeline as p, importlib.util as u;"
        "print(segcore.__file__); print(p.__file__); print(u.find_spec('flows'))"
    )
    out = run([str(installed["python"]), "-c", code], installed["project"], installed["env"])
    site = installed["python"].parents[1] / "lib"
    package, flow, top_level_flows = out.split()
    assert Path(package).is_relative_to(site) and Path(flow).is_relative_to(site)
    assert top_level_flows == "None"  # no top-level `flows` module was installed
    script = (installed["python"].parent / "segcore").read_text().splitlines()[0]
    assert script == f"#!{installed['python']}"  # what DVC's `segcore <stage>` runs
    # The schedule (make serve) and deployments name the installed flow by module.
    code = (
        "from pathlib import Path; from segcore.params import Params;"
        "from segcore.flows.serve import build_deployment; from segcore.flows import deploy;"
        "print(build_deployment(Params(), Path('.')).entrypoint); print(deploy.ENTRYPOINT)"
    )
    out = run([str(installed["python"]), "-c", code], installed["project"], installed["env"])
    assert out.split() == ["segcore.flows.pipeline.segmentation_pipeline"] * 2


def test_make_run_runs_every_stage_and_leaves_dvc_clean(installed: dict, first_run: str) -> None:
    project, env = installed["project"], installed["env"]
    assert "Pipeline finished" in first_run
    assert ", ".join(f"{s} ran" for s in PROJECT_STAGES) in first_run
    assert "Registry: project version 1, champion" in first_run
    assert "up to date" in run([str(installed["python"]), "-m", "dvc", "status"], project, env)
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    assert list(lock) == list(PROJECT_STAGES)
    recorded = yaml.safe_load((project / CODE_FILE).read_text())["stages"]
    for stage in PROJECT_STAGES:  # each stage recorded the fingerprint of its own code
        assert lock[stage]["params"][CODE_FILE] == {f"stages.{stage}": recorded[stage]}
    assert (project / "reports" / "report.html").is_file()
    assert (project / "mlflow.db").is_file()


def test_second_run_and_dvc_repro_skip_every_stage(installed: dict, first_run: str) -> None:
    project, env = installed["project"], installed["env"]
    out = run(["make", "run"], project, env)
    assert ", ".join(f"{s} skipped" for s in PROJECT_STAGES) in out
    repro = run(["make", "repro"], project, env)
    for stage in PROJECT_STAGES:
        assert f"Stage '{stage}' didn't change, skipping" in repro


def test_a_changed_segcore_file_makes_exactly_its_stages_stale(
    installed: dict, first_run: str
) -> None:
    """Runs last: it edits the installed package. data/split.py is code of split only,
    evaluate/report.py of evaluate only (dvc.yaml of this repository); a comment in
    train/loop.py changes no behaviour."""
    project, env, python = installed["project"], installed["env"], installed["python"]
    package = Path(run([str(python), "-c", "import segcore; print(segcore.__file__)"],
                       project, env).strip()).parent  # fmt: skip
    with (package / "data" / "split.py").open("a") as f:
        f.write("\n_CHANGED_BEHAVIOUR = 1\n")
    with (package / "evaluate" / "report.py").open("a") as f:
        f.write("\n_CHANGED_BEHAVIOUR = 1\n")
    with (package / "train" / "loop.py").open("a") as f:
        f.write("\n# a comment changes nothing\n")
    # Before a refresh, a stage command refuses to record the old fingerprint.
    refused = subprocess.run([str(python), "-m", "segcore.cli", "split"], cwd=project, env=env,
                             capture_output=True, text=True)  # fmt: skip
    assert refused.returncode == 2
    assert "run `segcore refresh`" in " ".join(refused.stderr.split())
    out = run([str(python), "-m", "segcore.cli", "refresh"], project, env)
    assert "code changed for split, evaluate" in out
    status = run([str(python), "-m", "dvc", "status", "--json"], project, env)
    assert set(yaml.safe_load(status)) == {"split", "evaluate"}
