"""What `segcore init` writes, without running it: the project's dvc.yaml against this
repository's, its params.yaml, the class options, the code fingerprints, the package list."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import yaml

from segcore.common.errors import ParamsError
from segcore.params import Params, load_params
from segcore.pipeline.code import CODE_FILE, code_digest, code_fingerprints, stage_code_files
from segcore.project.classes import parse_class_options
from segcore.project.init import PROJECT_STAGES, project_name
from segcore.project.render import render_params

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "segcore" / "project" / "templates"


def _leaf_keys(tree: dict, prefix: str = "") -> set[str]:
    keys = set()
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            keys |= _leaf_keys(value, f"{prefix}{key}.")
        else:
            keys.add(f"{prefix}{key}")
    return keys


def test_project_pipeline_is_the_demo_pipeline_with_code_fingerprints_for_source_files() -> None:
    """The project's dvc.yaml follows this repository's: same stages (no synth), commands,
    data deps, params, outs and plots; its code deps are one fingerprint key per stage."""
    demo = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    project = yaml.safe_load((TEMPLATES / "dvc.yaml.tmpl").read_text())
    assert list(project["stages"]) == [s for s in demo["stages"] if s != "synth"]
    assert tuple(project["stages"]) == PROJECT_STAGES
    for name, stage in project["stages"].items():
        ours = demo["stages"][name]
        assert stage["cmd"] == ours["cmd"] == f"segcore {name}"
        assert stage["deps"] == [d for d in ours["deps"] if not d.startswith("segcore/")], name
        assert stage["params"] == [*ours["params"], {CODE_FILE: [f"stages.{name}"]}], name
        assert stage["outs"] == ours["outs"], name
        assert stage.get("metrics") == ours.get("metrics"), name
    assert project["plots"] == demo["plots"]


def test_rendered_params_spell_out_every_key_and_load_back_equal(tmp_path: Path) -> None:
    params = load_params(ROOT / "params.yaml")
    text = render_params(params, {"synth": "Not a stage of this project."})
    raw = yaml.safe_load(text)
    assert _leaf_keys(raw) == _leaf_keys(Params().model_dump(by_alias=True))
    (tmp_path / "params.yaml").write_text(text)
    assert load_params(tmp_path / "params.yaml") == params
    # PyYAML and DVC read the same numbers: no float left as a string like 1e-08
    assert isinstance(raw["train"]["adam_epsilon"], float)
    assert "# Not a stage of this project.\nsynth:" in text
    assert "  batch_size: 4" in text and "# Samples per step and process." in text


def test_class_options_become_a_map_and_bad_ones_are_listed_together() -> None:
    assert parse_class_options(["0=good", "2= crack ", "1=scratch"]) == {
        0: "good",
        2: "crack",
        1: "scratch",
    }
    with pytest.raises(ParamsError) as err:
        parse_class_options(["good", "x=dent", "1=a", "1=b", "3="])
    text = err.value.render()
    for bad in ("'good'", "'x=dent'", "class id 1 is given twice", "'3='"):
        assert bad in text


@pytest.mark.parametrize(
    ("folder", "name"),
    [("line-7", "line-7"), ("Lot 4 (new)", "Lot-4-new"), ("...", "segcore-project")],
)
def test_project_name_from_the_folder(folder: str, name: str) -> None:
    assert project_name(folder) == name


def _package(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


FAKE = {
    "__init__.py": '"""pkg"""\n__version__ = "1"\n',
    "common/__init__.py": '"""common"""\n',
    "common/io.py": "X = 1\n",
    "common/errors.py": "E = 1\n",
    "data/__init__.py": '"""data"""\n',
    "data/split.py": "from segcore.common import io\n",
    "data/extra.py": "Y = 2\n",
    "data/typing_only.py": "Z = 3\n",
    "data/lazy.py": "W = 4\n",
    "pipeline/__init__.py": '"""pipeline"""\n',
    "pipeline/stage_split.py": (
        "from typing import TYPE_CHECKING\n"
        "import segcore.data.split\n"
        "from segcore.common.errors import E\n"
        "try:\n    from segcore.data import extra\nexcept ImportError:\n    pass\n"
        "if TYPE_CHECKING:\n    from segcore.data import typing_only\n"
        "def f():\n    from segcore.data import lazy\n"
    ),
}


def test_stage_code_is_what_its_module_imports_at_load_time(tmp_path: Path) -> None:
    root = _package(tmp_path / "segcore", FAKE)
    # errors.py is not output code; typing_only and lazy are never loaded with the module;
    # docstring-only packages and the top package (the version) decide nothing.
    assert stage_code_files("split", root) == [
        "common/io.py",
        "data/extra.py",
        "data/split.py",
        "pipeline/stage_split.py",
    ]


def test_fingerprint_changes_with_code_not_with_comments_docstrings_or_version(
    tmp_path: Path,
) -> None:
    root = _package(tmp_path / "segcore", FAKE)
    before = code_fingerprints(["split"], root)
    (root / "common" / "io.py").write_text('"""Now documented."""\n\nX = 1  # one\n')
    (root / "__init__.py").write_text('"""pkg"""\n__version__ = "2"\n')
    (root / "data" / "lazy.py").write_text("W = 5\n")  # not loaded by the stage
    assert code_fingerprints(["split"], root) == before
    (root / "common" / "io.py").write_text("X = 2\n")
    assert code_fingerprints(["split"], root) != before


def test_digest_ignores_formatting_but_not_behaviour(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.py", tmp_path / "b.py", tmp_path / "c.py"
    a.write_text("def f(x):\n    '''Doc.'''\n    return x+1\n")
    b.write_text("def f( x ):\n    # why\n    return (x + 1)\n")
    c.write_text("def f(x):\n    return x + 2\n")
    assert code_digest(a) == code_digest(b) != code_digest(c)


def test_every_stage_of_a_project_has_a_fingerprint_of_this_checkout() -> None:
    prints = code_fingerprints(PROJECT_STAGES)
    assert list(prints) == list(PROJECT_STAGES)
    assert all(len(v) == 16 for v in prints.values())
    assert len(set(prints.values())) == len(prints)  # the stages run different code


def test_pyproject_lists_every_package_and_maps_flows() -> None:
    """Packages are listed by hand (discovery cannot map flows/ to segcore.flows): a new
    subpackage left out of the list would be missing from the wheel."""
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for p in (ROOT / "segcore").rglob("__init__.py")
        if "__pycache__" not in p.parts
    }
    assert set(tool["packages"]) == folders | {"segcore.flows"}
    assert tool["package-dir"] == {"segcore.flows": "flows"}
    assert "flows" not in tool["packages"]
    templates = {p.name for p in TEMPLATES.iterdir()}
    assert templates == {
        f"{n}.tmpl" for n in ("dvc.yaml", "Makefile", "README.md", "gitignore", "dvcignore")
    }
    assert tool["package-data"]["segcore.project"] == ["templates/*"]
    # DVC reads every dvc.yaml below a repository: a template of that name would join the
    # pipeline of this repository (and of every project's copy of segcore's sources).
    assert sorted((ROOT / "segcore").rglob("dvc.yaml")) == []
